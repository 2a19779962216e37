//! Our semantics (docs/design.md §3) and MQTT's timers, with explicit time — no
//! sleeps: held messages, message expiry, topic expiry, session expiry,
//! keep-alive, wills with will delay, `$SYS`.

mod common;

use std::time::Duration;

use common::*;
use musqratt_codec::{
    Packet,
    ProtocolVersion::{V311, V5},
    QoS, ReasonCode,
};
use musqratt_core::BrokerConfig;

const SEC: Duration = Duration::from_secs(1);

#[test]
fn held_messages_are_delivered_after_suback_in_order_once() {
    let mut h = Harness::new();
    let publ = h.connect(V311, "pub");
    for i in 1..=3 {
        h.publish(publ, "held/t", &format!("m{i}"), QoS::AtLeastOnce, false);
    }
    h.publish(publ, "held/other", "o", QoS::AtMostOnce, false);
    assert_eq!(h.broker.held_message_count(), 4);
    assert_eq!(
        h.broker.topic_count(),
        2,
        "a topic with held messages exists"
    );

    let sub = h.connect(V5, "sub");
    let got = h.subscribe(sub, "held/t", QoS::ExactlyOnce);
    assert!(matches!(got[0], Packet::SubAck(_)), "SUBACK first");
    assert_eq!(payloads(&got), ["m1", "m2", "m3"]);
    assert!(
        publishes(&got).iter().all(|p| p.qos == QoS::AtLeastOnce),
        "min(publish, granted)"
    );

    // Delivered once: a second subscriber gets nothing.
    let sub2 = h.connect(V5, "sub2");
    assert!(publishes(&h.subscribe(sub2, "held/t", QoS::AtLeastOnce)).is_empty());
    // Wildcard subscriptions collect held messages too.
    assert_eq!(
        payloads(&h.subscribe(sub2, "held/#", QoS::AtLeastOnce)),
        ["o"]
    );
    assert_eq!(h.broker.held_message_count(), 0);
}

#[test]
fn retained_and_dollar_topics_are_not_held_and_hold_can_be_disabled() {
    let mut h = Harness::new();
    let publ = h.connect(V5, "pub");
    h.publish(publ, "r", "retained", QoS::AtMostOnce, true);
    assert_eq!(h.broker.held_message_count(), 0);

    let config = BrokerConfig {
        hold_enabled: false,
        ..Default::default()
    };
    let mut h = Harness::with_config(config);
    let publ = h.connect(V5, "pub");
    let acks = h.publish(publ, "nobody", "x", QoS::AtLeastOnce, false);
    assert!(
        matches!(&acks[..], [Packet::PubAck(a)] if a.reason_code == ReasonCode::NO_MATCHING_SUBSCRIBERS)
    );
    let sub = h.connect(V5, "sub");
    assert!(publishes(&h.subscribe(sub, "nobody", QoS::AtLeastOnce)).is_empty());
}

#[test]
fn hold_queue_is_bounded_dropping_the_oldest() {
    let config = BrokerConfig {
        hold_max_messages_per_topic: 2,
        ..Default::default()
    };
    let mut h = Harness::with_config(config);
    let publ = h.connect(V5, "pub");
    for i in 1..=4 {
        h.publish(publ, "b", &i.to_string(), QoS::AtMostOnce, false);
    }
    let sub = h.connect(V5, "sub");
    assert_eq!(
        payloads(&h.subscribe(sub, "b", QoS::AtMostOnce)),
        ["3", "4"]
    );
}

#[test]
fn message_expiry_applies_to_held_and_forwards_remaining_time() {
    let mut h = Harness::new();
    let publ = h.connect(V5, "pub");
    let mut p = publish("exp/short", "gone", QoS::AtLeastOnce, false);
    p.properties.message_expiry_interval = Some(1);
    h.send(publ, Packet::Publish(p));
    let mut p = publish("exp/long", "kept", QoS::AtLeastOnce, false);
    p.properties.message_expiry_interval = Some(10);
    h.send(publ, Packet::Publish(p));
    h.recv(publ);

    h.advance(2 * SEC);
    assert_eq!(
        h.broker.topic_count(),
        1,
        "the expired message's topic ceased to exist"
    );
    let sub = h.connect(V5, "sub");
    let got = h.subscribe(sub, "exp/#", QoS::AtLeastOnce);
    assert_eq!(payloads(&got), ["kept"]);
    assert_eq!(
        publishes(&got)[0].properties.message_expiry_interval,
        Some(8)
    );
}

