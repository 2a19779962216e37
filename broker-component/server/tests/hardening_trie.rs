//! Issue 11, items 1, 4, 5, 9, 13, 15: the topic tries (subscriptions, retained messages, hold
//! queues) against hostile clients. Each scenario runs real TCP clients (the hand-rolled `raw`
//! client) against the broker binary with 2 workers, then proves that a fresh client still
//! round-trips a QoS 1 message on every worker and that the broker process is alive.

mod common;

use common::raw::{packet, string, Raw, Read1, Version, Version::*};
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

/// CONNECT with a chosen clean-start flag (and, for v5, Session Expiry Interval when persistent).
fn connect(v: Version, client_id: &str, clean: bool) -> Vec<u8> {
    let mut body = string(b"MQTT");
    body.push(v.level());
    body.push(if clean { 0x02 } else { 0x00 });
    body.extend_from_slice(&60u16.to_be_bytes());
    if v == V5 {
        if clean {
            body.push(0);
        } else {
            body.extend_from_slice(&[5, 0x11, 0, 0, 0x0e, 0x10]); // Session Expiry 3600 s
        }
    }
    body.extend(string(client_id.as_bytes()));
    packet(0x10, &body)
}

/// CONNECT (clean) with a will on `topic`.
fn connect_with_will(v: Version, client_id: &str, topic: &str) -> Vec<u8> {
    let mut body = string(b"MQTT");
    body.push(v.level());
    body.push(0x02 | 0x04); // clean, will flag, will QoS 0
    body.extend_from_slice(&60u16.to_be_bytes());
    if v == V5 {
        body.push(0);
    }
    body.extend(string(client_id.as_bytes()));
    if v == V5 {
        body.push(0); // will properties
    }
    body.extend(string(topic.as_bytes()));
    body.extend(string(b"gone"));
    packet(0x10, &body)
}

/// Opens a connection and expects a successful CONNACK; returns it and its Session Present flag.
fn connected(port: u16, v: Version, client_id: &str, clean: bool) -> (Raw, bool) {
    let mut c = Raw::tcp(port, v);
    c.send(&connect(v, client_id, clean));
    let p = c.expect_packet(WAIT);
    assert_eq!(p.kind(), 2, "expected CONNACK, got {p:?}");
    assert_eq!(p.body.get(1), Some(&0), "CONNACK refused: {p:?}");
    let present = p.body.first() == Some(&1);
    (c, present)
}

/// Reads (and skips) packets until the broker closes the connection.
fn expect_closed_after_deliveries(c: &mut Raw) {
    loop {
        match c.read(WAIT) {
            Read1::Closed => return,
            Read1::Packet(_) => {}
            Read1::TimedOut => panic!("expected the broker to close the connection"),
        }
    }
}

/// Sends a QoS 1 PUBLISH and waits for its PUBACK: every packet this connection sent before it
/// has been handled by then (one connection's packets are handled in order).
fn sync(c: &mut Raw, topic: &str) {
    c.send(&publish(c.version, topic, b"sync", 1, false));
    expect_kind(c, 4, "PUBACK");
}

#[test]
fn item01_deep_filter_refused_by_default() {
    let mut b = broker_with_args(&["--workers", "2"]);
    let port = b.port();
    let deep = "/".repeat(32_767); // 32,768 levels: a legal 64 KiB filter

    for v in [V5, V311] {
        let (mut c, _) = connected(port, v, &format!("deep-{v:?}"), true);
        c.send(&subscribe(v, 1, &[(&deep, 1), ("ok/+", 1)]));
        let suback = expect_kind(&mut c, 9, "SUBACK");
        let refused = if v == V5 { 0x8f } else { 0x80 };
        assert_eq!(ack_codes(v, &suback.body), [refused, 1], "{v:?}");
    }
    // 129 levels is one too many for a PUBLISH topic: Topic Name invalid.
    let (mut p, _) = connected(port, V5, "deep-publisher", true);
    p.send(&publish(V5, &"/".repeat(128), b"x", 0, false));
    p.expect_disconnect(0x90, WAIT);
    // ... and for a will topic: CONNACK 0x90.
    let mut w = Raw::tcp(port, V5);
    w.send(&connect_with_will(V5, "deep-will", &"a/".repeat(200)));
    let connack = w.expect_packet(WAIT);
    assert_eq!((connack.kind(), connack.body.get(1)), (2, Some(&0x90)));
    w.expect_closed(WAIT);
    // 128 levels are fine.
    let (mut ok, _) = connected(port, V5, "levels-128", true);
    sync(&mut ok, &"/".repeat(127));
    survives(&mut b, "item 1 (default limit)");
}

