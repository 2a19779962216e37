//! Issue 11 ("Hardening"), items 2, 3 and 6, against the release binary with hand-rolled clients:
//! - item 2: a PUBLISH of the maximum packet size, delivered to a v5 subscriber with a
//!   Subscription Identifier, no longer fits MQTT's Remaining Length: that subscriber does not get
//!   it (dropped, counted, logged once), everyone else carries on, the worker survives;
//! - item 3: a will to `$SYS` is not published (it would overwrite the broker's retained `$SYS`);
//! - item 6: a subscriber offering Topic Alias Maximum 65,535 does not make the broker keep a copy
//!   of every topic delivered to it.
//!
//! After each hostile scenario a fresh client round-trips a QoS 1 message on every worker and the
//! broker process must still be running. The bytes are written by hand here, not by our codec.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::raw::{self, packet, read_varint, string, varint, Raw, Read1, Version};
use common::*;
use musqratt_test_support::hostile;

const WORKERS: usize = 2;

/// CONNECT for MQTT 5 with a property block and optional will (topic, payload, retain).
fn connect_v5(client_id: &str, props: &[u8], will: Option<(&str, &[u8], bool)>) -> Vec<u8> {
    let mut body = string(b"MQTT");
    body.push(5);
    let mut flags = 0x02; // clean start
    if let Some((_, _, retain)) = will {
        flags |= 0x04 | if retain { 0x20 } else { 0 }; // will flag, will QoS 0, will retain
    }
    body.push(flags);
    body.extend_from_slice(&60u16.to_be_bytes());
    body.extend(varint(props.len()));
    body.extend_from_slice(props);
    body.extend(string(client_id.as_bytes()));
    if let Some((topic, payload, _)) = will {
        body.push(0); // will properties: none
        body.extend(string(topic.as_bytes()));
        body.extend(string(payload));
    }
    packet(0x10, &body)
}

/// Connects `conn` and expects a successful CONNACK.
fn expect_connack(c: &mut Raw) {
    let p = c.expect_packet(WAIT);
    assert_eq!(p.kind(), 2, "expected CONNACK, got {p:?}");
    assert_eq!(p.body.get(1), Some(&0), "CONNACK refused: {p:?}");
}

/// v5 SUBSCRIBE to one filter with a Subscription Identifier (property 0x0B).
fn subscribe_v5_with_id(packet_id: u16, filter: &str, qos: u8, sub_id: usize) -> Vec<u8> {
    let mut props = vec![0x0B];
    props.extend(varint(sub_id));
    let mut body = packet_id.to_be_bytes().to_vec();
    body.extend(varint(props.len()));
    body.extend(props);
    body.extend(string(filter.as_bytes()));
    body.push(qos);
    packet(0x82, &body)
}

fn expect_suback(c: &mut Raw) {
    let p = c.expect_packet(WAIT);
    assert_eq!(p.kind(), 9, "expected SUBACK, got {p:?}");
    assert!(
        p.body.last().is_some_and(|&rc| rc < 0x80),
        "subscription refused: {p:?}"
    );
}

/// A v5 PUBLISH as received: topic (empty when only an alias is sent), QoS, packet id, topic alias.
struct Delivery {
    topic: Vec<u8>,
    qos: u8,
    packet_id: Option<u16>,
    alias: Option<u16>,
    payload: Vec<u8>,
}

