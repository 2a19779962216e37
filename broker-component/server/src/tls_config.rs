//! A TLS listener's rustls configuration, built from the files `[[listener]] tls` names
//! (config/tls.rs), at start and on SIGHUP. Errors name where the `tls` key is, the key and
//! what is wrong with its file: `musqratt.toml:7: key 'listener.tls.key': key.pem: the private
//! key does not match the certificate`. At start an error stops the broker; on SIGHUP it is
//! logged and the listener keeps the configuration it had (tls_config::reload).
//!
//! ring is the crypto provider: it builds for the static musl binary without cmake or clang.
//! TLS 1.2 and 1.3 are offered (rustls's safe defaults: no TLS 1.0/1.1, no weak suites).

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use crate::config::TlsSettings;

/// The largest PEM file read: certificate chains and CA bundles are kilobytes; a system CA
/// bundle is ~200 KiB.
const MAX_PEM_BYTES: u64 = 4 << 20;

/// What a TLS listener hands each accepted socket: the rustls configuration, and whether the
/// certificate's CN is the user name.
#[derive(Clone)]
pub struct TlsListener {
    pub config: Arc<ServerConfig>,
    pub use_identity_as_username: bool,
}

/// Reads the files of `tls` and builds its configuration.
pub fn load(tls: &TlsSettings) -> Result<TlsListener, String> {
    let at = |key: &str, path: &Path, msg: &dyn std::fmt::Display| {
        format!(
            "{}: key 'listener.tls.{key}': {}: {msg}",
            tls.origin,
            path.display()
        )
    };
    let provider = Arc::new(provider());
    let cert_pem = read_pem(&tls.cert).map_err(|e| at("cert", &tls.cert, &e))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| at("cert", &tls.cert, &format_args!("bad PEM: {e}")))?;
    if chain.is_empty() {
        return Err(at("cert", &tls.cert, &"no certificate in the PEM file"));
    }
    let key_pem = read_pem(&tls.key).map_err(|e| at("key", &tls.key, &e))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => at(
            "key",
            &tls.key,
            &"no private key in the PEM file (PKCS#8, PKCS#1 or SEC1)",
        ),
        e => at("key", &tls.key, &format_args!("bad PEM: {e}")),
    })?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("{}: TLS: {e}", tls.origin))?;
    let builder = match &tls.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let ca_pem = read_pem(ca).map_err(|e| at("client_ca", ca, &e))?;
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&ca_pem) {
                let cert = cert.map_err(|e| at("client_ca", ca, &format_args!("bad PEM: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| at("client_ca", ca, &format_args!("not a CA certificate: {e}")))?;
            }
            if roots.is_empty() {
                return Err(at("client_ca", ca, &"no certificate in the PEM file"));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider);
            let verifier = if tls.require_certificate {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            let verifier = verifier
                .build()
                .map_err(|e| at("client_ca", ca, &format_args!("cannot use it: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder.with_single_cert(chain, key).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => at(
            "key",
            &tls.key,
            &format_args!(
                "the private key does not match the certificate in {}",
                tls.cert.display()
            ),
        ),
        e => at("key", &tls.key, &format_args!("cannot use it: {e}")),
    })?;
    Ok(TlsListener {
        config: Arc::new(config),
        use_identity_as_username: tls.use_identity_as_username,
    })
}

/// On SIGHUP: the listener takes the new configuration only if every file is good; sockets
/// accepted from now on use it, established connections keep theirs.
pub fn reload(tls: &TlsSettings, current: &mut TlsListener, bind: std::net::SocketAddr) {
    match load(tls) {
        Ok(new) => {
            *current = new;
            tracing::info!(%bind, cert = %tls.cert.display(), "TLS certificate reloaded");
        }
        Err(e) => tracing::error!(
            %bind,
            "TLS files not reloaded, the previous certificate stays in force: {e}"
        ),
    }
}

/// rustls with ring. Deprecated since rustls 0.23.48 because ring has no post-quantum key
/// exchange; the alternative, aws-lc-rs, needs cmake and a C toolchain the static musl build
/// does not have (docs/security.md "TLS").
#[allow(deprecated)]
pub fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// A PEM file's bytes, bounded.
fn read_pem(path: &Path) -> Result<Vec<u8>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(format!("larger than {} MiB", MAX_PEM_BYTES >> 20));
    }
    Ok(bytes)
}
