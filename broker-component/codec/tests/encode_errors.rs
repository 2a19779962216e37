//! Encoding never panics (issue 11, item 2): a packet that does not fit the
//! wire format is an `EncodeError`, `out` is left unchanged, and `encoded_len`
//! / `publish_len` agree with `encode` on which packets fit.

use bytes::{Bytes, BytesMut};
use musqratt_codec::*;
use proptest::prelude::*;

const V3: ProtocolVersion = ProtocolVersion::V311;
const V5: ProtocolVersion = ProtocolVersion::V5;

/// 65,536 bytes: one more than a string or binary field can hold.
fn long() -> String {
    "a".repeat(65_536)
}

fn publish(topic: &str, payload: Bytes, properties: Properties) -> Publish {
    Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: topic.into(),
        packet_id: None,
        properties,
        payload,
    }
}

/// Encodes after a prefix and checks the error contract: Err, nothing written,
/// `encoded_len` says the same.
fn expect_err(p: &Packet, v: ProtocolVersion) -> EncodeError {
    let mut out = BytesMut::from(&b"prefix"[..]);
    let err = encode(p, v, &mut out).expect_err(p.name());
    assert_eq!(
        &out[..],
        b"prefix",
        "{}: nothing written on error",
        p.name()
    );
    assert_eq!(encoded_len(p, v), Err(err.clone()), "{}", p.name());
    err
}

#[test]
fn oversize_fields_are_errors() {
    let content_type = Properties {
        content_type: Some(long()),
        ..Properties::default()
    };
    let mut user = Properties::default();
    user.user_properties.push(("k".into(), long()));
    let correlation = Properties {
        correlation_data: Some(Bytes::from(long())),
        ..Properties::default()
    };
    let reason = Properties {
        reason_string: Some(long()),
        ..Properties::default()
    };
    let mut sub_id = Properties::default();
    sub_id.subscription_identifiers.push(268_435_456);

    let connect = |f: &dyn Fn(&mut Connect)| {
        let mut c = Connect {
            protocol: V5,
            clean_start: true,
            keep_alive: 0,
            properties: Properties::default(),
            client_id: "c".into(),
            will: None,
            username: None,
            password: None,
        };
        f(&mut c);
        Packet::Connect(c)
    };
    let will = |topic: String, payload: Bytes| Will {
        topic,
        payload,
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Properties::default(),
    };

    let field = |name: &'static str| EncodeError::FieldTooLong {
        field: name,
        len: 65_536,
    };
    let cases: Vec<(Packet, ProtocolVersion, EncodeError)> = vec![
        (
            Packet::Publish(publish(&long(), Bytes::new(), Properties::default())),
            V3,
            field("topic name"),
        ),
        (
            Packet::Publish(publish("t", Bytes::new(), content_type.clone())),
            V5,
            field("Content Type"),
        ),
        (
            Packet::Publish(publish("t", Bytes::new(), user.clone())),
            V5,
            field("User Property value"),
        ),
        (
            Packet::Publish(publish("t", Bytes::new(), correlation)),
            V5,
            field("Correlation Data"),
        ),
        (
            Packet::Publish(publish("t", Bytes::new(), sub_id)),
            V5,
            EncodeError::ValueTooLarge {
                field: "Subscription Identifier",
                value: 268_435_456,
            },
        ),
        (
            Packet::Publish(Publish {
                qos: QoS::AtLeastOnce,
                ..publish("t", Bytes::new(), Properties::default())
            }),
            V3,
            EncodeError::MissingPacketId,
        ),
        (
            Packet::Auth(Auth {
                reason_code: ReasonCode::SUCCESS,
                properties: Properties::default(),
            }),
            V3,
            EncodeError::NotInVersion("AUTH"),
        ),
        (
            connect(&|c| c.client_id = long()),
            V5,
            field("client identifier"),
        ),
        (
            connect(&|c| c.will = Some(will(long(), Bytes::new()))),
            V5,
            field("will topic"),
        ),
        (
            connect(&|c| c.will = Some(will("w".into(), Bytes::from(long())))),
            V5,
            field("will payload"),
        ),
        (
            connect(&|c| c.username = Some(long())),
            V3,
            field("user name"),
        ),
        (
            connect(&|c| c.password = Some(Bytes::from(long()))),
            V3,
            field("password"),
        ),
        (
            Packet::ConnAck(ConnAck {
                session_present: false,
                reason_code: ReasonCode::SUCCESS,
                properties: reason.clone(),
            }),
            V5,
            field("Reason String"),
        ),
        (
            Packet::PubAck(PubAck {
                packet_id: 1,
                reason_code: ReasonCode::SUCCESS,
                properties: reason.clone(),
            }),
            V5,
            field("Reason String"),
        ),
        (
            Packet::Disconnect(Disconnect {
                reason_code: ReasonCode::SUCCESS,
                properties: reason,
            }),
            V5,
            field("Reason String"),
        ),
        (
            Packet::Subscribe(Subscribe {
                packet_id: 1,
                properties: Properties::default(),
                filters: vec![(long(), SubscriptionOptions::new(QoS::AtMostOnce))],
            }),
            V3,
            field("topic filter"),
        ),
        (
            Packet::Unsubscribe(Unsubscribe {
                packet_id: 1,
                properties: Properties::default(),
                filters: vec!["ok".into(), long()],
            }),
            V5,
            field("topic filter"),
        ),
    ];
    for (p, v, want) in cases {
        assert_eq!(expect_err(&p, v), want, "{}", p.name());
    }
}