/// Parses a v5 PUBLISH body; panics on a property the broker should not send here.
fn parse_v5_publish(first: u8, body: &[u8]) -> Delivery {
    let qos = (first >> 1) & 3;
    let tlen = usize::from(u16::from_be_bytes([body[0], body[1]]));
    let topic = body[2..2 + tlen].to_vec();
    let mut at = 2 + tlen;
    let mut packet_id = None;
    if qos > 0 {
        packet_id = Some(u16::from_be_bytes([body[at], body[at + 1]]));
        at += 2;
    }
    let (plen, n) = read_varint(&body[at..]);
    at += n;
    let end = at + plen;
    let mut alias = None;
    while at < end {
        match body[at] {
            0x23 => {
                alias = Some(u16::from_be_bytes([body[at + 1], body[at + 2]]));
                at += 3;
            }
            0x0B => at += 1 + read_varint(&body[at + 1..]).1,
            0x02 => at += 5,
            other => panic!("unexpected property {other:#04x} in a delivery"),
        }
    }
    Delivery {
        topic,
        qos,
        packet_id,
        alias,
        payload: body[end..].to_vec(),
    }
}

fn assert_alive(broker: &mut Broker, context: &str) {
    hostile::round_trip_every_worker(broker.port(), WORKERS, context);
    assert!(broker.is_running(), "{context}: the broker process died");
}

/// Item 2. The largest packet a 3.1.1 client may send (268,435,455 bytes in all, Remaining Length
/// 268,435,450) gains 6 bytes for a v5 subscriber with Subscription Identifier 268,435,455 (the
/// property and its Property Length) and then needs a Remaining Length MQTT cannot encode
/// (§1.5.5). It used to panic the subscriber's worker. Now that one delivery is dropped — at QoS 0
/// and, for a QoS 1 subscription, as if delivery completed (§3.1.2.11.4) — and the next message
/// on the same topic arrives normally. This cannot be scaled down: the limit is the format's own.
#[test]
fn item02_max_size_publish_to_v5_subscriber_with_subscription_identifier() {
    let mut broker = broker_with_args(&["--workers", "2"]);
    let port = broker.port();
    let max_sub_id = 268_435_455;
    // Two subscribers, one per worker (round robin): QoS 0 and QoS 1 subscriptions.
    let mut subs: Vec<Raw> = (0..2u8)
        .map(|qos| {
            let mut s = Raw::tcp(port, Version::V5);
            s.send(&connect_v5(&format!("big-sub-{qos}"), &[], None));
            expect_connack(&mut s);
            s.send(&subscribe_v5_with_id(1, "big", qos, max_sub_id));
            expect_suback(&mut s);
            s
        })
        .collect();

    let mut publisher = Raw::connect(port, Version::V311, "big-pub");
    // QoS 0 PUBLISH: topic "big" (5 bytes) + payload = Remaining Length 268,435,450.
    let remaining = 268_435_450;
    let mut big = vec![0x30];
    big.extend(varint(remaining));
    big.extend(string(b"big"));
    big.resize(1 + 4 + remaining, b'x');
    assert_eq!(big.len(), 268_435_455, "the maximum packet size");
    publisher.send(&big);
    drop(big);
    // Then a small QoS 1 message on the same connection: the subscribers' next PUBLISH.
    publisher.send(&hostile::publish(Version::V311, b"big", b"after", 1, 9));
    let ack = publisher.expect_packet(Duration::from_secs(60));
    assert_eq!(ack.kind(), 4, "PUBACK for the small message, got {ack:?}");

    for (qos, s) in subs.iter_mut().enumerate() {
        let p = s.expect_packet(Duration::from_secs(60));
        assert_eq!(p.kind(), 3, "subscriber {qos}: expected PUBLISH, got {p:?}");
        let d = parse_v5_publish(p.first, &p.body);
        assert_eq!(
            (d.topic.as_slice(), d.payload.as_slice(), d.qos),
            (&b"big"[..], &b"after"[..], qos as u8),
            "subscriber {qos}: the oversize message is dropped, the next one delivered"
        );
        if let Some(id) = d.packet_id {
            s.send(&hostile::ack(0x40, id));
        }
    }
    let count = |l: &[String]| l.iter().filter(|l| l.contains("PUBLISH not sent")).count();
    assert!(
        broker.log_lines().wait_until(WAIT, |l| count(l) == 2),
        "the drop is logged once per subscriber connection: {:?}",
        broker.logs()
    );
    assert_alive(&mut broker, "item 2");
}

