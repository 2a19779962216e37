//! SUBSCRIBE and UNSUBSCRIBE (§3.8, §3.10). After the SUBACK go, in order:
//! the retained messages (per Retain Handling), then the held messages of
//! every matching topic (docs/design.md §3), all at min(message QoS, granted QoS).

use std::sync::Arc;
use std::time::Instant;

use musqratt_codec::{
    topic, Packet, Properties, QoS, ReasonCode, RetainHandling, SubAck, Subscribe, UnsubAck,
    Unsubscribe,
};

use crate::acl::Want;
use crate::broker::{split_shared, Broker};
use crate::connection::{Connection, Output};
use crate::message::Message;
use crate::session::{Outgoing, QueueLimit, SubscriptionRecord};
use crate::topic_tree::Subscriber;

/// The transport stops reading a client whose unsent output passes 256 KiB
/// (docs/architecture.md, backpressure). QoS 0 deliveries bypass the inflight
/// window, so past this much output in one read, retained and held messages
/// found at SUBSCRIBE wait in the (bounded) session queue instead.
const DRAIN_AT_SUBSCRIBE_BELOW: usize = 256 * 1024;

/// Trie nodes one SUBSCRIBE packet may visit looking for retained and held
/// messages, beyond what its filters' exact paths cost (see `walk_budget`).
/// The walks already stop once the session's queue is full, but a wildcard
/// filter that matches little in a large store (`+/+/x` over a million
/// `a/N/y` topics) visits many nodes for few messages, holding the worker (and
/// the store's lock) meanwhile; a SUBSCRIBE with thousands of such filters
/// would stall every other client of the worker. A node visit is tens of
/// nanoseconds, so this is a few milliseconds of work. Beyond it, retained
/// messages not yet found are not sent (counted as dropped) and held ones
/// stay held for a later SUBSCRIBE: nothing held is lost.
pub(crate) const SUBSCRIBE_WALK_BUDGET: usize = 250_000;

/// The node budget of one SUBSCRIBE: the shared allowance for wildcard walks,
/// plus what looking up each filter's own path costs in both stores, so that
/// filters without wildcards (one node per level) never run out, however many
/// a packet carries; the packet's size bounds their number.
fn walk_budget<'a>(filters: impl Iterator<Item = &'a str>) -> usize {
    filters.fold(SUBSCRIBE_WALK_BUDGET, |b, f| {
        b.saturating_add(2 * (f.split('/').count() + 1))
    })
}

