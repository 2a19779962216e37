//! Incremental packet decoding: framing (fixed header, §2.1) and one body
//! decoder per control packet (§3.x).
//!
//! Decoding reads straight from the caller's slice; the only allocations are
//! the owned strings and payload copies of the returned [`Packet`].

use std::fmt;

use bytes::Bytes;

use crate::decode_connect::decode_connect;
use crate::packet::*;
use crate::properties::Properties;
use crate::props_codec::{decode_properties, Ctx};
use crate::types::{ProtocolVersion, QoS, ReasonCode, RetainHandling};
use crate::wire::{malformed, protocol_error, read_vbi, Reader, Vbi};

/// A packet that cannot be accepted. `reason` is what a v5 DISCONNECT (or
/// CONNACK, for a bad CONNECT) must carry; `message` is the log line's detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub reason: ReasonCode,
    pub message: String,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)
    }
}

impl std::error::Error for DecodeError {}

/// Decodes one packet from the front of `buf`.
///
/// - `Ok(None)`: `buf` holds only part of a packet; call again with more bytes.
/// - `Ok(Some((packet, n)))`: the first `n` bytes were one packet.
/// - `Err(e)`: the bytes are not a valid packet for `version`; close the connection.
///
/// `version` is the connection's negotiated version (use the CONNECT's own level
/// for CONNECT: CONNECT decodes the same in both). `max_packet_size` bounds the
/// whole packet (fixed header included); larger packets fail with Packet too large
/// as soon as their fixed header is read, before the body arrives.
///
/// The first byte (packet type and flags) is checked as soon as it arrives, so
/// garbage is rejected without waiting for a remaining length.
pub fn decode(
    buf: &[u8],
    version: ProtocolVersion,
    max_packet_size: u32,
) -> Result<Option<(Packet, usize)>, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let kind = first >> 4;
    let flags = first & 0x0F;
    check_fixed_header(kind, flags, version)?;
    let (remaining, vbi_n) = match read_vbi(&buf[1..]) {
        Vbi::Value(v, n) => (v as usize, n),
        Vbi::Incomplete => return Ok(None),
        Vbi::TooLong => return Err(malformed("remaining length longer than 4 bytes")),
    };
    let total = 1 + vbi_n + remaining;
    // §3.1.2.11.4 / §3.2.2.3.6: the Maximum Packet Size covers the whole packet.
    if total as u64 > u64::from(max_packet_size) {
        return Err(DecodeError {
            reason: ReasonCode::PACKET_TOO_LARGE,
            message: format!(
                "packet of {total} bytes exceeds maximum packet size {max_packet_size}"
            ),
        });
    }
    if buf.len() < total {
        return Ok(None);
    }
    let mut r = Reader::new(&buf[1 + vbi_n..total]);
    let v5 = version.is_v5();
    let packet = match kind {
        packet_type::CONNECT => Packet::Connect(decode_connect(&mut r)?),
        packet_type::CONNACK => Packet::ConnAck(decode_connack(&mut r, v5)?),
        packet_type::PUBLISH => Packet::Publish(decode_publish(&mut r, flags, v5)?),
        packet_type::PUBACK => Packet::PubAck(decode_puback(&mut r, v5, PUBACK_CODES, "PUBACK")?),
        packet_type::PUBREC => Packet::PubRec(decode_puback(&mut r, v5, PUBACK_CODES, "PUBREC")?),
        packet_type::PUBREL => Packet::PubRel(decode_puback(&mut r, v5, PUBREL_CODES, "PUBREL")?),
        packet_type::PUBCOMP => {
            Packet::PubComp(decode_puback(&mut r, v5, PUBREL_CODES, "PUBCOMP")?)
        }
        packet_type::SUBSCRIBE => Packet::Subscribe(decode_subscribe(&mut r, v5)?),
        packet_type::SUBACK => Packet::SubAck(decode_suback(&mut r, v5)?),
        packet_type::UNSUBSCRIBE => Packet::Unsubscribe(decode_unsubscribe(&mut r, v5)?),
        packet_type::UNSUBACK => Packet::UnsubAck(decode_unsuback(&mut r, v5)?),
        packet_type::PINGREQ => {
            expect_empty(&r, "PINGREQ")?;
            Packet::PingReq
        }
        packet_type::PINGRESP => {
            expect_empty(&r, "PINGRESP")?;
            Packet::PingResp
        }
        packet_type::DISCONNECT => Packet::Disconnect(decode_disconnect(&mut r, v5)?),
        packet_type::AUTH => Packet::Auth(decode_auth(&mut r)?),
        _ => unreachable!("check_fixed_header rejects packet type {kind}"),
    };
    // Every body decoder consumes exactly what it understands; anything left
    // means the Remaining Length disagrees with the content (§2.1.4).
    if !r.is_empty() {
        return Err(malformed(format!(
            "{} has {} unexpected trailing bytes",
            packet.name(),
            r.remaining()
        )));
    }
    Ok(Some((packet, total)))
}

