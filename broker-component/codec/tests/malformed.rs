//! One test per invalid input: the decoder must reject it with the reason code
//! the spec prescribes (or ask for more bytes when the input is just short).

use musqratt_codec::properties::id;
use musqratt_codec::*;

const V3: ProtocolVersion = ProtocolVersion::V311;
const V5: ProtocolVersion = ProtocolVersion::V5;

const MALFORMED: ReasonCode = ReasonCode::MALFORMED_PACKET;
const PROTOCOL: ReasonCode = ReasonCode::PROTOCOL_ERROR;

/// A packet with the given first byte and body (remaining length computed).
fn pkt(first: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![first];
    let mut n = body.len();
    loop {
        let mut b = (n & 0x7F) as u8;
        n >>= 7;
        if n > 0 {
            b |= 0x80;
        }
        v.push(b);
        if n == 0 {
            break;
        }
    }
    v.extend_from_slice(body);
    v
}

/// A length-prefixed string / binary field.
fn s(x: &[u8]) -> Vec<u8> {
    let mut v = (x.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(x);
    v
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn err(buf: &[u8], v: ProtocolVersion) -> DecodeError {
    match decode(buf, v, u32::MAX) {
        Err(e) => {
            assert!(!e.message.is_empty());
            e
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

fn reason(buf: &[u8], v: ProtocolVersion) -> ReasonCode {
    err(buf, v).reason
}

fn ok(buf: &[u8], v: ProtocolVersion) -> Packet {
    let (p, n) = decode(buf, v, u32::MAX)
        .unwrap_or_else(|e| panic!("unexpected error {e}"))
        .expect("complete packet");
    assert_eq!(n, buf.len());
    p
}

/// A v5 property block: Property Length then the raw properties.
fn props(raw: &[u8]) -> Vec<u8> {
    assert!(raw.len() < 128);
    cat(&[&[raw.len() as u8], raw])
}

/// A v5 PUBLISH QoS 0 to "t" with the given properties.
fn publish_with(raw_props: &[u8]) -> Vec<u8> {
    pkt(0x30, &cat(&[&s(b"t"), &props(raw_props), b"payload"]))
}

/// A CONNECT body: name, level, flags, keep alive 60, then `rest`.
fn connect(name: &[u8], level: u8, flags: u8, rest: &[u8]) -> Vec<u8> {
    pkt(0x10, &cat(&[&s(name), &[level, flags, 0, 60], rest]))
}

// ---- framing -------------------------------------------------------------

#[test]
fn empty_and_partial_fixed_header_need_more() {
    assert_eq!(decode(&[], V5, u32::MAX), Ok(None));
    assert_eq!(decode(&[0x30], V5, u32::MAX), Ok(None));
    assert_eq!(decode(&[0x30, 0xFF, 0xFF], V5, u32::MAX), Ok(None));
}

#[test]
fn truncated_packet_needs_more() {
    let full = publish_with(&[]);
    for n in 0..full.len() {
        assert_eq!(decode(&full[..n], V5, u32::MAX), Ok(None));
    }
    assert!(matches!(ok(&full, V5), Packet::Publish(_)));
}

#[test]
fn garbage_bytes() {
    // An HTTP request: 'G' = 0x47 is PUBACK with reserved flags 0b0111.
    assert_eq!(reason(b"GET / HTTP/1.1\r\n\r\n", V3), MALFORMED);
    assert_eq!(reason(&[0xFF; 8], V3), MALFORMED);
    assert_eq!(reason(&[0xFF; 8], V5), MALFORMED);
    // A TLS ClientHello starts with 0x16: type 1 (CONNECT) with flags 6.
    assert_eq!(reason(&[0x16, 0x03, 0x01, 0x02, 0x00], V3), MALFORMED);
}

#[test]
fn reserved_packet_type_zero() {
    assert_eq!(reason(&[0x00, 0x00], V3), MALFORMED);
    assert_eq!(reason(&[0x00, 0x00], V5), MALFORMED);
}

#[test]
fn auth_in_v311_is_malformed() {
    assert_eq!(reason(&[0xF0, 0x00], V3), MALFORMED);
    assert_eq!(
        ok(&[0xF0, 0x00], V5),
        Packet::Auth(Auth {
            reason_code: ReasonCode::SUCCESS,
            properties: Default::default()
        })
    );
}

#[test]
fn remaining_length_of_five_bytes() {
    let e = err(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F], V5);
    assert_eq!(e.reason, MALFORMED);
    // Known as soon as the 4th length byte has its continuation bit set.
    assert_eq!(reason(&[0x30, 0x80, 0x80, 0x80, 0x80], V3), MALFORMED);
}

#[test]
fn over_max_packet_size_before_body_arrives() {
    // Header announces 16,383 bytes; nothing of the body is there yet.
    let e = decode(&[0x30, 0xFF, 0x7F], V5, 1024).unwrap_err();
    assert_eq!(e.reason, ReasonCode::PACKET_TOO_LARGE);
    // The limit counts the fixed header: a 2 + 3 byte packet needs 5.
    let p = pkt(0x40, &[0, 1, 0]);
    assert_eq!(
        decode(&p, V5, 4).unwrap_err().reason,
        ReasonCode::PACKET_TOO_LARGE
    );
    assert!(decode(&p, V5, 5).unwrap().is_some());
}

#[test]
fn reserved_fixed_header_flags() {
    // SUBSCRIBE, UNSUBSCRIBE and PUBREL must use 0b0010 (§2.1.3).
    let sub = cat(&[&[0, 1], &s(b"a"), &[0]]);
    assert_eq!(reason(&pkt(0x80, &sub), V3), MALFORMED);
    assert!(matches!(ok(&pkt(0x82, &sub), V3), Packet::Subscribe(_)));
    assert_eq!(
        reason(&pkt(0xA0, &cat(&[&[0, 1], &s(b"a")])), V3),
        MALFORMED
    );
    assert_eq!(reason(&pkt(0x60, &[0, 1]), V3), MALFORMED);
    assert!(matches!(ok(&pkt(0x62, &[0, 1]), V3), Packet::PubRel(_)));
    // Everything else must use 0.
    assert_eq!(reason(&pkt(0x42, &[0, 1]), V3), MALFORMED);
    assert_eq!(reason(&[0xC1, 0], V5), MALFORMED);
    assert_eq!(reason(&[0xE8, 0], V5), MALFORMED);
}

// ---- remaining length inconsistent with content ---------------------------

#[test]
fn trailing_bytes_after_content() {
    assert_eq!(reason(&pkt(0x40, &[0, 1, 0]), V3), MALFORMED); // v3 PUBACK is 2 bytes
    assert_eq!(reason(&pkt(0xC0, &[0]), V5), MALFORMED); // PINGREQ with a body
    assert_eq!(reason(&pkt(0xE0, &[0]), V3), MALFORMED); // v3 DISCONNECT with a body
                                                         // CONNECT with a stray byte after the client id.
    let c = connect(b"MQTT", 4, 0x02, &cat(&[&s(b"id"), &[0]]));
    assert_eq!(reason(&c, V3), MALFORMED);
}

#[test]
fn field_runs_past_remaining_length() {
    // Topic length 10 but only 3 bytes follow.
    let e = err(&pkt(0x30, &[0, 10, b'a', b'b', b'c']), V3);
    assert_eq!(e.reason, MALFORMED);
    assert!(e.message.contains("topic name"), "{}", e.message);
    // PUBACK with a one-byte packet id.
    assert_eq!(reason(&pkt(0x40, &[0]), V5), MALFORMED);
    // SUBSCRIBE filter without its options byte.
    assert_eq!(
        reason(&pkt(0x82, &cat(&[&[0, 1], &s(b"a")])), V3),
        MALFORMED
    );
    // CONNECT missing its client id.
    assert_eq!(reason(&connect(b"MQTT", 4, 0x02, &[]), V3), MALFORMED);
    // Property length larger than what is left.
    assert_eq!(
        reason(&pkt(0x30, &cat(&[&s(b"t"), &[5, id::TOPIC_ALIAS, 0]])), V5),
        MALFORMED
    );
}

// ---- PUBLISH ---------------------------------------------------------------

#[test]
fn publish_qos_3() {
    let e = err(&pkt(0x36, &cat(&[&s(b"t"), &[0, 1]])), V3);
    assert_eq!(e.reason, MALFORMED);
    assert_eq!(e.message, "PUBLISH QoS 3");
}

#[test]
fn publish_dup_with_qos_0() {
    assert_eq!(reason(&pkt(0x38, &s(b"t")), V3), MALFORMED);
}

#[test]
fn publish_invalid_utf8_topic() {
    let e = err(&pkt(0x30, &s(&[b'a', 0xC3, 0x28])), V3);
    assert_eq!(e.reason, MALFORMED);
    assert_eq!(e.message, "invalid UTF-8 in topic name");
    // Encoded surrogate half U+D800.
    assert_eq!(reason(&pkt(0x30, &s(&[0xED, 0xA0, 0x80])), V3), MALFORMED);
    // U+0000 is forbidden (§1.5.4).
    assert_eq!(reason(&pkt(0x30, &s(b"a\0b")), V3), MALFORMED);
}

#[test]
fn publish_wildcard_topic() {
    for t in [&b"a/+"[..], b"#", b"a/#"] {
        assert_eq!(
            reason(&pkt(0x30, &s(t)), V3),
            ReasonCode::TOPIC_NAME_INVALID
        );
        let v5 = pkt(0x30, &cat(&[&s(t), &[0]]));
        assert_eq!(reason(&v5, V5), ReasonCode::TOPIC_NAME_INVALID);
    }
}

#[test]
fn publish_empty_topic() {
    assert_eq!(
        reason(&pkt(0x30, &s(b"")), V3),
        ReasonCode::TOPIC_NAME_INVALID
    );
    assert_eq!(reason(&pkt(0x30, &cat(&[&s(b""), &[0]])), V5), PROTOCOL);
    let with_alias = pkt(0x30, &cat(&[&s(b""), &props(&[id::TOPIC_ALIAS, 0, 3])]));
    match ok(&with_alias, V5) {
        Packet::Publish(p) => assert_eq!(p.properties.topic_alias, Some(3)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn packet_id_zero() {
    assert_eq!(
        reason(&pkt(0x32, &cat(&[&s(b"t"), &[0, 0]])), V3),
        MALFORMED
    );
    assert_eq!(reason(&pkt(0x40, &[0, 0]), V3), MALFORMED);
    assert_eq!(reason(&pkt(0x62, &[0, 0]), V5), MALFORMED);
    assert_eq!(
        reason(&pkt(0x82, &cat(&[&[0, 0], &s(b"a"), &[0]])), V3),
        MALFORMED
    );
}

// ---- SUBSCRIBE / UNSUBSCRIBE -----------------------------------------------

#[test]
fn subscribe_without_filters() {
    assert_eq!(reason(&pkt(0x82, &[0, 1]), V3), MALFORMED);
    assert_eq!(reason(&pkt(0x82, &[0, 1, 0]), V5), PROTOCOL);
    assert_eq!(reason(&pkt(0xA2, &[0, 1]), V3), MALFORMED);
    assert_eq!(reason(&pkt(0xA2, &[0, 1, 0]), V5), PROTOCOL);
}

#[test]
fn invalid_filters_are_left_to_the_session() {
    // "a/#/b" is well-formed UTF-8: SUBACK 0x8F is the session's answer.
    let v3 = pkt(0x82, &cat(&[&[0, 1], &s(b"a/#/b"), &[1]]));
    let v5 = pkt(0x82, &cat(&[&[0, 1, 0], &s(b"a/#/b"), &[1]]));
    for (buf, v) in [(v3, V3), (v5, V5)] {
        match ok(&buf, v) {
            Packet::Subscribe(s) => assert_eq!(s.filters[0].0, "a/#/b"),
            other => panic!("{other:?}"),
        }
    }
    // Invalid UTF-8 in a filter is still malformed.
    assert_eq!(
        reason(&pkt(0x82, &cat(&[&[0, 1], &s(&[0xFF]), &[1]])), V3),
        MALFORMED
    );
}

#[test]
fn subscription_options_byte() {
    let sub = |v5: bool, opts: u8| {
        let head: &[u8] = if v5 { &[0, 1, 0] } else { &[0, 1] };
        pkt(0x82, &cat(&[head, &s(b"a"), &[opts]]))
    };
    assert_eq!(reason(&sub(true, 0x40), V5), MALFORMED); // reserved bit 6
    assert_eq!(reason(&sub(true, 0x80), V5), MALFORMED); // reserved bit 7
    assert_eq!(reason(&sub(true, 0x03), V5), MALFORMED); // QoS 3
    assert_eq!(reason(&sub(true, 0x30), V5), MALFORMED); // retain handling 3
    assert_eq!(reason(&sub(false, 0x03), V3), MALFORMED);
    assert_eq!(reason(&sub(false, 0x04), V3), MALFORMED); // v5-only bits in 3.1.1
    match ok(&sub(true, 0x2E), V5) {
        Packet::Subscribe(s) => {
            let o = s.filters[0].1;
            assert_eq!(o.qos, QoS::ExactlyOnce);
            assert!(o.no_local && o.retain_as_published);
            assert_eq!(o.retain_handling, RetainHandling::DoNotSend);
        }
        other => panic!("{other:?}"),
    }
}

// ---- CONNECT ---------------------------------------------------------------

#[test]
fn connect_bad_protocol_level() {
    let id = s(b"id");
    for level in [0, 3, 6, 255] {
        let e = err(&connect(b"MQTT", level, 0x02, &id), V3);
        assert_eq!(e.reason, ReasonCode::UNSUPPORTED_PROTOCOL_VERSION);
    }
    // MQTT 3.1 is "MQIsdp" at level 3 only; "MQIsdp" at another level is not.
    match ok(&connect(b"MQIsdp", 3, 0x02, &id), V3) {
        Packet::Connect(c) => assert_eq!(c.protocol, ProtocolVersion::V31),
        other => panic!("{other:?}"),
    }
    for level in [4, 5] {
        assert_eq!(
            reason(&connect(b"MQIsdp", level, 0x02, &id), V3),
            ReasonCode::UNSUPPORTED_PROTOCOL_VERSION
        );
    }
    assert_eq!(
        reason(&connect(b"HTTP", 4, 0x02, &id), V3),
        ReasonCode::UNSUPPORTED_PROTOCOL_VERSION
    );
}

#[test]
fn connect_flags() {
    let id = s(b"id");
    assert_eq!(reason(&connect(b"MQTT", 4, 0x03, &id), V3), MALFORMED); // reserved bit 0
    assert_eq!(reason(&connect(b"MQTT", 4, 0x08, &id), V3), MALFORMED); // will QoS w/o will
    assert_eq!(reason(&connect(b"MQTT", 4, 0x20, &id), V3), MALFORMED); // will retain w/o will
    let will = cat(&[&id, &s(b"w"), &s(b"bye")]);
    assert_eq!(reason(&connect(b"MQTT", 4, 0x1C, &will), V3), MALFORMED); // will QoS 3
    assert!(matches!(
        ok(&connect(b"MQTT", 4, 0x14, &will), V3),
        Packet::Connect(_)
    ));
    // Will topic must be a valid topic name.
    let bad_will = cat(&[&id, &s(b"w/#"), &s(b"bye")]);
    assert_eq!(
        reason(&connect(b"MQTT", 4, 0x04, &bad_will), V3),
        ReasonCode::TOPIC_NAME_INVALID
    );
}

#[test]
fn connect_password_without_username() {
    let body = cat(&[&s(b"id"), &s(b"pw")]);
    assert_eq!(reason(&connect(b"MQTT", 4, 0x42, &body), V3), MALFORMED);
    let v5 = cat(&[&[0], &body]);
    match ok(&connect(b"MQTT", 5, 0x42, &v5), V3) {
        Packet::Connect(c) => {
            assert_eq!(c.protocol, V5);
            assert_eq!(c.username, None);
            assert_eq!(c.password.as_deref(), Some(&b"pw"[..]));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn connect_invalid_utf8_client_id() {
    let e = err(&connect(b"MQTT", 4, 0x02, &s(&[0xC0, 0x80])), V3);
    assert_eq!(e.reason, MALFORMED);
    assert_eq!(e.message, "invalid UTF-8 in client identifier");
}

#[test]
fn connect_decodes_independently_of_version_argument() {
    let c = connect(b"MQTT", 5, 0x02, &cat(&[&[0], &s(b"id")]));
    assert_eq!(ok(&c, V3), ok(&c, V5));
    assert_eq!(decode_connect_version(&c), Some(V5));
    let c = connect(b"MQTT", 4, 0x02, &s(b"id"));
    assert_eq!(decode_connect_version(&c), Some(V3));
}

#[test]
fn connect_version_peek() {
    let c = connect(b"MQTT", 5, 0x02, &cat(&[&[0], &s(b"id")]));
    // Needs the fixed header, name and level: 1 + 1 + 6 + 1 bytes.
    for n in 0..9 {
        assert_eq!(decode_connect_version(&c[..n]), None, "prefix {n}");
    }
    assert_eq!(decode_connect_version(&c[..9]), Some(V5));
    assert_eq!(decode_connect_version(&[0x30, 0]), None);
}

// ---- properties ------------------------------------------------------------

#[test]
fn duplicate_property() {
    let e = err(
        &publish_with(&[id::TOPIC_ALIAS, 0, 1, id::TOPIC_ALIAS, 0, 2]),
        V5,
    );
    assert_eq!(e.reason, PROTOCOL);
    assert_eq!(e.message, "duplicate property Topic Alias");
    let c = connect(
        b"MQTT",
        5,
        0x02,
        &cat(&[
            &props(&[
                id::SESSION_EXPIRY_INTERVAL,
                0,
                0,
                0,
                1,
                id::SESSION_EXPIRY_INTERVAL,
                0,
                0,
                0,
                2,
            ]),
            &s(b"id"),
        ]),
    );
    assert_eq!(reason(&c, V5), PROTOCOL);
    // User properties may repeat.
    let up = [&[id::USER_PROPERTY][..], &s(b"k"), &s(b"v")].concat();
    assert!(matches!(
        ok(&publish_with(&[&up[..], &up].concat()), V5),
        Packet::Publish(_)
    ));
}

#[test]
fn property_not_allowed_in_packet() {
    // Topic Alias is PUBLISH-only; Will Delay Interval is Will-only.
    let c = connect(
        b"MQTT",
        5,
        0x02,
        &cat(&[&props(&[id::TOPIC_ALIAS, 0, 1]), &s(b"id")]),
    );
    assert_eq!(reason(&c, V5), PROTOCOL);
    assert_eq!(
        reason(&publish_with(&[id::WILL_DELAY_INTERVAL, 0, 0, 0, 1]), V5),
        PROTOCOL
    );
    // Reason String is not allowed in PUBLISH; Session Expiry not in PUBACK.
    assert_eq!(
        reason(&publish_with(&cat(&[&[id::REASON_STRING], &s(b"x")])), V5),
        PROTOCOL
    );
    let ack = pkt(
        0x40,
        &cat(&[
            &[0, 1, 0],
            &props(&[id::SESSION_EXPIRY_INTERVAL, 0, 0, 0, 1]),
        ]),
    );
    assert_eq!(reason(&ack, V5), PROTOCOL);
    // Only User Property in UNSUBSCRIBE.
    let unsub = pkt(
        0xA2,
        &cat(&[&[0, 1], &props(&[id::SUBSCRIPTION_IDENTIFIER, 1]), &s(b"a")]),
    );
    assert_eq!(reason(&unsub, V5), PROTOCOL);
}

#[test]
fn unknown_property_identifier() {
    assert_eq!(reason(&publish_with(&[0x7F, 0]), V5), MALFORMED);
}

#[test]
fn property_values_out_of_range() {
    assert_eq!(
        reason(&publish_with(&[id::PAYLOAD_FORMAT_INDICATOR, 2]), V5),
        PROTOCOL
    );
    assert_eq!(
        reason(&publish_with(&[id::SUBSCRIPTION_IDENTIFIER, 0]), V5),
        PROTOCOL
    );
    assert_eq!(
        reason(&publish_with(&[id::TOPIC_ALIAS, 0, 0]), V5),
        ReasonCode::TOPIC_ALIAS_INVALID
    );
    let connect_props = |raw: &[u8]| connect(b"MQTT", 5, 0x02, &cat(&[&props(raw), &s(b"id")]));
    assert_eq!(
        reason(&connect_props(&[id::RECEIVE_MAXIMUM, 0, 0]), V5),
        PROTOCOL
    );
    assert_eq!(
        reason(&connect_props(&[id::MAXIMUM_PACKET_SIZE, 0, 0, 0, 0]), V5),
        PROTOCOL
    );
    assert_eq!(
        reason(&connect_props(&[id::REQUEST_PROBLEM_INFORMATION, 2]), V5),
        PROTOCOL
    );
    assert_eq!(
        reason(&connect_props(&[id::REQUEST_RESPONSE_INFORMATION, 7]), V5),
        PROTOCOL
    );
    // Authentication Data without Authentication Method.
    let auth_data = cat(&[&[id::AUTHENTICATION_DATA], &s(b"x")]);
    assert_eq!(reason(&connect_props(&auth_data), V5), PROTOCOL);
    let connack = |raw: &[u8]| pkt(0x20, &cat(&[&[0, 0], &props(raw)]));
    assert_eq!(reason(&connack(&[id::MAXIMUM_QOS, 2]), V5), PROTOCOL);
    assert_eq!(reason(&connack(&[id::RETAIN_AVAILABLE, 2]), V5), PROTOCOL);
    assert_eq!(
        reason(&connack(&[id::SHARED_SUBSCRIPTION_AVAILABLE, 9]), V5),
        PROTOCOL
    );
    // Wildcard in Response Topic.
    let rt = cat(&[&[id::RESPONSE_TOPIC], &s(b"a/+")]);
    assert_eq!(reason(&publish_with(&rt), V5), PROTOCOL);
}

#[test]
fn subscription_identifier_multiplicity() {
    // PUBLISH (server to client) may carry several; SUBSCRIBE at most one.
    let two = [
        id::SUBSCRIPTION_IDENTIFIER,
        1,
        id::SUBSCRIPTION_IDENTIFIER,
        0x80,
        0x01,
    ];
    match ok(&publish_with(&two), V5) {
        Packet::Publish(p) => assert_eq!(p.properties.subscription_identifiers, vec![1, 128]),
        other => panic!("{other:?}"),
    }
    let sub = pkt(0x82, &cat(&[&[0, 1], &props(&two), &s(b"a"), &[0]]));
    assert_eq!(reason(&sub, V5), PROTOCOL);
}

#[test]
fn truncated_property_value() {
    // Message Expiry Interval needs 4 bytes; the block holds 2.
    assert_eq!(
        reason(&publish_with(&[id::MESSAGE_EXPIRY_INTERVAL, 0, 0]), V5),
        MALFORMED
    );
    // Invalid UTF-8 inside a string property.
    let ct = cat(&[&[id::CONTENT_TYPE], &s(&[0xFF])]);
    assert_eq!(reason(&publish_with(&ct), V5), MALFORMED);
}

// ---- acks, DISCONNECT, AUTH --------------------------------------------------

#[test]
fn v5_ack_short_forms() {
    assert_eq!(ok(&pkt(0x40, &[0, 1]), V5), Packet::PubAck(PubAck::new(1)));
    match ok(&pkt(0x50, &[0, 1, 0x10]), V5) {
        Packet::PubRec(a) => assert_eq!(a.reason_code, ReasonCode::NO_MATCHING_SUBSCRIBERS),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        ok(&[0xE0, 0], V5),
        Packet::Disconnect(Disconnect::new(ReasonCode::NORMAL_DISCONNECTION))
    );
    assert_eq!(
        ok(&[0xE0, 1, 0x04], V5),
        Packet::Disconnect(Disconnect::new(ReasonCode::DISCONNECT_WITH_WILL_MESSAGE))
    );
}

#[test]
fn invalid_reason_codes() {
    assert_eq!(reason(&pkt(0x40, &[0, 1, 0x05]), V5), MALFORMED);
    assert_eq!(reason(&pkt(0x62, &[0, 1, 0x10]), V5), MALFORMED); // PUBREL only 0, 0x92
    assert_eq!(reason(&[0xE0, 1, 0x01], V5), MALFORMED);
    assert_eq!(reason(&[0xF0, 1, 0x01], V5), MALFORMED);
    assert_eq!(reason(&pkt(0x90, &[0, 1, 0x03]), V3), MALFORMED); // v3 SUBACK
    assert_eq!(reason(&pkt(0x20, &[0, 6]), V3), MALFORMED); // v3 CONNACK return code 6
}

#[test]
fn connack_reserved_flags() {
    assert_eq!(reason(&pkt(0x20, &[0x02, 0]), V3), MALFORMED);
    assert_eq!(reason(&pkt(0x20, &[0x80, 0, 0]), V5), MALFORMED);
}

#[test]
fn error_display_is_a_log_line() {
    let e = err(&pkt(0x36, &cat(&[&s(b"t"), &[0, 1]])), V5);
    assert_eq!(e.to_string(), "0x81 Malformed Packet: PUBLISH QoS 3");
}
