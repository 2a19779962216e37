//! A raw MQTT client over a `TcpStream`, written by hand from the MQTT 3.1.1 / 5.0 specs.
//!
//! Only what the malformed-input tests need: build a few well-formed packets, send arbitrary bytes,
//! read one packet (fixed header + remaining length + body), and tell whether the peer closed.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Protocol level byte of CONNECT: 4 = MQTT 3.1.1, 5 = MQTT 5.0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V311,
    V5,
}

impl Version {
    pub fn level(self) -> u8 {
        match self {
            Version::V311 => 4,
            Version::V5 => 5,
        }
    }
}

/// Encode a Variable Byte Integer (remaining length).
pub fn varint(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            return out;
        }
    }
}

/// A UTF-8 string / binary data field: 2-byte big-endian length, then the bytes.
pub fn string(s: &[u8]) -> Vec<u8> {
    let mut out = (s.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(s);
    out
}

/// A packet from its first byte (type << 4 | flags) and its body (remaining length is computed).
pub fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    out.extend(varint(body.len()));
    out.extend_from_slice(body);
    out
}

/// CONNECT, clean session / clean start, keep alive 60 s, no will, no credentials.
pub fn connect(v: Version, client_id: &str) -> Vec<u8> {
    let mut body = string(b"MQTT"); // protocol name
    body.push(v.level()); // protocol level
    body.push(0x02); // connect flags: clean session
    body.extend_from_slice(&60u16.to_be_bytes()); // keep alive
    if v == Version::V5 {
        body.push(0); // properties: none
    }
    body.extend(string(client_id.as_bytes()));
    packet(0x10, &body)
}

/// SUBSCRIBE (first byte 0x82: reserved flags 0b0010) with one filter.
pub fn subscribe(v: Version, packet_id: u16, filter: &str, qos: u8) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    if v == Version::V5 {
        body.push(0); // properties: none
    }
    body.extend(string(filter.as_bytes()));
    body.push(qos); // subscription options (v5) / requested QoS (3.1.1)
    packet(0x82, &body)
}

/// PUBLISH at QoS 0 (first byte 0x30), no retain.
pub fn publish_qos0(v: Version, topic: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut body = string(topic);
    if v == Version::V5 {
        body.push(0); // properties: none
    }
    body.extend_from_slice(payload);
    packet(0x30, &body)
}

/// One packet as read from the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// First byte: packet type in the high nibble, flags in the low nibble.
    pub first: u8,
    pub body: Vec<u8>,
}

impl Packet {
    pub fn kind(&self) -> u8 {
        self.first >> 4
    }
}

/// What a read found.
#[derive(Debug)]
pub enum Read1 {
    Packet(Packet),
    /// EOF or connection reset.
    Closed,
    TimedOut,
}

/// A raw connection to a broker.
pub struct Raw {
    pub stream: TcpStream,
    pub version: Version,
}

impl Raw {
    /// Open a TCP connection, no MQTT yet.
    pub fn tcp(port: u16, version: Version) -> Raw {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to broker");
        stream.set_nodelay(true).unwrap();
        Raw { stream, version }
    }

    /// Open a connection, send CONNECT and expect a successful CONNACK.
    pub fn connect(port: u16, version: Version, client_id: &str) -> Raw {
        let mut raw = Raw::tcp(port, version);
        raw.send(&connect(version, client_id));
        let p = raw.expect_packet(super::WAIT);
        assert_eq!(p.kind(), 2, "expected CONNACK, got {p:?}");
        // Body: acknowledge flags, then return code (3.1.1) / reason code (5.0).
        assert_eq!(p.body.get(1), Some(&0), "CONNACK refused: {p:?}");
        raw
    }

    /// Connect and subscribe to `filter` at QoS 0, waiting for the SUBACK.
    pub fn subscriber(port: u16, version: Version, client_id: &str, filter: &str) -> Raw {
        let mut raw = Raw::connect(port, version, client_id);
        raw.send(&subscribe(version, 1, filter, 0));
        let p = raw.expect_packet(super::WAIT);
        assert_eq!(p.kind(), 9, "expected SUBACK, got {p:?}");
        raw
    }

