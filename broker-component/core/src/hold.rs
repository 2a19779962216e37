//! Hold queues (DESIGN.md §3): a PUBLISH that matches no subscription is kept
//! per topic until a matching SUBSCRIBE is acknowledged, then delivered once.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use musqratt_codec::topic;

use crate::message::Message;

#[derive(Default)]
pub(crate) struct HoldQueues {
    by_topic: HashMap<String, VecDeque<Arc<Message>>>,
}

impl HoldQueues {
    /// Holds `msg`; beyond `max_per_topic` the oldest is dropped. Returns the
    /// number of messages dropped (0 or 1).
    pub(crate) fn hold(&mut self, msg: Arc<Message>, max_per_topic: usize) -> usize {
        if max_per_topic == 0 {
            return 1;
        }
        let q = self.by_topic.entry(msg.topic.clone()).or_default();
        let mut dropped = 0;
        while q.len() >= max_per_topic {
            q.pop_front();
            dropped += 1;
        }
        q.push_back(msg);
        dropped
    }

    /// Removes and returns every live held message matching `filter`, in publish
    /// order per topic. Topics left empty cease to exist.
    pub(crate) fn take_matching(&mut self, filter: &str, now: Instant) -> Vec<Arc<Message>> {
        if self.by_topic.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        if !filter.contains(['+', '#']) {
            if let Some(q) = self.by_topic.remove(filter) {
                out.extend(q.into_iter().filter(|m| !m.is_expired(now)));
            }
            return out;
        }
        let mut topics: Vec<String> = self
            .by_topic
            .keys()
            .filter(|t| topic::matches(filter, t))
            .cloned()
            .collect();
        topics.sort();
        for t in topics {
            if let Some(q) = self.by_topic.remove(&t) {
                out.extend(q.into_iter().filter(|m| !m.is_expired(now)));
            }
        }
        out
    }

    /// Drops expired messages and the topics they leave empty. Returns how many expired.
    pub(crate) fn purge_expired(&mut self, now: Instant) -> usize {
        let mut n = 0;
        self.by_topic.retain(|_, q| {
            let before = q.len();
            q.retain(|m| !m.is_expired(now));
            n += before - q.len();
            !q.is_empty()
        });
        n
    }

    /// Topics that currently hold messages.
    pub(crate) fn topic_count(&self) -> usize {
        self.by_topic.len()
    }

    pub(crate) fn message_count(&self) -> usize {
        self.by_topic.values().map(VecDeque::len).sum()
    }
}