/// For the first packet of a connection: reads the protocol level of a CONNECT
/// without decoding the rest, so the error path can answer in the right version.
/// `None` when more bytes are needed or when it is not a CONNECT.
///
/// Level 5 gives `V5`; any other level (4, but also 3 or garbage) gives `V311`,
/// because a 3.1.1-format CONNACK with return code 0x01 is what the 3.1.1 spec
/// requires for an unsupported level (§3.1.2.2) and what older clients parse.
pub fn decode_connect_version(buf: &[u8]) -> Option<ProtocolVersion> {
    if *buf.first()? != packet_type::CONNECT << 4 {
        return None;
    }
    let n = match read_vbi(&buf[1..]) {
        Vbi::Value(_, n) => n,
        _ => return None,
    };
    let rest = &buf[1 + n..];
    let name_len = usize::from(u16::from_be_bytes([*rest.first()?, *rest.get(1)?]));
    let level = *rest.get(2 + name_len)?;
    Some(if level == 5 {
        ProtocolVersion::V5
    } else {
        ProtocolVersion::V311
    })
}

/// Packet type and the flag bits of the first byte (§2.1.2, §2.1.3).
#[inline]
fn check_fixed_header(kind: u8, flags: u8, version: ProtocolVersion) -> Result<(), DecodeError> {
    let expected = match kind {
        packet_type::PUBLISH => {
            // DUP, QoS, RETAIN are all meaningful; only QoS 3 is invalid (§3.3.1.2),
            // and DUP must be 0 for QoS 0 (§3.3.1.1).
            let qos = (flags >> 1) & 0b11;
            if qos == 3 {
                return Err(malformed("PUBLISH QoS 3"));
            }
            if qos == 0 && flags & 0b1000 != 0 {
                return Err(malformed("PUBLISH DUP set with QoS 0"));
            }
            return Ok(());
        }
        packet_type::PUBREL | packet_type::SUBSCRIBE | packet_type::UNSUBSCRIBE => 0b0010,
        packet_type::AUTH if !version.is_v5() => {
            return Err(malformed("AUTH packet in MQTT 3.1.1"));
        }
        1..=15 => 0,
        _ => return Err(malformed("reserved packet type 0")),
    };
    if flags != expected {
        return Err(malformed(format!(
            "reserved fixed header flags 0x{flags:X} for packet type {kind}"
        )));
    }
    Ok(())
}

#[inline]
fn expect_empty(r: &Reader<'_>, name: &str) -> Result<(), DecodeError> {
    if r.is_empty() {
        Ok(())
    } else {
        Err(malformed(format!("{name} with non-zero remaining length")))
    }
}

/// A Packet Identifier, which MUST be non-zero (§2.2.1).
#[inline]
pub(crate) fn packet_id(r: &mut Reader<'_>) -> Result<u16, DecodeError> {
    match r.u16("packet identifier")? {
        0 => Err(malformed("packet identifier 0")),
        id => Ok(id),
    }
}

