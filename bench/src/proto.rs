//! The MQTT side of the generator, on the project's codec: the handshake
//! (CONNECT / SUBSCRIBE), pre-encoded publish batches, and a frame scanner for
//! the receive path.
//!
//! Every packet is encoded by `musqratt_codec::encode`. On the hot paths the
//! generator avoids per-message work: publishes are encoded once and copied
//! into a batch whose sequence numbers are patched in place, and received
//! PUBLISH frames are only scanned for their payload (the codec's `decode`
//! would allocate a topic string and a payload copy per message, which would
//! make the generator, not the broker, the bottleneck). Other frames go
//! through `decode`.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use musqratt_codec::{
    decode, encode, Connect, Disconnect, Packet, Properties, ProtocolVersion, PubAck, Publish, QoS,
    ReasonCode, Subscribe, SubscriptionOptions,
};
use rustls::ClientConfig;

use crate::stream::Stream;

/// Payload header: publisher id (u32), sequence number (u64), send time in
/// nanoseconds since [`epoch`] (u64), little-endian. The rest is padding.
pub const PAYLOAD_HEADER: usize = 20;
pub const MAX_PACKET: u32 = musqratt_codec::MAX_REMAINING_LENGTH as u32 + 5;

/// One clock for every thread of the process, so a subscriber can subtract a
/// publisher's timestamp.
pub fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

pub fn now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

fn io_err(msg: impl Into<String>) -> io::Error {
    io::Error::other(msg.into())
}

/// A connected, handshaken client. The bytes read past the handshake's last
/// packet are kept in `pending` for the receive loop.
pub struct Conn {
    pub stream: Stream,
    pub version: ProtocolVersion,
    pub pending: Vec<u8>,
}

impl Conn {
    pub fn connect(
        addr: SocketAddr,
        tls: Option<&Arc<ClientConfig>>,
        client_id: &str,
        version: ProtocolVersion,
    ) -> io::Result<Conn> {
        Conn::connect_session(addr, tls, client_id, version, true)
    }

    /// `connect` with Clean Session / Clean Start set as given: `false` asks for a session
    /// that outlives the connection (3.1.1), which a broker keeps (and a durable one stores).
    pub fn connect_session(
        addr: SocketAddr,
        tls: Option<&Arc<ClientConfig>>,
        client_id: &str,
        version: ProtocolVersion,
        clean: bool,
    ) -> io::Result<Conn> {
        let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        tcp.set_nodelay(true)?;
        let stream = Stream::open(tcp, tls)?;
        Conn::handshake_session(stream, client_id, version, clean)
    }

    /// Sends CONNECT on an already connected stream and waits for CONNACK.
    pub fn handshake(
        stream: Stream,
        client_id: &str,
        version: ProtocolVersion,
    ) -> io::Result<Conn> {
        Conn::handshake_session(stream, client_id, version, true)
    }

    fn handshake_session(
        stream: Stream,
        client_id: &str,
        version: ProtocolVersion,
        clean: bool,
    ) -> io::Result<Conn> {
        stream.set_nodelay(true)?;
        let mut conn = Conn {
            stream,
            version,
            pending: Vec::new(),
        };
        conn.send(&connect_packet(client_id, version, clean))?;
        match conn.recv(Duration::from_secs(10))? {
            Packet::ConnAck(a) if a.reason_code == ReasonCode::SUCCESS => Ok(conn),
            Packet::ConnAck(a) => Err(io_err(format!("CONNACK refused: {:?}", a.reason_code))),
            p => Err(io_err(format!("expected CONNACK, got {}", p.name()))),
        }
    }

    pub fn send(&mut self, p: &Packet) -> io::Result<()> {
        let mut out = BytesMut::new();
        encode(p, self.version, &mut out).map_err(|e| io_err(e.to_string()))?;
        self.stream.write_all(&out)
    }

    /// Reads until one whole packet has arrived; for the handshake only.
    fn recv(&mut self, timeout: Duration) -> io::Result<Packet> {
        self.stream.set_read_timeout(Some(timeout))?;
        let mut chunk = [0u8; 4096];
        loop {
            match decode(&self.pending, self.version, MAX_PACKET) {
                Ok(Some((p, n))) => {
                    self.pending.drain(..n);
                    return Ok(p);
                }
                Ok(None) => {}
                Err(e) => return Err(io_err(format!("bad packet from broker: {e}"))),
            }
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(io_err("broker closed the connection"));
            }
            self.pending.extend_from_slice(&chunk[..n]);
        }
    }

    /// SUBSCRIBE and wait for a SUBACK that grants every filter.
    pub fn subscribe(&mut self, filter: &str, qos: QoS) -> io::Result<()> {
        self.send(&Packet::Subscribe(Subscribe {
            packet_id: 1,
            properties: Properties::default(),
            filters: vec![(filter.to_string(), SubscriptionOptions::new(qos))],
        }))?;
        match self.recv(Duration::from_secs(10))? {
            Packet::SubAck(a) if a.reason_codes.iter().all(|c| c.0 < 0x80) => Ok(()),
            Packet::SubAck(a) => Err(io_err(format!("SUBACK refused: {:?}", a.reason_codes))),
            p => Err(io_err(format!("expected SUBACK, got {}", p.name()))),
        }
    }

    /// Best effort: the measurement is over whatever happens here.
    pub fn disconnect(mut self) {
        let _ = self.send(&Packet::Disconnect(Disconnect::new(
            ReasonCode::NORMAL_DISCONNECTION,
        )));
    }
}