#[test]
fn item01_deep_filter_walked_iteratively_when_the_limit_allows_it() {
    // The limit raised past what a 64 KiB string can hold: only iterative walks survive this.
    let mut b = broker_with_config(
        "deep",
        "[storage]\nin_memory = true\n[limits]\nmax_topic_levels = 65535\n",
    );
    let port = b.port();
    let deep = "/".repeat(32_767);
    let deep_hash = "+/".repeat(20_000) + "#";

    // Held and retained under a deep topic, then a deep subscription takes them.
    let (mut publisher, _) = connected(port, V311, "deep-pub", true);
    publisher.send(&publish(V311, &deep, b"held", 0, false));
    publisher.send(&publish(V311, &deep, b"retained", 0, true));
    sync(&mut publisher, "sync/deep");

    let (mut s, _) = connected(port, V311, "deep-sub", false);
    s.send(&subscribe(V311, 1, &[(&deep, 0), (&deep_hash, 0)]));
    assert_eq!(
        ack_codes(V311, &expect_kind(&mut s, 9, "SUBACK").body),
        [0, 0]
    );
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(s.expect_publish(WAIT).1);
    }
    got.sort();
    assert_eq!(got, [&b"held"[..], b"retained", b"retained"]);

    // A PUBLISH matched against both deep filters (one copy: overlapping subscriptions merge).
    publisher.send(&publish(V311, &deep, b"live", 0, false));
    assert_eq!(s.expect_publish(WAIT).1, b"live");

    // UNSUBSCRIBE removes (and prunes) 32,768 levels.
    s.send(&unsubscribe(V311, 2, &[&deep]));
    expect_kind(&mut s, 11, "UNSUBACK");
    survives(&mut b, "item 1 (UNSUBSCRIBE)");

    // A takeover of the persistent session: the new connection resumes it, then a clean start
    // ends it and its deep subscriptions leave the tree.
    s.send(&subscribe(V311, 3, &[(&deep, 0)]));
    expect_kind(&mut s, 9, "SUBACK");
    let (_again, present) = connected(port, V311, "deep-sub", false);
    assert!(present, "the persistent session was resumed");
    let (clean, present) = connected(port, V311, "deep-sub", true);
    assert!(!present);
    survives(&mut b, "item 1 (takeover)");

    // A clean session's close removes its deep subscription.
    drop(clean);
    let (mut c, _) = connected(port, V5, "deep-clean", true);
    c.send(&subscribe(V5, 1, &[(&deep, 0)]));
    expect_kind(&mut c, 9, "SUBACK");
    c.send(&[0xe0, 0]);
    expect_closed_after_deliveries(&mut c);
    // Nothing matches any more: the message is held, not delivered anywhere.
    sync(&mut publisher, "sync/deep2");
    survives(&mut b, "item 1 (close of a clean session)");
}

#[test]
fn item04_repeated_subscribe_hash_is_bounded_by_the_queue() {
    const RETAINED: usize = 2_000;
    const SUBSCRIBES: usize = 2_000;
    let mut b = broker_with_config(
        "resubscribe",
        "[storage]\nin_memory = true\n[limits]\nmax_queued_messages = 100\n",
    );
    let port = b.port();
    let (mut publisher, _) = connected(port, V311, "retainer", true);
    let payload = vec![b'r'; 1024];
    for i in 0..RETAINED {
        // QoS 1 deliveries fill the inflight window; QoS 0 ones bypass it.
        let qos = (i % 2) as u8;
        publisher.send(&publish(V311, &format!("ret/{i}"), &payload, qos, true));
    }
    sync(&mut publisher, "sync/retained");
    let baseline = hostile::rss_kib(b.pid());

    // A client that subscribes to `#` again and again and never acknowledges a delivery. Without
    // a bound each SUBSCRIBE queued all 2,000 retained messages again: 4 million queue entries.
    let (mut hostile_client, _) = connected(port, V311, "resubscriber", true);
    let mut burst = Vec::new();
    for i in 0..SUBSCRIBES {
        burst.extend(subscribe(V311, (i + 1) as u16, &[("#", 1)]));
    }
    hostile_client.send(&burst);
    // Read (without acknowledging) until every SUBACK is in: all were handled.
    let mut subacks = 0;
    while subacks < SUBSCRIBES {
        expect_kind(&mut hostile_client, 9, "SUBACK");
        subacks += 1;
    }
    let grown = hostile::rss_kib(b.pid()).saturating_sub(baseline);
    assert!(
        grown < 30 * 1024,
        "RSS grew by {grown} KiB for a queue bounded at 100 messages"
    );
    survives(&mut b, "item 4");
}

