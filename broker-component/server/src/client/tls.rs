//! TLS for the client subcommands (`--cafile`, `--cert`, `--key`, as mosquitto_pub/sub):
//! rustls over the blocking socket. The reader thread and the writers share one
//! `ClientConnection` behind a mutex that is never held while waiting on the socket for input:
//! the reader waits for ciphertext on its own clone of the socket, then takes the lock to
//! decrypt it; a writer takes the lock to encrypt and write whole packets.

use std::io::{self, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

use super::session::{io_text, lock};

/// What `--cafile`, `--cert` and `--key` name.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    pub cafile: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl TlsFiles {
    /// The client configuration, or `None` without `--cafile` (plain TCP). Errors name the
    /// option and the file.
    pub fn config(&self) -> Result<Option<Arc<ClientConfig>>, String> {
        let Some(cafile) = &self.cafile else {
            if self.cert.is_some() || self.key.is_some() {
                return Err("--cert and --key need --cafile (TLS)".into());
            }
            return Ok(None);
        };
        let mut roots = RootCertStore::empty();
        for cert in
            CertificateDer::pem_file_iter(cafile).map_err(|e| pem_error("--cafile", cafile, e))?
        {
            let cert = cert.map_err(|e| pem_error("--cafile", cafile, e))?;
            roots
                .add(cert)
                .map_err(|e| format!("--cafile {}: {e}", cafile.display()))?;
        }
        if roots.is_empty() {
            return Err(format!(
                "--cafile {}: no certificate in the PEM file",
                cafile.display()
            ));
        }
        let builder = ClientConfig::builder_with_provider(Arc::new(crate::tls_config::provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots);
        let config = match (&self.cert, &self.key) {
            (None, None) => builder.with_no_client_auth(),
            (Some(cert), Some(key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .map_err(|e| pem_error("--cert", cert, e))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| pem_error("--cert", cert, e))?;
                if chain.is_empty() {
                    return Err(format!(
                        "--cert {}: no certificate in the PEM file",
                        cert.display()
                    ));
                }
                let key_der =
                    PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error("--key", key, e))?;
                builder
                    .with_client_auth_cert(chain, key_der)
                    .map_err(|e| format!("--key {}: {e}", key.display()))?
            }
            _ => return Err("--cert and --key go together".into()),
        };
        Ok(Some(Arc::new(config)))
    }
}

fn pem_error(option: &str, path: &Path, e: rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(e) => {
            format!("{option} {}: cannot read: {}", path.display(), io_text(&e))
        }
        rustls::pki_types::pem::Error::NoItemsFound => {
            format!(
                "{option} {}: nothing usable in the PEM file",
                path.display()
            )
        }
        e => format!("{option} {}: bad PEM: {e}", path.display()),
    }
}

/// Runs the handshake on the connected socket (bounded by its timeouts).
pub(super) fn handshake(
    config: &Arc<ClientConfig>,
    host: &str,
    stream: &TcpStream,
    timeout: Duration,
) -> Result<Mutex<ClientConnection>, String> {
    let name = ServerName::try_from(host.to_string())
        .map_err(|_| format!("TLS: {host:?} is not a host name or address"))?;
    let mut conn = ClientConnection::new(config.clone(), name).map_err(|e| format!("TLS: {e}"))?;
    let _ = stream.set_read_timeout(Some(timeout));
    let mut io = stream;
    while conn.is_handshaking() {
        conn.complete_io(&mut io)
            .map_err(|e| format!("TLS handshake failed: {}", io_text(&e)))?;
    }
    Ok(Mutex::new(conn))
}

/// Encrypts `buf` and writes the records (blocking, with the socket's write timeout).
pub(super) fn write_all(
    conn: &Mutex<ClientConnection>,
    stream: &TcpStream,
    buf: &[u8],
) -> io::Result<()> {
    let mut conn = lock(conn);
    conn.writer().write_all(buf)?;
    let mut io = stream;
    while conn.wants_write() {
        conn.write_tls(&mut io)?;
    }
    Ok(())
}

/// Plaintext into `chunk`: what was decrypted already, else one read of the socket `rd`
/// (whose read timeout applies: `WouldBlock`/`TimedOut` as for a plain socket). `Ok(0)` at the
/// end of the stream.
pub(super) fn read(
    conn: &Mutex<ClientConnection>,
    stream: &TcpStream,
    rd: &mut TcpStream,
    chunk: &mut [u8],
) -> io::Result<usize> {
    let mut raw = [0u8; 16 * 1024];
    loop {
        {
            let mut c = lock(conn);
            match c.reader().read(chunk) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
        }
        // Not under the lock: writers go on while this waits.
        let n = rd.read(&mut raw)?;
        if n == 0 {
            return Ok(0);
        }
        let mut c = lock(conn);
        let mut input = raw.get(..n).unwrap_or_default();
        while !input.is_empty() {
            c.read_tls(&mut input)?;
            c.process_new_packets()
                .map_err(|e| io::Error::new(ErrorKind::InvalidData, e))?;
        }
        // Key updates, alerts.
        let mut io = stream;
        while c.wants_write() {
            c.write_tls(&mut io)?;
        }
    }
}
