//! `[[listener]] tls = { ... }` (docs/security.md "TLS"): the listener's certificate chain and
//! key, and optionally client certificates checked against a CA. The files are read when the
//! broker starts and on SIGHUP (tls_config.rs); here only the keys and their types are checked,
//! and where they were written is kept so a file error can name the line and the key.

use std::path::{Path, PathBuf};

use toml_edit::{Item, Key};

use super::{entries, line_of, shown, ConfigError, Cx};

const KEYS: &[&str] = &[
    "cert",
    "key",
    "client_ca",
    "require_certificate",
    "use_identity_as_username",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM: the server's certificate, then its chain.
    pub cert: PathBuf,
    /// PEM: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM: the CA(s) client certificates must chain to; `None`: no client certificates asked.
    pub client_ca: Option<PathBuf>,
    /// Refuse a client without a certificate (default true when `client_ca` is set).
    pub require_certificate: bool,
    /// The client certificate's subject CN becomes the MQTT user name, and the CONNECT's user
    /// name and password are not checked (Mosquitto's option of the same name).
    pub use_identity_as_username: bool,
    /// `FILE:LINE` of the `tls` key, for errors about the files it names.
    pub origin: String,
}

impl TlsSettings {
    /// Resolves relative paths against the config file's directory.
    pub fn resolve(&mut self, dir: &Path) {
        for p in [&mut self.cert, &mut self.key] {
            *p = dir.join(&*p);
        }
        if let Some(p) = &mut self.client_ca {
            *p = dir.join(&*p);
        }
    }
}

impl Cx<'_> {
    pub(super) fn tls(&self, key: &Key, item: &Item) -> Result<TlsSettings, ConfigError> {
        let (mut cert, mut tls_key, mut client_ca) = (None, None, None);
        let (mut require, mut identity) = (None, None);
        let path = |k: &Key, v: &Item, name: &str| -> Result<PathBuf, ConfigError> {
            let full = format!("listener.tls.{name}");
            match self.string(k, v, &full)? {
                "" => Err(self.at(k, v, &full, "expected a path, found \"\"")),
                p => Ok(PathBuf::from(p)),
            }
        };
        for (k, v) in entries(self.table(key, item, "listener.tls")?) {
            match k.get() {
                "cert" => cert = Some(path(k, v, "cert")?),
                "key" => tls_key = Some(path(k, v, "key")?),
                "client_ca" => client_ca = Some(path(k, v, "client_ca")?),
                "require_certificate" => {
                    require = Some((
                        self.boolean(k, v, "listener.tls.require_certificate")?,
                        k,
                        v,
                    ))
                }
                "use_identity_as_username" => {
                    identity = Some((
                        self.boolean(k, v, "listener.tls.use_identity_as_username")?,
                        k,
                        v,
                    ))
                }
                other => return Err(self.unknown(k, &format!("listener.tls.{other}"), KEYS)),
            }
        }
        let missing = |name: &str| {
            self.at(
                key,
                item,
                &format!("listener.tls.{name}"),
                "missing (a TLS listener needs cert and key)",
            )
        };
        let cert = cert.ok_or_else(|| missing("cert"))?;
        let tls_key = tls_key.ok_or_else(|| missing("key"))?;
        let require_certificate = require.map_or(client_ca.is_some(), |(b, _, _)| b);
        if let (Some((true, k, v)), None) = (require, &client_ca) {
            return Err(self.at(
                k,
                v,
                "listener.tls.require_certificate",
                "true needs listener.tls.client_ca (the CA client certificates are checked against)",
            ));
        }
        let use_identity_as_username = identity.is_some_and(|(b, _, _)| b);
        if let Some((true, k, v)) = identity {
            if client_ca.is_none() {
                return Err(self.at(
                    k,
                    v,
                    "listener.tls.use_identity_as_username",
                    format_args!(
                        "{} needs listener.tls.client_ca (no client certificate, no identity)",
                        shown(v)
                    ),
                ));
            }
        }
        Ok(TlsSettings {
            cert,
            key: tls_key,
            client_ca,
            require_certificate,
            use_identity_as_username,
            origin: format!("{}:{}", self.file, line_of(self.src, key.span())),
        })
    }
}
