//! MQTT flows through the sans-IO core: QoS 0/1/2 both ways, retained,
//! overlapping and shared subscriptions, topic aliases, Receive Maximum,
//! Maximum Packet Size, redelivery, session takeover, protocol errors.

mod common;

use common::*;
use musqratt_codec::{
    Disconnect, Packet,
    ProtocolVersion::{V311, V5},
    PubAck, QoS, ReasonCode, RetainHandling, SubscriptionOptions,
};

#[test]
fn qos0_qos1_qos2_delivery_both_versions() {
    for (pv, sv) in [(V311, V5), (V5, V311), (V5, V5), (V311, V311)] {
        let mut h = Harness::new();
        let sub = h.connect(sv, "sub");
        let publ = h.connect(pv, "pub");
        h.subscribe(sub, "a/b", QoS::ExactlyOnce);

        assert!(h
            .publish(publ, "a/b", "zero", QoS::AtMostOnce, false)
            .is_empty());
        let got = h.recv(sub);
        assert_eq!(payloads(&got), ["zero"]);
        assert_eq!(publishes(&got)[0].qos, QoS::AtMostOnce);

        let acks = h.publish(publ, "a/b", "one", QoS::AtLeastOnce, false);
        assert!(
            matches!(&acks[..], [Packet::PubAck(a)] if a.packet_id == 7 && a.reason_code == ReasonCode::SUCCESS)
        );
        let got = h.recv(sub);
        let p = publishes(&got)[0].clone();
        assert_eq!((p.qos, p.payload.as_ref()), (QoS::AtLeastOnce, &b"one"[..]));
        h.send(sub, Packet::PubAck(ack(p.packet_id.unwrap())));

        let recs = h.publish(publ, "a/b", "two", QoS::ExactlyOnce, false);
        assert!(matches!(&recs[..], [Packet::PubRec(a)] if a.packet_id == 7));
        // A retransmitted QoS 2 PUBLISH must not be delivered twice.
        let mut dup = publish("a/b", "two", QoS::ExactlyOnce, false);
        dup.dup = true;
        h.send(publ, Packet::Publish(dup));
        assert!(matches!(&h.recv(publ)[..], [Packet::PubRec(_)]));
        h.send(publ, Packet::PubRel(ack(7)));
        assert!(matches!(&h.recv(publ)[..], [Packet::PubComp(a)] if a.packet_id == 7));

        let got = h.recv(sub);
        assert_eq!(payloads(&got), ["two"]);
        let id = publishes(&got)[0].packet_id.unwrap();
        h.send(sub, Packet::PubRec(ack(id)));
        assert!(matches!(&h.recv(sub)[..], [Packet::PubRel(a)] if a.packet_id == id));
        h.send(sub, Packet::PubComp(ack(id)));
        assert!(h.recv(sub).is_empty());
    }
}

#[test]
fn retained_messages_and_retain_handling() {
    let mut h = Harness::new();
    let publ = h.connect(V5, "pub");
    h.publish(publ, "r/1", "kept", QoS::AtLeastOnce, true);
    h.publish(publ, "r/2", "also", QoS::AtMostOnce, true);

    let sub = h.connect(V5, "sub");
    let got = h.subscribe(sub, "r/+", QoS::AtLeastOnce);
    let p = publishes(&got);
    assert_eq!(payloads(&got), ["kept", "also"]);
    assert!(
        p.iter().all(|p| p.retain),
        "retained deliveries carry RETAIN"
    );

    // Retain Handling 1: only for a new subscription.
    let mut opts = SubscriptionOptions::new(QoS::AtLeastOnce);
    opts.retain_handling = RetainHandling::SendIfNew;
    assert!(publishes(&h.subscribe_opts(sub, "r/+", opts, None)).is_empty());
    opts.retain_handling = RetainHandling::DoNotSend;
    let other = h.connect(V5, "other");
    assert!(publishes(&h.subscribe_opts(other, "r/#", opts, None)).is_empty());

    // An empty retained payload deletes it.
    h.publish(publ, "r/1", "", QoS::AtMostOnce, true);
    let late = h.connect(V311, "late");
    assert_eq!(
        payloads(&h.subscribe(late, "r/#", QoS::AtMostOnce)),
        ["also"]
    );
}

