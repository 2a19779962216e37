//! Which Linux scheduling policy a worker thread runs under (`[workers] scheduling`).
//!
//! Why it matters (docs/architecture.md, "Scheduling"): on loopback, and on any machine where the
//! client runs beside the broker, a client's `write` wakes the worker *inside* that system call,
//! often onto the client's own CPU. Under the normal policy the woken worker may preempt the client
//! there and then; the client stays runnable on that CPU, so when the worker's `sendto` wakes the
//! subscriber, the kernel cannot place the subscriber on the worker's CPU (it is not about to be
//! free) and sends it to another one, which on a VM is a halted vCPU that takes tens of
//! microseconds to wake. `SCHED_BATCH` keeps a woken thread from preempting the running one: the
//! worker runs when the client blocks, microseconds later, and the subscriber then lands on a CPU
//! that is about to be free (measurements in docs/benchmarks.md).
//!
//! The price is paid when every CPU is busy with other work: a batch worker then waits for a busy
//! task's time slice to end instead of preempting it (docs/benchmarks.md has that case too). So the default, *adaptive*, runs batch only while the machine has CPU to spare — the
//! kernel's CPU pressure (`/proc/pressure/cpu`, the share of time some task waited for a CPU) is
//! under [`CALM`] — and the normal policy once it passes [`BUSY`], or as soon as the worker itself
//! waited for a CPU more than [`STARVED_US`] per run (then it stays normal for [`HOLD`]). It looks
//! at most once per [`CHECK_EVERY`], after handling events (an idle worker reads nothing and stays
//! asleep).

use std::time::{Duration, Instant};

use uapi::c;

/// `[workers] scheduling`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scheduling {
    /// Batch while the CPU pressure is low, normal while it is high.
    #[default]
    Adaptive,
    /// Always the normal policy (`SCHED_OTHER`): the kernel's default.
    Normal,
    /// Always `SCHED_BATCH`.
    Batch,
}

impl Scheduling {
    /// The accepted names, as a config error lists them.
    pub const EXPECTED: &'static str = "\"adaptive\", \"normal\" or \"batch\"";

    pub fn from_name(name: &str) -> Option<Scheduling> {
        match name {
            "adaptive" => Some(Scheduling::Adaptive),
            "normal" => Some(Scheduling::Normal),
            "batch" => Some(Scheduling::Batch),
            _ => None,
        }
    }
}

/// The two policies a worker switches between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Normal,
    Batch,
}

/// Below this CPU pressure (% of time, the kernel's 10 s average) adaptive runs batch.
pub const CALM: f64 = 5.0;
/// Above this it runs normal. Between the two it keeps what it has, so a pressure hovering
/// around one threshold does not flip the policy every second.
pub const BUSY: f64 = 10.0;
/// A batch worker that waited longer than this for a CPU, on average per time it was switched
/// in over the last check, is losing to other work it no longer preempts: back to normal. CPU
/// pressure alone misses that case: as many CPU hogs as CPUs wait for nobody (pressure ~0),
/// yet a batch worker waits out their time slices. Calm, a worker waits ~10 µs here.
pub const STARVED_US: f64 = 100.0;
/// Batch needs at least this share of the machine's CPU time idle over the last check (%): a
/// worker woken without preempting then finds a free CPU. Below [`SPARE_LOW`], normal.
pub const SPARE_HIGH: f64 = 25.0;
pub const SPARE_LOW: f64 = 10.0;
/// After falling back for that reason, how long before batch is tried again.
pub const HOLD: Duration = Duration::from_secs(30);
/// How often a busy worker looks.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);
const PRESSURE_FILE: &str = "/proc/pressure/cpu";
const SCHEDSTAT_FILE: &str = "/proc/thread-self/schedstat";
const STAT_FILE: &str = "/proc/stat";

/// What a check reads: the machine's CPU pressure, its idle share since the last check (%), and
/// this thread's own waiting since then (mean µs runnable-but-not-running per switch-in); `None`
/// where the kernel has no answer (or there is no earlier reading to compare with).
#[derive(Debug, Clone, Copy, Default)]
pub struct Reading {
    pub pressure: Option<f64>,
    pub spare: Option<f64>,
    pub wait_us: Option<f64>,
}

