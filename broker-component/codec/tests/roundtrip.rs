//! Property-based tests: `decode(encode(p)) == p` for every packet type in both
//! versions, `encoded_len` agreement, incremental decoding, and "never panics".
//!
//! The strategies only generate packets in canonical form for their version
//! (3.1.1: no properties, default reason codes; properties restricted to table
//! 2-4 of MQTT 5.0), since only those can survive a round trip unchanged.

use bytes::{Bytes, BytesMut};
use musqratt_codec::properties::Properties;
use musqratt_codec::*;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::strategy::ValueTree;

const V3: ProtocolVersion = ProtocolVersion::V311;
const V5: ProtocolVersion = ProtocolVersion::V5;

// Reason code tables of MQTT 5.0 (§3.2.2.2, §3.4.2.1, §3.6.2.1, §3.9.3, §3.11.3, §3.14.2.1, §3.15.2.1).
const CONNACK_CODES: &[u8] = &[
    0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
    0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
];
const CONNACK_CODES_V3: &[u8] = &[0x00, 0x84, 0x85, 0x88, 0x86, 0x87];
const PUBACK_CODES: &[u8] = &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
const PUBREL_CODES: &[u8] = &[0x00, 0x92];
const SUBACK_CODES: &[u8] = &[
    0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
];
const SUBACK_CODES_V3: &[u8] = &[0x00, 0x01, 0x02, 0x80];
const UNSUBACK_CODES: &[u8] = &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];
const DISCONNECT_CODES: &[u8] = &[
    0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95,
    0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
];
const AUTH_CODES: &[u8] = &[0x00, 0x18, 0x19];

fn code(table: &'static [u8]) -> impl Strategy<Value = ReasonCode> {
    prop::sample::select(table).prop_map(ReasonCode)
}

/// Any MQTT-valid string (no U+0000; includes multi-byte characters).
fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 /_$\u{1}é€😀+#-]{0,10}"
}

/// A valid Topic Name: non-empty, no wildcards.
fn topic_name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9/_$é😀-]{1,12}"
}

fn data() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..24).prop_map(Bytes::from)
}

fn bit() -> impl Strategy<Value = Option<u8>> {
    option::of(0u8..=1)
}

/// Columns of table 2-4 (where a property block appears).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Ctx {
    Connect,
    Will,
    ConnAck,
    Publish,
    PubAck,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
}

/// A property set with every property randomly present, then restricted to
/// what `ctx` allows.
fn properties(ctx: Ctx) -> impl Strategy<Value = Properties> {
    let a = (
        bit(),
        option::of(any::<u32>()),
        option::of(text()),
        option::of(topic_name()),
        option::of(data()),
        vec(1u32..=268_435_455, 0..3),
        option::of(any::<u32>()),
        option::of(text()),
        option::of(any::<u16>()),
        option::of(text()),
        option::of(data()),
    );
    let b = (
        bit(),
        option::of(any::<u32>()),
        bit(),
        option::of(text()),
        option::of(text()),
        option::of(text()),
        option::of(1u16..),
        option::of(any::<u16>()),
        option::of(1u16..),
        bit(),
        bit(),
    );
    let c = (
        vec((text(), text()), 0..3),
        option::of(1u32..),
        bit(),
        bit(),
        bit(),
    );
    let full = (a, b, c).prop_map(|(a, b, c)| Properties {
        payload_format_indicator: a.0,
        message_expiry_interval: a.1,
        content_type: a.2,
        response_topic: a.3,
        correlation_data: a.4,
        subscription_identifiers: a.5,
        session_expiry_interval: a.6,
        assigned_client_identifier: a.7,
        server_keep_alive: a.8,
        authentication_method: a.9,
        authentication_data: a.10,
        request_problem_information: b.0,
        will_delay_interval: b.1,
        request_response_information: b.2,
        response_information: b.3,
        server_reference: b.4,
        reason_string: b.5,
        receive_maximum: b.6,
        topic_alias_maximum: b.7,
        topic_alias: b.8,
        maximum_qos: b.9,
        retain_available: b.10,
        user_properties: c.0,
        maximum_packet_size: c.1,
        wildcard_subscription_available: c.2,
        subscription_identifiers_available: c.3,
        shared_subscription_available: c.4,
    });
    prop_oneof![
        1 => Just(Properties::default()),
        3 => full.prop_map(move |p| restrict(p, ctx)),
    ]
}