/// Properties of a v5 packet, nothing for 3.1.1.
#[inline]
fn props(r: &mut Reader<'_>, v5: bool, ctx: Ctx) -> Result<Properties, DecodeError> {
    if v5 {
        decode_properties(r, ctx)
    } else {
        Ok(Properties::default())
    }
}

/// Checks a v5 reason code against the values the packet allows (§2.4 and the
/// table of each packet). An unassigned value is not a valid encoding: 0x81.
#[inline]
fn reason(r: &mut Reader<'_>, allowed: &[u8], name: &str) -> Result<ReasonCode, DecodeError> {
    let code = r.u8("reason code")?;
    if allowed.contains(&code) {
        Ok(ReasonCode(code))
    } else {
        Err(malformed(format!(
            "invalid {name} reason code 0x{code:02X}"
        )))
    }
}

/// §3.2.2.2.
pub(crate) const CONNACK_CODES: &[u8] = &[
    0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
    0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
];
/// §3.4.2.1 and §3.5.2.1 (PUBACK and PUBREC share the table).
pub(crate) const PUBACK_CODES: &[u8] = &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
/// §3.6.2.1 and §3.7.2.1 (PUBREL and PUBCOMP share the table).
pub(crate) const PUBREL_CODES: &[u8] = &[0x00, 0x92];
/// §3.9.3.
pub(crate) const SUBACK_CODES: &[u8] = &[
    0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
];
/// §3.11.3.
pub(crate) const UNSUBACK_CODES: &[u8] = &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];
/// §3.14.2.1.
pub(crate) const DISCONNECT_CODES: &[u8] = &[
    0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95,
    0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
];
/// §3.15.2.1.
pub(crate) const AUTH_CODES: &[u8] = &[0x00, 0x18, 0x19];
/// SUBACK return codes of 3.1.1 (§3.9.3 of 3.1.1).
pub(crate) const SUBACK_CODES_V3: &[u8] = &[0x00, 0x01, 0x02, 0x80];

/// The v5 reason code a 3.1.1 CONNACK return code (§3.2.2.3 of 3.1.1) stands
/// for; the inverse of [`ReasonCode::to_v311_connack`].
fn connack_from_v311(code: u8) -> Option<ReasonCode> {
    Some(match code {
        0 => ReasonCode::SUCCESS,
        1 => ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
        2 => ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
        3 => ReasonCode::SERVER_UNAVAILABLE,
        4 => ReasonCode::BAD_USER_NAME_OR_PASSWORD,
        5 => ReasonCode::NOT_AUTHORIZED,
        _ => return None,
    })
}

fn decode_connack(r: &mut Reader<'_>, v5: bool) -> Result<ConnAck, DecodeError> {
    let flags = r.u8("CONNACK flags")?;
    // Bits 7-1 are reserved (§3.2.2.1).
    if flags & 0xFE != 0 {
        return Err(malformed("reserved CONNACK flags set"));
    }
    let code = r.u8("CONNACK reason code")?;
    let reason_code = if v5 {
        if !CONNACK_CODES.contains(&code) {
            return Err(malformed(format!(
                "invalid CONNACK reason code 0x{code:02X}"
            )));
        }
        ReasonCode(code)
    } else {
        connack_from_v311(code)
            .ok_or_else(|| malformed(format!("invalid CONNACK return code {code}")))?
    };
    let properties = props(r, v5, Ctx::CONNACK)?;
    Ok(ConnAck {
        session_present: flags & 1 != 0,
        reason_code,
        properties,
    })
}

