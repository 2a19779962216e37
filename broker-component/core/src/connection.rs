//! One client connection's protocol state machine.
//!
//! The transport owns a `Connection` per socket and calls it with bytes, time
//! and events; the connection answers through an [`Output`]. Packet handling
//! lives in one file per packet family (`handle_*.rs`); this file owns the
//! lifecycle: decode loop, protocol errors, keep-alive, close and will.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use musqratt_codec::{
    decode, decode_connect_version, encode, packet_type, Disconnect, EncodeError, Packet,
    ProtocolVersion, ReasonCode, Will,
};

use crate::broker::Broker;
use crate::deliver::OutboundAliases;
use crate::session::SessionCell;

/// Identifies a connection across workers: which worker owns it, its slot in
/// that worker's slab, and a serial number so a reused slot is never confused
/// with the connection that had it before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnRef {
    pub worker: u32,
    pub slot: u32,
    pub serial: u64,
}

/// What the core asks of the transport after an event.
#[derive(Debug, Default)]
pub struct Output {
    /// Bytes to write on this connection, in order. The transport writes them
    /// once per event (batched) and keeps what the socket did not take.
    pub transmit: BytesMut,
    /// Connections (on any worker) that have new messages queued: call their
    /// [`Connection::handle_wake`].
    pub wakes: Vec<ConnRef>,
    /// Connections whose session was taken over: call [`Connection::handle_kick`].
    pub kicks: Vec<ConnRef>,
    /// Close this connection once `transmit` is flushed.
    pub close: bool,
    /// Flow control: a subscriber this connection publishes to is congested.
    /// Stop reading from this connection until a resume for it arrives (or
    /// `BrokerConfig::publisher_stall` passes); unconsumed bytes stay with the
    /// transport, as for a partial packet.
    pub pause: bool,
    /// Paused publishers that may read again: the transport resumes them.
    pub resumes: Vec<ConnRef>,
    /// The journal ticket this event's output waits for (0 = none): the transport holds
    /// back `transmit` (and whatever this connection sends after it) until the journal
    /// reports it durable (persist.rs).
    pub durable_after: crate::persist::Ticket,
    /// Released by delivery (handle_publish.rs): the ticket of what this event recorded only
    /// to keep `soft_messages` for their subscribers. Once each of those is `delivered()`,
    /// the output need not wait for it (only for `durable_after`).
    pub soft_after: crate::persist::Ticket,
    pub soft_messages: Vec<std::sync::Arc<crate::message::Message>>,
    /// Workers whose held output may be released: a message they wait on was delivered
    /// (`Message::delivered`). Duplicates possible.
    pub delivered: Vec<u32>,
}

impl Output {
    pub fn new() -> Output {
        Output::default()
    }

    /// Drops what an event would have sent on its own connection (bytes, close, what they
    /// wait for in the store), after a panic or where there is no connection (the broker's
    /// timer); what names other connections (wakes, kicks, resumes, delivered) still goes.
    pub fn discard_own(&mut self) {
        self.transmit.clear();
        self.close = false;
        self.pause = false;
        self.durable_after = 0;
        self.soft_after = 0;
        self.soft_messages.clear();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    AwaitConnect,
    Connected,
    Closed,
}

/// Topic aliases of one v5 connection (allocated only when a client uses them).
#[derive(Debug, Default)]
pub(crate) struct TopicAliases {
    /// Client → server: alias → topic (§3.3.2.3.4).
    pub(crate) inbound: HashMap<u16, String>,
    /// Server → client: the aliases we assigned, bounded by
    /// `BrokerConfig::max_outbound_aliases` / `max_outbound_alias_bytes`.
    pub(crate) outbound: OutboundAliases,
}

/// What a TLS listener with `use_identity_as_username` learned from the client's certificate
/// (docs/security.md "TLS"), given to the connection before its CONNECT is handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// The certificate's subject CN: it is the user name, and the CONNECT's user name and
    /// password are not checked.
    CommonName(String),
    /// No certificate, or one without a CN: refused as a bad user name or password
    /// (as Mosquitto does).
    Missing,
}

