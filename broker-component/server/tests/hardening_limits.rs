//! Issue 11, counts a client controls: subscriptions per session
//! (`limits.max_subscriptions_per_client`) and bytes of retained messages
//! (`limits.max_retained_mb`). Each limit is hit over TCP (the hand-rolled `raw` client) against
//! the broker binary with 2 workers and small configured values; then a fresh client must
//! round-trip a QoS 1 message on every worker and the broker process must be alive.

mod common;

use common::raw::{self, Raw, Read1, Version::*};
use common::*;
use musqratt_test_support::hostile::{
    ack_codes, expect_packet_kind as expect_kind, publish_flags as publish,
    subscribe_filters as subscribe, unsubscribe_filters as unsubscribe,
};
use musqratt_test_support::{hostile, scratch_dir};

/// A fresh client's QoS 1 round trip on every worker, and the process still running.
fn survives(broker: &mut Broker, context: &str) {
    hostile::survives(broker, WORKERS, context);
}

const WORKERS: usize = 2;

/// Starts the broker with 2 workers and `conf` as its config file.
fn broker_with_config(tag: &str, conf: &str) -> Broker {
    let path = scratch_dir(tag).join("musqratt.toml");
    std::fs::write(&path, conf).expect("write config");
    broker_with_args(&["--workers", "2", "-c", path.to_str().unwrap()])
}

/// Sends a SUBSCRIBE and returns its SUBACK's reason codes.
fn suback(c: &mut Raw, packet_id: u16, filters: &[(&str, u8)]) -> Vec<u8> {
    let v = c.version;
    c.send(&subscribe(v, packet_id, filters));
    let p = expect_kind(c, 9, "SUBACK");
    assert_eq!(&p.body[..2], &packet_id.to_be_bytes(), "SUBACK packet id");
    ack_codes(v, &p.body)
}

/// Round trip on the connection (PINGREQ → PINGRESP): everything sent before has been handled.
fn ping(c: &mut Raw) {
    c.send(&[0xc0, 0]);
    expect_kind(c, 13, "PINGRESP");
}

/// Topics of the PUBLISHes `c` receives until one on `marker` arrives.
fn topics_until(c: &mut Raw, marker: &str) -> Vec<String> {
    let mut topics = Vec::new();
    loop {
        let (topic, _) = c.expect_publish(WAIT);
        let topic = String::from_utf8(topic).expect("UTF-8 topic");
        if topic == marker {
            return topics;
        }
        topics.push(topic);
    }
}

/// The topics of the retained messages a new subscriber to `r/#` gets: those that arrive before
/// a marker `p` publishes after the SUBACK (queued behind them).
fn retained_now(port: u16, p: &mut Raw, client: &str) -> Vec<String> {
    let mut s = Raw::subscriber(port, V5, client, "r/#");
    p.send(&publish(V5, "r/end", b"", 0, false));
    topics_until(&mut s, "r/end")
}

