//! Issue 11 ("Hardening"), the session items, against the release binary with real TCP clients:
//! session-expiry timers (7), assigned client identifiers (11), 3.1.1 QoS 2 pipelining (12),
//! PUBREC to a QoS 1 delivery (14), taking over a clean session (17), acknowledgement protocol
//! violations and the CONNACK size (18), MQTT 3.1 (19).
//!
//! Each scenario ends with a fresh client's QoS 1 round trip on every worker and checks that the
//! broker process still runs.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use musqratt_test_support::hostile::{self, ack, publish, publish_packet_id};
use musqratt_test_support::raw::{packet, string, Packet, Raw, Read1, Version};

const WORKERS: usize = 2;
/// A quiet interval in which nothing should arrive (only used to assert an absence).
const QUIET: Duration = Duration::from_millis(500);

fn start() -> Broker {
    broker_with_args(&["--workers", "2"])
}

fn still_serving(b: &mut Broker, item: &str) {
    hostile::round_trip_every_worker(b.port(), WORKERS, item);
    assert!(b.is_running(), "{item}: the broker process exited");
}

/// What a hand-built CONNECT carries.
#[derive(Clone, Default)]
struct Conn<'a> {
    clean: bool,
    id: &'a str,
    /// MQTT 5 properties of CONNECT, already encoded (id, value); None = 3.1.1.
    v5_props: Option<Vec<u8>>,
    /// (topic, payload, v5 will properties).
    will: Option<(&'a str, &'a str, Vec<u8>)>,
    /// MQTT 3.1: protocol name `MQIsdp`, level 3.
    v31: bool,
}

impl Conn<'_> {
    fn bytes(&self) -> Vec<u8> {
        let mut body = if self.v31 {
            let mut b = string(b"MQIsdp");
            b.push(3);
            b
        } else {
            let mut b = string(b"MQTT");
            b.push(if self.v5_props.is_some() { 5 } else { 4 });
            b
        };
        let mut flags = u8::from(self.clean) << 1;
        if self.will.is_some() {
            flags |= 0b0000_1100; // will flag, will QoS 1
        }
        body.push(flags);
        body.extend_from_slice(&60u16.to_be_bytes());
        if let Some(p) = &self.v5_props {
            body.extend(raw_varint(p.len()));
            body.extend_from_slice(p);
        }
        body.extend(string(self.id.as_bytes()));
        if let Some((topic, payload, props)) = &self.will {
            if self.v5_props.is_some() {
                body.extend(raw_varint(props.len()));
                body.extend_from_slice(props);
            }
            body.extend(string(topic.as_bytes()));
            body.extend(string(payload.as_bytes()));
        }
        packet(0x10, &body)
    }

    fn version(&self) -> Version {
        if self.v5_props.is_some() {
            Version::V5
        } else {
            Version::V311
        }
    }

    /// Opens a connection, sends this CONNECT and returns it with the CONNACK.
    fn open(&self, port: u16) -> (Raw, Packet) {
        let mut c = Raw::tcp(port, self.version());
        c.send(&self.bytes());
        let p = c.expect_packet(WAIT);
        assert_eq!(p.kind(), 2, "expected CONNACK, got {p:?}");
        (c, p)
    }
}

fn raw_varint(n: usize) -> Vec<u8> {
    musqratt_test_support::raw::varint(n)
}

fn u32_prop(id: u8, v: u32) -> Vec<u8> {
    let mut p = vec![id];
    p.extend_from_slice(&v.to_be_bytes());
    p
}

const SESSION_EXPIRY: u8 = 0x11;
const WILL_DELAY: u8 = 0x18;
const MAXIMUM_PACKET_SIZE: u8 = 0x27;
const ASSIGNED_CLIENT_ID: u8 = 0x12;

/// CONNACK: (session present, return/reason code).
fn connack(p: &Packet) -> (bool, u8) {
    (
        p.body.first() == Some(&1),
        p.body.get(1).copied().unwrap_or(0xff),
    )
}