pub struct Connection {
    pub(crate) conn_ref: ConnRef,
    pub(crate) state: State,
    pub(crate) version: ProtocolVersion,
    /// Time of the last packet received, for keep-alive.
    pub(crate) last_rx: Instant,
    pub(crate) created: Instant,
    /// Effective keep-alive in seconds (0 = none).
    pub(crate) keep_alive: u16,
    pub(crate) session: Option<Arc<SessionCell>>,
    pub(crate) session_id: u64,
    pub(crate) client_id: Arc<str>,
    /// The CONNECT's User Name (None: anonymous), for the ACL checks (acl.rs).
    pub(crate) username: Option<Arc<str>>,
    /// PUBLISH and SUBSCRIBE refused by the ACL: one log line per interval.
    pub(crate) acl_log: crate::log_limit::LogLimit,
    /// Boxed: most clients have none, and a `Will` is ~400 bytes.
    pub(crate) will: Option<Box<Will>>,
    /// Whether CONNECT stored `will` (will.rs): its record goes or becomes pending at close.
    pub(crate) will_stored: bool,
    /// Session Expiry Interval requested at CONNECT (may change at DISCONNECT).
    pub(crate) session_expiry: u32,
    /// Limits the client declared in CONNECT (v5), defaults otherwise.
    pub(crate) client_receive_max: u16,
    pub(crate) client_max_packet: u32,
    pub(crate) client_alias_max: u16,
    pub(crate) aliases: Option<Box<TopicAliases>>,
    /// When the first bytes of a packet that is still incomplete arrived (the
    /// packet timeout runs from here): whole seconds after `created`, plus one;
    /// 0 between packets. Not an `Option<Instant>`: 4 bytes that fit in this
    /// struct's padding instead of 16 more in every idle connection, and the
    /// transport looks at deadlines only once a second anyway.
    pub(crate) partial_since: u32,
    /// A packet for this client could not be encoded or was over its Maximum
    /// Packet Size and was dropped: logged once per connection, not per
    /// message (a flood of such messages must not flood the log too).
    pub(crate) drop_logged: bool,
    /// Set by the transport when the listener names clients by their certificate; taken by
    /// CONNECT. Boxed: 8 bytes in connections that have none.
    pub(crate) identity: Option<Box<Identity>>,
}

/// The first byte of a CONNECT (type 1, flags 0, §3.1.1): the only one a new
/// connection may start with.
const CONNECT_FIRST_BYTE: u8 = 0x10;

impl Connection {
    pub fn new(conn_ref: ConnRef, now: Instant) -> Connection {
        Connection {
            conn_ref,
            state: State::AwaitConnect,
            version: ProtocolVersion::V311,
            last_rx: now,
            created: now,
            keep_alive: 0,
            session: None,
            session_id: 0,
            client_id: Arc::from(""),
            username: None,
            acl_log: Default::default(),
            will: None,
            will_stored: false,
            session_expiry: 0,
            client_receive_max: u16::MAX,
            client_max_packet: u32::MAX,
            client_alias_max: 0,
            aliases: None,
            partial_since: 0,
            drop_logged: false,
            identity: None,
        }
    }

    /// The identity the client's TLS certificate gives (`use_identity_as_username`): the
    /// CONNECT that follows is authenticated by it instead of its user name and password.
    pub fn set_identity(&mut self, identity: Identity) {
        self.identity = Some(Box::new(identity));
    }