/// The remaining length is checked against 268,435,455 (§1.5.5): exactly the
/// maximum encodes, one more byte is an error. The payload is zeroed memory
/// the error path never touches.
#[test]
fn remaining_length_boundary() {
    let max = MAX_REMAINING_LENGTH;
    // Topic "t" (3 bytes) at QoS 0 for 3.1.1: remaining = 3 + payload.
    let fits = Packet::Publish(publish(
        "t",
        Bytes::from(vec![0; max - 3]),
        Properties::default(),
    ));
    assert_eq!(encoded_len(&fits, V3), Ok(1 + 4 + max));
    let over = Packet::Publish(publish(
        "t",
        Bytes::from(vec![0; max - 2]),
        Properties::default(),
    ));
    assert_eq!(
        expect_err(&over, V3),
        EncodeError::RemainingLengthTooLarge(max + 1)
    );
    let mut out = BytesMut::new();
    assert_eq!(encode(&fits, V3, &mut out), Ok(1 + 4 + max));
    assert_eq!(&out[..5], &[0x30, 0xFF, 0xFF, 0xFF, 0x7F]);
}

/// Item 2 of issue 11 in the codec: the largest PUBLISH a 3.1.1 client may
/// send (268,435,455 bytes in all) does not fit once a Subscription
/// Identifier is added for a v5 subscriber; `encode_publish` says so.
#[test]
fn max_size_publish_with_subscription_identifier() {
    let max = MAX_REMAINING_LENGTH;
    // The publisher's packet: 1 + 4 header bytes, remaining 268,435,450.
    let payload = vec![0; max - 5 - 3];
    let incoming = publish("t", Bytes::new(), Properties::default());
    let incoming = PublishRef {
        payload: &payload,
        ..incoming.as_ref()
    };
    assert_eq!(publish_len(&incoming, V3), Ok(max));
    let mut props = Properties::default();
    props.subscription_identifiers.push(268_435_455);
    let delivery = PublishRef {
        properties: &props,
        ..incoming
    };
    let mut out = BytesMut::new();
    let err = encode_publish(&delivery, V5, u32::MAX, &mut out).unwrap_err();
    assert_eq!(err, EncodeError::RemainingLengthTooLarge(max + 1));
    assert!(out.is_empty());
    assert_eq!(publish_len(&delivery, V5), Err(err));
}

#[test]
fn encode_publish_honours_maximum_packet_size() {
    let p = publish(
        "t",
        Bytes::from_static(b"0123456789"),
        Properties::default(),
    );
    let len = publish_len(&p.as_ref(), V5).unwrap();
    let mut out = BytesMut::new();
    assert_eq!(
        encode_publish(&p.as_ref(), V5, len as u32 - 1, &mut out),
        Err(EncodeError::PacketTooLarge {
            size: len,
            maximum: len as u32 - 1
        })
    );
    assert!(out.is_empty());
    assert_eq!(
        encode_publish(&p.as_ref(), V5, len as u32, &mut out),
        Ok(len)
    );
    assert_eq!(out.len(), len);
    let mut whole = BytesMut::new();
    encode(&Packet::Publish(p), V5, &mut whole).unwrap();
    assert_eq!(out, whole);
}

fn string_len() -> impl Strategy<Value = usize> {
    prop_oneof![0usize..4, 65_533usize..65_538]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any mix of field sizes around the 65,535 limit: never a panic, and
    /// `encode` fails exactly when `encoded_len` does.
    #[test]
    fn never_panics(
        topic in prop_oneof![1usize..4, 65_533usize..65_538],
        ct in proptest::option::of(string_len()),
        key in string_len(),
        value in string_len(),
        qos in 0u8..3,
        id in proptest::option::of(any::<u16>()),
        v5 in any::<bool>(),
    ) {
        let props = Properties {
            content_type: ct.map(|n| "c".repeat(n)),
            user_properties: vec![("k".repeat(key), "v".repeat(value))],
            ..Properties::default()
        };
        let qos = match qos { 0 => QoS::AtMostOnce, 1 => QoS::AtLeastOnce, _ => QoS::ExactlyOnce };
        let p = Packet::Publish(Publish {
            qos,
            packet_id: id,
            ..publish(&"t".repeat(topic), Bytes::new(), props)
        });
        let v = if v5 { V5 } else { V3 };
        let mut out = BytesMut::new();
        let r = encode(&p, v, &mut out);
        prop_assert_eq!(r.clone(), encoded_len(&p, v));
        match r {
            Ok(n) => {
                prop_assert_eq!(n, out.len());
                prop_assert_eq!(decode(&out, v, u32::MAX).map(|d| d.map(|(_, n)| n)), Ok(Some(n)));
            }
            Err(_) => prop_assert!(out.is_empty()),
        }
    }
}