/// One worker's policy, applied to its own thread.
pub struct SchedControl {
    mode: Scheduling,
    current: Policy,
    next_check: Instant,
    /// No batch before this (after a fall-back for starving).
    hold_until: Option<Instant>,
    /// This thread's (wait ns, switch-ins) and the machine's (idle, total) CPU ticks at the
    /// last check.
    last_stat: Option<(u64, u64)>,
    last_cpu: Option<(u64, u64)>,
}

impl SchedControl {
    /// Applies the starting policy to the calling thread: batch for `Batch`, normal otherwise
    /// (adaptive decides at its checks, once the worker has events to handle).
    pub fn start(mode: Scheduling, now: Instant) -> SchedControl {
        let mut s = SchedControl {
            mode,
            current: Policy::Normal,
            next_check: now,
            hold_until: None,
            last_stat: None,
            last_cpu: None,
        };
        if mode == Scheduling::Batch {
            s.apply(Policy::Batch);
        }
        s
    }

    /// Called after a worker handled events: re-decides at most once per [`CHECK_EVERY`].
    pub fn after_events(&mut self, now: Instant) {
        if self.mode != Scheduling::Adaptive || now < self.next_check {
            return;
        }
        self.next_check = now + CHECK_EVERY;
        let stat = std::fs::read_to_string(SCHEDSTAT_FILE)
            .ok()
            .and_then(|t| wait_and_switches(&t));
        let cpu = std::fs::read_to_string(STAT_FILE)
            .ok()
            .and_then(|t| idle_and_total(&t));
        let reading = Reading {
            spare: match (self.last_cpu, cpu) {
                (Some((i0, t0)), Some((i1, t1))) if t1 > t0 => {
                    Some(100.0 * i1.saturating_sub(i0) as f64 / (t1 - t0) as f64)
                }
                _ => None,
            },
            pressure: std::fs::read_to_string(PRESSURE_FILE)
                .ok()
                .and_then(|t| some_avg10(&t)),
            wait_us: match (self.last_stat, stat) {
                (Some((w0, n0)), Some((w1, n1))) if n1 > n0 => {
                    Some(w1.saturating_sub(w0) as f64 / (n1 - n0) as f64 / 1e3)
                }
                _ => None,
            },
        };
        self.last_stat = stat;
        self.last_cpu = cpu;
        let held = self.hold_until.is_some_and(|t| now < t);
        let (want, starved) = decide(self.current, reading, held);
        if starved {
            self.hold_until = Some(now + HOLD);
        }
        if want != self.current {
            tracing::debug!(?reading, ?want, "worker scheduling policy");
            self.apply(want);
        }
    }

    fn apply(&mut self, policy: Policy) {
        let number = match policy {
            Policy::Normal => c::SCHED_OTHER,
            Policy::Batch => c::SCHED_BATCH,
        };
        // The static priority of both policies is 0; pid 0 is the calling thread. Unlike
        // `setpriority`, this leaves the thread's nice value as the operator set it.
        match uapi::sched_setscheduler(0, number, &uapi::pod_zeroed()) {
            Ok(_) => self.current = policy,
            Err(e) => {
                // Not fatal: the worker runs on under the policy it has. Adaptive tries no more.
                tracing::warn!("cannot set the worker's scheduling policy to {policy:?}: {e}");
                self.mode = Scheduling::Normal;
            }
        }
    }
}

/// What adaptive wants, and whether it is falling back because the worker starved (then batch
/// is not tried again for [`HOLD`]; `held` says such a hold is on).
pub fn decide(current: Policy, r: Reading, held: bool) -> (Policy, bool) {
    let Some(pressure) = r.pressure else {
        return (Policy::Normal, false); // no PSI: the kernel's default
    };
    if current == Policy::Batch && r.wait_us.is_some_and(|w| w > STARVED_US) {
        return (Policy::Normal, true);
    }
    // Without two readings of the idle share yet, nothing is known about spare CPUs.
    let spare = r.spare.unwrap_or(0.0);
    let want = if pressure > BUSY || spare < SPARE_LOW {
        Policy::Normal
    } else if pressure < CALM && spare >= SPARE_HIGH && !held {
        Policy::Batch
    } else {
        current
    };
    (want, false)
}

/// The `some avg10` value of `/proc/pressure/cpu`: the share of the last ~10 s in which at least
/// one runnable task waited for a CPU, in %.
pub fn some_avg10(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with("some "))?;
    line.split_whitespace()
        .find_map(|f| f.strip_prefix("avg10="))?
        .parse()
        .ok()
}