#[test]
fn l1_subscriptions_per_client_are_bounded_and_refused_in_the_suback() {
    let mut b = broker_with_config("limits-l1", "[limits]\nmax_subscriptions_per_client = 3\n");
    let port = b.port();
    let mut c = Raw::connect(port, V5, "l1-v5");
    assert_eq!(
        suback(&mut c, 1, &[("a/1", 1), ("a/2", 0), ("a/3", 0)]),
        [1, 0, 0]
    );
    // Full: a new filter gets 0x97 Quota exceeded, a replaced one (a/1, now QoS 0) is granted,
    // and the packet's other filters are still processed.
    assert_eq!(
        suback(&mut c, 2, &[("a/4", 0), ("a/1", 0), ("a/+", 1)]),
        [0x97, 0, 0x97]
    );
    assert!(
        b.wait_for_log("limits.max_subscriptions_per_client", WAIT),
        "no log line about the quota; log:\n{}",
        b.logs().join("\n")
    );
    // The refused filters were not subscribed: a/4 is not delivered, a/1 is.
    let mut p = Raw::connect(port, V311, "l1-pub");
    p.send(&publish(V311, "a/4", b"refused", 0, false));
    p.send(&publish(V311, "a/1", b"granted", 0, false));
    ping(&mut p);
    assert_eq!(
        c.expect_publish(WAIT),
        (b"a/1".to_vec(), b"granted".to_vec())
    );
    // UNSUBSCRIBE makes room again.
    c.send(&unsubscribe(V5, 3, &["a/3"]));
    assert_eq!(
        ack_codes(V5, &expect_kind(&mut c, 11, "UNSUBACK").body),
        [0]
    );
    assert_eq!(suback(&mut c, 4, &[("a/4", 0), ("a/5", 0)]), [0, 0x97]);

    // MQTT 3.1.1 has no Quota exceeded: the refusal is 0x80 (Failure).
    let mut old = Raw::connect(port, V311, "l1-v311");
    assert_eq!(
        suback(
            &mut old,
            1,
            &[("b/1", 0), ("b/2", 1), ("b/3", 0), ("b/4", 0)]
        ),
        [0, 1, 0, 0x80]
    );
    survives(&mut b, "L1: max_subscriptions_per_client");
}

#[test]
fn l1_subscribe_flood_gets_exactly_the_quota_and_one_log_line_per_subscribe() {
    const LIMIT: usize = 100;
    const PACKETS: u16 = 50;
    const PER_PACKET: usize = 400;
    let mut b = broker_with_config(
        "limits-l1-flood",
        &format!("[limits]\nmax_subscriptions_per_client = {LIMIT}\n"),
    );
    let logged = b.log_lines().len();
    let mut c = Raw::connect(b.port(), V5, "l1-flood");
    let mut granted = 0;
    let mut quota = 0;
    let mut hit = 0;
    for pid in 1..=PACKETS {
        let names: Vec<String> = (0..PER_PACKET)
            .map(|i| format!("flood/{pid}/{i}"))
            .collect();
        let filters: Vec<(&str, u8)> = names.iter().map(|n| (n.as_str(), 0)).collect();
        let codes = suback(&mut c, pid, &filters);
        assert_eq!(codes.len(), PER_PACKET);
        granted += codes.iter().filter(|&&r| r == 0).count();
        let refused = codes.iter().filter(|&&r| r == 0x97).count();
        quota += refused;
        hit += usize::from(refused > 0);
    }
    let total = usize::from(PACKETS) * PER_PACKET;
    assert_eq!(granted, LIMIT, "subscriptions granted beyond the limit");
    assert_eq!(
        quota,
        total - LIMIT,
        "every other filter is refused with 0x97"
    );
    let needle = "limits.max_subscriptions_per_client reached";
    let count = |l: &[String]| l[logged..].iter().filter(|l| l.contains(needle)).count();
    assert!(
        b.log_lines().wait_until(WAIT, |l| count(l) >= hit),
        "expected {hit} log lines"
    );
    assert_eq!(
        count(&b.log_lines().snapshot()),
        hit,
        "one log line per SUBSCRIBE"
    );
    survives(&mut b, "L1: SUBSCRIBE flood");
}