/// Item 3. A will with topic `$SYS/broker/version` and retain used to replace the broker's own
/// retained `$SYS/broker/version`. The will is sent with DISCONNECT reason 0x04 (Disconnect with
/// Will Message): the broker handles it before it closes the socket, so once the client sees the
/// close, the retained store already holds whatever the will did.
#[test]
fn item03_will_to_sys_does_not_overwrite_broker_sys() {
    let mut broker = broker_with_args(&["--workers", "2"]);
    let port = broker.port();
    for (i, topic) in ["$SYS/broker/version", "$SYS"].into_iter().enumerate() {
        let mut c = Raw::tcp(port, Version::V5);
        c.send(&connect_v5(
            &format!("will-{i}"),
            &[],
            Some((topic, b"pwned", true)),
        ));
        expect_connack(&mut c);
        c.send(&packet(0xE0, &[0x04, 0])); // DISCONNECT, Disconnect with Will Message
        c.expect_closed(WAIT);
    }

    let mut s = Raw::tcp(port, Version::V311);
    s.send(&raw::connect(Version::V311, "sys-reader"));
    s.expect_packet(WAIT);
    s.send(&raw::subscribe(Version::V311, 1, "$SYS/broker/version", 0));
    let mut version = None;
    let deadline = Instant::now() + WAIT;
    while version.is_none() {
        match s.read(deadline.saturating_duration_since(Instant::now())) {
            Read1::Packet(p) if p.kind() == 3 => {
                let tlen = usize::from(u16::from_be_bytes([p.body[0], p.body[1]]));
                version = Some(String::from_utf8_lossy(&p.body[2 + tlen..]).into_owned());
            }
            Read1::Packet(_) => {}
            other => panic!("no retained $SYS/broker/version: {other:?}"),
        }
    }
    let version = version.unwrap_or_default();
    assert!(
        version.starts_with("musqratt"),
        "$SYS/broker/version is the broker's, not the will's: {version:?}"
    );
    // Nothing retained under the bare `$SYS` either.
    s.send(&raw::subscribe(Version::V311, 2, "$SYS", 0));
    match s.read(WAIT) {
        Read1::Packet(p) if p.kind() == 9 => {}
        other => panic!("expected the SUBACK, got {other:?}"),
    }
    // A retained PUBLISH to `$SYS` from a client is dropped as well (handle_publish.rs).
    let mut body = string(b"$SYS");
    body.push(b'x');
    s.send(&packet(0x31, &body));
    s.send(&[0xC0, 0]); // PINGREQ: its PINGRESP comes after any retained $SYS
    match s.read(WAIT) {
        Read1::Packet(p) if p.kind() == 13 => {}
        other => panic!("expected only PINGRESP (no retained $SYS), got {other:?}"),
    }
    assert!(
        broker.wait_for_log("will to $SYS not published", WAIT),
        "the refused will is logged"
    );
    assert_alive(&mut broker, "item 3");
}

