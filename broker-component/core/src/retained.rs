//! Retained messages (§3.3.1.3): the last retained PUBLISH per topic, sent to
//! new subscriptions that match it.
//!
//! Indexed by topic level (`level_trie`), so a SUBSCRIBE walks only the
//! branches its filter can match, and stops once the subscriber's queue is
//! full: one SUBSCRIBE costs O(what it can deliver), not O(store).

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Instant;

use crate::level_trie::{LevelTrie, Walk};
use crate::message::Message;

#[derive(Default)]
pub(crate) struct RetainedStore {
    trie: LevelTrie<Arc<Message>>,
    len: usize,
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

impl RetainedStore {
    /// Stores `msg` as the topic's retained message; an empty payload deletes it.
    pub(crate) fn set(&mut self, msg: &Arc<Message>) {
        if msg.payload.is_empty() {
            if self.trie.remove(&msg.topic).is_some() {
                self.len -= 1;
            }
        } else if self
            .trie
            .node_mut(&msg.topic)
            .value
            .replace(Arc::clone(msg))
            .is_none()
        {
            self.len += 1;
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
        let mut found = Found::default();
        let mut expired: Vec<String> = Vec::new();
        if room > 0 {
            let walk = self.trie.for_each_match(filter, budget, |m| {
                if m.is_expired(now) {
                    expired.push(m.topic.clone());
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
            if self.trie.remove(&topic).is_some() {
                self.len -= 1;
            }
        }
        found.messages.sort_by(|a, b| a.topic.cmp(&b.topic));
        found
    }

    pub(crate) fn len(&self) -> usize {
        self.len
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
        r.set(&msg("a/b", "1", None, now));
        r.set(&msg("a/b", "2", None, now));
        r.set(&msg("a/c", "3", None, now));
        r.set(&msg("$SYS/x", "4", None, now));
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
        r.set(&msg("a/b", "", None, now));
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
            r.set(&msg(&format!("t/{i}"), "x", None, now));
        }
        r.set(&msg("old/1", "x", Some(1), now));
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
}
