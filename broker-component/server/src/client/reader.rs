//! The connection's reading side: waiting for CONNACK, then the reader thread that decodes what
//! the broker sends, answers it (PUBACK, PUBREC/PUBCOMP, PUBREL), completes the caller's pending
//! requests, hands messages to the sink and sends keep-alive pings.

use std::collections::HashSet;
use std::io::ErrorKind;
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use musqratt_codec::{decode, ConnAck, Packet, ProtocolVersion, PubAck, QoS};

use super::session::{io_text, lock, ClientError, Event, Shared, Sink};

/// Read until one packet is decoded; it must be CONNACK. Bytes after it stay in `buf`.
pub(super) fn read_connack(
    sh: &Shared,
    rd: &mut TcpStream,
    buf: &mut BytesMut,
    version: ProtocolVersion,
    timeout: Duration,
) -> Result<ConnAck, ClientError> {
    let deadline = Instant::now() + timeout;
    let mut chunk = [0u8; 4096];
    loop {
        match decode(buf, version, u32::MAX) {
            Ok(Some((Packet::ConnAck(c), n))) => {
                buf.advance(n);
                return Ok(c);
            }
            Ok(Some((p, _))) => {
                return Err(ClientError::Protocol(format!(
                    "expected CONNACK, got {}",
                    p.name()
                )))
            }
            Ok(None) => {}
            Err(e) => return Err(ClientError::Protocol(format!("bad CONNACK: {e}"))),
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ClientError::Timeout("CONNACK".into()));
        }
        let _ = rd.set_read_timeout(Some(left));
        match sh.read(rd, &mut chunk) {
            Ok(0) => {
                return Err(ClientError::Closed(
                    "connection closed by the broker before CONNACK".into(),
                ))
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(ClientError::Closed(format!(
                    "connection lost: {}",
                    io_text(&e)
                )))
            }
        }
    }
}

/// The reader thread: decode, answer, dispatch; ping when the keep-alive is due. Returns why the
/// connection ended.
pub(super) fn read_loop(
    sh: &Shared,
    mut rd: TcpStream,
    mut buf: BytesMut,
    keep_alive: u16,
    sink: &Sink,
) -> String {
    // Ping at half the keep-alive; poll at most every second so the check stays timely.
    let ping_every = (keep_alive > 0).then(|| Duration::from_secs(u64::from(keep_alive)) / 2);
    let _ = rd.set_read_timeout(Some(
        ping_every.map_or(Duration::from_secs(1), |p| p.min(Duration::from_secs(1))),
    ));
    let mut awaiting_rel = HashSet::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        loop {
            match decode(&buf, sh.version, u32::MAX) {
                Ok(Some((p, n))) => {
                    buf.advance(n);
                    if let Err(why) = handle(sh, p, &mut awaiting_rel, sink) {
                        let _ = sh.stream.shutdown(Shutdown::Both);
                        return why;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = sh.stream.shutdown(Shutdown::Both);
                    return format!("bad packet from the broker: {e}");
                }
            }
        }
        match sh.read(&mut rd, &mut chunk) {
            Ok(0) => return "connection closed by the broker".into(),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return format!("connection lost: {}", io_text(&e)),
        }
        if let Some(every) = ping_every {
            let due = lock(&sh.writer).elapsed() >= every;
            let closing = lock(&sh.state).closing;
            if due && !closing {
                lock(&sh.state).pings.push_back(None);
                let _ = sh.send(&Packet::PingReq);
            }
        }
    }
}

/// One packet from the broker. `Err` ends the connection with that text.
fn handle(
    sh: &Shared,
    p: Packet,
    awaiting_rel: &mut HashSet<u16>,
    sink: &Sink,
) -> Result<(), String> {
    let complete = |id: u16, p: Packet| {
        if let Some(tx) = lock(&sh.state).pending.remove(&id) {
            let _ = tx.send(p);
        }
    };
    let reply = |p: Packet| sh.send(&p).map_err(|e| e.to_string());
    match p {
        Packet::Publish(m) => match (m.qos, m.packet_id) {
            (QoS::AtMostOnce, _) => sink(Event::Message(Box::new(m))),
            (QoS::AtLeastOnce, Some(id)) => {
                sink(Event::Message(Box::new(m)));
                reply(Packet::PubAck(PubAck::new(id)))?;
            }
            (QoS::ExactlyOnce, Some(id)) => {
                // Deliver once: a re-sent PUBLISH before PUBREL is a duplicate.
                if awaiting_rel.insert(id) {
                    sink(Event::Message(Box::new(m)));
                }
                reply(Packet::PubRec(PubAck::new(id)))?;
            }
            _ => return Err("PUBLISH without packet identifier".into()),
        },
        Packet::PubRel(a) => {
            awaiting_rel.remove(&a.packet_id);
            reply(Packet::PubComp(PubAck::new(a.packet_id)))?;
        }
        Packet::PubAck(a) | Packet::PubComp(a) => complete(a.packet_id, Packet::PubAck(a)),
        Packet::PubRec(a) => {
            if a.reason_code.is_error() {
                complete(a.packet_id, Packet::PubRec(a));
            } else {
                reply(Packet::PubRel(PubAck::new(a.packet_id)))?;
            }
        }
        Packet::SubAck(a) => {
            let id = a.packet_id;
            complete(id, Packet::SubAck(a));
        }
        Packet::UnsubAck(a) => {
            let id = a.packet_id;
            complete(id, Packet::UnsubAck(a));
        }
        Packet::PingResp => {
            if let Some(Some(tx)) = lock(&sh.state).pings.pop_front() {
                let _ = tx.send(());
            }
        }
        Packet::Disconnect(d) => {
            let mut why = format!("disconnected by the broker: {}", d.reason_code);
            if let Some(r) = d.properties.reason_string {
                why.push_str(&format!(" ({r})"));
            }
            return Err(why);
        }
        p => return Err(format!("unexpected {} from the broker", p.name())),
    }
    Ok(())
}
