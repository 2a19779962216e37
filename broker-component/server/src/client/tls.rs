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

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore,
    SignatureScheme,
};

use super::session::{io_text, lock};

/// What `--cafile`, `--cert`, `--key` and `--insecure` say.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    pub cafile: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Do not check that the broker's certificate names the host (mosquitto's `--insecure`);
    /// its chain is still verified against `cafile`.
    pub insecure: bool,
}

impl TlsFiles {
    /// The client configuration, or `None` without `--cafile` (plain TCP). Errors name the
    /// option and the file.
    pub fn config(&self) -> Result<Option<Arc<ClientConfig>>, String> {
        let Some(cafile) = &self.cafile else {
            if self.cert.is_some() || self.key.is_some() || self.insecure {
                return Err("--cert, --key and --insecure need --cafile (TLS)".into());
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
        let provider = Arc::new(crate::tls_config::provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?;
        let builder = if self.insecure {
            let verifier = WebPkiServerVerifier::builder_with_provider(roots.into(), provider)
                .build()
                .map_err(|e| format!("--cafile {}: {e}", cafile.display()))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyName(verifier)))
        } else {
            builder.with_root_certificates(roots)
        };
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

/// `--insecure`: the WebPKI verifier, except that a certificate for another name passes.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
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

/// One connection's TLS state, shared by the reader thread and the writers.
pub(super) struct Session {
    conn: ClientConnection,
    /// Ciphertext read from the socket that rustls has not taken yet: it takes a record's worth
    /// at a time and only while its plaintext buffer has room, so what one socket read brings
    /// is fed to it between the caller's reads of plaintext.
    pending: Vec<u8>,
}

/// Runs the handshake on the connected socket (bounded by its timeouts).
pub(super) fn handshake(
    config: &Arc<ClientConfig>,
    host: &str,
    stream: &TcpStream,
    timeout: Duration,
) -> Result<Mutex<Session>, String> {
    let name = ServerName::try_from(host.to_string())
        .map_err(|_| format!("TLS: {host:?} is not a host name or address"))?;
    let mut conn = ClientConnection::new(config.clone(), name).map_err(|e| format!("TLS: {e}"))?;
    let _ = stream.set_read_timeout(Some(timeout));
    let mut io = stream;
    while conn.is_handshaking() {
        conn.complete_io(&mut io)
            .map_err(|e| format!("TLS handshake failed: {}", io_text(&e)))?;
    }
    Ok(Mutex::new(Session {
        conn,
        pending: Vec::new(),
    }))
}

/// Encrypts `buf` and writes the records (blocking, with the socket's write timeout).
pub(super) fn write_all(
    session: &Mutex<Session>,
    stream: &TcpStream,
    buf: &[u8],
) -> io::Result<()> {
    let mut session = lock(session);
    let conn = &mut session.conn;
    conn.writer().write_all(buf)?;
    let mut io = stream;
    while conn.wants_write() {
        conn.write_tls(&mut io)?;
    }
    Ok(())
}

/// Plaintext into `chunk`: what was decrypted already, else the ciphertext kept from the last
/// socket read, else one read of the socket `rd` (whose read timeout applies:
/// `WouldBlock`/`TimedOut` as for a plain socket). `Ok(0)` at the end of the stream.
pub(super) fn read(
    session: &Mutex<Session>,
    stream: &TcpStream,
    rd: &mut TcpStream,
    chunk: &mut [u8],
) -> io::Result<usize> {
    let mut raw = [0u8; 16 * 1024];
    loop {
        {
            let mut guard = lock(session);
            let s = &mut *guard;
            match s.conn.reader().read(chunk) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            if !s.pending.is_empty() {
                let mut input = s.pending.as_slice();
                let took = s.conn.read_tls(&mut input)?;
                if took == 0 {
                    return Err(io::Error::new(
                        ErrorKind::InvalidData,
                        "TLS: input not taken",
                    ));
                }
                s.pending.drain(..took);
                s.conn
                    .process_new_packets()
                    .map_err(|e| io::Error::new(ErrorKind::InvalidData, e))?;
                // Key updates, alerts.
                let mut io = stream;
                while s.conn.wants_write() {
                    s.conn.write_tls(&mut io)?;
                }
                continue;
            }
        }
        // Not under the lock: writers go on while this waits.
        let n = rd.read(&mut raw)?;
        if n == 0 {
            return Ok(0);
        }
        lock(session)
            .pending
            .extend_from_slice(raw.get(..n).unwrap_or_default());
    }
}