fn decode_publish(r: &mut Reader<'_>, flags: u8, v5: bool) -> Result<Publish, DecodeError> {
    // QoS 3 and DUP with QoS 0 were rejected by check_fixed_header.
    let qos = QoS::from_u8((flags >> 1) & 0b11).unwrap_or(QoS::AtMostOnce);
    let topic = r.str("topic name")?;
    // §3.3.2.1: a Topic Name MUST NOT contain wildcards.
    if topic.contains(['+', '#']) {
        return Err(DecodeError {
            reason: ReasonCode::TOPIC_NAME_INVALID,
            message: "wildcard in PUBLISH topic name".into(),
        });
    }
    let packet_id = if qos == QoS::AtMostOnce {
        None
    } else {
        Some(packet_id(r)?)
    };
    let properties = props(r, v5, Ctx::PUBLISH)?;
    // An empty topic is only meaningful with a Topic Alias (§3.3.2.3.4); 3.1.1
    // requires at least one character (§4.7.3 of 3.1.1).
    if topic.is_empty() {
        if !v5 {
            return Err(DecodeError {
                reason: ReasonCode::TOPIC_NAME_INVALID,
                message: "empty PUBLISH topic name".into(),
            });
        }
        if properties.topic_alias.is_none() {
            return Err(protocol_error(
                "empty PUBLISH topic name without Topic Alias",
            ));
        }
    }
    Ok(Publish {
        dup: flags & 0b1000 != 0,
        qos,
        retain: flags & 1 != 0,
        topic: topic.to_owned(),
        packet_id,
        properties,
        payload: Bytes::copy_from_slice(r.rest()),
    })
}

/// PUBACK / PUBREC / PUBREL / PUBCOMP (§3.4–3.7).
fn decode_puback(
    r: &mut Reader<'_>,
    v5: bool,
    codes: &[u8],
    name: &str,
) -> Result<PubAck, DecodeError> {
    let packet_id = packet_id(r)?;
    let mut ack = PubAck::new(packet_id);
    // v5 short forms (§3.4.2.1): remaining length 2 means Success and no
    // properties; 3 means a reason code and no properties.
    if v5 && !r.is_empty() {
        ack.reason_code = reason(r, codes, name)?;
        if !r.is_empty() {
            ack.properties = decode_properties(r, Ctx::PUBACK)?;
        }
    }
    Ok(ack)
}

/// Subscription Options byte (§3.8.3.1; 3.1.1 §3.8.3: only the QoS bits).
fn subscription_options(b: u8, v5: bool) -> Result<SubscriptionOptions, DecodeError> {
    let qos = QoS::from_u8(b & 0b11).ok_or_else(|| malformed("subscription QoS 3"))?;
    if !v5 {
        if b & 0xFC != 0 {
            return Err(malformed("reserved subscription option bits set"));
        }
        return Ok(SubscriptionOptions::new(qos));
    }
    if b & 0xC0 != 0 {
        return Err(malformed("reserved subscription option bits set"));
    }
    let retain_handling = match (b >> 4) & 0b11 {
        0 => RetainHandling::SendAtSubscribe,
        1 => RetainHandling::SendIfNew,
        2 => RetainHandling::DoNotSend,
        _ => return Err(malformed("retain handling 3")),
    };
    Ok(SubscriptionOptions {
        qos,
        no_local: b & 0b0100 != 0,
        retain_as_published: b & 0b1000 != 0,
        retain_handling,
    })
}

/// An empty SUBSCRIBE / UNSUBSCRIBE payload (or ack list): a Protocol Error in
/// v5 (§3.8.3, §3.10.3), a Malformed Packet in 3.1.1 (§3.8.3-3 of 3.1.1).
#[cold]
fn empty_payload(v5: bool, name: &str) -> DecodeError {
    let msg = format!("{name} with an empty payload");
    if v5 {
        protocol_error(msg)
    } else {
        malformed(msg)
    }
}

fn decode_subscribe(r: &mut Reader<'_>, v5: bool) -> Result<Subscribe, DecodeError> {
    let packet_id = packet_id(r)?;
    let properties = props(r, v5, Ctx::SUBSCRIBE)?;
    if r.is_empty() {
        return Err(empty_payload(v5, "SUBSCRIBE"));
    }
    // Each entry is at least 3 bytes (length, 0 bytes of filter, options byte).
    let mut filters = Vec::with_capacity((r.remaining() / 4).clamp(1, 16));
    while !r.is_empty() {
        // Filter syntax (wildcard placement, shared subscriptions) is not
        // checked here: v5 answers a bad filter per entry with SUBACK 0x8F
        // (§3.9.3), so the session decides for both versions.
        let filter = r.str("topic filter")?;
        let options = subscription_options(r.u8("subscription options")?, v5)?;
        filters.push((filter.to_owned(), options));
    }
    Ok(Subscribe {
        packet_id,
        properties,
        filters,
    })
}

