//! MusQraTT's own semantics on top of MQTT (docs/design.md §3): held messages, message expiry, `$SYS`.
//! Driven with the Mosquitto command line clients.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::time::Duration;

const V311: &str = "mqttv311";
const V5: &str = "mqttv5";

/// Publish to a topic nobody subscribes to, then subscribe: the held messages arrive, in publish
/// order, and only once (a second subscriber gets nothing).
fn held_then_delivered_once(v: &str) {
    let b = broker();
    let port = b.port();
    let topic = format!("held/{v}");
    for m in ["one", "two", "three"] {
        mosquitto_pub(port, &["-V", v, "-q", "1", "-t", &topic, "-m", m]);
    }
    let got = mosquitto_sub(
        port,
        &["-V", v, "-q", "1", "-t", &topic, "-C", "3", "-W", "5"],
        WAIT * 2,
    );
    let payloads: Vec<&str> = got.iter().map(|m| m.payload.as_str()).collect();
    assert_eq!(
        payloads,
        ["one", "two", "three"],
        "held messages, in publish order"
    );
    assert!(got.iter().all(|m| m.qos == 1 && !m.retain), "{got:?}");

    let again = mosquitto_sub(
        port,
        &["-V", v, "-q", "1", "-t", &topic, "-W", "2"],
        WAIT * 2,
    );
    assert!(
        again.is_empty(),
        "held messages are delivered once, got again: {again:?}"
    );
}

#[test]
fn held_message_v311() {
    held_then_delivered_once(V311);
}

#[test]
fn held_message_v5() {
    held_then_delivered_once(V5);
}

/// Held messages go to a wildcard subscriber too, at min(publish QoS, granted QoS).
#[test]
fn held_message_wildcard_and_qos_downgrade() {
    let b = broker();
    mosquitto_pub(
        b.port(),
        &["-V", V5, "-q", "2", "-t", "hw/a/x", "-m", "deep"],
    );
    let got = mosquitto_sub(
        b.port(),
        &["-V", V5, "-q", "1", "-t", "hw/+/x", "-C", "1", "-W", "5"],
        WAIT * 2,
    );
    assert_eq!(got.len(), 1, "held message for a wildcard subscriber");
    assert_eq!(
        (got[0].topic.as_str(), got[0].payload.as_str(), got[0].qos),
        ("hw/a/x", "deep", 1)
    );
}

/// A retained publish is not also held: a subscriber gets it once, as retained.
#[test]
fn retained_is_not_held() {
    let b = broker();
    mosquitto_pub(
        b.port(),
        &["-V", V5, "-q", "1", "-r", "-t", "rnh", "-m", "r"],
    );
    let got = mosquitto_sub(
        b.port(),
        &["-V", V5, "-q", "1", "-t", "rnh", "-W", "2"],
        WAIT * 2,
    );
    assert_eq!(got.len(), 1, "exactly one copy: {got:?}");
    assert!(got[0].retain);
}

/// `--hold off`: plain MQTT, a publish with no subscriber is dropped.
#[test]
fn hold_off_drops_unmatched() {
    let b = broker_with_args(&["--hold", "off"]);
    mosquitto_pub(
        b.port(),
        &["-V", V5, "-q", "1", "-t", "nohold", "-m", "lost"],
    );
    let got = mosquitto_sub(
        b.port(),
        &["-V", V5, "-q", "1", "-t", "nohold", "-W", "2"],
        WAIT * 2,
    );
    assert!(got.is_empty(), "--hold off must not hold: {got:?}");
}

