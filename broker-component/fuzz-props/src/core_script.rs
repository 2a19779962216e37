//! The `core_sequence` target: one input is a script that plays the transport around a
//! `musqratt_core::Broker` as the server's workers do (worker.rs, worker/timers.rs), with up to
//! [`SLOTS`] connections and a clock the script moves.
//!
//! Script: byte 0 picks the broker's settings ([`config`]); then ops, one byte each plus operands:
//! - `op % 8` in 0..=3: bytes to connection `(op >> 3) % SLOTS` (opened on first use): the next
//!   byte is a length, the bytes follow (fewer if the input ends);
//! - 4: the clock moves by [`STEPS`]`[next byte]`, then due timers fire (broker-wide timer,
//!   each connection's deadline, publishers paused longer than `publisher_stall`);
//! - 5: the peer closes connection `(op >> 3) % SLOTS` (socket error / EOF);
//! - 6: connection `(op >> 3) % SLOTS` closes and a new one takes its slot;
//! - 7: server shutdown of that connection (`handle_shutdown`).
//!
//! Properties: nothing panics, and every byte the core asks to transmit decodes as whole
//! packets a server may send, valid for the connection's protocol version.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use musqratt_codec::{decode, Packet, ProtocolVersion, MAX_REMAINING_LENGTH};
use musqratt_core::auth::{entry_line, PasswordFile};
use musqratt_core::{Broker, BrokerConfig, ConnRef, Connection, Output};

/// Connections alive at once.
pub const SLOTS: usize = 4;

/// Clock steps: from a fraction of a keep-alive to past session expiry and will delays.
pub const STEPS: [Duration; 10] = [
    Duration::from_millis(10),
    Duration::from_millis(100),
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(61),
    Duration::from_secs(600),
    Duration::from_secs(3600),
    Duration::from_secs(86_400),
    Duration::from_secs(3 * 86_400),
];

/// The users of the password table variant (user, password): seeds log in with them.
pub const USERS: [(&str, &str); 2] = [("alice", "secret"), ("bob", "hunter2")];

/// Events routed between connections per script op before giving up (a loop would be a bug,
/// but the bound keeps one input from running forever; hitting it is reported as one).
const MAX_EVENTS_PER_OP: usize = 10_000;

/// Unread bytes kept per connection (the transport's buffer bound).
const MAX_UNREAD: usize = 1 << 20;

/// The broker settings selected by `selector`: the server's defaults (config.rs fills
/// `BrokerConfig` from the file over `BrokerConfig::default()`) with
/// - bit 0: a password table with [`USERS`] installed (as `auth.password_file` does);
/// - bit 1: `auth.allow_anonymous = false`;
/// - bit 2: small limits (packet size, inflight window, queues, hold), so they are reached;
/// - bit 3: no hold, no outbound topic aliases.
pub fn config(selector: u8) -> (BrokerConfig, Option<Arc<PasswordFile>>) {
    let mut c = BrokerConfig {
        allow_anonymous: selector & 2 == 0,
        ..BrokerConfig::default()
    };
    if selector & 4 != 0 {
        c.max_packet_size = 256;
        c.max_connect_size = 256;
        c.max_inflight = 2;
        c.max_queued_messages = 3;
        c.max_queued_bytes = 2048;
        c.hold_max_messages_per_topic = 2;
        c.hold_max_total_bytes = 4096;
        c.max_retained_bytes = 4096;
        c.max_topic_levels = 4;
        c.max_subscriptions_per_client = 4;
        c.max_keepalive_secs = 10;
        c.max_memory_bytes = 64 * 1024;
    }
    if selector & 8 != 0 {
        c.hold_enabled = false;
        c.max_outbound_aliases = 0;
    }
    let table = (selector & 1 != 0).then(password_table);
    (c, table)
}

/// The table of [`USERS`], hashed once per process: hashing is PBKDF2, and the fuzzer runs
/// thousands of scripts a second (each CONNECT with a user name still verifies one).
fn password_table() -> Arc<PasswordFile> {
    static TABLE: OnceLock<Arc<PasswordFile>> = OnceLock::new();
    Arc::clone(TABLE.get_or_init(|| {
        let src: String = USERS
            .iter()
            .enumerate()
            .map(|(i, (u, p))| entry_line(u, p.as_bytes(), &[i as u8; 12]) + "\n")
            .collect();
        let table = PasswordFile::parse(&src).unwrap_or_else(|e| panic!("own password table: {e}"));
        Arc::new(table)
    }))
}

