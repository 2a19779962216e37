//! The command line (docs/design.md §4, a contract): `serve`, `passwd`, and the clients `shell`,
//! `pub`, `sub` (docs/cli.md). The clients follow mosquitto_pub/mosquitto_sub: `-h` is the host, help is
//! `--help`.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;

use clap::{ArgAction, ArgGroup, Args, Parser, Subcommand, ValueEnum};
use musqratt_codec::ProtocolVersion;

use crate::config::{ConfigError, Listener, Settings};

#[derive(Debug, Parser)]
#[command(
    name = "musqratt",
    version,
    about = "The MusQraTT MQTT 3.1.1/5.0 broker"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the broker.
    Serve(ServeArgs),
    /// Interactive client: connect, sub, pub, unsub, disconnect (reads a pipe as a script).
    #[command(disable_help_flag = true)]
    Shell(ShellArgs),
    /// Publish one message (or one per line of stdin), like mosquitto_pub.
    #[command(disable_help_flag = true)]
    Pub(PubArgs),
    /// Subscribe and print messages, like mosquitto_sub.
    #[command(disable_help_flag = true)]
    Sub(SubArgs),
    /// Add, update or delete a user of a password file (Mosquitto's format), like
    /// mosquitto_passwd.
    Passwd(PasswdArgs),
}

/// `musqratt passwd [-c | -D] FILE USER`, `musqratt passwd [-c] -b FILE USER PASSWORD`.
#[derive(Debug, Args)]
pub struct PasswdArgs {
    /// Create the file, replacing an existing one, with this user only.
    #[arg(short = 'c', conflicts_with = "delete")]
    pub create: bool,
    /// Delete the user instead of adding or updating it.
    #[arg(short = 'D', conflicts_with = "batch")]
    pub delete: bool,
    /// Batch mode: the password is the third argument (visible in `ps` and shell history).
    #[arg(short = 'b')]
    pub batch: bool,
    /// The password file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The user name.
    #[arg(value_name = "USER")]
    pub user: String,
    /// The password (with -b only; otherwise it is read twice from the terminal, without echo).
    #[arg(value_name = "PASSWORD")]
    pub password: Option<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Configuration file (TOML); flags override it.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on (repeatable); replaces the file's listeners.
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Vec<SocketAddr>,
    /// Address to listen on for MQTT over WebSocket (repeatable); with --listen, replaces the
    /// file's listeners.
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen_ws: Vec<SocketAddr>,
    /// Directory of the durable store.
    #[arg(long, value_name = "DIR", conflicts_with = "in_memory")]
    pub data_dir: Option<PathBuf>,
    /// Keep all state in memory only.
    #[arg(long)]
    pub in_memory: bool,
    /// Hold messages published to topics nobody subscribes to.
    #[arg(long, value_name = "on|off")]
    pub hold: Option<OnOff>,
    /// Worker threads (default: one per CPU).
    #[arg(long, value_name = "N")]
    pub workers: Option<NonZeroUsize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

impl ServeArgs {
    /// Defaults, then the file, then the flags.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let mut s = match &self.config {
            Some(path) => Settings::load(path)?,
            None => Settings::default(),
        };
        if !self.listen.is_empty() || !self.listen_ws.is_empty() {
            let ws = self.listen_ws.iter().map(|&bind| Listener {
                websocket: true,
                ..Listener::plain(bind)
            });
            s.listeners = self
                .listen
                .iter()
                .copied()
                .map(Listener::plain)
                .chain(ws)
                .collect();
        }
        if let Some(dir) = &self.data_dir {
            s.storage_dir = dir.clone();
            s.in_memory = false;
        }
        if self.in_memory {
            s.in_memory = true;
        }
        if let Some(hold) = self.hold {
            s.broker.hold_enabled = hold == OnOff::On;
        }
        Ok(s)
    }

    pub fn workers(&self) -> usize {
        self.workers
            .map(NonZeroUsize::get)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, NonZeroUsize::get))
    }
}

