//! Flow control between clients (docs/core.md, "Flow control"): when may a
//! subscriber's backlog pause the publishers that feed it, and what happens to
//! its messages when it may not.
//!
//! A publisher is paused only for a subscriber that *keeps up*: one that, at
//! the rate it has been moving its queue onto the wire, is back at its low
//! watermark within `BrokerConfig::max_publisher_pause`. That is the fast
//! subscriber momentarily behind (fan-in: eight publishers, one subscriber),
//! for which a short pause loses nothing. A slower subscriber never pauses
//! anyone: its queue fills to `limits.max_queued_messages` and it loses its
//! own excess, QoS 0 first, counted in `$SYS/broker/messages/dropped`. So one
//! slow consumer cannot slow the publishers that other clients depend on.
//!
//! The rate is measured only while the subscriber has a backlog (idle time
//! says nothing about its speed), over the current sample and the previous
//! one, each at least `max_publisher_pause` long, so a scheduling hiccup of a
//! few milliseconds does not flip the verdict. A backlog younger than
//! `max_publisher_pause` has not been measured yet and is given the benefit
//! of the doubt; the pause it causes ends within that time once the
//! subscriber moves (or at the transport's `publisher_stall` if it never
//! does), and from then on the measurement decides.

use std::time::{Duration, Instant};

use musqratt_codec::QoS;

use crate::config::BrokerConfig;
use crate::connection::ConnRef;
use crate::session::Session;

/// A session's flow-control bookkeeping: its drain-rate measurement, its
/// paused publishers' clock and its current overflow burst.
#[derive(Debug, Default)]
pub struct FlowState {
    /// When the current backlog began (a message queued on an empty queue).
    backlog_since: Option<Instant>,
    /// Start of the current rate sample, and messages moved onto the wire in it.
    sample_start: Option<Instant>,
    moved: u64,
    /// The previous sample, kept so a fresh sample is never judged alone.
    prev_span: Duration,
    prev_moved: u64,
    /// When the oldest of the current waiters was paused.
    paused_since: Option<Instant>,
    /// Messages dropped since the queue was last at its low watermark: the
    /// first drop of a burst is logged, the rest only counted.
    dropped_in_burst: u64,
    /// The queue may hold a QoS 0 message (set when one is queued, cleared
    /// when a scan finds none), so a full queue of QoS 1/2 is not rescanned
    /// for every arrival.
    qos0_queued: bool,
}

impl FlowState {
    /// A message is about to be queued. On an empty queue a backlog starts,
    /// and with it a new measurement (the time it sat idle is no evidence).
    pub fn before_enqueue(&mut self, queue_empty: bool, now: Instant) {
        if !queue_empty && self.backlog_since.is_some() {
            return;
        }
        self.backlog_since = Some(now);
        self.sample_start = Some(now);
        self.moved = 0;
        self.prev_span = Duration::ZERO;
        self.prev_moved = 0;
    }

    /// `moved` messages left the queue for the wire (or expired) at `now`.
    fn record_drain(&mut self, moved: u64, now: Instant, sample: Duration) {
        let Some(start) = self.sample_start else {
            return;
        };
        self.moved = self.moved.saturating_add(moved);
        let span = now.saturating_duration_since(start);
        if span >= sample {
            self.prev_span = span;
            self.prev_moved = self.moved;
            self.sample_start = Some(now);
            self.moved = 0;
        }
    }
}

impl Session {
    /// Whether a publisher should pause after queueing here: the subscriber
    /// is online, its queue is past the high watermark, and it keeps up (a
    /// slow or stalled subscriber must not hold anyone back; it drops instead).
    pub fn congested(&self, config: &BrokerConfig, now: Instant) -> bool {
        self.conn.is_some()
            && self.queue.len() >= config.queue_high_watermark()
            && self.keeps_up(config, now)
    }

    /// Whether, at the rate measured over this backlog, the queue is back at
    /// the low watermark within `max_publisher_pause`. An unmeasured backlog
    /// (younger than that) gets the benefit of the doubt.
    pub fn keeps_up(&self, config: &BrokerConfig, now: Instant) -> bool {
        let budget = config.max_publisher_pause;
        if budget.is_zero() {
            return false; // flow control off: every subscriber drops its own excess
        }
        let f = &self.flow;
        let (Some(since), Some(start)) = (f.backlog_since, f.sample_start) else {
            // Queued by a path that starts no measurement (retained messages
            // on SUBSCRIBE): nothing says it keeps up.
            return self.queue.is_empty();
        };
        if now.saturating_duration_since(since) < budget {
            return true;
        }
        let span = f.prev_span + now.saturating_duration_since(start);
        let moved = u128::from(f.prev_moved.saturating_add(f.moved));
        let excess = self
            .queue
            .len()
            .saturating_sub(config.queue_low_watermark()) as u128;
        // excess / (moved / span) <= budget, without dividing by a zero rate.
        excess.saturating_mul(span.as_nanos()) <= budget.as_nanos().saturating_mul(moved)
    }

