//! Encoding and decoding of the MQTT 5.0 property block (§2.2.2).
//!
//! Decoding enforces table 2-4 (which property may appear in which packet),
//! the "MUST NOT appear more than once" rules and the value ranges the spec
//! attaches to individual properties (§3.x.2.x). Encoding writes every property
//! that is set, in a fixed order; choosing properties that fit the packet is
//! the caller's business.

use bytes::{BufMut, BytesMut};

use crate::decode::DecodeError;
use crate::encode::{field, EncodeError};
use crate::properties::{id, Properties};
use crate::types::ReasonCode;
use crate::wire::{malformed, protocol_error, put_bin, put_str, put_vbi, vbi_len, Reader, VBI_MAX};

/// Where a property block sits: one bit per column of table 2-4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ctx(u16);

impl Ctx {
    pub const CONNECT: Ctx = Ctx(1 << 0);
    pub const WILL: Ctx = Ctx(1 << 1);
    pub const CONNACK: Ctx = Ctx(1 << 2);
    pub const PUBLISH: Ctx = Ctx(1 << 3);
    /// PUBACK, PUBREC, PUBREL and PUBCOMP allow the same properties.
    pub const PUBACK: Ctx = Ctx(1 << 4);
    pub const SUBSCRIBE: Ctx = Ctx(1 << 5);
    pub const SUBACK: Ctx = Ctx(1 << 6);
    pub const UNSUBSCRIBE: Ctx = Ctx(1 << 7);
    pub const UNSUBACK: Ctx = Ctx(1 << 8);
    pub const DISCONNECT: Ctx = Ctx(1 << 9);
    pub const AUTH: Ctx = Ctx(1 << 10);
    const ALL: u16 = (1 << 11) - 1;
}

/// The packets (as a [`Ctx`] mask) in which property `pid` may appear (table 2-4),
/// or 0 for an unknown identifier.
fn allowed(pid: u8) -> u16 {
    const C: u16 = Ctx::CONNECT.0;
    const W: u16 = Ctx::WILL.0;
    const CA: u16 = Ctx::CONNACK.0;
    const P: u16 = Ctx::PUBLISH.0;
    const PA: u16 = Ctx::PUBACK.0;
    const S: u16 = Ctx::SUBSCRIBE.0;
    const SA: u16 = Ctx::SUBACK.0;
    const UA: u16 = Ctx::UNSUBACK.0;
    const D: u16 = Ctx::DISCONNECT.0;
    const A: u16 = Ctx::AUTH.0;
    match pid {
        id::PAYLOAD_FORMAT_INDICATOR
        | id::MESSAGE_EXPIRY_INTERVAL
        | id::CONTENT_TYPE
        | id::RESPONSE_TOPIC
        | id::CORRELATION_DATA => P | W,
        id::SUBSCRIPTION_IDENTIFIER => P | S,
        id::SESSION_EXPIRY_INTERVAL => C | CA | D,
        id::ASSIGNED_CLIENT_IDENTIFIER
        | id::SERVER_KEEP_ALIVE
        | id::RESPONSE_INFORMATION
        | id::MAXIMUM_QOS
        | id::RETAIN_AVAILABLE
        | id::WILDCARD_SUBSCRIPTION_AVAILABLE
        | id::SUBSCRIPTION_IDENTIFIER_AVAILABLE
        | id::SHARED_SUBSCRIPTION_AVAILABLE => CA,
        id::AUTHENTICATION_METHOD | id::AUTHENTICATION_DATA => C | CA | A,
        id::REQUEST_PROBLEM_INFORMATION | id::REQUEST_RESPONSE_INFORMATION => C,
        id::WILL_DELAY_INTERVAL => W,
        id::SERVER_REFERENCE => CA | D,
        id::REASON_STRING => CA | PA | SA | UA | D | A,
        id::RECEIVE_MAXIMUM | id::TOPIC_ALIAS_MAXIMUM | id::MAXIMUM_PACKET_SIZE => C | CA,
        id::TOPIC_ALIAS => P,
        id::USER_PROPERTY => Ctx::ALL,
        _ => 0,
    }
}

