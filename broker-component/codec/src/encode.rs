//! Packet encoding.
//!
//! Encoding is two passes over the packet: [`plan`] computes the remaining
//! length and the property lengths (which `encoded_len` also uses, so the two
//! can never disagree) and checks that every field fits the wire format; only
//! then is the buffer reserved once and written. A packet that does not fit is
//! an [`EncodeError`] and nothing is written: encoding never panics, because a
//! broker re-encodes what clients sent (a PUBLISH of the maximum size gains a
//! Subscription Identifier on delivery and no longer fits, §1.5.5).

use std::fmt;

use bytes::{BufMut, BytesMut};

use crate::packet::*;
use crate::properties::Properties;
use crate::props_codec::{properties_len, put_properties};
use crate::types::{ProtocolVersion, QoS, ReasonCode};
use crate::wire::{put_bin, put_str, put_vbi, vbi_len, VBI_MAX};

/// Why a packet cannot be encoded; nothing was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncodeError {
    /// The Remaining Length would exceed 268,435,455, the largest Variable
    /// Byte Integer (§1.5.5, §2.1.4).
    RemainingLengthTooLarge(usize),
    /// A UTF-8 string or Binary Data field over 65,535 bytes (§1.5.4, §1.5.6).
    FieldTooLong { field: &'static str, len: usize },
    /// A Variable Byte Integer property over 268,435,455 (§1.5.5).
    ValueTooLarge { field: &'static str, value: u32 },
    /// A PUBLISH with QoS > 0 and no Packet Identifier (§2.2.1).
    MissingPacketId,
    /// A packet that does not exist in the protocol version (AUTH in 3.1.1).
    NotInVersion(&'static str),
    /// The packet is larger than the receiver's Maximum Packet Size
    /// (§3.1.2.11.4, §3.2.2.3.6).
    PacketTooLarge { size: usize, maximum: u32 },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::RemainingLengthTooLarge(n) => {
                write!(f, "remaining length {n} exceeds 268,435,455 (MQTT 1.5.5)")
            }
            EncodeError::FieldTooLong { field, len } => {
                write!(f, "{field} of {len} bytes exceeds 65,535 (MQTT 1.5.4)")
            }
            EncodeError::ValueTooLarge { field, value } => {
                write!(f, "{field} {value} exceeds 268,435,455 (MQTT 1.5.5)")
            }
            EncodeError::MissingPacketId => {
                f.write_str("PUBLISH with QoS > 0 and no packet identifier")
            }
            EncodeError::NotInVersion(name) => write!(f, "{name} does not exist in MQTT 3.1.1"),
            EncodeError::PacketTooLarge { size, maximum } => write!(
                f,
                "packet of {size} bytes exceeds the Maximum Packet Size {maximum}"
            ),
        }
    }
}

impl std::error::Error for EncodeError {}

/// Sizes computed (and checked) before writing.
struct Plan {
    /// Remaining Length of the fixed header (§2.1.4), at most 268,435,455.
    remaining: usize,
    /// Length of the packet's property block (0 for 3.1.1).
    props: usize,
    /// Length of the Will properties of a v5 CONNECT.
    will_props: usize,
}

impl Plan {
    /// The whole packet: fixed header plus remaining length.
    #[inline]
    fn total(&self) -> usize {
        1 + vbi_len(self.remaining) + self.remaining
    }
}

/// The length of a string or binary field with its 2-byte prefix, checked.
#[inline]
pub(crate) fn field(field: &'static str, len: usize) -> Result<usize, EncodeError> {
    if len > usize::from(u16::MAX) {
        return Err(EncodeError::FieldTooLong { field, len });
    }
    Ok(2 + len)
}

/// Checks the Remaining Length against the Variable Byte Integer maximum.
#[inline]
fn remaining(n: usize) -> Result<usize, EncodeError> {
    if n > VBI_MAX as usize {
        return Err(EncodeError::RemainingLengthTooLarge(n));
    }
    Ok(n)
}

