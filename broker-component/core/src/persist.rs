//! What the core asks the store to make durable (docs/design.md §2, `Persist(op)`).
//!
//! The core does no IO: every change to state that must survive a crash is handed, as an
//! [`Op`], to a [`Journal`] the runtime supplies (musqratt-store's group-commit thread, or
//! none for `--in-memory`). `record` only queues the op and returns a ticket; the transport
//! holds back every byte an event produced until the journal reports that event's last
//! ticket durable ([`Output::durable_after`](crate::Output)). So a PUBACK or PUBREC (and a
//! PUBREL or QoS 2 PUBLISH whose packet id was just assigned) leaves only once what it
//! acknowledges is on disk, and the workers never wait for the disk themselves.
//!
//! Ordering: an op is recorded while the lock of the state it describes is held (a session's
//! queue entry under that session's lock), so two ops on one thing reach the journal in the
//! order they happened, whichever workers made them.
//!
//! What persists: sessions that outlive their connection (Session Expiry Interval > 0) with
//! their subscriptions; their QoS 1/2 queue entries (the shared message once, by id); the
//! packet id and state of QoS 2 deliveries; QoS 2 packet ids received and not released;
//! retained messages; QoS 1/2 held messages; wills that can outlive the process (will.rs:
//! the will of an open connection, and a pending delayed will of an offline session).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use musqratt_codec::{QoS, Will};

use crate::broker::Broker;
use crate::connection::Output;
use crate::hold::HoldQueues;
use crate::message::Message;
use crate::session::{Inflight, InflightState, Outgoing, Session, SubscriptionRecord};

/// A position in the journal: ops are numbered from 1 in the order `record` was called.
pub type Ticket = u64;

/// Where durable ops go. Implemented by the runtime (musqratt-store).
pub trait Journal: Send + Sync {
    /// Queues `op`; returns its ticket. Never blocks on the disk.
    fn record(&self, op: Op) -> Ticket;
    /// Every op with a ticket up to this one is durable (or failed: see `failed`).
    fn durable(&self) -> Ticket;
    /// Whether the batch of this (reached) ticket failed to commit: what it acknowledges
    /// must not be acknowledged.
    fn failed(&self, ticket: Ticket) -> bool {
        let _ = ticket;
        false
    }
    /// Whether the store is at its disk budget (`storage.max_disk_mb`): no new message may
    /// be made durable until deletes bring it back under (route.rs refuses them).
    fn full(&self) -> bool {
        false
    }
    /// Ops recorded and not yet durable: while it is large the store is behind, and a
    /// publisher's PUBACK waits for it again (handle_publish.rs, "Released by delivery"), so
    /// the journal's queue stays bounded by the publishers' windows.
    fn backlog(&self) -> u64 {
        0
    }
}

/// Beyond this many ops waiting for the store, PUBACKs are no longer released by delivery.
pub const MAX_RELEASE_BACKLOG: u64 = 16_384;

/// One change of durable state. Deletes name the message they referred to, so the store
/// can free a message with its last reference without reading anything back.
#[derive(Debug, Clone)]
pub enum Op {
    /// A persistent session's record, written whole: created or resumed, its subscriptions or
    /// its expiry changed.
    SessionPut {
        client: Arc<str>,
        expiry_interval: u32,
        /// When an offline session expires (None while online: its clock starts when the
        /// connection ends, or at the next start-up).
        expires_at: Option<std::time::Instant>,
        subscriptions: Vec<(String, SubscriptionRecord)>,
    },
    /// The session ended (expired, cleaned, or its expiry became 0): its record, queue and
    /// QoS 2 state go; `msgs` are the messages its queue entries referred to.
    SessionDelete {
        client: Arc<str>,
        msgs: Vec<u64>,
    },
    /// A message some durable entry refers to, written once (before its first reference).
    MessagePut {
        id: u64,
        msg: Arc<Message>,
    },
    /// A QoS 1/2 message queued on a persistent session.
    QueuePut {
        client: Arc<str>,
        entry: u64,
        msg: u64,
        qos: QoS,
        retain: bool,
        sub_ids: Vec<u32>,
    },
    /// A QoS 2 delivery's packet id and where its flow is (the entry rewritten whole), so a
    /// restart resends it with the same id (the client drops the duplicate) or sends the
    /// PUBREL again.
    QueueSent {
        client: Arc<str>,
        entry: u64,
        msg: u64,
        qos: QoS,
        retain: bool,
        sub_ids: Vec<u32>,
        packet_id: u16,
        state: InflightState,
    },
    /// The delivery completed (or the entry expired or was dropped).
    QueueDelete {
        client: Arc<str>,
        entry: u64,
        msg: u64,
    },
    /// A QoS 2 packet id received (PUBREC sent) and not yet released.
    IncomingQos2Put {
        client: Arc<str>,
        packet_id: u16,
    },
    IncomingQos2Delete {
        client: Arc<str>,
        packet_id: u16,
    },
    /// A retained message set; `old` is the one it replaced.
    RetainedPut {
        topic: String,
        msg: u64,
        old: Option<u64>,
    },
    RetainedDelete {
        topic: String,
        msg: u64,
    },
    /// A QoS 1/2 message in a topic's hold queue.
    HeldPut {
        topic: String,
        entry: u64,
        msg: u64,
    },
    HeldDelete {
        topic: String,
        entry: u64,
        msg: u64,
    },
    /// A client's will, written whole (one per client id): the will of an open connection
    /// (`fires_at` None), or the pending will of an offline session waiting out its Will Delay
    /// Interval. A broker crash ends the connection without DISCONNECT, so MQTT has the will
    /// published (§3.1.2.5): after a restart the store brings it back (will.rs).
    WillPut {
        client: Arc<str>,
        will: Box<Will>,
        /// For an open connection's will: its delay counted from a restart (the Will Delay
        /// Interval capped by the Session Expiry Interval, §3.1.3.2.2; 0 for 3.1.1).
        delay: u32,
        /// When a pending will is due (None while its connection is open).
        fires_at: Option<std::time::Instant>,
    },
    /// The client's will is gone: published, deleted by a normal DISCONNECT, cancelled by a
    /// new connection, or replaced by a new connection without one.
    WillDelete {
        client: Arc<str>,
    },
}