    pub fn conn_ref(&self) -> ConnRef {
        self.conn_ref
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The protocol version this connection's packets are encoded for: its CONNECT's once one
    /// arrived, 3.1.1 before.
    pub fn protocol_version(&self) -> ProtocolVersion {
        self.version
    }

    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Feeds received bytes. Returns how many were consumed: the transport keeps
    /// the rest (a partial packet) and passes it again, extended, next time.
    ///
    /// Before CONNECT the client is unknown, so its first packet is checked as
    /// early as possible: on its first byte (it must be CONNECT, 0x10) and on
    /// its fixed header (at most `max_connect_size`), before the transport
    /// buffers its body. A packet left incomplete starts the packet timeout
    /// (see [`poll_timeout`](Self::poll_timeout)).
    pub fn handle_bytes(
        &mut self,
        broker: &Broker,
        buf: &[u8],
        now: Instant,
        out: &mut Output,
    ) -> usize {
        if self.state == State::AwaitConnect {
            if let Some(&first) = buf.first() {
                if first != CONNECT_FIRST_BYTE {
                    tracing::warn!(
                        "closing connection: first packet is not CONNECT (first byte 0x{first:02X})"
                    );
                    self.close(broker, now, out, false);
                    return buf.len();
                }
            }
        }
        let mut used = 0;
        let mut incomplete = false;
        while self.state != State::Closed && used < buf.len() && !out.pause {
            let rest = &buf[used..];
            let (version, max_size) = match self.state {
                State::AwaitConnect => (
                    decode_connect_version(rest).unwrap_or(self.version),
                    broker
                        .config
                        .max_connect_size
                        .min(broker.config.max_packet_size),
                ),
                _ => (self.version, broker.config.max_packet_size),
            };
            match decode(rest, version, max_size) {
                Ok(None) => {
                    incomplete = true;
                    break;
                }
                Ok(Some((packet, n))) => {
                    used += n;
                    broker.metrics.bytes_received.add(n as u64);
                    self.last_rx = now;
                    self.partial_since = 0;
                    #[cfg(feature = "fault-injection")]
                    crate::fault::on_packet(&packet);
                    self.handle_packet(broker, packet, now, out);
                }
                Err(e) => {
                    used = buf.len();
                    if self.state == State::AwaitConnect
                        && e.reason == ReasonCode::UNSUPPORTED_PROTOCOL_VERSION
                    {
                        tracing::warn!("closing connection: CONNECT with {}", e);
                        self.refuse(broker, e.reason, now, out);
                    } else if self.state == State::AwaitConnect
                        && e.reason == ReasonCode::PACKET_TOO_LARGE
                    {
                        tracing::warn!(
                            "closing connection: first packet larger than limits.max_connect_size \
                             ({}): {}",
                            max_size,
                            e.message
                        );
                        self.close(broker, now, out, false);
                    } else if self.state == State::Connected
                        && rest.first().is_some_and(|b| b >> 4 == packet_type::CONNECT)
                    {
                        // [MQTT-3.1.0-2]: a second CONNECT is a Protocol Error whatever it
                        // holds; its decode error (e.g. 0x84 for an unknown protocol level, which
                        // is no DISCONNECT reason code) is not what the client is told.
                        let detail = format!("second CONNECT ({})", e.message);
                        self.protocol_violation(
                            broker,
                            ReasonCode::PROTOCOL_ERROR,
                            &detail,
                            now,
                            out,
                        );
                    } else {
                        self.protocol_violation(broker, e.reason, &e.message, now, out);
                    }
                }
            }
        }
        // The packet timeout runs from the first byte of a packet that did not
        // complete in one read. Bytes left over by a flow-control pause are not
        // the client's delay: the timer starts again when they are read.
        if incomplete && self.state != State::Closed {
            if self.partial_since == 0 {
                let secs = now.saturating_duration_since(self.created).as_secs();
                self.partial_since = u32::try_from(secs).unwrap_or(u32::MAX - 1) + 1;
            }
        } else {
            self.partial_since = 0;
        }
        self.drain_self_wake(broker, now, out);
        used
    }

    fn handle_packet(&mut self, broker: &Broker, packet: Packet, now: Instant, out: &mut Output) {
        if self.state == State::AwaitConnect {
            match packet {
                Packet::Connect(c) => self.handle_connect(broker, c, now, out),
                other => {
                    tracing::warn!("closing connection: {} before CONNECT", other.name());
                    self.close(broker, now, out, false);
                }
            }
            return;
        }
        match packet {
            Packet::Connect(_) => self.protocol_violation(
                broker,
                ReasonCode::PROTOCOL_ERROR,
                "second CONNECT",
                now,
                out,
            ),
            Packet::Publish(p) => self.handle_publish(broker, p, now, out),
            Packet::PubAck(a) => self.handle_puback(broker, a, now, out),
            Packet::PubRec(a) => self.handle_pubrec(broker, a, now, out),
            Packet::PubRel(a) => self.handle_pubrel(broker, a, out),
            Packet::PubComp(a) => self.handle_pubcomp(broker, a, now, out),
            Packet::Subscribe(s) => self.handle_subscribe(broker, s, now, out),
            Packet::Unsubscribe(u) => self.handle_unsubscribe(broker, u, now, out),
            Packet::PingReq => self.send(broker, &Packet::PingResp, out),
            Packet::Disconnect(d) => self.handle_disconnect(broker, d, now, out),
            Packet::Auth(_) => self.protocol_violation(
                broker,
                ReasonCode::PROTOCOL_ERROR,
                "AUTH without an authentication method",
                now,
                out,
            ),
            other => {
                let detail = format!("{} sent by a client", other.name());
                self.protocol_violation(broker, ReasonCode::PROTOCOL_ERROR, &detail, now, out)
            }
        }
    }

    /// The session has new messages queued (another connection published).
    pub fn handle_wake(&mut self, broker: &Broker, now: Instant, out: &mut Output) {
        if self.state != State::Connected {
            return;
        }
        #[cfg(feature = "fault-injection")]
        crate::fault::on_wake(&self.client_id);
        if let Some(session) = self.session.clone() {
            let mut s = session.lock();
            if s.conn != Some(self.conn_ref) {
                return;
            }
            s.wake_pending = false;
            self.drain(broker, &mut s, now, out);
        }
    }

    /// Another connection took this one's session over (§3.1.4, step 2).
    pub fn handle_kick(&mut self, broker: &Broker, now: Instant, out: &mut Output) {
        if self.state == State::Closed {
            return;
        }
        tracing::info!(client = %self.client_id, "session taken over by a new connection");
        self.send_disconnect(broker, ReasonCode::SESSION_TAKEN_OVER, out);
        self.close(broker, now, out, true);
    }

    /// The store could not write what this connection's held output acknowledges (a commit
    /// failed, docs/storage.md "When the disk fails"): that output is dropped by the transport,
    /// and a v5 client is told why (DISCONNECT 0x97 Quota exceeded) before the connection
    /// closes, so it resends what it saw unacknowledged to a broker with room again.
    pub fn handle_store_failed(&mut self, broker: &Broker, now: Instant, out: &mut Output) {
        if self.state == State::Closed {
            return;
        }
        tracing::warn!(client = %self.client_id, "closing connection: the store could not write what it would acknowledge");
        self.send_disconnect(broker, ReasonCode::QUOTA_EXCEEDED, out);
        self.close(broker, now, out, true);
    }

    /// The socket closed or failed: an abnormal close, the will is published.
    pub fn handle_close(&mut self, broker: &Broker, now: Instant, out: &mut Output) {
        if self.state != State::Closed {
            tracing::debug!(client = %self.client_id, "connection closed by peer");
            self.close(broker, now, out, true);
        }
    }

    /// The server is shutting down: tell v5 clients why, keep sessions.
    pub fn handle_shutdown(&mut self, broker: &Broker, now: Instant, out: &mut Output) {
        if self.state != State::Closed {
            self.send_disconnect(broker, ReasonCode::SERVER_SHUTTING_DOWN, out);
            self.close(broker, now, out, false);
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has work to do.
    pub fn poll_timeout(&self, broker: &Broker) -> Option<Instant> {
        match self.state {
            // The connect timeout also bounds a partial CONNECT.
            State::AwaitConnect => Some(self.created + broker.config.connect_timeout),
            State::Connected => {
                // §3.1.2.10: one and a half times the keep-alive.
                let keep_alive = (self.keep_alive > 0).then(|| {
                    self.last_rx + Duration::from_millis(u64::from(self.keep_alive) * 1500)
                });
                match (keep_alive, self.packet_deadline(broker)) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
            State::Closed => None,
        }
    }

    /// When the packet that has started arriving must be complete.
    fn packet_deadline(&self, broker: &Broker) -> Option<Instant> {
        if broker.config.packet_timeout.is_zero() {
            return None;
        }
        let since = self.partial_since.checked_sub(1)?;
        Some(self.created + Duration::from_secs(u64::from(since)) + broker.config.packet_timeout)
    }

    /// Enforces the CONNECT timeout and keep-alive.
    pub fn handle_timeout(&mut self, broker: &Broker, now: Instant, out: &mut Output) {
        let Some(deadline) = self.poll_timeout(broker) else {
            return;
        };
        if now < deadline {
            return;
        }
        match self.state {
            State::AwaitConnect => {
                tracing::info!("closing connection: no CONNECT within the connect timeout");
                self.close(broker, now, out, false);
            }
            State::Connected if self.packet_deadline(broker).is_some_and(|d| d <= now) => {
                // Keep-alive is the closest reason code: no complete packet came in time.
                tracing::warn!(
                    client = %self.client_id,
                    timeout_secs = broker.config.packet_timeout.as_secs(),
                    "closing connection: a packet did not complete within limits.packet_timeout_secs"
                );
                self.send_disconnect(broker, ReasonCode::KEEP_ALIVE_TIMEOUT, out);
                self.close(broker, now, out, true);
            }
            State::Connected => {
                tracing::info!(client = %self.client_id, keep_alive = self.keep_alive, "closing connection: keep-alive timeout");
                self.send_disconnect(broker, ReasonCode::KEEP_ALIVE_TIMEOUT, out);
                self.close(broker, now, out, true);
            }
            State::Closed => {}
        }
    }

    /// A malformed packet or protocol violation: log one line, tell a v5 client
    /// the reason with DISCONNECT, publish the will, close (§4.13).
    pub(crate) fn protocol_violation(
        &mut self,
        broker: &Broker,
        reason: ReasonCode,
        detail: &str,
        now: Instant,
        out: &mut Output,
    ) {
        tracing::warn!(client = %self.client_id, reason = %reason, "closing connection: {detail}");
        if self.state == State::Connected {
            self.send_disconnect(broker, reason, out);
        }
        self.close(broker, now, out, true);
    }

    /// Encodes `packet` onto the transmit buffer. The broker builds these
    /// packets itself from bounded parts, so an encoding error means a bug or
    /// a missed bound: the packet is dropped and logged, never a panic.
    pub(crate) fn send(&mut self, broker: &Broker, packet: &Packet, out: &mut Output) {
        let version = self.version;
        if let Err(e) = transmit(broker, out, |b| encode(packet, version, b)) {
            self.log_dropped(packet.name(), "", &e);
        }
    }

    /// One log line per connection for packets dropped because they cannot be
    /// sent to this client (later ones only at debug level).
    pub(crate) fn log_dropped(&mut self, packet: &str, topic: &str, e: &EncodeError) {
        if std::mem::replace(&mut self.drop_logged, true) {
            tracing::debug!(client = %self.client_id, topic, "{packet} not sent: {e}");
        } else {
            tracing::warn!(
                client = %self.client_id,
                topic,
                "{packet} not sent: {e} (dropped; further drops for this connection are \
                 only counted in $SYS/broker/messages/dropped)"
            );
        }
    }

    fn send_disconnect(&mut self, broker: &Broker, reason: ReasonCode, out: &mut Output) {
        if self.state == State::Connected && self.version.is_v5() {
            self.send(broker, &Packet::Disconnect(Disconnect::new(reason)), out);
        }
    }

    /// If this connection's own publish matched its own subscription, deliver now
    /// rather than bouncing a wake through the transport.
    fn drain_self_wake(&mut self, broker: &Broker, now: Instant, out: &mut Output) {
        let before = out.wakes.len();
        out.wakes.retain(|w| *w != self.conn_ref);
        if out.wakes.len() != before {
            self.handle_wake(broker, now, out);
        }
    }

    /// Ends the connection. `abnormal`: publish the will (unless deleted by a
    /// normal DISCONNECT, which clears `self.will` before calling this).
    pub(crate) fn close(
        &mut self,
        broker: &Broker,
        now: Instant,
        out: &mut Output,
        abnormal: bool,
    ) {
        out.close = true;
        let was_connected = self.state == State::Connected;
        self.state = State::Closed;
        if !was_connected {
            return;
        }
        broker.metrics.clients_connected.sub(1);
        let will = if abnormal { self.will.take() } else { None };
        self.will = None;
        let left = crate::will::LeftWill {
            will,
            stored: std::mem::take(&mut self.will_stored),
        };
        if let Some(session) = self.session.take() {
            broker.detach_session(&session, self.conn_ref, self.session_expiry, left, now, out);
        }
    }
}

/// Appends what `encode` writes to the transmit buffer, counted in the `$SYS`
/// bytes sent: every packet to a client goes through here. An encoder that
/// fails writes nothing (the codec's contract) and the error is returned.
pub(crate) fn transmit(
    broker: &Broker,
    out: &mut Output,
    encode: impl FnOnce(&mut BytesMut) -> Result<usize, EncodeError>,
) -> Result<usize, EncodeError> {
    let n = encode(&mut out.transmit)?;
    broker.metrics.bytes_sent.add(n as u64);
    Ok(n)
}