#[test]
fn overlapping_subscriptions_deliver_once_at_max_qos_with_every_identifier() {
    let mut h = Harness::new();
    let sub = h.connect(V5, "sub");
    h.subscribe_opts(
        sub,
        "a/+",
        SubscriptionOptions::new(QoS::AtLeastOnce),
        Some(1),
    );
    h.subscribe_opts(
        sub,
        "a/#",
        SubscriptionOptions::new(QoS::ExactlyOnce),
        Some(2),
    );
    let publ = h.connect(V5, "pub");
    h.publish(publ, "a/b", "x", QoS::ExactlyOnce, false);
    let got = h.recv(sub);
    let p = publishes(&got);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].qos, QoS::ExactlyOnce);
    let mut ids = p[0].properties.subscription_identifiers.clone();
    ids.sort();
    assert_eq!(ids, [1, 2]);
}

#[test]
fn no_local_and_retain_as_published() {
    let mut h = Harness::new();
    let c = h.connect(V5, "c");
    let mut opts = SubscriptionOptions::new(QoS::AtMostOnce);
    opts.no_local = true;
    h.subscribe_opts(c, "loop", opts, None);
    h.publish(c, "loop", "mine", QoS::AtMostOnce, false);
    assert!(
        h.recv(c).is_empty(),
        "No Local: own messages are not echoed"
    );

    let s = h.connect(V5, "s");
    let mut rap = SubscriptionOptions::new(QoS::AtMostOnce);
    rap.retain_as_published = true;
    h.subscribe_opts(s, "rap", rap, None);
    let plain = h.connect(V5, "plain");
    h.subscribe(plain, "rap", QoS::AtMostOnce);
    h.publish(c, "rap", "r", QoS::AtMostOnce, true);
    assert!(publishes(&h.recv(s))[0].retain);
    assert!(!publishes(&h.recv(plain))[0].retain);
}

#[test]
fn shared_subscription_spreads_messages() {
    let mut h = Harness::new();
    let a = h.connect(V5, "a");
    let b = h.connect(V311, "b");
    h.subscribe(a, "$share/g/jobs/+", QoS::AtMostOnce);
    h.subscribe(b, "$share/g/jobs/+", QoS::AtMostOnce);
    let publ = h.connect(V5, "pub");
    for i in 0..10 {
        h.publish(publ, "jobs/x", &i.to_string(), QoS::AtMostOnce, false);
    }
    let (na, nb) = (publishes(&h.recv(a)).len(), publishes(&h.recv(b)).len());
    assert_eq!(na + nb, 10, "each message to exactly one member");
    assert_eq!((na, nb), (5, 5));
}

#[test]
fn topic_alias_inbound_and_outbound() {
    let mut h = Harness::new();
    let mut c = connect(V5, "sub");
    c.properties.topic_alias_maximum = Some(4);
    let (sub, _) = h.connect_with(c);
    h.subscribe(sub, "long/topic/name", QoS::AtMostOnce);
    let publ = h.connect(V5, "pub");

    let mut p = publish("long/topic/name", "1", QoS::AtMostOnce, false);
    p.properties.topic_alias = Some(3);
    h.send(publ, Packet::Publish(p));
    let mut p = publish("", "2", QoS::AtMostOnce, false);
    p.properties.topic_alias = Some(3);
    h.send(publ, Packet::Publish(p));

    let got = h.recv(sub);
    let p = publishes(&got);
    assert_eq!(payloads(&got), ["1", "2"]);
    assert_eq!(
        (p[0].topic.as_str(), p[0].properties.topic_alias),
        ("long/topic/name", Some(1))
    );
    assert_eq!(
        (p[1].topic.as_str(), p[1].properties.topic_alias),
        ("", Some(1))
    );

    // An unknown alias is a Protocol Error; an alias above our maximum is 0x94.
    let mut p = publish("", "3", QoS::AtMostOnce, false);
    p.properties.topic_alias = Some(99);
    h.send(publ, Packet::Publish(p));
    assert!(
        matches!(&h.recv(publ)[..], [Packet::Disconnect(d)] if d.reason_code == ReasonCode::TOPIC_ALIAS_INVALID)
    );
    assert!(h.is_closed(publ));
}

