//! An application message as the broker stores it: decoded once, shared by
//! every subscriber through an `Arc`, payload in `Bytes` (no copy per
//! subscriber in the queues; each delivery encodes it once into the worker's
//! transmit buffer, docs/architecture.md "Where bytes are copied").

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use musqratt_codec::{Properties, Publish, QoS};

#[derive(Debug)]
pub struct Message {
    pub topic: String,
    pub payload: Bytes,
    /// QoS it was published with; each subscriber gets min(this, granted).
    pub qos: QoS,
    pub retain: bool,
    /// Only the properties a broker forwards unchanged (§3.3.2.3): payload
    /// format, content type, response topic, correlation data, user properties.
    /// Expiry, topic alias and subscription identifiers are per delivery.
    /// `None` when there are none (the common case): keeps a queued message small.
    pub properties: Option<Box<Properties>>,
    /// When the Message Expiry Interval runs out (None = never).
    pub expires_at: Option<Instant>,
    /// Session id of the publisher, for No Local (0 = the broker itself).
    pub publisher: u64,
    /// The id the durable store keeps this message under; 0 until its first durable
    /// reference writes it (persist.rs, `Broker::persist_message`).
    pub durable_id: AtomicU64,
    /// Released by delivery (docs/storage.md): who waits for its deliveries.
    pub(crate) release: Release,
}

/// Released by delivery (docs/storage.md): the durable queue entries of a message not yet
/// acknowledged by their subscriber, plus one while the publish that made it is handled;
/// counted only for a message whose publisher's PUBACK may wait on them.
#[derive(Debug)]
pub(crate) struct Release {
    undelivered: AtomicU32,
    /// The worker of the publisher's connection, told when `undelivered` reaches 0 so it
    /// can send the PUBACK it holds; `NO_WORKER` for a message nothing waits on that way.
    worker: u32,
}

const NO_WORKER: u32 = u32::MAX;

impl Default for Release {
    fn default() -> Release {
        Release {
            undelivered: AtomicU32::new(1),
            worker: NO_WORKER,
        }
    }
}

impl Message {
    /// Builds the stored message from an incoming PUBLISH (topic already resolved
    /// from any alias). `default_expiry_secs` applies when the publisher set none.
    pub fn from_publish(
        publish: Publish,
        topic: String,
        publisher: u64,
        default_expiry_secs: u32,
        now: Instant,
    ) -> Message {
        let head = (topic, publish.payload, publish.qos, publish.retain);
        Message::new(
            head,
            publish.properties,
            publisher,
            default_expiry_secs,
            now,
        )
    }

    /// Builds the stored message from (topic, payload, QoS, retain) and the
    /// publisher's properties, of a PUBLISH or a will: fixes the expiry
    /// deadline (the publisher's Message Expiry Interval, else the default;
    /// 0 = never) and keeps only the forwarded properties.
    pub fn new(
        (topic, payload, qos, retain): (String, Bytes, QoS, bool),
        properties: Properties,
        publisher: u64,
        default_expiry_secs: u32,
        now: Instant,
    ) -> Message {
        let default = (default_expiry_secs != 0).then_some(default_expiry_secs);
        let expiry = properties.message_expiry_interval.or(default);
        Message {
            topic,
            payload,
            qos,
            retain,
            properties: Message::forwarded_properties(properties),
            expires_at: expiry.map(|s| now + Duration::from_secs(u64::from(s))),
            publisher,
            durable_id: AtomicU64::new(0),
            release: Release::default(),
        }
    }

    /// Counts this message's durable deliveries: once every one of them is acknowledged, its
    /// publisher's PUBACK may leave before the store has written it (handle_publish.rs), and
    /// worker `worker` is told (`Output::delivered`).
    pub(crate) fn release_by_delivery(&mut self, worker: u32) {
        self.release.worker = worker;
    }

    /// A durable queue entry of this message was created (under its session's lock, before
    /// anyone can deliver it).
    pub(crate) fn count_durable_entry(&self) {
        if self.release.worker != NO_WORKER {
            self.release.undelivered.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// A durable queue entry of this message was acknowledged by its subscriber, or (`guard`)
    /// its publish was handled. Returns the worker to tell when that was the last one.
    pub(crate) fn uncount(&self) -> Option<u32> {
        let r = &self.release;
        if r.worker == NO_WORKER {
            return None;
        }
        (r.undelivered.fetch_sub(1, Ordering::AcqRel) == 1).then_some(r.worker)
    }

    /// Whether every durable delivery of this message has been acknowledged (and its publish
    /// handled): what the store would keep of it is no longer needed to deliver it.
    pub fn delivered(&self) -> bool {
        self.release.undelivered.load(Ordering::Acquire) == 0
    }

    /// The message as a PUBLISH (no packet id, no per-delivery properties): how the store
    /// writes it.
    pub fn to_publish(&self) -> Publish {
        Publish {
            dup: false,
            qos: self.qos,
            retain: self.retain,
            topic: self.topic.clone(),
            packet_id: None,
            properties: self.properties.as_deref().cloned().unwrap_or_default(),
            payload: self.payload.clone(),
        }
    }

    /// Keeps only the properties forwarded unchanged to subscribers.
    pub fn forwarded_properties(p: Properties) -> Option<Box<Properties>> {
        let kept = Properties {
            payload_format_indicator: p.payload_format_indicator,
            content_type: p.content_type,
            response_topic: p.response_topic,
            correlation_data: p.correlation_data,
            user_properties: p.user_properties,
            ..Properties::default()
        };
        (!kept.is_empty()).then(|| Box::new(kept))
    }

    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|t| now >= t)
    }

    /// The Message Expiry Interval to forward: the remaining lifetime in whole
    /// seconds, rounded up so a live message never goes out with 0 (§3.3.2.3.3).
    pub fn remaining_expiry(&self, now: Instant) -> Option<u32> {
        self.expires_at.map(|t| {
            let left = t.saturating_duration_since(now);
            let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            secs.clamp(1, u64::from(u32::MAX)) as u32
        })
    }
}