    /// Registers `from` as paused by this session.
    pub fn add_waiter(&mut self, from: ConnRef, now: Instant) {
        if self.waiters.is_empty() {
            self.flow.paused_since = Some(now);
        }
        if !self.waiters.contains(&from) {
            self.waiters.push(from);
        }
    }

    /// Paused publishers to resume: all of them.
    pub fn release_waiters(&mut self, resumes: &mut Vec<ConnRef>) {
        self.flow.paused_since = None;
        resumes.append(&mut self.waiters);
    }

    /// Resumes the paused publishers once they may read again: the queue is
    /// back at its low watermark, the subscriber turned out not to keep up,
    /// or they have been paused for `max_publisher_pause` (a publisher still
    /// feeding a subscriber that keeps up is paused again by its next PUBLISH,
    /// so it runs at that subscriber's pace; a pause never outlasts the budget
    /// while the subscriber moves).
    pub fn release_waiters_if_due(
        &mut self,
        config: &BrokerConfig,
        now: Instant,
        resumes: &mut Vec<ConnRef>,
    ) {
        if self.waiters.is_empty() {
            return;
        }
        let overdue = self
            .flow
            .paused_since
            .is_some_and(|t| now.saturating_duration_since(t) >= config.max_publisher_pause);
        if overdue
            || self.queue.len() <= config.queue_low_watermark()
            || !self.keeps_up(config, now)
        {
            self.release_waiters(resumes);
        }
    }

    /// The end of `drain`: `moved` messages left the queue at `now`. Updates
    /// the rate, resumes publishers that are due, and closes an overflow
    /// burst once the queue is back at its low watermark.
    pub fn drained(
        &mut self,
        moved: usize,
        config: &BrokerConfig,
        now: Instant,
        resumes: &mut Vec<ConnRef>,
    ) {
        self.flow
            .record_drain(moved as u64, now, config.max_publisher_pause);
        if self.queue.is_empty() {
            // The backlog is over; the next one is measured afresh (also when
            // it starts on a path that does not call `before_enqueue`).
            self.flow.backlog_since = None;
            self.flow.sample_start = None;
        }
        self.release_waiters_if_due(config, now, resumes);
        if self.flow.dropped_in_burst > 0 && self.queue.len() <= config.queue_low_watermark() {
            tracing::debug!(client = %self.client_id, dropped = self.flow.dropped_in_burst,
                "subscriber caught up with its queue");
            self.flow.dropped_in_burst = 0;
        }
    }

    /// Makes room in a full queue for a QoS 1/2 message by dropping the
    /// oldest queued QoS 0 one (QoS 0 promises nothing). Returns whether one
    /// was dropped; the caller counts it.
    pub fn evict_qos0(&mut self, incoming: QoS) -> bool {
        if incoming == QoS::AtMostOnce || !self.flow.qos0_queued {
            return false;
        }
        match self.queue.iter().position(|o| o.qos == QoS::AtMostOnce) {
            Some(i) => self.remove_queued(i),
            None => {
                self.flow.qos0_queued = false;
                false
            }
        }
    }

    /// Notes a QoS 0 message about to be queued (see [`Session::evict_qos0`]).
    pub fn note_queued(&mut self, qos: QoS) {
        if qos == QoS::AtMostOnce {
            self.flow.qos0_queued = true;
        }
    }

    /// Notes a message dropped for this subscriber (the caller counts it in
    /// `messages_dropped`). The first drop of a burst is logged, once.
    pub fn note_dropped(&mut self, why: &str) {
        if self.flow.dropped_in_burst == 0 {
            let who = if self.conn.is_some() {
                "subscriber does not keep up"
            } else {
                "offline session"
            };
            tracing::warn!(client = %self.client_id, queued = self.queue.len(),
                "{who}: {why}; dropping its messages until it catches up (counted in $SYS/broker/messages/dropped)");
        }
        self.flow.dropped_in_burst = self.flow.dropped_in_burst.saturating_add(1);
    }
}

#[cfg(test)]
mod tests;