#[test]
fn receive_maximum_limits_the_inflight_window() {
    let mut h = Harness::new();
    let mut c = connect(V5, "sub");
    c.properties.receive_maximum = Some(1);
    let (sub, _) = h.connect_with(c);
    h.subscribe(sub, "q", QoS::AtLeastOnce);
    let publ = h.connect(V5, "pub");
    h.publish(publ, "q", "1", QoS::AtLeastOnce, false);
    h.publish(publ, "q", "2", QoS::AtLeastOnce, false);
    let got = h.recv(sub);
    assert_eq!(payloads(&got), ["1"], "window of one");
    h.send(
        sub,
        Packet::PubAck(ack(publishes(&got)[0].packet_id.unwrap())),
    );
    assert_eq!(payloads(&h.recv(sub)), ["2"]);
}

#[test]
fn inbound_receive_maximum_exceeded_disconnects_0x93() {
    let config = musqratt_core::BrokerConfig {
        max_inflight: 2,
        ..Default::default()
    };
    let mut h = Harness::with_config(config);
    let c = h.connect(V5, "c");
    for id in 1..=3u16 {
        let mut p = publish("t", "x", QoS::ExactlyOnce, false);
        p.packet_id = Some(id);
        h.send(c, Packet::Publish(p));
    }
    let got = h.recv(c);
    assert!(
        matches!(got.last(), Some(Packet::Disconnect(d)) if d.reason_code == ReasonCode::RECEIVE_MAXIMUM_EXCEEDED),
        "{got:?}"
    );
    assert!(h.is_closed(c));
}

#[test]
fn maximum_packet_size_of_the_client_discards_large_messages() {
    let mut h = Harness::new();
    let mut c = connect(V5, "small");
    c.properties.maximum_packet_size = Some(64);
    let (sub, _) = h.connect_with(c);
    h.subscribe(sub, "m", QoS::AtLeastOnce);
    let publ = h.connect(V5, "pub");
    h.publish(publ, "m", &"x".repeat(100), QoS::AtLeastOnce, false);
    h.publish(publ, "m", "fits", QoS::AtLeastOnce, false);
    assert_eq!(payloads(&h.recv(sub)), ["fits"]);
}

#[test]
fn persistent_session_redelivers_unacknowledged_with_dup() {
    for v in [V311, V5] {
        let mut h = Harness::new();
        let mut c = connect(v, "durable");
        c.clean_start = false;
        c.properties.session_expiry_interval = (v == V5).then_some(60);
        let (sub, _) = h.connect_with(c.clone());
        h.subscribe(sub, "d", QoS::AtLeastOnce);
        let publ = h.connect(v, "pub");
        h.publish(publ, "d", "first", QoS::AtLeastOnce, false);
        assert_eq!(payloads(&h.recv(sub)), ["first"]); // never acknowledged
        h.drop_socket(sub);
        h.publish(publ, "d", "while-away", QoS::AtLeastOnce, false);

        let (sub2, got) = h.connect_with(c);
        assert!(matches!(&got[0], Packet::ConnAck(a) if a.session_present));
        let p = publishes(&got);
        assert_eq!(payloads(&got), ["first", "while-away"]);
        assert!(p[0].dup && !p[1].dup);
        let _ = sub2;
    }
}