/// Ids for messages and entries: unique for the life of the data directory (the store
/// restores the counter past every id it recovered).
#[derive(Debug, Default)]
pub struct Ids(AtomicU64);

impl Ids {
    pub fn next(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// After recovery: never hand out an id at or below `max`.
    pub fn at_least(&self, max: u64) {
        self.0.fetch_max(max, Ordering::Relaxed);
    }
}

/// Whether a session outlives its connection, so the store keeps it.
pub(crate) fn durable_session(s: &Session) -> bool {
    s.expiry_interval != 0
}

impl Broker {
    /// Queues `op` in the journal and makes this event's output wait for it: what the output
    /// says (an acknowledgement, a CONNACK or SUBACK, a QoS 2 PUBLISH or PUBREL) must not reach
    /// the client before the change it reports is durable.
    pub(crate) fn record(&self, op: Op, out: &mut Output) {
        if let Some(j) = &self.journal {
            let t = j.record(op);
            out.durable_after = out.durable_after.max(t);
        }
    }

    /// Queues `op` without holding any output: a delete that nothing sent acknowledges (a
    /// delivery completed, a message expired). Lost in a crash, it only means a QoS 1
    /// message delivered once more, never one lost; holding the subscriber's next deliveries
    /// for it would cost a commit per acknowledgement round trip.
    pub(crate) fn record_quietly(&self, op: Op) {
        if let Some(j) = &self.journal {
            j.record(op);
        }
    }

    /// The message's store id, writing the message first if nothing referred to it yet.
    pub(crate) fn persist_message(&self, msg: &Arc<Message>, out: &mut Output) -> u64 {
        let id = msg.durable_id.load(Ordering::Acquire);
        if id != 0 {
            return id;
        }
        let fresh = self.ids.next();
        match msg
            .durable_id
            .compare_exchange(0, fresh, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {
                let op = Op::MessagePut {
                    id: fresh,
                    msg: Arc::clone(msg),
                };
                self.record(op, out);
                fresh
            }
            Err(other) => other,
        }
    }

    /// Gives `o` an entry id if it must be stored with `s`'s queue (a persistent session, QoS
    /// 1/2, a journal). Call before `Session::enqueue`, and `persist_queued` after it.
    pub(crate) fn mark_durable(&self, s: &Session, o: &mut Outgoing) {
        if self.journal.is_some() && durable_session(s) && o.qos != QoS::AtMostOnce {
            o.entry = self.ids.next();
        }
    }

    /// Writes the queue entry of a message `enqueue` accepted (under the session's lock).
    pub(crate) fn persist_queued(&self, s: &Session, o: &Outgoing, out: &mut Output) {
        if o.entry == 0 || self.journal.is_none() {
            return;
        }
        o.msg.count_durable_entry();
        let msg = self.persist_message(&o.msg, out);
        let op = Op::QueuePut {
            client: Arc::clone(&s.client_id),
            entry: o.entry,
            msg,
            qos: o.qos,
            retain: o.retain,
            sub_ids: o.sub_ids.clone(),
        };
        self.record(op, out);
    }

    /// The entry of `o` is done (delivered, expired or dropped), recorded quietly (see
    /// `record_quietly`): lost in a crash, a QoS 1 message is delivered once more, and a QoS 2
    /// one whose PUBCOMP came gets its PUBREL again, which the client answers without
    /// delivering anything.
    pub(crate) fn persist_unqueued(&self, s: &Session, o: &Outgoing) {
        if o.entry == 0 {
            return;
        }
        let op = Op::QueueDelete {
            client: Arc::clone(&s.client_id),
            entry: o.entry,
            msg: o.msg.durable_id.load(Ordering::Acquire),
        };
        self.record_quietly(op);
    }

