//! Broker-wide counters, published under `$SYS`.
//!
//! Every message bumps several of them from whichever worker handles it. One
//! shared atomic per counter would bounce its cache line between cores on
//! every message (a real cost at millions of messages per second), so each
//! counter is sharded: a thread adds to its own cache-line-sized slot and a
//! reader (`$SYS`, every few seconds) sums the slots. Relaxed ordering: they
//! are statistics, nothing synchronises through them.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

const SHARDS: usize = 8;

/// One slot per cache line (128 B also covers adjacent-line prefetching).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Slot(AtomicU64);

/// A counter that threads can bump without contending.
#[derive(Debug, Default)]
pub struct Counter([Slot; SHARDS]);

fn shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    SHARD.with(|s| *s)
}

impl Counter {
    pub fn add(&self, n: u64) {
        self.0[shard()].0.fetch_add(n, Ordering::Relaxed);
    }

    /// Subtracts (wrapping per slot; the sum is exact).
    pub fn sub(&self, n: u64) {
        self.0[shard()].0.fetch_sub(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0
            .iter()
            .fold(0u64, |sum, s| sum.wrapping_add(s.0.load(Ordering::Relaxed)))
    }
}

#[derive(Debug, Default)]
pub struct Metrics {
    pub clients_connected: Counter,
    pub messages_received: Counter,
    pub messages_sent: Counter,
    pub bytes_received: Counter,
    pub bytes_sent: Counter,
    /// Messages dropped because a queue was full or a packet too large for the peer.
    pub messages_dropped: Counter,
    pub messages_held: Counter,
    /// Retained PUBLISHes delivered but not retained: the store was at
    /// `limits.max_retained_mb`.
    pub retained_refused: Counter,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_across_threads_including_subtractions() {
        let c = std::sync::Arc::new(Counter::default());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        c.add(2);
                    }
                    c.sub(500);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        c.sub(1000);
        assert_eq!(c.get(), 4 * 2000 - 4 * 500 - 1000);
    }
}