#[test]
fn default_message_expiry_applies_to_publishers_that_set_none() {
    let config = BrokerConfig {
        message_default_expiry_secs: 5,
        ..Default::default()
    };
    let mut h = Harness::with_config(config);
    let publ = h.connect(V311, "pub");
    h.publish(publ, "d", "x", QoS::AtLeastOnce, false);
    h.advance(6 * SEC);
    let sub = h.connect(V311, "sub");
    assert!(publishes(&h.subscribe(sub, "d", QoS::AtLeastOnce)).is_empty());
}

#[test]
fn topic_expires_when_its_last_subscriber_leaves() {
    let mut h = Harness::new();
    let a = h.connect(V5, "a");
    let b = h.connect(V311, "b");
    h.subscribe(a, "t/1", QoS::AtMostOnce);
    h.subscribe(b, "t/1", QoS::AtMostOnce);
    h.subscribe(b, "t/+", QoS::AtMostOnce);
    assert_eq!(h.broker.topic_count(), 2);
    h.send(
        a,
        Packet::Disconnect(musqratt_codec::Disconnect::new(ReasonCode::SUCCESS)),
    );
    assert_eq!(h.broker.topic_count(), 2);
    h.drop_socket(b); // clean session: the session ends with the connection
    assert_eq!(h.broker.topic_count(), 0);
    assert_eq!(h.broker.session_count(), 0);
}

#[test]
fn session_expiry_keeps_then_ends_an_offline_session() {
    let mut h = Harness::new();
    let mut c = connect(V5, "s");
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(10);
    let (sub, _) = h.connect_with(c.clone());
    h.subscribe(sub, "s/t", QoS::AtLeastOnce);
    h.drop_socket(sub);
    let publ = h.connect(V5, "pub");

    h.advance(5 * SEC);
    h.publish(publ, "s/t", "queued", QoS::AtLeastOnce, false);
    assert_eq!(
        h.broker.held_message_count(),
        0,
        "an offline subscriber still matches"
    );
    let (back, got) = h.connect_with(c.clone());
    assert!(matches!(&got[0], Packet::ConnAck(a) if a.session_present));
    assert_eq!(payloads(&got), ["queued"]);
    h.send(
        back,
        Packet::PubAck(ack(publishes(&got)[0].packet_id.unwrap())),
    );
    h.drop_socket(back);

    h.advance(10 * SEC);
    assert_eq!(
        h.broker.session_count(),
        1,
        "only the publisher's session is left"
    );
    assert_eq!(h.broker.topic_count(), 0);
    h.publish(publ, "s/t", "now held", QoS::AtLeastOnce, false);
    assert_eq!(h.broker.held_message_count(), 1);
    let (_, got) = h.connect_with(c);
    assert!(matches!(&got[0], Packet::ConnAck(a) if !a.session_present));
}

#[test]
fn v311_persistent_session_uses_the_default_expiry() {
    let config = BrokerConfig {
        session_default_expiry_secs: 30,
        ..Default::default()
    };
    let mut h = Harness::with_config(config);
    let mut c = connect(V311, "old");
    c.clean_start = false;
    let (id, _) = h.connect_with(c.clone());
    h.subscribe(id, "x", QoS::AtLeastOnce);
    h.drop_socket(id);
    h.advance(29 * SEC);
    assert_eq!(h.broker.session_count(), 1);
    h.advance(2 * SEC);
    assert_eq!(h.broker.session_count(), 0);
}

#[test]
fn keep_alive_closes_at_one_and_a_half_times_and_sends_the_will() {
    let mut h = Harness::new();
    let watcher = h.connect(V311, "watcher");
    h.subscribe(watcher, "will/#", QoS::AtLeastOnce);
    let mut c = connect(V5, "sleepy");
    c.keep_alive = 10;
    c.will = Some(will("will/sleepy", "gone", None));
    let (id, _) = h.connect_with(c);

    h.advance(14 * SEC);
    assert!(!h.is_closed(id));
    h.send(id, Packet::PingReq);
    assert!(matches!(&h.recv(id)[..], [Packet::PingResp]));
    h.advance(14 * SEC);
    assert!(!h.is_closed(id), "PINGREQ restarted the keep-alive");
    h.advance(SEC + Duration::from_millis(1));
    assert!(h.is_closed(id));
    assert!(
        matches!(&h.recv(id)[..], [Packet::Disconnect(d)] if d.reason_code == ReasonCode::KEEP_ALIVE_TIMEOUT)
    );
    assert_eq!(payloads(&h.recv(watcher)), ["gone"]);
}