pub fn connect_packet(client_id: &str, version: ProtocolVersion, clean: bool) -> Packet {
    let mut properties = Properties::default();
    if !clean && version.is_v5() {
        // v5: a session outlives its connection only with a Session Expiry Interval.
        properties.session_expiry_interval = Some(3600);
    }
    Packet::Connect(Connect {
        protocol: version,
        clean_start: clean,
        // 0 = no keep-alive: idle clients must not need PINGREQs to stay.
        keep_alive: 0,
        properties,
        client_id: client_id.to_string(),
        will: None,
        username: None,
        password: None,
    })
}

/// `count` copies of one encoded PUBLISH, patched in place per use.
pub struct Batch {
    buf: Vec<u8>,
    pub msg_len: usize,
    pid_off: Option<usize>,
    payload_off: usize,
}

impl Batch {
    pub fn new(
        topic: &str,
        qos: QoS,
        payload: usize,
        version: ProtocolVersion,
        count: usize,
    ) -> Batch {
        let payload = payload.max(PAYLOAD_HEADER);
        let p = Packet::Publish(Publish {
            dup: false,
            qos,
            retain: false,
            topic: topic.to_string(),
            packet_id: (qos != QoS::AtMostOnce).then_some(1),
            properties: Properties::default(),
            payload: Bytes::from(vec![b'x'; payload]),
        });
        let mut one = BytesMut::new();
        encode(&p, version, &mut one).expect("a generator PUBLISH fits the wire format");
        let msg_len = one.len();
        // The payload is the packet's tail; the packet id follows the topic.
        let payload_off = msg_len - payload;
        let fixed_header = msg_len - vbi_value_len(&one[1..]);
        let pid_off = (qos != QoS::AtMostOnce).then(|| fixed_header + 2 + topic.len());
        Batch {
            buf: one.repeat(count.max(1)),
            msg_len,
            pid_off,
            payload_off,
        }
    }

    pub fn capacity(&self) -> usize {
        self.buf.len() / self.msg_len
    }

    /// Writes `n` messages numbered from `first_seq`, stamped `ts`, with packet
    /// ids from `next_pid`; returns their bytes.
    pub fn fill(
        &mut self,
        n: usize,
        publisher: u32,
        first_seq: u64,
        ts: u64,
        mut next_pid: impl FnMut() -> u16,
    ) -> &[u8] {
        for i in 0..n {
            let m = &mut self.buf[i * self.msg_len..(i + 1) * self.msg_len];
            if let Some(o) = self.pid_off {
                m[o..o + 2].copy_from_slice(&next_pid().to_be_bytes());
            }
            let p = &mut m[self.payload_off..self.payload_off + PAYLOAD_HEADER];
            p[0..4].copy_from_slice(&publisher.to_le_bytes());
            p[4..12].copy_from_slice(&(first_seq + i as u64).to_le_bytes());
            p[12..20].copy_from_slice(&ts.to_le_bytes());
        }
        &self.buf[..n * self.msg_len]
    }
}

/// The number of bytes after the fixed header's variable byte integer, read
/// from that integer (so: the remaining length).
fn vbi_value_len(b: &[u8]) -> usize {
    read_vbi(b).map_or(0, |(v, _)| v)
}

