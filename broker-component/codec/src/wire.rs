//! Primitive encodings of §1.5: integers, variable byte integers, UTF-8 strings, binary data.
//!
//! Reading goes through [`Reader`], a cursor over a slice that already holds the
//! whole packet body: a field that runs past the end is therefore never "need
//! more bytes" but a Malformed Packet (the Remaining Length lied).
//! Writing appends to a `BytesMut` whose capacity the encoder reserved once.

use bytes::{BufMut, BytesMut};

use crate::decode::DecodeError;
use crate::types::ReasonCode;

/// Largest value of a Variable Byte Integer (§1.5.5): 4 bytes of 7 bits.
pub const VBI_MAX: u32 = 268_435_455;

/// A Malformed Packet (0x81) error with a short log message.
#[cold]
pub fn malformed(message: impl Into<String>) -> DecodeError {
    DecodeError {
        reason: ReasonCode::MALFORMED_PACKET,
        message: message.into(),
    }
}

/// A Protocol Error (0x82) error with a short log message.
#[cold]
pub fn protocol_error(message: impl Into<String>) -> DecodeError {
    DecodeError {
        reason: ReasonCode::PROTOCOL_ERROR,
        message: message.into(),
    }
}

/// Result of reading a Variable Byte Integer from a possibly incomplete buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Vbi {
    /// The value and how many bytes encoded it.
    Value(u32, usize),
    /// The buffer ended before the last byte (continuation bit clear).
    Incomplete,
    /// A fourth byte with the continuation bit set: more than 4 bytes (§1.5.5).
    TooLong,
}

/// Reads a Variable Byte Integer (§1.5.5) from the front of `buf`.
///
/// Non-minimal encodings (e.g. `0x80 0x00` for 0) are accepted: the spec only
/// says the *minimal* number of bytes SHOULD be used by the sender, and
/// rejecting them gains nothing. More than four bytes is malformed.
#[inline]
pub fn read_vbi(buf: &[u8]) -> Vbi {
    let mut value: u32 = 0;
    for i in 0..4 {
        let Some(&b) = buf.get(i) else {
            return Vbi::Incomplete;
        };
        value |= u32::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            return Vbi::Value(value, i + 1);
        }
    }
    Vbi::TooLong
}

/// Bytes needed to encode `v` as a Variable Byte Integer.
#[inline]
pub fn vbi_len(v: usize) -> usize {
    match v {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Appends `v` as a Variable Byte Integer. The encoder's plan checked
/// `v <= VBI_MAX` first (an [`EncodeError`](crate::EncodeError) otherwise);
/// the loop is bounded to 4 bytes regardless, so a bug cannot panic here.
#[inline]
pub fn put_vbi(out: &mut BytesMut, v: usize) {
    debug_assert!(
        v <= VBI_MAX as usize,
        "variable byte integer {v} exceeds 268,435,455 (MQTT §1.5.5)"
    );
    let mut v = v;
    for _ in 0..4 {
        let mut b = (v & 0x7F) as u8;
        v >>= 7;
        if v > 0 {
            b |= 0x80;
        }
        out.put_u8(b);
        if v == 0 {
            break;
        }
    }
}

/// Appends a UTF-8 Encoded String (§1.5.4): u16 length then the bytes.
#[inline]
pub fn put_str(out: &mut BytesMut, s: &str) {
    put_bin(out, s.as_bytes());
}

/// Appends Binary Data (§1.5.6): u16 length then the bytes. The encoder's
/// plan checked the length (an [`EncodeError`](crate::EncodeError) above
/// 65,535 bytes, which the format cannot express).
#[inline]
pub fn put_bin(out: &mut BytesMut, b: &[u8]) {
    debug_assert!(
        b.len() <= usize::from(u16::MAX),
        "string or binary field of {} bytes exceeds 65,535 (MQTT §1.5.4)",
        b.len()
    );
    out.put_u16(b.len() as u16);
    out.put_slice(b);
}

/// Checks the extra constraints MQTT puts on UTF-8 strings beyond Rust's
/// (§1.5.4): U+0000 MUST NOT appear. Surrogates are excluded by UTF-8
/// validation itself. U+0001..U+001F, U+007F..U+009F and non-characters
/// are only SHOULD NOT and are accepted.
#[inline]
pub fn validate_utf8(bytes: &[u8]) -> Option<&str> {
    if bytes.contains(&0) {
        return None;
    }
    std::str::from_utf8(bytes).ok()
}

/// A cursor over a complete packet body.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    #[inline]
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    /// Bytes not yet read.
    #[inline]
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.pos == self.buf.len()
    }

    /// Everything not yet read; consumes it.
    #[inline]
    pub fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }

    /// Takes `n` bytes; a Malformed Packet if fewer remain.
    #[inline]
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(truncated(what));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Splits off the next `n` bytes as their own reader (a property block).
    #[inline]
    pub fn sub(&mut self, n: usize, what: &'static str) -> Result<Reader<'a>, DecodeError> {
        self.take(n, what).map(Reader::new)
    }

    #[inline]
    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        match self.buf.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => Err(truncated(what)),
        }
    }

    /// Two Byte Integer, big-endian (§1.5.2).
    #[inline]
    pub fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// Four Byte Integer, big-endian (§1.5.3).
    #[inline]
    pub fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Variable Byte Integer (§1.5.5) inside a complete body.
    #[inline]
    pub fn vbi(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        match read_vbi(&self.buf[self.pos..]) {
            Vbi::Value(v, n) => {
                self.pos += n;
                Ok(v)
            }
            Vbi::Incomplete => Err(truncated(what)),
            Vbi::TooLong => Err(malformed(format!(
                "{what}: variable byte integer longer than 4 bytes"
            ))),
        }
    }

    /// Binary Data (§1.5.6).
    #[inline]
    pub fn bin(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = self.u16(what)?;
        self.take(usize::from(len), what)
    }

    /// UTF-8 Encoded String (§1.5.4), validated.
    #[inline]
    pub fn str(&mut self, what: &'static str) -> Result<&'a str, DecodeError> {
        let b = self.bin(what)?;
        validate_utf8(b).ok_or_else(|| malformed(format!("invalid UTF-8 in {what}")))
    }
}

