//! A session (MQTT §4.1): the state that outlives a network connection —
//! subscriptions, messages queued or in flight to the client, QoS 2 packet
//! ids received but not yet released, and the expiry clock.
//!
//! Each session sits in its own `Mutex` behind an `Arc` ([`SessionCell`]):
//! publishers on any worker lock just the subscriber's session to queue a
//! message, so there is no global lock on the publish path. Lock order is
//! always registry → topic tree → session; never take another lock while
//! holding a session.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use musqratt_codec::{QoS, SubscriptionOptions, Will};

use crate::budget::Charge;
use crate::config::BrokerConfig;
use crate::connection::ConnRef;
use crate::flow::FlowState;
use crate::hold::held_size;
use crate::message::Message;

pub type SessionCell = parking_lot::Mutex<Session>;

/// The session's queue is at `limits.max_queued_messages`: the message was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueFull;

/// How much a session's queue may hold: `limits.max_queued_messages`
/// messages and `limits.max_queued_mb` bytes (`usize::MAX` = unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimit {
    pub messages: usize,
    pub bytes: usize,
}

impl QueueLimit {
    pub fn of(config: &BrokerConfig) -> QueueLimit {
        QueueLimit {
            messages: config.max_queued_messages,
            bytes: config.max_queued_bytes,
        }
    }
}

/// A bound on messages alone.
impl From<usize> for QueueLimit {
    fn from(messages: usize) -> QueueLimit {
        QueueLimit {
            messages,
            bytes: usize::MAX,
        }
    }
}

/// What a queued message is charged against `limits.max_queued_mb`: the size
/// of the shared message it pins (topic, payload, properties, overhead), as a
/// held one is charged. Each session that queues it is charged in full: what
/// is bounded is what one session can keep alive.
fn queued_size(o: &Outgoing) -> usize {
    held_size(&o.msg)
}

/// One message waiting for (or in) the client's inflight window.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub msg: Arc<Message>,
    /// min(publish QoS, granted QoS).
    pub qos: QoS,
    /// The RETAIN flag to send (Retain As Published, or a retained delivery at subscribe).
    pub retain: bool,
    /// Subscription Identifiers of every matching subscription (v5).
    pub sub_ids: Vec<u32>,
    /// The store's id of this queue entry; 0 = not stored (persist.rs).
    pub entry: u64,
}

/// Where an outgoing QoS 1/2 message is in its acknowledgement flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflightState {
    /// QoS 1, PUBLISH sent.
    AwaitPubAck,
    /// QoS 2, PUBLISH sent.
    AwaitPubRec,
    /// QoS 2, PUBREL sent.
    AwaitPubComp,
}

#[derive(Debug, Clone)]
pub struct Inflight {
    pub packet_id: u16,
    pub out: Outgoing,
    pub state: InflightState,
}

/// What the session remembers of one of its subscriptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionRecord {
    pub options: SubscriptionOptions,
    pub sub_id: Option<u32>,
}

