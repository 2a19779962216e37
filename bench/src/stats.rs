//! Measurement helpers: a latency histogram, per-publisher sequence tracking
//! for the loss/duplicate check, CPU and RSS readings from /proc, and the
//! one-line JSON result.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// Log-linear histogram of nanoseconds: 64 sub-buckets per power of two, so
/// every reported percentile is within ~1.6% of the true value. Fixed size
/// (no allocation per sample) and mergeable across threads.
#[derive(Clone)]
pub struct Histogram {
    buckets: Vec<u64>,
    count: u64,
    max: u64,
}

const SUB: u64 = 64;
const BUCKETS: usize = 59 * SUB as usize;

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: vec![0; BUCKETS],
            count: 0,
            max: 0,
        }
    }
}

impl Histogram {
    fn index(v: u64) -> usize {
        if v < SUB {
            return v as usize;
        }
        let shift = 63 - v.leading_zeros() as u64 - 6;
        ((shift + 1) * SUB + ((v >> shift) & (SUB - 1))) as usize
    }

    /// The middle of bucket `i`.
    fn value(i: usize) -> u64 {
        let i = i as u64;
        if i < SUB {
            return i;
        }
        let shift = i / SUB - 1;
        ((SUB + i % SUB) << shift) + ((1u64 << shift) >> 1)
    }

    pub fn record(&mut self, ns: u64) {
        self.buckets[Self::index(ns)] += 1;
        self.count += 1;
        self.max = self.max.max(ns);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.count += other.count;
        self.max = self.max.max(other.max);
    }

    /// The value below which a fraction `q` of the samples lie (nanoseconds).
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Self::value(i).min(self.max);
            }
        }
        self.max
    }

    /// `[[ns, count], …]` for the non-empty buckets (ns = the bucket's middle),
    /// so runs can be pooled afterwards: a percentile of all rounds' samples is
    /// steadier than the median of each round's percentile.
    pub fn json_buckets(&self) -> String {
        let mut s = String::from("[");
        for (i, &n) in self.buckets.iter().enumerate().filter(|(_, &n)| n > 0) {
            if s.len() > 1 {
                s.push(',');
            }
            let _ = write!(s, "[{},{n}]", Self::value(i).min(self.max));
        }
        s.push(']');
        s
    }

    /// `{"p50":…,"p99":…,"p999":…,"max":…}` in microseconds.
    pub fn json_us(&self) -> String {
        let us = |ns: u64| ns as f64 / 1000.0;
        format!(
            "{{\"samples\":{},\"p50\":{:.1},\"p99\":{:.1},\"p999\":{:.1},\"max\":{:.1}}}",
            self.count,
            us(self.quantile(0.5)),
            us(self.quantile(0.99)),
            us(self.quantile(0.999)),
            us(self.max)
        )
    }
}

/// Which sequence numbers of each publisher one subscriber has seen. A bitset
/// per publisher: 1 bit per message, so ten million messages cost 1.25 MB.
#[derive(Default)]
pub struct SeqTracker {
    seen: Vec<Vec<u64>>,
    pub distinct: u64,
    pub duplicated: u64,
}

impl SeqTracker {
    pub fn record(&mut self, publisher: u32, seq: u64) {
        let p = publisher as usize;
        if self.seen.len() <= p {
            self.seen.resize_with(p + 1, Vec::new);
        }
        let bits = &mut self.seen[p];
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if bits.len() <= word {
            bits.resize((word + 1).next_power_of_two(), 0);
        }
        if bits[word] & (1 << bit) != 0 {
            self.duplicated += 1;
        } else {
            bits[word] |= 1 << bit;
            self.distinct += 1;
        }
    }
}

/// Linux reports CPU times in USER_HZ ticks, which is 100 on every
/// architecture's ABI (it is not CONFIG_HZ).
const TICKS_PER_SEC: f64 = 100.0;

/// utime + stime of a process in seconds; with `children`, also the time of
/// its children that have been waited for (cutime + cstime).
pub fn cpu_secs(pid: &str, children: bool) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces: count fields after ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(4)
        .map(|s| s.parse().unwrap_or(0))
        .collect();
    if f.len() < 4 {
        return None;
    }
    let ticks = f[0] + f[1] + if children { f[2] + f[3] } else { 0 };
    Some(ticks as f64 / TICKS_PER_SEC)
}

/// Resident set size of a process in bytes (VmRSS of /proc/<pid>/status).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Busy and softirq seconds of the whole machine, all cores (/proc/stat).
fn machine_secs() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let f: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal …: all but idle and iowait.
    let busy: u64 = f.iter().take(8).sum::<u64>() - f.get(3)? - f.get(4)?;
    Some((
        busy as f64 / TICKS_PER_SEC,
        *f.get(6)? as f64 / TICKS_PER_SEC,
    ))
}

