//! The TLS layer (rustls, sans-IO): ciphertext from the socket into the session, plaintext out
//! of it to the worker; plaintext from the worker into the session, records out to the socket.
//!
//! Buffered state the socket's readiness does not show, and how it is handled:
//! - decrypted bytes the worker has not taken yet: `read` hands them out before reading the
//!   socket again, and a short read proves nothing (`Transport::short_read_is_empty` is false),
//!   so the worker reads on until `WouldBlock`;
//! - records the socket refused: `wants_write` stays true until `flush` writes them (the worker
//!   flushes on WRITABLE), and `write` takes no new plaintext meanwhile, so at most one write's
//!   records wait here (rustls's own buffer limit bounds them too) and the rest waits in the
//!   connection's `pending_out` as on plain TCP;
//! - the handshake: the worker gets no byte before it completes, so the core's CONNECT timeout
//!   (`limits.connect_timeout_secs`, armed at accept) bounds the handshake too.

use std::io::{self, Read, Write};

use mio::net::TcpStream;
use musqratt_core::Identity;
use rustls::ServerConnection;

use super::identity::common_name;

pub(super) struct Tls {
    conn: ServerConnection,
    /// The listener takes the user name from the certificate: computed once the handshake
    /// completes, then taken by the worker (`Transport::take_identity`).
    identity: IdentityState,
}

#[derive(PartialEq, Eq)]
enum IdentityState {
    /// The listener does not use it, or it was taken.
    None,
    /// Wanted, the handshake is not done yet.
    Wanted,
    Ready(Identity),
}

impl Tls {
    pub(super) fn new(conn: ServerConnection, use_identity: bool) -> Tls {
        Tls {
            conn,
            identity: if use_identity {
                IdentityState::Wanted
            } else {
                IdentityState::None
            },
        }
    }

    /// Plaintext into `buf`, reading and decrypting the socket's bytes as needed.
    pub(super) fn read(&mut self, stream: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.conn.reader().read(buf) {
                // Ok(0): the client's close_notify.
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The socket ended without close_notify: an end all the same.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            match self.conn.read_tls(stream) {
                Ok(0) => {
                    if self.conn.is_handshaking() {
                        tracing::debug!(peer = ?stream.peer_addr().ok(), "TLS: closed by the client during the handshake");
                    }
                    return Ok(0);
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let handshaking = self.conn.is_handshaking();
            if let Err(e) = self.conn.process_new_packets() {
                // rustls queued an alert telling the client why: send it if the socket takes it.
                let _ = self.flush(stream);
                let peer = stream.peer_addr().ok();
                if handshaking {
                    tracing::warn!(?peer, "closing connection: TLS handshake failed: {e}");
                } else {
                    tracing::warn!(?peer, "closing connection: TLS error: {e}");
                }
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            if self.identity == IdentityState::Wanted && !self.conn.is_handshaking() {
                let cn = self
                    .conn
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .and_then(|cert| common_name(cert));
                self.identity = IdentityState::Ready(match cn {
                    Some(name) => Identity::CommonName(name),
                    None => Identity::Missing,
                });
            }
            // Handshake messages, session tickets, key updates.
            self.flush(stream)?;
        }
    }

    /// The certificate's identity once the handshake is done (once).
    pub(super) fn take_identity(&mut self) -> Option<Identity> {
        match std::mem::replace(&mut self.identity, IdentityState::None) {
            IdentityState::Ready(id) => Some(id),
            other => {
                self.identity = other;
                None
            }
        }
    }

    /// Encrypts as much of `buf` as can go now: nothing while earlier records wait for the
    /// socket (see the module doc).
    pub(super) fn write(&mut self, stream: &mut TcpStream, buf: &[u8]) -> io::Result<usize> {
        let mut done = 0;
        loop {
            if !self.flush(stream)? || done == buf.len() {
                return Ok(done);
            }
            let rest = buf.get(done..).unwrap_or_default();
            let n = self.conn.writer().write(rest)?;
            if n == 0 && !self.conn.wants_write() {
                return Ok(done); // rustls takes no more (not expected once flushed)
            }
            done += n;
        }
    }

    /// Writes the records waiting for the socket; `Ok(false)` if it would block first.
    pub(super) fn flush(&mut self, stream: &mut TcpStream) -> io::Result<bool> {
        while self.conn.wants_write() {
            match self.conn.write_tls(stream) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    pub(super) fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// Before the FIN: close_notify, so the client knows the stream was not cut short.
    pub(super) fn close_notify(&mut self, stream: &mut TcpStream) {
        self.conn.send_close_notify();
        let _ = self.flush(stream);
    }
}