#[test]
fn server_keep_alive_bounds_the_client() {
    let config = BrokerConfig {
        max_keepalive_secs: 20,
        ..Default::default()
    };
    let mut h = Harness::with_config(config);
    let mut c = connect(V5, "c");
    c.keep_alive = 0;
    let (id, got) = h.connect_with(c);
    assert!(matches!(&got[0], Packet::ConnAck(a) if a.properties.server_keep_alive == Some(20)));
    h.advance(31 * SEC);
    assert!(h.is_closed(id));
}

#[test]
fn will_delay_waits_and_is_cancelled_by_reconnect() {
    let mut h = Harness::new();
    let watcher = h.connect(V5, "watcher");
    h.subscribe(watcher, "w", QoS::AtLeastOnce);

    let mut c = connect(V5, "delayed");
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(100);
    c.will = Some(will("w", "late will", Some(5)));
    let (id, _) = h.connect_with(c.clone());
    h.drop_socket(id);
    h.advance(4 * SEC);
    assert!(h.recv(watcher).is_empty());
    h.advance(SEC);
    assert_eq!(payloads(&h.recv(watcher)), ["late will"]);

    // Reconnecting within the delay cancels the will.
    let (id, _) = h.connect_with(c.clone());
    h.drop_socket(id);
    h.advance(2 * SEC);
    h.connect_with(c);
    h.advance(10 * SEC);
    assert!(h.recv(watcher).is_empty());
}

#[test]
fn will_is_deleted_by_normal_disconnect_and_kept_by_0x04() {
    let mut h = Harness::new();
    let watcher = h.connect(V5, "watcher");
    h.subscribe(watcher, "w", QoS::AtLeastOnce);
    let mut c = connect(V5, "polite");
    c.will = Some(will("w", "should not appear", None));
    let (id, _) = h.connect_with(c.clone());
    h.send(
        id,
        Packet::Disconnect(musqratt_codec::Disconnect::new(ReasonCode::SUCCESS)),
    );
    assert!(h.recv(watcher).is_empty());

    c.will = Some(will("w", "asked for", None));
    let (id, _) = h.connect_with(c);
    h.send(
        id,
        Packet::Disconnect(musqratt_codec::Disconnect::new(
            ReasonCode::DISCONNECT_WITH_WILL_MESSAGE,
        )),
    );
    assert_eq!(payloads(&h.recv(watcher)), ["asked for"]);
}

#[test]
fn sys_topics_are_published_and_hidden_from_hash() {
    let mut h = Harness::new();
    let all = h.connect(V5, "all");
    h.subscribe(all, "#", QoS::AtMostOnce);
    h.advance(SEC);
    assert!(h.recv(all).is_empty(), "# does not match $SYS");

    let sys = h.connect(V311, "sys");
    let got = h.subscribe(sys, "$SYS/broker/#", QoS::AtMostOnce);
    let topics: Vec<&str> = publishes(&got).iter().map(|p| p.topic.as_str()).collect();
    for t in [
        "$SYS/broker/version",
        "$SYS/broker/uptime",
        "$SYS/broker/clients/connected",
        "$SYS/broker/topics/count",
        "$SYS/broker/messages/received",
        "$SYS/broker/messages/sent",
        "$SYS/broker/bytes/received",
        "$SYS/broker/bytes/sent",
    ] {
        assert!(topics.contains(&t), "{t} missing from {topics:?}");
    }
    // Republished every interval to current subscribers.
    h.advance(Duration::from_secs(10));
    let again = h.recv(sys);
    let clients = publishes(&again)
        .into_iter()
        .find(|p| p.topic == "$SYS/broker/clients/connected")
        .unwrap();
    assert_eq!(clients.payload.as_ref(), b"2");
    // Clients cannot publish into $SYS.
    h.publish(all, "$SYS/broker/version", "fake", QoS::AtMostOnce, true);
    h.advance(Duration::from_secs(10));
    let v = publishes(&h.recv(sys))
        .into_iter()
        .find(|p| p.topic == "$SYS/broker/version")
        .map(|p| p.payload.clone());
    assert!(v.is_some_and(|v| v.as_ref() != b"fake"));
}
