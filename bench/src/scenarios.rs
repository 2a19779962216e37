//! The message-flow scenarios (fan-in, fan-out, pairs, latency): they differ
//! only in which publishers and subscribers exist and on which topics, so one
//! runner connects them all, runs the clock and writes the result line.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use musqratt_codec::{ProtocolVersion, QoS};

use crate::args::Args;
use crate::flow::{self, Expect, Pace, PubCfg, SubCfg};
use crate::proto::Conn;
use crate::slices::Slices;
use crate::stats::{secs, CpuMeter, Histogram, Json};

/// Settings every scenario shares (flags of the same names).
pub struct Common {
    pub scenario: String,
    pub addr: SocketAddr,
    pub version: ProtocolVersion,
    pub broker: String,
    pub broker_pid: Option<u32>,
    pub label: String,
    pub qos: QoS,
    pub payload: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub inflight: usize,
    pub batch: usize,
    /// Subscribers nap this long after a small read (0 = never).
    pub coalesce: Duration,
    /// `--slow-us`: print every latency sample over this to stderr.
    pub slow_over: Option<u64>,
    /// Unique per run, so retained or held messages of an earlier run can
    /// never reach this one.
    pub prefix: String,
    /// `--persistent`: subscribers ask for a session that outlives the connection (Clean
    /// Session 0), so a broker keeps their queue, and a durable one stores it.
    pub persistent: bool,
    /// `--cafile PEM`: connect over TLS, trusting that CA (the broker's TLS listener).
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Common {
    pub fn from_args(scenario: &str, a: &Args) -> Result<Common, String> {
        let host: String = a.get("host", "127.0.0.1".to_string())?;
        let port: u16 = a.get("port", 1883)?;
        let addr = format!("{host}:{port}")
            .parse()
            .map_err(|e| format!("--host/--port: {e}"))?;
        let qos = QoS::from_u8(a.get("qos", 0)?).ok_or("--qos must be 0, 1 or 2")?;
        let run = format!(
            "{}-{}",
            std::process::id(),
            crate::proto::now_ns() % 1_000_000
        );
        Ok(Common {
            scenario: scenario.to_string(),
            addr,
            version: if a.flag("v5") {
                ProtocolVersion::V5
            } else {
                ProtocolVersion::V311
            },
            broker: a.get("broker", "broker".to_string())?,
            broker_pid: a.opt("broker-pid").and_then(|p| p.parse().ok()),
            label: a.get("label", scenario.to_string())?,
            qos,
            payload: a.get("payload", 64)?,
            duration: Duration::from_secs_f64(a.get("duration", 5.0)?),
            warmup: Duration::from_secs_f64(a.get("warmup", 0.5)?),
            inflight: a.get("inflight", 64)?,
            batch: a.get("batch", 256)?,
            // The latency scenario must see every message the moment it lands.
            coalesce: Duration::from_micros(
                a.get("coalesce-us", if scenario == "latency" { 0 } else { 200 })?,
            ),
            slow_over: match a.opt("slow-us") {
                Some(v) => Some(
                    v.parse::<u64>()
                        .map_err(|e| format!("--slow-us {v}: {e}"))?
                        * 1000,
                ),
                None => None,
            },
            prefix: format!("bench/{run}"),
            persistent: a.flag("persistent"),
            tls: match a.opt("cafile") {
                Some(path) => Some(crate::stream::client_config(&path)?),
                None => None,
            },
        })
    }
}

pub struct PubSpec {
    pub topic: String,
    pub pace: Option<Pace>,
}

pub struct SubSpec {
    pub filter: String,
    /// Publisher indexes whose every message this subscriber must receive.
    pub from: Vec<usize>,
}

/// Connects everyone, runs warm-up + window, drains, prints one JSON line.
pub fn run(
    c: &Common,
    pubs: Vec<PubSpec>,
    subs: Vec<SubSpec>,
    params: &mut Json,
) -> Result<String, String> {
    let t_setup = Instant::now();
    let mut sub_conns = Vec::new();
    for (i, s) in subs.iter().enumerate() {
        let id = format!("{}-s{i}", c.prefix);
        let mut conn = Conn::connect_session(c.addr, c.tls.as_ref(), &id, c.version, !c.persistent)
            .map_err(|e| format!("subscriber {i} connect: {e}"))?;
        conn.subscribe(&s.filter, c.qos)
            .map_err(|e| format!("subscriber {i} subscribe: {e}"))?;
        sub_conns.push(conn);
    }
    let mut pub_conns = Vec::new();
    for i in 0..pubs.len() {
        let conn = Conn::connect(
            c.addr,
            c.tls.as_ref(),
            &format!("{}-p{i}", c.prefix),
            c.version,
        )
        .map_err(|e| format!("publisher {i} connect: {e}"))?;
        pub_conns.push(conn);
    }
    let setup = t_setup.elapsed();

    let start = Instant::now() + Duration::from_millis(50);
    let window_start = start + c.warmup;
    let window_end = window_start + c.duration;
    // Bounded drain: QoS 0 overload may leave a backlog the broker never sends.
    let drain = Duration::from_secs(3).max(c.duration / 2);
    let hard_end = window_end + drain + Duration::from_secs(2);

    let expects: Vec<Arc<Expect>> = subs.iter().map(|_| Arc::default()).collect();
    let sub_threads: Vec<_> = sub_conns
        .into_iter()
        .zip(&expects)
        .map(|(conn, e)| {
            let cfg = SubCfg {
                window_start,
                window_end,
                hard_end,
                idle: Duration::from_secs(1),
                slow_over: c.slow_over,
                // With QoS 1/2 the broker's in-flight window waits for our
                // acks: a nap would throttle the broker, so never nap there.
                coalesce: if c.qos == QoS::AtMostOnce {
                    c.coalesce
                } else {
                    Duration::ZERO
                },
            };
            let e = e.clone();
            std::thread::spawn(move || flow::subscriber(conn, cfg, e))
        })
        .collect();
    let pub_threads: Vec<_> = pub_conns
        .into_iter()
        .zip(&pubs)
        .enumerate()
        .map(|(i, (conn, p))| {
            let cfg = PubCfg {
                publisher: i as u32,
                topic: p.topic.clone(),
                qos: c.qos,
                payload: c.payload,
                inflight: c.inflight,
                batch: c.batch,
                pace: p.pace,
                start,
                stop: window_end,
                give_up: window_end + drain,
            };
            std::thread::spawn(move || flow::publisher(conn, cfg))
        })
        .collect();

    // CPU over the measurement window only: warm-up and drain are excluded.
    std::thread::sleep(window_start.saturating_duration_since(Instant::now()));
    let meter = CpuMeter::start(c.broker_pid);
    std::thread::sleep(window_end.saturating_duration_since(Instant::now()));
    let mut cpu = Json::default();
    meter.finish(&mut cpu);

    let mut errors = Vec::new();
    let mut sent = vec![0u64; pubs.len()];
    let mut acked = 0;
    for (i, t) in pub_threads.into_iter().enumerate() {
        let r = t.join().map_err(|_| "publisher thread panicked")?;
        sent[i] = r.sent;
        acked += r.acked;
        errors.extend(r.error);
    }
    for (s, e) in subs.iter().zip(&expects) {
        let want: u64 = s.from.iter().map(|&p| sent[p]).sum();
        e.count.store(want, Ordering::Release);
        e.done.store(true, Ordering::Release);
    }
    let (mut expected, mut received, mut dup, mut in_window) = (0, 0, 0, 0);
    let mut lat = Histogram::default();
    let mut slow = Vec::new();
    for (t, s) in sub_threads.into_iter().zip(&subs) {
        let r = t.join().map_err(|_| "subscriber thread panicked")?;
        expected += s.from.iter().map(|&p| sent[p]).sum::<u64>();
        received += r.tracker.distinct;
        dup += r.tracker.duplicated;
        in_window += r.in_window;
        lat.merge(&r.latency);
        slow.extend(r.slow);
        errors.extend(r.error);
    }

    // Diagnostics: when the slow samples happened, to tell a periodic cost
    // (a timer) from scattered ones (preemption).
    slow.sort_unstable();
    let t0 = slow.first().map_or(0, |s| s.0);
    for (ts, l) in &slow {
        eprintln!(
            "slow sample: +{:.6} s {:.1} us",
            (ts - t0) as f64 / 1e9,
            *l as f64 / 1e3
        );
    }

    let total_sent: u64 = sent.iter().sum();
    let mut j = Json::default();
    j.str("scenario", &c.scenario)
        .str("label", &c.label)
        .str("broker", &c.broker);
    params
        .int("qos", c.qos.as_u8().into())
        .int("payload", c.payload as u64)
        .int("publishers", pubs.len() as u64)
        .int("subscribers", subs.len() as u64)
        .num("duration_s", secs(c.duration))
        .str("protocol", if c.version.is_v5() { "5" } else { "3.1.1" })
        .str("session", if c.persistent { "persistent" } else { "clean" });
    if c.qos != QoS::AtMostOnce {
        params.int("inflight", c.inflight as u64);
    }
    j.raw("params", &std::mem::take(params).finish())
        .int("sent", total_sent)
        .int("acked", acked)
        .int("expected", expected)
        .int("received", received)
        .int("lost", expected.saturating_sub(received))
        .int("duplicated", dup)
        .num("msgs_per_s", in_window as f64 / secs(c.duration))
        .num(
            "publish_per_s",
            total_sent as f64 / secs(c.duration + c.warmup),
        )
        .raw("latency_us", &lat.json_us());
    if c.scenario == "latency" {
        j.raw("latency_hist_ns", &lat.json_buckets());
    }
    j.num("setup_s", secs(setup)).raw("cpu", &cpu.finish());
    match errors.first() {
        Some(e) => j.str("error", e),
        None => j.raw("error", "null"),
    };
    Ok(j.finish())
}

fn topic_per(c: &Common, i: usize, same: bool) -> String {
    if same {
        format!("{}/t", c.prefix)
    } else {
        format!("{}/{i}", c.prefix)
    }
}

/// N publishers → 1 subscriber (on `prefix/+`, or one shared topic).
pub fn fan_in(c: &Common, a: &Args) -> Result<String, String> {
    let n: usize = a.get("publishers", 8)?;
    let same = a.flag("same-topic");
    let pubs = (0..n)
        .map(|i| PubSpec {
            topic: topic_per(c, i, same),
            pace: None,
        })
        .collect();
    let filter = if same {
        topic_per(c, 0, true)
    } else {
        format!("{}/+", c.prefix)
    };
    let subs = vec![SubSpec {
        filter,
        from: (0..n).collect(),
    }];
    let mut p = Json::default();
    p.str("topics", if same { "same" } else { "distinct" });
    run(c, pubs, subs, &mut p)
}

/// 1 publisher → N subscribers of its topic.
pub fn fan_out(c: &Common, a: &Args) -> Result<String, String> {
    let n: usize = a.get("subscribers", 8)?;
    let topic = topic_per(c, 0, true);
    let pubs = vec![PubSpec {
        topic: topic.clone(),
        pace: None,
    }];
    let subs = (0..n)
        .map(|_| SubSpec {
            filter: topic.clone(),
            from: vec![0],
        })
        .collect();
    run(c, pubs, subs, &mut Json::default())
}

/// N publisher → subscriber pairs, each on its own topic.
pub fn pairs(c: &Common, a: &Args) -> Result<String, String> {
    let n: usize = a.get("pairs", 8)?;
    let pubs = (0..n)
        .map(|i| PubSpec {
            topic: topic_per(c, i, false),
            pace: None,
        })
        .collect();
    let subs = (0..n)
        .map(|i| SubSpec {
            filter: topic_per(c, i, false),
            from: vec![i],
        })
        .collect();
    run(c, pubs, subs, &mut Json::default())
}

/// One publisher at a fixed rate → one subscriber: end-to-end latency.
/// `--slice-ms L --turn 0|1`: publish only in this process's slices, so that
/// a second generator (the other turn) can measure another broker in the
/// slices between them (`slices.rs`).
pub fn latency(c: &Common, a: &Args) -> Result<String, String> {
    let rate: f64 = a.get("rate", 1000.0)?;
    let slice_ms: u64 = a.get("slice-ms", 0)?;
    let turn: u8 = a.get("turn", 0)?;
    let slices = match slice_ms {
        0 => None,
        ms => Some(Slices::new(Duration::from_millis(ms), turn)?),
    };
    let topic = topic_per(c, 0, true);
    let pubs = vec![PubSpec {
        topic: topic.clone(),
        pace: Some(Pace { rate, slices }),
    }];
    let subs = vec![SubSpec {
        filter: topic,
        from: vec![0],
    }];
    let mut p = Json::default();
    p.num("rate", rate);
    if slices.is_some() {
        p.int("slice_ms", slice_ms).int("turn", turn.into());
    }
    run(c, pubs, subs, &mut p)
}
