//! Interoperability with rumqttc, a third-party Rust client: MQTT 3.1.1 (`rumqttc`) and MQTT 5
//! (`rumqttc::v5`).

mod common;

use common::*;
use rumqttc::v5::mqttbytes::v5::PublishProperties;
use std::time::Duration;

// ---------------------------------------------------------------- MQTT 3.1.1

#[test]
fn v311_qos_round_trip() {
    let b = broker();
    let (sub, _) = v4::connect(b.port(), "v4-sub", false);
    let (publ, _) = v4::connect(b.port(), "v4-pub", false);
    for q in 0..=2u8 {
        let topic = format!("rq/{q}");
        sub.subscribe(&topic, q);
        publ.publish(&topic, q, false, format!("payload {q}").as_bytes());
        let got = sub.inbox.expect_publish();
        assert_eq!(got.topic, topic);
        assert_eq!(got.payload, format!("payload {q}").as_bytes());
        assert_eq!(got.qos, q);
        assert!(!got.retain);
    }
    // A subscription granted at QoS 0 downgrades a QoS 2 publish.
    sub.subscribe("down", 0);
    publ.publish("down", 2, false, b"x");
    assert_eq!(sub.inbox.expect_publish().qos, 0);
    sub.inbox.expect_no_publish(Duration::from_millis(300));
}

#[test]
fn v311_retained() {
    let b = broker();
    let (publ, _) = v4::connect(b.port(), "v4-pub", false);
    publ.publish("r/t", 1, true, b"retained");
    let (sub, _) = v4::connect(b.port(), "v4-sub", false);
    sub.subscribe("r/#", 1);
    let got = sub.inbox.expect_publish();
    assert_eq!(
        (got.topic.as_str(), got.payload.as_slice()),
        ("r/t", &b"retained"[..])
    );
    assert!(got.retain);
}

#[test]
fn v311_persistent_session() {
    let b = broker();
    let (sub, sp) = v4::connect(b.port(), "v4-persist", true);
    assert!(!sp, "no session yet");
    sub.subscribe("p/t", 1);
    sub.disconnect();

    let (publ, _) = v4::connect(b.port(), "v4-pub", false);
    publ.publish("p/t", 1, false, b"queued");

    let (sub, sp) = v4::connect(b.port(), "v4-persist", true);
    assert!(sp, "session present on reconnect");
    let got = sub.inbox.expect_publish();
    assert_eq!(got.payload, b"queued");
    assert_eq!(got.qos, 1);
}

#[test]
fn v311_held_message() {
    let b = broker();
    let (publ, _) = v4::connect(b.port(), "v4-pub", false);
    publ.publish("h/t", 1, false, b"held");
    let (sub, _) = v4::connect(b.port(), "v4-sub", false);
    sub.subscribe("h/t", 1);
    assert_eq!(sub.inbox.expect_publish().payload, b"held");
}

// ---------------------------------------------------------------- MQTT 5

#[test]
fn v5_qos_round_trip() {
    let b = broker();
    let (sub, _) = v5::connect(b.port(), "v5-sub", None);
    let (publ, _) = v5::connect(b.port(), "v5-pub", None);
    for q in 0..=2u8 {
        let topic = format!("rq/{q}");
        sub.subscribe(&topic, q);
        publ.publish(&topic, q, false, format!("payload {q}").as_bytes());
        let got = sub.inbox.expect_publish();
        assert_eq!(got.topic, topic);
        assert_eq!(got.payload, format!("payload {q}").as_bytes());
        assert_eq!(got.qos, q);
    }
}

#[test]
fn v5_retained() {
    let b = broker();
    let (publ, _) = v5::connect(b.port(), "v5-pub", None);
    publ.publish("r/t", 2, true, b"retained");
    let (sub, _) = v5::connect(b.port(), "v5-sub", None);
    sub.subscribe("r/t", 2);
    let got = sub.inbox.expect_publish();
    assert_eq!(got.payload, b"retained");
    assert!(got.retain);
    assert_eq!(got.qos, 2);
}

/// Publish once with topic + alias, then with an empty topic + the same alias: the subscriber
/// sees the full topic name both times.
#[test]
fn v5_topic_alias() {
    let b = broker();
    let (sub, _) = v5::connect(b.port(), "v5-sub", None);
    sub.subscribe("alias/t", 1);
    let (publ, _) = v5::connect(b.port(), "v5-pub", None);
    let alias = || PublishProperties {
        topic_alias: Some(1),
        ..Default::default()
    };
    publ.publish_props("alias/t", 1, false, b"first", alias());
    publ.publish_props("", 1, false, b"second", alias());
    for want in [&b"first"[..], b"second"] {
        let got = sub.inbox.expect_publish();
        assert_eq!(got.topic, "alias/t");
        assert_eq!(got.payload, want);
    }
}

#[test]
fn v5_persistent_session() {
    let b = broker();
    let (sub, sp) = v5::connect(b.port(), "v5-persist", Some(300));
    assert!(!sp);
    sub.subscribe("p/t", 2);
    sub.disconnect();

    let (publ, _) = v5::connect(b.port(), "v5-pub", None);
    publ.publish("p/t", 2, false, b"queued");

    let (sub, sp) = v5::connect(b.port(), "v5-persist", Some(300));
    assert!(sp, "session present on reconnect");
    let got = sub.inbox.expect_publish();
    assert_eq!(got.payload, b"queued");
    assert_eq!(got.qos, 2);
}

/// The Message Expiry Interval is forwarded, never larger than what the publisher set.
#[test]
fn v5_message_expiry_forwarded() {
    let b = broker();
    let (sub, _) = v5::connect(b.port(), "v5-sub", None);
    sub.subscribe("e/t", 1);
    let (publ, _) = v5::connect(b.port(), "v5-pub", None);
    let props = PublishProperties {
        message_expiry_interval: Some(600),
        ..Default::default()
    };
    publ.publish_props("e/t", 1, false, b"x", props);
    let got = sub.inbox.expect_publish();
    let e = got.expiry.expect("message expiry interval forwarded");
    assert!(e > 0 && e <= 600, "remaining expiry {e}");
}