/// (value, bytes used), or None when incomplete.
fn read_vbi(b: &[u8]) -> Option<(usize, usize)> {
    let mut v = 0usize;
    for (i, &byte) in b.iter().enumerate().take(4) {
        v |= ((byte & 0x7F) as usize) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// A 4-byte acknowledgement (PUBACK 0x40, PUBREC 0x50, PUBREL 0x62, PUBCOMP
/// 0x70) with reason Success: the shortest form, identical in 3.1.1 and 5.0.
/// Same bytes as `encode(&Packet::PubAck(PubAck::new(id)))`, without a BytesMut
/// per message.
pub fn ack(first_byte: u8, pid: u16) -> [u8; 4] {
    let id = pid.to_be_bytes();
    [first_byte, 2, id[0], id[1]]
}

pub const PUBACK: u8 = 0x40;
pub const PUBREC: u8 = 0x50;
pub const PUBREL: u8 = 0x62;
pub const PUBCOMP: u8 = 0x70;

/// What the receive loops act on.
pub enum Frame {
    Publish {
        qos: u8,
        pid: u16,
        publisher: u32,
        seq: u64,
        ts: u64,
    },
    /// Boxed: rare, and a CONNECT-sized variant would bloat every frame.
    Other(Box<Packet>),
}

/// Scans one frame from the front of `buf`: Ok(None) when incomplete.
pub fn scan(buf: &[u8], version: ProtocolVersion) -> Result<Option<(Frame, usize)>, String> {
    let Some(&b0) = buf.first() else {
        return Ok(None);
    };
    if b0 >> 4 != 3 {
        return match decode(buf, version, MAX_PACKET) {
            Ok(Some((p, n))) => Ok(Some((Frame::Other(Box::new(p)), n))),
            Ok(None) => Ok(None),
            Err(e) => Err(format!("bad packet from broker: {e}")),
        };
    }
    let Some((rem, n)) = read_vbi(&buf[1..]) else {
        return Ok(None);
    };
    let total = 1 + n + rem;
    if buf.len() < total {
        return Ok(None);
    }
    let body = &buf[1 + n..total];
    let bad = || format!("malformed PUBLISH from broker ({} bytes)", body.len());
    let topic_len = u16::from_be_bytes([
        *body.first().ok_or_else(bad)?,
        *body.get(1).ok_or_else(bad)?,
    ]);
    let mut pos = 2 + topic_len as usize;
    let qos = (b0 >> 1) & 3;
    let mut pid = 0;
    if qos > 0 {
        let id = body.get(pos..pos + 2).ok_or_else(bad)?;
        pid = u16::from_be_bytes([id[0], id[1]]);
        pos += 2;
    }
    if version.is_v5() {
        let (plen, pn) = read_vbi(body.get(pos..).ok_or_else(bad)?).ok_or_else(bad)?;
        pos += pn + plen;
    }
    let h = body.get(pos..pos + PAYLOAD_HEADER).ok_or_else(bad)?;
    let le64 = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or_default());
    let frame = Frame::Publish {
        qos,
        pid,
        publisher: u32::from_le_bytes([h[0], h[1], h[2], h[3]]),
        seq: le64(&h[4..12]),
        ts: le64(&h[12..20]),
    };
    Ok(Some((frame, total)))
}

/// A PUBACK-shaped packet's id, for the publisher's ack handling.
pub fn ack_id(p: &Packet) -> Option<(u8, u16)> {
    let id = |a: &PubAck| a.packet_id;
    match p {
        Packet::PubAck(a) => Some((PUBACK, id(a))),
        Packet::PubRec(a) => Some((PUBREC, id(a))),
        Packet::PubRel(a) => Some((PUBREL, id(a))),
        Packet::PubComp(a) => Some((PUBCOMP, id(a))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_patches_what_the_codec_decodes() {
        for version in [ProtocolVersion::V311, ProtocolVersion::V5] {
            for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
                let mut b = Batch::new("bench/x/7", qos, 64, version, 4);
                let mut pid = 40;
                let bytes = b
                    .fill(3, 9, 100, 12345, || {
                        pid += 1;
                        pid
                    })
                    .to_vec();
                let mut off = 0;
                for i in 0..3u64 {
                    let (p, n) = decode(&bytes[off..], version, MAX_PACKET).unwrap().unwrap();
                    let Packet::Publish(p) = p else { panic!() };
                    assert_eq!(p.topic, "bench/x/7");
                    assert_eq!(p.payload.len(), 64);
                    if qos != QoS::AtMostOnce {
                        assert_eq!(p.packet_id, Some(41 + i as u16));
                    }
                    let (f, m) = scan(&bytes[off..], version).unwrap().unwrap();
                    assert_eq!(m, n);
                    let Frame::Publish {
                        publisher,
                        seq,
                        ts,
                        pid,
                        ..
                    } = f
                    else {
                        panic!()
                    };
                    assert_eq!((publisher, seq, ts), (9, 100 + i, 12345));
                    assert_eq!(Some(pid).filter(|_| qos != QoS::AtMostOnce), p.packet_id);
                    off += n;
                }
                assert!(scan(&bytes[..5], version).unwrap().is_none());
            }
        }
    }

    #[test]
    fn hand_written_acks_match_the_codec() {
        for version in [ProtocolVersion::V311, ProtocolVersion::V5] {
            let mut out = BytesMut::new();
            encode(&Packet::PubAck(PubAck::new(0x1234)), version, &mut out).unwrap();
            encode(&Packet::PubRel(PubAck::new(0x1234)), version, &mut out).unwrap();
            let mut want = ack(PUBACK, 0x1234).to_vec();
            want.extend(ack(PUBREL, 0x1234));
            assert_eq!(&out[..], &want[..]);
        }
    }
}