impl Connection {
    pub(crate) fn handle_subscribe(
        &mut self,
        broker: &Broker,
        sub: Subscribe,
        now: Instant,
        out: &mut Output,
    ) {
        let Some(session) = self.session.clone() else {
            return;
        };
        let v5 = self.version.is_v5();
        let sub_id = sub.properties.subscription_identifiers.first().copied();
        let mut codes = Vec::with_capacity(sub.filters.len());
        // (filter, granted QoS, send retained?, No Local session) of accepted filters.
        let mut accepted: Vec<(String, QoS, bool, Option<u64>)> = Vec::new();
        // Filters refused for `limits.max_subscriptions_per_client`.
        let mut quota_refused = 0usize;
        // The ACL's table, taken once for the whole packet (None: no ACL, nothing checked).
        let acl = broker.acl.as_ref().map(|a| a.table());

        for (filter, opts) in sub.filters {
            let invalid = topic::validate_topic_filter(&filter).is_err();
            if invalid || broker.config.too_many_levels(split_shared(&filter).1) {
                tracing::debug!(client = %self.client_id, filter = %Abbrev(&filter), "invalid topic filter (or more than limits.max_topic_levels levels)");
                codes.push(if v5 {
                    ReasonCode::TOPIC_FILTER_INVALID
                } else {
                    ReasonCode::UNSPECIFIED_ERROR
                });
                continue;
            }
            let (group, plain) = split_shared(&filter);
            if group.is_some() && opts.no_local {
                // §3.8.3.1: No Local on a shared subscription is a Protocol Error.
                return self.protocol_violation(
                    broker,
                    ReasonCode::PROTOCOL_ERROR,
                    "No Local set on a shared subscription",
                    now,
                    out,
                );
            }
            if acl
                .as_ref()
                .is_some_and(|t| !t.check(self.subject(), plain, Want::Subscribe))
            {
                self.note_acl_denied("SUBSCRIBE", &filter, now);
                codes.push(if v5 {
                    ReasonCode::NOT_AUTHORIZED
                } else {
                    ReasonCode::UNSPECIFIED_ERROR
                });
                continue;
            }
            if self.over_subscription_quota(broker, &session, &filter) {
                quota_refused += 1;
                codes.push(if v5 {
                    ReasonCode::QUOTA_EXCEEDED
                } else {
                    ReasonCode::UNSPECIFIED_ERROR
                });
                continue;
            }
            let subscriber = Subscriber {
                session: Arc::clone(&session),
                session_id: self.session_id,
                options: opts,
                sub_id,
            };
            let is_new = broker.topics_write().subscribe(plain, group, subscriber);
            {
                let mut s = session.lock();
                if s.conn != Some(self.conn_ref) {
                    // Taken over (or discarded by a clean start) on another
                    // worker while we inserted: that worker has already
                    // cleared the session's subscriptions, so undo ours.
                    drop(s);
                    broker
                        .topics_write()
                        .unsubscribe(plain, group, self.session_id);
                    return;
                }
                let record = SubscriptionRecord {
                    options: opts,
                    sub_id,
                };
                s.subscriptions.insert(filter.clone(), record);
            }
            codes.push(ReasonCode(opts.qos.as_u8()));
            let send_retained = group.is_none()
                && match opts.retain_handling {
                    RetainHandling::SendAtSubscribe => true,
                    RetainHandling::SendIfNew => is_new,
                    RetainHandling::DoNotSend => false,
                };
            let no_local = opts.no_local.then_some(self.session_id);
            accepted.push((filter, opts.qos, send_retained, no_local));
        }

        if quota_refused > 0 {
            // One line per SUBSCRIBE, not per filter: a flood of filters must
            // not become a flood of log lines.
            tracing::warn!(client = %self.client_id, refused = quota_refused, limit = broker.config.max_subscriptions_per_client, "limits.max_subscriptions_per_client reached: SUBSCRIBE filters refused");
        }
        if !accepted.is_empty() {
            // The SUBACK waits for the session's new record (persist.rs).
            broker.persist_session(&session.lock(), out);
        }
        let suback = SubAck {
            packet_id: sub.packet_id,
            properties: Properties::default(),
            reason_codes: codes,
        };
        self.send(broker, &Packet::SubAck(suback), out);

        // Retained first, then held: both queued on our own session and drained
        // now, no more than its queue has room for (`limits.max_queued_messages`):
        // a client re-subscribing to `#` without acknowledging anything must
        // not queue the whole store each time. The walks stop when the room is
        // used up, so one SUBSCRIBE costs O(queue limit), not O(store); held
        // messages beyond the room stay held (nothing taken is thrown away).
        let queued_now = session.lock().queue.len();
        let mut room = broker.config.max_queued_messages.saturating_sub(queued_now);
        let mut queued: Vec<Outgoing> = Vec::new();
        let mut skipped_retained = 0u64;
        let mut budget = walk_budget(accepted.iter().map(|a| split_shared(&a.0).1));
        let mut taken_from_hold = Vec::new();
        let mut out_of_budget = false;
        // Retained and held messages go only where the ACL lets this client read; held ones it
        // may not read stay held.
        let subject = self.subject();
        let readable = |topic: &str| {
            acl.as_ref()
                .is_none_or(|t| t.check(subject, topic, Want::Read))
        };
        for (filter, granted, send_retained, no_local) in &accepted {
            let plain = split_shared(filter).1;
            let sub_ids: Vec<u32> = sub_id.into_iter().collect();
            if *send_retained {
                let found = broker.retained.lock().matching_readable(
                    plain,
                    now,
                    room,
                    &mut budget,
                    &readable,
                );
                skipped_retained += u64::from(found.truncated || found.out_of_budget);
                out_of_budget |= found.out_of_budget;
                room -= found.messages.len();
                for msg in found.messages {
                    queued.push(outgoing(msg, *granted, true, &sub_ids));
                }
            }
            if broker.config.hold_enabled {
                let held = {
                    let mut hold = broker.hold.lock();
                    let held =
                        hold.take_readable(plain, now, room, *no_local, &mut budget, &readable);
                    // Their store deletes are recorded after their queue entries (below):
                    // deleted first, a message's last reference would free it on disk.
                    taken_from_hold.append(&mut hold.forgotten);
                    held
                };
                out_of_budget |= budget == 0;
                room -= held.len();
                for msg in held {
                    queued.push(outgoing(msg, *granted, false, &sub_ids));
                }
            }
        }
        if skipped_retained > 0 {
            // Counted once per filter cut short: the walk stops at the first
            // message that does not fit rather than counting the rest.
            broker.metrics.messages_dropped.add(skipped_retained);
            tracing::debug!(client = %self.client_id, "queue full (limits.max_queued_messages): retained messages not sent at SUBSCRIBE");
        }
        if out_of_budget {
            tracing::warn!(client = %self.client_id, budget = SUBSCRIBE_WALK_BUDGET,
                "SUBSCRIBE walked its budget of retained/held topic nodes: retained messages not found yet are not sent, held ones stay held");
        }
        if queued.is_empty() {
            broker.persist_held_taken(taken_from_hold, out);
            return;
        }
        let mut s = session.lock();
        for mut o in queued {
            // Publishes may have filled the queue meanwhile: the excess is dropped and counted.
            s.note_queued(o.qos); // so a later QoS 1/2 may evict it (flow.rs)
            broker.mark_durable(&s, &mut o);
            let durable = o.entry != 0;
            if s.enqueue(o, QueueLimit::of(&broker.config)).is_err() {
                broker.metrics.messages_dropped.add(1);
            } else if durable {
                if let Some(o) = s.queue.back() {
                    broker.persist_queued(&s, o, out);
                }
            }
        }
        broker.persist_held_taken(taken_from_hold, out);
        s.wake_pending = false;
        if out.transmit.len() < DRAIN_AT_SUBSCRIBE_BELOW {
            self.drain(broker, &mut s, now, out);
        } else if let Some(me) = s.wake() {
            // Drained once, at the end of this read (`drain_self_wake`): a burst
            // of SUBSCRIBEs in one read must not encode a queue's worth each.
            out.wakes.push(me);
        }
    }

