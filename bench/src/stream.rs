//! The generator's socket: plain TCP, or TLS over it (`--cafile`), behind one type so every
//! scenario runs unchanged over either.
//!
//! TLS is rustls on blocking sockets: a read or write drives the record layer on the same thread,
//! and the socket's read/write timeouts (which the scenarios use as their tick) apply beneath it.
//! The TLS scenarios measure the broker's TLS cost side by side with Mosquitto's; the
//! generator's own TLS cost is the same for both brokers.

use std::io::{self, Read, Write};
use std::net::{IpAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

pub enum Stream {
    Plain(TcpStream),
    /// Boxed: the TLS state is ~1 KB, and most runs are plain.
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

/// A client configuration that trusts the CA certificates in `cafile` (PEM), as
/// `mosquitto_pub --cafile` does.
pub fn client_config(cafile: &str) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    for cert in
        CertificateDer::pem_file_iter(cafile).map_err(|e| format!("--cafile {cafile}: {e}"))?
    {
        let cert = cert.map_err(|e| format!("--cafile {cafile}: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("--cafile {cafile}: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("--cafile {cafile}: no certificate in the file"));
    }
    // ring, like the broker: it builds for our musl target without cmake. rustls 0.23.48
    // deprecates ring's provider for lacking post-quantum key exchange; Debian 12's OpenSSL 3.0
    // (Mosquitto's side of the comparison) has none either, so both sides agree on X25519.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

impl Stream {
    /// Wraps a connected socket; with `tls`, runs the handshake before returning, so the
    /// caller's timing of CONNECT starts on an established session.
    pub fn open(tcp: TcpStream, tls: Option<&Arc<ClientConfig>>) -> io::Result<Stream> {
        let Some(config) = tls else {
            return Ok(Stream::Plain(tcp));
        };
        let ip: IpAddr = tcp.peer_addr()?.ip();
        let conn = ClientConnection::new(config.clone(), ServerName::IpAddress(ip.into()))
            .map_err(io::Error::other)?;
        let mut s = StreamOwned::new(conn, tcp);
        tcp_of(&s).set_read_timeout(Some(Duration::from_secs(10)))?;
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock)?;
        }
        Ok(Stream::Tls(Box::new(s)))
    }

    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => tcp_of(s),
        }
    }

    pub fn set_read_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        self.tcp().set_read_timeout(d)
    }

    pub fn set_write_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        self.tcp().set_write_timeout(d)
    }

    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.tcp().set_nodelay(on)
    }
}

fn tcp_of(s: &StreamOwned<ClientConnection, TcpStream>) -> &TcpStream {
    s.get_ref()
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}
