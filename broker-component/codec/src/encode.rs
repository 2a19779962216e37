//! Packet encoding. (Being implemented: see issue 2.)

use bytes::BytesMut;

use crate::packet::Packet;
use crate::types::ProtocolVersion;

/// Appends the encoding of `packet` for `version` to `out`.
pub fn encode(packet: &Packet, version: ProtocolVersion, out: &mut BytesMut) {
    let _ = (packet, version, out);
    todo!()
}

/// The size in bytes `encode` would write (fixed header included), used to
/// honour a peer's Maximum Packet Size without encoding twice.
pub fn encoded_len(packet: &Packet, version: ProtocolVersion) -> usize {
    let _ = (packet, version);
    todo!()
}
