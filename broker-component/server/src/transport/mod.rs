//! The transport under a connection: what turns the socket's bytes into MQTT bytes and back.
//!
//! The worker reads MQTT bytes from a [`Transport`] and writes MQTT bytes to it; it never
//! touches the socket directly. A transport is a stack of layers over one mio `TcpStream`:
//!
//! ```text
//!   worker  ── MQTT bytes ──▶  [framing: WebSocket]  ──▶  [TLS]  ──▶  TcpStream
//! ```
//!
//! Plain TCP has no layer at all: `read` and `write` go straight to the socket, into and out of
//! the caller's buffers, so the plain path copies nothing more than before (docs/architecture.md,
//! "Where bytes are copied"). A layer (TLS, or a byte filter such as a WebSocket framing) lives
//! behind one boxed pointer, so an idle plain connection pays 8 bytes for it.
//!
//! Readiness stays edge-triggered; what a layer adds is state the socket's readiness does not
//! show:
//! - bytes it holds for reading (decrypted but not yet taken): after a read, `short_read_is_empty`
//!   says whether a read shorter than the buffer proves nothing more is waiting;
//! - bytes it holds for writing (records the socket refused): `wants_write` is true until
//!   `flush` has written them, and `write` accepts no new bytes meanwhile, so the caller keeps
//!   them (its `pending_out`) and the layer's own buffer stays bounded by one write.

mod plain;
mod websocket;

use std::io;
use std::net::{Shutdown, SocketAddr};

use mio::event::Source;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

/// One connection's byte stream, as the worker sees it (see the module doc).
pub struct Transport {
    stream: TcpStream,
    /// The layers over the socket, behind one pointer; `None`: MQTT straight on the socket.
    layer: Option<Box<Layer>>,
}

/// What sits over the socket. One enum behind one box keeps an idle plain connection at one
/// pointer whatever the layers (TLS will be a variant, and WebSocket over TLS another).
enum Layer {
    /// WebSocket framing (`protocol = "websocket"`, websocket.rs).
    WebSocket(websocket::Layer),
}

impl Transport {
    /// Plain TCP: no layer.
    pub fn plain(stream: TcpStream) -> Transport {
        Transport {
            stream,
            layer: None,
        }
    }

    /// MQTT over WebSocket over plain TCP; data frames may carry at most `max_payload` bytes.
    pub fn websocket(stream: TcpStream, max_payload: u64) -> Transport {
        Transport {
            stream,
            layer: Some(Box::new(Layer::WebSocket(websocket::Layer::new(
                max_payload,
            )))),
        }
    }

    /// Reads MQTT bytes into `buf`: `Ok(0)` is the end of the stream, `WouldBlock` means nothing
    /// more for now.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.layer.as_deref_mut() {
            None => plain::read(&mut self.stream, buf),
            Some(Layer::WebSocket(ws)) => {
                let read = ws.read(&mut self.stream, buf);
                if let Err(e) = &read {
                    if e.kind() == io::ErrorKind::InvalidData {
                        // A refused handshake or a broken frame (the reply is queued).
                        let peer = self.stream.peer_addr().ok();
                        tracing::warn!(?peer, "closing connection: {e}");
                    }
                }
                read
            }
        }
    }

    /// Whether a `read` that returned less than its buffer took everything there was, so that
    /// a new readiness edge will report what comes next (docs/architecture.md, "Read"). True for
    /// plain TCP; a layer that buffers (TLS) may hold more.
    pub fn short_read_is_empty(&self) -> bool {
        match self.layer.as_deref() {
            None => true,
            Some(Layer::WebSocket(ws)) => ws.short_read_is_empty(),
        }
    }

    /// Writes as much of `buf` as can go now; `Ok(n)` short of `buf.len()` means it would block
    /// (WRITABLE will tell when to go on, and `flush` first).
    pub fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.layer.as_deref_mut() {
            None => plain::write_some(&mut self.stream, buf),
            Some(Layer::WebSocket(ws)) => ws.write(&mut self.stream, buf),
        }
    }

    /// Bytes held inside the transport for the socket (none for plain TCP).
    pub fn wants_write(&self) -> bool {
        matches!(self.layer.as_deref(), Some(Layer::WebSocket(ws)) if ws.wants_write())
    }

    /// Writes what the transport holds for the socket, after WRITABLE.
    pub fn flush(&mut self) -> io::Result<()> {
        match self.layer.as_deref_mut() {
            None => Ok(()),
            Some(Layer::WebSocket(ws)) => ws.flush(&mut self.stream),
        }
    }

    /// Ends the write side after the bytes already written (FIN); a WebSocket sends its
    /// Close frame first.
    pub fn shutdown_write(&mut self) -> io::Result<()> {
        if let Some(Layer::WebSocket(ws)) = self.layer.as_deref_mut() {
            ws.before_shutdown(&mut self.stream);
        }
        self.stream.shutdown(Shutdown::Write)
    }

    /// Reads and discards input (a closing connection's, see `Conn::draining`): `Ok(0)` at the
    /// end of the stream. The bytes are not decoded: for a layer, they are wire bytes.
    pub fn discard(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        plain::read(&mut self.stream, buf)
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.stream.peer_addr()
    }
}

/// Registered with the worker's poll as its socket.
impl Source for Transport {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.stream.register(registry, token, interests)
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.stream.reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        self.stream.deregister(registry)
    }
}