#[test]
fn l2_retained_store_is_bounded_in_bytes_yet_messages_are_delivered() {
    const TOPICS: usize = 3000;
    const PAYLOAD: usize = 1000;
    // Room for all deliveries in the subscribers' queues: the retained store is what is bounded.
    let mut b = broker_with_config(
        "limits-l2",
        "[limits]\nmax_retained_mb = 1\nmax_queued_messages = 10000\nmax_publisher_pause_ms = 0\n",
    );
    let port = b.port();
    let mut live = Raw::subscriber(port, V5, "l2-live", "r/#");
    let mut p = Raw::connect(port, V5, "l2-pub");
    let payload = vec![b'a'; PAYLOAD];
    let mut batch = Vec::new();
    for i in 0..TOPICS {
        batch.extend(publish(V5, &format!("r/{i:04}"), &payload, 0, true));
    }
    p.send(&batch);
    ping(&mut p);
    // Past the limit, a retained QoS 1 PUBLISH is still acknowledged as delivered (reason 0).
    p.send(&publish(V5, "r/late", &payload, 1, true));
    let ack = expect_kind(&mut p, 4, "PUBACK");
    assert_eq!(
        ack.body.get(2).copied().unwrap_or(0),
        0,
        "PUBACK reason: {ack:?}"
    );
    p.send(&publish(V5, "r/end", b"", 0, false));
    // Every message reached the current subscriber, stored or not.
    let live_topics = topics_until(&mut live, "r/end");
    assert_eq!(
        live_topics.len(),
        TOPICS + 1,
        "deliveries to the live subscriber"
    );
    assert!(
        b.wait_for_log("limits.max_retained_mb reached", WAIT),
        "no log line about max_retained_mb; log:\n{}",
        b.logs().join("\n")
    );

    // A new subscriber gets only what fits in 1 MiB (each message is charged its topic, payload
    // and a fixed overhead), not all 3000 (3 MB of payload alone).
    let stored = retained_now(port, &mut p, "l2-new");
    assert!(
        (700..=(1 << 20) / PAYLOAD).contains(&stored.len()),
        "{} retained messages stored under a 1 MiB limit",
        stored.len()
    );
    assert!(
        !stored.iter().any(|t| t == "r/late"),
        "r/late was retained past the limit"
    );
    assert!(stored.iter().any(|t| t == "r/0000"));

    // Replacing a stored message with one of the same size is allowed at the limit...
    p.send(&publish(V5, "r/0000", &vec![b'b'; PAYLOAD], 0, true));
    let mut s = Raw::subscriber(port, V5, "l2-replaced", "r/0000");
    assert_eq!(
        s.expect_publish(WAIT),
        (b"r/0000".to_vec(), vec![b'b'; PAYLOAD])
    );
    // ...and deleting one makes room for a new topic.
    p.send(&publish(V5, "r/0001", b"", 0, true));
    p.send(&publish(V5, "r/new", &payload, 0, true));
    ping(&mut p);
    let after = retained_now(port, &mut p, "l2-after");
    assert!(
        after.iter().any(|t| t == "r/new"),
        "r/new not retained after a delete"
    );
    assert!(!after.iter().any(|t| t == "r/0001"));
    assert_eq!(after.len(), stored.len(), "one deleted, one added");
    survives(&mut b, "L2: max_retained_mb");
}

#[test]
fn l2_retained_flood_keeps_memory_under_the_limit() {
    const TOPICS: usize = 40_000;
    const PAYLOAD: usize = 2048; // 80 MiB of payload on distinct topics
    let mut b = broker_with_config("limits-l2-rss", "[limits]\nmax_retained_mb = 4\n");
    hostile::round_trip_every_worker(b.port(), WORKERS, "warm-up");
    let baseline = hostile::rss_kib(b.pid());
    let mut p = Raw::connect(b.port(), V311, "l2-flood");
    let payload = vec![b'x'; PAYLOAD];
    for chunk in 0..TOPICS / 1000 {
        let mut batch = Vec::new();
        for i in 0..1000 {
            let topic = format!("flood/{chunk}/{i}");
            batch.extend(publish(V311, &topic, &payload, 0, true));
        }
        p.send(&batch);
    }
    ping(&mut p);
    let rss = hostile::rss_kib(b.pid());
    // 4 MiB retained plus a margin for buffers and allocator slack, far below the 80 MiB sent.
    assert!(
        rss < baseline + (4 + 28) * 1024,
        "broker RSS grew from {baseline} KiB to {rss} KiB"
    );
    survives(&mut b, "L2: retained flood");
}

