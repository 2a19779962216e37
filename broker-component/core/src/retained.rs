//! Retained messages (§3.3.1.3): the last retained PUBLISH per topic, sent to
//! new subscriptions that match it.
//!
//! Indexed by topic level (`level_trie`), so a SUBSCRIBE walks only the
//! branches its filter can match, and stops once the subscriber's queue is
//! full: one SUBSCRIBE costs O(what it can deliver), not O(store).
//!
//! Bounded in bytes (`limits.max_retained_mb`), each message charged as a held
//! one is (`hold::held_size`): a client can retain on as many distinct topics
//! as it likes, so without a bound the store grows until the process dies.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Instant;

use crate::hold::held_size;
use crate::level_trie::{LevelTrie, Walk};
use crate::log_limit::LogLimit;
use crate::message::Message;

#[derive(Default)]
pub(crate) struct RetainedStore {
    trie: LevelTrie<Arc<Message>>,
    len: usize,
    /// Bytes charged to the stored messages (bounded by `limits.max_retained_mb`).
    bytes: usize,
    /// The broker's memory budget, charged with `bytes` (budget.rs).
    pub(crate) charge: crate::budget::Charge,
    /// Refused since the last log line.
    refusal_log: LogLimit,
}

/// What became of a retained PUBLISH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retained {
    /// Stored (or, with an empty payload, the topic's retained message deleted).
    Stored,
    /// Storing it would have grown the store past its byte limit: not stored.
    Refused,
}

/// What a SUBSCRIBE found in the retained store.
#[derive(Default)]
pub(crate) struct Found {
    /// Live matching messages, at most the `room` asked for, by topic.
    pub(crate) messages: Vec<Arc<Message>>,
    /// More matched than there was room for: the walk stopped there.
    pub(crate) truncated: bool,
    /// The walk ran out of node budget before it was done.
    pub(crate) out_of_budget: bool,
}

/// What a retained message costs against `limits.max_retained_mb`: what a
/// held one does. The broker's own `$SYS` messages cost nothing: a small fixed
/// set, whose values grow by a digit now and then, must neither be refused nor
/// make room vanish that a client's delete just freed.
fn charge(m: &Message) -> usize {
    if m.publisher == 0 && m.topic.starts_with("$SYS/") {
        0
    } else {
        held_size(m)
    }
}

impl RetainedStore {
    /// Stores `msg` as the topic's retained message; an empty payload deletes it.
    ///
    /// A message that would grow the store past `max_bytes` is refused (the
    /// caller still routes it); one that replaces a message at least its size
    /// never grows the store and is always stored. A refused message also
    /// removes the topic's previous retained message: that is no longer the
    /// last one retained on the topic, and a new subscriber must not take a
    /// stale value (say, "online") for the current one.
    /// The store id of the message retained under `topic` (0 = none, or not stored).
    pub(crate) fn durable_id_of(&mut self, topic: &str) -> u64 {
        self.trie.get_mut(topic).map_or(0, |m| {
            m.durable_id.load(std::sync::atomic::Ordering::Acquire)
        })
    }

    pub(crate) fn set(&mut self, msg: &Arc<Message>, max_bytes: usize, now: Instant) -> Retained {
        if msg.payload.is_empty() {
            self.remove(&msg.topic);
            return Retained::Stored;
        }
        let size = charge(msg);
        // Looked up before `node_mut`: a refused topic must not create trie nodes.
        let old = self.trie.get_mut(&msg.topic).map_or(0, |m| charge(m));
        if size > old && self.bytes - old + size > max_bytes {
            self.remove(&msg.topic);
            self.note_refused(now);
            return Retained::Refused;
        }
        match self
            .trie
            .node_mut(&msg.topic)
            .value
            .replace(Arc::clone(msg))
        {
            Some(prev) => {
                self.bytes -= charge(&prev);
                self.charge.sub(charge(&prev));
            }
            None => self.len += 1,
        }
        self.bytes += size;
        self.charge.add(size);
        Retained::Stored
    }

    /// Removes the topic's retained message, if any.
    fn remove(&mut self, topic: &str) {
        if let Some(m) = self.trie.remove(topic) {
            self.len -= 1;
            self.bytes -= charge(&m);
            self.charge.sub(charge(&m));
        }
    }

    /// Logs refusals rate-limited (`LogLimit`): a client retaining on a
    /// million new topics must not write a million log lines.
    fn note_refused(&mut self, now: Instant) {
        if let Some(refused) = self.refusal_log.note(1, now) {
            tracing::warn!(
                refused,
                retained_bytes = self.bytes,
                "limits.max_retained_mb reached: retained PUBLISH delivered but not retained"
            );
        }
    }

    /// At most `room` live retained messages matching `filter`. Expired ones
    /// met on the way are removed (they are never delivered, §3.3.2.3.3).
    /// Each node visited costs one unit of `budget` (see `LevelTrie::for_each_match`).
    pub(crate) fn matching(
        &mut self,
        filter: &str,
        now: Instant,
        room: usize,
        budget: &mut usize,
    ) -> Found {
        self.matching_readable(filter, now, room, budget, &|_| true)
    }

