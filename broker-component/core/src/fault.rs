//! Fault injection for the transport's panic isolation tests (cargo feature
//! `fault-injection`, off in every real build): the core panics on purpose when
//! a client sends a magic packet, so an integration test can prove that a panic
//! while handling one connection closes only that connection
//! (`server/tests/hardening_runtime_panic.rs`).

use musqratt_codec::Packet;

/// A PUBLISH to this topic panics while its bytes are handled (`handle_bytes`).
pub const PANIC_ON_PUBLISH_TOPIC: &str = "musqratt-fault-injection/panic";

/// A connection whose client identifier starts with this panics when woken to
/// deliver (`handle_wake`), which may run on another worker's thread (`hand_over`).
pub const PANIC_ON_WAKE_CLIENT_PREFIX: &str = "musqratt-fault-injection-panic-on-wake";

pub(crate) fn on_packet(packet: &Packet) {
    if let Packet::Publish(p) = packet {
        if &*p.topic == PANIC_ON_PUBLISH_TOPIC {
            panic!("fault injection: PUBLISH to {PANIC_ON_PUBLISH_TOPIC}");
        }
    }
}

pub(crate) fn on_wake(client_id: &str) {
    if client_id.starts_with(PANIC_ON_WAKE_CLIENT_PREFIX) {
        panic!("fault injection: wake of {client_id}");
    }
}
