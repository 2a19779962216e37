//! `musqratt-codec`: every MQTT 3.1.1 and 5.0 control packet, with incremental
//! decoding, encoding and the validation rules of both specifications.
//!
//! The crate does no IO. The transport hands [`decode`] the bytes it has; the
//! answer is "need more bytes" (`Ok(None)`), one packet and how many bytes it
//! used, or a [`DecodeError`] carrying the reason code the broker must send
//! back (for v5) before it closes the connection. Encoding never panics: a
//! packet that does not fit the wire format is an [`EncodeError`].
//!
//! Layout, one concern per module:
//! - [`types`]: protocol version, QoS, reason codes;
//! - [`properties`]: the v5 property set;
//! - [`packet`]: one struct per control packet;
//! - [`topic`]: topic name / filter validation and matching;
//! - `wire`: primitive encodings (variable byte integers, UTF-8 strings);
//! - `props_codec`: the v5 property block (table 2-4 rules);
//! - `decode` / `decode_connect` / `encode`: the packet (de)serialisers.
#![forbid(unsafe_code)]

pub mod packet;
pub mod properties;
pub mod topic;
pub mod types;

mod decode;
mod decode_connect;
mod encode;
mod props_codec;
mod wire;

pub use decode::{decode, decode_connect_version, DecodeError};
pub use encode::{encode, encode_publish, encoded_len, publish_len, EncodeError};
pub use packet::*;
pub use properties::Properties;
pub use types::{ProtocolVersion, QoS, ReasonCode, RetainHandling};

/// The largest remaining length MQTT can express (four bytes of variable byte integer).
pub const MAX_REMAINING_LENGTH: usize = 268_435_455;
