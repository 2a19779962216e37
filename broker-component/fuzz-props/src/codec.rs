//! The `codec_decode` target's properties.
//!
//! The first input byte picks the protocol version and the maximum packet size; the rest is what
//! a client sent. For every packet decoded from the front of it, in sequence:
//! - decoding never panics;
//! - the packet re-encodes, and the encoding decodes back to an equal packet, whole;
//! - every strict prefix of the packet's bytes decodes as "incomplete" (`Ok(None)`), never as
//!   an error or another packet: a transport that reads a packet in pieces sees the same thing.

use bytes::BytesMut;
use musqratt_codec::{
    decode, decode_connect_version, encode, Packet, ProtocolVersion, MAX_REMAINING_LENGTH,
};

/// Packets decoded from one input before stopping (each is checked in full).
const MAX_PACKETS: usize = 16;

/// Maximum packet sizes the decoder is tried with: the protocol's ceiling, the broker's
/// default, small ones that cut through fixed headers and bodies.
const MAX_SIZES: [u32; 4] = [u32::MAX, 1 << 20, 128, 5];

/// Strict prefixes checked per packet: all of them for small packets, else the first bytes
/// (fixed header) and a spread over the body.
const PREFIX_SAMPLES: usize = 24;

/// The version and maximum packet size chosen by the first input byte.
pub fn settings(selector: u8) -> (ProtocolVersion, u32) {
    let version = match selector % 3 {
        0 => ProtocolVersion::V31,
        1 => ProtocolVersion::V311,
        _ => ProtocolVersion::V5,
    };
    let size = MAX_SIZES[usize::from(selector / 3) % MAX_SIZES.len()];
    (version, size)
}

/// Runs every property over `data`; panics on a violation.
pub fn check(data: &[u8]) {
    let Some((&selector, mut rest)) = data.split_first() else {
        return;
    };
    let (version, max_size) = settings(selector);
    // The pre-CONNECT peek the connection uses must not panic on anything either.
    let _ = decode_connect_version(rest);
    for _ in 0..MAX_PACKETS {
        match decode(rest, version, max_size) {
            Ok(Some((packet, n))) => {
                assert!(n > 0 && n <= rest.len(), "consumed {n} of {}", rest.len());
                check_prefixes(&rest[..n], version, max_size);
                check_round_trip(&packet, version);
                rest = &rest[n..];
            }
            Ok(None) | Err(_) => return,
        }
    }
}

fn check_prefixes(bytes: &[u8], version: ProtocolVersion, max_size: u32) {
    let n = bytes.len();
    let step = (n / PREFIX_SAMPLES).max(1);
    let mut k = 0;
    while k < n {
        let got = decode(&bytes[..k], version, max_size);
        assert!(
            matches!(got, Ok(None)),
            "prefix of {k} of {n} bytes decoded as {got:?}, not incomplete"
        );
        k += if k < 8 { 1 } else { step };
    }
}

fn check_round_trip(packet: &Packet, version: ProtocolVersion) {
    let mut buf = BytesMut::new();
    let written = match encode(packet, version, &mut buf) {
        Ok(w) => w,
        Err(e) => panic!("decoded {packet:?} does not re-encode: {e:?}"),
    };
    assert_eq!(written, buf.len());
    // The re-encoding is checked against the largest size the wire allows: it may be longer
    // than the original (a canonical form) but must be the same packet.
    let ceiling = u32::try_from(MAX_REMAINING_LENGTH + 5).unwrap_or(u32::MAX);
    match decode(&buf, version, ceiling) {
        Ok(Some((again, n))) => {
            assert_eq!(n, buf.len(), "re-encoding of {packet:?} not consumed whole");
            assert_eq!(&again, packet, "round trip changed the packet");
        }
        other => panic!("re-encoding of {packet:?} decodes as {other:?}"),
    }
}