/// Keeps only what table 2-4 allows in `ctx` (and the cross-property rules).
fn restrict(p: Properties, ctx: Ctx) -> Properties {
    use Ctx::*;
    let allow = |cs: &[Ctx]| cs.contains(&ctx);
    let mut q = Properties {
        user_properties: p.user_properties,
        ..Properties::default()
    };
    if allow(&[Publish, Will]) {
        q.payload_format_indicator = p.payload_format_indicator;
        q.message_expiry_interval = p.message_expiry_interval;
        q.content_type = p.content_type;
        q.response_topic = p.response_topic;
        q.correlation_data = p.correlation_data;
    }
    if allow(&[Publish]) {
        q.subscription_identifiers = p.subscription_identifiers.clone();
        q.topic_alias = p.topic_alias;
    }
    if allow(&[Subscribe]) {
        q.subscription_identifiers = p.subscription_identifiers.iter().take(1).copied().collect();
    }
    if allow(&[Connect, ConnAck, Disconnect]) {
        q.session_expiry_interval = p.session_expiry_interval;
    }
    if allow(&[ConnAck]) {
        q.assigned_client_identifier = p.assigned_client_identifier;
        q.server_keep_alive = p.server_keep_alive;
        q.response_information = p.response_information;
        q.maximum_qos = p.maximum_qos;
        q.retain_available = p.retain_available;
        q.wildcard_subscription_available = p.wildcard_subscription_available;
        q.subscription_identifiers_available = p.subscription_identifiers_available;
        q.shared_subscription_available = p.shared_subscription_available;
    }
    if allow(&[Connect, ConnAck, Auth]) {
        q.authentication_method = p.authentication_method;
        // Authentication Data requires a method (§3.1.2.11.10).
        if q.authentication_method.is_some() {
            q.authentication_data = p.authentication_data;
        }
    }
    if allow(&[Connect]) {
        q.request_problem_information = p.request_problem_information;
        q.request_response_information = p.request_response_information;
    }
    if allow(&[Will]) {
        q.will_delay_interval = p.will_delay_interval;
    }
    if allow(&[ConnAck, Disconnect]) {
        q.server_reference = p.server_reference;
    }
    if allow(&[ConnAck, PubAck, SubAck, UnsubAck, Disconnect, Auth]) {
        q.reason_string = p.reason_string;
    }
    if allow(&[Connect, ConnAck]) {
        q.receive_maximum = p.receive_maximum;
        q.topic_alias_maximum = p.topic_alias_maximum;
        q.maximum_packet_size = p.maximum_packet_size;
    }
    q
}

fn props_for(v: ProtocolVersion, ctx: Ctx) -> BoxedStrategy<Properties> {
    if v.is_v5() {
        properties(ctx).boxed()
    } else {
        Just(Properties::default()).boxed()
    }
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn will(v: ProtocolVersion) -> impl Strategy<Value = Will> {
    (
        topic_name(),
        data(),
        qos(),
        any::<bool>(),
        props_for(v, Ctx::Will),
    )
        .prop_map(|(topic, payload, qos, retain, properties)| Will {
            topic,
            payload,
            qos,
            retain,
            properties,
        })
}

fn connect(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        any::<bool>(),
        any::<u16>(),
        props_for(v, Ctx::Connect),
        text(),
        option::of(will(v)),
        option::of(text()),
        option::of(data()),
    )
        .prop_map(
            move |(clean_start, keep_alive, properties, client_id, will, username, password)| {
                // 3.1.1 requires a user name when a password is present (§3.1.2.9).
                let password = if v.is_v5() || username.is_some() {
                    password
                } else {
                    None
                };
                Packet::Connect(Connect {
                    protocol: v,
                    clean_start,
                    keep_alive,
                    properties,
                    client_id,
                    will,
                    username,
                    password,
                })
            },
        )
}

fn connack(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let codes = if v.is_v5() {
        CONNACK_CODES
    } else {
        CONNACK_CODES_V3
    };
    (any::<bool>(), code(codes), props_for(v, Ctx::ConnAck)).prop_map(
        |(session_present, reason_code, properties)| {
            Packet::ConnAck(ConnAck {
                session_present,
                reason_code,
                properties,
            })
        },
    )
}

