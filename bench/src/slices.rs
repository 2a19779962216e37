//! Time slices shared by two generator processes, one per broker, so that two
//! brokers can be measured *interleaved* instead of one after the other.
//!
//! Why: on a shared VM the latency tail is set by stalls of the machine (a
//! vCPU descheduled by the host, a kernel thread), and how many stalls there
//! are changes from one minute to the next (docs/benchmarks.md). Two 20 s
//! runs one after the other see different machines; two generators that take
//! turns every few hundred milliseconds see the same one.
//!
//! The wall clock is cut into slices of `len`; slices go by pairs, and in each
//! pair one process publishes in the first slice and the other in the second.
//! Which one goes first is a hash of the pair's number, the same in both
//! processes: a fixed A B A B … schedule could line up with a periodic stall
//! (one every 512 ms was seen here) and hand it to the same broker every time.
//! Both processes read the same clock (`CLOCK_REALTIME`), so they agree on the
//! schedule without talking to each other.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Clone, Copy, Debug)]
pub struct Slices {
    len: Duration,
    /// 0 or 1: which of the two processes this is.
    turn: u8,
}

impl Slices {
    pub fn new(len: Duration, turn: u8) -> Result<Slices, String> {
        if len < Duration::from_millis(10) {
            return Err("--slice-ms must be at least 10".into());
        }
        if turn > 1 {
            return Err("--turn must be 0 or 1".into());
        }
        Ok(Slices { len, turn })
    }

    /// How long until this process's next slice begins (zero inside one).
    pub fn wait(&self) -> Duration {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        self.wait_at(since_epoch)
    }

    fn wait_at(&self, since_epoch: Duration) -> Duration {
        let len = self.len.as_nanos();
        let t = since_epoch.as_nanos();
        let slice = t / len;
        if self.owner(slice) == self.turn {
            return Duration::ZERO;
        }
        // Slices alternate within a pair; across a pair boundary the next
        // slice may be the other's again, then ours is the one after it.
        let mut next = slice + 1;
        while self.owner(next) != self.turn {
            next += 1;
        }
        Duration::from_nanos((next * len - t) as u64)
    }

    /// Which process (0 or 1) publishes in slice `n`.
    fn owner(&self, n: u128) -> u8 {
        let first = (splitmix64((n / 2) as u64) & 1) as u8;
        if n.is_multiple_of(2) {
            first
        } else {
            1 - first
        }
    }
}

/// A well-mixed 64-bit hash (the SplitMix64 finaliser).
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_two_turns_share_every_slice_exactly_once() {
        let a = Slices::new(250 * MS, 0).unwrap();
        let b = Slices::new(250 * MS, 1).unwrap();
        let (mut a_slices, mut b_slices) = (0, 0);
        for n in 0..1000u64 {
            let mid = Duration::from_millis(n * 250 + 125);
            let (wa, wb) = (a.wait_at(mid), b.wait_at(mid));
            // Exactly one of the two may publish in the middle of slice n.
            assert!(wa.is_zero() != wb.is_zero(), "slice {n}: {wa:?} {wb:?}");
            a_slices += usize::from(wa.is_zero());
            b_slices += usize::from(wb.is_zero());
        }
        // Pairs split their two slices, so the shares are equal.
        assert_eq!((a_slices, b_slices), (500, 500));
    }

    #[test]
    fn the_order_within_a_pair_is_not_periodic() {
        let a = Slices::new(250 * MS, 0).unwrap();
        let firsts: Vec<u8> = (0..64).map(|pair| a.owner(pair * 2)).collect();
        assert!(firsts.contains(&0) && firsts.contains(&1));
        // Not simply alternating either.
        assert!(firsts.windows(2).any(|w| w[0] == w[1]));
    }

    #[test]
    fn waiting_ends_at_the_next_own_slice() {
        let s = Slices::new(100 * MS, 0).unwrap();
        for n in 0..200u64 {
            let t = Duration::from_millis(n * 100 + 30);
            let w = s.wait_at(t);
            if !w.is_zero() {
                let at = t + w;
                assert!(at.as_nanos().is_multiple_of((100 * MS).as_nanos()));
                assert!(s.wait_at(at).is_zero());
                assert!(w <= 200 * MS, "at most the rest of this slice and one more");
            }
        }
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(Slices::new(MS, 0).is_err());
        assert!(Slices::new(250 * MS, 2).is_err());
    }
}
