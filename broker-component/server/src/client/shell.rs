//! The shell's state and the execution of its commands, independent of where the lines come from
//! (a terminal with line editing, or a pipe; see `repl`).
//!
//! The shell holds any number of connections, keyed by client id, in the order they were made;
//! the last one made (or re-selected with `connect ID`) is the current one, which `sub`, `pub` and
//! `unsub` use.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use musqratt_codec::topic::{validate_topic_filter, validate_topic_name};
use musqratt_codec::{ProtocolVersion, QoS, ReasonCode};

use super::command::{parse, Command, Payload, HELP};
use super::session::{Client, Event, Options, Sink};
use super::{format_message, topic_error};

/// Where a line goes: messages to stdout, everything the shell says itself to stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Out,
    Err,
}

/// Prints one line (without its newline) without breaking what is being typed.
pub type Printer = Arc<dyn Fn(Stream, String) + Send + Sync>;

/// Result of one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Failed,
    Quit,
}

struct Conn {
    client: Client,
    /// Connected with a session expiry (`-x`): the session outlives the connection.
    keeps_session: bool,
}

pub struct Shell {
    host: String,
    port: u16,
    version: ProtocolVersion,
    conns: Vec<Conn>,
    printer: Printer,
    /// Set by the reader threads when a connection breaks.
    async_failure: Arc<AtomicBool>,
    generated: u32,
    /// `--cafile`: every connection uses TLS with this configuration.
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Shell {
    pub fn new(
        host: &str,
        port: u16,
        version: ProtocolVersion,
        printer: Printer,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Shell {
        Shell {
            tls,
            host: host.to_string(),
            port,
            version,
            conns: Vec::new(),
            printer,
            async_failure: Arc::new(AtomicBool::new(false)),
            generated: 0,
        }
    }

    /// Client ids of the held connections (for completion).
    pub fn client_ids(&self) -> Vec<String> {
        self.conns
            .iter()
            .map(|c| c.client.client_id().to_string())
            .collect()
    }

    /// Whether a connection broke by itself since the last call.
    pub fn take_async_failure(&self) -> bool {
        self.async_failure.swap(false, Ordering::SeqCst)
    }

    fn say(&self, line: String) {
        (self.printer)(Stream::Err, line);
    }

    /// Run one line. Prints its result or one `error:` line.
    pub fn run_line(&mut self, line: &str) -> Outcome {
        let result = parse(line).and_then(|cmd| self.run(cmd));
        match result {
            Ok(true) => Outcome::Ok,
            Ok(false) => Outcome::Quit,
            Err(e) => {
                self.say(format!("error: {e}"));
                Outcome::Failed
            }
        }
    }

    /// Wait until every connection's broker has answered a ping, so that what it sent before
    /// (held messages after a SUBACK, deliveries of our own publishes) has been printed.
    pub fn sync(&self) {
        for c in &self.conns {
            if c.client.is_open() {
                let _ = c.client.ping();
            }
        }
    }

    /// Close every connection with a plain DISCONNECT: sessions kept with `-x` survive.
    pub fn quit(&mut self) {
        for c in self.conns.drain(..) {
            let _ = c.client.disconnect(None);
        }
    }

    /// `Ok(false)` means quit.
    fn run(&mut self, cmd: Command) -> Result<bool, String> {
        match cmd {
            Command::Empty => {}
            Command::Help => self.say(HELP.to_string()),
            Command::Quit => return Ok(false),
            Command::Connect {
                client_id,
                session_expiry,
                username,
                password,
            } => self.connect(client_id, session_expiry, username, password)?,
            Command::Disconnect { client_id } => self.disconnect(client_id)?,
            Command::Sub { qos, topics } => self.sub(qos, &topics)?,
            Command::Unsub { topics } => self.unsub(&topics)?,
            Command::Pub {
                qos,
                retain,
                expiry,
                topic,
                payload,
            } => self.publish(qos, retain, expiry, &topic, payload)?,
        }
        Ok(true)
    }

    fn options(&self, client_id: &str) -> Options {
        let mut o = Options::new(&self.host, self.port, self.version, client_id);
        o.tls = self.tls.clone();
        o
    }

    fn sink(&self, client_id: &str) -> Sink {
        let printer = Arc::clone(&self.printer);
        let failed = Arc::clone(&self.async_failure);
        let id = client_id.to_string();
        Arc::new(move |e| match e {
            Event::Message(m) => printer(Stream::Out, format_message(&m, true)),
            Event::Closed(why) => {
                failed.store(true, Ordering::SeqCst);
                printer(Stream::Err, format!("error: {id}: {why}"));
            }
        })
    }

    fn position(&self, client_id: &str) -> Option<usize> {
        self.conns
            .iter()
            .position(|c| c.client.client_id() == client_id)
    }

    fn connect(
        &mut self,
        client_id: Option<String>,
        session_expiry: Option<u32>,
        username: Option<String>,
        password: Option<String>,
    ) -> Result<(), String> {
        let id = match client_id {
            Some(id) => id,
            None => {
                self.generated += 1;
                format!("musqratt-{}-{}", std::process::id(), self.generated)
            }
        };
        if let Some(i) = self.position(&id) {
            if self.conns[i].client.is_open() {
                let c = self.conns.remove(i);
                self.conns.push(c);
                self.say(format!("using {id} (already connected)"));
                return Ok(());
            }
            // A broken connection under that id: replace it.
            drop(self.conns.remove(i));
        }
        let keeps_session = session_expiry.is_some_and(|x| x > 0);
        let mut opts = self.options(&id);
        opts.clean_start = !keeps_session;
        opts.session_expiry = session_expiry.filter(|&x| x > 0);
        opts.username = username;
        opts.password = password.map(String::into_bytes);
        let client = Client::connect(&opts, self.sink(&id)).map_err(|e| {
            let shown = if id.is_empty() { "\"\"" } else { id.as_str() };
            format!("connect {shown}: {e}")
        })?;
        let ack = client.connack();
        let mut line = format!(
            "connected {} (CONNACK {}, session present: {})",
            client.client_id(),
            ack.reason_code.name(),
            if ack.session_present { "yes" } else { "no" }
        );
        if keeps_session {
            match self.version {
                ProtocolVersion::V5 => {
                    let x = ack
                        .properties
                        .session_expiry_interval
                        .or(session_expiry)
                        .unwrap_or(0);
                    line.push_str(&format!(", session expiry {x} s"));
                }
                ProtocolVersion::V31 | ProtocolVersion::V311 => {
                    line.push_str(", clean session off: the broker's session expiry applies")
                }
            }
        }
        self.conns.push(Conn {
            client,
            keeps_session,
        });
        self.say(line);
        Ok(())
    }

    fn disconnect(&mut self, client_id: Option<String>) -> Result<(), String> {
        let i = match &client_id {
            Some(id) => self.position(id),
            None => match self.conns.len() {
                0 => return Err("disconnect: not connected".into()),
                n => Some(n - 1),
            },
        };
        let id = match (&client_id, i) {
            (Some(id), _) => id.clone(),
            (None, Some(i)) => self.conns[i].client.client_id().to_string(),
            (None, None) => unreachable!("no id only with a current connection"),
        };
        let held = i.map(|i| self.conns.remove(i));
        let deleted = match held {
            Some(c) if c.client.is_open() => {
                self.close_and_delete(c)
                    .map_err(|e| format!("disconnect {id}: {e}"))?;
                true
            }
            _ => self
                .delete_remote_session(&id)
                .map_err(|e| format!("disconnect {id}: {e}"))?,
        };
        if !deleted {
            return Err(format!(
                "disconnect {id}: not connected from this shell, and the broker has no session for it"
            ));
        }
        let mut line = format!("disconnected {id} (session deleted)");
        if let Some(c) = self.conns.last() {
            line.push_str(&format!("; current connection: {}", c.client.client_id()));
        }
        self.say(line);
        Ok(())
    }

    /// End a held connection so that its session ends with it.
    fn close_and_delete(&self, c: Conn) -> Result<(), String> {
        let id = c.client.client_id().to_string();
        match (self.version, c.keeps_session) {
            // Session Expiry Interval 0 at DISCONNECT: allowed because CONNECT set a non-zero one.
            (ProtocolVersion::V5, true) => c.client.disconnect(Some(0)).map_err(|e| e.to_string()),
            (_, false) => c.client.disconnect(None).map_err(|e| e.to_string()),
            // 3.1.1 with clean session off: a clean-session connection discards the session.
            (ProtocolVersion::V31 | ProtocolVersion::V311, true) => {
                c.client.disconnect(None).map_err(|e| e.to_string())?;
                self.clean_connect(&id)
            }
        }
    }

    /// Connect once with clean session / clean start and leave: the broker discards the session.
    fn clean_connect(&self, id: &str) -> Result<(), String> {
        let opts = self.options(id);
        let c = Client::connect(&opts, quiet_sink()).map_err(|e| e.to_string())?;
        c.disconnect(None).map_err(|e| e.to_string())
    }

    /// Delete the session of a client this shell does not hold. Returns whether one existed.
    fn delete_remote_session(&self, id: &str) -> Result<bool, String> {
        // Clean Start off tells (session present) whether the broker has a session; with no
        // Session Expiry (5.0) it ends when this connection does. 3.1.1 needs a clean connect.
        let mut opts = self.options(id);
        opts.clean_start = false;
        let c = Client::connect(&opts, quiet_sink()).map_err(|e| e.to_string())?;
        let existed = c.connack().session_present;
        c.disconnect(None).map_err(|e| e.to_string())?;
        if self.version == ProtocolVersion::V311 {
            self.clean_connect(id)?;
        }
        Ok(existed)
    }

    fn current(&self, cmd: &str) -> Result<&Client, String> {
        match self.conns.last() {
            Some(c) => Ok(&c.client),
            None => Err(format!("{cmd}: not connected (use connect first)")),
        }
    }

    fn sub(&mut self, qos: QoS, topics: &[String]) -> Result<(), String> {
        for t in topics {
            validate_topic_filter(t).map_err(|e| format!("sub {t}: {}", topic_error(e)))?;
        }
        let client = self.current("sub")?;
        let filters: Vec<_> = topics.iter().map(|t| (t.clone(), qos)).collect();
        let codes = client
            .subscribe(&filters)
            .map_err(|e| format!("sub: {e}"))?;
        let mut refused = Vec::new();
        for (t, code) in topics.iter().zip(codes) {
            if code.is_error() {
                refused.push(format!("{t}: refused: {code}"));
            } else {
                self.say(format!("subscribed {t} (granted QoS {})", code.0));
            }
        }
        // Held messages come right after the SUBACK: print them before the next prompt.
        let _ = client.ping();
        if refused.is_empty() {
            Ok(())
        } else {
            Err(format!("sub {}", refused.join("; ")))
        }
    }

    fn unsub(&mut self, topics: &[String]) -> Result<(), String> {
        for t in topics {
            validate_topic_filter(t).map_err(|e| format!("unsub {t}: {}", topic_error(e)))?;
        }
        let client = self.current("unsub")?;
        let codes = client
            .unsubscribe(topics)
            .map_err(|e| format!("unsub: {e}"))?;
        let mut refused = Vec::new();
        for (t, code) in topics.iter().zip(codes) {
            if code.is_error() {
                refused.push(format!("{t}: refused: {code}"));
            } else if code == ReasonCode::SUCCESS {
                self.say(format!("unsubscribed {t}"));
            } else {
                self.say(format!("unsubscribed {t} ({})", code.name()));
            }
        }
        if refused.is_empty() {
            Ok(())
        } else {
            Err(format!("unsub {}", refused.join("; ")))
        }
    }

    fn publish(
        &mut self,
        qos: QoS,
        retain: bool,
        expiry: Option<u32>,
        topic: &str,
        payload: Payload,
    ) -> Result<(), String> {
        validate_topic_name(topic).map_err(|e| format!("pub {topic}: {}", topic_error(e)))?;
        if expiry.is_some() && self.version == ProtocolVersion::V311 {
            return Err("pub: -e (message expiry) needs MQTT 5 (start the shell with -V 5)".into());
        }
        let payload = match payload {
            Payload::Text(t) => Bytes::from(t),
            Payload::File(path) => std::fs::read(&path).map(Bytes::from).map_err(|e| {
                format!(
                    "pub: cannot read {}: {}",
                    path.display(),
                    super::session::io_text(&e)
                )
            })?,
        };
        let len = payload.len();
        let client = self.current("pub")?;
        let code = client
            .publish(topic, payload, qos, retain, expiry)
            .map_err(|e| format!("pub {topic}: {e}"))?;
        if code.is_error() {
            return Err(format!("pub {topic}: refused: {code}"));
        }
        let mut line = format!("published {topic} ({len} bytes, QoS {}", qos.as_u8());
        if retain {
            line.push_str(", retained");
        }
        if let Some(e) = expiry {
            line.push_str(&format!(", expires in {e} s"));
        }
        if code != ReasonCode::SUCCESS {
            line.push_str(&format!(": {}", code.name()));
        }
        line.push(')');
        self.say(line);
        Ok(())
    }
}

fn quiet_sink() -> Sink {
    Arc::new(|_| {})
}