struct Slot {
    conn: Connection,
    /// Bytes received and not yet consumed (partial packet, or held by a pause).
    unread: Vec<u8>,
    paused_since: Option<Instant>,
    /// The transport stops reading once the core asked to close.
    closing: bool,
}

enum Event {
    Wake,
    Kick,
    Resume,
}

struct Harness {
    broker: Arc<Broker>,
    now: Instant,
    slots: [Option<Slot>; SLOTS],
    next_serial: u64,
    queue: VecDeque<(ConnRef, Event)>,
}

/// Runs the script `data`; panics on a violated property.
pub fn run(data: &[u8]) {
    let Some((&selector, mut rest)) = data.split_first() else {
        return;
    };
    let (config, table) = config(selector);
    let now = Instant::now();
    let broker = Broker::new(config, now);
    broker.auth.set_passwords(table);
    let mut h = Harness {
        broker: Arc::new(broker),
        now,
        slots: [None, None, None, None],
        next_serial: 1,
        queue: VecDeque::new(),
    };
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        let slot = usize::from(op >> 3) % SLOTS;
        match op % 8 {
            0..=3 => {
                let (&len, tail) = rest.split_first().unwrap_or((&0, &[]));
                let n = usize::from(len).min(tail.len());
                h.receive(slot, &tail[..n]);
                rest = &tail[n..];
            }
            4 => {
                let (&i, tail) = rest.split_first().unwrap_or((&0, &[]));
                rest = tail;
                h.advance(STEPS[usize::from(i) % STEPS.len()]);
            }
            5 => h.event(slot, |c, b, now, out| c.handle_close(b, now, out)),
            6 => {
                h.event(slot, |c, b, now, out| c.handle_close(b, now, out));
                h.slots[slot] = None;
                h.open(slot);
            }
            _ => h.event(slot, |c, b, now, out| c.handle_shutdown(b, now, out)),
        }
    }
    // The server's shutdown, then the broker's timer far ahead (wills, expiry).
    for slot in 0..SLOTS {
        h.event(slot, |c, b, now, out| c.handle_shutdown(b, now, out));
    }
    h.advance(Duration::from_secs(30 * 86_400));
}

impl Harness {
    fn open(&mut self, slot: usize) {
        let serial = self.next_serial;
        self.next_serial += 1;
        let r = ConnRef {
            worker: 0,
            slot: slot as u32,
            serial,
        };
        self.slots[slot] = Some(Slot {
            conn: Connection::new(r, self.now),
            unread: Vec::new(),
            paused_since: None,
            closing: false,
        });
    }

    /// Bytes from the peer of `slot` (a new connection if the slot is empty or closed).
    fn receive(&mut self, slot: usize, bytes: &[u8]) {
        if self.slots[slot].as_ref().is_none_or(|s| s.closing) {
            self.open(slot);
        }
        if let Some(s) = self.slots[slot].as_mut() {
            if s.unread.len() + bytes.len() <= MAX_UNREAD {
                s.unread.extend_from_slice(bytes);
            }
        }
        self.read(slot);
    }

    /// Feeds the unread bytes of `slot` unless it is paused, as the worker's read does.
    fn read(&mut self, slot: usize) {
        let (broker, now) = (Arc::clone(&self.broker), self.now);
        let Some(s) = self.slots[slot].as_mut() else {
            return;
        };
        if s.paused_since.is_some() || s.closing || s.unread.is_empty() {
            return;
        }
        let mut out = Output::new();
        let data = std::mem::take(&mut s.unread);
        let used = s.conn.handle_bytes(&broker, &data, now, &mut out);
        assert!(
            used <= data.len(),
            "consumed {used} of {} bytes",
            data.len()
        );
        s.unread = data[used..].to_vec();
        if out.pause {
            s.paused_since = Some(now);
        }
        self.settle(slot, out);
    }

    /// Runs one connection event and everything it routes.
    fn event(
        &mut self,
        slot: usize,
        f: impl FnOnce(&mut Connection, &Broker, Instant, &mut Output),
    ) {
        self.event_raw(slot, f);
        self.route();
    }

    /// Checks what `slot` must transmit, then routes wakes, kicks and resumes until quiet.
    fn settle(&mut self, slot: usize, out: Output) {
        self.collect(Some(slot), out);
        self.route();
    }

