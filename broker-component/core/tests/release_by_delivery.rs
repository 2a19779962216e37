//! Released by delivery (handle_publish.rs, docs/storage.md): a QoS 1 message only queued for
//! its subscribers lets its PUBACK go once every durable subscriber acknowledged it, even
//! if the store has not written it yet; anything else the store must keep still waits for
//! the commit. The journal here never makes anything durable, so what the output waits for
//! is exactly what the core asked.

mod common;

use std::sync::Mutex;
use std::time::Instant;

use common::*;
use musqratt_codec::{Packet, ProtocolVersion, QoS};
use musqratt_core::persist::{Journal, Op, Ticket};
use musqratt_core::{Broker, BrokerConfig};

const V5: ProtocolVersion = ProtocolVersion::V5;

/// Records ops; nothing ever becomes durable.
#[derive(Default)]
struct NeverDurable(Mutex<u64>);

impl Journal for NeverDurable {
    fn record(&self, _op: Op) -> Ticket {
        let mut n = self.0.lock().unwrap();
        *n += 1;
        *n
    }

    fn durable(&self) -> Ticket {
        0
    }
}

fn harness() -> Harness {
    let now = Instant::now();
    let mut broker = Broker::new(BrokerConfig::default(), now);
    broker.attach_journal(std::sync::Arc::new(NeverDurable::default()));
    Harness::with_broker(broker, now)
}

/// A persistent v5 session (expiry 1 h) subscribed to `t/#` at QoS 1.
fn persistent_subscriber(h: &mut Harness, id: &str) -> Id {
    let mut c = connect(V5, id);
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(3600);
    let (sub, _) = h.connect_with(c);
    h.subscribe(sub, "t/#", QoS::AtLeastOnce);
    h.recv(sub);
    sub
}

#[test]
fn puback_released_once_the_durable_subscriber_acknowledged() {
    let mut h = harness();
    let sub = persistent_subscriber(&mut h, "sub");
    let publ = h.connect(V5, "pub");
    h.send(
        publ,
        Packet::Publish(publish("t/a", "m1", QoS::AtLeastOnce, false)),
    );
    // The message and its queue entry were recorded, but only as what delivery supersedes.
    assert_eq!(h.last_durable_after, 0, "nothing the PUBACK must wait for");
    assert!(h.last_soft_after > 0, "the store writes the message");
    assert_eq!(h.last_soft_messages.len(), 1);
    let msg = h.last_soft_messages[0].clone();
    assert!(!msg.delivered());
    // The subscriber gets it and acknowledges: the publisher's worker is told.
    let got = h.recv(sub);
    let id = publishes(&got)[0].packet_id.expect("QoS 1");
    h.send(sub, Packet::PubAck(ack(id)));
    assert!(msg.delivered());
    assert_eq!(h.last_delivered, vec![0], "the publisher's worker is told");
}

#[test]
fn an_offline_subscriber_keeps_the_puback_waiting_for_the_store() {
    let mut h = harness();
    let sub = persistent_subscriber(&mut h, "sub");
    h.drop_socket(sub);
    let publ = h.connect(V5, "pub");
    h.send(
        publ,
        Packet::Publish(publish("t/a", "m1", QoS::AtLeastOnce, false)),
    );
    assert_eq!(h.last_soft_messages.len(), 1);
    assert!(
        !h.last_soft_messages[0].delivered(),
        "queued for a session that is not connected: only the commit releases the PUBACK"
    );
}

#[test]
fn retained_held_and_qos2_messages_wait_for_the_store() {
    let mut h = harness();
    let _sub = persistent_subscriber(&mut h, "sub");
    let publ = h.connect(V5, "pub");
    // Retained: the retained store must have it whatever the subscribers do.
    h.send(
        publ,
        Packet::Publish(publish("t/a", "r", QoS::AtLeastOnce, true)),
    );
    assert!(h.last_durable_after > 0, "retained: waits for the commit");
    assert!(h.last_soft_messages.is_empty());
    // Held (no subscriber yet): nobody acknowledged it.
    h.send(
        publ,
        Packet::Publish(publish("held/a", "h", QoS::AtLeastOnce, false)),
    );
    assert!(h.last_durable_after > 0, "held: waits for the commit");
    assert!(h.last_soft_messages.is_empty());
    // QoS 2: the packet id state must be durable before PUBREC.
    h.send(
        publ,
        Packet::Publish(publish("t/b", "q2", QoS::ExactlyOnce, false)),
    );
    assert!(h.last_durable_after > 0, "QoS 2: waits for the commit");
    assert!(h.last_soft_messages.is_empty());
}

#[test]
fn a_clean_subscriber_records_nothing_to_wait_for() {
    let mut h = harness();
    let sub = h.connect(V5, "clean");
    h.subscribe(sub, "t/#", QoS::AtLeastOnce);
    let publ = h.connect(V5, "pub");
    h.send(
        publ,
        Packet::Publish(publish("t/a", "m", QoS::AtLeastOnce, false)),
    );
    assert_eq!(h.last_durable_after, 0);
    assert_eq!(
        h.last_soft_after, 0,
        "a clean session's queue is not stored"
    );
}
