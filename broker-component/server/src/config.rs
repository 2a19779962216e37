//! The server's settings: defaults, the TOML file of docs/design.md §5, and the
//! mapping into the protocol core's [`BrokerConfig`].
//!
//! The file is read with `toml_edit` (not serde) because every error must name
//! the file, the line, the key and what was expected; walking the document by
//! hand keeps each key's span at hand and makes unknown keys plain errors.
//! A key the broker does not know is an error, never silently ignored.

use std::fmt;
use std::net::SocketAddr;
use std::ops::{Range, RangeInclusive};
use std::path::{Path, PathBuf};
use std::time::Duration;

use musqratt_core::BrokerConfig;
use toml_edit::{Item, Key, TableLike, Value};

use crate::sched::Scheduling;

mod auth;
mod listener;
mod network;
mod tls;
pub use listener::Listener;
pub use network::{LwipDpdk, NetworkStack};
pub use tls::TlsSettings;

/// Everything `serve` needs, after defaults, the file and the flags.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub listeners: Vec<Listener>,
    pub storage_dir: PathBuf,
    pub in_memory: bool,
    /// `[storage] fsync` (docs/storage.md "What each fsync mode risks").
    pub fsync: musqratt_store::Fsync,
    /// `[storage] max_disk_mb` (0 = no budget).
    pub max_disk_mb: u64,
    /// `[limits] max_memory_mb` (0 = no cap; server/src/memory.rs turns it into the core's
    /// message budget).
    pub max_memory_mb: usize,
    /// 0 = unlimited.
    pub max_connections: usize,
    /// `[workers] scheduling`: the workers' Linux scheduling policy (sched.rs).
    pub scheduling: Scheduling,
    /// `[network]`: kernel sockets, or lwIP over DPDK (config/network.rs).
    pub network: NetworkStack,
    /// `[auth] password_file` (config/auth.rs): a relative path is taken from the config file's
    /// directory. `allow_anonymous` is in `broker`.
    pub password_file: Option<PathBuf>,
    /// `[auth] acl_file` (config/auth.rs, acl_file.rs): resolved as `password_file`.
    pub acl_file: Option<PathBuf>,
    /// The protocol core's settings, filled straight from `[hold]`,
    /// `[session]`, `[message]` and `[limits]`.
    pub broker: BrokerConfig,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listeners: vec![Listener::plain(SocketAddr::from(([127, 0, 0, 1], 1883)))],
            storage_dir: PathBuf::from("musqratt-data"),
            in_memory: false,
            fsync: musqratt_store::Fsync::Always,
            max_disk_mb: 0,
            max_memory_mb: 0,
            max_connections: 0,
            scheduling: Scheduling::default(),
            network: NetworkStack::Kernel,
            password_file: None,
            acl_file: None,
            broker: BrokerConfig::default(),
        }
    }
}

impl Settings {
    /// Reads `path` over the defaults. A relative `password_file`, `acl_file` or TLS file is resolved
    /// against the directory of `path`.
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        let src = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("{}: cannot read: {e}", path.display())))?;
        let mut s = Settings::parse(&path.display().to_string(), &src)?;
        if let Some(dir) = path.parent() {
            for file in [&mut s.password_file, &mut s.acl_file]
                .into_iter()
                .flatten()
            {
                *file = dir.join(&*file);
            }
            for tls in s.listeners.iter_mut().filter_map(|l| l.tls.as_mut()) {
                tls.resolve(dir);
            }
        }
        Ok(s)
    }

    /// Parses a config file's text; `file` names it in error messages.
    pub fn parse(file: &str, src: &str) -> Result<Settings, ConfigError> {
        let doc = toml_edit::Document::parse(src).map_err(|e| {
            let line = line_of(src, e.span());
            ConfigError(format!(
                "{file}:{line}: invalid TOML: {}",
                e.message().trim()
            ))
        })?;
        let cx = Cx { file, src };
        let mut s = Settings::default();
        let mut anonymous_error = None;
        for (key, item) in entries(doc.as_table()) {
            match key.get() {
                "listener" => s.listeners = cx.listeners(key, item)?,
                "storage" => cx.storage(key, item, &mut s)?,
                "auth" => anonymous_error = cx.auth(key, item, &mut s)?,
                "network" => s.network = cx.network(key, item)?,
                "hold" => cx.hold(key, item, &mut s)?,
                "session" => cx.session(key, item, &mut s)?,
                "message" => cx.message(key, item, &mut s)?,
                "limits" => cx.limits(key, item, &mut s)?,
                "workers" => cx.workers(key, item, &mut s)?,
                other => return Err(cx.unknown(key, other, TOP_LEVEL)),
            }
        }
        // Refusing anonymous clients needs something that names them: a password file, or
        // a listener taking the user name from the client certificate.
        let identities = s
            .listeners
            .iter()
            .any(|l| l.tls.as_ref().is_some_and(|t| t.use_identity_as_username));
        match anonymous_error {
            Some(e) if !identities => Err(e),
            _ => Ok(s),
        }
    }
}

