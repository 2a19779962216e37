//! The broker-wide memory budget (core/src/budget.rs) through the sans-IO core: a subscriber
//! that acknowledges nothing fills it; then a v5 publisher gets 0x97 Quota exceeded, on any
//! topic a client may publish to (only the broker's own `$SYS` reports are exempt).

mod common;

use common::*;
use musqratt_codec::{Packet, ProtocolVersion::V5, QoS, ReasonCode};
use musqratt_core::config::BrokerConfig;

fn puback_code(packets: &[Packet]) -> ReasonCode {
    match packets.iter().find(|p| matches!(p, Packet::PubAck(_))) {
        Some(Packet::PubAck(a)) => a.reason_code,
        other => panic!("expected a PUBACK, got {other:?}"),
    }
}

#[test]
fn a_full_memory_budget_refuses_with_quota_exceeded_on_every_client_topic() {
    let config = BrokerConfig {
        max_memory_bytes: 20_000,
        max_queued_messages: usize::MAX,
        max_inflight: 1,
        ..BrokerConfig::default()
    };
    let mut h = Harness::with_config(config);
    let sub = h.connect(V5, "sub");
    h.subscribe(sub, "a/#", QoS::AtLeastOnce);
    h.subscribe(sub, "$x/#", QoS::AtLeastOnce);
    let publ = h.connect(V5, "pub");
    let payload = "x".repeat(1000);
    let mut accepted = 0;
    loop {
        let got = h.publish(publ, "a/b", &payload, QoS::AtLeastOnce, false);
        match puback_code(&got) {
            ReasonCode::SUCCESS => accepted += 1,
            ReasonCode::QUOTA_EXCEEDED => break,
            other => panic!("unexpected PUBACK {other:?}"),
        }
        assert!(accepted < 100, "the budget never filled");
    }
    // 20,000 bytes hold about 16 messages of 1 KB (each charged a little more), plus the one
    // in flight, which is no longer charged to the queue.
    assert!((10..=20).contains(&accepted), "{accepted} accepted");
    // A `$` topic other than `$SYS` is a client's like any other: not exempt.
    let got = h.publish(publ, "$x/y", &payload, QoS::AtLeastOnce, false);
    assert_eq!(puback_code(&got), ReasonCode::QUOTA_EXCEEDED);
    // The subscriber reads and acknowledges: room comes back.
    for _ in 0..accepted {
        let packets = h.recv(sub);
        for p in publishes(&packets) {
            h.send(sub, Packet::PubAck(ack(p.packet_id.unwrap_or(0))));
        }
    }
    let got = h.publish(publ, "a/b", &payload, QoS::AtLeastOnce, false);
    assert_eq!(
        puback_code(&got),
        ReasonCode::SUCCESS,
        "room after the queue drained"
    );
}
