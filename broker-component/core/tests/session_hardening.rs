//! Issue 11, session items through the sans-IO core: timer entries bounded by
//! offline sessions (7), unguessable assigned ids that never resume a session
//! (11), 3.1.1 QoS 2 pipelining past Receive Maximum (12), acknowledgements of
//! the wrong kind (14, 18), a clean session is not inherited at takeover (17),
//! a CONNACK that fits the client's Maximum Packet Size (18), MQTT 3.1 (19).

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use musqratt_codec::{
    encoded_len, Packet,
    ProtocolVersion::{V31, V311, V5},
    PubAck, QoS, ReasonCode,
};

fn connack(got: &[Packet]) -> &musqratt_codec::ConnAck {
    match got.first() {
        Some(Packet::ConnAck(a)) => a,
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

fn persistent(
    v: musqratt_codec::ProtocolVersion,
    id: &str,
    expiry: u32,
) -> musqratt_codec::Connect {
    let mut c = connect(v, id);
    c.clean_start = false;
    c.properties.session_expiry_interval = (v == V5).then_some(expiry);
    c
}

#[test]
fn item07_reconnect_loop_leaves_at_most_two_timers_per_offline_session() {
    let mut h = Harness::new();
    for _ in 0..500 {
        // A long expiry and a delayed will: two deadlines per disconnect.
        let mut c = persistent(V5, "cycler", 86_400);
        c.will = Some(will("w", "gone", Some(3_600)));
        let (id, got) = h.connect_with(c);
        assert_eq!(connack(&got).reason_code, ReasonCode::SUCCESS);
        h.drop_socket(id);
        assert!(h.broker.timer_count() <= 2, "{}", h.broker.timer_count());
    }
    assert_eq!(h.broker.session_count(), 1);
    // Back online: nothing left to fire for it.
    let (_, got) = h.connect_with(persistent(V5, "cycler", 86_400));
    assert!(connack(&got).session_present);
    assert_eq!(h.broker.timer_count(), 0);
}

#[test]
fn item07_session_end_removes_its_timers() {
    let mut h = Harness::new();
    let mut c = persistent(V5, "ends", 60);
    c.will = Some(will("w", "gone", Some(10)));
    let (id, _) = h.connect_with(c);
    h.drop_socket(id);
    assert_eq!(h.broker.timer_count(), 2);
    // A clean start discards the offline session, and its deadlines with it.
    let fresh = h.connect(V5, "ends");
    assert_eq!(h.broker.timer_count(), 0);
    h.drop_socket(fresh); // expiry 0: no timer at all
    assert_eq!(h.broker.timer_count(), 0);
    assert_eq!(h.broker.session_count(), 0);
    // Expiry fires: the will goes, the session ends, nothing stays queued.
    let (id, _) = h.connect_with(persistent(V5, "expires", 5));
    h.drop_socket(id);
    assert_eq!(h.broker.timer_count(), 1);
    h.advance(Duration::from_secs(6));
    assert_eq!(h.broker.timer_count(), 0);
    assert_eq!(h.broker.session_count(), 0);
}

#[test]
fn item11_assigned_ids_are_random_and_never_resume_a_session() {
    let mut h = Harness::new();
    let mut seen = HashSet::new();
    for _ in 0..50 {
        let (id, got) = h.connect_with(persistent(V5, "", 3_600));
        let a = connack(&got);
        assert!(!a.session_present);
        let assigned = a.properties.assigned_client_identifier.clone().unwrap();
        let hex = assigned.strip_prefix("musqratt-").unwrap();
        assert_eq!(hex.len(), 32, "128 bits: {assigned}");
        assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(seen.insert(assigned), "an assigned id repeated");
        h.drop_socket(id); // each leaves a persistent session under its id
    }
    assert_eq!(h.broker.session_count(), 50);
}

#[test]
fn item12_v311_qos2_pipelining_past_max_inflight_is_accepted() {
    let config = musqratt_core::BrokerConfig {
        max_inflight: 4,
        ..Default::default()
    };
    let mut h = Harness::with_config(config);
    let sub = h.connect(V311, "sub");
    h.subscribe(sub, "q2", QoS::AtMostOnce);
    let publ = h.connect(V311, "pub");
    for id in 1..=20u16 {
        let mut p = publish("q2", &id.to_string(), QoS::ExactlyOnce, false);
        p.packet_id = Some(id);
        h.send(publ, Packet::Publish(p));
    }
    let got = h.recv(publ);
    assert_eq!(got.len(), 20, "{got:?}");
    assert!(got.iter().all(|p| matches!(p, Packet::PubRec(_))));
    assert!(!h.is_closed(publ));
    for id in 1..=20u16 {
        h.send(publ, Packet::PubRel(PubAck::new(id)));
    }
    assert_eq!(h.recv(publ).len(), 20);
    assert_eq!(payloads(&h.recv(sub)).len(), 20);
}

/// A subscriber that received one delivery of `qos` on topic "t": returns the
/// harness, the subscriber and the delivery's packet id.
fn delivered(v: musqratt_codec::ProtocolVersion, qos: QoS) -> (Harness, Id, u16) {
    let mut h = Harness::new();
    let (sub, _) = h.connect_with(persistent(v, "sub", 600));
    h.subscribe(sub, "t", qos);
    let publ = h.connect(v, "pub");
    h.publish(publ, "t", "m", qos, false);
    let got = h.recv(sub);
    let id = publishes(&got)[0].packet_id.unwrap();
    (h, sub, id)
}

fn closed_with_protocol_error(h: &mut Harness, c: Id) {
    let got = h.recv(c);
    assert!(
        matches!(got.last(), Some(Packet::Disconnect(d)) if d.reason_code == ReasonCode::PROTOCOL_ERROR),
        "{got:?}"
    );
    assert!(h.is_closed(c));
}

#[test]
fn item14_pubrec_to_a_qos1_delivery_closes_and_the_publish_is_redelivered() {
    let (mut h, sub, id) = delivered(V5, QoS::AtLeastOnce);
    h.send(sub, Packet::PubRec(PubAck::new(id)));
    closed_with_protocol_error(&mut h, sub);
    // The QoS 1 flow was not turned into a QoS 2 one: on resumption the
    // PUBLISH comes again (DUP), not a PUBREL.
    let (_, got) = h.connect_with(persistent(V5, "sub", 600));
    assert!(connack(&got).session_present);
    let p = publishes(&got);
    assert_eq!(p.len(), 1, "{got:?}");
    assert!(p[0].dup && p[0].qos == QoS::AtLeastOnce);
    assert!(!got.iter().any(|p| matches!(p, Packet::PubRel(_))));
}

#[test]
fn item18_wrong_acknowledgements_close_the_connection() {
    // PUBCOMP to a QoS 1 delivery.
    let (mut h, sub, id) = delivered(V5, QoS::AtLeastOnce);
    h.send(sub, Packet::PubComp(PubAck::new(id)));
    closed_with_protocol_error(&mut h, sub);
    // PUBACK to a QoS 2 delivery.
    let (mut h, sub, id) = delivered(V5, QoS::ExactlyOnce);
    h.send(sub, Packet::PubAck(PubAck::new(id)));
    closed_with_protocol_error(&mut h, sub);
    // PUBCOMP before PUBREC.
    let (mut h, sub, id) = delivered(V5, QoS::ExactlyOnce);
    h.send(sub, Packet::PubComp(PubAck::new(id)));
    closed_with_protocol_error(&mut h, sub);
    // PUBACK to our PUBREL.
    let (mut h, sub, id) = delivered(V5, QoS::ExactlyOnce);
    h.send(sub, Packet::PubRec(PubAck::new(id)));
    assert!(matches!(&h.recv(sub)[..], [Packet::PubRel(_)]));
    h.send(sub, Packet::PubAck(PubAck::new(id)));
    closed_with_protocol_error(&mut h, sub);
    // 3.1.1: closed too (no DISCONNECT to send).
    let (mut h, sub, id) = delivered(V311, QoS::AtLeastOnce);
    h.send(sub, Packet::PubComp(PubAck::new(id)));
    assert!(h.is_closed(sub));
}

#[test]
fn item18_acknowledgements_that_fit_or_name_no_inflight_id_are_harmless() {
    let (mut h, sub, id) = delivered(V5, QoS::ExactlyOnce);
    // Unknown ids: a late PUBACK, a PUBCOMP; a PUBREC gets PUBREL 0x92.
    h.send(sub, Packet::PubAck(PubAck::new(id.wrapping_add(100))));
    h.send(sub, Packet::PubComp(PubAck::new(id.wrapping_add(100))));
    h.send(sub, Packet::PubRec(PubAck::new(id.wrapping_add(100))));
    assert!(
        matches!(&h.recv(sub)[..], [Packet::PubRel(r)] if r.reason_code == ReasonCode::PACKET_IDENTIFIER_NOT_FOUND)
    );
    // The right flow, with a repeated PUBREC answered by PUBREL again.
    h.send(sub, Packet::PubRec(PubAck::new(id)));
    h.send(sub, Packet::PubRec(PubAck::new(id)));
    assert!(matches!(
        &h.recv(sub)[..],
        [Packet::PubRel(_), Packet::PubRel(_)]
    ));
    h.send(sub, Packet::PubComp(PubAck::new(id)));
    assert!(h.recv(sub).is_empty());
    assert!(!h.is_closed(sub));
}

#[test]
fn item17_taking_over_a_clean_session_does_not_inherit_it() {
    for v in [V311, V5] {
        let mut h = Harness::new();
        let clean = h.connect(v, "c"); // CleanSession=1 / Session Expiry 0
        h.subscribe(clean, "secret/#", QoS::AtLeastOnce);
        let (new, got) = h.connect_with(persistent(v, "c", 600));
        assert!(!connack(&got).session_present, "{v:?}");
        assert!(h.is_closed(clean));
        let publ = h.connect(v, "pub");
        h.publish(publ, "secret/x", "not for you", QoS::AtLeastOnce, false);
        assert!(
            payloads(&h.recv(new)).is_empty(),
            "{v:?}: inherited a subscription"
        );
    }
}

#[test]
fn item17_taking_over_a_persistent_session_still_resumes_it() {
    let mut h = Harness::new();
    let (old, _) = h.connect_with(persistent(V5, "p", 600));
    h.subscribe(old, "keep", QoS::AtLeastOnce);
    let (new, got) = h.connect_with(persistent(V5, "p", 600));
    assert!(connack(&got).session_present);
    let publ = h.connect(V5, "pub");
    h.publish(publ, "keep", "kept", QoS::AtLeastOnce, false);
    assert_eq!(payloads(&h.recv(new)), ["kept"]);
}

#[test]
fn item18_connack_fits_the_clients_maximum_packet_size() {
    let config = musqratt_core::BrokerConfig {
        max_packet_size: 1000,
        max_keepalive_secs: 30,
        ..Default::default()
    };
    let mut h = Harness::with_config(config);
    let full = {
        let (_, got) = h.connect_with(connect(V5, ""));
        encoded_len(&got[0], V5).unwrap()
    };
    for max in [5u32, 8, 12, 20, 30, 50, 60] {
        let mut c = connect(V5, "");
        c.properties.maximum_packet_size = Some(max);
        let (id, got) = h.connect_with(c);
        let len = encoded_len(&got[0], V5).unwrap();
        assert!(
            len <= max as usize,
            "CONNACK of {len} bytes for a maximum of {max}"
        );
        assert!(len <= full);
        assert!(!h.is_closed(id));
    }
    // Too small for any CONNACK: nothing is sent, the connection closes.
    let mut c = connect(V5, "tiny");
    c.properties.maximum_packet_size = Some(4);
    let (id, got) = h.connect_with(c);
    assert!(got.is_empty(), "{got:?}");
    assert!(h.is_closed(id));
}

#[test]
fn item19_mqtt31_connects_without_session_present_and_bounded_ids() {
    let mut h = Harness::new();
    let (old, _) = h.connect_with(persistent(V31, "device-31", 0));
    h.subscribe(old, "cmd", QoS::AtLeastOnce);
    h.drop_socket(old);
    // Resumed (subscription kept) but 3.1's CONNACK has no Session Present.
    let (dev, got) = h.connect_with(persistent(V31, "device-31", 0));
    let a = connack(&got);
    assert_eq!(a.reason_code, ReasonCode::SUCCESS);
    assert!(!a.session_present);
    let publ = h.connect(V311, "pub");
    h.publish(publ, "cmd", "on", QoS::AtLeastOnce, false);
    assert_eq!(payloads(&h.recv(dev)), ["on"]);

    for bad in ["", &"x".repeat(24)] {
        let (id, got) = h.connect_with(connect(V31, bad));
        assert_eq!(connack(&got).reason_code.to_v311_connack(), 2, "{bad:?}");
        assert!(h.is_closed(id));
    }
    let (id, got) = h.connect_with(connect(V31, &"x".repeat(23)));
    assert_eq!(connack(&got).reason_code, ReasonCode::SUCCESS);
    assert!(!h.is_closed(id));
}
