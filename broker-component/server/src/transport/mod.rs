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

mod identity;
mod plain;
mod tls;
mod websocket;

use std::io;
use std::net::{Shutdown, SocketAddr};

use mio::event::Source;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use musqratt_core::Identity;

use crate::tls_config::TlsListener;
use websocket::Wire;

/// One connection's byte stream, as the worker sees it (see the module doc).
pub struct Transport {
    stream: TcpStream,
    /// The layers over the socket, behind one pointer; `None`: MQTT straight on the socket.
    layers: Option<Box<Layers>>,
}

/// What sits over the socket: TLS, WebSocket framing, or WebSocket over TLS (wss).
struct Layers {
    tls: Option<tls::Tls>,
    /// WebSocket framing (`protocol = "websocket"`, websocket.rs), over `tls` when set.
    ws: Option<websocket::Layer>,
}

/// What the WebSocket layer reads and writes: the socket, or TLS over it.
enum Under<'a> {
    Plain(&'a mut TcpStream),
    Tls(&'a mut tls::Tls, &'a mut TcpStream),
}

impl Wire for Under<'_> {
    fn read_wire(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Under::Plain(s) => plain::read(s, buf),
            Under::Tls(t, s) => t.read(s, buf),
        }
    }

    fn write_wire(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Under::Plain(s) => plain::write_some(s, buf),
            Under::Tls(t, s) => t.write(s, buf),
        }
    }
}

impl Transport {
    /// Plain TCP: no layer.
    pub fn plain(stream: TcpStream) -> Transport {
        Transport {
            stream,
            layers: None,
        }
    }

    /// TLS with the listener's current configuration; the handshake runs as the first bytes
    /// arrive.
    pub fn tls(stream: TcpStream, listener: &TlsListener) -> Result<Transport, rustls::Error> {
        let conn = rustls::ServerConnection::new(listener.config.clone())?;
        Ok(Transport {
            stream,
            layers: Some(Box::new(Layers {
                tls: Some(tls::Tls::new(conn, listener.use_identity_as_username)),
                ws: None,
            })),
        })
    }

    /// Adds WebSocket framing over what the transport has (plain TCP or TLS); data frames may
    /// carry at most `max_payload` bytes.
    pub fn with_websocket(mut self, max_payload: u64) -> Transport {
        let layers = self.layers.get_or_insert_with(|| {
            Box::new(Layers {
                tls: None,
                ws: None,
            })
        });
        layers.ws = Some(websocket::Layer::new(max_payload));
        self
    }

    /// Reads MQTT bytes into `buf`: `Ok(0)` is the end of the stream, `WouldBlock` means nothing
    /// more for now, `Interrupted` that a layer read bytes of its own only (a WebSocket's
    /// handshake or control frames): more may be waiting.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(layers) = self.layers.as_deref_mut() else {
            return plain::read(&mut self.stream, buf);
        };
        match (&mut layers.ws, &mut layers.tls) {
            (None, None) => plain::read(&mut self.stream, buf),
            (None, Some(tls)) => tls.read(&mut self.stream, buf),
            (Some(ws), tls) => {
                let read = ws.read(&mut under(tls, &mut self.stream), buf);
                if let Err(e) = &read {
                    if ws.failed() {
                        // A refused handshake or a broken frame (the reply is queued).
                        let peer = self.stream.peer_addr().ok();
                        tracing::warn!(?peer, "closing connection: {e}");
                    }
                }
                read
            }
        }
    }

    /// What the client's certificate says, for a listener with `use_identity_as_username`:
    /// `Some` once, when the handshake has completed (before the first MQTT byte is read).
    pub fn take_identity(&mut self) -> Option<Identity> {
        self.layers
            .as_deref_mut()
            .and_then(|l| l.tls.as_mut())
            .and_then(|t| t.take_identity())
    }

    /// Whether a `read` that returned less than its buffer took everything there was, so that
    /// a new readiness edge will report what comes next (docs/architecture.md, "Read"). True for
    /// plain TCP; a layer that buffers (TLS) may hold more.
    pub fn short_read_is_empty(&self) -> bool {
        match self.layers.as_deref() {
            None => true,
            Some(Layers { tls: Some(_), .. }) => false,
            Some(Layers {
                tls: None,
                ws: None,
            }) => true,
            Some(Layers {
                tls: None,
                ws: Some(ws),
            }) => ws.short_read_is_empty(),
        }
    }

    /// Writes as much of `buf` as can go now; `Ok(n)` short of `buf.len()` means it would block
    /// (WRITABLE will tell when to go on, and `flush` first).
    pub fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(layers) = self.layers.as_deref_mut() else {
            return plain::write_some(&mut self.stream, buf);
        };
        match (&mut layers.ws, &mut layers.tls) {
            (None, None) => plain::write_some(&mut self.stream, buf),
            (None, Some(tls)) => tls.write(&mut self.stream, buf),
            (Some(ws), tls) => ws.write(&mut under(tls, &mut self.stream), buf),
        }
    }

    /// Bytes held inside the transport for the socket (none for plain TCP).
    pub fn wants_write(&self) -> bool {
        self.layers.as_deref().is_some_and(|l| {
            l.ws.as_ref().is_some_and(|ws| ws.wants_write())
                || l.tls.as_ref().is_some_and(|t| t.wants_write())
        })
    }

    /// How many bytes a layer holds for the socket that it could grow without a write from the
    /// worker (a WebSocket's pongs); the caller bounds it with its own output (`Conn::out_full`).
    /// TLS's records are bounded by rustls itself.
    pub fn queued_out(&self) -> usize {
        self.layers
            .as_deref()
            .and_then(|l| l.ws.as_ref())
            .map_or(0, |ws| ws.queued())
    }

    /// Writes what the transport holds for the socket, after WRITABLE: TLS records first, then
    /// the WebSocket frames waiting above them (which TLS encrypts and sends as it can).
    pub fn flush(&mut self) -> io::Result<()> {
        let Some(layers) = self.layers.as_deref_mut() else {
            return Ok(());
        };
        if let Some(tls) = &mut layers.tls {
            tls.flush(&mut self.stream)?;
        }
        if let Some(ws) = &mut layers.ws {
            ws.flush(&mut under(&mut layers.tls, &mut self.stream))?;
        }
        Ok(())
    }

    /// Ends the write side after the bytes already written: a WebSocket's Close frame, TLS's
    /// close_notify, then FIN.
    pub fn shutdown_write(&mut self) -> io::Result<()> {
        if let Some(layers) = self.layers.as_deref_mut() {
            if let Some(ws) = &mut layers.ws {
                ws.before_shutdown(&mut under(&mut layers.tls, &mut self.stream));
            }
            if let Some(tls) = &mut layers.tls {
                tls.close_notify(&mut self.stream);
            }
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

/// The WebSocket layer's wire: TLS when there is TLS, else the socket.
fn under<'a>(tls: &'a mut Option<tls::Tls>, stream: &'a mut TcpStream) -> Under<'a> {
    match tls {
        Some(t) => Under::Tls(t, stream),
        None => Under::Plain(stream),
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