    /// The subscriber acknowledged `o` (or refused it for good, a PUBREC with an error): the
    /// entry is deleted, and the message counts one durable delivery less. The last one tells
    /// its publisher's worker, whose PUBACK need not wait for the store any more
    /// (handle_publish.rs, docs/storage.md "Released by delivery").
    pub(crate) fn entry_done(&self, s: &Session, o: &Outgoing, out: &mut Output) {
        self.persist_unqueued(s, o);
        if o.entry != 0 {
            if let Some(w) = o.msg.uncount() {
                out.delivered.push(w);
            }
        }
    }

    /// A QoS 2 delivery got its packet id or moved on in its flow.
    pub(crate) fn persist_sent(&self, s: &Session, i: &Inflight, out: &mut Output) {
        if i.out.entry == 0 || i.out.qos != QoS::ExactlyOnce {
            return;
        }
        let op = Op::QueueSent {
            client: Arc::clone(&s.client_id),
            entry: i.out.entry,
            msg: i.out.msg.durable_id.load(Ordering::Acquire),
            qos: i.out.qos,
            retain: i.out.retain,
            sub_ids: i.out.sub_ids.clone(),
            packet_id: i.packet_id,
            state: i.state,
        };
        self.record(op, out);
    }

    /// Writes the session's record (its expiry and subscriptions) if it is persistent.
    pub(crate) fn persist_session(&self, s: &Session, out: &mut Output) {
        if self.journal.is_none() || !durable_session(s) {
            return;
        }
        let mut subscriptions: Vec<(String, SubscriptionRecord)> = s
            .subscriptions
            .iter()
            .map(|(f, r)| (f.clone(), *r))
            .collect();
        subscriptions.sort_by(|a, b| a.0.cmp(&b.0));
        let op = Op::SessionPut {
            client: Arc::clone(&s.client_id),
            expiry_interval: s.expiry_interval,
            expires_at: s.expires_at,
            subscriptions,
        };
        self.record(op, out);
    }

    /// The session is about to end: its record and entries go. Call before `Session::end`.
    /// Sessions that were never stored are skipped, except when `stored` says otherwise (a
    /// session whose expiry just became 0 was stored under its old expiry).
    pub(crate) fn persist_session_end(&self, s: &Session, stored: bool, out: &mut Output) {
        if self.journal.is_none() || !(stored || durable_session(s)) {
            return;
        }
        let msgs = s
            .queue
            .iter()
            .chain(s.inflight.iter().map(|i| &i.out))
            .filter(|o| o.entry != 0)
            .map(|o| o.msg.durable_id.load(Ordering::Acquire))
            .collect();
        let op = Op::SessionDelete {
            client: Arc::clone(&s.client_id),
            msgs,
        };
        self.record(op, out);
    }

    /// A QoS 2 packet id received from a persistent session's client, or released.
    pub(crate) fn persist_incoming_qos2(
        &self,
        s: &Session,
        packet_id: u16,
        put: bool,
        out: &mut Output,
    ) {
        if self.journal.is_none() || !durable_session(s) {
            return;
        }
        let client = Arc::clone(&s.client_id);
        let op = if put {
            Op::IncomingQos2Put { client, packet_id }
        } else {
            Op::IncomingQos2Delete { client, packet_id }
        };
        self.record(op, out);
    }

    /// A retained message was set (`stored`) or its topic's retained message removed
    /// (empty payload, or refused at the byte limit); `old` is the previous one's store id.
    pub(crate) fn persist_retained(
        &self,
        msg: &Arc<Message>,
        stored: bool,
        old: u64,
        out: &mut Output,
    ) {
        if self.journal.is_none() || msg.topic.starts_with('$') {
            return;
        }
        if stored && !msg.payload.is_empty() {
            let id = self.persist_message(msg, out);
            let op = Op::RetainedPut {
                topic: msg.topic.clone(),
                msg: id,
                old: (old != 0 && old != id).then_some(old),
            };
            self.record(op, out);
        } else if old != 0 {
            let op = Op::RetainedDelete {
                topic: msg.topic.clone(),
                msg: old,
            };
            self.record(op, out);
        }
    }

    pub(crate) fn persist_held(&self, topic: String, entry: u64, msg: u64, out: &mut Output) {
        self.record(Op::HeldPut { topic, entry, msg }, out);
    }

    /// Deletes for the held messages that left the hold queues (under the hold lock).
    pub(crate) fn persist_hold_changes(&self, hold: &mut HoldQueues, out: &mut Output) {
        let gone = std::mem::take(&mut hold.forgotten);
        self.persist_held_taken(gone, out);
    }

    /// Deletes for held messages taken out of the hold (see `persist_hold_changes`).
    pub(crate) fn persist_held_taken(&self, gone: Vec<(String, u64, u64)>, out: &mut Output) {
        for (topic, entry, msg) in gone {
            self.record(Op::HeldDelete { topic, entry, msg }, out);
        }
    }

    /// Connects the broker to its journal (before it is shared with the workers).
    pub fn attach_journal(&mut self, journal: Arc<dyn Journal>) {
        self.hold.get_mut().durable = true;
        self.journal = Some(journal);
    }
}