const TOP_LEVEL: &[&str] = &[
    "listener", "storage", "auth", "network", "hold", "session", "message", "limits", "workers",
];

/// A rejected configuration; the message is complete (file, line, key, expectation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

fn line_of(src: &str, span: Option<Range<usize>>) -> usize {
    let at = span.map_or(0, |r| r.start.min(src.len()));
    src.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count() + 1
}

/// A table's entries with their keys (the key carries the span of its line).
fn entries(t: &dyn TableLike) -> Vec<(&Key, &Item)> {
    t.iter().filter_map(|(k, _)| t.get_key_value(k)).collect()
}

/// How a value looks in an error message: strings quoted, as written.
fn shown(item: &Item) -> String {
    match item {
        Item::Value(v) => match v {
            Value::Array(_) => "an array".into(),
            Value::InlineTable(_) => "a table".into(),
            Value::String(s) => format!("{:?}", s.value()),
            Value::Integer(i) => i.value().to_string(),
            Value::Float(f) => f.value().to_string(),
            Value::Boolean(b) => b.value().to_string(),
            Value::Datetime(d) => d.value().to_string(),
        },
        Item::Table(_) => "a table".into(),
        Item::ArrayOfTables(_) => "an array of tables".into(),
        Item::None => "nothing".into(),
    }
}

/// Error-reporting context: the file's name and text.
struct Cx<'a> {
    file: &'a str,
    src: &'a str,
}

