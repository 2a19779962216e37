//! RFC 6455 §5 data framing, server side: client frames in (masked, decoded incrementally so a
//! frame's payload is never buffered whole), server frames out (unmasked).
//!
//! MQTT over WebSocket (MQTT 5.0 §6) is a byte stream carried in binary frames: a packet may
//! span frames and a frame may hold several packets, so binary and continuation payloads go
//! straight to the MQTT bytes; only control frames (at most 125 bytes) are held until complete.

use bytes::{BufMut, BytesMut};

use super::{CloseCode, WsError};

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// §5.5: control frames carry at most 125 payload bytes.
const MAX_CONTROL_PAYLOAD: usize = 125;
/// The longest frame header: 2 + 8 (64-bit length) + 4 (mask key).
const MAX_HEADER: usize = 14;

/// What a complete control frame asks of the caller.
pub(super) enum Control {
    /// A pong was queued, or a pong arrived: nothing to do.
    None,
    /// The client sent Close; the reply is queued and the stream ends.
    Close,
}

/// The frame being read.
enum Part {
    /// Collecting a header (`len` bytes of `buf` so far).
    Header { buf: [u8; MAX_HEADER], len: usize },
    /// Inside a data frame's payload: `left` bytes still to come.
    Data { mask: [u8; 4], at: usize, left: u64 },
    /// Inside a control frame's payload, held until complete.
    Control {
        opcode: u8,
        mask: [u8; 4],
        left: usize,
        payload: Vec<u8>,
    },
}

/// Decodes client frames one byte slice at a time.
pub(super) struct FrameReader {
    part: Part,
    /// A fragmented binary message is open (its last frame had FIN clear).
    in_message: bool,
    /// Bound on one frame's payload (from `limits.max_packet_size`).
    max_payload: u64,
}

impl FrameReader {
    pub(super) fn new(max_payload: u64) -> FrameReader {
        FrameReader {
            part: Part::Header {
                buf: [0; MAX_HEADER],
                len: 0,
            },
            in_message: false,
            max_payload,
        }
    }

    /// Decodes `wire`: payload bytes of binary frames go to `mqtt`, replies to control frames
    /// to `reply`. Stops at a Close frame (`Control::Close`; the rest of `wire` is ignored:
    /// nothing may follow a Close, §5.5.1).
    pub(super) fn feed(
        &mut self,
        mut wire: &[u8],
        mqtt: &mut BytesMut,
        reply: &mut BytesMut,
    ) -> Result<Control, WsError> {
        while !wire.is_empty() {
            match &mut self.part {
                Part::Header { buf, len } => {
                    let have = *len;
                    let need = header_len(buf.get(..have).unwrap_or(&[]));
                    let take = need.saturating_sub(have).min(wire.len());
                    let (head, rest) = wire.split_at(take);
                    if let Some(dst) = buf.get_mut(have..have + take) {
                        dst.copy_from_slice(head);
                    }
                    *len = have + take;
                    wire = rest;
                    // The header's length is known only once its first two bytes are in.
                    if *len >= 2 && *len == header_len(buf.get(..*len).unwrap_or(&[])) {
                        let header = *buf;
                        let n = *len;
                        self.start(header.get(..n).unwrap_or(&[]))?;
                        if let Part::Control { left: 0, .. } = self.part {
                            if let Control::Close = self.finish_control(reply)? {
                                return Ok(Control::Close);
                            }
                        }
                    }
                }
                Part::Data { mask, at, left } => {
                    let take = usize::try_from(*left).unwrap_or(usize::MAX).min(wire.len());
                    let (payload, rest) = wire.split_at(take);
                    // Copy, then unmask in place (the mask runs on across reads: `at`).
                    let start = mqtt.len();
                    mqtt.extend_from_slice(payload);
                    for (i, b) in mqtt
                        .get_mut(start..)
                        .unwrap_or_default()
                        .iter_mut()
                        .enumerate()
                    {
                        *b ^= mask[at.wrapping_add(i) & 3];
                    }
                    *at = at.wrapping_add(take);
                    *left -= take as u64;
                    wire = rest;
                    if *left == 0 {
                        self.part = Part::header();
                    }
                }
                Part::Control {
                    mask,
                    left,
                    payload,
                    ..
                } => {
                    let take = (*left).min(wire.len());
                    let (bytes, rest) = wire.split_at(take);
                    let at = payload.len();
                    payload.extend(
                        bytes
                            .iter()
                            .enumerate()
                            .map(|(i, b)| b ^ mask[(at + i) & 3]),
                    );
                    *left -= take;
                    wire = rest;
                    if *left == 0 {
                        if let Control::Close = self.finish_control(reply)? {
                            return Ok(Control::Close);
                        }
                    }
                }
            }
        }
        Ok(Control::None)
    }

