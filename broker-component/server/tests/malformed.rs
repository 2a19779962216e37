//! Malformed and forbidden input over a raw TCP connection. For each case the broker must:
//! - close that connection (MQTT 5 connections that got their CONNACK first receive a DISCONNECT
//!   with the reason code the spec names: 0x81 malformed packet, 0x82 protocol error,
//!   0x90 topic name invalid, 0x95 packet too large; MQTT 3.1.1 has no DISCONNECT from the server),
//! - log a line about it,
//! - keep serving everyone else: an already-connected subscriber still gets a publish afterwards.
//!
//! The bytes are written by hand (see the comments) and do not come from our codec crate.

mod common;

use common::raw::{self, Raw, Read1, Version, Version::*};
use common::*;
use std::net::Shutdown;

/// What the broker must do with the bad connection.
#[derive(Clone, Copy)]
enum Expect {
    /// MQTT 5: DISCONNECT with this reason code, then close.
    Disconnect(u8),
    /// Close without sending anything.
    Closed,
    /// Close; a DISCONNECT before the close is allowed (EOF in the middle of a packet).
    ClosedMaybeDisconnect,
    /// Close; a CONNACK refusing the connection before the close is allowed.
    ClosedMaybeRefused,
}

/// Run one case: connect (or not), send `bytes`, check the outcome on a fresh broker.
fn case(
    b: &Broker,
    v: Version,
    connect_first: bool,
    bytes: &[u8],
    half_close: bool,
    expect: Expect,
) {
    let port = b.port();
    // A bystander, subscribed before the bad client shows up.
    let mut watcher = Raw::subscriber(port, V311, "watcher", "alive");

    let mut bad = if connect_first {
        Raw::connect(port, v, "bad")
    } else {
        Raw::tcp(port, v)
    };
    let logged_before = b.log_lines().len();
    bad.send(bytes);
    if half_close {
        let _ = bad.stream.shutdown(Shutdown::Write);
    }
    match expect {
        Expect::Disconnect(rc) => bad.expect_disconnect(rc, WAIT),
        Expect::Closed => bad.expect_closed(WAIT),
        Expect::ClosedMaybeDisconnect => match bad.read(WAIT) {
            Read1::Closed => {}
            Read1::Packet(p) if p.first == 0xE0 => bad.expect_closed(WAIT),
            other => panic!("expected the connection to close, got {other:?}"),
        },
        Expect::ClosedMaybeRefused => match bad.read(WAIT) {
            Read1::Closed => {}
            // CONNACK: flags, then a non-zero return / reason code.
            Read1::Packet(p) if p.first == 0x20 && p.body.get(1).is_some_and(|rc| *rc != 0) => {
                bad.expect_closed(WAIT)
            }
            other => {
                panic!("expected the connection to close (or a refusing CONNACK), got {other:?}")
            }
        },
    }
    if !half_close {
        assert!(
            b.log_lines().wait_until(WAIT, |l| l.len() > logged_before),
            "the broker logged nothing about the bad input; log:\n{}",
            b.logs().join("\n")
        );
    }

    // Everyone else is fine: a new client publishes, the bystander receives it.
    let mut publisher = Raw::connect(port, V311, "publisher");
    publisher.send(&raw::publish_qos0(V311, b"alive", b"still here"));
    assert_eq!(
        watcher.expect_publish(WAIT),
        (b"alive".to_vec(), b"still here".to_vec()),
        "the bystander lost its publish after the bad input"
    );
}

fn run(v: Version, connect_first: bool, bytes: &[u8], expect: Expect) {
    let b = broker();
    case(&b, v, connect_first, bytes, false, expect);
}

// ------------------------------------------------------------ before CONNECT (either version)

#[test]
fn garbage_before_connect() {
    // 'G' = 0x47: a PUBACK type with bad flags, as the first packet: not a CONNECT.
    run(
        V5,
        false,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        Expect::Closed,
    );
}

#[test]
fn packet_before_connect() {
    // PINGREQ: type 12, no body.
    run(V311, false, &[0xC0, 0x00], Expect::Closed);
}

#[test]
fn publish_before_connect() {
    // PUBLISH QoS 0, topic "t", payload "x" (3.1.1 layout).
    run(
        V311,
        false,
        &[0x30, 0x04, 0x00, 0x01, b't', b'x'],
        Expect::Closed,
    );
}

#[test]
fn truncated_connect_then_close() {
    let b = broker();
    // CONNECT announcing 13 bytes, only 3 sent, then EOF.
    case(
        &b,
        V311,
        false,
        &[0x10, 0x0D, 0x00, 0x04, b'M'],
        true,
        Expect::ClosedMaybeDisconnect,
    );
}

#[test]
fn connect_with_bad_protocol_name() {
    // CONNECT, protocol name "MQTX", level 4, clean session, keep alive 60, client id "a".
    let bytes = [
        0x10, 0x0D, 0x00, 0x04, b'M', b'Q', b'T', b'X', 0x04, 0x02, 0x00, 0x3C, 0x00, 0x01, b'a',
    ];
    // The broker may answer with a refusing CONNACK (return code != 0) before closing.
    run(V311, false, &bytes, Expect::ClosedMaybeRefused);
}

