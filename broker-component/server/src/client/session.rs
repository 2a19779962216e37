//! One MQTT connection, blocking, on `musqratt-codec`: CONNECT/CONNACK, then a reader thread that
//! answers the broker (PUBACK, PUBREC/PUBCOMP, keep-alive pings) and hands incoming messages to a
//! [`Sink`], while the caller's thread sends requests and waits for their acknowledgements.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io::Write;
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use musqratt_codec::{
    encode, ConnAck, Connect, Disconnect, Packet, Properties, ProtocolVersion, Publish, QoS,
    ReasonCode, Subscribe, SubscriptionOptions, Unsubscribe,
};

use super::reader::{read_connack, read_loop};

/// How to reach the broker and what to put in CONNECT.
#[derive(Clone, Debug)]
pub struct Options {
    pub host: String,
    pub port: u16,
    pub version: ProtocolVersion,
    pub client_id: String,
    /// Clean Start (5.0) / Clean Session (3.1.1).
    pub clean_start: bool,
    /// Session Expiry Interval (5.0 only; absent means 0).
    pub session_expiry: Option<u32>,
    pub keep_alive: u16,
    pub username: Option<String>,
    pub password: Option<Vec<u8>>,
    /// Bound on the TCP connect and on every wait for an acknowledgement.
    pub timeout: Duration,
    /// TLS (`--cafile`): the client configuration; `None`: plain TCP.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Options {
    pub fn new(host: &str, port: u16, version: ProtocolVersion, client_id: &str) -> Options {
        Options {
            host: host.to_string(),
            port,
            version,
            client_id: client_id.to_string(),
            clean_start: true,
            session_expiry: None,
            keep_alive: 60,
            username: None,
            password: None,
            timeout: Duration::from_secs(10),
            tls: None,
        }
    }
}

/// What the reader thread reports.
#[derive(Debug)]
pub enum Event {
    /// A PUBLISH from the broker (already acknowledged at its QoS).
    Message(Box<Publish>),
    /// The connection ended without [`Client::disconnect`]; the text says why.
    Closed(String),
}

/// Where incoming events go. Called on the reader thread, in arrival order.
pub type Sink = Arc<dyn Fn(Event) + Send + Sync>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// The TCP connection could not be made.
    Unreachable { addr: String, error: String },
    /// The broker answered CONNECT with a refusal.
    Refused {
        code: ReasonCode,
        version: ProtocolVersion,
        reason: Option<String>,
    },
    /// No answer within the timeout; the text names what was awaited.
    Timeout(String),
    /// The connection is gone; the text says why.
    Closed(String),
    /// The broker sent something we cannot accept.
    Protocol(String),
}

impl ClientError {
    /// The process exit code mosquitto_pub/mosquitto_sub use for the same failure: the CONNACK
    /// code for a refusal (3.1.1 return code or 5.0 reason code), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Refused { code, version, .. } => match version {
                ProtocolVersion::V31 | ProtocolVersion::V311 => code.to_v311_connack(),
                ProtocolVersion::V5 => code.0,
            },
            _ => 1,
        }
    }
}