#[derive(Debug)]
pub struct Session {
    pub id: u64,
    pub client_id: Arc<str>,
    /// The User Name of the CONNECT that last bound the session (None: anonymous), which
    /// deliveries to it are checked against when there is an ACL (acl.rs).
    pub username: Option<Arc<str>>,
    /// False for a session restored from the store that no client has bound since: its user
    /// name is not stored, so with an ACL nothing is routed to it until its client is back.
    pub identity_known: bool,
    /// The connection currently bound to this session (None = offline).
    pub conn: Option<ConnRef>,
    /// A wake for `conn` has been emitted and not yet handled: don't emit another.
    pub wake_pending: bool,
    /// Keyed by the full filter as subscribed (including `$share/group/`).
    pub subscriptions: HashMap<String, SubscriptionRecord>,
    /// Change only through `enqueue`, `pop_queued`, `remove_queued`, `end`
    /// and `drop_qos0`, which keep `queued_bytes` in step.
    pub queue: VecDeque<Outgoing>,
    /// Bytes charged to `queue` (`queued_size`), bounded by `limits.max_queued_mb`.
    queued_bytes: usize,
    /// The broker's memory budget, charged with `queued_bytes` (budget.rs; empty = none).
    pub charge: Charge,
    /// In send order, for redelivery in order on reconnect (§4.6).
    pub inflight: VecDeque<Inflight>,
    next_packet_id: u16,
    /// QoS 2 packet ids received (PUBREC sent) and not yet released by PUBREL.
    pub incoming_qos2: HashSet<u16>,
    /// Session Expiry Interval in seconds (u32::MAX = never).
    pub expiry_interval: u32,
    /// Set while offline with a finite expiry.
    pub expires_at: Option<Instant>,
    /// Publishers paused because this session's queue is past its high watermark.
    pub waiters: Vec<ConnRef>,
    /// Flow control: drain rate, pause clock, overflow burst (`flow.rs`).
    pub flow: FlowState,
    /// A will waiting for its Will Delay Interval after the connection closed.
    pub pending_will: Option<(Instant, Box<Will>)>,
}

impl Session {
    pub fn new(id: u64, client_id: Arc<str>, expiry_interval: u32) -> Session {
        Session {
            id,
            client_id,
            username: None,
            identity_known: false,
            conn: None,
            wake_pending: false,
            subscriptions: HashMap::new(),
            queue: VecDeque::new(),
            queued_bytes: 0,
            charge: Charge::default(),
            inflight: VecDeque::new(),
            next_packet_id: 1,
            incoming_qos2: HashSet::new(),
            expiry_interval,
            expires_at: None,
            pending_will: None,
            waiters: Vec::new(),
            flow: FlowState::default(),
        }
    }

    /// Queues a message for the client. Returns the connection to wake, if the
    /// session is online and no wake is outstanding. Returns `Err(QueueFull)` when the
    /// queue is full (the message is dropped; the caller counts it).
    pub fn enqueue(
        &mut self,
        out: Outgoing,
        limit: impl Into<QueueLimit>,
    ) -> Result<Option<ConnRef>, QueueFull> {
        if self.conn.is_none() && out.qos == QoS::AtMostOnce {
            // QoS 0 is not kept for offline sessions (as Mosquitto by default).
            return Ok(None);
        }
        let size = queued_size(&out);
        if self.queue_full(limit.into(), size) {
            return Err(QueueFull);
        }
        self.queued_bytes += size;
        self.charge.add(size);
        self.queue.push_back(out);
        Ok(self.wake())
    }

    /// Whether a message of `size` bytes (`queued_size`) finds no room. An
    /// empty queue takes any message, so the byte bound never makes a message
    /// undeliverable to a subscriber that keeps up: a session pins at most
    /// `limit.bytes` plus one message.
    pub fn queue_full(&self, limit: QueueLimit, size: usize) -> bool {
        self.queue.len() >= limit.messages
            || (!self.queue.is_empty() && self.queued_bytes.saturating_add(size) > limit.bytes)
    }

    /// Whether `out` would find no room in the queue (see `queue_full`).
    pub fn no_room_for(&self, limit: QueueLimit, out: &Outgoing) -> bool {
        self.queue_full(limit, queued_size(out))
    }

    /// Takes the oldest queued message.
    pub fn pop_queued(&mut self) -> Option<Outgoing> {
        let o = self.queue.pop_front()?;
        self.uncharge(queued_size(&o));
        Some(o)
    }

    /// Removes queued message `i`; returns whether there was one.
    pub fn remove_queued(&mut self, i: usize) -> bool {
        let Some(o) = self.queue.remove(i) else {
            return false;
        };
        self.uncharge(queued_size(&o));
        true
    }