/// MQTT 5 Message Expiry Interval: an expired held message is never delivered; an unexpired one
/// is, with the remaining time.
#[test]
fn message_expiry_v5() {
    let b = broker();
    let port = b.port();
    mosquitto_pub(
        port,
        &[
            "-V",
            V5,
            "-q",
            "1",
            "-t",
            "exp/short",
            "-m",
            "stale",
            "-D",
            "publish",
            "message-expiry-interval",
            "1",
        ],
    );
    mosquitto_pub(
        port,
        &[
            "-V",
            V5,
            "-q",
            "1",
            "-t",
            "exp/long",
            "-m",
            "fresh",
            "-D",
            "publish",
            "message-expiry-interval",
            "600",
        ],
    );
    std::thread::sleep(Duration::from_millis(2500));
    let got = mosquitto_sub(
        port,
        &[
            "-V",
            V5,
            "-q",
            "1",
            "-t",
            "exp/short",
            "-t",
            "exp/long",
            "-W",
            "3",
        ],
        WAIT * 2,
    );
    let payloads: Vec<&str> = got.iter().map(|m| m.payload.as_str()).collect();
    assert_eq!(payloads, ["fresh"], "only the unexpired message");
}

/// `$SYS/broker/...` statistics are published as retained topics.
#[test]
fn sys_topics() {
    const NAMES: [&str; 8] = [
        "$SYS/broker/version",
        "$SYS/broker/uptime",
        "$SYS/broker/clients/connected",
        "$SYS/broker/topics/count",
        "$SYS/broker/messages/received",
        "$SYS/broker/messages/sent",
        "$SYS/broker/bytes/received",
        "$SYS/broker/bytes/sent",
    ];
    let b = broker();
    let mut args = vec!["-V", V5];
    for n in NAMES {
        args.extend(["-t", n]);
    }
    let sub = Sub::start(b.port(), &args);
    let all_seen = |ms: &[Msg]| NAMES.iter().all(|n| ms.iter().any(|m| m.topic == *n));
    let got = sub.wait_until(Duration::from_secs(20), all_seen);
    let seen: BTreeMap<String, String> = got.into_iter().map(|m| (m.topic, m.payload)).collect();
    let missing: Vec<&str> = NAMES
        .iter()
        .copied()
        .filter(|n| !seen.contains_key(*n))
        .collect();
    assert!(missing.is_empty(), "no value for {missing:?}; got {seen:?}");
    assert!(!seen["$SYS/broker/version"].is_empty());
    // Numbers; the uptime may carry a unit like Mosquitto's "12 seconds".
    for n in &NAMES[1..] {
        let first = seen[*n].split_whitespace().next().unwrap_or("");
        assert!(
            first.parse::<u64>().is_ok(),
            "{n} = {:?} is not a number",
            seen[*n]
        );
    }
    // `#` does not match `$SYS` topics (MQTT 4.7.2).
    let hash = mosquitto_sub(b.port(), &["-V", V5, "-t", "#", "-W", "2"], WAIT * 2);
    assert!(hash.iter().all(|m| !m.topic.starts_with('$')), "{hash:?}");
}

/// Keep-alive is enforced (at 1.5 × keep-alive): a silent client is closed and its will is sent.
#[test]
fn keep_alive_timeout_sends_will() {
    use common::raw::{Raw, Version};
    let b = broker();
    let watcher = Sub::start(b.port(), &["-V", V311, "-t", "ka/will"]);
    let mut silent = Raw::tcp(b.port(), Version::V311);
    #[rustfmt::skip]
    silent.send(&[
        0x10, 0x20,                                  // CONNECT, remaining length 32
        0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04,    // protocol name, level 4 (3.1.1)
        0x06,                                        // flags: will (QoS 0, no retain) + clean session
        0x00, 0x01,                                  // keep alive: 1 s
        0x00, 0x02, b'k', b'a',                      // client id "ka"
        0x00, 0x07, b'k', b'a', b'/', b'w', b'i', b'l', b'l', // will topic "ka/will"
        0x00, 0x07, b't', b'i', b'm', b'e', b'o', b'u', b't', // will message "timeout"
    ]);
    let connack = silent.expect_packet(WAIT);
    assert_eq!(
        (connack.first, connack.body.as_slice()),
        (0x20, &[0u8, 0][..])
    );
    // Then send nothing: the broker must give up on us and publish the will.
    silent.expect_closed(WAIT);
    let got = watcher.wait_messages(1, WAIT);
    assert_eq!(
        got.len(),
        1,
        "no will after the keep-alive timeout: {}",
        watcher.output()
    );
    assert_eq!(got[0].payload, "timeout");
}