/// Item 6. Four v5 subscribers offer Topic Alias Maximum 65,535 and receive 30,000 distinct
/// topics of 1 KB each. Unbounded, the broker kept a copy of every topic per subscriber (about
/// 120 MB here); with the default limits (16 aliases, 8 KiB of topic per connection, least
/// recently used reassigned) it keeps a few KB. The subscribers resolve aliases as a client must,
/// so every delivery's topic is checked: reassigned aliases must stay correct.
#[test]
fn item06_outbound_topic_aliases_bounded_with_alias_max_65535_subscribers() {
    const SUBSCRIBERS: usize = 4;
    const TOPICS: usize = 30_000;
    const BATCH: usize = 250;
    let mut broker = broker_with_args(&["--workers", "2"]);
    let port = broker.port();
    let received = Arc::new(AtomicUsize::new(0));
    let aliased = Arc::new(AtomicUsize::new(0));
    let topic_of = |i: usize| format!("alias/{i:06}/{}", "t".repeat(1000));

    let mut readers = Vec::new();
    for n in 0..SUBSCRIBERS {
        let mut s = Raw::tcp(port, Version::V5);
        // Topic Alias Maximum (0x22) 65,535.
        s.send(&connect_v5(
            &format!("alias-sub-{n}"),
            &[0x22, 0xFF, 0xFF],
            None,
        ));
        expect_connack(&mut s);
        s.send(&raw::subscribe(Version::V5, 1, "alias/#", 0));
        expect_suback(&mut s);
        let (received, aliased) = (Arc::clone(&received), Arc::clone(&aliased));
        readers.push(thread::spawn(move || {
            let mut known: std::collections::HashMap<u16, Vec<u8>> = Default::default();
            for i in 0..TOPICS {
                let p = s.expect_packet(Duration::from_secs(60));
                assert_eq!(p.kind(), 3, "subscriber {n}: expected PUBLISH, got {p:?}");
                let d = parse_v5_publish(p.first, &p.body);
                let topic = match (d.topic.is_empty(), d.alias) {
                    (false, Some(a)) => {
                        known.insert(a, d.topic.clone());
                        d.topic
                    }
                    (false, None) => d.topic,
                    (true, Some(a)) => {
                        aliased.fetch_add(1, Ordering::Relaxed);
                        known.get(&a).cloned().unwrap_or_else(|| {
                            panic!("subscriber {n}: alias {a} was never established")
                        })
                    }
                    (true, None) => panic!("subscriber {n}: empty topic without an alias"),
                };
                // Every tenth message repeats the previous topic (see the publisher).
                let t = if i % 10 == 9 { i - 1 } else { i };
                let want = format!("alias/{t:06}/");
                assert!(
                    topic.starts_with(want.as_bytes()) && topic.len() == want.len() + 1000,
                    "subscriber {n}: delivery {i} resolved to the wrong topic"
                );
                assert_eq!(d.payload, i.to_string().as_bytes(), "subscriber {n}");
                received.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }

    let mut publisher = Raw::connect(port, Version::V311, "alias-pub");
    let baseline = hostile::rss_kib(broker.pid());
    // Batches well under the subscriber queue limit, each delivered before the next: no message
    // may be dropped for a slow subscriber, and the memory measured is what stays, not backlog.
    for start in (0..TOPICS).step_by(BATCH) {
        let mut batch = Vec::new();
        for i in start..(start + BATCH).min(TOPICS) {
            // Every tenth message repeats the previous topic: an alias must then be used.
            let t = if i % 10 == 9 { i - 1 } else { i };
            let topic = topic_of(t);
            batch.extend(raw::publish_qos0(
                Version::V311,
                topic.as_bytes(),
                i.to_string().as_bytes(),
            ));
        }
        publisher.send(&batch);
        let want = SUBSCRIBERS * (start + BATCH).min(TOPICS);
        let deadline = Instant::now() + Duration::from_secs(60);
        while received.load(Ordering::Relaxed) < want {
            assert!(
                Instant::now() < deadline,
                "deliveries stalled at {} of {want}",
                received.load(Ordering::Relaxed)
            );
            thread::sleep(Duration::from_millis(2));
        }
    }
    for r in readers {
        r.join().expect("subscriber thread");
    }
    let rss = hostile::rss_kib(broker.pid());
    assert!(
        aliased.load(Ordering::Relaxed) > 0,
        "aliases are still used for repeated topics"
    );
    // Unbounded: 4 × 30,000 × 1 KB ≈ 120 MB kept. Bounded: 4 × 8 KiB, plus allocator noise.
    let grown_mib = rss.saturating_sub(baseline) / 1024;
    assert!(
        grown_mib < 40,
        "broker RSS grew by {grown_mib} MiB ({baseline} → {rss} KiB) for outbound topic aliases"
    );
    assert_alive(&mut broker, "item 6");
}