/// `-V 311|5`, also mosquitto's spelling `mqttv311` / `mqttv5`.
pub fn parse_version(s: &str) -> Result<ProtocolVersion, String> {
    match s {
        "311" | "mqttv311" | "4" => Ok(ProtocolVersion::V311),
        "5" | "mqttv5" => Ok(ProtocolVersion::V5),
        "31" | "mqttv31" => Err("MQTT 3.1 is not supported: use 311 or 5".into()),
        _ => Err(format!(
            "expected 311 or 5 (or mqttv311, mqttv5), not '{s}'"
        )),
    }
}

fn parse_qos(s: &str) -> Result<u8, String> {
    match s {
        "0" | "1" | "2" => Ok(s.as_bytes()[0] - b'0'),
        _ => Err(format!("expected 0, 1 or 2, not '{s}'")),
    }
}

/// Where the broker is, for every client subcommand.
#[derive(Debug, Args)]
pub struct BrokerArgs {
    /// Broker host.
    #[arg(
        short = 'h',
        long = "host",
        value_name = "HOST",
        default_value = "localhost"
    )]
    pub host: String,
    /// Broker port.
    #[arg(
        short = 'p',
        long = "port",
        value_name = "PORT",
        default_value_t = 1883
    )]
    pub port: u16,
    /// MQTT version: 311 or 5 (mqttv311, mqttv5).
    #[arg(short = 'V', long = "protocol-version", value_name = "311|5", default_value = "5",
          value_parser = parse_version)]
    pub version: ProtocolVersion,
    /// Print help.
    #[arg(long, action = ArgAction::Help)]
    pub help: Option<bool>,
    /// TLS: trust these CA certificates (PEM) and connect with TLS.
    #[arg(long = "cafile", value_name = "FILE")]
    pub cafile: Option<PathBuf>,
    /// TLS: this client certificate (PEM), for a broker that asks for one (with --key).
    #[arg(long = "cert", value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// TLS: the client certificate's private key (PEM).
    #[arg(long = "key", value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// TLS: do not check that the broker's certificate names the host (its chain is still
    /// checked against --cafile), as mosquitto's --insecure.
    #[arg(long = "insecure")]
    pub insecure: bool,
}

impl BrokerArgs {
    pub fn tls_files(&self) -> crate::client::tls::TlsFiles {
        crate::client::tls::TlsFiles {
            cafile: self.cafile.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
            insecure: self.insecure,
        }
    }
}

#[derive(Debug, Args)]
pub struct ShellArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
}

/// Options shared by `pub` and `sub`.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// Client identifier (default: generated).
    #[arg(short = 'i', long = "id", value_name = "ID")]
    pub id: Option<String>,
    /// User name.
    #[arg(short = 'u', long = "username", value_name = "USER")]
    pub username: Option<String>,
    /// Password.
    #[arg(short = 'P', long = "pw", value_name = "PASS", requires = "username")]
    pub password: Option<String>,
    /// QoS: of the message for pub, requested for the subscriptions for sub.
    #[arg(short = 'q', long = "qos", value_name = "0|1|2", default_value = "0",
          value_parser = parse_qos)]
    pub qos: u8,
    /// Keep-alive interval in seconds.
    #[arg(
        short = 'k',
        long = "keepalive",
        value_name = "SECS",
        default_value_t = 60
    )]
    pub keep_alive: u16,
    /// Debug: say on stderr when connected and subscribed.
    #[arg(short = 'd', long = "debug")]
    pub debug: bool,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("payload").required(true).args(["message", "file", "lines", "null", "stdin"])))]
pub struct PubArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    #[command(flatten)]
    pub client: ClientArgs,
    /// Topic to publish to.
    #[arg(short = 't', long = "topic", value_name = "TOPIC", required = true)]
    pub topic: String,
    /// Message payload.
    #[arg(short = 'm', long = "message", value_name = "MSG")]
    pub message: Option<String>,
    /// Send the contents of a file as the message.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Read messages from stdin, one per line (blank lines are not sent).
    #[arg(short = 'l', long = "stdin-line")]
    pub lines: bool,
    /// Send a null (zero length) message.
    #[arg(short = 'n', long = "null-message")]
    pub null: bool,
    /// Send all of stdin as one message.
    #[arg(short = 's', long = "stdin-file")]
    pub stdin: bool,
    /// Retain the message.
    #[arg(short = 'r', long = "retain")]
    pub retain: bool,
    /// Message Expiry Interval in seconds (MQTT 5).
    #[arg(short = 'e', long = "message-expiry", value_name = "SECS")]
    pub expiry: Option<u32>,
    /// Session Expiry Interval in seconds (MQTT 5).
    #[arg(short = 'x', long = "session-expiry", value_name = "SECS")]
    pub session_expiry: Option<u32>,
}