#[test]
fn session_takeover_disconnects_the_old_connection() {
    let mut h = Harness::new();
    let old = h.connect(V5, "same");
    let new = h.connect(V5, "same");
    let got = h.recv(old);
    assert!(
        matches!(&got[..], [Packet::Disconnect(d)] if d.reason_code == ReasonCode::SESSION_TAKEN_OVER)
    );
    assert!(h.is_closed(old));
    assert!(!h.is_closed(new));
    assert_eq!(h.broker.metrics.clients_connected.get(), 1);
}

#[test]
fn protocol_violations_close_only_that_connection() {
    let mut h = Harness::new();
    let bystander = h.connect(V5, "bystander");
    h.subscribe(bystander, "ok", QoS::AtMostOnce);

    // A second CONNECT: Protocol Error.
    let c = h.connect(V5, "twice");
    h.send(c, Packet::Connect(connect(V5, "twice")));
    assert!(
        matches!(&h.recv(c)[..], [Packet::Disconnect(d)] if d.reason_code == ReasonCode::PROTOCOL_ERROR)
    );
    assert!(h.is_closed(c));

    // A packet before CONNECT: closed without an answer.
    let early = h.open(V311);
    h.send(early, Packet::PingReq);
    assert!(h.recv(early).is_empty());
    assert!(h.is_closed(early));

    // Garbage after CONNECT: v5 gets DISCONNECT Malformed Packet.
    let g = h.connect(V5, "garbage");
    h.send_raw(g, &[0x00, 0x00]);
    assert!(
        matches!(&h.recv(g)[..], [Packet::Disconnect(d)] if d.reason_code == ReasonCode::MALFORMED_PACKET)
    );

    // A v3.1.1 client is just closed.
    let g3 = h.connect(V311, "garbage3");
    h.send_raw(g3, &[0x36, 0x00]); // PUBLISH QoS 3
    assert!(h.recv(g3).is_empty());
    assert!(h.is_closed(g3));

    let publ = h.connect(V5, "pub");
    h.publish(publ, "ok", "still here", QoS::AtMostOnce, false);
    assert_eq!(payloads(&h.recv(bystander)), ["still here"]);
}

#[test]
fn unsupported_protocol_version_gets_connack_refusal() {
    let mut h = Harness::new();
    let c = h.open(V311);
    // CONNECT, protocol name MQTT, level 6.
    h.send_raw(
        c,
        &[
            0x10, 0x0c, 0x00, 0x04, b'M', b'Q', b'T', b'T', 6, 0x02, 0x00, 0x3c, 0x00, 0x00,
        ],
    );
    let got = h.recv(c);
    assert!(
        matches!(&got[..], [Packet::ConnAck(a)] if a.reason_code.to_v311_connack() == 1),
        "{got:?}"
    );
    assert!(h.is_closed(c));
}

#[test]
fn unsubscribe_and_normal_disconnect() {
    let mut h = Harness::new();
    let c = h.connect(V5, "c");
    h.subscribe(c, "x", QoS::AtMostOnce);
    h.send(
        c,
        Packet::Unsubscribe(musqratt_codec::Unsubscribe {
            packet_id: 2,
            properties: Default::default(),
            filters: vec!["x".into(), "y".into()],
        }),
    );
    let got = h.recv(c);
    assert!(
        matches!(&got[..], [Packet::UnsubAck(u)] if u.reason_codes == [ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED])
    );
    h.send(
        c,
        Packet::Disconnect(Disconnect::new(ReasonCode::NORMAL_DISCONNECTION)),
    );
    assert!(h.is_closed(c));
    let _ = PubAck::new(1);
}