#[cold]
fn duplicate(name: &str) -> DecodeError {
    protocol_error(format!("duplicate property {name}"))
}

/// Stores a single-valued property, rejecting a second occurrence.
#[inline]
fn set_once<T>(slot: &mut Option<T>, v: T, name: &str) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(duplicate(name));
    }
    *slot = Some(v);
    Ok(())
}

/// A byte property that only allows 0 or 1 (§3.1.2.11.x, §3.2.2.3.x, §3.3.2.3.2).
#[inline]
fn bool_byte(r: &mut Reader<'_>, name: &'static str) -> Result<u8, DecodeError> {
    let v = r.u8(name)?;
    if v > 1 {
        return Err(protocol_error(format!("{name} value {v} (must be 0 or 1)")));
    }
    Ok(v)
}

/// Reads a Property Length and the properties it covers (§2.2.2.1).
pub fn decode_properties(r: &mut Reader<'_>, ctx: Ctx) -> Result<Properties, DecodeError> {
    let len = r.vbi("property length")? as usize;
    let mut p = Properties::default();
    if len == 0 {
        return Ok(p);
    }
    let mut r = r.sub(len, "properties")?;
    while !r.is_empty() {
        // The identifier is a Variable Byte Integer (§2.2.2.2); every defined
        // identifier fits in one byte, so a longer one is simply unknown.
        let pid = r.vbi("property identifier")?;
        let pid = u8::try_from(pid).unwrap_or(0);
        let mask = allowed(pid);
        if mask == 0 {
            return Err(malformed(format!(
                "unknown property identifier 0x{pid:02X}"
            )));
        }
        if mask & ctx.0 == 0 {
            return Err(protocol_error(format!(
                "property 0x{pid:02X} not allowed in this packet"
            )));
        }
        match pid {
            id::PAYLOAD_FORMAT_INDICATOR => {
                let v = bool_byte(&mut r, "Payload Format Indicator")?;
                set_once(
                    &mut p.payload_format_indicator,
                    v,
                    "Payload Format Indicator",
                )?;
            }
            id::MESSAGE_EXPIRY_INTERVAL => {
                let v = r.u32("Message Expiry Interval")?;
                set_once(&mut p.message_expiry_interval, v, "Message Expiry Interval")?;
            }
            id::CONTENT_TYPE => {
                let v = r.str("Content Type")?;
                set_once(&mut p.content_type, v.to_owned(), "Content Type")?;
            }
            id::RESPONSE_TOPIC => {
                let v = r.str("Response Topic")?;
                // The Response Topic is a Topic Name: no wildcards (§3.3.2.3.5).
                if v.is_empty() || v.contains(['+', '#']) {
                    return Err(protocol_error("invalid Response Topic"));
                }
                set_once(&mut p.response_topic, v.to_owned(), "Response Topic")?;
            }
            id::CORRELATION_DATA => {
                let v = r.bin("Correlation Data")?;
                set_once(
                    &mut p.correlation_data,
                    bytes::Bytes::copy_from_slice(v),
                    "Correlation Data",
                )?;
            }
            id::SUBSCRIPTION_IDENTIFIER => {
                let v = r.vbi("Subscription Identifier")?;
                // 0 is a Protocol Error (§3.3.2.3.8, §3.8.2.1.2).
                if v == 0 {
                    return Err(protocol_error("Subscription Identifier 0"));
                }
                // SUBSCRIBE carries at most one; PUBLISH one per matching subscription.
                if ctx == Ctx::SUBSCRIBE && !p.subscription_identifiers.is_empty() {
                    return Err(duplicate("Subscription Identifier"));
                }
                p.subscription_identifiers.push(v);
            }
            id::SESSION_EXPIRY_INTERVAL => {
                let v = r.u32("Session Expiry Interval")?;
                set_once(&mut p.session_expiry_interval, v, "Session Expiry Interval")?;
            }
            id::ASSIGNED_CLIENT_IDENTIFIER => {
                let v = r.str("Assigned Client Identifier")?;
                set_once(
                    &mut p.assigned_client_identifier,
                    v.to_owned(),
                    "Assigned Client Identifier",
                )?;
            }
            id::SERVER_KEEP_ALIVE => {
                let v = r.u16("Server Keep Alive")?;
                set_once(&mut p.server_keep_alive, v, "Server Keep Alive")?;
            }
            id::AUTHENTICATION_METHOD => {
                let v = r.str("Authentication Method")?;
                set_once(
                    &mut p.authentication_method,
                    v.to_owned(),
                    "Authentication Method",
                )?;
            }
            id::AUTHENTICATION_DATA => {
                let v = r.bin("Authentication Data")?;
                set_once(
                    &mut p.authentication_data,
                    bytes::Bytes::copy_from_slice(v),
                    "Authentication Data",
                )?;
            }
            id::REQUEST_PROBLEM_INFORMATION => {
                let v = bool_byte(&mut r, "Request Problem Information")?;
                set_once(
                    &mut p.request_problem_information,
                    v,
                    "Request Problem Information",
                )?;
            }
            id::WILL_DELAY_INTERVAL => {
                let v = r.u32("Will Delay Interval")?;
                set_once(&mut p.will_delay_interval, v, "Will Delay Interval")?;
            }
            id::REQUEST_RESPONSE_INFORMATION => {
                let v = bool_byte(&mut r, "Request Response Information")?;
                set_once(
                    &mut p.request_response_information,
                    v,
                    "Request Response Information",
                )?;
            }
            id::RESPONSE_INFORMATION => {
                let v = r.str("Response Information")?;
                set_once(
                    &mut p.response_information,
                    v.to_owned(),
                    "Response Information",
                )?;
            }
            id::SERVER_REFERENCE => {
                let v = r.str("Server Reference")?;
                set_once(&mut p.server_reference, v.to_owned(), "Server Reference")?;
            }
            id::REASON_STRING => {
                let v = r.str("Reason String")?;
                set_once(&mut p.reason_string, v.to_owned(), "Reason String")?;
            }
            id::RECEIVE_MAXIMUM => {
                let v = r.u16("Receive Maximum")?;
                if v == 0 {
                    return Err(protocol_error("Receive Maximum 0")); // §3.1.2.11.3
                }
                set_once(&mut p.receive_maximum, v, "Receive Maximum")?;
            }
            id::TOPIC_ALIAS_MAXIMUM => {
                let v = r.u16("Topic Alias Maximum")?;
                set_once(&mut p.topic_alias_maximum, v, "Topic Alias Maximum")?;
            }
            id::TOPIC_ALIAS => {
                let v = r.u16("Topic Alias")?;
                // §3.3.2.3.4: 0 is not a valid alias. Whether it exceeds the
                // negotiated Topic Alias Maximum is checked by the session.
                if v == 0 {
                    return Err(DecodeError {
                        reason: ReasonCode::TOPIC_ALIAS_INVALID,
                        message: "Topic Alias 0".into(),
                    });
                }
                set_once(&mut p.topic_alias, v, "Topic Alias")?;
            }
            id::MAXIMUM_QOS => {
                let v = bool_byte(&mut r, "Maximum QoS")?; // §3.2.2.3.4: 0 or 1
                set_once(&mut p.maximum_qos, v, "Maximum QoS")?;
            }
            id::RETAIN_AVAILABLE => {
                let v = bool_byte(&mut r, "Retain Available")?;
                set_once(&mut p.retain_available, v, "Retain Available")?;
            }
            id::USER_PROPERTY => {
                let k = r.str("User Property name")?;
                let v = r.str("User Property value")?;
                p.user_properties.push((k.to_owned(), v.to_owned()));
            }
            id::MAXIMUM_PACKET_SIZE => {
                let v = r.u32("Maximum Packet Size")?;
                if v == 0 {
                    return Err(protocol_error("Maximum Packet Size 0")); // §3.1.2.11.4
                }
                set_once(&mut p.maximum_packet_size, v, "Maximum Packet Size")?;
            }
            id::WILDCARD_SUBSCRIPTION_AVAILABLE => {
                let v = bool_byte(&mut r, "Wildcard Subscription Available")?;
                set_once(
                    &mut p.wildcard_subscription_available,
                    v,
                    "Wildcard Subscription Available",
                )?;
            }
            id::SUBSCRIPTION_IDENTIFIER_AVAILABLE => {
                let v = bool_byte(&mut r, "Subscription Identifier Available")?;
                set_once(
                    &mut p.subscription_identifiers_available,
                    v,
                    "Subscription Identifier Available",
                )?;
            }
            id::SHARED_SUBSCRIPTION_AVAILABLE => {
                let v = bool_byte(&mut r, "Shared Subscription Available")?;
                set_once(
                    &mut p.shared_subscription_available,
                    v,
                    "Shared Subscription Available",
                )?;
            }
            _ => unreachable!("allowed() returned a mask for an unhandled identifier"),
        }
    }
    // Authentication Data without a method is a Protocol Error (§3.1.2.11.10, §3.15.2.2.3).
    if p.authentication_data.is_some() && p.authentication_method.is_none() {
        return Err(protocol_error(
            "Authentication Data without Authentication Method",
        ));
    }
    Ok(p)
}