#[derive(Debug, Args)]
pub struct SubArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    #[command(flatten)]
    pub client: ClientArgs,
    /// Topic filter to subscribe to (repeatable).
    #[arg(short = 't', long = "topic", value_name = "TOPIC", required = true)]
    pub topics: Vec<String>,
    /// Exit after receiving COUNT messages.
    #[arg(short = 'C', long = "count", value_name = "COUNT")]
    pub count: Option<u64>,
    /// Exit (status 27) if no COUNT messages arrived within SECS seconds of connecting.
    #[arg(short = 'W', long = "timeout", value_name = "SECS")]
    pub timeout: Option<u64>,
    /// Print `TOPIC PAYLOAD` instead of the payload only.
    #[arg(short = 'v', long = "verbose")]
    pub verbose: bool,
    /// Keep the session when disconnected (clean start off; needs -i). Without -e/-x the
    /// session never expires (MQTT 5), as with mosquitto_sub -c.
    #[arg(short = 'c', long = "disable-clean-session", requires = "id")]
    pub persistent: bool,
    /// Session Expiry Interval in seconds (MQTT 5); `-x` is accepted as in mosquitto_sub.
    #[arg(
        short = 'e',
        short_alias = 'x',
        long = "session-expiry",
        value_name = "SECS"
    )]
    pub session_expiry: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn mosquitto_style_flags() {
        let cli = Cli::try_parse_from([
            "musqratt", "pub", "-h", "example", "-p", "1884", "-t", "a/b", "-m", "hi", "-q", "1",
            "-r", "-e", "10", "-V", "mqttv311", "-i", "me",
        ])
        .unwrap();
        let Command::Pub(p) = cli.command else {
            panic!("not pub")
        };
        assert_eq!((p.broker.host.as_str(), p.broker.port), ("example", 1884));
        assert_eq!(p.broker.version, ProtocolVersion::V311);
        assert_eq!((p.client.qos, p.retain, p.expiry), (1, true, Some(10)));
        assert!(Cli::try_parse_from(["musqratt", "pub", "-t", "a"]).is_err());
        assert!(Cli::try_parse_from(["musqratt", "pub", "-t", "a", "-m", "x", "-q", "3"]).is_err());
        let cli = Cli::try_parse_from([
            "musqratt", "sub", "-t", "a", "-t", "b/#", "-C", "2", "-W", "5", "-v", "-c", "-i", "s",
            "-x", "60",
        ])
        .unwrap();
        let Command::Sub(s) = cli.command else {
            panic!("not sub")
        };
        assert_eq!(s.topics, ["a", "b/#"]);
        assert_eq!(
            (s.count, s.timeout, s.session_expiry),
            (Some(2), Some(5), Some(60))
        );
        assert!(s.verbose && s.persistent);
        assert_eq!(parse_version("5"), Ok(ProtocolVersion::V5));
        assert!(parse_version("mqttv31").is_err());
    }

    #[test]
    fn listen_flags_replace_the_listeners() {
        let cli = Cli::try_parse_from([
            "musqratt",
            "serve",
            "--listen",
            "127.0.0.1:1",
            "--listen-ws",
            "127.0.0.1:2",
        ])
        .unwrap();
        let Command::Serve(s) = cli.command else {
            panic!("not serve")
        };
        let listeners = s.settings().unwrap().listeners;
        let got: Vec<(u16, bool)> = listeners
            .iter()
            .map(|l| (l.bind.port(), l.websocket))
            .collect();
        assert_eq!(got, [(1, false), (2, true)]);
    }
}
