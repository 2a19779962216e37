//! The settings the protocol core needs (a subset of the server's config file).

use std::time::Duration;

/// The largest high watermark (see [`BrokerConfig::queue_high_watermark`]).
const MAX_HIGH_WATERMARK: usize = 1000;

/// Broker settings; `Default` gives the documented defaults of docs/design.md §5.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerConfig {
    /// Whether a CONNECT without a User Name is accepted (`auth.allow_anonymous`, default true).
    /// Refused: v5 CONNACK 0x87 Not authorized, 3.1.1 return code 5 (auth.rs).
    pub allow_anonymous: bool,
    /// Hold messages published to topics nobody subscribes to (docs/design.md §3).
    pub hold_enabled: bool,
    /// Per-topic bound of the hold queue; the oldest message is dropped beyond it.
    pub hold_max_messages_per_topic: usize,
    /// Bound on the bytes held across all topics (`hold.max_total_mb`, default
    /// 64 MiB): each message is charged its topic, payload and properties
    /// plus a fixed overhead; beyond it the oldest held message of any topic
    /// is dropped (counted in `$SYS/broker/messages/dropped`).
    pub hold_max_total_bytes: usize,
    /// Session expiry for 3.1.1 clients with clean session off (seconds).
    pub session_default_expiry_secs: u32,
    /// Upper bound on a client's keep-alive; 0 = no bound (Server Keep Alive).
    pub max_keepalive_secs: u16,
    /// Message expiry applied to publishes that carry none; 0 = never.
    pub message_default_expiry_secs: u32,
    /// Largest packet accepted from clients (whole packet, bytes).
    pub max_packet_size: u32,
    /// Outgoing QoS 1/2 window per client, and our Receive Maximum.
    pub max_inflight: u16,
    /// Most levels a topic name or filter may have (`limits.max_topic_levels`,
    /// default 128): a deeper SUBSCRIBE filter is refused in the SUBACK, a
    /// deeper PUBLISH or will topic is a protocol violation (0x90).
    pub max_topic_levels: usize,
    /// Most subscriptions one session may have (`limits.max_subscriptions_per_client`,
    /// default 100,000; 0 in the file = unlimited, `usize::MAX` here). Each is a
    /// trie node and a session record a client creates at will: a SUBSCRIBE
    /// filter beyond it is refused in the SUBACK (v5 0x97 Quota exceeded,
    /// 3.1.1 0x80); replacing an existing subscription is always allowed.
    pub max_subscriptions_per_client: usize,
    /// Bound on the bytes of the retained store (`limits.max_retained_mb`,
    /// default 64 MiB), charged like `hold_max_total_bytes` (topic, payload,
    /// properties and a fixed overhead). A retained PUBLISH that would grow the
    /// store past it is still delivered to current subscribers but not
    /// retained; replacing or deleting one that does not grow it always works.
    /// The broker's own `$SYS` messages are not charged (a fixed, small set).
    pub max_retained_bytes: usize,
    /// Messages queued per session beyond the inflight window; also bounds the
    /// retained and held messages one SUBSCRIBE queues.
    pub max_queued_messages: usize,
    /// Bytes of messages queued per session (`limits.max_queued_mb`, default
    /// 0 in the file = unlimited, `usize::MAX` here), each charged the size of
    /// the message it pins (topic, payload, properties, overhead). Beyond it a
    /// message for the session is dropped as beyond `max_queued_messages`
    /// (a QoS 1/2 one evicting a queued QoS 0 first). An empty queue takes any
    /// message, so a session pins at most this plus one message.
    pub max_queued_bytes: usize,
    /// Bytes that queued, held and retained messages may pin together, charged as
    /// `max_queued_bytes` (budget.rs). `usize::MAX` = none. The runtime derives it from
    /// `limits.max_memory_mb` less what the process needs besides messages. Beyond 90%
    /// QoS 0 messages are refused, beyond 100% QoS 1/2 ones (v5 publishers get 0x97).
    pub max_memory_bytes: usize,
    /// The transport's backstop: it resumes a publisher paused this long even
    /// if no resume came (a subscriber that stopped moving sends none).
    pub publisher_stall: Duration,
    /// Flow control (`flow.rs`, docs/core.md): a subscriber pauses publishers
    /// only if, at its measured drain rate, it is back at its low watermark
    /// within this time, and a pause ends after it; a slower subscriber drops
    /// its own excess instead (`limits.max_publisher_pause_ms`).
    pub max_publisher_pause: Duration,
    /// Topic Alias Maximum we offer to v5 clients.
    pub topic_alias_maximum: u16,
    /// Topic aliases we assign per v5 connection (server → client), whatever
    /// Topic Alias Maximum the client offers (§3.3.2.3.4: an upper bound, not
    /// an obligation); the least recently used alias is reassigned beyond it.
    /// 0 = never send aliases.
    pub max_outbound_aliases: u16,
    /// Bytes of topic names kept for those aliases per connection; a longer
    /// topic is sent in full, and least recently used aliases are reassigned
    /// to stay under it.
    pub max_outbound_alias_bytes: usize,
    /// How often `$SYS` topics are republished.
    pub sys_interval: Duration,
    /// A connection that sends no CONNECT within this time is closed
    /// (`limits.connect_timeout_secs`, default 10 s). It also bounds how long a
    /// partial CONNECT may take to arrive.
    pub connect_timeout: Duration,
    /// Largest CONNECT accepted (whole packet, bytes; `limits.max_connect_size`,
    /// default 1 MiB, and never more than `max_packet_size`). Before CONNECT
    /// nothing is known about the client, so its first packet is bounded on its
    /// fixed header, before its body is buffered. 1 MiB holds any CONNECT whose
    /// five length-prefixed fields (client id, will topic, will payload, user
    /// name, password) are at their 64 KiB maximum (~320 KiB) plus ~700 KiB of
    /// CONNECT and will properties.
    pub max_connect_size: u32,
    /// A packet whose first byte has arrived must be complete within this time
    /// (`limits.packet_timeout_secs`, default 60 s; zero: no bound), else the
    /// connection is closed. Without it a client with keep-alive 0 could
    /// trickle one packet forever and pin its partial bytes. Generous: 60 s
    /// carries a 256 KiB message over a 50 kbit/s cellular link.
    pub packet_timeout: Duration,
    /// Version string published in `$SYS/broker/version`.
    pub version: String,
}