/// The 3.1.1 CONNACK return codes (§3.2.2.3).
fn v311_refusal(code: u8) -> &'static str {
    match code {
        1 => "unacceptable protocol version",
        2 => "identifier rejected",
        3 => "server unavailable",
        4 => "bad user name or password",
        5 => "not authorized",
        _ => "unknown return code",
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Unreachable { addr, error } => {
                write!(f, "cannot connect to {addr}: {error}")
            }
            ClientError::Refused {
                code,
                version,
                reason,
            } => {
                match version {
                    ProtocolVersion::V5 => write!(f, "connection refused: {code}")?,
                    ProtocolVersion::V31 | ProtocolVersion::V311 => {
                        let c = code.to_v311_connack();
                        write!(f, "connection refused: {c} {}", v311_refusal(c))?
                    }
                }
                match reason {
                    Some(r) => write!(f, " ({r})"),
                    None => Ok(()),
                }
            }
            ClientError::Timeout(what) => write!(f, "timed out waiting for {what}"),
            ClientError::Closed(why) => write!(f, "{why}"),
            ClientError::Protocol(what) => write!(f, "protocol error: {what}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// `Connection refused (os error 111)` → `Connection refused`.
pub fn io_text(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// State shared by the caller's side and the reader thread.
pub(super) struct Shared {
    pub(super) version: ProtocolVersion,
    pub(super) stream: TcpStream,
    /// TLS over `stream` (client/tls.rs).
    pub(super) tls: Option<Mutex<super::tls::Session>>,
    timeout: Duration,
    /// Serialises whole packets on the socket; holds the time of the last write.
    pub(super) writer: Mutex<Instant>,
    pub(super) state: Mutex<State>,
}

#[derive(Default)]
pub(super) struct State {
    next_id: u16,
    /// Requests waiting for their acknowledgement, by packet identifier.
    pub(super) pending: HashMap<u16, mpsc::Sender<Packet>>,
    /// One entry per PINGREQ sent, in order; `None` for keep-alive pings nobody waits for.
    pub(super) pings: VecDeque<Option<mpsc::Sender<()>>>,
    /// Set by `disconnect`: the end of the connection is expected, not an event.
    pub(super) closing: bool,
    /// Why the connection ended, once it has.
    closed: Option<String>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub(super) fn send(&self, packet: &Packet) -> Result<(), ClientError> {
        let mut buf = BytesMut::new();
        encode(packet, self.version, &mut buf)
            .map_err(|e| ClientError::Protocol(format!("{} not sent: {e}", packet.name())))?;
        let mut last = lock(&self.writer);
        match &self.tls {
            None => (&self.stream).write_all(&buf),
            Some(tls) => super::tls::write_all(tls, &self.stream, &buf),
        }
        .map_err(|e| ClientError::Closed(format!("connection lost: {}", io_text(&e))))?;
        *last = Instant::now();
        Ok(())
    }

    /// Bytes from the broker (decrypted under TLS), read on the reader's clone `rd` of the
    /// socket.
    pub(super) fn read(&self, rd: &mut TcpStream, chunk: &mut [u8]) -> std::io::Result<usize> {
        match &self.tls {
            None => std::io::Read::read(rd, chunk),
            Some(tls) => super::tls::read(tls, &self.stream, rd, chunk),
        }
    }

    fn closed_error(&self) -> ClientError {
        let why = lock(&self.state).closed.clone();
        ClientError::Closed(why.unwrap_or_else(|| "connection closed".into()))
    }
}

/// A connected client. Dropping it closes the socket without DISCONNECT.
pub struct Client {
    shared: Arc<Shared>,
    reader: Option<JoinHandle<()>>,
    done: mpsc::Receiver<()>,
    client_id: String,
    connack: ConnAck,
}

impl Client {
    /// Open the TCP connection, send CONNECT and wait for a successful CONNACK.
    pub fn connect(opts: &Options, sink: Sink) -> Result<Client, ClientError> {
        let stream = open(&opts.host, opts.port, opts.timeout)?;
        let _ = stream.set_nodelay(true);
        let _ = stream.set_write_timeout(Some(opts.timeout));
        let tls = match &opts.tls {
            None => None,
            Some(config) => Some(
                super::tls::handshake(config, &opts.host, &stream, opts.timeout).map_err(
                    |error| ClientError::Unreachable {
                        addr: format!("{}:{}", opts.host, opts.port),
                        error,
                    },
                )?,
            ),
        };
        let properties = Properties {
            session_expiry_interval: opts.session_expiry.filter(|_| opts.version.is_v5()),
            ..Properties::default()
        };
        let connect = Packet::Connect(Connect {
            protocol: opts.version,
            clean_start: opts.clean_start,
            keep_alive: opts.keep_alive,
            properties,
            client_id: opts.client_id.clone(),
            will: None,
            username: opts.username.clone(),
            password: opts.password.clone().map(Bytes::from),
        });
        let shared = Arc::new(Shared {
            version: opts.version,
            stream,
            tls,
            timeout: opts.timeout,
            writer: Mutex::new(Instant::now()),
            state: Mutex::new(State::default()),
        });
        shared.send(&connect).map_err(|e| match e {
            ClientError::Closed(why) => ClientError::Unreachable {
                addr: format!("{}:{}", opts.host, opts.port),
                error: why,
            },
            e => e,
        })?;
        let mut rd = shared
            .stream
            .try_clone()
            .map_err(|e| ClientError::Closed(io_text(&e)))?;
        let mut buf = BytesMut::new();
        let connack = read_connack(&shared, &mut rd, &mut buf, opts.version, opts.timeout)?;
        if connack.reason_code.is_error() {
            let _ = shared.stream.shutdown(Shutdown::Both);
            return Err(ClientError::Refused {
                code: connack.reason_code,
                version: opts.version,
                reason: connack.properties.reason_string.clone(),
            });
        }
        let keep_alive = connack
            .properties
            .server_keep_alive
            .unwrap_or(opts.keep_alive);
        let client_id = connack
            .properties
            .assigned_client_identifier
            .clone()
            .unwrap_or_else(|| opts.client_id.clone());
        let (done_tx, done) = mpsc::channel();
        let sh = Arc::clone(&shared);
        let reader = thread::Builder::new()
            .name(format!("mqtt-{client_id}"))
            .spawn(move || {
                let why = read_loop(&sh, rd, buf, keep_alive, &sink);
                let expected = {
                    let mut st = lock(&sh.state);
                    st.closed = Some(why.clone());
                    st.pending.clear();
                    st.pings.clear();
                    st.closing
                };
                if !expected {
                    sink(Event::Closed(why));
                }
                let _ = done_tx.send(());
            })
            .map_err(|e| ClientError::Closed(format!("cannot start reader thread: {e}")))?;
        Ok(Client {
            shared,
            reader: Some(reader),
            done,
            client_id,
            connack,
        })
    }

    /// The client identifier in use (the broker's Assigned Client Identifier if it gave one).
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    pub fn connack(&self) -> &ConnAck {
        &self.connack
    }

    /// Whether the connection is still up.
    pub fn is_open(&self) -> bool {
        lock(&self.shared.state).closed.is_none()
    }

    /// Send a request carrying a fresh packet identifier and wait for its final acknowledgement.
    fn request(&self, what: &str, make: impl FnOnce(u16) -> Packet) -> Result<Packet, ClientError> {
        let (tx, rx) = mpsc::channel();
        let id = {
            let mut st = lock(&self.shared.state);
            if let Some(why) = &st.closed {
                return Err(ClientError::Closed(why.clone()));
            }
            let mut id = st.next_id;
            loop {
                id = id.wrapping_add(1);
                if id != 0 && !st.pending.contains_key(&id) {
                    break;
                }
            }
            st.next_id = id;
            st.pending.insert(id, tx);
            id
        };
        if let Err(e) = self.shared.send(&make(id)) {
            lock(&self.shared.state).pending.remove(&id);
            return Err(e);
        }
        match rx.recv_timeout(self.shared.timeout) {
            Ok(p) => Ok(p),
            Err(RecvTimeoutError::Timeout) => {
                lock(&self.shared.state).pending.remove(&id);
                Err(ClientError::Timeout(what.to_string()))
            }
            Err(RecvTimeoutError::Disconnected) => Err(self.shared.closed_error()),
        }
    }

    /// Publish and, at QoS 1 and 2, wait for the flow to complete. Returns the broker's reason
    /// code (always Success at QoS 0 and in 3.1.1); the caller decides what an error code means.
    pub fn publish(
        &self,
        topic: &str,
        payload: Bytes,
        qos: QoS,
        retain: bool,
        message_expiry: Option<u32>,
    ) -> Result<ReasonCode, ClientError> {
        let properties = Properties {
            message_expiry_interval: message_expiry.filter(|_| self.shared.version.is_v5()),
            ..Properties::default()
        };
        let make = |packet_id| {
            Packet::Publish(Publish {
                dup: false,
                qos,
                retain,
                topic: topic.to_string(),
                packet_id,
                properties,
                payload,
            })
        };
        if qos == QoS::AtMostOnce {
            if let Some(why) = &lock(&self.shared.state).closed {
                return Err(ClientError::Closed(why.clone()));
            }
            self.shared.send(&make(None))?;
            return Ok(ReasonCode::SUCCESS);
        }
        let what = if qos == QoS::AtLeastOnce {
            "PUBACK"
        } else {
            "PUBCOMP"
        };
        match self.request(what, |id| make(Some(id)))? {
            Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubComp(a) => Ok(a.reason_code),
            p => Err(ClientError::Protocol(format!(
                "{} answered PUBLISH",
                p.name()
            ))),
        }
    }

    /// Subscribe to filters; returns one reason code per filter (the granted QoS or a failure).
    pub fn subscribe(&self, filters: &[(String, QoS)]) -> Result<Vec<ReasonCode>, ClientError> {
        let filters: Vec<_> = filters
            .iter()
            .map(|(f, q)| (f.clone(), SubscriptionOptions::new(*q)))
            .collect();
        let n = filters.len();
        let p = self.request("SUBACK", |packet_id| {
            Packet::Subscribe(Subscribe {
                packet_id,
                properties: Properties::default(),
                filters,
            })
        })?;
        match p {
            Packet::SubAck(a) if a.reason_codes.len() == n => Ok(a.reason_codes),
            Packet::SubAck(a) => Err(ClientError::Protocol(format!(
                "SUBACK has {} codes for {n} filters",
                a.reason_codes.len()
            ))),
            p => Err(ClientError::Protocol(format!(
                "{} answered SUBSCRIBE",
                p.name()
            ))),
        }
    }

    /// Unsubscribe; returns one reason code per filter (all Success in 3.1.1).
    pub fn unsubscribe(&self, filters: &[String]) -> Result<Vec<ReasonCode>, ClientError> {
        let n = filters.len();
        let p = self.request("UNSUBACK", |packet_id| {
            Packet::Unsubscribe(Unsubscribe {
                packet_id,
                properties: Properties::default(),
                filters: filters.to_vec(),
            })
        })?;
        match p {
            Packet::UnsubAck(a) if a.reason_codes.is_empty() => Ok(vec![ReasonCode::SUCCESS; n]),
            Packet::UnsubAck(a) => Ok(a.reason_codes),
            p => Err(ClientError::Protocol(format!(
                "{} answered UNSUBSCRIBE",
                p.name()
            ))),
        }
    }

    /// A PINGREQ/PINGRESP round trip. The broker answers in order, so when this returns every
    /// packet it sent before (for example held messages after a SUBACK) went to the sink.
    pub fn ping(&self) -> Result<(), ClientError> {
        let (tx, rx) = mpsc::channel();
        {
            let mut st = lock(&self.shared.state);
            if let Some(why) = &st.closed {
                return Err(ClientError::Closed(why.clone()));
            }
            st.pings.push_back(Some(tx));
        }
        self.shared.send(&Packet::PingReq)?;
        match rx.recv_timeout(self.shared.timeout) {
            Ok(()) => Ok(()),
            Err(RecvTimeoutError::Timeout) => Err(ClientError::Timeout("PINGRESP".into())),
            Err(RecvTimeoutError::Disconnected) => Err(self.shared.closed_error()),
        }
    }

    /// Send DISCONNECT (5.0: with `session_expiry` as Session Expiry Interval when given) and
    /// close the connection gracefully: half-close, then wait for the broker to close its side.
    pub fn disconnect(mut self, session_expiry: Option<u32>) -> Result<(), ClientError> {
        let was_open = {
            let mut st = lock(&self.shared.state);
            st.closing = true;
            st.closed.is_none()
        };
        let mut d = Disconnect::new(ReasonCode::NORMAL_DISCONNECTION);
        if self.shared.version.is_v5() {
            d.properties.session_expiry_interval = session_expiry;
        }
        let sent = if was_open {
            self.shared.send(&Packet::Disconnect(d))
        } else {
            Err(self.shared.closed_error())
        };
        let _ = self.shared.stream.shutdown(Shutdown::Write);
        if self.done.recv_timeout(self.shared.timeout).is_err() {
            let _ = self.shared.stream.shutdown(Shutdown::Both);
        }
        if let Some(h) = self.reader.take() {
            let _ = h.join();
        }
        sent
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Some(h) = self.reader.take() {
            lock(&self.shared.state).closing = true;
            let _ = self.shared.stream.shutdown(Shutdown::Both);
            let _ = h.join();
        }
    }
}

/// TCP connect to the first address of `host` that answers.
fn open(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, ClientError> {
    let target = format!("{host}:{port}");
    let unreachable = |error: String| ClientError::Unreachable {
        addr: target.clone(),
        error,
    };
    let addrs: Vec<_> = (host, port)
        .to_socket_addrs()
        .map_err(|e| unreachable(io_text(&e)))?
        .collect();
    let mut last = "no address found".to_string();
    for a in addrs {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = io_text(&e),
        }
    }
    Err(unreachable(last))
}
