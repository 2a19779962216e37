//! Routing a PUBLISH: match it against the subscription tree, queue it on every
//! matching session once (overlapping subscriptions merge: highest QoS, every
//! Subscription Identifier), and hold it when nothing matches (docs/design.md §3).

use std::sync::Arc;
use std::time::Instant;

use musqratt_codec::QoS;
use smallvec::SmallVec;

use crate::acl::{AclTable, Subject, Want};
use crate::broker::{is_sys_topic, Broker};
use crate::budget::LimitHit;
use crate::connection::{ConnRef, Output};
use crate::hold::held_size;
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
    /// A limit refused it everywhere it was going: every matching session's queue, or the
    /// hold, or (with no subscriber) the retained store. A v5 publisher gets 0x97.
    Refused,
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
        let mut retain_refused = false;
        if msg.retain {
            // Over a broker-wide budget the store may only shrink (a replacement no larger
            // than what it replaces, or a delete), as at `max_retained_mb`.
            let max = match self.over_budget(&msg, msg.qos, !msg.payload.is_empty()) {
                None => self.config.max_retained_bytes,
                Some(hit) => {
                    self.limit_log
                        .note(hit, "retained message not retained", now);
                    0
                }
            };
            let mut retained = self.retained.lock();
            let old = retained.durable_id_of(&msg.topic);
            let result = retained.set(&msg, max, now);
            self.persist_retained(&msg, result == Retained::Stored, old, out);
            drop(retained);
            if result == Retained::Refused {
                // Still routed below: the publisher's message is delivered
                // (and a QoS 1/2 one acknowledged as usual), only not kept.
                self.metrics.retained_refused.add(1);
                retain_refused = true;
            }
        }
        match self.route(msg, from, now, out) {
            Routed::NoSubscribers if retain_refused => Routed::Refused,
            routed => routed,
        }
    }

    /// Whether a broker-wide budget refuses keeping `msg` at `qos`: the memory budget, and
    /// for a message the store must keep (`durable`), the disk's. The broker's own `$SYS`
    /// reports are exempt (a small fixed set, and what reports the limit); clients cannot
    /// publish there (handle_publish.rs, will.rs), so nothing a client sends is exempt.
    pub(crate) fn over_budget(&self, msg: &Message, qos: QoS, durable: bool) -> Option<LimitHit> {
        if !(self.memory.limited() || durable) || is_sys_topic(&msg.topic) {
            None
        } else if !self.memory.admits(held_size(msg), qos) {
            Some(LimitHit::Memory)
        } else if durable && self.store_full() {
            Some(LimitHit::Disk)
        } else {
            None
        }
    }

    /// The journal reports the store at `storage.max_disk_mb`.
    pub(crate) fn store_full(&self) -> bool {
        self.journal.as_ref().is_some_and(|j| j.full())
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
        // The ACL's table once per message; None (no acl_file) costs this check only.
        let acl = self.acl.as_ref().map(|a| a.table());
        let tree = self.topics_read();
        let mut matched = false;
        // Inline room for the common few subscribers: no allocation per publish.
        let mut targets: SmallVec<[Target<'_>; 4]> = SmallVec::new();
        tree.for_each_match(&msg.topic, |s| {
            if let Some(acl) = &acl {
                // A subscriber that may not read the topic is not a match: the message is
                // held for one that may (docs/security.md "Access control (ACL)").
                if !may_read(acl, s, &msg.topic) {
                    return;
                }
            }
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
                let durable = self.journal.is_some() && msg.qos != QoS::AtMostOnce;
                if let Some(hit) = self.over_budget(&msg, msg.qos, durable) {
                    self.metrics.messages_dropped.add(1);
                    self.limit_log.note(hit, "message not held", now);
                    return Routed::Refused;
                }
                let mut hold = self.hold.lock();
                let seq = hold.next_seq();
                let dropped = hold.hold(Arc::clone(&msg), limits, now);
                // Beyond a hold limit the oldest held goes; the new one is refused only
                // when it alone exceeds `max_total_mb` (or the topic may hold none).
                let held = dropped == 0 || hold.is_held(&msg.topic, seq);
                if durable && held {
                    let id = self.persist_message(&msg, out);
                    self.persist_held(msg.topic.clone(), seq, id, out);
                }
                self.persist_hold_changes(&mut hold, out);
                drop(hold);
                if dropped > 0 {
                    self.metrics.messages_dropped.add(dropped as u64);
                }
                if !held {
                    return Routed::Refused;
                }
                self.metrics.messages_held.add(1);
                return Routed::Held;
            }
            return Routed::NoSubscribers;
        }
        merge_overlapping(&mut targets);
        let (mut accepted, mut refused) = (0usize, 0usize);
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
            // Broker-wide budgets, for what the queue would keep (an offline session keeps
            // no QoS 0): QoS 0 refused first (budget.rs), a QoS 1/2 message evicting this
            // session's oldest QoS 0 before it is refused.
            let kept = s.conn.is_some() || outgoing.qos != QoS::AtMostOnce;
            let mut hit = None;
            if kept {
                hit = self.over_budget(&msg, outgoing.qos, durable);
                if hit == Some(LimitHit::Memory) && s.evict_qos0(outgoing.qos) {
                    self.metrics.messages_dropped.add(1);
                    s.note_dropped("memory budget, oldest QoS 0 message dropped for a QoS 1/2 one");
                    hit = self.over_budget(&msg, outgoing.qos, durable);
                }
            }
            if let Some(hit) = hit {
                refused += 1;
                self.metrics.messages_dropped.add(1);
                self.limit_log
                    .note(hit, "message not queued for a subscriber", now);
                s.release_waiters_if_due(&self.config, now, &mut out.resumes);
                continue;
            }
            s.note_queued(outgoing.qos);
            let queued = s.enqueue(outgoing, limit);
            if durable && queued.is_ok() {
                if let Some(o) = s.queue.back() {
                    self.persist_queued(&s, o, out);
                }
            }
            match queued {
                Ok(Some(conn)) => {
                    accepted += 1;
                    out.wakes.push(conn)
                }
                Ok(None) => accepted += 1,
                Err(_) => {
                    refused += 1;
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
        if refused > 0 && accepted == 0 {
            Routed::Refused
        } else {
            Routed::Delivered
        }
    }
}

/// Whether the subscriber's session may read `topic`. Its identity is the last CONNECT's; a
/// session restored from the store that no client has bound since has none known, and gets
/// nothing until its client is back.
fn may_read(acl: &AclTable, sub: &Subscriber, topic: &str) -> bool {
    let s = sub.session.lock();
    let subject = Subject {
        client_id: &s.client_id,
        username: s.username.as_deref(),
    };
    s.identity_known && acl.check(subject, topic, Want::Read)
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