fn publish(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        qos(),
        any::<bool>(),
        any::<bool>(),
        topic_name(),
        any::<bool>(),
        1u16..,
        props_for(v, Ctx::Publish),
        data(),
    )
        .prop_map(
            move |(qos, dup, retain, topic, empty_topic, id, properties, payload)| {
                // v5 may use an empty topic together with a Topic Alias (§3.3.2.3.4).
                let topic = if empty_topic && properties.topic_alias.is_some() {
                    String::new()
                } else {
                    topic
                };
                let qos0 = qos == QoS::AtMostOnce;
                Packet::Publish(Publish {
                    dup: dup && !qos0,
                    qos,
                    retain,
                    topic,
                    packet_id: (!qos0).then_some(id),
                    properties,
                    payload,
                })
            },
        )
}

fn puback(v: ProtocolVersion, codes: &'static [u8]) -> impl Strategy<Value = PubAck> {
    let codes = if v.is_v5() { codes } else { &[0u8][..] };
    (1u16.., code(codes), props_for(v, Ctx::PubAck)).prop_map(
        |(packet_id, reason_code, properties)| PubAck {
            packet_id,
            reason_code,
            properties,
        },
    )
}

fn sub_options(v: ProtocolVersion) -> impl Strategy<Value = SubscriptionOptions> {
    let rh = prop_oneof![
        Just(RetainHandling::SendAtSubscribe),
        Just(RetainHandling::SendIfNew),
        Just(RetainHandling::DoNotSend)
    ];
    (qos(), any::<bool>(), any::<bool>(), rh).prop_map(move |(qos, nl, rap, rh)| {
        if v.is_v5() {
            SubscriptionOptions {
                qos,
                no_local: nl,
                retain_as_published: rap,
                retain_handling: rh,
            }
        } else {
            SubscriptionOptions::new(qos)
        }
    })
}

fn subscribe(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        1u16..,
        props_for(v, Ctx::Subscribe),
        vec((text(), sub_options(v)), 1..5),
    )
        .prop_map(|(packet_id, properties, filters)| {
            Packet::Subscribe(Subscribe {
                packet_id,
                properties,
                filters,
            })
        })
}

fn suback(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let codes = if v.is_v5() {
        SUBACK_CODES
    } else {
        SUBACK_CODES_V3
    };
    (1u16.., props_for(v, Ctx::SubAck), vec(code(codes), 1..6)).prop_map(
        |(packet_id, properties, reason_codes)| {
            Packet::SubAck(SubAck {
                packet_id,
                properties,
                reason_codes,
            })
        },
    )
}

fn unsubscribe(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (1u16.., props_for(v, Ctx::Unsubscribe), vec(text(), 1..5)).prop_map(
        |(packet_id, properties, filters)| {
            Packet::Unsubscribe(Unsubscribe {
                packet_id,
                properties,
                filters,
            })
        },
    )
}

fn unsuback(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    // 3.1.1 UNSUBACK has no payload.
    let n = if v.is_v5() { 1..6 } else { 0..1 };
    (
        1u16..,
        props_for(v, Ctx::UnsubAck),
        vec(code(UNSUBACK_CODES), n),
    )
        .prop_map(|(packet_id, properties, reason_codes)| {
            Packet::UnsubAck(UnsubAck {
                packet_id,
                properties,
                reason_codes,
            })
        })
}

fn disconnect(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let codes = if v.is_v5() {
        DISCONNECT_CODES
    } else {
        &[0u8][..]
    };
    (code(codes), props_for(v, Ctx::Disconnect)).prop_map(|(reason_code, properties)| {
        Packet::Disconnect(Disconnect {
            reason_code,
            properties,
        })
    })
}

fn auth() -> impl Strategy<Value = Packet> {
    (code(AUTH_CODES), properties(Ctx::Auth)).prop_map(|(reason_code, properties)| {
        Packet::Auth(Auth {
            reason_code,
            properties,
        })
    })
}

/// Every packet type valid in `v`.
fn packet(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    let common = prop_oneof![
        connect(v),
        connack(v),
        publish(v),
        puback(v, PUBACK_CODES).prop_map(Packet::PubAck),
        puback(v, PUBACK_CODES).prop_map(Packet::PubRec),
        puback(v, PUBREL_CODES).prop_map(Packet::PubRel),
        puback(v, PUBREL_CODES).prop_map(Packet::PubComp),
        subscribe(v),
        suback(v),
        unsubscribe(v),
        unsuback(v),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        disconnect(v),
    ];
    if v.is_v5() {
        prop_oneof![14 => common, 1 => auth()].boxed()
    } else {
        common.boxed()
    }
}