    /// Write all bytes (errors ignored: the broker may already have closed).
    pub fn send(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
        let _ = self.stream.flush();
    }

    fn read_exact_until(&mut self, buf: &mut [u8], deadline: Instant) -> Result<(), Read1> {
        let mut got = 0;
        while got < buf.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Read1::TimedOut);
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            match self.stream.read(&mut buf[got..]) {
                Ok(0) => return Err(Read1::Closed),
                Ok(n) => got += n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Err(Read1::TimedOut)
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Err(Read1::Closed),
            }
        }
        Ok(())
    }

    /// Read one packet within `timeout`.
    pub fn read(&mut self, timeout: Duration) -> Read1 {
        let deadline = Instant::now() + timeout;
        let mut first = [0u8; 1];
        if let Err(r) = self.read_exact_until(&mut first, deadline) {
            return r;
        }
        // Once a packet has begun, the rest of it is read even past `timeout`: giving up in
        // the middle would drop the bytes already read and leave the stream out of step (the
        // next read would take the middle of this packet for a header). Callers that poll
        // with a short timeout, on a loaded machine, hit that moment now and then.
        let deadline = deadline.max(Instant::now() + super::WAIT);
        let mut len = 0usize;
        for i in 0..4 {
            let mut b = [0u8; 1];
            if let Err(r) = self.read_exact_until(&mut b, deadline) {
                return r;
            }
            len |= ((b[0] & 0x7f) as usize) << (7 * i);
            if b[0] & 0x80 == 0 {
                break;
            }
        }
        let mut body = vec![0u8; len];
        if let Err(r) = self.read_exact_until(&mut body, deadline) {
            return r;
        }
        Read1::Packet(Packet {
            first: first[0],
            body,
        })
    }

    /// Read one packet or panic.
    pub fn expect_packet(&mut self, timeout: Duration) -> Packet {
        match self.read(timeout) {
            Read1::Packet(p) => p,
            other => panic!("expected a packet, got {other:?}"),
        }
    }

    /// Read packets until a PUBLISH arrives; returns (topic, payload). Skips other packets.
    pub fn expect_publish(&mut self, timeout: Duration) -> (Vec<u8>, Vec<u8>) {
        let deadline = Instant::now() + timeout;
        loop {
            let p = self.expect_packet(deadline.saturating_duration_since(Instant::now()));
            if p.kind() != 3 {
                continue;
            }
            let qos = (p.first >> 1) & 3;
            let tlen = u16::from_be_bytes([p.body[0], p.body[1]]) as usize;
            let topic = p.body[2..2 + tlen].to_vec();
            let mut at = 2 + tlen;
            if qos > 0 {
                at += 2; // packet identifier
            }
            if self.version == Version::V5 {
                // properties: a varint length, then that many bytes
                let (plen, n) = read_varint(&p.body[at..]);
                at += n + plen;
            }
            return (topic, p.body[at..].to_vec());
        }
    }

    /// Expect the broker to close the connection within `timeout`, with no packet before.
    pub fn expect_closed(&mut self, timeout: Duration) {
        match self.read(timeout) {
            Read1::Closed => {}
            other => panic!("expected the broker to close the connection, got {other:?}"),
        }
    }

    /// MQTT 5: expect a DISCONNECT with `reason`, then the close.
    pub fn expect_disconnect(&mut self, reason: u8, timeout: Duration) {
        let p = self.expect_packet(timeout);
        assert_eq!(p.first, 0xE0, "expected DISCONNECT, got {p:?}");
        // An empty body means reason 0x00 (normal disconnection).
        let got = p.body.first().copied().unwrap_or(0);
        assert_eq!(
            got, reason,
            "DISCONNECT reason code: got {got:#04x}, want {reason:#04x} ({p:?})"
        );
        self.expect_closed(timeout);
    }
}

/// Decode a Variable Byte Integer: (value, bytes used).
pub fn read_varint(b: &[u8]) -> (usize, usize) {
    let mut v = 0usize;
    for (i, byte) in b.iter().take(4).enumerate() {
        v |= ((byte & 0x7f) as usize) << (7 * i);
        if byte & 0x80 == 0 {
            return (v, i + 1);
        }
    }
    (v, 4)
}