#[cold]
fn truncated(what: &'static str) -> DecodeError {
    malformed(format!("{what} runs past the remaining length"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vbi_roundtrip_and_boundaries() {
        for v in [
            0usize,
            1,
            127,
            128,
            16_383,
            16_384,
            2_097_151,
            2_097_152,
            268_435_455,
        ] {
            let mut out = BytesMut::new();
            put_vbi(&mut out, v);
            assert_eq!(out.len(), vbi_len(v), "len of {v}");
            assert_eq!(read_vbi(&out), Vbi::Value(v as u32, out.len()));
            assert_eq!(read_vbi(&out[..out.len() - 1]), Vbi::Incomplete);
        }
    }

    #[test]
    fn vbi_rejects_five_bytes() {
        assert_eq!(read_vbi(&[0xFF, 0xFF, 0xFF, 0xFF, 0x7F]), Vbi::TooLong);
        // Known as too long as soon as the 4th byte arrives.
        assert_eq!(read_vbi(&[0x80, 0x80, 0x80, 0x80]), Vbi::TooLong);
    }

    #[test]
    fn vbi_accepts_non_minimal() {
        assert_eq!(read_vbi(&[0x80, 0x00]), Vbi::Value(0, 2));
    }

    #[test]
    fn utf8_rules() {
        assert_eq!(validate_utf8(b"a/b"), Some("a/b"));
        assert_eq!(validate_utf8(b"a\0b"), None);
        // Encoded surrogate U+D800 is not UTF-8.
        assert_eq!(validate_utf8(&[0xED, 0xA0, 0x80]), None);
        // Control characters are only SHOULD NOT: accepted.
        assert_eq!(validate_utf8(b"\x01\x7f"), Some("\x01\x7f"));
    }

    #[test]
    fn reader_fields() {
        let mut r = Reader::new(&[0x00, 0x02, b'h', b'i', 0x12, 0x34, 0, 0, 0, 1, 0x81, 0x01]);
        assert_eq!(r.str("s").unwrap(), "hi");
        assert_eq!(r.u16("u16").unwrap(), 0x1234);
        assert_eq!(r.u32("u32").unwrap(), 1);
        assert_eq!(r.vbi("vbi").unwrap(), 129);
        assert!(r.is_empty());
        assert_eq!(r.u8("x").unwrap_err().reason, ReasonCode::MALFORMED_PACKET);
        let mut r = Reader::new(&[0x00, 0x05, b'h']);
        assert!(r.str("s").is_err());
    }
}
