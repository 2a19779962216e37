//! Issue 11, item 8, at the core's level: the first packet must be CONNECT (checked on its first
//! byte), a CONNECT is bounded by `max_connect_size` before its body arrives, and a packet that
//! has started must complete within `packet_timeout` (the connect timeout before CONNECT).

mod common;

use std::time::{Duration, Instant};

use bytes::BytesMut;
use musqratt_codec::{decode, encode, Packet, ProtocolVersion, ReasonCode};
use musqratt_core::{Broker, BrokerConfig, ConnRef, Connection, Identity, Output};

fn new_conn(now: Instant) -> Connection {
    Connection::new(
        ConnRef {
            worker: 0,
            slot: 1,
            serial: 1,
        },
        now,
    )
}

fn connect_bytes(version: ProtocolVersion) -> BytesMut {
    let mut b = BytesMut::new();
    encode(
        &Packet::Connect(common::connect(version, "c")),
        version,
        &mut b,
    )
    .unwrap();
    b
}

#[test]
fn first_byte_other_than_connect_closes_at_once() {
    let now = Instant::now();
    let broker = Broker::new(BrokerConfig::default(), now);
    // A PUBLISH header declaring 256 MB: nothing of it is kept.
    for bytes in [
        &[0x30u8, 0xFF, 0xFF, 0xFF, 0x7F][..],
        &[0x32],
        &[0x82, 0x01],
    ] {
        let mut c = new_conn(now);
        let mut out = Output::new();
        assert_eq!(c.handle_bytes(&broker, bytes, now, &mut out), bytes.len());
        assert!(c.is_closed() && out.close && out.transmit.is_empty());
    }
}

#[test]
fn connect_over_max_connect_size_closes_on_its_fixed_header() {
    let now = Instant::now();
    let config = BrokerConfig {
        max_connect_size: 1000,
        ..BrokerConfig::default()
    };
    let broker = Broker::new(config, now);
    // Remaining length 1000: 1003 bytes in all, over the bound.
    let mut c = new_conn(now);
    let mut out = Output::new();
    let header = [0x10, 0xE8, 0x07, 0x00, 0x04, b'M'];
    assert_eq!(
        c.handle_bytes(&broker, &header, now, &mut out),
        header.len()
    );
    assert!(c.is_closed() && out.close);
    // A CONNECT within it is served.
    let mut c = new_conn(now);
    let mut out = Output::new();
    let b = connect_bytes(ProtocolVersion::V5);
    assert_eq!(c.handle_bytes(&broker, &b, now, &mut out), b.len());
    assert!(!c.is_closed());
}

#[test]
fn partial_packet_must_complete_within_the_packet_timeout() {
    let start = Instant::now();
    let config = BrokerConfig {
        packet_timeout: Duration::from_secs(5),
        ..BrokerConfig::default()
    };
    let broker = Broker::new(config, start);
    let mut c = new_conn(start);
    let mut out = Output::new();
    let b = connect_bytes(ProtocolVersion::V5); // keep alive 0
    c.handle_bytes(&broker, &b, start, &mut out);
    assert_eq!(
        c.poll_timeout(&broker),
        None,
        "keep alive 0, no packet started"
    );

    // Half a PUBLISH arrives 10 s later: the transport keeps it, the timer starts.
    let t1 = start + Duration::from_secs(10);
    let partial = [0x30, 0x0A, 0x00, 0x01, b't'];
    assert_eq!(c.handle_bytes(&broker, &partial, t1, &mut out), 0);
    let due = c.poll_timeout(&broker).expect("a packet deadline");
    assert!(due > t1 && due <= t1 + Duration::from_secs(5), "{due:?}");
    // More of it, not all: the deadline does not move.
    assert_eq!(
        c.handle_bytes(
            &broker,
            &partial[..4],
            t1 + Duration::from_secs(2),
            &mut out
        ),
        0
    );
    assert_eq!(c.poll_timeout(&broker), Some(due));

    // Due: a v5 client gets DISCONNECT 0x8D and the connection closes.
    let mut out = Output::new();
    c.handle_timeout(&broker, due, &mut out);
    assert!(c.is_closed() && out.close);
    let (p, _) = decode(&out.transmit, ProtocolVersion::V5, u32::MAX)
        .unwrap()
        .expect("a DISCONNECT");
    match p {
        Packet::Disconnect(d) => assert_eq!(d.reason_code, ReasonCode::KEEP_ALIVE_TIMEOUT),
        other => panic!("expected DISCONNECT, got {other:?}"),
    }
}

#[test]
fn a_completed_packet_clears_the_packet_deadline() {
    let start = Instant::now();
    let broker = Broker::new(BrokerConfig::default(), start);
    let mut c = new_conn(start);
    let mut out = Output::new();
    let b = connect_bytes(ProtocolVersion::V311);
    c.handle_bytes(&broker, &b, start, &mut out);
    // PINGREQ split across two reads.
    assert_eq!(c.handle_bytes(&broker, &[0xC0], start, &mut out), 0);
    assert!(c.poll_timeout(&broker).is_some());
    assert_eq!(c.handle_bytes(&broker, &[0xC0, 0x00], start, &mut out), 2);
    assert_eq!(c.poll_timeout(&broker), None);
    assert!(!c.is_closed());
}

/// The CONNACK's reason code a connection answered with.
fn connack_code(out: &Output, version: ProtocolVersion) -> ReasonCode {
    match decode(&out.transmit, version, u32::MAX) {
        Ok(Some((Packet::ConnAck(a), _))) => a.reason_code,
        other => panic!("expected a CONNACK, got {other:?}"),
    }
}

#[test]
fn a_certificate_identity_replaces_the_connect_credentials() {
    let now = Instant::now();
    // No password file and anonymous clients refused: nothing but a certificate lets one in.
    let config = BrokerConfig {
        allow_anonymous: false,
        ..BrokerConfig::default()
    };
    let broker = Broker::new(config, now);
    for version in [ProtocolVersion::V311, ProtocolVersion::V5] {
        let mut connect = common::connect(version, "c");
        connect.username = Some("someone".into());
        connect.password = Some(bytes::Bytes::from_static(b"wrong"));
        let mut wire = BytesMut::new();
        encode(&Packet::Connect(connect), version, &mut wire).unwrap();
        let answer = |identity: Option<Identity>| {
            let mut c = new_conn(now);
            if let Some(id) = identity {
                c.set_identity(id);
            }
            let mut out = Output::new();
            c.handle_bytes(&broker, &wire, now, &mut out);
            connack_code(&out, version)
        };
        let cn = answer(Some(Identity::CommonName("sensor-1".into())));
        assert!(!cn.is_error(), "{version:?}: {cn:?}");
        let missing = answer(Some(Identity::Missing));
        let none = answer(None);
        if version == ProtocolVersion::V5 {
            assert_eq!(missing, ReasonCode::BAD_USER_NAME_OR_PASSWORD);
            assert_eq!(none, ReasonCode::NOT_AUTHORIZED);
        } else {
            assert!(
                missing.is_error() && none.is_error(),
                "{missing:?} {none:?}"
            );
        }
    }
}
