//! `[auth]` (docs/security.md "Authentication" and "Access control (ACL)"): `allow_anonymous`,
//! `password_file` and `acl_file`.

use std::path::PathBuf;

use toml_edit::{Item, Key};

use super::{entries, ConfigError, Cx, Settings};

const KEYS: &[&str] = &["allow_anonymous", "password_file", "acl_file"];

impl Cx<'_> {
    /// Returns the error to report if no listener names clients by their certificate
    /// (`Settings::parse` decides once every listener is read).
    pub(super) fn auth(
        &self,
        key: &Key,
        item: &Item,
        s: &mut Settings,
    ) -> Result<Option<ConfigError>, ConfigError> {
        let mut refuses_anonymous = None;
        for (k, v) in entries(self.table(key, item, "auth")?) {
            match k.get() {
                "allow_anonymous" => {
                    s.broker.allow_anonymous = self.boolean(k, v, "auth.allow_anonymous")?;
                    refuses_anonymous = (!s.broker.allow_anonymous).then_some((k, v));
                }
                "password_file" => {
                    let path = self.string(k, v, "auth.password_file")?;
                    if path.is_empty() {
                        return Err(self.at(
                            k,
                            v,
                            "auth.password_file",
                            "expected a path, found \"\"",
                        ));
                    }
                    // Relative to the config file's directory: Settings::load resolves it.
                    s.password_file = Some(PathBuf::from(path));
                }
                "acl_file" => {
                    let path = self.string(k, v, "auth.acl_file")?;
                    if path.is_empty() {
                        return Err(self.at(k, v, "auth.acl_file", "expected a path, found \"\""));
                    }
                    // Relative to the config file's directory: Settings::load resolves it.
                    s.acl_file = Some(PathBuf::from(path));
                }
                other => return Err(self.unknown(k, &format!("auth.{other}"), KEYS)),
            }
        }
        if let (Some((k, v)), None) = (refuses_anonymous, &s.password_file) {
            // Without a password file nothing names a client (unless a TLS listener takes the
            // name from the certificate): no one could get in.
            return Ok(Some(self.at(
                k,
                v,
                "auth.allow_anonymous",
                "false needs auth.password_file or a TLS listener with \
                 use_identity_as_username (otherwise no client can get in)",
            )));
        }
        Ok(None)
    }
}
