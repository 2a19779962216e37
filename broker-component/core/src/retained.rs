//! Retained messages (§3.3.1.3): the last retained PUBLISH per topic, sent to
//! new subscriptions that match it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use musqratt_codec::topic;

use crate::message::Message;

#[derive(Default)]
pub(crate) struct RetainedStore {
    by_topic: HashMap<String, Arc<Message>>,
}

impl RetainedStore {
    /// Stores `msg` as the topic's retained message; an empty payload deletes it.
    pub(crate) fn set(&mut self, msg: &Arc<Message>) {
        if msg.payload.is_empty() {
            self.by_topic.remove(&msg.topic);
        } else {
            self.by_topic.insert(msg.topic.clone(), Arc::clone(msg));
        }
    }

    /// The live retained messages matching `filter` (expired ones are purged).
    pub(crate) fn matching(&mut self, filter: &str, now: Instant) -> Vec<Arc<Message>> {
        self.by_topic.retain(|_, m| !m.is_expired(now));
        let has_wildcard = filter.contains(['+', '#']);
        if !has_wildcard {
            return self.by_topic.get(filter).cloned().into_iter().collect();
        }
        let mut found: Vec<Arc<Message>> = self
            .by_topic
            .values()
            .filter(|m| topic::matches(filter, &m.topic))
            .cloned()
            .collect();
        found.sort_by(|a, b| a.topic.cmp(&b.topic));
        found
    }

    pub(crate) fn len(&self) -> usize {
        self.by_topic.len()
    }
}