    /// As [`matching`](Self::matching), only the messages whose topic the subscriber may read
    /// (`readable`, the ACL's answer).
    pub(crate) fn matching_readable(
        &mut self,
        filter: &str,
        now: Instant,
        room: usize,
        budget: &mut usize,
        readable: &dyn Fn(&str) -> bool,
    ) -> Found {
        let mut found = Found::default();
        let mut expired: Vec<String> = Vec::new();
        if room > 0 {
            let walk = self.trie.for_each_match(filter, budget, |m| {
                if m.is_expired(now) {
                    expired.push(m.topic.clone());
                } else if !readable(&m.topic) {
                    // Not for this subscriber (ACL).
                } else if found.messages.len() == room {
                    found.truncated = true;
                    return ControlFlow::Break(());
                } else {
                    found.messages.push(Arc::clone(m));
                }
                ControlFlow::Continue(())
            });
            found.out_of_budget = walk == Walk::OutOfBudget;
        }
        for topic in expired {
            self.remove(&topic);
        }
        found.messages.sort_by(|a, b| a.topic.cmp(&b.topic));
        found
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Bytes charged to retained messages (bounded by `limits.max_retained_mb`).
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use musqratt_codec::{Properties, QoS};
    use std::time::Duration;

    fn msg(topic: &str, payload: &'static str, expiry: Option<u32>, now: Instant) -> Arc<Message> {
        let props = Properties {
            message_expiry_interval: expiry,
            ..Properties::default()
        };
        let head = (
            topic.to_owned(),
            Bytes::from(payload),
            QoS::AtLeastOnce,
            true,
        );
        Arc::new(Message::new(head, props, 1, 0, now))
    }

    fn topics(f: &Found) -> Vec<&str> {
        f.messages.iter().map(|m| m.topic.as_str()).collect()
    }

    #[test]
    fn set_replace_delete_and_match() {
        let now = Instant::now();
        let mut r = RetainedStore::default();
        r.set(&msg("a/b", "1", None, now), usize::MAX, now);
        r.set(&msg("a/b", "2", None, now), usize::MAX, now);
        r.set(&msg("a/c", "3", None, now), usize::MAX, now);
        r.set(&msg("$SYS/x", "4", None, now), usize::MAX, now);
        assert_eq!(r.len(), 3);
        let f = r.matching("a/+", now, 10, &mut crate::level_trie::unlimited());
        assert_eq!(topics(&f), ["a/b", "a/c"]);
        assert_eq!(f.messages[0].payload, "2", "the last retained message wins");
        assert_eq!(
            topics(&r.matching("#", now, 10, &mut crate::level_trie::unlimited())),
            ["a/b", "a/c"]
        );
        assert_eq!(
            topics(&r.matching("$SYS/#", now, 10, &mut crate::level_trie::unlimited())),
            ["$SYS/x"]
        );
        r.set(&msg("a/b", "", None, now), usize::MAX, now);
        assert_eq!(r.len(), 2);
        assert_eq!(
            topics(&r.matching("a/b", now, 10, &mut crate::level_trie::unlimited())),
            Vec::<&str>::new()
        );
    }

    #[test]
    fn stops_at_room_and_purges_expired_it_meets() {
        let now = Instant::now();
        let mut r = RetainedStore::default();
        for i in 0..100 {
            r.set(&msg(&format!("t/{i}"), "x", None, now), usize::MAX, now);
        }
        r.set(&msg("old/1", "x", Some(1), now), usize::MAX, now);
        let f = r.matching("t/#", now, 10, &mut crate::level_trie::unlimited());
        assert_eq!(f.messages.len(), 10);
        assert!(f.truncated);
        assert!(r
            .matching("t/#", now, 0, &mut crate::level_trie::unlimited())
            .messages
            .is_empty());
        let f = r.matching("t/#", now, 100, &mut crate::level_trie::unlimited());
        assert_eq!((f.messages.len(), f.truncated), (100, false));
        let later = now + Duration::from_secs(2);
        assert!(r
            .matching("old/+", later, 10, &mut crate::level_trie::unlimited())
            .messages
            .is_empty());
        assert_eq!(r.len(), 100, "the expired message was removed");
    }

    #[test]
    fn byte_limit_refuses_growth_but_allows_replacing_and_deleting() {
        let now = Instant::now();
        let mut r = RetainedStore::default();
        let one = held_size(&msg("t/1", "xxxx", None, now));
        let max = 3 * one;
        for i in 1..=3 {
            assert_eq!(
                r.set(&msg(&format!("t/{i}"), "xxxx", None, now), max, now),
                Retained::Stored
            );
        }
        assert_eq!(r.bytes(), max);
        // A new topic would grow the store past the limit: refused, no trie node made.
        assert_eq!(
            r.set(&msg("t/4", "xxxx", None, now), max, now),
            Retained::Refused
        );
        assert!(r.trie.get("t/4").is_none());
        // Replacing with a message of the same size or smaller is always allowed.
        assert_eq!(
            r.set(&msg("t/1", "yyyy", None, now), max, now),
            Retained::Stored
        );
        assert_eq!(
            r.set(&msg("t/2", "z", None, now), max, now),
            Retained::Stored
        );
        assert_eq!(r.bytes(), max - 3);
        // A replacement that grows past the limit is refused and the stale one removed.
        assert_eq!(
            r.set(&msg("t/3", "xxxxxxxx", None, now), max, now),
            Retained::Refused
        );
        assert_eq!(
            topics(&r.matching("t/#", now, 10, &mut crate::level_trie::unlimited())),
            ["t/1", "t/2"]
        );
        // Deleting frees room for a new topic.
        assert_eq!(
            r.set(&msg("t/1", "", None, now), max, now),
            Retained::Stored
        );
        assert_eq!(
            r.set(&msg("t/4", "xxxx", None, now), max, now),
            Retained::Stored
        );
        assert_eq!(r.len(), 2);
        assert_eq!(r.bytes(), 2 * one - 3);
    }
}