/// Appends the encoding of `packet` for `version` to `out` and returns the
/// number of bytes written; on error `out` is unchanged.
///
/// CONNECT is encoded for its own `protocol` field (mirroring `decode`), not
/// for `version`. For 3.1.1, properties and v5-only fields are omitted, the
/// CONNACK reason code becomes a return code ([`ReasonCode::to_v311_connack`])
/// and SUBACK codes other than 0, 1, 2 become 0x80.
pub fn encode(
    packet: &Packet,
    version: ProtocolVersion,
    out: &mut BytesMut,
) -> Result<usize, EncodeError> {
    let plan = plan(packet, version)?;
    let total = plan.total();
    out.reserve(total);
    let start = out.len();
    let v5 = version.is_v5();
    match packet {
        Packet::Connect(c) => {
            out.put_u8(packet_type::CONNECT << 4);
            put_vbi(out, plan.remaining);
            put_connect(out, c, &plan);
        }
        Packet::ConnAck(c) => {
            out.put_u8(packet_type::CONNACK << 4);
            put_vbi(out, plan.remaining);
            out.put_u8(u8::from(c.session_present));
            if v5 {
                out.put_u8(c.reason_code.0);
                put_properties(out, &c.properties, plan.props);
            } else {
                out.put_u8(c.reason_code.to_v311_connack());
            }
        }
        Packet::Publish(p) => put_publish(out, &p.as_ref(), v5, &plan),
        Packet::PubAck(a) => put_puback(out, packet_type::PUBACK << 4, a, v5, &plan),
        Packet::PubRec(a) => put_puback(out, packet_type::PUBREC << 4, a, v5, &plan),
        Packet::PubRel(a) => put_puback(out, (packet_type::PUBREL << 4) | 0b0010, a, v5, &plan),
        Packet::PubComp(a) => put_puback(out, packet_type::PUBCOMP << 4, a, v5, &plan),
        Packet::Subscribe(s) => {
            out.put_u8((packet_type::SUBSCRIBE << 4) | 0b0010);
            put_vbi(out, plan.remaining);
            out.put_u16(s.packet_id);
            if v5 {
                put_properties(out, &s.properties, plan.props);
            }
            for (filter, o) in &s.filters {
                put_str(out, filter);
                let mut b = o.qos.as_u8();
                if v5 {
                    b |= (u8::from(o.no_local) << 2)
                        | (u8::from(o.retain_as_published) << 3)
                        | ((o.retain_handling as u8) << 4);
                }
                out.put_u8(b);
            }
        }
        Packet::SubAck(s) => {
            out.put_u8(packet_type::SUBACK << 4);
            put_vbi(out, plan.remaining);
            out.put_u16(s.packet_id);
            if v5 {
                put_properties(out, &s.properties, plan.props);
                out.extend(s.reason_codes.iter().map(|c| c.0));
            } else {
                // 3.1.1 has only 0, 1, 2 and 0x80 Failure (§3.9.3 of 3.1.1).
                out.extend(
                    s.reason_codes
                        .iter()
                        .map(|c| if c.0 <= 2 { c.0 } else { 0x80 }),
                );
            }
        }
        Packet::Unsubscribe(u) => {
            out.put_u8((packet_type::UNSUBSCRIBE << 4) | 0b0010);
            put_vbi(out, plan.remaining);
            out.put_u16(u.packet_id);
            if v5 {
                put_properties(out, &u.properties, plan.props);
            }
            for filter in &u.filters {
                put_str(out, filter);
            }
        }
        Packet::UnsubAck(u) => {
            out.put_u8(packet_type::UNSUBACK << 4);
            put_vbi(out, plan.remaining);
            out.put_u16(u.packet_id);
            // 3.1.1 UNSUBACK carries only the packet identifier.
            if v5 {
                put_properties(out, &u.properties, plan.props);
                out.extend(u.reason_codes.iter().map(|c| c.0));
            }
        }
        Packet::PingReq => out.put_slice(&[packet_type::PINGREQ << 4, 0]),
        Packet::PingResp => out.put_slice(&[packet_type::PINGRESP << 4, 0]),
        Packet::Disconnect(d) => {
            out.put_u8(packet_type::DISCONNECT << 4);
            put_vbi(out, plan.remaining);
            if v5 {
                put_reason_props(out, d.reason_code, &d.properties, &plan, 0);
            }
        }
        Packet::Auth(a) => {
            out.put_u8(packet_type::AUTH << 4);
            put_vbi(out, plan.remaining);
            put_reason_props(out, a.reason_code, &a.properties, &plan, 0);
        }
    }
    debug_assert_eq!(
        out.len() - start,
        total,
        "plan disagrees with encode for {}",
        packet.name()
    );
    Ok(total)
}

/// The size in bytes `encode` would write (fixed header included), used to
/// honour a peer's Maximum Packet Size without encoding twice.
pub fn encoded_len(packet: &Packet, version: ProtocolVersion) -> Result<usize, EncodeError> {
    plan(packet, version).map(|p| p.total())
}