#[test]
fn payload_format_indicator_is_checked_and_client_subscription_ids_refused() {
    let mut h = Harness::new();
    let sub = h.connect(V5, "sub");
    h.subscribe(sub, "pf", QoS::AtLeastOnce);
    let publ = h.connect(V5, "pub");
    let mut p = publish("pf", "", QoS::AtLeastOnce, false);
    p.payload = bytes::Bytes::from_static(&[0xff, 0xfe]);
    p.properties.payload_format_indicator = Some(1);
    h.send(publ, Packet::Publish(p));
    assert!(
        matches!(&h.recv(publ)[..], [Packet::PubAck(a)] if a.reason_code == ReasonCode::PAYLOAD_FORMAT_INVALID)
    );
    assert!(
        h.recv(sub).is_empty(),
        "an invalid payload is not forwarded"
    );

    let mut p = publish("pf", "x", QoS::AtMostOnce, false);
    p.properties.subscription_identifiers = vec![3];
    h.send(publ, Packet::Publish(p));
    assert!(
        matches!(&h.recv(publ)[..], [Packet::Disconnect(d)] if d.reason_code == ReasonCode::PROTOCOL_ERROR)
    );
}

#[test]
fn a_congested_subscriber_pauses_its_publisher_instead_of_dropping() {
    let config = musqratt_core::BrokerConfig {
        max_queued_messages: 4, // pause at 2 queued, resume at 1
        ..Default::default()
    };
    let mut h = Harness::with_config(config);
    let mut c = connect(V5, "slow");
    c.properties.receive_maximum = Some(1);
    let (sub, _) = h.connect_with(c);
    h.subscribe(sub, "f", QoS::AtLeastOnce);
    let publ = h.connect(V5, "fast");

    // Ten QoS 1 publishes in one read.
    let mut burst = bytes::BytesMut::new();
    for i in 0..10u16 {
        let mut p = publish("f", &i.to_string(), QoS::AtLeastOnce, false);
        p.packet_id = Some(i + 1);
        musqratt_codec::encode(&Packet::Publish(p), V5, &mut burst).unwrap();
    }
    h.send_raw(publ, &burst);
    let acked = h.recv(publ).len();
    assert!(
        acked < 10,
        "the publisher was paused ({acked} acknowledged)"
    );

    let mut got = Vec::new();
    while got.len() < 10 {
        let packets = h.recv(sub);
        let p = publishes(&packets);
        assert_eq!(p.len(), 1, "window of one, nothing dropped: got {got:?}");
        got.push(String::from_utf8_lossy(&p[0].payload).into_owned());
        h.send(sub, Packet::PubAck(ack(p[0].packet_id.unwrap())));
    }
    let expected: Vec<String> = (0..10).map(|i| i.to_string()).collect();
    assert_eq!(got, expected);
    assert_eq!(
        h.recv(publ).len(),
        10 - acked,
        "every publish acknowledged in the end"
    );
    assert_eq!(h.broker.metrics.messages_dropped.get(), 0);
}

#[test]
fn a_stalled_subscriber_does_not_pause_publishers_forever() {
    let config = musqratt_core::BrokerConfig {
        max_queued_messages: 4, // pause at 2 queued
        ..Default::default()
    };
    let mut h = Harness::with_config(config);
    let mut c = connect(V5, "stuck");
    c.properties.receive_maximum = Some(1);
    let (sub, _) = h.connect_with(c);
    h.subscribe(sub, "s", QoS::AtLeastOnce);
    let publ = h.connect(V5, "pub");
    for _ in 0..3 {
        h.publish(publ, "s", "x", QoS::AtLeastOnce, false);
    }
    assert_eq!(
        payloads(&h.recv(sub)).len(),
        1,
        "one in flight, never acknowledged"
    );
    // The transport resumes a paused publisher after the stall time; from
    // then on the stalled subscriber no longer holds publishers back.
    h.advance(std::time::Duration::from_secs(2));
    for _ in 0..10 {
        h.publish(publ, "s", "x", QoS::AtLeastOnce, false);
    }
    assert!(!h.clients_paused(publ));
    assert_eq!(
        h.broker.metrics.messages_dropped.get(),
        8,
        "past the queue limit of 4, dropped"
    );
}