    /// Delivers queued wakes, kicks and resumes (each may queue more), as the worker's router.
    fn route(&mut self) {
        let mut budget = MAX_EVENTS_PER_OP;
        while let Some((r, ev)) = self.queue.pop_front() {
            budget -= 1;
            assert!(budget > 0, "events keep routing: a wake/kick loop");
            let target = r.slot as usize;
            let live = self
                .slots
                .get(target)
                .and_then(|s| s.as_ref())
                .is_some_and(|s| s.conn.conn_ref() == r && !s.closing);
            if !live {
                continue;
            }
            match ev {
                Event::Wake => self.event_raw(target, |c, b, now, out| c.handle_wake(b, now, out)),
                Event::Kick => self.event_raw(target, |c, b, now, out| c.handle_kick(b, now, out)),
                Event::Resume => {
                    if let Some(s) = self.slots[target].as_mut() {
                        s.paused_since = None;
                    }
                    self.read(target);
                }
            }
        }
    }

    /// Runs one connection event; what it routes stays queued.
    fn event_raw(
        &mut self,
        slot: usize,
        f: impl FnOnce(&mut Connection, &Broker, Instant, &mut Output),
    ) {
        let (broker, now) = (Arc::clone(&self.broker), self.now);
        let Some(s) = self.slots[slot].as_mut() else {
            return;
        };
        let mut out = Output::new();
        f(&mut s.conn, &broker, now, &mut out);
        self.collect(Some(slot), out);
    }

    /// The transmit check and the routing of one output (`slot`: None for the broker's timer,
    /// whose own bytes the worker discards).
    fn collect(&mut self, slot: Option<usize>, out: Output) {
        if let Some(s) = slot.and_then(|i| self.slots[i].as_mut()) {
            check_transmit(&out.transmit, s.conn.protocol_version());
            if out.close {
                s.closing = true;
            }
        }
        self.queue
            .extend(out.wakes.into_iter().map(|r| (r, Event::Wake)));
        self.queue
            .extend(out.kicks.into_iter().map(|r| (r, Event::Kick)));
        self.queue
            .extend(out.resumes.into_iter().map(|r| (r, Event::Resume)));
    }

    /// Moves the clock and fires what is due, as worker/timers.rs does.
    fn advance(&mut self, step: Duration) {
        self.now += step;
        let now = self.now;
        if now >= self.broker.poll_timeout() {
            let mut out = Output::new();
            self.broker.handle_timeout(now, &mut out);
            out.discard_own();
            self.collect(None, out);
            self.route();
        }
        for slot in 0..SLOTS {
            let Some(s) = self.slots[slot].as_ref() else {
                continue;
            };
            if s.closing {
                continue;
            }
            if s.conn.poll_timeout(&self.broker).is_some_and(|t| t <= now) {
                self.event(slot, |c, b, now, out| c.handle_timeout(b, now, out));
            }
            let stall = self.broker.config.publisher_stall;
            let stalled = self.slots[slot]
                .as_ref()
                .and_then(|s| s.paused_since)
                .is_some_and(|since| now.saturating_duration_since(since) >= stall);
            if stalled {
                if let Some(s) = self.slots[slot].as_mut() {
                    s.paused_since = None;
                }
                self.read(slot);
            }
        }
    }
}

/// Packets only a server sends (or both sides send), per version: §2.1.2, table 2-1.
fn server_may_send(p: &Packet, version: ProtocolVersion) -> bool {
    match p {
        Packet::ConnAck(_)
        | Packet::Publish(_)
        | Packet::PubAck(_)
        | Packet::PubRec(_)
        | Packet::PubRel(_)
        | Packet::PubComp(_)
        | Packet::SubAck(_)
        | Packet::UnsubAck(_)
        | Packet::PingResp => true,
        // A 3.1.1 server never sends DISCONNECT (§3.14); AUTH is 5.0 only.
        Packet::Disconnect(_) | Packet::Auth(_) => version.is_v5(),
        Packet::Connect(_) | Packet::Subscribe(_) | Packet::Unsubscribe(_) | Packet::PingReq => {
            false
        }
    }
}

/// Every transmitted byte belongs to a whole packet that decodes for `version`.
pub fn check_transmit(mut bytes: &[u8], version: ProtocolVersion) {
    let ceiling = u32::try_from(MAX_REMAINING_LENGTH + 5).unwrap_or(u32::MAX);
    while !bytes.is_empty() {
        match decode(bytes, version, ceiling) {
            Ok(Some((p, n))) => {
                assert!(
                    server_may_send(&p, version),
                    "server sent {} to a {version:?} client",
                    p.name()
                );
                bytes = &bytes[n..];
            }
            other => panic!(
                "transmitted bytes {:02x?} do not decode for {version:?}: {other:?}",
                &bytes[..bytes.len().min(64)]
            ),
        }
    }
}
