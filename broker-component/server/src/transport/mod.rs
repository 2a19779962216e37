//! The transport under a connection: what turns the socket's bytes into MQTT bytes and back.
//!
//! The worker reads MQTT bytes from a [`Transport`] and writes MQTT bytes to it; it never
//! touches the socket directly. A transport is a stack of layers over one mio `TcpStream`:
//!
//! ```text
//!   worker  ── MQTT bytes ──▶  [framing: WebSocket, later]  ──▶  [TLS]  ──▶  TcpStream
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

mod identity;
mod plain;
mod tls;

use std::io;
use std::net::{Shutdown, SocketAddr};

use mio::event::Source;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use musqratt_core::Identity;

use crate::tls_config::TlsListener;

/// One connection's byte stream, as the worker sees it (see the module doc).
pub struct Transport {
    stream: TcpStream,
    /// TLS over the socket (`None`: plain TCP). A framing layer (WebSocket), which works over
    /// TLS or plain TCP, goes with it behind the one pointer: `layers: Option<Box<Layers>>`
    /// with `Layers { tls: Option<Tls>, framing: Option<..> }`, the framing filtering what
    /// `tls` (or the socket) yields on read and framing what goes down on write, so that plain
    /// TCP stays a null pointer and a branch.
    tls: Option<Box<tls::Tls>>,
}

impl Transport {
    /// Plain TCP: no layer.
    pub fn plain(stream: TcpStream) -> Transport {
        Transport { stream, tls: None }
    }

    /// TLS with the listener's current configuration; the handshake runs as the first bytes
    /// arrive.
    pub fn tls(stream: TcpStream, listener: &TlsListener) -> Result<Transport, rustls::Error> {
        let conn = rustls::ServerConnection::new(listener.config.clone())?;
        Ok(Transport {
            stream,
            tls: Some(Box::new(tls::Tls::new(
                conn,
                listener.use_identity_as_username,
            ))),
        })
    }

    /// Reads MQTT bytes into `buf`: `Ok(0)` is the end of the stream, `WouldBlock` means nothing
    /// more for now.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.tls {
            None => plain::read(&mut self.stream, buf),
            Some(tls) => tls.read(&mut self.stream, buf),
        }
    }

    /// What the client's certificate says, for a listener with `use_identity_as_username`:
    /// `Some` once, when the handshake has completed (before the first MQTT byte is read).
    pub fn take_identity(&mut self) -> Option<Identity> {
        self.tls.as_mut().and_then(|t| t.take_identity())
    }

    /// Whether a `read` that returned less than its buffer took everything there was, so that
    /// a new readiness edge will report what comes next (docs/architecture.md, "Read"). True for
    /// plain TCP; a layer that buffers (TLS) may hold more.
    pub fn short_read_is_empty(&self) -> bool {
        self.tls.is_none()
    }

    /// Writes as much of `buf` as can go now; `Ok(n)` short of `buf.len()` means it would block
    /// (WRITABLE will tell when to go on, and `flush` first).
    pub fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.tls {
            None => plain::write_some(&mut self.stream, buf),
            Some(tls) => tls.write(&mut self.stream, buf),
        }
    }

    /// Bytes held inside the transport for the socket (none for plain TCP).
    pub fn wants_write(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// Writes what the transport holds for the socket, after WRITABLE.
    pub fn flush(&mut self) -> io::Result<()> {
        match &mut self.tls {
            None => Ok(()),
            Some(tls) => tls.flush(&mut self.stream).map(drop),
        }
    }

    /// Ends the write side after the bytes already written (TLS: close_notify first, then FIN).
    pub fn shutdown_write(&mut self) -> io::Result<()> {
        if let Some(tls) = &mut self.tls {
            tls.close_notify(&mut self.stream);
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