/// The topic of a PUBLISH body.
fn publish_topic(body: &[u8]) -> String {
    let len = usize::from(u16::from_be_bytes([body[0], body[1]]));
    String::from_utf8(body[2..2 + len].to_vec()).expect("UTF-8 topic")
}

/// Reads (acknowledging every QoS 1 PUBLISH) until a packet of `kind` arrives, or, with
/// `kind` 3, a PUBLISH on `marker`. Returns how many other PUBLISHes came before it.
fn ack_until(c: &mut Raw, kind: u8, marker: &str) -> usize {
    let mut delivered = 0;
    loop {
        let p = expect_kind_any(c);
        if p.kind() == 3 {
            if let Some(id) = hostile::publish_packet_id(&p.body).filter(|_| p.first & 6 != 0) {
                c.send(&hostile::ack(0x40, id));
            }
            if kind == 3 && publish_topic(&p.body) == marker {
                return delivered;
            }
            delivered += 1;
        } else if p.kind() == kind {
            return delivered;
        }
    }
}

fn expect_kind_any(c: &mut Raw) -> raw::Packet {
    match c.read(WAIT) {
        Read1::Packet(p) => p,
        other => panic!("expected a packet, got {other:?}"),
    }
}

#[test]
fn l3_queued_bytes_per_session_are_bounded() {
    const MESSAGES: u16 = 800;
    const PAYLOAD: usize = 64 * 1024; // 50 MiB in all, for a subscriber that does not read
    const INFLIGHT: usize = 4;
    let mut b = broker_with_config(
        "limits-l3",
        &format!(
            "[limits]\nmax_queued_mb = 1\nmax_queued_messages = 10000\nmax_inflight = {INFLIGHT}\n\
             max_publisher_pause_ms = 0\n"
        ),
    );
    let port = b.port();
    hostile::round_trip_every_worker(port, WORKERS, "warm-up");
    let baseline = hostile::rss_kib(b.pid());
    let mut sub = Raw::connect(port, V311, "l3-slow");
    sub.send(&raw::subscribe(V311, 1, "q/#", 1));
    expect_kind(&mut sub, 9, "SUBACK");
    let mut p = Raw::connect(port, V311, "l3-pub");
    let payload = vec![b'q'; PAYLOAD];
    for id in 1..=MESSAGES {
        p.send(&hostile::publish(V311, b"q/flood", &payload, 1, id));
    }
    ping(&mut p);
    let rss = hostile::rss_kib(b.pid());
    // 1 MiB queued, 4 in flight and socket buffers; far below the 50 MiB a full queue would pin.
    assert!(
        rss < baseline + 24 * 1024,
        "broker RSS grew from {baseline} KiB to {rss} KiB"
    );
    // The subscriber now reads: what is in flight, then (after a round trip that lets the broker
    // refill its window) the rest of its queue up to a marker published last.
    let mut delivered = 0;
    for _ in 0..INFLIGHT {
        let (topic, _) = sub.expect_publish(WAIT);
        assert_eq!(topic, b"q/flood");
        delivered += 1;
    }
    for id in 1..=INFLIGHT as u16 {
        sub.send(&hostile::ack(0x40, id));
    }
    sub.send(&[0xc0, 0]);
    delivered += ack_until(&mut sub, 13, "");
    p.send(&hostile::publish(V311, b"q/marker", b"m", 1, 1));
    delivered += ack_until(&mut sub, 3, "q/marker");
    // 1 MiB holds 15 messages of 64 KiB (each charged a little more than its payload).
    let per_mib = (1 << 20) / PAYLOAD;
    assert!(
        (INFLIGHT + per_mib / 2..=INFLIGHT + per_mib).contains(&delivered),
        "{delivered} of {MESSAGES} delivered under max_queued_mb = 1"
    );
    survives(&mut b, "L3: max_queued_mb");
}