/// Identifier byte plus a checked string or binary field, if present.
#[inline]
fn opt_field(name: &'static str, len: Option<usize>) -> Result<usize, EncodeError> {
    len.map_or(Ok(0), |n| field(name, n).map(|n| 1 + n))
}

/// Size of the properties themselves, without the Property Length prefix;
/// an error if a string, binary or integer value cannot be encoded.
pub fn properties_len(p: &Properties) -> Result<usize, EncodeError> {
    let s = |v: &Option<String>| v.as_ref().map(String::len);
    let b = |v: &Option<bytes::Bytes>| v.as_ref().map(bytes::Bytes::len);
    let mut n = 0;
    n += p.payload_format_indicator.map_or(0, |_| 2);
    n += p.message_expiry_interval.map_or(0, |_| 5);
    n += opt_field("Content Type", s(&p.content_type))?;
    n += opt_field("Response Topic", s(&p.response_topic))?;
    n += opt_field("Correlation Data", b(&p.correlation_data))?;
    for &v in &p.subscription_identifiers {
        if v > VBI_MAX {
            return Err(EncodeError::ValueTooLarge {
                field: "Subscription Identifier",
                value: v,
            });
        }
        n += 1 + vbi_len(v as usize);
    }
    n += p.session_expiry_interval.map_or(0, |_| 5);
    n += opt_field(
        "Assigned Client Identifier",
        s(&p.assigned_client_identifier),
    )?;
    n += p.server_keep_alive.map_or(0, |_| 3);
    n += opt_field("Authentication Method", s(&p.authentication_method))?;
    n += opt_field("Authentication Data", b(&p.authentication_data))?;
    n += p.request_problem_information.map_or(0, |_| 2);
    n += p.will_delay_interval.map_or(0, |_| 5);
    n += p.request_response_information.map_or(0, |_| 2);
    n += opt_field("Response Information", s(&p.response_information))?;
    n += opt_field("Server Reference", s(&p.server_reference))?;
    n += opt_field("Reason String", s(&p.reason_string))?;
    n += p.receive_maximum.map_or(0, |_| 3);
    n += p.topic_alias_maximum.map_or(0, |_| 3);
    n += p.topic_alias.map_or(0, |_| 3);
    n += p.maximum_qos.map_or(0, |_| 2);
    n += p.retain_available.map_or(0, |_| 2);
    for (k, v) in &p.user_properties {
        n += 1 + field("User Property name", k.len())? + field("User Property value", v.len())?;
    }
    n += p.maximum_packet_size.map_or(0, |_| 5);
    n += p.wildcard_subscription_available.map_or(0, |_| 2);
    n += p.subscription_identifiers_available.map_or(0, |_| 2);
    n += p.shared_subscription_available.map_or(0, |_| 2);
    Ok(n)
}

