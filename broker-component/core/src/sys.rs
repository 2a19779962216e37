//! `$SYS` topics: broker statistics published as retained messages every
//! `sys_interval`, so a new subscriber gets current values at once.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use musqratt_codec::QoS;

use crate::broker::Broker;
use crate::budget::LimitHit;
use crate::connection::Output;
use crate::message::Message;
use crate::metrics::Counter;

impl Broker {
    pub(crate) fn publish_sys_if_due(&self, now: Instant, out: &mut Output) {
        {
            let mut next = self.next_sys.lock();
            if *next > now {
                return;
            }
            *next = now + self.config.sys_interval;
        }
        let m = &self.metrics;
        let counter = |c: &Counter| c.get().to_string();
        let values = [
            ("$SYS/broker/version", self.config.version.clone()),
            (
                "$SYS/broker/uptime",
                format!("{} seconds", now.duration_since(self.started).as_secs()),
            ),
            (
                "$SYS/broker/clients/connected",
                counter(&m.clients_connected),
            ),
            ("$SYS/broker/topics/count", self.topic_count().to_string()),
            (
                "$SYS/broker/messages/received",
                counter(&m.messages_received),
            ),
            ("$SYS/broker/messages/sent", counter(&m.messages_sent)),
            (
                "$SYS/broker/messages/held",
                self.held_message_count().to_string(),
            ),
            ("$SYS/broker/messages/dropped", counter(&m.messages_dropped)),
            (
                "$SYS/broker/messages/retained/refused",
                counter(&m.retained_refused),
            ),
            (
                "$SYS/broker/messages/refused/memory",
                self.limit_log.count(LimitHit::Memory).to_string(),
            ),
            (
                "$SYS/broker/messages/refused/disk",
                self.limit_log.count(LimitHit::Disk).to_string(),
            ),
            // Bytes messages pin against limits.max_memory_mb (0 without a budget).
            (
                "$SYS/broker/memory/messages/bytes",
                self.memory.used().to_string(),
            ),
            ("$SYS/broker/bytes/received", counter(&m.bytes_received)),
            ("$SYS/broker/bytes/sent", counter(&m.bytes_sent)),
        ];
        for (topic, value) in values {
            let msg = Message {
                topic: topic.to_string(),
                payload: Bytes::from(value),
                qos: QoS::AtMostOnce,
                retain: true,
                properties: None,
                expires_at: None,
                publisher: 0,
                durable_id: Default::default(),
                release: Default::default(),
            };
            // Not counted as received: they do not come from clients. Never
            // refused: a small fixed set, replaced in place, that must not
            // vanish because a client filled the store.
            self.retained.lock().set(&Arc::new(msg), usize::MAX, now);
        }
        self.route_sys(now, out);
    }

    /// Sends the fresh `$SYS` values to current `$SYS` subscribers.
    fn route_sys(&self, now: Instant, out: &mut Output) {
        let msgs = self
            .retained
            .lock()
            .matching(
                "$SYS/broker/#",
                now,
                usize::MAX,
                &mut crate::level_trie::unlimited(),
            )
            .messages;
        for msg in msgs {
            self.route(msg, None, now, out);
        }
    }
}