#[test]
fn item05_held_bytes_are_bounded_by_hold_max_total_mb() {
    const TOPICS: usize = 30_000;
    let mut b = broker_with_config(
        "hold-total",
        "[storage]\nin_memory = true\n[hold]\nmax_total_mb = 1\n",
    );
    let port = b.port();
    let baseline = hostile::rss_kib(b.pid());
    // 30,000 topics x 2 KiB: 60 MB held without a broker-wide bound.
    let (mut publisher, _) = connected(port, V311, "holder", true);
    let payload = vec![b'h'; 2048];
    let mut burst = Vec::new();
    for i in 0..TOPICS {
        burst.extend(publish(V311, &format!("held/{i}"), &payload, 0, false));
        if burst.len() > 1 << 20 {
            publisher.send(&burst);
            burst.clear();
        }
    }
    burst.extend(publish(V311, "held/last", b"newest", 0, false));
    publisher.send(&burst);
    sync(&mut publisher, "sync/hold");
    let grown = hostile::rss_kib(b.pid()).saturating_sub(baseline);
    assert!(
        grown < 25 * 1024,
        "RSS grew by {grown} KiB with hold.max_total_mb = 1"
    );
    // The oldest went, the newest stayed: the first delivery is the newest message.
    let (mut s, _) = connected(port, V311, "hold-reader", true);
    s.send(&subscribe(V311, 1, &[("held/0", 0), ("held/last", 0)]));
    let (topic, body) = s.expect_publish(WAIT);
    assert_eq!(
        (topic.as_slice(), body.as_slice()),
        (&b"held/last"[..], &b"newest"[..])
    );
    assert!(
        b.logs()
            .iter()
            .any(|l| l.contains("hold.max_total_mb reached")),
        "a log line says why held messages were dropped"
    );
    survives(&mut b, "item 5");
}

#[test]
fn item09_many_filters_against_many_retained_and_held_topics() {
    const STORED: usize = 50_000;
    const PLAIN: usize = 5_000;
    const WILD: usize = 10_000;
    // Unlimited queue: every match is delivered, so the work is the walk, not the queue bound.
    let mut b = broker_with_config(
        "many-filters",
        "[storage]\nin_memory = true\n[limits]\nmax_queued_messages = 0\n",
    );
    let port = b.port();
    let (mut publisher, _) = connected(port, V311, "filler", true);
    let mut burst = Vec::new();
    for i in 0..STORED {
        burst.extend(publish(V311, &format!("r/{i}"), b"r", 0, true));
        burst.extend(publish(V311, &format!("h/{i}/x"), b"h", 0, false));
    }
    publisher.send(&burst);
    sync(&mut publisher, "sync/many");

    // One SUBSCRIBE of 15,000 filters: with a scan of the whole store per filter this held its
    // worker for minutes (issue: 188 s for 20,000 wildcard filters against 100,000 held topics).
    let mut filters: Vec<String> = (0..PLAIN).map(|i| format!("r/{i}")).collect();
    filters.extend((0..WILD).map(|i| format!("h/{i}/+")));
    let with_opts: Vec<(&str, u8)> = filters.iter().map(|f| (f.as_str(), 0)).collect();
    let (mut s, _) = connected(port, V311, "many-filters", true);
    s.send(&subscribe(V311, 1, &with_opts));
    let suback = expect_kind(&mut s, 9, "SUBACK");
    assert_eq!(ack_codes(V311, &suback.body).len(), PLAIN + WILD);
    // A bystander on each worker is served meanwhile.
    survives(&mut b, "item 9 (during)");
    let (mut retained, mut held) = (0, 0);
    while retained + held < PLAIN + WILD {
        let (topic, _) = s.expect_publish(WAIT);
        match topic.first() {
            Some(b'r') => retained += 1,
            Some(b'h') => held += 1,
            _ => panic!("unexpected topic {:?}", String::from_utf8_lossy(&topic)),
        }
    }
    assert_eq!((retained, held), (PLAIN, WILD));
    survives(&mut b, "item 9");
}

