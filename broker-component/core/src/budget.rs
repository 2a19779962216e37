//! Broker-wide budgets (docs/design.md §5, docs/storage.md "Limits"): the memory that
//! messages may pin (`limits.max_memory_mb`), whether the store may take more
//! (`storage.max_disk_mb`, reported by the journal), and the log line that says a limit
//! refused messages, once per interval rather than once per message.
//!
//! What is charged: every message a session's queue, the hold queues or the retained store
//! keeps alive, at the size `hold::held_size` gives it (topic, payload, properties and the
//! fixed cost of keeping it), each queue charged in full as `limits.max_queued_mb` is. So
//! the figure over-counts a message shared by several queues, never under-counts one. What
//! is not charged (connection buffers, sessions, subscriptions, the store's cache) is what
//! the runtime keeps out of the budget it hands the core (server/src/memory.rs).
//!
//! QoS 0 is refused first: it is refused once the charge passes 90% of the budget, QoS 1/2
//! only at 100%, so at-most-once traffic makes room for what a publisher waits an
//! acknowledgement for.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use musqratt_codec::QoS;
use parking_lot::Mutex;

use crate::log_limit::LogLimit;

/// The bytes messages may pin, and what they pin now. A single atomic: it is touched only
/// when a budget is configured (`Charge` is a no-op otherwise), so the default setting
/// adds no shared cache line to the publish path.
#[derive(Debug)]
pub struct MemoryBudget {
    /// `usize::MAX` = no budget.
    limit: usize,
    used: AtomicUsize,
}

impl MemoryBudget {
    pub fn new(limit: usize) -> MemoryBudget {
        MemoryBudget {
            limit,
            used: AtomicUsize::new(0),
        }
    }

    pub fn limited(&self) -> bool {
        self.limit != usize::MAX
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes charged now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Whether a message of `size` bytes at `qos` may be kept: QoS 0 up to 90% of the
    /// budget, QoS 1/2 up to all of it.
    pub fn admits(&self, size: usize, qos: QoS) -> bool {
        if !self.limited() {
            return true;
        }
        let limit = match qos {
            QoS::AtMostOnce => self.limit - self.limit / 10,
            _ => self.limit,
        };
        self.used().saturating_add(size) <= limit
    }
}

/// A handle that charges a budget, held by whatever keeps messages (a session's queue,
/// the hold queues, the retained store). Empty when no budget is configured.
#[derive(Debug, Clone, Default)]
pub struct Charge(Option<Arc<MemoryBudget>>);

impl Charge {
    pub fn of(budget: &Arc<MemoryBudget>) -> Charge {
        Charge(budget.limited().then(|| Arc::clone(budget)))
    }

    pub fn add(&self, n: usize) {
        if let Some(b) = &self.0 {
            b.used.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub fn sub(&self, n: usize) {
        if let Some(b) = &self.0 {
            b.used.fetch_sub(n, Ordering::Relaxed);
        }
    }
}

/// Why a message was refused at a broker-wide limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitHit {
    /// `limits.max_memory_mb`.
    Memory,
    /// `storage.max_disk_mb`.
    Disk,
}

/// Messages refused at a broker-wide limit: counted always (`$SYS`), and logged through a
/// `LogLimit` per limit, so a flood writes a line every ten seconds, not one per message.
#[derive(Debug, Default)]
pub struct LimitLog {
    refused: [AtomicU64; 2],
    lines: Mutex<[LogLimit; 2]>,
}

impl LimitLog {
    /// Total refused at `hit` since start.
    pub fn count(&self, hit: LimitHit) -> u64 {
        self.refused[hit as usize].load(Ordering::Relaxed)
    }

    /// A message was refused at `hit`: counts it and writes the line if one is due.
    pub fn note(&self, hit: LimitHit, detail: &str, now: Instant) {
        let total = self.refused[hit as usize].fetch_add(1, Ordering::Relaxed) + 1;
        let Some(since) = self.lines.lock()[hit as usize].note(1, now) else {
            return;
        };
        let key = match hit {
            LimitHit::Memory => "limits.max_memory_mb",
            LimitHit::Disk => "storage.max_disk_mb",
        };
        tracing::warn!(refused = since, total, "{key} reached: {detail}; {since} messages refused since the last report (v5 publishers get 0x97 Quota exceeded; counted in $SYS/broker/messages/dropped)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn qos0_is_refused_before_qos1() {
        let b = Arc::new(MemoryBudget::new(1000));
        let c = Charge::of(&b);
        c.add(850);
        assert!(b.admits(50, QoS::AtMostOnce));
        assert!(!b.admits(51, QoS::AtMostOnce), "past 90%: QoS 0 refused");
        assert!(b.admits(150, QoS::AtLeastOnce));
        assert!(!b.admits(151, QoS::ExactlyOnce));
        c.sub(850);
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn no_budget_charges_nothing() {
        let b = Arc::new(MemoryBudget::new(usize::MAX));
        let c = Charge::of(&b);
        c.add(1 << 40);
        assert_eq!(b.used(), 0);
        assert!(b.admits(usize::MAX, QoS::AtLeastOnce));
    }

    #[test]
    fn refusals_are_counted_per_limit() {
        let log = LimitLog::default();
        let t0 = Instant::now();
        for i in 0..100 {
            log.note(LimitHit::Memory, "test", t0 + Duration::from_millis(i));
        }
        assert_eq!(log.count(LimitHit::Memory), 100);
        assert_eq!(log.count(LimitHit::Disk), 0);
        // Each limit has its own interval (log_limit.rs): a memory line does not hide a disk one.
        let lines = log.lines.lock();
        assert!(lines[1].clone().note(0, t0).is_some());
    }
}
