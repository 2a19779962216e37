//! The WebSocket layer (`[[listener]] protocol = "websocket"`): the codec of
//! server/src/websocket/ between the wire (the socket, or TLS over it) and the worker.
//!
//! Reads take wire bytes into the worker's read buffer, decode them into `mqtt_in` and hand
//! MQTT bytes back in the same buffer; writes frame the worker's MQTT bytes into `wire_out`.
//! Replies the codec makes on its own (the 101 or an HTTP error, pongs, Close frames) go into
//! `wire_out` too, in order. Both buffers are freed when they empty, so an idle WebSocket
//! connection holds only the codec's state.

use std::io;

use bytes::{Buf, BytesMut};
use mio::net::TcpStream;

use crate::websocket::{Status, WebSocket};

/// What the layer reads wire bytes from and writes them to (the socket; TLS over it).
pub(super) trait Wire {
    /// One read, retried on EINTR.
    fn read_wire(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// As much as goes now; short of `buf.len()` means it would block.
    fn write_wire(&mut self, buf: &[u8]) -> io::Result<usize>;
}

impl Wire for TcpStream {
    fn read_wire(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        super::plain::read(self, buf)
    }

    fn write_wire(&mut self, buf: &[u8]) -> io::Result<usize> {
        super::plain::write_some(self, buf)
    }
}

/// Buffers above this capacity are given back when they empty.
const KEEP_CAPACITY: usize = 4 * 1024;

pub(super) struct Layer {
    codec: WebSocket,
    /// MQTT bytes decoded and not yet handed to the worker.
    mqtt_in: BytesMut,
    /// Bytes for the wire that it has not taken yet.
    wire_out: BytesMut,
    /// The last wire read filled the buffer: more may be waiting.
    more: bool,
    /// The MQTT stream has ended: `None` after a Close from the client, the reason after a
    /// protocol error. Reported once `mqtt_in` is handed over.
    ended: Option<Option<String>>,
}

impl Layer {
    pub(super) fn new(max_payload: u64) -> Layer {
        Layer {
            codec: WebSocket::new(max_payload),
            mqtt_in: BytesMut::new(),
            wire_out: BytesMut::new(),
            more: false,
            ended: None,
        }
    }

    /// Reads MQTT bytes into `buf` (see `Transport::read`); `Interrupted`: wire bytes were read
    /// and none of them was MQTT, read again.
    pub(super) fn read(&mut self, wire: &mut impl Wire, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if !self.mqtt_in.is_empty() {
                let n = self.mqtt_in.len().min(buf.len());
                let (dst, src) = (buf.get_mut(..n), self.mqtt_in.get(..n));
                if let (Some(dst), Some(src)) = (dst, src) {
                    dst.copy_from_slice(src);
                }
                self.mqtt_in.advance(n);
                shrink(&mut self.mqtt_in);
                return Ok(n);
            }
            match &self.ended {
                Some(None) => return Ok(0),
                Some(Some(why)) => {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, why.clone()))
                }
                None => {}
            }
            let n = wire.read_wire(buf)?;
            if n == 0 {
                return Ok(0);
            }
            self.more = n == buf.len();
            let wire_in = buf.get(..n).unwrap_or(&[]);
            let fed = self
                .codec
                .feed(wire_in, &mut self.mqtt_in, &mut self.wire_out);
            // The 101, pongs and Close replies go now; what the socket refuses, WRITABLE
            // flushes (`wants_write`). A write error shows on the next write.
            let _ = self.flush(wire);
            match fed {
                Ok(Status::Closed) => self.ended = Some(None),
                Ok(Status::Handshake | Status::Open) => {
                    if self.mqtt_in.is_empty() {
                        // Wire bytes but no MQTT byte yet (the handshake, pings, a frame's
                        // header): one wire read per call all the same, so the worker's bounds
                        // (rounds per event, `Conn::out_full` for the pongs) hold.
                        return Err(io::ErrorKind::Interrupted.into());
                    }
                }
                Err(e) => {
                    let why = format!("websocket: {e}");
                    self.ended = Some(Some(why));
                }
            }
        }
    }

    /// Whether the client broke the WebSocket protocol (the reply is queued): the error `read`
    /// returns is the layer's own, not the wire's.
    pub(super) fn failed(&self) -> bool {
        matches!(self.ended, Some(Some(_)))
    }

    /// Whether a short read proved the wire empty: not when decoded bytes or the end of the
    /// stream are still to be reported (no readiness edge would come for them).
    pub(super) fn short_read_is_empty(&self) -> bool {
        self.mqtt_in.is_empty() && self.ended.is_none() && !self.more
    }

    /// Frames `mqtt` as one binary frame; takes nothing while earlier wire bytes wait.
    pub(super) fn write(&mut self, wire: &mut impl Wire, mqtt: &[u8]) -> io::Result<usize> {
        if !self.wire_out.is_empty() {
            self.flush(wire)?;
            if !self.wire_out.is_empty() {
                return Ok(0);
            }
        }
        if self.codec.status() != Status::Open {
            // Nothing may follow a Close or an HTTP error: the bytes are dropped, as on a
            // socket whose peer is gone.
            return Ok(mqtt.len());
        }
        WebSocket::encode(mqtt, &mut self.wire_out);
        self.flush(wire)?;
        Ok(mqtt.len())
    }

    pub(super) fn wants_write(&self) -> bool {
        !self.wire_out.is_empty()
    }

    /// Bytes waiting for the wire: frames of earlier writes and replies (pongs) to a client that
    /// does not read. Counted in `Conn::out_full`, so such a client stops being read.
    pub(super) fn queued(&self) -> usize {
        self.wire_out.len()
    }

    pub(super) fn flush(&mut self, wire: &mut impl Wire) -> io::Result<()> {
        if !self.wire_out.is_empty() {
            let n = wire.write_wire(&self.wire_out)?;
            self.wire_out.advance(n);
            shrink(&mut self.wire_out);
        }
        Ok(())
    }

    /// Before FIN on a connection the broker closes: a Close frame, when the WebSocket is
    /// still open and the socket takes it now (it is 4 bytes; the connection's output has
    /// drained).
    pub(super) fn before_shutdown(&mut self, wire: &mut impl Wire) {
        if self.codec.status() == Status::Open && self.wire_out.is_empty() {
            WebSocket::encode_close(&mut self.wire_out);
            let _ = self.flush(wire);
            self.wire_out = BytesMut::new();
        }
    }
}

/// Gives a large buffer's memory back once it is empty.
fn shrink(buf: &mut BytesMut) {
    if buf.is_empty() && buf.capacity() > KEEP_CAPACITY {
        *buf = BytesMut::new();
    }
}
