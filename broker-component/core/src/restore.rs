//! Start-up from the store: the state the journal wrote (persist.rs) put back into a fresh
//! broker before any worker runs. The store decodes its records into these types (it checks
//! them; a damaged record never gets here); this file only rebuilds the in-memory state.

use std::sync::Arc;
use std::time::{Duration, Instant};

use musqratt_codec::{Publish, QoS, Will};

use crate::broker::{split_shared, Broker};
use crate::hold::HoldLimits;
use crate::message::Message;
use crate::session::{Inflight, InflightState, Outgoing, Session, SubscriptionRecord};
use crate::topic_tree::Subscriber;

/// One queue entry of a persistent session.
#[derive(Debug)]
pub struct RestoredEntry {
    pub entry: u64,
    pub msg: Arc<Message>,
    pub qos: QoS,
    pub retain: bool,
    pub sub_ids: Vec<u32>,
    /// A QoS 2 delivery that had its packet id (and where its flow was).
    pub sent: Option<(u16, InflightState)>,
}

#[derive(Debug)]
pub struct RestoredSession {
    pub client: Arc<str>,
    pub expiry_interval: u32,
    /// What was left of an offline session's expiry (None: it was online, its clock starts
    /// now).
    pub expires_in: Option<Duration>,
    pub subscriptions: Vec<(String, SubscriptionRecord)>,
    /// In entry order (= the order they were queued).
    pub entries: Vec<RestoredEntry>,
    pub incoming_qos2: Vec<u16>,
}

/// A stored will (will.rs): the will of a connection that was open when the broker stopped,
/// or the pending will of an offline session.
#[derive(Debug)]
pub struct RestoredWill {
    pub client: Arc<str>,
    pub will: Will,
    /// When it is due, from now: what was left of a pending will's delay, or, for the will of
    /// an open connection (which the stop ended without DISCONNECT), its delay counted from
    /// the restart. Zero: due now (its time passed while the broker was down).
    pub fires_in: Duration,
}

#[derive(Debug, Default)]
pub struct Restored {
    pub sessions: Vec<RestoredSession>,
    /// At most one per client id.
    pub wills: Vec<RestoredWill>,
    pub retained: Vec<Arc<Message>>,
    /// (seq, message): any order; restored in seq (publish) order.
    pub held: Vec<(u64, Arc<Message>)>,
    /// The highest message or entry id in the store.
    pub max_id: u64,
}

impl Message {
    /// A message read back from the store: `expires_in` is what was left of its lifetime.
    pub fn restored(
        publish: Publish,
        publisher: u64,
        expires_in: Option<Duration>,
        durable_id: u64,
        now: Instant,
    ) -> Message {
        Message {
            topic: publish.topic,
            payload: publish.payload,
            qos: publish.qos,
            retain: publish.retain,
            properties: Message::forwarded_properties(publish.properties),
            expires_at: expires_in.map(|d| now + d),
            publisher,
            durable_id: durable_id.into(),
            release: Default::default(),
        }
    }
}

impl Broker {
    /// Rebuilds sessions (offline, their expiry clocks restarted now), subscriptions, queues,
    /// QoS 2 state, retained and held messages, and pending wills. Call once, before the broker
    /// is shared; then [`attach_journal`](Self::attach_journal) and
    /// [`publish_restored_wills`](Self::publish_restored_wills) (the wills already due).
    pub fn restore(&mut self, r: Restored, now: Instant) {
        self.ids.at_least(r.max_id);
        for rs in r.sessions {
            self.restore_session(rs, now);
        }
        self.restore_wills(r.wills, now);
        {
            let retained = self.retained.get_mut();
            for msg in r.retained {
                retained.set(&msg, usize::MAX, now);
            }
        }
        let limits = HoldLimits {
            per_topic: self.config.hold_max_messages_per_topic,
            total_bytes: self.config.hold_max_total_bytes,
        };
        let mut held = r.held;
        held.sort_by_key(|(seq, _)| *seq);
        let hold = self.hold.get_mut();
        for (seq, msg) in held {
            hold.hold_restored(msg, seq, limits, now);
        }
        // Restoring drops nothing the store must hear of: over-limit ones were never stored.
        hold.forgotten.clear();
    }

    fn restore_session(&mut self, rs: RestoredSession, now: Instant) {
        let id = self.new_session_id();
        let mut s = Session::new(id, Arc::clone(&rs.client), rs.expiry_interval);
        s.charge = crate::budget::Charge::of(&self.memory);
        for (filter, rec) in &rs.subscriptions {
            s.subscriptions.insert(filter.clone(), *rec);
        }
        for e in rs.entries {
            let out = Outgoing {
                msg: e.msg,
                qos: e.qos,
                retain: e.retain,
                sub_ids: e.sub_ids,
                entry: e.entry,
            };
            match e.sent {
                Some((packet_id, state)) if state != InflightState::AwaitPubAck => {
                    s.inflight.push_back(Inflight {
                        packet_id,
                        out,
                        state,
                    });
                }
                _ => {
                    let _ = s.enqueue(out, usize::MAX);
                }
            }
        }
        s.incoming_qos2.extend(rs.incoming_qos2);
        let expires_at = match rs.expires_in {
            Some(left) => Some(now + left),
            None => (rs.expiry_interval != u32::MAX)
                .then(|| now + Duration::from_secs(u64::from(rs.expiry_interval))),
        };
        s.expires_at = expires_at;
        let subscriptions = rs.subscriptions;
        let cell = Arc::new(parking_lot::Mutex::new(s));
        if let Some(at) = expires_at {
            self.schedule(at, id, &cell);
        }
        {
            let tree = self.topics.get_mut().unwrap_or_else(|e| e.into_inner());
            for (filter, rec) in subscriptions {
                let (group, plain) = split_shared(&filter);
                let sub = Subscriber {
                    session: Arc::clone(&cell),
                    session_id: id,
                    options: rec.options,
                    sub_id: rec.sub_id,
                };
                tree.subscribe(plain, group, sub);
            }
        }
        self.sessions.get_mut().insert(rs.client, cell);
    }
}
