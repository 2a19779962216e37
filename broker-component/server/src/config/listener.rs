//! `[[listener]]`: where the broker listens, and how (plain TCP, or TLS: config/tls.rs; MQTT, or
//! MQTT over WebSocket: server/src/websocket/).

use std::net::SocketAddr;

use toml_edit::{Item, Key, TableLike};

use super::{entries, shown, ConfigError, Cx, TlsSettings};

/// One `[[listener]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Listener {
    pub bind: SocketAddr,
    /// `tls = { ... }`: TLS on this port (config/tls.rs); `None`: plain TCP.
    pub tls: Option<TlsSettings>,
    /// `protocol = "websocket"`: MQTT over WebSocket (server/src/websocket/), over TLS too
    /// when `tls` is set.
    pub websocket: bool,
}

impl Listener {
    pub fn plain(bind: SocketAddr) -> Listener {
        Listener {
            bind,
            tls: None,
            websocket: false,
        }
    }
}

impl Cx<'_> {
    pub(super) fn listeners(&self, key: &Key, item: &Item) -> Result<Vec<Listener>, ConfigError> {
        // `[[listener]]` tables, or `listener = [{ bind = ... }]`.
        let tables: Vec<&dyn TableLike> = if let Some(a) = item.as_array_of_tables() {
            a.iter().map(|t| t as &dyn TableLike).collect()
        } else if let Some(a) = item.as_array() {
            let mut v = Vec::new();
            for t in a.iter() {
                match t.as_inline_table() {
                    Some(t) => v.push(t as &dyn TableLike),
                    None => {
                        return Err(self.at(
                            key,
                            item,
                            "listener",
                            "expected an array of tables ([[listener]])",
                        ))
                    }
                }
            }
            v
        } else {
            return Err(self.at(
                key,
                item,
                "listener",
                format_args!(
                    "expected an array of tables ([[listener]]), found {}",
                    shown(item)
                ),
            ));
        };
        let mut out = Vec::new();
        for t in tables {
            let (mut bind, mut tls) = (None, None);
            let mut websocket = false;
            for (k, v) in entries(t) {
                match k.get() {
                    "bind" => {
                        let s = self.string(k, v, "listener.bind")?;
                        bind = Some(s.parse::<SocketAddr>().map_err(|_| {
                            self.at(
                                k,
                                v,
                                "listener.bind",
                                format_args!("expected an address ADDR:PORT, found {}", shown(v)),
                            )
                        })?);
                    }
                    "protocol" => match self.string(k, v, "listener.protocol")? {
                        "mqtt" => websocket = false,
                        "websocket" => websocket = true,
                        _ => {
                            return Err(self.at(
                                k,
                                v,
                                "listener.protocol",
                                format_args!(
                                    "expected \"mqtt\" or \"websocket\", found {}",
                                    shown(v)
                                ),
                            ))
                        }
                    },
                    "tls" => tls = Some(self.tls(k, v)?),
                    other => {
                        return Err(self.unknown(
                            k,
                            &format!("listener.{other}"),
                            &["bind", "protocol", "tls"],
                        ))
                    }
                }
            }
            // The table's own span is its header line.
            let span = t
                .iter()
                .next()
                .and_then(|(k, _)| t.get_key_value(k))
                .and_then(|(k, _)| k.span());
            let bind = bind.ok_or_else(|| {
                self.err(
                    span.or(key.span()),
                    "listener.bind",
                    "missing (every [[listener]] needs a bind address)",
                )
            })?;
            out.push(Listener {
                bind,
                tls,
                websocket,
            });
        }
        Ok(out)
    }
}