// ------------------------------------------------------------ MQTT 5, after CONNACK

#[test]
fn v5_remaining_length_five_bytes() {
    // PUBLISH with a 5-byte Variable Byte Integer (at most 4 are allowed).
    run(
        V5,
        true,
        &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
        Expect::Disconnect(0x81),
    );
}

#[test]
fn v5_invalid_utf8_topic() {
    // PUBLISH QoS 0: topic length 2, "a" 0xFF (not UTF-8), properties length 0, payload "x".
    run(
        V5,
        true,
        &[0x30, 0x06, 0x00, 0x02, b'a', 0xFF, 0x00, b'x'],
        Expect::Disconnect(0x81),
    );
}

#[test]
fn v5_wildcard_in_publish_topic() {
    // PUBLISH QoS 0: topic "a/+", properties length 0, payload "x".
    run(
        V5,
        true,
        &[0x30, 0x07, 0x00, 0x03, b'a', b'/', b'+', 0x00, b'x'],
        Expect::Disconnect(0x90),
    );
}

#[test]
fn v5_second_connect() {
    run(V5, true, &raw::connect(V5, "bad"), Expect::Disconnect(0x82));
}

#[test]
fn v5_qos_3() {
    // PUBLISH with QoS bits 11: topic "t", packet id 1, properties length 0, payload "x".
    run(
        V5,
        true,
        &[0x36, 0x07, 0x00, 0x01, b't', 0x00, 0x01, 0x00, b'x'],
        Expect::Disconnect(0x81),
    );
}

#[test]
fn v5_packet_type_0() {
    // Packet type 0 is reserved.
    run(V5, true, &[0x00, 0x00], Expect::Disconnect(0x81));
}

#[test]
fn v5_subscribe_with_wrong_flags() {
    // SUBSCRIBE must have flags 0b0010; here 0b0000. Packet id 1, props 0, filter "t", options 0.
    run(
        V5,
        true,
        &[0x80, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, b't', 0x00],
        Expect::Disconnect(0x81),
    );
}

#[test]
fn v5_truncated_publish_then_close() {
    let b = broker();
    // PUBLISH announcing 10 bytes, 3 sent, then EOF.
    case(
        &b,
        V5,
        true,
        &[0x30, 0x0A, 0x00, 0x01, b't'],
        true,
        Expect::ClosedMaybeDisconnect,
    );
}

#[test]
fn v5_packet_too_large() {
    let dir = musqratt_test_support::scratch_dir("too-large");
    let conf = dir.join("musqratt.toml");
    std::fs::write(
        &conf,
        "[storage]\nin_memory = true\n\n[limits]\nmax_packet_size = 1024\n",
    )
    .unwrap();
    let b = broker_with_args(&["-c", conf.to_str().unwrap()]);
    // PUBLISH QoS 0 with 2000 bytes of remaining length (0xD0 0x0F = 2000): topic "t",
    // properties length 0, 1996 bytes of payload.
    let mut bytes = vec![0x30, 0xD0, 0x0F, 0x00, 0x01, b't', 0x00];
    bytes.resize(3 + 2000, b'x');
    case(&b, V5, true, &bytes, false, Expect::Disconnect(0x95));
}

// ------------------------------------------------------------ MQTT 3.1.1, after CONNACK: just closed

#[test]
fn v311_garbage() {
    run(
        V311,
        true,
        &[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
        Expect::Closed,
    );
}

#[test]
fn v311_remaining_length_five_bytes() {
    run(
        V311,
        true,
        &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
        Expect::Closed,
    );
}

#[test]
fn v311_invalid_utf8_topic() {
    // PUBLISH QoS 0: topic length 2, "a" 0xFF, payload "x".
    run(
        V311,
        true,
        &[0x30, 0x05, 0x00, 0x02, b'a', 0xFF, b'x'],
        Expect::Closed,
    );
}

#[test]
fn v311_wildcard_in_publish_topic() {
    // PUBLISH QoS 0: topic "a/#", payload "x".
    run(
        V311,
        true,
        &[0x30, 0x06, 0x00, 0x03, b'a', b'/', b'#', b'x'],
        Expect::Closed,
    );
}

#[test]
fn v311_second_connect() {
    run(V311, true, &raw::connect(V311, "bad"), Expect::Closed);
}

#[test]
fn v311_qos_3() {
    // PUBLISH with QoS bits 11: topic "t", packet id 1, payload "x".
    run(
        V311,
        true,
        &[0x36, 0x06, 0x00, 0x01, b't', 0x00, 0x01, b'x'],
        Expect::Closed,
    );
}

#[test]
fn v311_packet_type_0() {
    run(V311, true, &[0x00, 0x00], Expect::Closed);
}

#[test]
fn v311_packet_type_15() {
    // AUTH (type 15) does not exist in 3.1.1.
    run(V311, true, &[0xF0, 0x00], Expect::Closed);
}

#[test]
fn v311_subscribe_with_wrong_flags() {
    // SUBSCRIBE with flags 0b0000: packet id 1, filter "t", QoS 0.
    run(
        V311,
        true,
        &[0x80, 0x06, 0x00, 0x01, 0x00, 0x01, b't', 0x00],
        Expect::Closed,
    );
}
