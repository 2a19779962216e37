//! store-compare: candidate embedded storage engines measured on the broker's durable-store write
//! pattern. `cargo run --release -- all` runs everything and prints markdown tables; see README.md.
//!
//! Every measurement that reports memory runs in its own child process (this binary re-executed
//! with a sub-command), so that VmHWM is that run's alone. Children print one `RESULT k=v ...` line.
#![forbid(unsafe_code)]

mod engines;
mod workload;

use engines::{Engine, Mode, Res, Space, ENGINES};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use workload::{msg_key, queue_key, Workload, FIRST_SESSION};

// ---------------------------------------------------------------------------------------------
// small helpers

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Res<Self> {
        let root = std::env::var_os("STORE_COMPARE_TMP")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos();
        let p = root.join(format!(
            "store-compare-{tag}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&p)?;
        Ok(Self(p))
    }
    fn sub(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// (allocated bytes, apparent bytes) of every file under `p`.
fn dir_size(p: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let (mut alloc, mut apparent) = (0, 0);
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            if let Ok(m) = e.metadata() {
                if m.is_dir() {
                    let (a, b) = dir_size(&e.path());
                    alloc += a;
                    apparent += b;
                } else {
                    alloc += m.blocks() * 512;
                    apparent += m.len();
                }
            }
        }
    }
    (alloc, apparent)
}

fn files_under(p: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let path = e.path();
            if path.is_dir() {
                files_under(&path, out);
            } else {
                out.push(path);
            }
        }
    }
}

/// Writes back and drops from the page cache every file under `p` (only these files' pages: the
/// rest of the machine's cache is left alone), so that a reopen reads from the disk.
///
/// GNU dd's `iflag=nocache` with `count=0` is `posix_fadvise(POSIX_FADV_DONTNEED)` over the whole
/// file: the same call, made by a program instead of FFI from this crate.
fn evict_from_page_cache(p: &Path) {
    let mut files = Vec::new();
    files_under(p, &mut files);
    for f in files {
        if let Ok(file) = std::fs::OpenOptions::new().read(true).open(&f) {
            let _ = file.sync_all();
            let mut arg = std::ffi::OsString::from("if=");
            arg.push(&f);
            let _ = std::process::Command::new("dd")
                .arg(arg)
                .args(["iflag=nocache", "count=0", "status=none"])
                .status();
        }
    }
}