/// (idle, total) CPU time of the whole machine from the `cpu` line of `/proc/stat` (user nice
/// system idle iowait irq softirq steal …, in ticks): idle counts idle and iowait.
pub fn idle_and_total(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    let idle = f.get(3)? + f.get(4)?;
    Some((idle, f.iter().sum()))
}

/// (ns waited on a run queue, switch-ins) from `/proc/thread-self/schedstat`
/// ("run_ns wait_ns switch_ins").
pub fn wait_and_switches(text: &str) -> Option<(u64, u64)> {
    let mut f = text.split_whitespace().skip(1);
    Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_some_line() {
        let text = "some avg10=2.14 avg60=3.15 avg300=4.24 total=172644049\n\
                    full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
        assert_eq!(some_avg10(text), Some(2.14));
        assert_eq!(
            some_avg10("full avg10=1.00 avg60=0 avg300=0 total=0\n"),
            None
        );
        assert_eq!(some_avg10("some avg10=x\n"), None);
        assert_eq!(some_avg10(""), None);
    }

    #[test]
    fn reads_schedstat() {
        assert_eq!(wait_and_switches("12345 678 9\n"), Some((678, 9)));
        assert_eq!(wait_and_switches("12345\n"), None);
    }

    #[test]
    fn reads_the_cpu_line() {
        let text = "cpu  31739 0 11990 1497851 551 0 2689 5036 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        assert_eq!(
            idle_and_total(text),
            Some((1497851 + 551, 31739 + 11990 + 1497851 + 551 + 2689 + 5036))
        );
        assert_eq!(idle_and_total("cpu0 1 2 3\n"), None);
    }

    /// Pressure, a machine half idle, and the worker's own wait.
    fn at(pressure: f64, wait_us: Option<f64>) -> Reading {
        Reading {
            pressure: Some(pressure),
            spare: Some(50.0),
            wait_us,
        }
    }

    #[test]
    fn batch_only_with_idle_cpus() {
        use Policy::*;
        let busy = |spare| Reading {
            pressure: Some(0.5),
            spare,
            wait_us: Some(5.0),
        };
        // One CPU hog per CPU: no pressure (they wait for nobody), but no CPU to spare either.
        assert_eq!(decide(Batch, busy(Some(2.0)), false).0, Normal);
        assert_eq!(decide(Normal, busy(Some(2.0)), false).0, Normal);
        // In between: keep.
        assert_eq!(decide(Batch, busy(Some(15.0)), false).0, Batch);
        assert_eq!(decide(Normal, busy(Some(15.0)), false).0, Normal);
        // No second reading yet: nothing known, normal.
        assert_eq!(decide(Normal, busy(None), false).0, Normal);
    }

    #[test]
    fn batch_when_calm_normal_when_busy_and_no_flapping_between() {
        use Policy::*;
        assert_eq!(decide(Normal, at(1.0, None), false), (Batch, false));
        assert_eq!(decide(Batch, at(40.0, Some(5.0)), false), (Normal, false));
        // Between the thresholds the policy stays what it is.
        assert_eq!(decide(Normal, at(7.0, None), false).0, Normal);
        assert_eq!(decide(Batch, at(7.0, Some(5.0)), false).0, Batch);
        // No pressure information: the kernel's default.
        assert_eq!(decide(Batch, Reading::default(), false).0, Normal);
    }

    #[test]
    fn a_starving_batch_worker_falls_back_and_holds() {
        use Policy::*;
        // Calm pressure (CPU hogs, one per CPU, wait for nobody), but the worker waited 2 ms.
        assert_eq!(decide(Batch, at(0.5, Some(2000.0)), false), (Normal, true));
        // While held, calm pressure does not bring batch back.
        assert_eq!(decide(Normal, at(0.5, Some(3.0)), true), (Normal, false));
        // Once the hold is over it does.
        assert_eq!(decide(Normal, at(0.5, Some(3.0)), false), (Batch, false));
        // Waiting under the normal policy is not a reason to change anything.
        assert_eq!(
            decide(Normal, at(7.0, Some(2000.0)), false),
            (Normal, false)
        );
    }

    #[test]
    fn names_round_trip() {
        for name in ["adaptive", "normal", "batch"] {
            assert!(Scheduling::from_name(name).is_some(), "{name}");
        }
        assert_eq!(Scheduling::from_name("fifo"), None);
    }
}
