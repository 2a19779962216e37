//! Incremental packet decoding. (Being implemented: see issue 2.)

use std::fmt;

use crate::packet::Packet;
use crate::types::{ProtocolVersion, ReasonCode};

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
pub fn decode(
    buf: &[u8],
    version: ProtocolVersion,
    max_packet_size: u32,
) -> Result<Option<(Packet, usize)>, DecodeError> {
    let _ = (buf, version, max_packet_size);
    todo!()
}

/// For the first packet of a connection: reads the protocol level of a CONNECT
/// without decoding the rest, so the error path can answer in the right version.
/// `None` when more bytes are needed or when it is not a CONNECT.
pub fn decode_connect_version(buf: &[u8]) -> Option<ProtocolVersion> {
    let _ = buf;
    todo!()
}
