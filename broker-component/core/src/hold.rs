//! Hold queues (docs/design.md §3): a PUBLISH that matches no subscription is kept
//! per topic until a matching SUBSCRIBE is acknowledged, then delivered once.
//!
//! Bounded twice: per topic (`hold.max_messages_per_topic`) and broker-wide in
//! bytes (`hold.max_total_mb`), beyond which the oldest held message of any
//! topic goes. Topics are indexed by level (`level_trie`) so a wildcard
//! SUBSCRIBE walks only the branches it matches; every held message also has
//! a sequence number (its age) and, if it can expire, a deadline entry, so
//! that evicting the oldest and purging the expired never scan the store.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Instant;

use crate::level_trie::LevelTrie;
use crate::log_limit::LogLimit;
use crate::message::Message;

/// Bytes a held message is charged beyond its topic, payload and properties:
/// the `Message` and its `Arc`, the queue slot and the two index entries.
const HELD_OVERHEAD: usize = 192;

/// The hold limits of `BrokerConfig`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HoldLimits {
    pub(crate) per_topic: usize,
    pub(crate) total_bytes: usize,
}

struct Held {
    seq: u64,
    msg: Arc<Message>,
    size: usize,
}

struct HeldTopic {
    topic: Arc<str>,
    /// In publish order: sequence numbers ascend.
    queue: VecDeque<Held>,
}

#[derive(Default)]
pub(crate) struct HoldQueues {
    trie: LevelTrie<HeldTopic>,
    topics: usize,
    messages: usize,
    bytes: usize,
    /// The broker's memory budget, charged with `bytes` (budget.rs).
    pub(crate) charge: crate::budget::Charge,
    next_seq: u64,
    /// Every held message by age: the broker-wide oldest comes first.
    order: BTreeMap<u64, Arc<str>>,
    /// Held messages that can expire, by deadline.
    expiries: BTreeSet<(Instant, u64)>,
    /// Dropped for `max_total_mb` since the last log line.
    drop_log: LogLimit,
    /// With a journal: QoS 1/2 held messages that left the hold (taken, dropped, expired) since
    /// the caller last drained this, as (topic, seq, store id), for the store's deletes.
    pub(crate) durable: bool,
    pub(crate) forgotten: Vec<(String, u64, u64)>,
}

/// What a held message costs: topic, payload and forwarded properties, plus
/// the fixed overhead of keeping it. The retained store charges the same.
pub(crate) fn held_size(m: &Message) -> usize {
    let props = m.properties.as_deref().map_or(0, |p| {
        p.content_type.as_ref().map_or(0, String::len)
            + p.response_topic.as_ref().map_or(0, String::len)
            + p.correlation_data.as_ref().map_or(0, |d| d.len())
            + p.user_properties
                .iter()
                .map(|(k, v)| k.len() + v.len() + 48)
                .sum::<usize>()
            + std::mem::size_of_val(p)
    });
    m.topic.len() + m.payload.len() + props + HELD_OVERHEAD
}