    /// Bytes charged to the queue (bounded by `limits.max_queued_mb`).
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Marks a wake as pending and returns the connection to wake, once.
    pub fn wake(&mut self) -> Option<ConnRef> {
        match self.conn {
            Some(c) if !self.wake_pending => {
                self.wake_pending = true;
                Some(c)
            }
            _ => None,
        }
    }

    /// The next packet id not in use by an inflight message.
    pub fn allocate_packet_id(&mut self) -> u16 {
        loop {
            let id = self.next_packet_id;
            self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
            if !self.inflight.iter().any(|i| i.packet_id == id) {
                return id;
            }
        }
    }

    /// Ends the session's state (messages, pending will, expiry) and returns
    /// its subscription filters, which the caller removes from the tree
    /// outside this session's lock (lock order: tree before session).
    pub fn end(&mut self) -> Vec<String> {
        self.queue.clear();
        self.uncharge(self.queued_bytes);
        self.inflight.clear();
        self.pending_will = None;
        self.expires_at = None;
        self.subscriptions.drain().map(|(f, _)| f).collect()
    }

    /// Drops QoS 0 messages when the client goes offline.
    pub fn drop_qos0(&mut self) {
        self.queue.retain(|o| o.qos != QoS::AtMostOnce);
        let kept: usize = self.queue.iter().map(queued_size).sum();
        self.uncharge(self.queued_bytes - kept);
    }

    fn uncharge(&mut self, size: usize) {
        self.queued_bytes -= size;
        self.charge.sub(size);
    }
}

/// A session dropped with messages still queued (removed from the registry without `end`)
/// gives their charge back, so the memory budget never leaks.
impl Drop for Session {
    fn drop(&mut self) {
        self.charge.sub(self.queued_bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use musqratt_codec::Properties;

    fn outgoing(qos: QoS, payload: usize) -> Outgoing {
        let head = ("t".to_owned(), Bytes::from(vec![0u8; payload]), qos, false);
        let msg = Message::new(head, Properties::default(), 1, 0, Instant::now());
        Outgoing {
            msg: Arc::new(msg),
            qos,
            retain: false,
            sub_ids: Vec::new(),
            entry: 0,
        }
    }

    #[test]
    fn queued_bytes_bound_the_queue_and_follow_every_removal() {
        let mut s = Session::new(1, Arc::from("c"), 0);
        let one = queued_size(&outgoing(QoS::AtLeastOnce, 1000));
        let limit = QueueLimit {
            messages: 100,
            bytes: 2 * one,
        };
        // An empty queue takes any message, even one over the byte limit.
        let big = outgoing(QoS::AtLeastOnce, 10 * one);
        let big_size = queued_size(&big);
        assert!(s.enqueue(big, limit).is_ok());
        assert_eq!(
            s.enqueue(outgoing(QoS::AtLeastOnce, 1000), limit),
            Err(QueueFull)
        );
        assert!(s.pop_queued().is_some());
        assert_eq!(s.queued_bytes(), 0);
        assert!(big_size > limit.bytes);
        s.enqueue(outgoing(QoS::AtLeastOnce, 1000), limit).unwrap();
        s.enqueue(outgoing(QoS::AtLeastOnce, 1000), limit).unwrap();
        assert_eq!(s.queued_bytes(), 2 * one);
        assert_eq!(
            s.enqueue(outgoing(QoS::AtLeastOnce, 1), limit),
            Err(QueueFull)
        );
        assert!(s.remove_queued(0));
        assert!(!s.remove_queued(5));
        assert_eq!(s.queued_bytes(), one);
        s.conn = Some(ConnRef {
            worker: 0,
            slot: 0,
            serial: 1,
        });
        s.enqueue(outgoing(QoS::AtMostOnce, 1000), limit).unwrap();
        s.drop_qos0();
        assert_eq!((s.queue.len(), s.queued_bytes()), (1, one));
        s.end();
        assert_eq!(s.queued_bytes(), 0);
    }
}
