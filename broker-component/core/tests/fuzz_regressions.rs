//! Inputs the fuzzers (fuzz/, docs/testing.md "Fuzzing") found wrong handling for, replayed at
//! the core's level. The raw fuzz inputs themselves are in fuzz/regressions/<target>/ and are
//! replayed by broker-component/fuzz-props/tests/replay_seeds.rs.

mod common;

use std::time::Instant;

use bytes::BytesMut;
use musqratt_codec::{decode, encode, Packet, ProtocolVersion, ReasonCode};
use musqratt_core::{Broker, BrokerConfig, ConnRef, Connection, Output};

fn connect_bytes(version: ProtocolVersion, client_id: &str) -> BytesMut {
    let mut b = BytesMut::new();
    encode(
        &Packet::Connect(common::connect(version, client_id)),
        version,
        &mut b,
    )
    .unwrap();
    b
}

/// Every packet in `bytes`, decoded for `version`; fails on anything that does not decode.
fn packets(mut bytes: &[u8], version: ProtocolVersion) -> Vec<Packet> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (p, n) = decode(bytes, version, u32::MAX)
            .unwrap_or_else(|e| panic!("server sent undecodable bytes {bytes:02x?}: {e}"))
            .expect("server sent a partial packet");
        out.push(p);
        bytes = &bytes[n..];
    }
    out
}

/// After a connection's CONNECT, feeds `second` and returns what the server sent for it.
fn second_connect(version: ProtocolVersion, second: &[u8]) -> (Vec<Packet>, bool) {
    let now = Instant::now();
    let broker = Broker::new(BrokerConfig::default(), now);
    let r = ConnRef {
        worker: 0,
        slot: 1,
        serial: 1,
    };
    let mut c = Connection::new(r, now);
    let mut out = Output::new();
    let first = connect_bytes(version, "c");
    assert_eq!(c.handle_bytes(&broker, &first, now, &mut out), first.len());
    assert!(matches!(
        packets(&out.transmit, version).as_slice(),
        [Packet::ConnAck(a)] if a.reason_code == ReasonCode::SUCCESS
    ));
    let mut out = Output::new();
    assert_eq!(c.handle_bytes(&broker, second, now, &mut out), second.len());
    assert!(out.close && c.is_closed());
    (packets(&out.transmit, version), out.close)
}

/// A CONNECT whose protocol level byte (after "MQTT" or "MQIsdp") is `level`.
fn with_level(version: ProtocolVersion, level: u8) -> BytesMut {
    let mut b = connect_bytes(version, "c");
    // Fixed header (2 bytes here) + the protocol name's length prefix and bytes.
    let at = 2 + 2 + usize::from(u16::from_be_bytes([b[2], b[3]]));
    b[at] = level;
    b
}

/// Found by core_sequence: a second CONNECT carrying an unknown protocol level drew DISCONNECT
/// 0x84 (Unsupported Protocol Version, a CONNACK-only code the client cannot even decode in a
/// DISCONNECT). A second CONNECT is a Protocol Error whatever it holds [MQTT-3.1.0-2].
#[test]
fn second_connect_with_unknown_level_is_a_protocol_error() {
    for level in [0u8, 2, 6, 7, 0xFF] {
        let (sent, _) =
            second_connect(ProtocolVersion::V5, &with_level(ProtocolVersion::V5, level));
        assert!(
            matches!(sent.as_slice(), [Packet::Disconnect(d)] if d.reason_code == ReasonCode::PROTOCOL_ERROR),
            "level {level}: {sent:?}"
        );
    }
}

#[test]
fn any_second_connect_is_a_protocol_error() {
    // Valid for this connection, valid for another version, and malformed after its header.
    for second in [
        connect_bytes(ProtocolVersion::V5, "c").to_vec(),
        connect_bytes(ProtocolVersion::V311, "other").to_vec(),
        vec![0x10, 0x02, 0x00, 0x00],
    ] {
        let (sent, _) = second_connect(ProtocolVersion::V5, &second);
        assert!(
            matches!(sent.as_slice(), [Packet::Disconnect(d)] if d.reason_code == ReasonCode::PROTOCOL_ERROR),
            "{second:02x?}: {sent:?}"
        );
    }
}

/// A 3.1.1 or 3.1 server sends no DISCONNECT: the connection just closes.
#[test]
fn second_connect_before_v5_closes_without_disconnect() {
    for version in [ProtocolVersion::V311, ProtocolVersion::V31] {
        for second in [with_level(version, 7), connect_bytes(version, "c")] {
            let (sent, closed) = second_connect(version, &second);
            assert!(closed && sent.is_empty(), "{version:?}: {sent:?}");
        }
    }
}