impl BrokerConfig {
    /// Whether `topic` (a name or a filter) has more levels than allowed.
    pub fn too_many_levels(&self, topic: &str) -> bool {
        // Counting separators can stop early: a 64 KiB string has at most
        // 32,768 levels, and the count is all we need.
        topic
            .bytes()
            .filter(|&b| b == b'/')
            .take(self.max_topic_levels)
            .count()
            >= self.max_topic_levels
    }

    /// Queue length at which an online subscriber that keeps up pauses its
    /// publishers: half the queue, but at most `MAX_HIGH_WATERMARK`, so that the
    /// backlog a pause waits out stays small however deep the queue (a deep queue
    /// is room for offline time and slow subscribers, not for a fast subscriber
    /// to fall far behind before its publishers slow down).
    pub fn queue_high_watermark(&self) -> usize {
        (self.max_queued_messages / 2).clamp(1, MAX_HIGH_WATERMARK)
    }

    /// Queue length at which paused publishers resume.
    pub fn queue_low_watermark(&self) -> usize {
        self.queue_high_watermark() / 2
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            allow_anonymous: true,
            hold_enabled: true,
            hold_max_messages_per_topic: 1000,
            hold_max_total_bytes: 64 << 20,
            session_default_expiry_secs: 3600,
            max_keepalive_secs: 0,
            message_default_expiry_secs: 0,
            max_packet_size: musqratt_codec::MAX_REMAINING_LENGTH as u32,
            max_inflight: 64,
            max_topic_levels: 128,
            max_queued_messages: 1000,
            max_subscriptions_per_client: 100_000,
            max_retained_bytes: 64 << 20,
            max_queued_bytes: usize::MAX,
            max_memory_bytes: usize::MAX,
            topic_alias_maximum: 16,
            max_outbound_aliases: 16,
            max_outbound_alias_bytes: 8192,
            publisher_stall: Duration::from_secs(1),
            max_publisher_pause: Duration::from_millis(50),
            sys_interval: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            max_connect_size: 1024 * 1024,
            packet_timeout: Duration::from_secs(60),
            version: format!("musqratt {}", env!("CARGO_PKG_VERSION")),
        }
    }
}