/// The Assigned Client Identifier of a v5 CONNACK, if any.
fn assigned_id(p: &Packet) -> Option<String> {
    let (len, n) = musqratt_test_support::raw::read_varint(p.body.get(2..)?);
    let props = p.body.get(2 + n..2 + n + len)?;
    let mut at = 0;
    while let Some(&id) = props.get(at) {
        at += 1;
        match id {
            ASSIGNED_CLIENT_ID => {
                let l = usize::from(u16::from_be_bytes([props[at], props[at + 1]]));
                return Some(String::from_utf8_lossy(&props[at + 2..at + 2 + l]).into_owned());
            }
            0x13 | 0x21 | 0x22 => at += 2,        // two-byte integers
            0x11 | 0x27 => at += 4,               // four-byte integers
            0x24 | 0x25 | 0x28..=0x2A => at += 1, // bytes
            other => panic!("unexpected CONNACK property {other:#04x}"),
        }
    }
    None
}

fn subscribe_ok(c: &mut Raw, filter: &str, qos: u8) {
    c.send(&musqratt_test_support::raw::subscribe(
        c.version, 1, filter, qos,
    ));
    let p = c.expect_packet(WAIT);
    assert_eq!(p.kind(), 9, "expected SUBACK, got {p:?}");
}

/// Reads until a PUBLISH arrives; returns it.
fn next_publish(c: &mut Raw) -> Packet {
    loop {
        let p = c.expect_packet(WAIT);
        if p.kind() == 3 {
            return p;
        }
    }
}

/// The payload of a PUBLISH body (topic, packet id when QoS > 0, v5 properties, payload).
fn payload_of(c: &Raw, p: &Packet) -> Vec<u8> {
    let tlen = usize::from(u16::from_be_bytes([p.body[0], p.body[1]]));
    let mut at = 2 + tlen;
    if (p.first >> 1) & 3 > 0 {
        at += 2;
    }
    if c.version == Version::V5 {
        let (plen, n) = musqratt_test_support::raw::read_varint(&p.body[at..]);
        at += n + plen;
    }
    p.body[at..].to_vec()
}

/// No PUBLISH (and no other packet) arrives within `QUIET`.
fn expect_no_publish(c: &mut Raw) {
    match c.read(QUIET) {
        Read1::TimedOut => {}
        Read1::Packet(p) if p.kind() == 3 => panic!("unexpected PUBLISH {p:?}"),
        other => panic!("unexpected {other:?}"),
    }
}

fn v5_persistent(id: &str, expiry: u32) -> Conn<'_> {
    Conn {
        clean: false,
        id,
        v5_props: Some(u32_prop(SESSION_EXPIRY, expiry)),
        ..Conn::default()
    }
}

// ---- item 7 ---------------------------------------------------------------------------------

