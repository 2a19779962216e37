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
            publisher_stall: Duration::from_secs(1),
            sys_interval: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            max_connect_size: 1024 * 1024,
            packet_timeout: Duration::from_secs(60),
            version: format!("musqratt {}", env!("CARGO_PKG_VERSION")),
        }
    }
}
