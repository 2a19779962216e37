//! The settings the protocol core needs (a subset of the server's config file).

use std::time::Duration;

/// Broker settings; `Default` gives the documented defaults of DESIGN.md §5.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerConfig {
    /// Hold messages published to topics nobody subscribes to (DESIGN.md §3).
    pub hold_enabled: bool,
    /// Per-topic bound of the hold queue; the oldest message is dropped beyond it.
    pub hold_max_messages_per_topic: usize,
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
    /// Messages queued per session beyond the inflight window.
    pub max_queued_messages: usize,
    /// A subscriber whose queue has not moved for this long no longer slows
    /// publishers down (see `docs/core.md`, flow control): its overflow is dropped.
    pub publisher_stall: Duration,
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
    /// A connection that sends no CONNECT within this time is closed.
    pub connect_timeout: Duration,
    /// Version string published in `$SYS/broker/version`.
    pub version: String,
}

impl BrokerConfig {
    /// Queue length at which an online subscriber pauses its publishers.
    pub fn queue_high_watermark(&self) -> usize {
        (self.max_queued_messages / 2).max(1)
    }

    /// Queue length at which paused publishers resume.
    pub fn queue_low_watermark(&self) -> usize {
        self.queue_high_watermark() / 2
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            hold_enabled: true,
            hold_max_messages_per_topic: 1000,
            session_default_expiry_secs: 3600,
            max_keepalive_secs: 0,
            message_default_expiry_secs: 0,
            max_packet_size: musqratt_codec::MAX_REMAINING_LENGTH as u32,
            max_inflight: 64,
            max_queued_messages: 1000,
            topic_alias_maximum: 16,
            max_outbound_aliases: 16,
            max_outbound_alias_bytes: 8192,
            publisher_stall: Duration::from_secs(1),
            sys_interval: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            version: format!("musqratt {}", env!("CARGO_PKG_VERSION")),
        }
    }
}