impl Cx<'_> {
    fn err(&self, span: Option<Range<usize>>, path: &str, msg: impl fmt::Display) -> ConfigError {
        let line = line_of(self.src, span);
        ConfigError(format!("{}:{line}: key '{path}': {msg}", self.file))
    }

    fn at(&self, key: &Key, item: &Item, path: &str, msg: impl fmt::Display) -> ConfigError {
        self.err(item.span().or_else(|| key.span()), path, msg)
    }

    fn unknown(&self, key: &Key, path: &str, known: &[&str]) -> ConfigError {
        self.err(
            key.span(),
            path,
            format_args!("unknown key (expected one of: {})", known.join(", ")),
        )
    }

    fn table<'i>(
        &self,
        key: &Key,
        item: &'i Item,
        path: &str,
    ) -> Result<&'i dyn TableLike, ConfigError> {
        item.as_table_like().ok_or_else(|| {
            self.at(
                key,
                item,
                path,
                format_args!("expected a table, found {}", shown(item)),
            )
        })
    }

    fn int(
        &self,
        key: &Key,
        item: &Item,
        path: &str,
        range: RangeInclusive<i64>,
    ) -> Result<i64, ConfigError> {
        match item.as_integer() {
            Some(v) if range.contains(&v) => Ok(v),
            _ => Err(self.at(
                key,
                item,
                path,
                format_args!(
                    "expected an integer {}..={}, found {}",
                    range.start(),
                    range.end(),
                    shown(item)
                ),
            )),
        }
    }

    fn boolean(&self, key: &Key, item: &Item, path: &str) -> Result<bool, ConfigError> {
        item.as_bool().ok_or_else(|| {
            self.at(
                key,
                item,
                path,
                format_args!("expected true or false, found {}", shown(item)),
            )
        })
    }

    fn string<'i>(&self, key: &Key, item: &'i Item, path: &str) -> Result<&'i str, ConfigError> {
        item.as_str().ok_or_else(|| {
            self.at(
                key,
                item,
                path,
                format_args!("expected a string, found {}", shown(item)),
            )
        })
    }

    fn storage(&self, key: &Key, item: &Item, s: &mut Settings) -> Result<(), ConfigError> {
        for (k, v) in entries(self.table(key, item, "storage")?) {
            match k.get() {
                "dir" => s.storage_dir = PathBuf::from(self.string(k, v, "storage.dir")?),
                "in_memory" => s.in_memory = self.boolean(k, v, "storage.in_memory")?,
                "fsync" => {
                    s.fsync = match self.string(k, v, "storage.fsync")? {
                        "always" => musqratt_store::Fsync::Always,
                        "batch" => musqratt_store::Fsync::Batch,
                        "never" => musqratt_store::Fsync::Never,
                        _ => {
                            return Err(self.at(
                                k,
                                v,
                                "storage.fsync",
                                format_args!(
                                    "expected \"always\", \"batch\" or \"never\", found {}",
                                    shown(v)
                                ),
                            ))
                        }
                    }
                }
                "max_disk_mb" => {
                    s.max_disk_mb = self.int(k, v, "storage.max_disk_mb", 0..=1 << 30)? as u64
                }
                other => {
                    return Err(self.unknown(
                        k,
                        &format!("storage.{other}"),
                        &["dir", "in_memory", "fsync", "max_disk_mb"],
                    ))
                }
            }
        }
        Ok(())
    }

    fn workers(&self, key: &Key, item: &Item, s: &mut Settings) -> Result<(), ConfigError> {
        for (k, v) in entries(self.table(key, item, "workers")?) {
            match k.get() {
                "scheduling" => {
                    let name = self.string(k, v, "workers.scheduling")?;
                    s.scheduling = Scheduling::from_name(name).ok_or_else(|| {
                        self.at(
                            k,
                            v,
                            "workers.scheduling",
                            format_args!("expected {}, found {}", Scheduling::EXPECTED, shown(v)),
                        )
                    })?
                }
                other => return Err(self.unknown(k, &format!("workers.{other}"), &["scheduling"])),
            }
        }
        Ok(())
    }

    fn hold(&self, key: &Key, item: &Item, s: &mut Settings) -> Result<(), ConfigError> {
        for (k, v) in entries(self.table(key, item, "hold")?) {
            match k.get() {
                "enabled" => s.broker.hold_enabled = self.boolean(k, v, "hold.enabled")?,
                "max_messages_per_topic" => {
                    s.broker.hold_max_messages_per_topic =
                        self.int(k, v, "hold.max_messages_per_topic", 0..=i64::from(u32::MAX))?
                            as usize
                }
                "max_total_mb" => {
                    // MiB of held messages across all topics (see BrokerConfig).
                    let mb = self.int(k, v, "hold.max_total_mb", 1..=1 << 20)?;
                    s.broker.hold_max_total_bytes = (mb as usize) << 20
                }
                other => {
                    return Err(self.unknown(
                        k,
                        &format!("hold.{other}"),
                        &["enabled", "max_messages_per_topic", "max_total_mb"],
                    ))
                }
            }
        }
        Ok(())
    }

    fn session(&self, key: &Key, item: &Item, s: &mut Settings) -> Result<(), ConfigError> {
        for (k, v) in entries(self.table(key, item, "session")?) {
            match k.get() {
                "default_expiry_secs" => {
                    s.broker.session_default_expiry_secs =
                        self.int(k, v, "session.default_expiry_secs", 0..=i64::from(u32::MAX))?
                            as u32
                }
                "max_keepalive_secs" => {
                    s.broker.max_keepalive_secs =
                        self.int(k, v, "session.max_keepalive_secs", 0..=i64::from(u16::MAX))?
                            as u16
                }
                other => {
                    return Err(self.unknown(
                        k,
                        &format!("session.{other}"),
                        &["default_expiry_secs", "max_keepalive_secs"],
                    ))
                }
            }
        }
        Ok(())
    }

    fn message(&self, key: &Key, item: &Item, s: &mut Settings) -> Result<(), ConfigError> {
        for (k, v) in entries(self.table(key, item, "message")?) {
            match k.get() {
                "default_expiry_secs" => {
                    s.broker.message_default_expiry_secs =
                        self.int(k, v, "message.default_expiry_secs", 0..=i64::from(u32::MAX))?
                            as u32
                }
                other => {
                    return Err(self.unknown(
                        k,
                        &format!("message.{other}"),
                        &["default_expiry_secs"],
                    ))
                }
            }
        }
        Ok(())
    }

    fn limits(&self, key: &Key, item: &Item, s: &mut Settings) -> Result<(), ConfigError> {
        const KNOWN: &[&str] = &[
            "max_packet_size",
            "max_connections",
            "max_inflight",
            "max_queued_messages",
            "max_publisher_pause_ms",
            "max_memory_mb",
            "max_topic_levels",
            "connect_timeout_secs",
            "max_connect_size",
            "packet_timeout_secs",
            "max_outbound_aliases",
            "max_outbound_alias_bytes",
            "max_subscriptions_per_client",
            "max_retained_mb",
            "max_queued_mb",
        ];
        for (k, v) in entries(self.table(key, item, "limits")?) {
            match k.get() {
                "max_packet_size" => {
                    // Smallest useful: a CONNECT with an empty client id is 14 bytes.
                    let max = i64::from(musqratt_codec::MAX_REMAINING_LENGTH as u32);
                    s.broker.max_packet_size =
                        self.int(k, v, "limits.max_packet_size", 16..=max)? as u32
                }
                "max_connections" => {
                    s.max_connections =
                        self.int(k, v, "limits.max_connections", 0..=i64::from(u32::MAX))? as usize
                }
                "max_inflight" => {
                    s.broker.max_inflight =
                        self.int(k, v, "limits.max_inflight", 1..=i64::from(u16::MAX))? as u16
                }
                "max_queued_messages" => {
                    // 0 = unlimited.
                    s.broker.max_queued_messages = match self.int(
                        k,
                        v,
                        "limits.max_queued_messages",
                        0..=i64::from(u32::MAX),
                    )? {
                        0 => usize::MAX,
                        n => n as usize,
                    }
                }
                "max_publisher_pause_ms" => {
                    // 0 = never pause a publisher: every subscriber drops its own excess.
                    s.broker.max_publisher_pause = Duration::from_millis(self.int(
                        k,
                        v,
                        "limits.max_publisher_pause_ms",
                        0..=60_000,
                    )?
                        as u64)
                }
                "max_topic_levels" => {
                    // A 64 KiB string has at most 32,768 levels; beyond 65,535 means "any".
                    s.broker.max_topic_levels =
                        self.int(k, v, "limits.max_topic_levels", 1..=i64::from(u16::MAX))? as usize
                }
                "max_memory_mb" => {
                    // 0 = no cap; otherwise at least 16 MiB (the broker's own footprint).
                    let mb = self.int(k, v, "limits.max_memory_mb", 0..=1 << 30)?;
                    if mb != 0 && mb < 16 {
                        return Err(self.at(
                            k,
                            v,
                            "limits.max_memory_mb",
                            format_args!("expected 0 (no cap) or at least 16, found {mb}"),
                        ));
                    }
                    s.max_memory_mb = mb as usize
                }
                "connect_timeout_secs" => {
                    // At least a second: the worker looks at deadlines once a second.
                    let secs = self.int(k, v, "limits.connect_timeout_secs", 1..=86_400)?;
                    s.broker.connect_timeout = std::time::Duration::from_secs(secs as u64)
                }
                "max_connect_size" => {
                    // Smallest useful: a CONNECT with an empty client id is 14 bytes.
                    let max = i64::from(musqratt_codec::MAX_REMAINING_LENGTH as u32);
                    s.broker.max_connect_size =
                        self.int(k, v, "limits.max_connect_size", 16..=max)? as u32
                }
                "packet_timeout_secs" => {
                    // 0 = no bound (a partial packet waits for keep-alive, if any).
                    let secs = self.int(k, v, "limits.packet_timeout_secs", 0..=86_400)?;
                    s.broker.packet_timeout = std::time::Duration::from_secs(secs as u64)
                }
                "max_outbound_aliases" => {
                    s.broker.max_outbound_aliases =
                        self.int(k, v, "limits.max_outbound_aliases", 0..=i64::from(u16::MAX))?
                            as u16
                }
                "max_outbound_alias_bytes" => {
                    s.broker.max_outbound_alias_bytes = self.int(
                        k,
                        v,
                        "limits.max_outbound_alias_bytes",
                        0..=i64::from(u32::MAX),
                    )? as usize
                }
                "max_subscriptions_per_client" => {
                    // 0 = unlimited.
                    let key = "limits.max_subscriptions_per_client";
                    let n = self.int(k, v, key, 0..=i64::from(u32::MAX))? as usize;
                    s.broker.max_subscriptions_per_client = if n == 0 { usize::MAX } else { n }
                }
                "max_retained_mb" => {
                    // MiB of retained messages, charged like hold.max_total_mb.
                    let mb = self.int(k, v, "limits.max_retained_mb", 1..=1 << 20)?;
                    s.broker.max_retained_bytes = (mb as usize) << 20
                }
                "max_queued_mb" => {
                    // 0 = unlimited (the default): max_queued_messages alone bounds the queue.
                    let mb = self.int(k, v, "limits.max_queued_mb", 0..=1 << 20)? as usize;
                    s.broker.max_queued_bytes = if mb == 0 { usize::MAX } else { mb << 20 }
                }
                other => return Err(self.unknown(k, &format!("limits.{other}"), KNOWN)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