fn decode_suback(r: &mut Reader<'_>, v5: bool) -> Result<SubAck, DecodeError> {
    let packet_id = packet_id(r)?;
    let properties = props(r, v5, Ctx::SUBACK)?;
    if r.is_empty() {
        return Err(empty_payload(v5, "SUBACK"));
    }
    let codes = if v5 { SUBACK_CODES } else { SUBACK_CODES_V3 };
    let mut reason_codes = Vec::with_capacity(r.remaining());
    while !r.is_empty() {
        reason_codes.push(reason(r, codes, "SUBACK")?);
    }
    Ok(SubAck {
        packet_id,
        properties,
        reason_codes,
    })
}

fn decode_unsubscribe(r: &mut Reader<'_>, v5: bool) -> Result<Unsubscribe, DecodeError> {
    let packet_id = packet_id(r)?;
    let properties = props(r, v5, Ctx::UNSUBSCRIBE)?;
    if r.is_empty() {
        return Err(empty_payload(v5, "UNSUBSCRIBE"));
    }
    let mut filters = Vec::with_capacity((r.remaining() / 3).clamp(1, 16));
    while !r.is_empty() {
        filters.push(r.str("topic filter")?.to_owned());
    }
    Ok(Unsubscribe {
        packet_id,
        properties,
        filters,
    })
}

fn decode_unsuback(r: &mut Reader<'_>, v5: bool) -> Result<UnsubAck, DecodeError> {
    let packet_id = packet_id(r)?;
    // 3.1.1 UNSUBACK is just the packet identifier (§3.11 of 3.1.1).
    if !v5 {
        return Ok(UnsubAck {
            packet_id,
            properties: Properties::default(),
            reason_codes: Vec::new(),
        });
    }
    let properties = decode_properties(r, Ctx::UNSUBACK)?;
    if r.is_empty() {
        return Err(empty_payload(v5, "UNSUBACK"));
    }
    let mut reason_codes = Vec::with_capacity(r.remaining());
    while !r.is_empty() {
        reason_codes.push(reason(r, UNSUBACK_CODES, "UNSUBACK")?);
    }
    Ok(UnsubAck {
        packet_id,
        properties,
        reason_codes,
    })
}

fn decode_disconnect(r: &mut Reader<'_>, v5: bool) -> Result<Disconnect, DecodeError> {
    let mut d = Disconnect::new(ReasonCode::NORMAL_DISCONNECTION);
    // 3.1.1 DISCONNECT has no variable header; the trailing-bytes check in
    // `decode` rejects a non-zero remaining length (§3.14.1 of 3.1.1).
    // v5 (§3.14.2.1): remaining length 0 means Normal disconnection, 1 means
    // a reason code without properties.
    if v5 && !r.is_empty() {
        d.reason_code = reason(r, DISCONNECT_CODES, "DISCONNECT")?;
        if !r.is_empty() {
            d.properties = decode_properties(r, Ctx::DISCONNECT)?;
        }
    }
    Ok(d)
}

fn decode_auth(r: &mut Reader<'_>) -> Result<Auth, DecodeError> {
    // Same short forms as DISCONNECT (§3.15.2.1, §3.15.2.2.1).
    let mut a = Auth {
        reason_code: ReasonCode::SUCCESS,
        properties: Properties::default(),
    };
    if !r.is_empty() {
        a.reason_code = reason(r, AUTH_CODES, "AUTH")?;
        if !r.is_empty() {
            a.properties = decode_properties(r, Ctx::AUTH)?;
        }
    }
    Ok(a)
}