/// Appends the encoding of a PUBLISH given by borrowed parts (the same bytes
/// as `encode(&Packet::Publish(..))`) and returns the number of bytes written.
///
/// `maximum_packet_size` is the receiver's Maximum Packet Size (`u32::MAX`
/// for none): a larger PUBLISH is [`EncodeError::PacketTooLarge`]. Checking it
/// here reuses the one size computation of the encoding (the broker's
/// per-subscriber hot path). On error `out` is unchanged.
pub fn encode_publish(
    p: &PublishRef<'_>,
    version: ProtocolVersion,
    maximum_packet_size: u32,
    out: &mut BytesMut,
) -> Result<usize, EncodeError> {
    let v5 = version.is_v5();
    let plan = plan_publish(p, v5)?;
    let total = plan.total();
    if total > maximum_packet_size as usize {
        return Err(EncodeError::PacketTooLarge {
            size: total,
            maximum: maximum_packet_size,
        });
    }
    out.reserve(total);
    put_publish(out, p, v5, &plan);
    Ok(total)
}

/// The size `encode_publish` would write (fixed header included).
pub fn publish_len(p: &PublishRef<'_>, version: ProtocolVersion) -> Result<usize, EncodeError> {
    plan_publish(p, version.is_v5()).map(|p| p.total())
}

fn plan_publish(p: &PublishRef<'_>, v5: bool) -> Result<Plan, EncodeError> {
    let id = match (p.qos, p.packet_id) {
        (QoS::AtMostOnce, _) => 0,
        (_, Some(_)) => 2,
        (_, None) => return Err(EncodeError::MissingPacketId),
    };
    let (props, prefixed) = v5_props(p.properties, v5)?;
    Ok(Plan {
        remaining: remaining(
            field("topic name", p.topic.len())? + id + prefixed + p.payload.len(),
        )?,
        props,
        will_props: 0,
    })
}

fn put_publish(out: &mut BytesMut, p: &PublishRef<'_>, v5: bool, plan: &Plan) {
    let flags = (u8::from(p.dup) << 3) | (p.qos.as_u8() << 1) | u8::from(p.retain);
    out.put_u8((packet_type::PUBLISH << 4) | flags);
    put_vbi(out, plan.remaining);
    put_str(out, p.topic);
    if p.qos != QoS::AtMostOnce {
        // `plan_publish` refused QoS > 0 without an identifier.
        out.put_u16(p.packet_id.unwrap_or(0));
    }
    if v5 {
        put_properties(out, p.properties, plan.props);
    }
    out.put_slice(p.payload);
}

/// A Property Length prefix plus the properties.
#[inline]
fn with_prefix(props: usize) -> usize {
    vbi_len(props) + props
}

/// For v5: (length of the properties, length with their Property Length
/// prefix); (0, 0) for 3.1.1, which has none.
#[inline]
fn v5_props(p: &Properties, v5: bool) -> Result<(usize, usize), EncodeError> {
    if v5 {
        let n = properties_len(p)?;
        Ok((n, with_prefix(n)))
    } else {
        Ok((0, 0))
    }
}

/// Remaining length of the optional "reason code, properties" tail of v5
/// PUBACK-family / DISCONNECT / AUTH packets, using the shortest form the spec
/// allows (§3.4.2.1, §3.14.2.1, §3.15.2.1).
#[inline]
fn reason_tail(reason: ReasonCode, props: usize) -> usize {
    if props > 0 {
        1 + with_prefix(props)
    } else if reason != ReasonCode::SUCCESS {
        1
    } else {
        0
    }
}

/// Sums field lengths with their 2-byte prefixes, checking each.
fn fields<'a>(
    name: &'static str,
    items: impl Iterator<Item = &'a str>,
    extra: usize,
) -> Result<usize, EncodeError> {
    let mut n = 0usize;
    for s in items {
        n = n.saturating_add(field(name, s.len())? + extra);
    }
    Ok(n)
}