impl HoldQueues {
    /// Holds `msg`; beyond `per_topic` the topic's oldest is dropped, beyond
    /// `total_bytes` the oldest held anywhere. Returns how many were dropped.
    pub(crate) fn hold(&mut self, msg: Arc<Message>, limits: HoldLimits, now: Instant) -> usize {
        let size = held_size(&msg);
        if limits.per_topic == 0 || size > limits.total_bytes {
            return 1;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let node = self.trie.node_mut(&msg.topic);
        let new_topic = node.value.is_none();
        let held = node.value.get_or_insert_with(|| HeldTopic {
            topic: Arc::from(msg.topic.as_str()),
            queue: VecDeque::new(),
        });
        let mut dropped = Vec::new();
        while held.queue.len() >= limits.per_topic {
            match held.queue.pop_front() {
                Some(old) => dropped.push(old),
                None => break,
            }
        }
        let topic = Arc::clone(&held.topic);
        if let Some(t) = msg.expires_at {
            self.expiries.insert((t, seq));
        }
        held.queue.push_back(Held { seq, msg, size });
        if new_topic {
            self.topics += 1;
        }
        self.order.insert(seq, topic);
        self.messages += 1;
        self.bytes += size;
        self.charge.add(size);
        let per_topic_drops = dropped.len();
        for old in dropped {
            self.forget(&old);
        }

        let mut evicted = 0;
        while self.bytes > limits.total_bytes {
            let Some((oldest, topic)) = self.order.pop_first() else {
                break;
            };
            if self.remove_seq(&topic, oldest) {
                evicted += 1;
            }
        }
        if evicted > 0 {
            if let Some(dropped) = self.drop_log.note(evicted as u64, now) {
                tracing::warn!(
                    dropped,
                    held_bytes = self.bytes,
                    "hold.max_total_mb reached: oldest held messages dropped"
                );
            }
        }
        per_topic_drops + evicted
    }

    /// Removes and returns at most `room` live held messages on topics matching
    /// `filter`, in publish order per topic; the rest stay held. With
    /// `no_local` (the subscriber's session id, §3.8.3.1) the subscriber's own
    /// messages are not delivered to it and stay held. Topics left empty
    /// cease to exist. Each node visited costs one unit of `budget`.
    /// A held message recovered from the store, under its old seq (recovery walks them in
    /// seq order, so each topic's queue stays in publish order).
    pub(crate) fn hold_restored(
        &mut self,
        msg: Arc<Message>,
        seq: u64,
        limits: HoldLimits,
        now: Instant,
    ) {
        self.next_seq = seq;
        self.hold(msg, limits, now);
        self.next_seq = self.next_seq.max(seq + 1);
    }

    #[cfg(test)]
    pub(crate) fn take_matching(
        &mut self,
        filter: &str,
        now: Instant,
        room: usize,
        no_local: Option<u64>,
        budget: &mut usize,
    ) -> Vec<Arc<Message>> {
        self.take_readable(filter, now, room, no_local, budget, &|_| true)
    }

    /// Takes the held messages matching `filter` (at most `room`) whose topic the subscriber
    /// may read (`readable`, the ACL's answer): the others stay held for a subscriber that may.
    pub(crate) fn take_readable(
        &mut self,
        filter: &str,
        now: Instant,
        room: usize,
        no_local: Option<u64>,
        budget: &mut usize,
        readable: &dyn Fn(&str) -> bool,
    ) -> Vec<Arc<Message>> {
        let mut out = Vec::new();
        if room == 0 || self.topics == 0 {
            return out;
        }
        // Walk only as far as the room can be filled (an upper bound: some
        // may be expired or the subscriber's own).
        let mut topics: Vec<Arc<str>> = Vec::new();
        let mut candidates = 0;
        // Out of budget, the walk ends early: what it found is taken, the
        // rest stays held for a later SUBSCRIBE (nothing is lost).
        self.trie.for_each_match(filter, budget, |held| {
            if !readable(&held.topic) {
                return ControlFlow::Continue(());
            }
            topics.push(Arc::clone(&held.topic));
            candidates += held.queue.len();
            if candidates >= room {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        topics.sort();
        for topic in topics {
            let Some(held) = self.trie.get_mut(&topic) else {
                continue;
            };
            let mut kept = VecDeque::new();
            let mut gone = Vec::new();
            for h in held.queue.drain(..) {
                if h.msg.is_expired(now) {
                    gone.push(h);
                } else if out.len() == room || no_local == Some(h.msg.publisher) {
                    kept.push_back(h);
                } else {
                    out.push(Arc::clone(&h.msg));
                    gone.push(h);
                }
            }
            held.queue = kept;
            if held.queue.is_empty() {
                self.trie.remove(&topic);
                self.topics -= 1;
            }
            for h in &gone {
                self.forget(h);
            }
        }
        out
    }

    /// Drops expired messages and the topics they leave empty. Returns how many expired.
    pub(crate) fn purge_expired(&mut self, now: Instant) -> usize {
        let mut n = 0;
        while let Some(&(at, seq)) = self.expiries.first() {
            if at > now {
                break;
            }
            self.expiries.pop_first();
            if let Some(topic) = self.order.remove(&seq) {
                n += usize::from(self.remove_seq(&topic, seq));
            }
        }
        n
    }

    /// Topics that currently hold messages.
    pub(crate) fn topic_count(&self) -> usize {
        self.topics
    }

    pub(crate) fn message_count(&self) -> usize {
        self.messages
    }

    /// Bytes charged to held messages (bounded by `hold.max_total_mb`).
    #[cfg(test)]
    pub(crate) fn held_bytes(&self) -> usize {
        self.bytes
    }

    /// Removes message `seq` of `topic` (pruning the topic if it empties).
    fn remove_seq(&mut self, topic: &str, seq: u64) -> bool {
        let Some(held) = self.trie.get_mut(topic) else {
            return false;
        };
        let Ok(i) = held.queue.binary_search_by_key(&seq, |h| h.seq) else {
            return false;
        };
        let Some(h) = held.queue.remove(i) else {
            return false;
        };
        if held.queue.is_empty() {
            self.trie.remove(topic);
            self.topics -= 1;
        }
        self.forget(&h);
        true
    }

    /// Un-counts a message that has left its topic's queue.
    /// The seq the next held message gets (its store entry id).
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Whether message `seq` is held under `topic`.
    pub(crate) fn is_held(&mut self, topic: &str, seq: u64) -> bool {
        self.trie
            .get_mut(topic)
            .is_some_and(|h| h.queue.binary_search_by_key(&seq, |h| h.seq).is_ok())
    }

    fn forget(&mut self, h: &Held) {
        if self.durable {
            let id = h.msg.durable_id.load(std::sync::atomic::Ordering::Acquire);
            if id != 0 {
                self.forgotten.push((h.msg.topic.clone(), h.seq, id));
            }
        }
        self.order.remove(&h.seq);
        if let Some(t) = h.msg.expires_at {
            self.expiries.remove(&(t, h.seq));
        }
        self.messages -= 1;
        self.bytes -= h.size;
        self.charge.sub(h.size);
    }
}

#[cfg(test)]
mod tests;
