//! Log lines about what a client can trigger at will (a drop, a refusal) are
//! rate-limited: a client retaining on a million new topics must not write a
//! million lines. Events are counted, and at most one line per interval
//! reports how many there were since the last one.

use std::time::{Duration, Instant};

/// One line per this interval at most.
const INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug, Default, Clone)]
pub(crate) struct LogLimit {
    unlogged: u64,
    next: Option<Instant>,
}

impl LogLimit {
    /// Counts `n` events at `now`. Returns the count to log (events since the
    /// last line, these included) when a line is due, else `None`.
    pub(crate) fn note(&mut self, n: u64, now: Instant) -> Option<u64> {
        self.unlogged = self.unlogged.saturating_add(n);
        if self.next.is_some_and(|t| now < t) {
            return None;
        }
        self.next = Some(now + INTERVAL);
        Some(std::mem::take(&mut self.unlogged))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_since_the_last() {
        let t0 = Instant::now();
        let mut l = LogLimit::default();
        assert_eq!(l.note(1, t0), Some(1));
        assert_eq!(l.note(3, t0 + Duration::from_secs(1)), None);
        assert_eq!(l.note(1, t0 + Duration::from_secs(9)), None);
        assert_eq!(l.note(2, t0 + INTERVAL), Some(6));
    }
}
