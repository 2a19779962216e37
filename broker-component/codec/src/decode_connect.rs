//! CONNECT body decoding (§3.1). CONNECT carries its own protocol level, so it
//! decodes the same whatever version the caller passed to `decode`.

use bytes::Bytes;

use crate::decode::DecodeError;
use crate::packet::{Connect, Will};
use crate::properties::Properties;
use crate::props_codec::{decode_properties, Ctx};
use crate::types::{ProtocolVersion, QoS, ReasonCode};
use crate::wire::{malformed, Reader};

#[cold]
fn unsupported(message: String) -> DecodeError {
    DecodeError {
        reason: ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
        message,
    }
}

pub(crate) fn decode_connect(r: &mut Reader<'_>) -> Result<Connect, DecodeError> {
    // §3.1.2.1: "MQTT" at levels 4 and 5, or MQTT 3.1's "MQIsdp" at level 3.
    // Any other pair is answered like an unknown level (§3.1.2.2: 0x84).
    let name = r.bin("protocol name")?;
    let level = r.u8("protocol level")?;
    let protocol = match (name, level) {
        (b"MQTT", 4) => ProtocolVersion::V311,
        (b"MQTT", 5) => ProtocolVersion::V5,
        (b"MQIsdp", 3) => ProtocolVersion::V31,
        _ => {
            return Err(unsupported(format!(
                "unsupported protocol {:?} level {level}",
                String::from_utf8_lossy(name)
            )))
        }
    };
    let v5 = protocol.is_v5();

    // Connect Flags (§3.1.2.3).
    let flags = r.u8("connect flags")?;
    if flags & 0b0000_0001 != 0 {
        return Err(malformed("reserved CONNECT flag set"));
    }
    let clean_start = flags & 0b0000_0010 != 0;
    let will_flag = flags & 0b0000_0100 != 0;
    let will_qos = (flags >> 3) & 0b11;
    let will_retain = flags & 0b0010_0000 != 0;
    let password_flag = flags & 0b0100_0000 != 0;
    let username_flag = flags & 0b1000_0000 != 0;
    // §3.1.2.6 / §3.1.2.7: without a Will, Will QoS and Will Retain MUST be 0.
    if !will_flag && (will_qos != 0 || will_retain) {
        return Err(malformed("Will QoS or Will Retain set without Will Flag"));
    }
    let will_qos = QoS::from_u8(will_qos).ok_or_else(|| malformed("Will QoS 3"))?;
    // 3.1.1 §3.1.2.9: a password requires a user name; v5 lifted this.
    if !v5 && password_flag && !username_flag {
        return Err(malformed("password flag without user name flag"));
    }

    let keep_alive = r.u16("keep alive")?;
    let properties = if v5 {
        decode_properties(r, Ctx::CONNECT)?
    } else {
        Properties::default()
    };

    // Payload (§3.1.3): Client Identifier, Will, User Name, Password, in order.
    let client_id = r.str("client identifier")?.to_owned();
    let will = if will_flag {
        let properties = if v5 {
            decode_properties(r, Ctx::WILL)?
        } else {
            Properties::default()
        };
        let topic = r.str("will topic")?;
        // The Will Topic is a Topic Name (§3.1.3.3, §4.7.3).
        if topic.is_empty() || topic.contains(['+', '#']) {
            return Err(DecodeError {
                reason: ReasonCode::TOPIC_NAME_INVALID,
                message: "invalid will topic".into(),
            });
        }
        let topic = topic.to_owned();
        let payload = Bytes::copy_from_slice(r.bin("will payload")?);
        Some(Will {
            topic,
            payload,
            qos: will_qos,
            retain: will_retain,
            properties,
        })
    } else {
        None
    };
    let username = if username_flag {
        Some(r.str("user name")?.to_owned())
    } else {
        None
    };
    let password = if password_flag {
        Some(Bytes::copy_from_slice(r.bin("password")?))
    } else {
        None
    };
    Ok(Connect {
        protocol,
        clean_start,
        keep_alive,
        properties,
        client_id,
        will,
        username,
        password,
    })
}
