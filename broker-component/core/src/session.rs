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

use crate::connection::ConnRef;
use crate::flow::FlowState;
use crate::message::Message;

pub type SessionCell = parking_lot::Mutex<Session>;

/// The session's queue is at `limits.max_queued_messages`: the message was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueFull;

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
    /// The connection currently bound to this session (None = offline).
    pub conn: Option<ConnRef>,
    /// A wake for `conn` has been emitted and not yet handled: don't emit another.
    pub wake_pending: bool,
    /// Keyed by the full filter as subscribed (including `$share/group/`).
    pub subscriptions: HashMap<String, SubscriptionRecord>,
    pub queue: VecDeque<Outgoing>,
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
            conn: None,
            wake_pending: false,
            subscriptions: HashMap::new(),
            queue: VecDeque::new(),
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
        max_queued: usize,
    ) -> Result<Option<ConnRef>, QueueFull> {
        if self.conn.is_none() && out.qos == QoS::AtMostOnce {
            // QoS 0 is not kept for offline sessions (as Mosquitto by default).
            return Ok(None);
        }
        if self.queue.len() >= max_queued {
            return Err(QueueFull);
        }
        self.queue.push_back(out);
        Ok(self.wake())
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
        self.inflight.clear();
        self.pending_will = None;
        self.expires_at = None;
        self.subscriptions.drain().map(|(f, _)| f).collect()
    }

    /// Drops QoS 0 messages when the client goes offline.
    pub fn drop_qos0(&mut self) {
        self.queue.retain(|o| o.qos != QoS::AtMostOnce);
    }
}