/// CONNECT like [`connect`], with a given keep alive (0: none) and clean session / clean start.
pub fn connect_with(v: Version, client_id: &str, keep_alive: u16, clean: bool) -> Vec<u8> {
    let mut body = string(b"MQTT");
    body.push(v.level());
    body.push(if clean { 0x02 } else { 0x00 }); // connect flags
    body.extend_from_slice(&keep_alive.to_be_bytes());
    if v == Version::V5 {
        body.push(0); // properties: none
    }
    body.extend(string(client_id.as_bytes()));
    packet(0x10, &body)
}

/// CONNECT of a session that outlives its connection: clean session / clean start off, keep
/// alive 60 s, and for v5 a Session Expiry Interval of 3600 s (without it a v5 session ends
/// with its connection).
pub fn persistent_connect(v: Version, client_id: &str) -> Vec<u8> {
    if v != Version::V5 {
        return connect_with(v, client_id, 60, false);
    }
    let mut body = string(b"MQTT");
    body.push(5);
    body.push(0x00); // flags: clean start off
    body.extend_from_slice(&60u16.to_be_bytes());
    body.extend_from_slice(&[5, 0x11, 0, 0, 0x0e, 0x10]); // properties: expiry 3600
    body.extend(string(client_id.as_bytes()));
    packet(0x10, &body)
}

/// A clean CONNECT (keep-alive 60) with an optional User Name and Password.
pub fn connect_credentials(
    v: Version,
    client_id: &str,
    username: Option<&str>,
    password: Option<&[u8]>,
) -> Vec<u8> {
    let mut body = string(b"MQTT");
    body.push(v.level());
    let flags = 0x02 | username.map_or(0, |_| 0x80) | password.map_or(0, |_| 0x40);
    body.push(flags);
    body.extend_from_slice(&60u16.to_be_bytes());
    if v == Version::V5 {
        body.push(0); // no properties
    }
    body.extend(string(client_id.as_bytes()));
    if let Some(u) = username {
        body.extend(string(u.as_bytes()));
    }
    if let Some(p) = password {
        body.extend(string(p));
    }
    packet(0x10, &body)
}

impl Raw {
    /// Send `connect_bytes` (a CONNECT) and return the CONNACK's code (3.1.1 return code, 5.0
    /// reason code), asserting the broker then closes the connection if the code is a refusal.
    pub fn connack_code(port: u16, version: Version, connect_bytes: &[u8]) -> u8 {
        let mut raw = Raw::tcp(port, version);
        raw.send(connect_bytes);
        let p = raw.expect_packet(super::WAIT);
        assert_eq!(p.kind(), 2, "expected CONNACK, got {p:?}");
        let code = *p.body.get(1).expect("CONNACK without a code");
        if code != 0 {
            raw.expect_closed(super::WAIT);
        }
        code
    }

    /// Open a connection, send `connect_bytes` (a CONNECT) and expect a successful CONNACK.
    pub fn connect_bytes(port: u16, version: Version, connect_bytes: &[u8]) -> Raw {
        let mut raw = Raw::tcp(port, version);
        raw.send(connect_bytes);
        let p = raw.expect_packet(super::WAIT);
        assert_eq!(p.kind(), 2, "expected CONNACK, got {p:?}");
        assert_eq!(p.body.get(1), Some(&0), "CONNACK refused: {p:?}");
        raw
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trip() {
        for n in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            2_097_151,
            2_097_152,
            268_435_455,
        ] {
            let e = varint(n);
            assert_eq!(read_varint(&e), (n, e.len()));
        }
        assert_eq!(varint(321), vec![0xC1, 0x02]);
    }

    #[test]
    fn connect_v311_bytes() {
        assert_eq!(
            connect(Version::V311, "a"),
            [0x10, 0x0D, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 1, b'a']
        );
        assert_eq!(
            connect(Version::V5, "a"),
            [0x10, 0x0E, 0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 60, 0, 0, 1, b'a']
        );
    }

    #[test]
    fn lines_wait() {
        let l = crate::Lines::default();
        l.collect(&b"one\ntwo\r\n"[..]);
        assert!(l.wait_until(Duration::from_secs(5), |v| v.len() == 2));
        assert_eq!(l.snapshot(), ["one", "two"]);
    }
}