fn version() -> impl Strategy<Value = ProtocolVersion> {
    prop_oneof![Just(ProtocolVersion::V31), Just(V3), Just(V5)]
}

fn version_and_packet() -> impl Strategy<Value = (ProtocolVersion, Packet)> {
    version().prop_flat_map(|v| (Just(v), packet(v)))
}

fn enc(p: &Packet, v: ProtocolVersion) -> BytesMut {
    let mut out = BytesMut::new();
    let n = encode(p, v, &mut out).expect("generated packets fit the wire format");
    assert_eq!(n, out.len(), "encode returns the bytes it wrote");
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn roundtrip((v, p) in version_and_packet()) {
        let bytes = enc(&p, v);
        prop_assert_eq!(Ok(bytes.len()), encoded_len(&p, v));
        let decoded = decode(&bytes, v, u32::MAX).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(decoded, Some((p, bytes.len())));
    }

    #[test]
    fn encode_appends((v, p) in version_and_packet(), prefix in vec(any::<u8>(), 0..8)) {
        let mut out = BytesMut::from(&prefix[..]);
        prop_assert!(encode(&p, v, &mut out).is_ok());
        prop_assert_eq!(&out[..prefix.len()], &prefix[..]);
        prop_assert_eq!(&out[prefix.len()..], &enc(&p, v)[..]);
    }

    #[test]
    fn every_prefix_needs_more((v, p) in version_and_packet()) {
        let bytes = enc(&p, v);
        for n in 0..bytes.len() {
            prop_assert_eq!(decode(&bytes[..n], v, u32::MAX), Ok(None), "prefix of {} bytes", n);
        }
    }

    #[test]
    fn back_to_back((v, a, b2) in version().prop_flat_map(|v| (Just(v), packet(v), packet(v)))) {
        let mut buf = enc(&a, v);
        let first_len = buf.len();
        prop_assert!(encode(&b2, v, &mut buf).is_ok());
        let (p1, n1) = decode(&buf, v, u32::MAX).unwrap().unwrap();
        prop_assert_eq!(n1, first_len);
        prop_assert_eq!(p1, a);
        let (p2, n2) = decode(&buf[n1..], v, u32::MAX).unwrap().unwrap();
        prop_assert_eq!(n2, buf.len() - n1);
        prop_assert_eq!(p2, b2);
    }

    #[test]
    fn max_packet_size_is_inclusive((v, p) in version_and_packet()) {
        let bytes = enc(&p, v);
        let len = bytes.len() as u32;
        prop_assert!(decode(&bytes, v, len).unwrap().is_some());
        let err = decode(&bytes, v, len - 1).unwrap_err();
        prop_assert_eq!(err.reason, ReasonCode::PACKET_TOO_LARGE);
    }

    #[test]
    fn connect_version_is_peeked(v in version(), p in prop_oneof![connect(V3), connect(V5)]) {
        let Packet::Connect(c) = &p else { unreachable!() };
        let bytes = enc(&p, v);
        prop_assert_eq!(decode_connect_version(&bytes), Some(c.protocol));
        // CONNECT decodes the same whatever the connection's version.
        prop_assert_eq!(decode(&bytes, v, u32::MAX).unwrap(), Some((p.clone(), bytes.len())));
    }

    #[test]
    fn arbitrary_bytes_never_panic(v in version(), bytes in vec(any::<u8>(), 0..64), max in any::<u32>()) {
        let _ = decode(&bytes, v, max);
        let _ = decode_connect_version(&bytes);
    }

    #[test]
    fn mutated_packets_never_panic(
        (v, p) in version_and_packet(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = enc(&p, v).to_vec();
        for (i, b) in edits {
            let i = i.index(bytes.len());
            bytes[i] = b;
        }
        let _ = decode(&bytes, v, u32::MAX);
        let _ = decode(&bytes[..cut.index(bytes.len() + 1)], v, u32::MAX);
        let _ = decode_connect_version(&bytes);
    }
}

/// Decoding a well-formed packet whose first byte is valid but whose body is
/// arbitrary must never panic either (reaches the body decoders more often).
#[test]
fn arbitrary_bodies_never_panic() {
    let mut runner = proptest::test_runner::TestRunner::default();
    let strat = (version(), 0u8..16, 0u8..16, vec(any::<u8>(), 0..80));
    for _ in 0..20_000 {
        let (v, kind, flags, body) = strat.new_tree(&mut runner).unwrap().current();
        let mut buf = vec![(kind << 4) | flags];
        buf.push(body.len() as u8);
        buf.extend_from_slice(&body);
        let _ = decode(&buf, v, u32::MAX);
        // Also with the "right" flags for the type so the body is reached.
        let fixed = match kind {
            6 | 8 | 10 => 2,
            3 => flags & 0b0111,
            _ => 0,
        };
        buf[0] = (kind << 4) | fixed;
        let _ = decode(&buf, v, u32::MAX);
    }
}

/// v5-only content is dropped when encoding for 3.1.1.
#[test]
fn v5_fields_dropped_for_v311() {
    let props = Properties {
        reason_string: Some("why".into()),
        ..Properties::default()
    };
    let cases = [
        (
            Packet::ConnAck(ConnAck {
                session_present: true,
                reason_code: ReasonCode::BANNED,
                properties: props.clone(),
            }),
            vec![0x20, 2, 1, 5],
        ),
        (
            Packet::SubAck(SubAck {
                packet_id: 7,
                properties: props.clone(),
                reason_codes: vec![
                    ReasonCode(1),
                    ReasonCode::TOPIC_FILTER_INVALID,
                    ReasonCode(2),
                ],
            }),
            vec![0x90, 5, 0, 7, 1, 0x80, 2],
        ),
        (
            Packet::UnsubAck(UnsubAck {
                packet_id: 7,
                properties: props.clone(),
                reason_codes: vec![ReasonCode::SUCCESS],
            }),
            vec![0xB0, 2, 0, 7],
        ),
        (
            Packet::PubRec(PubAck {
                packet_id: 9,
                reason_code: ReasonCode::QUOTA_EXCEEDED,
                properties: props.clone(),
            }),
            vec![0x50, 2, 0, 9],
        ),
        (
            Packet::Disconnect(Disconnect::new(ReasonCode::SERVER_SHUTTING_DOWN)),
            vec![0xE0, 0],
        ),
    ];
    for (p, expected) in cases {
        assert_eq!(&enc(&p, V3)[..], &expected[..], "{}", p.name());
        assert_eq!(encoded_len(&p, V3), Ok(expected.len()));
    }
}

/// The v5 short forms (§3.4.2.1, §3.14.2.1) are used when allowed.
#[test]
fn v5_short_forms() {
    let ack = Packet::PubAck(PubAck::new(1));
    assert_eq!(&enc(&ack, V5)[..], &[0x40, 2, 0, 1]);
    let ack = Packet::PubAck(PubAck {
        reason_code: ReasonCode::NO_MATCHING_SUBSCRIBERS,
        ..PubAck::new(1)
    });
    assert_eq!(&enc(&ack, V5)[..], &[0x40, 3, 0, 1, 0x10]);
    let d = Packet::Disconnect(Disconnect::new(ReasonCode::NORMAL_DISCONNECTION));
    assert_eq!(&enc(&d, V5)[..], &[0xE0, 0]);
    let d = Packet::Disconnect(Disconnect::new(ReasonCode::SESSION_TAKEN_OVER));
    assert_eq!(&enc(&d, V5)[..], &[0xE0, 1, 0x8E]);
    // A long-form PUBACK with reason 0 and empty properties decodes the same.
    let (p, n) = decode(&[0x40, 4, 0, 1, 0, 0], V5, u32::MAX)
        .unwrap()
        .unwrap();
    assert_eq!((p, n), (Packet::PubAck(PubAck::new(1)), 6));
}

#[test]
fn auth_for_v311_is_an_error() {
    let a = Packet::Auth(Auth {
        reason_code: ReasonCode::SUCCESS,
        properties: Properties::default(),
    });
    let mut out = BytesMut::new();
    assert_eq!(
        encode(&a, V3, &mut out),
        Err(EncodeError::NotInVersion("AUTH"))
    );
    assert!(out.is_empty());
}