/// A field of /proc/self/status in KiB (VmHWM, VmRSS).
fn proc_status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn count_entries(p: &str) -> usize {
    std::fs::read_dir(p).map(|rd| rd.count()).unwrap_or(0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn median(v: &[f64]) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if s.is_empty() {
        return f64::NAN;
    }
    if s.len() % 2 == 1 {
        s[s.len() / 2]
    } else {
        (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0
    }
}

struct Rng(u64);
impl Rng {
    fn new() -> Self {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        Rng(t | 1)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn result_line(kv: &[(&str, f64)]) {
    let mut s = String::from("RESULT");
    for (k, v) in kv {
        s.push_str(&format!(" {k}={v}"));
    }
    println!("{s}");
}

type Metrics = BTreeMap<String, f64>;
/// A table row: label, RESULT key, number format.
type Row<'a> = (&'a str, &'a str, fn(f64) -> String);
/// A table row over a named scenario: label, scenario, RESULT key, number format.
type ScRow<'a> = (&'a str, &'a str, &'a str, fn(f64) -> String);

fn parse_result(out: &str) -> Option<Metrics> {
    let line = out.lines().rev().find(|l| l.starts_with("RESULT"))?;
    let mut m = Metrics::new();
    for kv in line.split_whitespace().skip(1) {
        let (k, v) = kv.split_once('=')?;
        m.insert(k.to_string(), v.parse().ok()?);
    }
    Some(m)
}

/// Runs this binary with `args` and returns its RESULT.
fn child(args: &[String]) -> Res<Metrics> {
    let out = Command::new(std::env::current_exe()?)
        .args(args)
        .stderr(Stdio::inherit())
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!("child {args:?} failed: {}\n{stdout}", out.status).into());
    }
    parse_result(&stdout)
        .ok_or_else(|| format!("child {args:?}: no RESULT line in {stdout:?}").into())
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize, name: &str) -> Res<T> {
    args.get(i)
        .ok_or_else(|| format!("missing argument {name}"))?
        .parse()
        .map_err(|_| format!("bad argument {name}: {:?}", args[i]).into())
}

// ---------------------------------------------------------------------------------------------
// the measurements (each run in a child)

/// Raw cost of a durable small append: write 100 B at the end of a file, then fdatasync (or fsync).
fn cmd_fsync(n: usize) -> Res<()> {
    let td = TempDir::new("fsync")?;
    let mut results = Vec::new();
    for (name, data_only) in [("fdatasync", true), ("fsync", false)] {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(td.sub(name))?;
        let buf = [0x5au8; 100];
        let mut lat = Vec::with_capacity(n);
        for _ in 0..n {
            let t0 = Instant::now();
            f.write_all(&buf)?;
            if data_only {
                f.sync_data()?;
            } else {
                f.sync_all()?;
            }
            lat.push(t0.elapsed().as_secs_f64() * 1e6);
        }
        lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let mean = lat.iter().sum::<f64>() / lat.len() as f64;
        results.push((format!("{name}_p50_us"), percentile(&lat, 0.5)));
        results.push((format!("{name}_p99_us"), percentile(&lat, 0.99)));
        results.push((format!("{name}_mean_us"), mean));
        results.push((format!("{name}_max_us"), *lat.last().unwrap()));
    }
    let kv: Vec<(&str, f64)> = results.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    result_line(&kv);
    Ok(())
}

/// Insert-only durable commits of `batch` messages each, on a fresh store, for `secs` seconds
/// (or `max_msgs` messages), after a short warm-up.
fn cmd_commit(
    engine: &str,
    batch: u64,
    payload: usize,
    subs: u64,
    secs: f64,
    max_msgs: u64,
) -> Res<()> {
    let td = TempDir::new("commit")?;
    // the disk's state right now: 50 x (append 100 B + fdatasync), p50
    let probe = {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(td.sub("probe"))?;
        let mut l = Vec::new();
        for _ in 0..50 {
            let t = Instant::now();
            f.write_all(&[0u8; 100])?;
            f.sync_data()?;
            l.push(t.elapsed().as_secs_f64() * 1e6);
        }
        l.sort_by(|a, b| a.partial_cmp(b).unwrap());
        percentile(&l, 0.5)
    };
    let mut e = engines::open(engine, &td.sub("db"), Mode::Durable)?;
    let w = Workload { payload, subs };
    let mut next = 0u64;
    let mut ops = Vec::new();
    // warm-up: 200 ms or 3 commits, whichever is longer
    let t_w = Instant::now();
    let mut warm = 0;
    while warm < 3 || t_w.elapsed() < Duration::from_millis(200) {
        ops.clear();
        w.insert(next, batch, &mut ops);
        next += batch;
        e.commit(&ops)?;
        warm += 1;
    }
    let mut lat = Vec::new();
    let mut msgs = 0u64;
    let t0 = Instant::now();
    while t0.elapsed().as_secs_f64() < secs && msgs < max_msgs {
        ops.clear();
        w.insert(next, batch, &mut ops);
        next += batch;
        let tc = Instant::now();
        e.commit(&ops)?;
        lat.push(tc.elapsed().as_secs_f64() * 1e3);
        msgs += batch;
    }
    let wall = t0.elapsed().as_secs_f64();
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    result_line(&[
        ("msgs_per_s", msgs as f64 / wall),
        ("commits_per_s", lat.len() as f64 / wall),
        ("commit_p50_ms", percentile(&lat, 0.5)),
        ("commit_p99_ms", percentile(&lat, 0.99)),
        ("msgs", msgs as f64),
        ("probe_fsync_us", probe),
        ("rss_hwm_kib", proc_status_kib("VmHWM:") as f64),
    ]);
    Ok(())
}

/// Steady state: commit k inserts batch k and deletes batch k-1 (acknowledged); `msgs` messages in
/// all, then one commit deleting the last batch. Reports throughput, disk size (peak, end, after
/// close), peak RSS, threads and open files.
fn cmd_steady(engine: &str, batch: u64, payload: usize, msgs: u64) -> Res<()> {
    let td = TempDir::new("steady")?;
    let dbdir = td.sub("db");
    let mut e = engines::open(engine, &dbdir, Mode::Durable)?;
    let w = Workload { payload, subs: 1 };
    let batches = msgs / batch;
    let sample_every = (batches / 100).max(1);
    let mut peak_disk = 0u64;
    let mut ops = Vec::new();
    let mut lat = Vec::with_capacity(batches as usize);
    let mut max_threads = 0;
    let mut max_fds = 0;
    let t0 = Instant::now();
    for b in 0..=batches {
        ops.clear();
        if b < batches {
            w.insert(b * batch, batch, &mut ops);
        }
        if b > 0 {
            w.delete((b - 1) * batch, batch, &mut ops);
        }
        let tc = Instant::now();
        e.commit(&ops)?;
        lat.push(tc.elapsed().as_secs_f64() * 1e3);
        if b % sample_every == 0 {
            peak_disk = peak_disk.max(dir_size(&dbdir).0);
            max_threads = max_threads.max(count_entries("/proc/self/task"));
            max_fds = max_fds.max(count_entries("/proc/self/fd"));
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    let (end_alloc, end_apparent) = dir_size(&dbdir);
    peak_disk = peak_disk.max(end_alloc);
    let (n_left, _) = e.scan_queue()?;
    let threads = count_entries("/proc/self/task");
    let fds = count_entries("/proc/self/fd");
    let rss_now = proc_status_kib("VmRSS:");
    drop(e);
    std::thread::sleep(Duration::from_millis(200));
    let (closed_alloc, _) = dir_size(&dbdir);
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    result_line(&[
        ("msgs_per_s", (batches * batch) as f64 / wall),
        ("commit_p50_ms", percentile(&lat, 0.5)),
        ("commit_p99_ms", percentile(&lat, 0.99)),
        ("disk_end_mib", mib(end_alloc)),
        ("disk_end_apparent_mib", mib(end_apparent)),
        ("disk_peak_mib", mib(peak_disk)),
        ("disk_closed_mib", mib(closed_alloc)),
        (
            "written_mib",
            mib(batches * batch * (w.msg_value(0).len() as u64 + 8 + 32)),
        ),
        ("left_entries", n_left as f64),
        ("rss_hwm_mib", proc_status_kib("VmHWM:") as f64 / 1024.0),
        ("rss_end_mib", rss_now as f64 / 1024.0),
        ("threads_max", max_threads.max(threads) as f64),
        ("threads_end", threads as f64),
        ("fds_max", max_fds.max(fds) as f64),
        ("fds_end", fds as f64),
    ]);
    Ok(())
}

/// Recovery, part 1 (child): writes `msgs` messages (1 KiB payload, 1 subscriber, 1024 per commit)
/// without deleting, then either closes cleanly or prints "done" and waits to be SIGKILLed.
fn cmd_recov_write(engine: &str, dir: &Path, msgs: u64, kill: bool) -> Res<()> {
    let mut e = engines::open(engine, dir, Mode::Durable)?;
    let w = Workload {
        payload: 1024,
        subs: 1,
    };
    let mut ops = Vec::new();
    let batch = 1024;
    let mut next = 0;
    while next < msgs {
        let n = batch.min(msgs - next);
        ops.clear();
        w.insert(next, n, &mut ops);
        e.commit(&ops)?;
        next += n;
    }
    if kill {
        println!("done");
        std::io::stdout().flush()?;
        loop {
            std::thread::sleep(Duration::from_secs(60));
        }
    }
    drop(e);
    result_line(&[("written", msgs as f64)]);
    Ok(())
}

/// Recovery, part 2 (child): open, then iterate every queue entry in key order.
fn cmd_recov_open(engine: &str, dir: &Path, expect: u64) -> Res<()> {
    let t0 = Instant::now();
    let e = engines::open(engine, dir, Mode::Durable)?;
    let t_open = t0.elapsed().as_secs_f64() * 1e3;
    let t1 = Instant::now();
    let (n, sorted) = e.scan_queue()?;
    let t_scan = t1.elapsed().as_secs_f64() * 1e3;
    let t2 = Instant::now();
    let n_session = e.scan_session(FIRST_SESSION)?;
    let t_session = t2.elapsed().as_secs_f64() * 1e3;
    if n != expect || !sorted || n_session != expect {
        return Err(format!("scan found {n} entries (sorted: {sorted}, session scan {n_session}), expected {expect}").into());
    }
    result_line(&[
        ("open_ms", t_open),
        ("scan_ms", t_scan),
        ("total_ms", t_open + t_scan),
        ("session_scan_ms", t_session),
        ("entries", n as f64),
        ("rss_hwm_mib", proc_status_kib("VmHWM:") as f64 / 1024.0),
    ]);
    Ok(())
}

const CRASH_BATCH: u64 = 16;
const CRASH_KEEP: u64 = 4; // commit b inserts batch b and deletes batch b-4

/// Crash check, child: commits batches with the strongest durability until killed, printing
/// "committed b" after each commit returns.
fn cmd_crash_child(engine: &str, dir: &Path) -> Res<()> {
    let mut e = engines::open(engine, dir, Mode::Strongest)?;
    let w = Workload {
        payload: 64,
        subs: 1,
    };
    let mut ops = Vec::new();
    let out = std::io::stdout();
    let mut out = out.lock();
    writeln!(out, "ready")?;
    out.flush()?;
    for b in 0u64.. {
        ops.clear();
        w.insert(b * CRASH_BATCH, CRASH_BATCH, &mut ops);
        if b >= CRASH_KEEP {
            w.delete((b - CRASH_KEEP) * CRASH_BATCH, CRASH_BATCH, &mut ops);
        }
        e.commit(&ops)?;
        writeln!(out, "committed {b}")?;
        out.flush()?;
    }
    Ok(())
}

/// How many of batch `b`'s records (messages and queue entries) are present and intact.
fn batch_presence(e: &dyn Engine, w: &Workload, b: u64) -> Res<(u64, u64)> {
    let (mut present, mut total) = (0, 0);
    for id in b * CRASH_BATCH..(b + 1) * CRASH_BATCH {
        total += 2;
        match e.get(Space::Msgs, &msg_key(id))? {
            Some(v) if v == w.msg_value(id) => present += 1,
            Some(_) => return Err(format!("message {id} has a wrong value").into()),
            None => {}
        }
        match e.get(Space::Queue, &queue_key(FIRST_SESSION, id))? {
            Some(v) if v == Workload::queue_value(id) => present += 1,
            Some(_) => return Err(format!("queue entry {id} has a wrong value").into()),
            None => {}
        }
    }
    Ok((present, total))
}

/// One crash run: start the child, SIGKILL it at a random point after its k-th acknowledged
/// commit, reopen, and check that every acknowledged commit is there, whole.
fn crash_once(engine: &str, rng: &mut Rng) -> Res<(u64, String)> {
    let td = TempDir::new("crash")?;
    let dir = td.sub("db");
    let mut ch = Command::new(std::env::current_exe()?)
        .args(["crash-child", engine, dir.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut rd = BufReader::new(ch.stdout.take().unwrap());
    let target = 20 + rng.below(300);
    let mut last: Option<u64>;
    let mut line = String::new();
    loop {
        line.clear();
        if rd.read_line(&mut line)? == 0 {
            return Err("child exited before being killed".into());
        }
        if let Some(k) = line.trim().strip_prefix("committed ") {
            let k: u64 = k.parse()?;
            last = Some(k);
            if k >= target {
                break;
            }
        }
    }
    // land the kill anywhere inside the following commit(s)
    std::thread::sleep(Duration::from_micros(rng.below(3_000)));
    ch.kill()?; // SIGKILL
    ch.wait()?;
    // acknowledgements printed before the kill are still in the pipe
    loop {
        line.clear();
        if rd.read_line(&mut line)? == 0 {
            break;
        }
        if let Some(k) = line.trim().strip_prefix("committed ") {
            last = Some(k.parse()?);
        }
    }
    let k = last.unwrap();
    let e = engines::open(engine, &dir, Mode::Strongest)?;
    let w = Workload {
        payload: 64,
        subs: 1,
    };
    // The commit in flight (k+1) may or may not have landed, but only whole.
    let (p, t) = batch_presence(e.as_ref(), &w, k + 1)?;
    let m = if p == t {
        k + 1
    } else if p == 0 {
        k
    } else {
        return Ok((
            k,
            format!("FAIL: batch {} partially present ({p}/{t})", k + 1),
        ));
    };
    // After commit m: batches m-3 ..= m present, all earlier ones deleted, none later.
    for b in 0..=m + 2 {
        let expect = b <= m && b + CRASH_KEEP > m;
        let (p, t) = batch_presence(e.as_ref(), &w, b)?;
        let ok = if expect { p == t } else { p == 0 };
        if !ok {
            return Ok((
                k,
                format!(
                    "FAIL: after ack of {k} (state {m}) batch {b}: {p}/{t} present, expected {}",
                    if expect { "all" } else { "none" }
                ),
            ));
        }
    }
    Ok((k, format!("ok (acked {k}, found {m})")))
}

fn cmd_crash(engine: &str, runs: usize) -> Res<()> {
    let mut rng = Rng::new();
    let mut pass = 0;
    for i in 0..runs {
        let (k, verdict) = crash_once(engine, &mut rng)?;
        eprintln!("  crash {engine} #{i}: killed after ack {k}: {verdict}");
        if verdict.starts_with("ok") {
            pass += 1;
        }
    }
    result_line(&[("runs", runs as f64), ("pass", pass as f64)]);
    Ok(())
}

/// Lock check, child: try to open a store that the parent holds open.
fn cmd_lock_child(engine: &str, dir: &Path) -> Res<()> {
    let t0 = Instant::now();
    let r = engines::open(engine, dir, Mode::Durable);
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    match r {
        Ok(_) => println!("LOCK opened ({ms:.0} ms)"),
        Err(err) => println!("LOCK refused after {ms:.0} ms: {err}"),
    }
    Ok(())
}

/// One recovery measurement: a child writes `msgs` messages and closes (or is SIGKILLed), the
/// files are evicted from the page cache, another child opens and scans.
fn recovery_once(e: &str, kill: bool, msgs: u64) -> Res<Metrics> {
    let s = |x: &dyn ToString| x.to_string();
    let tmp = TempDir::new("recov")?;
    let dir = tmp.sub("db");
    let args = [
        s(&"recov-write"),
        s(&e),
        dir.display().to_string(),
        s(&msgs),
        s(&if kill { "kill" } else { "clean" }),
    ];
    if kill {
        let mut ch = Command::new(std::env::current_exe()?)
            .args(&args)
            .stdout(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(ch.stdout.take().unwrap()).read_line(&mut line)?;
        if line.trim() != "done" {
            return Err(format!("recov-write {e}: {line:?}").into());
        }
        ch.kill()?;
        ch.wait()?;
    } else {
        child(&args)?;
    }
    let disk = dir_size(&dir).0 as f64 / (1024.0 * 1024.0);
    evict_from_page_cache(&dir);
    let mut m = child(&[s(&"recov-open"), s(&e), dir.display().to_string(), s(&msgs)])?;
    m.insert("disk_mib".into(), disk);
    Ok(m)
}

fn lock_check(engine: &str) -> Res<String> {
    let td = TempDir::new("lock")?;
    let dir = td.sub("db");
    let run_child = || -> Res<String> {
        let out = Command::new(std::env::current_exe()?)
            .args(["lock-child", engine, dir.to_str().unwrap()])
            .stderr(Stdio::null())
            .output()?;
        let s = String::from_utf8_lossy(&out.stdout);
        Ok(s.lines()
            .find(|l| l.starts_with("LOCK"))
            .map(|l| l.trim_start_matches("LOCK ").to_string())
            .unwrap_or_else(|| format!("child died: {}", out.status)))
    };
    let held = engines::open(engine, &dir, Mode::Durable)?;
    let second = run_child()?;
    drop(held);
    std::thread::sleep(Duration::from_millis(100));
    let after = run_child()?;
    Ok(format!("while held: {second}; after close: {after}"))
}

// ---------------------------------------------------------------------------------------------
// the orchestrator

struct Plan {
    reps: usize,
    secs: f64,
    max_msgs: u64,
    steady_msgs: u64,
    steady_batch: u64,
    recov_msgs: u64,
    crash_runs: usize,
    engines: Vec<String>,
}

#[derive(Default)]
struct Collected {
    runs: BTreeMap<(String, String), Vec<Metrics>>, // (scenario, engine) -> one Metrics per rep
}

impl Collected {
    fn add(&mut self, scenario: &str, engine: &str, m: Metrics) {
        self.runs
            .entry((scenario.to_string(), engine.to_string()))
            .or_default()
            .push(m);
    }
    fn values(&self, scenario: &str, engine: &str, key: &str) -> Vec<f64> {
        self.runs
            .get(&(scenario.to_string(), engine.to_string()))
            .map(|v| v.iter().filter_map(|m| m.get(key).copied()).collect())
            .unwrap_or_default()
    }
    fn med(&self, scenario: &str, engine: &str, key: &str) -> f64 {
        median(&self.values(scenario, engine, key))
    }
    /// "median (min–max)" with the spread flagged when max/min > 1.3
    fn cell(&self, scenario: &str, engine: &str, key: &str, fmt: fn(f64) -> String) -> String {
        let v = self.values(scenario, engine, key);
        if v.is_empty() {
            return "–".into();
        }
        let med = median(&v);
        if v.len() == 1 {
            return fmt(med);
        }
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let flag = if lo > 0.0 && hi / lo > 1.3 {
            " ⚠"
        } else {
            ""
        };
        format!("{} ({}–{}){flag}", fmt(med), fmt(lo), fmt(hi))
    }
}

fn f_rate(x: f64) -> String {
    if x >= 10_000.0 {
        format!("{:.0}k", x / 1000.0)
    } else if x >= 1000.0 {
        format!("{:.1}k", x / 1000.0)
    } else {
        format!("{x:.0}")
    }
}
fn f_ms(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}
fn f_mib(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}
fn f_int(x: f64) -> String {
    format!("{x:.0}")
}

/// (scenario name, batch, payload, subscribers)
fn commit_configs() -> Vec<(String, u64, usize, u64)> {
    let mut v = Vec::new();
    for payload in [64usize, 1024] {
        for batch in [1u64, 16, 128, 1024] {
            v.push((format!("commit-b{batch}-p{payload}-s1"), batch, payload, 1));
        }
    }
    for payload in [64usize, 1024] {
        v.push((format!("commit-b128-p{payload}-s10"), 128, payload, 10));
    }
    v
}

fn cmd_all(plan: &Plan) -> Res<()> {
    let t_all = Instant::now();
    let mut c = Collected::default();
    let s = |x: &dyn ToString| x.to_string();
    eprintln!("# fsync baseline");
    for _ in 0..plan.reps {
        c.add("fsync", "disk", child(&[s(&"fsync"), s(&1000)])?);
    }
    for rep in 0..plan.reps {
        let mut order = plan.engines.clone();
        let n = order.len();
        order.rotate_left(rep % n);
        eprintln!(
            "# rep {} of {} (engine order {order:?}, {:.0} s so far)",
            rep + 1,
            plan.reps,
            t_all.elapsed().as_secs_f64()
        );
        for (name, batch, payload, subs) in commit_configs() {
            for e in &order {
                let m = child(&[
                    s(&"commit"),
                    s(e),
                    s(&batch),
                    s(&payload),
                    s(&subs),
                    s(&plan.secs),
                    s(&plan.max_msgs),
                ])?;
                eprintln!(
                    "  {name} {e}: {:.0} msg/s, p99 {:.2} ms",
                    m["msgs_per_s"], m["commit_p99_ms"]
                );
                c.add(&name, e, m);
            }
        }
        for payload in [1024usize, 64] {
            let name = format!("steady-p{payload}");
            for e in &order {
                let m = child(&[
                    s(&"steady"),
                    s(e),
                    s(&plan.steady_batch),
                    s(&payload),
                    s(&plan.steady_msgs),
                ])?;
                eprintln!(
                    "  {name} {e}: {:.0} msg/s, disk end {:.1} MiB, peak {:.1} MiB, rss {:.1} MiB",
                    m["msgs_per_s"], m["disk_end_mib"], m["disk_peak_mib"], m["rss_hwm_mib"]
                );
                c.add(&name, e, m);
            }
        }
        for e in &order {
            for kill in [false, true] {
                let m = recovery_once(e, kill, plan.recov_msgs)?;
                let name = if kill {
                    "recovery-kill"
                } else {
                    "recovery-clean"
                };
                eprintln!(
                    "  {name} {e}: open {:.0} ms + scan {:.0} ms",
                    m["open_ms"], m["scan_ms"]
                );
                c.add(name, e, m);
            }
        }
    }
    eprintln!("# crash check ({} runs per engine)", plan.crash_runs);
    for e in &plan.engines {
        let m = child(&[s(&"crash"), s(e), s(&plan.crash_runs)])?;
        c.add("crash", e, m);
    }
    eprintln!("# lock check");
    let mut locks = Vec::new();
    for e in &plan.engines {
        locks.push((e.clone(), lock_check(e)?));
    }
    eprintln!("# done in {:.0} s", t_all.elapsed().as_secs_f64());
    print_tables(plan, &c, &locks);
    Ok(())
}

fn print_tables(plan: &Plan, c: &Collected, locks: &[(String, String)]) {
    let es = &plan.engines;
    let header = |first: &str| {
        println!("| {first} | {} |", es.join(" | "));
        println!("|---|{}", "---|".repeat(es.len()));
    };
    println!("Engines:");
    for e in es {
        println!("- **{e}**: {}", engines::describe(e));
    }
    println!(
        "\nEach cell: median of {} runs (min–max); ⚠ marks max/min > 1.3.\n",
        plan.reps
    );

    println!("### fsync baseline (write 100 B at the end of a file + sync, 1000 times; µs)\n");
    println!("| | p50 | p99 | mean | max |\n|---|---|---|---|---|");
    for n in ["fdatasync", "fsync"] {
        println!(
            "| write + {n} | {} | {} | {} | {} |",
            c.cell("fsync", "disk", &format!("{n}_p50_us"), f_int),
            c.cell("fsync", "disk", &format!("{n}_p99_us"), f_int),
            c.cell("fsync", "disk", &format!("{n}_mean_us"), f_int),
            c.cell("fsync", "disk", &format!("{n}_max_us"), f_int),
        );
    }

    println!("\n### Durable commits, insert only, fresh store ({} s per run after a warm-up): messages/s\n", plan.secs);
    println!("| batch (msgs/commit), payload, subscribers | {} | disk: fdatasync p50 before each run (µs) |", es.join(" | "));
    println!("|---|{}---|", "---|".repeat(es.len()));
    for (name, batch, payload, subs) in commit_configs() {
        let cells: Vec<String> = es
            .iter()
            .map(|e| c.cell(&name, e, "msgs_per_s", f_rate))
            .collect();
        let probes: Vec<f64> = es
            .iter()
            .flat_map(|e| c.values(&name, e, "probe_fsync_us"))
            .collect();
        let lo = probes.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = probes.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        println!(
            "| {batch}, {payload} B, {subs} | {} | {:.0} ({lo:.0}–{hi:.0}) |",
            cells.join(" | "),
            median(&probes)
        );
    }
    println!("\n### Same runs: commit latency p50 / p99 (ms)\n");
    header("batch, payload, subscribers");
    for (name, batch, payload, subs) in commit_configs() {
        let cells: Vec<String> = es
            .iter()
            .map(|e| {
                format!(
                    "{} / {}",
                    f_ms(c.med(&name, e, "commit_p50_ms")),
                    f_ms(c.med(&name, e, "commit_p99_ms"))
                )
            })
            .collect();
        println!("| {batch}, {payload} B, {subs} | {} |", cells.join(" | "));
    }

    for payload in [1024usize, 64] {
        let n = format!("steady-p{payload}");
        println!(
            "\n### Steady state: {} messages of {payload} B, {} per commit, each commit inserting a batch and deleting the previous one\n",
            plan.steady_msgs, plan.steady_batch
        );
        header("");
        let rows: [Row; 12] = [
            ("messages/s", "msgs_per_s", f_rate),
            ("commit p50 (ms)", "commit_p50_ms", f_ms),
            ("commit p99 (ms)", "commit_p99_ms", f_ms),
            ("data written (MiB, keys + values)", "written_mib", f_mib),
            ("disk at end, open (MiB allocated)", "disk_end_mib", f_mib),
            ("disk peak during run (MiB)", "disk_peak_mib", f_mib),
            ("disk after close (MiB)", "disk_closed_mib", f_mib),
            ("peak RSS, VmHWM (MiB)", "rss_hwm_mib", f_mib),
            ("RSS at end (MiB)", "rss_end_mib", f_mib),
            ("threads (max seen)", "threads_max", f_int),
            ("open fds (max seen)", "fds_max", f_int),
            ("queue entries left", "left_entries", f_int),
        ];
        for (label, key, f) in rows {
            let cells: Vec<String> = es.iter().map(|e| c.cell(&n, e, key, f)).collect();
            println!("| {label} | {} |", cells.join(" | "));
        }
    }

    println!(
        "\n### Recovery: {} messages (1 KiB, 1 subscriber) written without deletion, files evicted from the page cache, then open + iterate all queue entries in key order (ms)\n",
        plan.recov_msgs
    );
    header("");
    let rows: [ScRow; 10] = [
        ("store size (MiB)", "recovery-clean", "disk_mib", f_mib),
        ("after clean close: open", "recovery-clean", "open_ms", f_ms),
        (
            "after clean close: full scan",
            "recovery-clean",
            "scan_ms",
            f_ms,
        ),
        (
            "after clean close: open + scan",
            "recovery-clean",
            "total_ms",
            f_ms,
        ),
        (
            "after SIGKILL: open (incl. repair/replay)",
            "recovery-kill",
            "open_ms",
            f_ms,
        ),
        ("after SIGKILL: full scan", "recovery-kill", "scan_ms", f_ms),
        (
            "after SIGKILL: open + scan",
            "recovery-kill",
            "total_ms",
            f_ms,
        ),
        (
            "after SIGKILL: peak RSS of the reopen (MiB)",
            "recovery-kill",
            "rss_hwm_mib",
            f_mib,
        ),
        (
            "after clean close: one session's range scan, warm",
            "recovery-clean",
            "session_scan_ms",
            f_ms,
        ),
        (
            "after SIGKILL: store size (MiB)",
            "recovery-kill",
            "disk_mib",
            f_mib,
        ),
    ];
    for (label, sc, key, f) in rows {
        let cells: Vec<String> = es.iter().map(|e| c.cell(sc, e, key, f)).collect();
        println!("| {label} | {} |", cells.join(" | "));
    }

    println!("\n### Crash check: strongest durability, SIGKILL at a random point, reopen, every acknowledged commit present and whole\n");
    header("");
    let cells: Vec<String> = es
        .iter()
        .map(|e| {
            format!(
                "{} / {}",
                f_int(c.med("crash", e, "pass")),
                f_int(c.med("crash", e, "runs"))
            )
        })
        .collect();
    println!("| runs passed | {} |", cells.join(" | "));

    println!("\n### A second process opening the same directory\n");
    println!("| engine | result |\n|---|---|");
    for (e, r) in locks {
        println!("| {e} | {r} |");
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn usage() -> Res<()> {
    Err("usage: store-compare all [--quick] [--reps N] [--engines a,b]\n\
         | fsync N | commit ENGINE BATCH PAYLOAD SUBS SECS MAX_MSGS | steady ENGINE BATCH PAYLOAD MSGS\n\
         | recovery ENGINE clean|kill [MSGS] | crash ENGINE RUNS | lock ENGINE\n\
         (engines: redb, redb-qr, fjall, fjall-small, canopydb; also redb-c32)"
        .into())
}

fn run() -> Res<()> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = a.first() else { return usage() };
    match cmd.as_str() {
        "all" => {
            let mut plan = Plan {
                reps: 5,
                secs: 2.0,
                max_msgs: 300_000,
                steady_msgs: 200_000,
                steady_batch: 128,
                recov_msgs: 100_000,
                crash_runs: 20,
                engines: ENGINES.iter().map(|s| s.to_string()).collect(),
            };
            let mut i = 1;
            while i < a.len() {
                match a[i].as_str() {
                    "--quick" => {
                        plan.reps = 1;
                        plan.secs = 0.5;
                        plan.steady_msgs = 10_240;
                        plan.recov_msgs = 10_000;
                        plan.crash_runs = 2;
                    }
                    "--reps" => {
                        plan.reps = arg(&a, i + 1, "reps")?;
                        i += 1;
                    }
                    "--engines" => {
                        plan.engines = a
                            .get(i + 1)
                            .ok_or("--engines needs a list")?
                            .split(',')
                            .map(String::from)
                            .collect();
                        i += 1;
                    }
                    other => return Err(format!("unknown option {other}").into()),
                }
                i += 1;
            }
            cmd_all(&plan)
        }
        "fsync" => cmd_fsync(arg(&a, 1, "n").unwrap_or(1000)),
        "commit" => cmd_commit(
            &a[1],
            arg(&a, 2, "batch")?,
            arg(&a, 3, "payload")?,
            arg(&a, 4, "subs")?,
            arg(&a, 5, "secs")?,
            arg(&a, 6, "max_msgs")?,
        ),
        "steady" => cmd_steady(
            &a[1],
            arg(&a, 2, "batch")?,
            arg(&a, 3, "payload")?,
            arg(&a, 4, "msgs")?,
        ),
        "recov-write" => cmd_recov_write(
            &a[1],
            Path::new(&a[2]),
            arg(&a, 3, "msgs")?,
            a.get(4).map(|s| s == "kill").unwrap_or(false),
        ),
        "recovery" => {
            let m = recovery_once(
                &a[1],
                a.get(2).map(|s| s == "kill").unwrap_or(false),
                arg(&a, 3, "msgs").unwrap_or(100_000),
            )?;
            let kv: Vec<(&str, f64)> = m.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            result_line(&kv);
            Ok(())
        }
        "recov-open" => cmd_recov_open(&a[1], Path::new(&a[2]), arg(&a, 3, "expect")?),
        "crash-child" => cmd_crash_child(&a[1], Path::new(&a[2])),
        "crash" => cmd_crash(&a[1], arg(&a, 2, "runs")?),
        "lock-child" => cmd_lock_child(&a[1], Path::new(&a[2])),
        "lock" => {
            println!("{}", lock_check(&a[1])?);
            Ok(())
        }
        _ => usage(),
    }
}
