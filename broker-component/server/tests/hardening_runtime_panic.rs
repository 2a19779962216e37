//! Issue 11 (hardening), panic isolation: a panic while handling one connection closes that
//! connection, is logged with its client id, and the worker lives on — also when the panicking
//! handler runs on another worker's thread (`hand_over`).
//!
//! Needs the `fault-injection` feature (the core then panics on a magic PUBLISH topic or client id,
//! `musqratt_core::fault`): `cargo test -p musqratt --features fault-injection --test
//! hardening_runtime_panic` (the Makefile's `cargo-test` runs it). It starts exactly the binary cargo
//! built with that feature, never `$MUSQRATT_BIN` (the release binary has no fault injection).

mod common;

use std::path::Path;

use common::raw::{Raw, Read1, Version};
use common::*;
use musqratt_core::fault::{PANIC_ON_PUBLISH_TOPIC, PANIC_ON_WAKE_CLIENT_PREFIX};
use musqratt_test_support::hostile;

const WORKERS: usize = 2;

fn fault_broker() -> Broker {
    Broker::start_exact(
        Path::new(env!("CARGO_BIN_EXE_musqratt")),
        &["--workers", "2"],
    )
}

fn still_serving(b: &mut Broker, context: &str) {
    hostile::round_trip_every_worker(b.port(), WORKERS, context);
    assert!(b.is_running(), "{context}: the broker exited");
}

/// Until the broker closes the connection (a v5 client may get a DISCONNECT first).
fn expect_closed(c: &mut Raw, context: &str) {
    loop {
        match c.read(WAIT) {
            Read1::Closed => return,
            Read1::Packet(p) if p.first == 0xE0 => {}
            other => panic!("{context}: expected the connection to close, got {other:?}"),
        }
    }
}

fn wait_panic_logged(b: &Broker, client: &str) {
    assert!(
        b.log_lines().wait_until(WAIT, |l| l
            .iter()
            .any(|l| l.contains("panic while handling it") && l.contains(client))),
        "no log line with the panic and client {client}; log:\n{}",
        b.logs().join("\n")
    );
}

#[test]
fn panic_in_handle_bytes_closes_only_that_connection() {
    let mut b = fault_broker();
    let port = b.port();
    // A bystander on each worker, connected before the panics.
    let mut watchers: Vec<Raw> = (0..WORKERS)
        .map(|w| Raw::subscriber(port, Version::V311, &format!("watcher-{w}"), "alive"))
        .collect();
    // One panicking connection per worker (round robin), each while its worker runs.
    for w in 0..WORKERS {
        let client = format!("crasher-{w}");
        let v = Version::V5;
        let mut c = Raw::connect(port, v, &client);
        c.send(&hostile::publish(
            v,
            PANIC_ON_PUBLISH_TOPIC.as_bytes(),
            b"boom",
            1,
            1,
        ));
        expect_closed(&mut c, &client);
        wait_panic_logged(&b, &client);
        still_serving(&mut b, &format!("panic in handle_bytes on worker {w}"));
    }
    // The bystanders were not disturbed: they still receive.
    let mut publisher = Raw::connect(port, Version::V311, "publisher");
    publisher.send(&hostile::publish(Version::V311, b"alive", b"still", 0, 0));
    for w in &mut watchers {
        assert_eq!(
            w.expect_publish(WAIT),
            (b"alive".to_vec(), b"still".to_vec())
        );
    }
}

#[test]
fn panic_in_a_wake_run_by_another_worker_closes_only_that_connection() {
    let mut b = fault_broker();
    let port = b.port();
    let v = Version::V311;
    for round in 0..3 {
        // The subscriber lands on one worker, the publisher on the other (round robin). The
        // delivery wakes the subscriber: its worker runs `handle_wake`, or, when it sleeps, the
        // publisher's worker does on its own thread (`hand_over`). Either way only the subscriber
        // goes.
        let client = format!("{PANIC_ON_WAKE_CLIENT_PREFIX}-{round}");
        let topic = format!("wake/{round}");
        let mut sub = Raw::subscriber(port, v, &client, &topic);
        let mut publisher = Raw::connect(port, v, &format!("publisher-{round}"));
        publisher.send(&hostile::publish(v, topic.as_bytes(), b"boom", 1, 1));
        let ack = publisher.expect_packet(WAIT);
        assert_eq!(ack.kind(), 4, "the publisher gets its PUBACK: {ack:?}");
        expect_closed(&mut sub, &client);
        wait_panic_logged(&b, &client);
        // The publisher's connection (and worker) is unharmed.
        publisher.send(&hostile::publish(v, b"other", b"x", 1, 2));
        let ack = publisher.expect_packet(WAIT);
        assert_eq!(ack.kind(), 4, "second PUBACK: {ack:?}");
        still_serving(&mut b, &format!("panic in a wake, round {round}"));
    }
}