/// Writes Property Length `len` (from [`properties_len`], which checked every
/// value) and the properties.
pub fn put_properties(out: &mut BytesMut, p: &Properties, len: usize) {
    put_vbi(out, len);
    if len == 0 {
        return;
    }
    let start = out.len();
    let byte = |out: &mut BytesMut, pid: u8, v: Option<u8>| {
        if let Some(v) = v {
            out.put_u8(pid);
            out.put_u8(v);
        }
    };
    let two = |out: &mut BytesMut, pid: u8, v: Option<u16>| {
        if let Some(v) = v {
            out.put_u8(pid);
            out.put_u16(v);
        }
    };
    let four = |out: &mut BytesMut, pid: u8, v: Option<u32>| {
        if let Some(v) = v {
            out.put_u8(pid);
            out.put_u32(v);
        }
    };
    let string = |out: &mut BytesMut, pid: u8, v: &Option<String>| {
        if let Some(v) = v {
            out.put_u8(pid);
            put_str(out, v);
        }
    };
    let binary = |out: &mut BytesMut, pid: u8, v: &Option<bytes::Bytes>| {
        if let Some(v) = v {
            out.put_u8(pid);
            put_bin(out, v);
        }
    };
    byte(
        out,
        id::PAYLOAD_FORMAT_INDICATOR,
        p.payload_format_indicator,
    );
    four(out, id::MESSAGE_EXPIRY_INTERVAL, p.message_expiry_interval);
    string(out, id::CONTENT_TYPE, &p.content_type);
    string(out, id::RESPONSE_TOPIC, &p.response_topic);
    binary(out, id::CORRELATION_DATA, &p.correlation_data);
    for &v in &p.subscription_identifiers {
        out.put_u8(id::SUBSCRIPTION_IDENTIFIER);
        put_vbi(out, v as usize);
    }
    four(out, id::SESSION_EXPIRY_INTERVAL, p.session_expiry_interval);
    string(
        out,
        id::ASSIGNED_CLIENT_IDENTIFIER,
        &p.assigned_client_identifier,
    );
    two(out, id::SERVER_KEEP_ALIVE, p.server_keep_alive);
    string(out, id::AUTHENTICATION_METHOD, &p.authentication_method);
    binary(out, id::AUTHENTICATION_DATA, &p.authentication_data);
    byte(
        out,
        id::REQUEST_PROBLEM_INFORMATION,
        p.request_problem_information,
    );
    four(out, id::WILL_DELAY_INTERVAL, p.will_delay_interval);
    byte(
        out,
        id::REQUEST_RESPONSE_INFORMATION,
        p.request_response_information,
    );
    string(out, id::RESPONSE_INFORMATION, &p.response_information);
    string(out, id::SERVER_REFERENCE, &p.server_reference);
    string(out, id::REASON_STRING, &p.reason_string);
    two(out, id::RECEIVE_MAXIMUM, p.receive_maximum);
    two(out, id::TOPIC_ALIAS_MAXIMUM, p.topic_alias_maximum);
    two(out, id::TOPIC_ALIAS, p.topic_alias);
    byte(out, id::MAXIMUM_QOS, p.maximum_qos);
    byte(out, id::RETAIN_AVAILABLE, p.retain_available);
    for (k, v) in &p.user_properties {
        out.put_u8(id::USER_PROPERTY);
        put_str(out, k);
        put_str(out, v);
    }
    four(out, id::MAXIMUM_PACKET_SIZE, p.maximum_packet_size);
    byte(
        out,
        id::WILDCARD_SUBSCRIPTION_AVAILABLE,
        p.wildcard_subscription_available,
    );
    byte(
        out,
        id::SUBSCRIPTION_IDENTIFIER_AVAILABLE,
        p.subscription_identifiers_available,
    );
    byte(
        out,
        id::SHARED_SUBSCRIPTION_AVAILABLE,
        p.shared_subscription_available,
    );
    debug_assert_eq!(
        out.len() - start,
        len,
        "properties_len disagrees with put_properties"
    );
}