/// A client that reconnects over and over with a long Session Expiry and a delayed will: every
/// reconnect cancels the deadlines of the previous disconnect (the core's timer map stays at one
/// entry per deadline of an offline session; `Broker::timer_count`, asserted exactly in the core's
/// `session_hardening::item07_*`). Over TCP: the session survives every cycle, the delayed will is
/// never published, the broker keeps serving.
#[test]
fn item07_reconnect_loop_cancels_session_expiry_and_will_timers() {
    let mut b = start();
    let port = b.port();
    let mut watcher = Raw::subscriber(port, Version::V311, "will-watcher", "cycler/will");
    let c = Conn {
        will: Some(("cycler/will", "gone", u32_prop(WILL_DELAY, 3_600))),
        ..v5_persistent("cycler", 86_400)
    };
    let rss_before = hostile::rss_kib(b.pid());
    for i in 0..300 {
        let (conn, ack) = c.open(port);
        assert_eq!(connack(&ack), (i > 0, 0), "cycle {i}");
        drop(conn); // abrupt close: the will is delayed, the session kept
    }
    let (_c, ack) = c.open(port);
    assert_eq!(connack(&ack), (true, 0));
    expect_no_publish(&mut watcher);
    // Memory: a few hundred cycles must not show; the bound is generous on purpose.
    let rss_after = hostile::rss_kib(b.pid());
    assert!(
        rss_after < rss_before + 16 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    still_serving(&mut b, "item 7");
}

// ---- item 11 --------------------------------------------------------------------------------

/// Assigned client identifiers are 128 random bits, never repeat, and never resume a session,
/// even with Clean Start 0 and sessions planted under other assigned ids.
#[test]
fn item11_assigned_client_ids_are_random_and_never_resume_a_session() {
    let mut b = start();
    let port = b.port();
    let mut seen = HashSet::new();
    for _ in 0..30 {
        // Clean Start 0, long expiry, empty id: each leaves a persistent session with a
        // subscription under its assigned id (an attacker's plant).
        let (mut c, ack) = v5_persistent("", 3_600).open(port);
        assert_eq!(connack(&ack), (false, 0), "Session Present must be 0");
        let id = assigned_id(&ack).expect("an Assigned Client Identifier");
        let hex = id.strip_prefix("musqratt-").unwrap_or("");
        assert!(
            hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
            "not 128 random bits: {id}"
        );
        assert!(seen.insert(id.clone()), "assigned id {id} repeated");
        subscribe_ok(&mut c, "planted/#", 1);
    }
    // The old scheme was salt + counter: the ids differ in more than a counter's last digits.
    let prefixes: HashSet<_> = seen.iter().map(|id| &id[..17]).collect();
    assert!(prefixes.len() > 1, "assigned ids share a prefix: {seen:?}");
    still_serving(&mut b, "item 11");
}

// ---- item 12 --------------------------------------------------------------------------------

/// A 3.1.1 client pipelines 100 QoS 2 PUBLISH before any PUBREL (beyond `max_inflight` = 64):
/// all 100 get a PUBREC, and a subscriber gets all 100.
#[test]
fn item12_v311_client_pipelining_100_qos2_publish_gets_100_pubrecs() {
    let mut b = start();
    let port = b.port();
    let mut sub = Raw::subscriber(port, Version::V311, "q2-sub", "q2/t");
    let mut publ = Raw::connect(port, Version::V311, "q2-pub");
    let mut burst = Vec::new();
    for id in 1..=100u16 {
        burst.extend(publish(
            Version::V311,
            b"q2/t",
            id.to_string().as_bytes(),
            2,
            id,
        ));
    }
    publ.send(&burst);
    let mut recs = HashSet::new();
    while recs.len() < 100 {
        let p = publ.expect_packet(WAIT);
        assert_eq!(p.kind(), 5, "expected PUBREC, got {p:?}");
        recs.insert(u16::from_be_bytes([p.body[0], p.body[1]]));
    }
    let mut rels = Vec::new();
    for id in 1..=100u16 {
        rels.extend(ack(0x62, id));
    }
    publ.send(&rels);
    for _ in 0..100 {
        assert_eq!(publ.expect_packet(WAIT).kind(), 7, "expected PUBCOMP");
    }
    let mut got = HashSet::new();
    while got.len() < 100 {
        let p = next_publish(&mut sub);
        got.insert(payload_of(&sub, &p));
    }
    still_serving(&mut b, "item 12");
}

/// The same with rumqttc's 3.1.1 client, which pipelines QoS 2 with its default settings.
#[test]
fn item12_rumqttc_v311_qos2_burst_is_delivered_in_full() {
    let mut b = start();
    let port = b.port();
    let (sub, _) = v4::connect(port, "rq-sub", false);
    sub.subscribe("rq/t", 2);
    let (publ, _) = v4::connect(port, "rq-pub", false);
    for i in 0..100u32 {
        publ.client
            .publish("rq/t", v4::qos(2), false, i.to_string().into_bytes())
            .unwrap();
    }
    for _ in 0..100 {
        publ.inbox.wait("PUBCOMP", |e| *e == Ev::PubComp);
    }
    let mut got = HashSet::new();
    while got.len() < 100 {
        got.insert(sub.inbox.expect_publish().payload);
    }
    still_serving(&mut b, "item 12 (rumqttc)");
}

// ---- item 14 --------------------------------------------------------------------------------

/// A subscriber with a persistent session that received one delivery of `qos` on `topic`.
fn one_delivery(port: u16, id: &str, topic: &str, qos: u8) -> (Raw, u16) {
    let (mut sub, _) = v5_persistent(id, 600).open(port);
    subscribe_ok(&mut sub, topic, qos);
    let mut publ = Raw::connect(port, Version::V311, &format!("{id}-pub"));
    publ.send(&publish(Version::V311, topic.as_bytes(), b"m", qos, 1));
    let p = next_publish(&mut sub);
    let pid = publish_packet_id(&p.body).expect("packet id");
    (sub, pid)
}

/// PUBREC in answer to a QoS 1 delivery: closed with 0x82, and on resumption the PUBLISH is
/// redelivered (DUP), not a PUBREL.
#[test]
fn item14_pubrec_to_a_qos1_delivery_is_a_protocol_error_and_the_publish_is_redelivered() {
    let mut b = start();
    let port = b.port();
    let (mut sub, pid) = one_delivery(port, "q1-sub", "q1/t", 1);
    sub.send(&ack(0x50, pid));
    sub.expect_disconnect(0x82, WAIT);
    assert!(b.wait_for_log("PUBREC for a QoS 1 delivery", WAIT));
    let (mut again, ack) = v5_persistent("q1-sub", 600).open(port);
    assert_eq!(connack(&ack), (true, 0));
    let p = again.expect_packet(WAIT);
    assert_eq!(p.kind(), 3, "expected the PUBLISH again, got {p:?}");
    assert_eq!(p.first & 0x0f, 0x0a, "DUP, QoS 1: {p:?}");
    still_serving(&mut b, "item 14");
}

// ---- item 17 --------------------------------------------------------------------------------

/// Taking over a clean session (3.1.1 CleanSession=1, v5 Session Expiry 0) with a persistent
/// CONNECT: Session Present 0 and none of the old subscriptions.
#[test]
fn item17_takeover_of_a_clean_session_with_a_persistent_connect_inherits_nothing() {
    let mut b = start();
    let port = b.port();
    for (v, id) in [(Version::V311, "clean-311"), (Version::V5, "clean-5")] {
        let clean = Conn {
            clean: true,
            id,
            v5_props: (v == Version::V5).then(Vec::new),
            ..Conn::default()
        };
        let (mut old, _) = clean.open(port);
        subscribe_ok(&mut old, "secret/#", 1);
        let persistent = Conn {
            clean: false,
            v5_props: (v == Version::V5).then(|| u32_prop(SESSION_EXPIRY, 600)),
            ..clean.clone()
        };
        let (mut new, ack) = persistent.open(port);
        assert_eq!(connack(&ack), (false, 0), "{id}: Session Present");
        subscribe_ok(&mut new, "mine", 1);
        let mut publ = Raw::connect(port, Version::V311, &format!("{id}-pub"));
        publ.send(&publish(Version::V311, b"secret/x", b"not yours", 1, 1));
        publ.send(&publish(Version::V311, b"mine", b"yours", 1, 2));
        let p = next_publish(&mut new);
        assert_eq!(
            payload_of(&new, &p),
            b"yours",
            "{id}: inherited a subscription"
        );
    }
    still_serving(&mut b, "item 17");
}

// ---- item 18 --------------------------------------------------------------------------------

/// Acknowledgements of the wrong kind for an id in flight close the connection with 0x82 and a log
/// line: PUBCOMP to a QoS 1 delivery, PUBACK to a QoS 2 one, PUBCOMP before PUBREC, PUBACK to a
/// PUBREL. An ack for an id not in flight stays harmless.
#[test]
fn item18_wrong_acknowledgements_close_the_connection() {
    let mut b = start();
    let port = b.port();
    let cases: [(&str, u8, &[u8]); 4] = [
        ("pubcomp-q1", 1, &[0x70]),
        ("puback-q2", 2, &[0x40]),
        ("pubcomp-early", 2, &[0x70]),
        ("puback-pubrel", 2, &[0x50, 0x40]),
    ];
    for (id, qos, acks) in cases {
        let (mut sub, pid) = one_delivery(port, id, &format!("acks/{id}"), qos);
        // An unknown id first: harmless.
        sub.send(&ack(0x40, pid.wrapping_add(1000)));
        for &a in acks {
            sub.send(&ack(a, pid));
            if a == 0x50 {
                assert_eq!(sub.expect_packet(WAIT).first, 0x62, "{id}: PUBREL");
            }
        }
        sub.expect_disconnect(0x82, WAIT);
    }
    assert!(b.wait_for_log("PUBACK for a packet id in a QoS 2 flow", WAIT));
    assert!(b.wait_for_log("PUBCOMP for a packet id not awaiting PUBCOMP", WAIT));
    still_serving(&mut b, "item 18 (acks)");
}

/// A v5 client with a small Maximum Packet Size gets a CONNACK that fits it (optional properties
/// dropped, the Assigned Client Identifier among them if need be), never a larger one.
#[test]
fn item18_connack_never_exceeds_the_clients_maximum_packet_size() {
    let mut b = start();
    let port = b.port();
    for max in [5u32, 10, 20, 40, 60] {
        let c = Conn {
            clean: true,
            id: "",
            v5_props: Some(u32_prop(MAXIMUM_PACKET_SIZE, max)),
            ..Conn::default()
        };
        let (mut conn, ack) = c.open(port);
        let size = 1 + raw_varint(ack.body.len()).len() + ack.body.len();
        assert!(
            size <= max as usize,
            "CONNACK of {size} bytes, maximum {max}"
        );
        assert_eq!(connack(&ack).1, 0);
        conn.send(&[0xc0, 0]); // PINGREQ: still connected
        assert_eq!(conn.expect_packet(WAIT).first, 0xd0);
    }
    still_serving(&mut b, "item 18 (CONNACK size)");
}

// ---- item 19 --------------------------------------------------------------------------------

/// MQTT 3.1 clients (`mosquitto_pub/sub -V mqttv31`) are served: QoS 0/1/2 round trip.
#[test]
fn item19_mqtt31_mosquitto_clients_round_trip() {
    let mut b = start();
    let port = b.port();
    let sub = Sub::start(
        port,
        &["-V", "mqttv31", "-q", "2", "-t", "v31/#", "-i", "sub31"],
    );
    for q in ["0", "1", "2"] {
        let topic = format!("v31/q{q}");
        mosquitto_pub(
            port,
            &[
                "-V", "mqttv31", "-q", q, "-t", &topic, "-m", q, "-i", "pub31",
            ],
        );
    }
    let got = sub.wait_messages(3, WAIT);
    let mut qos: Vec<u8> = got.iter().map(|m| m.qos).collect();
    qos.sort_unstable();
    assert_eq!(qos, [0, 1, 2], "{}", sub.output());
    drop(sub);
    still_serving(&mut b, "item 19");
}

/// MQTT 3.1's CONNACK: no Session Present flag even when a session is resumed; client ids of
/// 1..=23 characters, others refused with return code 2.
#[test]
fn item19_mqtt31_connack_and_client_id_rules() {
    let mut b = start();
    let port = b.port();
    let c = Conn {
        clean: false,
        id: "device-31",
        v31: true,
        ..Conn::default()
    };
    let (mut dev, ack) = c.open(port);
    assert_eq!(connack(&ack), (false, 0));
    subscribe_ok(&mut dev, "cmd/31", 1);
    drop(dev);
    let (mut dev, ack) = c.open(port);
    assert_eq!(ack.body, [0, 0], "3.1 CONNACK: reserved byte 0, accepted");
    // The session was resumed all the same: its subscription delivers.
    let mut publ = Raw::connect(port, Version::V311, "cmd-pub");
    publ.send(&publish(Version::V311, b"cmd/31", b"on", 1, 1));
    let p = next_publish(&mut dev);
    assert_eq!(payload_of(&dev, &p), b"on");

    let long = "x".repeat(24);
    for id in ["", long.as_str()] {
        let c = Conn {
            clean: true,
            id,
            v31: true,
            ..Conn::default()
        };
        let (mut conn, ack) = c.open(port);
        assert_eq!(connack(&ack), (false, 2), "id {id:?}: Identifier rejected");
        conn.expect_closed(WAIT);
    }
    let max = "y".repeat(23);
    let (_ok, ack) = Conn {
        clean: true,
        id: &max,
        v31: true,
        ..Conn::default()
    }
    .open(port);
    assert_eq!(connack(&ack), (false, 0));
    still_serving(&mut b, "item 19 (CONNACK)");
}
