//! Helpers for the hardening tests (issue 11): after each hostile scenario, prove that the broker
//! still serves a fresh, well-behaved client on every worker, and read the broker's memory.
//!
//! Like [`raw`](crate::raw), this speaks MQTT by hand over a real `TcpStream`, independent of the
//! broker's codec.

use std::time::Duration;

use crate::raw::{self, packet, string, Raw, Read1, Version};

/// PUBLISH with a given QoS (0, 1 or 2), no retain; `packet_id` is ignored at QoS 0.
pub fn publish(v: Version, topic: &[u8], payload: &[u8], qos: u8, packet_id: u16) -> Vec<u8> {
    let mut body = string(topic);
    if qos > 0 {
        body.extend_from_slice(&packet_id.to_be_bytes());
    }
    if v == Version::V5 {
        body.push(0); // properties: none
    }
    body.extend_from_slice(payload);
    packet(0x30 | (qos << 1), &body)
}

/// PUBACK (0x40), PUBREC (0x50), PUBREL (0x62), PUBCOMP (0x70) for `packet_id`, no reason code.
pub fn ack(first: u8, packet_id: u16) -> Vec<u8> {
    packet(first, &packet_id.to_be_bytes())
}

/// The packet id of a QoS > 0 PUBLISH body (topic string, then the id).
pub fn publish_packet_id(body: &[u8]) -> Option<u16> {
    let tlen = usize::from(u16::from_be_bytes([*body.first()?, *body.get(1)?]));
    let at = 2 + tlen;
    Some(u16::from_be_bytes([*body.get(at)?, *body.get(at + 1)?]))
}

/// One QoS 1 round trip on a fresh connection: CONNECT, SUBSCRIBE to a topic of its own at QoS 1,
/// PUBLISH to it at QoS 1, expect both the PUBACK and the delivery (acknowledged in turn).
/// Panics with `context` if anything is missing within `timeout`.
pub fn qos1_round_trip(port: u16, client_id: &str, timeout: Duration, context: &str) {
    let v = Version::V311;
    let mut c = Raw::tcp(port, v);
    c.send(&raw::connect(v, client_id));
    expect_kind(&mut c, 2, timeout, context, "CONNACK");
    let topic = format!("alive/{client_id}");
    c.send(&raw::subscribe(v, 1, &topic, 1));
    expect_kind(&mut c, 9, timeout, context, "SUBACK");
    let payload = format!("ping {client_id}");
    c.send(&publish(v, topic.as_bytes(), payload.as_bytes(), 1, 7));
    let (mut acked, mut delivered) = (false, false);
    while !(acked && delivered) {
        match c.read(timeout) {
            Read1::Packet(p) if p.kind() == 4 => acked = true,
            Read1::Packet(p) if p.kind() == 3 => {
                assert!(
                    p.body
                        .windows(payload.len())
                        .any(|w| w == payload.as_bytes()),
                    "{context}: {client_id} got a PUBLISH that is not its own: {p:?}"
                );
                let id = publish_packet_id(&p.body).expect("QoS 1 PUBLISH has an id");
                c.send(&ack(0x40, id));
                delivered = true;
            }
            Read1::Packet(_) => {}
            other => panic!(
                "{context}: {client_id}'s QoS 1 round trip failed (PUBACK {acked}, delivery \
                 {delivered}): {other:?}"
            ),
        }
    }
    c.send(&[0xe0, 0]); // DISCONNECT
}

/// A fresh client's QoS 1 round trip on every worker: the acceptor hands connections round robin,
/// so `workers` connections opened one after the other land on `workers` different workers.
pub fn round_trip_every_worker(port: u16, workers: usize, context: &str) {
    for w in 0..workers {
        let id = format!("alive-{}-{w}", std::process::id());
        qos1_round_trip(port, &id, crate::WAIT, context);
    }
}

fn expect_kind(c: &mut Raw, kind: u8, timeout: Duration, context: &str, what: &str) {
    match c.read(timeout) {
        Read1::Packet(p) if p.kind() == kind => {}
        other => panic!("{context}: expected {what}, got {other:?}"),
    }
}

/// Resident set size of process `pid` in KiB (`VmRSS` of /proc/PID/status).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// [`round_trip_every_worker`], then asserts the broker process is still running.
pub fn survives(broker: &mut crate::Broker, workers: usize, context: &str) {
    round_trip_every_worker(broker.port(), workers, context);
    assert!(broker.is_running(), "{context}: the broker process died");
}

/// SUBSCRIBE with several filters, each with its options byte (QoS, and v5 flags).
pub fn subscribe_filters(v: Version, packet_id: u16, filters: &[(&str, u8)]) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    if v == Version::V5 {
        body.push(0); // properties: none
    }
    for (f, opts) in filters {
        body.extend(string(f.as_bytes()));
        body.push(*opts);
    }
    packet(0x82, &body)
}

/// UNSUBSCRIBE with several filters.
pub fn unsubscribe_filters(v: Version, packet_id: u16, filters: &[&str]) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    if v == Version::V5 {
        body.push(0); // properties: none
    }
    for f in filters {
        body.extend(string(f.as_bytes()));
    }
    packet(0xa2, &body)
}

/// PUBLISH with QoS and RETAIN as given (packet id 1 at QoS > 0).
pub fn publish_flags(v: Version, topic: &str, payload: &[u8], qos: u8, retain: bool) -> Vec<u8> {
    let mut body = string(topic.as_bytes());
    if qos > 0 {
        body.extend_from_slice(&1u16.to_be_bytes());
    }
    if v == Version::V5 {
        body.push(0); // properties: none
    }
    body.extend_from_slice(payload);
    packet(0x30 | (qos << 1) | u8::from(retain), &body)
}

/// Reads until a packet of `kind` arrives (skipping others, e.g. deliveries); panics otherwise.
pub fn expect_packet_kind(c: &mut Raw, kind: u8, what: &str) -> raw::Packet {
    loop {
        match c.read(crate::WAIT) {
            Read1::Packet(p) if p.kind() == kind => return p,
            Read1::Packet(_) => {}
            other => panic!("expected {what}, got {other:?}"),
        }
    }
}

/// The reason codes of a SUBACK / UNSUBACK body (packet id, v5 properties, then the codes).
pub fn ack_codes(v: Version, body: &[u8]) -> Vec<u8> {
    let mut at = 2;
    if v == Version::V5 {
        let (len, n) = raw::read_varint(body.get(at..).unwrap_or_default());
        at += n + len;
    }
    body.get(at..).unwrap_or_default().to_vec()
}