fn plan(packet: &Packet, version: ProtocolVersion) -> Result<Plan, EncodeError> {
    let v5 = version.is_v5();
    let mut plan = Plan {
        remaining: 0,
        props: 0,
        will_props: 0,
    };
    let n = match packet {
        Packet::Connect(c) => {
            let v5 = c.protocol.is_v5();
            // Protocol name, level, flags, keep alive (§3.1.2).
            let mut n = 2 + c.protocol.protocol_name().len() + 1 + 1 + 2;
            if v5 {
                plan.props = properties_len(&c.properties)?;
                n += with_prefix(plan.props);
            }
            n += field("client identifier", c.client_id.len())?;
            if let Some(w) = &c.will {
                if v5 {
                    plan.will_props = properties_len(&w.properties)?;
                    n += with_prefix(plan.will_props);
                }
                n += field("will topic", w.topic.len())?;
                n += field("will payload", w.payload.len())?;
            }
            if let Some(u) = &c.username {
                n += field("user name", u.len())?;
            }
            if let Some(p) = &c.password {
                n += field("password", p.len())?;
            }
            n
        }
        Packet::ConnAck(c) => {
            let (props, prefixed) = v5_props(&c.properties, v5)?;
            plan.props = props;
            2 + prefixed
        }
        Packet::Publish(p) => return plan_publish(&p.as_ref(), v5),
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
            if v5 {
                plan.props = properties_len(&a.properties)?;
                2 + reason_tail(a.reason_code, plan.props)
            } else {
                2
            }
        }
        Packet::Subscribe(s) => {
            let (props, prefixed) = v5_props(&s.properties, v5)?;
            plan.props = props;
            let filters = fields("topic filter", s.filters.iter().map(|(f, _)| f.as_str()), 1)?;
            2usize.saturating_add(prefixed).saturating_add(filters)
        }
        Packet::SubAck(s) => {
            let (props, prefixed) = v5_props(&s.properties, v5)?;
            plan.props = props;
            2 + prefixed + s.reason_codes.len()
        }
        Packet::Unsubscribe(u) => {
            let (props, prefixed) = v5_props(&u.properties, v5)?;
            plan.props = props;
            let filters = fields("topic filter", u.filters.iter().map(String::as_str), 0)?;
            2usize.saturating_add(prefixed).saturating_add(filters)
        }
        Packet::UnsubAck(u) => {
            if v5 {
                plan.props = properties_len(&u.properties)?;
                2 + with_prefix(plan.props) + u.reason_codes.len()
            } else {
                2
            }
        }
        Packet::PingReq | Packet::PingResp => 0,
        Packet::Disconnect(d) => {
            if v5 {
                plan.props = properties_len(&d.properties)?;
                reason_tail(d.reason_code, plan.props)
            } else {
                0
            }
        }
        Packet::Auth(a) => {
            if !v5 {
                return Err(EncodeError::NotInVersion("AUTH"));
            }
            plan.props = properties_len(&a.properties)?;
            reason_tail(a.reason_code, plan.props)
        }
    };
    plan.remaining = remaining(n)?;
    Ok(plan)
}

/// Writes the v5 "reason code, properties" tail in its shortest form; `base` is
/// the part of the remaining length before the tail.
#[inline]
fn put_reason_props(
    out: &mut BytesMut,
    reason: ReasonCode,
    props: &Properties,
    plan: &Plan,
    base: usize,
) {
    if plan.remaining > base {
        out.put_u8(reason.0);
        if plan.props > 0 {
            put_properties(out, props, plan.props);
        }
    }
}

fn put_puback(out: &mut BytesMut, first: u8, a: &PubAck, v5: bool, plan: &Plan) {
    out.put_u8(first);
    put_vbi(out, plan.remaining);
    out.put_u16(a.packet_id);
    if v5 {
        put_reason_props(out, a.reason_code, &a.properties, plan, 2);
    }
}

fn put_connect(out: &mut BytesMut, c: &Connect, plan: &Plan) {
    let v5 = c.protocol.is_v5();
    put_str(out, c.protocol.protocol_name());
    out.put_u8(c.protocol.level());
    let mut flags = u8::from(c.clean_start) << 1;
    if let Some(w) = &c.will {
        flags |= 0b100 | (w.qos.as_u8() << 3) | (u8::from(w.retain) << 5);
    }
    if c.password.is_some() {
        flags |= 0b0100_0000;
    }
    if c.username.is_some() {
        flags |= 0b1000_0000;
    }
    out.put_u8(flags);
    out.put_u16(c.keep_alive);
    if v5 {
        put_properties(out, &c.properties, plan.props);
    }
    put_str(out, &c.client_id);
    if let Some(w) = &c.will {
        if v5 {
            put_properties(out, &w.properties, plan.will_props);
        }
        put_str(out, &w.topic);
        put_bin(out, &w.payload);
    }
    if let Some(u) = &c.username {
        put_str(out, u);
    }
    if let Some(p) = &c.password {
        put_bin(out, p);
    }
}