    /// A complete header: checks it (§5.2, §5.4, §5.5) and sets up its payload.
    fn start(&mut self, h: &[u8]) -> Result<(), WsError> {
        let (b0, b1) = match h {
            [b0, b1, ..] => (*b0, *b1),
            _ => return Err(WsError::protocol("truncated frame header")),
        };
        let fin = b0 & 0x80 != 0;
        if b0 & 0x70 != 0 {
            return Err(WsError::protocol(
                "reserved bits set (no extension was negotiated)",
            ));
        }
        if b1 & 0x80 == 0 {
            // §5.1: a server MUST close the connection on an unmasked client frame.
            return Err(WsError::protocol("unmasked client frame"));
        }
        let opcode = b0 & 0x0F;
        let (len, mask_at) = match b1 & 0x7F {
            126 => (u64::from(u16::from_be_bytes(pick(h, 2))), 4),
            127 => (u64::from_be_bytes(pick(h, 2)), 10),
            n => (u64::from(n), 2),
        };
        let mask: [u8; 4] = pick(h, mask_at);
        match opcode {
            OP_BINARY | OP_CONTINUATION => {
                if opcode == OP_BINARY && self.in_message {
                    return Err(WsError::protocol("new message inside a fragmented one"));
                }
                if opcode == OP_CONTINUATION && !self.in_message {
                    return Err(WsError::protocol("continuation frame without a message"));
                }
                if len > self.max_payload {
                    return Err(WsError {
                        code: CloseCode::TOO_BIG,
                        reason: "frame larger than max_packet_size",
                    });
                }
                self.in_message = !fin;
                self.part = if len == 0 {
                    Part::header()
                } else {
                    Part::Data {
                        mask,
                        at: 0,
                        left: len,
                    }
                };
                Ok(())
            }
            OP_TEXT => Err(WsError {
                code: CloseCode::UNSUPPORTED,
                reason: "text frame (MQTT travels in binary frames)",
            }),
            OP_CLOSE | OP_PING | OP_PONG => {
                if !fin {
                    return Err(WsError::protocol("fragmented control frame"));
                }
                let left = usize::try_from(len).unwrap_or(usize::MAX);
                if left > MAX_CONTROL_PAYLOAD {
                    return Err(WsError::protocol("control frame longer than 125 bytes"));
                }
                self.part = Part::Control {
                    opcode,
                    mask,
                    left,
                    payload: Vec::with_capacity(left),
                };
                Ok(())
            }
            _ => Err(WsError::protocol("unknown opcode")),
        }
    }

    /// A complete control frame: ping → pong, close → close reply, pong → nothing.
    fn finish_control(&mut self, reply: &mut BytesMut) -> Result<Control, WsError> {
        let part = std::mem::replace(&mut self.part, Part::header());
        let Part::Control {
            opcode, payload, ..
        } = part
        else {
            return Ok(Control::None);
        };
        match opcode {
            OP_PING => {
                encode(OP_PONG, &payload, reply);
                Ok(Control::None)
            }
            OP_CLOSE => match payload.as_slice() {
                [] => {
                    close(CloseCode::NORMAL, reply);
                    Ok(Control::Close)
                }
                [_] => Err(WsError::protocol("close frame with a 1-byte payload")),
                // §5.5.1: the reply typically echoes the status code.
                [a, b, ..] => {
                    let code = CloseCode(u16::from_be_bytes([*a, *b]));
                    if !code.sendable() {
                        return Err(WsError::protocol("invalid close status code"));
                    }
                    close(code, reply);
                    Ok(Control::Close)
                }
            },
            _ => Ok(Control::None),
        }
    }
}

impl Part {
    fn header() -> Part {
        Part::Header {
            buf: [0; MAX_HEADER],
            len: 0,
        }
    }
}

/// How long the header that starts with `h` is (2 until its second byte is known).
fn header_len(h: &[u8]) -> usize {
    match h.get(1) {
        None => 2,
        Some(b1) => {
            let mask = if b1 & 0x80 != 0 { 4 } else { 0 };
            2 + mask
                + match b1 & 0x7F {
                    126 => 2,
                    127 => 8,
                    _ => 0,
                }
        }
    }
}

/// `N` bytes of the header at `at` (zeros past its end: callers only ask for what
/// `header_len` made sure is there).
fn pick<const N: usize>(h: &[u8], at: usize) -> [u8; N] {
    let mut out = [0; N];
    if let Some(src) = h.get(at..at + N) {
        out.copy_from_slice(src);
    }
    out
}

/// A binary frame carrying `mqtt` (server frames are not masked, §5.1).
pub(super) fn encode_binary(mqtt: &[u8], out: &mut BytesMut) {
    encode(OP_BINARY, mqtt, out);
}

/// A Close frame with `code`.
pub(super) fn close(code: CloseCode, out: &mut BytesMut) {
    encode(OP_CLOSE, &code.0.to_be_bytes(), out);
}

fn encode(opcode: u8, payload: &[u8], out: &mut BytesMut) {
    out.reserve(payload.len() + 10);
    out.put_u8(0x80 | opcode);
    match payload.len() {
        n @ 0..=125 => out.put_u8(n as u8),
        n @ 126..=0xFFFF => {
            out.put_u8(126);
            out.put_u16(n as u16);
        }
        n => {
            out.put_u8(127);
            out.put_u64(n as u64);
        }
    }
    out.put_slice(payload);
}