#[test]
fn item09_sparse_wildcard_filters_stop_at_the_walk_budget_and_lose_nothing_held() {
    // 100,000 held topics `s/N/y`, and one held message on `s/7/x`. A filter `+/+/x` must look
    // at every `s/N` node to find that one message: 2,000 such filters in one SUBSCRIBE are
    // 200 million node visits, seconds of one worker with the hold queues locked. The walk budget
    // stops them after a few milliseconds; the message not found stays held.
    const HELD: usize = 100_000;
    let mut b = broker_with_config(
        "walk-budget",
        "[storage]\nin_memory = true\n[limits]\nmax_queued_messages = 0\n",
    );
    let port = b.port();
    let (mut publisher, _) = connected(port, V311, "sparse-filler", true);
    let mut burst = Vec::new();
    for i in 0..HELD {
        burst.extend(publish(V311, &format!("s/{i}/y"), b"y", 0, false));
    }
    burst.extend(publish(V311, "s/7/x", b"needle", 1, false));
    publisher.send(&burst);
    expect_kind(&mut publisher, 4, "PUBACK of the held needle");

    let filters: Vec<(&str, u8)> = (0..2_000).map(|_| ("+/+/x", 1)).collect();
    let (mut s, _) = connected(port, V311, "sparse-subscriber", true);
    s.send(&subscribe(V311, 1, &filters));
    let suback = expect_kind(&mut s, 9, "SUBACK");
    assert_eq!(ack_codes(V311, &suback.body), vec![1; 2_000]);
    assert!(
        b.wait_for_log("SUBSCRIBE walked its budget", WAIT),
        "the walk budget was not reached (or not logged)"
    );
    survives(&mut b, "item 9 (walk budget)");
    // The first filter's walk visits the `s/N` nodes in hash order, so it may or may not have
    // reached `s/7` before the budget ran out. Either the subscriber got the needle, or it is
    // still held and a subscriber to its exact topic (one path, never out of budget) gets it.
    let got_it =
        matches!(s.read(std::time::Duration::from_millis(500)), Read1::Packet(p) if p.kind() == 3);
    if !got_it {
        let (mut exact, _) = connected(port, V311, "sparse-exact", true);
        exact.send(&subscribe(V311, 1, &[("s/7/x", 1)]));
        expect_kind(&mut exact, 9, "SUBACK");
        assert_eq!(
            exact.expect_publish(WAIT).1,
            b"needle",
            "a held message was lost"
        );
    }
    survives(&mut b, "item 9 (walk budget, after)");
}

#[test]
fn item13_no_local_subscriber_does_not_get_its_own_held_message() {
    let mut b = broker_with_args(&["--workers", "2"]);
    let port = b.port();
    let (mut me, _) = connected(port, V5, "no-local-me", true);
    let (mut other, _) = connected(port, V5, "no-local-other", true);
    me.send(&publish(V5, "nl/t", b"own", 1, false));
    expect_kind(&mut me, 4, "PUBACK");
    other.send(&publish(V5, "nl/t", b"other", 1, false));
    expect_kind(&mut other, 4, "PUBACK");

    me.send(&subscribe(V5, 1, &[("nl/t", 0x04 | 1)])); // No Local, QoS 1
    expect_kind(&mut me, 9, "SUBACK");
    assert_eq!(me.expect_publish(WAIT).1, b"other");

    // Its own message stayed held: the next subscriber gets it ...
    let (mut third, _) = connected(port, V5, "no-local-third", true);
    third.send(&subscribe(V5, 1, &[("nl/#", 0)]));
    assert_eq!(third.expect_publish(WAIT).1, b"own");
    // ... and `me` never does: its next delivery is the one published after.
    other.send(&publish(V5, "nl/t", b"after", 0, false));
    assert_eq!(me.expect_publish(WAIT).1, b"after");
    survives(&mut b, "item 13");
}

#[test]
fn item15_unsubscribe_with_an_invalid_filter() {
    let mut b = broker_with_args(&["--workers", "2"]);
    let port = b.port();
    // MQTT 5: the UNSUBACK refuses that filter with 0x8F, the others are handled.
    let (mut c, _) = connected(port, V5, "unsub-v5", true);
    c.send(&subscribe(V5, 1, &[("ok/t", 0)]));
    expect_kind(&mut c, 9, "SUBACK");
    c.send(&unsubscribe(V5, 2, &["a/#/b", "ok/t", "never"]));
    let unsuback = expect_kind(&mut c, 11, "UNSUBACK");
    assert_eq!(ack_codes(V5, &unsuback.body), [0x8f, 0x00, 0x11]);
    sync(&mut c, "still/connected");

    // MQTT 3.1.1 has no UNSUBACK codes: the connection is closed as a protocol violation.
    let (mut old, _) = connected(port, V311, "unsub-v311", true);
    let logged = b.log_lines().len();
    old.send(&unsubscribe(V311, 1, &["a/#/b"]));
    old.expect_closed(WAIT);
    assert!(
        b.log_lines().wait_until(WAIT, |l| l[logged..]
            .iter()
            .any(|l| l.contains("UNSUBSCRIBE with an invalid topic filter"))),
        "a log line names the violation"
    );
    survives(&mut b, "item 15");
}