    /// Whether subscribing to `filter` would take the session past
    /// `limits.max_subscriptions_per_client`. Replacing an existing
    /// subscription (same filter) adds nothing and is always allowed. Only
    /// this connection adds subscriptions to its session, so the count cannot
    /// grow between this check and the insert.
    fn over_subscription_quota(
        &self,
        broker: &Broker,
        session: &crate::session::SessionCell,
        filter: &str,
    ) -> bool {
        let s = session.lock();
        s.subscriptions.len() >= broker.config.max_subscriptions_per_client
            && !s.subscriptions.contains_key(filter)
    }

    pub(crate) fn handle_unsubscribe(
        &mut self,
        broker: &Broker,
        u: Unsubscribe,
        now: Instant,
        out: &mut Output,
    ) {
        let Some(session) = self.session.clone() else {
            return;
        };
        let v5 = self.version.is_v5();
        let mut codes = Vec::with_capacity(u.filters.len());
        for filter in &u.filters {
            if topic::validate_topic_filter(filter).is_err() {
                if !v5 {
                    // 3.1.1's UNSUBACK has no reason codes to refuse one filter with.
                    return self.protocol_violation(
                        broker,
                        ReasonCode::TOPIC_FILTER_INVALID,
                        "UNSUBSCRIBE with an invalid topic filter",
                        now,
                        out,
                    );
                }
                tracing::debug!(client = %self.client_id, filter = %Abbrev(filter), "UNSUBSCRIBE with an invalid topic filter");
                codes.push(ReasonCode::TOPIC_FILTER_INVALID);
                continue;
            }
            let existed = session.lock().subscriptions.remove(filter).is_some();
            if existed {
                let (group, plain) = split_shared(filter);
                broker
                    .topics_write()
                    .unsubscribe(plain, group, self.session_id);
            }
            codes.push(if existed {
                ReasonCode::SUCCESS
            } else {
                ReasonCode::NO_SUBSCRIPTION_EXISTED
            });
        }
        broker.persist_session(&session.lock(), out);
        let unsuback = UnsubAck {
            packet_id: u.packet_id,
            properties: Properties::default(),
            reason_codes: codes,
        };
        self.send(broker, &Packet::UnsubAck(unsuback), out);
    }
}

fn outgoing(msg: Arc<Message>, granted: QoS, retain: bool, sub_ids: &[u32]) -> Outgoing {
    Outgoing {
        qos: granted.min(msg.qos),
        msg,
        retain,
        sub_ids: sub_ids.to_vec(),
        entry: 0,
    }
}

/// A client's filter in a log line: at most 128 bytes of it, so a 64 KiB
/// filter does not become a 64 KiB log line.
pub(crate) struct Abbrev<'a>(pub(crate) &'a str);

impl std::fmt::Display for Abbrev<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const MAX: usize = 128;
        if self.0.len() <= MAX {
            return f.write_str(self.0);
        }
        let mut end = MAX;
        while !self.0.is_char_boundary(end) {
            end -= 1;
        }
        write!(f, "{}… ({} bytes)", &self.0[..end], self.0.len())
    }
}
