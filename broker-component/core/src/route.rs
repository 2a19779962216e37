//! Routing a PUBLISH: match it against the subscription tree, queue it on every
//! matching session once (overlapping subscriptions merge: highest QoS, every
//! Subscription Identifier), and hold it when nothing matches (docs/design.md §3).

use std::sync::Arc;
use std::time::Instant;

use musqratt_codec::QoS;
use smallvec::SmallVec;

use crate::broker::Broker;
use crate::connection::{ConnRef, Output};
use crate::message::Message;
use crate::retained::Retained;
use crate::session::{Outgoing, QueueLimit};
use crate::topic_tree::Subscriber;

/// One session's merged view of the subscriptions that matched.
struct Target<'a> {
    sub: &'a Subscriber,
    qos: QoS,
    retain_as_published: bool,
    sub_ids: Vec<u32>,
}

/// What happened to a published message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routed {
    /// At least one subscription matched.
    Delivered,
    /// Nothing matched; the message is in the topic's hold queue.
    Held,
    /// Nothing matched and the message was not held (hold off, retained, `$` topic).
    NoSubscribers,
}

impl Broker {
    /// Publishes a message into the broker: updates the retained store if
    /// flagged, then routes it.
    ///
    /// `from` is the publishing connection, paused (through `out.pause`) when a
    /// subscriber's queue is congested; None for wills and `$SYS`.
    pub(crate) fn publish(
        &self,
        msg: Arc<Message>,
        from: Option<ConnRef>,
        now: Instant,
        out: &mut Output,
    ) -> Routed {
        self.metrics.messages_received.add(1);
        if msg.retain {
            let max = self.config.max_retained_bytes;
            let mut retained = self.retained.lock();
            let old = retained.durable_id_of(&msg.topic);
            let result = retained.set(&msg, max, now);
            self.persist_retained(&msg, result == Retained::Stored, old, out);
            drop(retained);
            if result == Retained::Refused {
                // Still routed below: the publisher's message is delivered
                // (and a QoS 1/2 one acknowledged as usual), only not kept.
                self.metrics.retained_refused.add(1);
            }
        }
        self.route(msg, from, now, out)
    }

    pub(crate) fn route(
        &self,
        msg: Arc<Message>,
        from: Option<ConnRef>,
        now: Instant,
        out: &mut Output,
    ) -> Routed {
        if msg.is_expired(now) {
            return Routed::NoSubscribers;
        }
        let tree = self.topics_read();
        let mut matched = false;
        // Inline room for the common few subscribers: no allocation per publish.
        let mut targets: SmallVec<[Target<'_>; 4]> = SmallVec::new();
        tree.for_each_match(&msg.topic, |s| {
            matched = true;
            if s.options.no_local && s.session_id == msg.publisher {
                return;
            }
            targets.push(Target {
                sub: s,
                qos: s.options.qos.min(msg.qos),
                retain_as_published: s.options.retain_as_published,
                sub_ids: s.sub_id.into_iter().collect(),
            });
        });
        if !matched {
            // Held under the tree's read lock: a SUBSCRIBE (write lock) either
            // happened before and matched above, or happens after and finds
            // this message in the hold queue. Nothing slips between.
            if self.config.hold_enabled && !msg.retain && !msg.topic.starts_with('$') {
                let limits = crate::hold::HoldLimits {
                    per_topic: self.config.hold_max_messages_per_topic,
                    total_bytes: self.config.hold_max_total_bytes,
                };
                let mut hold = self.hold.lock();
                let seq = hold.next_seq();
                let durable = self.journal.is_some() && msg.qos != QoS::AtMostOnce;
                let topic = durable.then(|| msg.topic.clone());
                let dropped = hold.hold(Arc::clone(&msg), limits, now);
                if let Some(topic) = topic {
                    if hold.is_held(&topic, seq) {
                        let id = self.persist_message(&msg, out);
                        self.persist_held(topic, seq, id, out);
                    }
                }
                self.persist_hold_changes(&mut hold, out);
                drop(hold);
                self.metrics.messages_held.add(1);
                if dropped > 0 {
                    self.metrics.messages_dropped.add(dropped as u64);
                }
                return Routed::Held;
            }
            return Routed::NoSubscribers;
        }
        merge_overlapping(&mut targets);
        for t in targets {
            let retain = t.retain_as_published && msg.retain;
            let mut outgoing = Outgoing {
                msg: Arc::clone(&msg),
                qos: t.qos,
                retain,
                sub_ids: t.sub_ids,
                entry: 0,
            };
            let mut s = t.sub.session.lock();
            self.mark_durable(&s, &mut outgoing);
            let durable = outgoing.entry != 0;
            let empty = s.queue.is_empty();
            s.flow.before_enqueue(empty, now);
            let limit = QueueLimit::of(&self.config);
            if s.no_room_for(limit, &outgoing) && s.evict_qos0(outgoing.qos) {
                self.metrics.messages_dropped.add(1);
                s.note_dropped("queue full, oldest QoS 0 message dropped for a QoS 1/2 one");
            }
            s.note_queued(outgoing.qos);
            let queued = s.enqueue(outgoing, limit);
            if durable && queued.is_ok() {
                if let Some(o) = s.queue.back() {
                    self.persist_queued(&s, o, out);
                }
            }
            match queued {
                Ok(Some(conn)) => out.wakes.push(conn),
                Ok(None) => {}
                Err(_) => {
                    self.metrics.messages_dropped.add(1);
                    s.note_dropped("queue full");
                }
            }
            // Flow control (flow.rs): pause the publisher only for a
            // subscriber that keeps up; one that turned out not to lets its
            // waiters go now rather than at the transport's backstop.
            if let Some(from) = from {
                if s.conn != Some(from) && s.congested(&self.config, now) {
                    s.add_waiter(from, now);
                    out.pause = true;
                } else {
                    s.release_waiters_if_due(&self.config, now, &mut out.resumes);
                }
            }
        }
        Routed::Delivered
    }
}

/// Overlapping subscriptions of one session deliver once (§3.3.4): at the
/// highest QoS, with every matching Subscription Identifier.
fn merge_overlapping(targets: &mut SmallVec<[Target<'_>; 4]>) {
    if targets.len() < 2 {
        return;
    }
    targets.sort_by_key(|t| t.sub.session_id);
    let mut merged: SmallVec<[Target<'_>; 4]> = SmallVec::with_capacity(targets.len());
    for t in targets.drain(..) {
        match merged.last_mut() {
            Some(m) if m.sub.session_id == t.sub.session_id => {
                m.qos = m.qos.max(t.qos);
                m.retain_as_published |= t.retain_as_published;
                m.sub_ids.extend(t.sub_ids);
            }
            _ => merged.push(t),
        }
    }
    *targets = merged;
}