/// CPU used by the broker, by this generator and by everything else on the
/// machine between `start` and `finish`. The last tells a reader whether a
/// compile or another job was stealing cores from the measurement.
pub struct CpuMeter {
    broker: Option<u32>,
    t0: Instant,
    broker0: f64,
    gen0: f64,
    machine0: (f64, f64),
}

impl CpuMeter {
    pub fn start(broker: Option<u32>) -> CpuMeter {
        CpuMeter {
            broker,
            t0: Instant::now(),
            broker0: broker
                .and_then(|p| cpu_secs(&p.to_string(), false))
                .unwrap_or(0.0),
            gen0: cpu_secs("self", true).unwrap_or(0.0),
            machine0: machine_secs().unwrap_or_default(),
        }
    }

    /// Appends `wall_s`, `broker_cpu_s`, `broker_cpu_pct`, `gen_cpu_s`,
    /// `gen_cpu_pct`, `softirq_pct` (the kernel's loopback TCP work, when the
    /// kernel charges it to no process), `other_cpu_pct` (100% = one core busy
    /// for the whole interval) and `cores`.
    pub fn finish(&self, out: &mut Json) {
        let wall = self.t0.elapsed().as_secs_f64();
        let gen = cpu_secs("self", true).unwrap_or(0.0) - self.gen0;
        let (busy, softirq) = machine_secs().unwrap_or_default();
        let (busy, softirq) = (busy - self.machine0.0, softirq - self.machine0.1);
        let mut b = 0.0;
        out.num("wall_s", wall);
        if let Some(pid) = self.broker {
            b = cpu_secs(&pid.to_string(), false).map_or(0.0, |v| v - self.broker0);
            out.num("broker_cpu_s", b);
            out.num("broker_cpu_pct", 100.0 * b / wall);
        }
        out.num("gen_cpu_s", gen);
        out.num("gen_cpu_pct", 100.0 * gen / wall);
        out.num("softirq_pct", 100.0 * softirq / wall);
        let other = busy - softirq - b - gen;
        out.num("other_cpu_pct", (100.0 * other / wall).max(0.0));
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        out.int("cores", cores as u64);
    }
}

/// Builds one flat JSON object; values are numbers, strings or raw JSON.
pub struct Json(String);

impl Default for Json {
    fn default() -> Self {
        Json("{".to_string())
    }
}

impl Json {
    fn key(&mut self, k: &str) {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        let _ = write!(self.0, "\"{k}\":");
    }

    pub fn str(&mut self, k: &str, v: &str) -> &mut Self {
        self.key(k);
        self.0.push('"');
        for c in v.chars() {
            match c {
                '"' | '\\' => {
                    self.0.push('\\');
                    self.0.push(c);
                }
                c if (c as u32) < 0x20 => {
                    let _ = write!(self.0, "\\u{:04x}", c as u32);
                }
                c => self.0.push(c),
            }
        }
        self.0.push('"');
        self
    }

    pub fn num(&mut self, k: &str, v: f64) -> &mut Self {
        self.key(k);
        if !v.is_finite() {
            self.0.push_str("null");
        } else if v.fract() == 0.0 && v.abs() < 1e15 {
            let _ = write!(self.0, "{}", v as i64);
        } else {
            let _ = write!(self.0, "{v:.3}");
        }
        self
    }

    pub fn int(&mut self, k: &str, v: u64) -> &mut Self {
        self.key(k);
        let _ = write!(self.0, "{v}");
        self
    }

    pub fn raw(&mut self, k: &str, json: &str) -> &mut Self {
        self.key(k);
        self.0.push_str(json);
        self
    }

    pub fn finish(mut self) -> String {
        self.0.push('}');
        self.0
    }
}

pub fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_are_close() {
        let mut h = Histogram::default();
        for v in 1..=100_000u64 {
            h.record(v * 1000);
        }
        for q in [0.5, 0.99, 0.999] {
            let got = h.quantile(q) as f64;
            let want = q * 100_000_000.0;
            assert!((got - want).abs() / want < 0.02, "q{q}: {got} vs {want}");
        }
        assert_eq!(h.quantile(1.0), 100_000_000);
    }

    #[test]
    fn tracker_counts_duplicates() {
        let mut t = SeqTracker::default();
        for s in [0, 1, 1, 200, 3, 200] {
            t.record(2, s);
        }
        t.record(0, 1);
        assert_eq!((t.distinct, t.duplicated), (5, 2));
    }

    #[test]
    fn json_escapes() {
        let mut j = Json::default();
        j.str("a", "x\"y").int("n", 3).num("f", 1.5);
        assert_eq!(j.finish(), r#"{"a":"x\"y","n":3,"f":1.500}"#);
    }
}
