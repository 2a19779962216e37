//! The idle-connections scenario: M clients CONNECT and stay idle; the result
//! is the broker's RSS per connection and the connect rate.
//!
//! One process may hold at most 20,000 descriptors here (a hard limit), so the
//! clients are spread over several child processes (`conns-worker`) that the
//! parent drives over their stdin/stdout, one line per step. Each connection
//! binds a source address from 127.0.0.x first, so the 28k ephemeral ports of
//! one address do not bound the count, and closes with SO_LINGER 0 (a reset),
//! so no TIME_WAIT entries pile up across rounds.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use musqratt_codec::ProtocolVersion;
use socket2::{Domain, Socket, Type};

use crate::args::Args;
use crate::proto::Conn;
use crate::scenarios::Common;
use crate::stats::{rss_bytes, CpuMeter, Json};
use crate::stream::Stream;

/// `127.0.0.2-9` → those addresses.
fn source_ips(spec: &str) -> Result<Vec<Ipv4Addr>, String> {
    let bad = || format!("--src: expected A.B.C.D-N, got '{spec}'");
    let (first, last) = spec.split_once('-').ok_or_else(bad)?;
    let first: Ipv4Addr = first.parse().map_err(|_| bad())?;
    let last: u8 = last.parse().map_err(|_| bad())?;
    let o = first.octets();
    Ok((o[3]..=last.max(o[3]))
        .map(|d| Ipv4Addr::new(o[0], o[1], o[2], d))
        .collect())
}

fn parent_line(out: &mut BufReader<ChildStdout>) -> Result<Vec<String>, String> {
    let mut line = String::new();
    out.read_line(&mut line)
        .map_err(|e| format!("worker: {e}"))?;
    if line.is_empty() {
        return Err("a worker exited early".into());
    }
    Ok(line.split_whitespace().map(str::to_string).collect())
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

pub fn run(c: &Common, a: &Args) -> Result<String, String> {
    let clients: usize = a.get("clients", 19_000)?;
    let procs: usize = a.get("procs", 4)?;
    let threads: usize = a.get("threads", 2)?;
    let src: String = a.get("src", "127.0.0.2-9".to_string())?;
    let settle = Duration::from_secs_f64(a.get("settle", 1.0)?);
    source_ips(&src)?;
    let pid = c
        .broker_pid
        .ok_or("conns needs --broker-pid (for its RSS)")?;
    let rss0 = rss_bytes(pid).ok_or("cannot read the broker's VmRSS")?;
    let meter = CpuMeter::start(Some(pid));

    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut workers = Vec::new();
    for w in 0..procs {
        let count = clients / procs + usize::from(w < clients % procs);
        let mut child = Command::new(&exe)
            .arg("conns-worker")
            .args(["--addr", &c.addr.to_string(), "--src", &src])
            .args([
                "--count",
                &count.to_string(),
                "--threads",
                &threads.to_string(),
            ])
            .args(["--id", &format!("{}-w{w}", c.prefix)])
            .args(if c.version.is_v5() {
                &["--v5"][..]
            } else {
                &[][..]
            })
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn worker: {e}"))?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        workers.push(Worker {
            child,
            stdin,
            stdout,
        });
    }
    // Each worker answers "connected OK FAILED SECONDS [first error…]".
    let (mut ok, mut failed, mut slowest, mut errors) = (0, 0, 0f64, Vec::new());
    for w in &mut workers {
        let f = parent_line(&mut w.stdout)?;
        ok += f.get(1).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        failed += f.get(2).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        slowest = slowest.max(f.get(3).and_then(|v| v.parse().ok()).unwrap_or(0.0));
        if f.len() > 4 {
            errors.push(f[4..].join(" "));
        }
    }
    std::thread::sleep(settle);
    let rss1 = rss_bytes(pid).ok_or("the broker is gone")?;
    // Then prove the broker still serves them: one PINGREQ each.
    let mut alive = 0;
    for w in &mut workers {
        writeln!(w.stdin, "ping").map_err(|e| format!("worker: {e}"))?;
    }
    for w in &mut workers {
        alive += parent_line(&mut w.stdout)?
            .get(1)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    for mut w in workers {
        drop(w.stdin); // EOF: the worker resets its connections and exits
        let _ = w.child.wait();
    }
    let mut cpu = Json::default();
    meter.finish(&mut cpu);

    let mut params = Json::default();
    params
        .int("clients", clients as u64)
        .int("procs", procs as u64)
        .str("src", &src);
    let mut j = Json::default();
    j.str("scenario", "conns")
        .str("label", &c.label)
        .str("broker", &c.broker)
        .raw("params", &params.finish())
        .int("connected", ok)
        .int("failed", failed)
        .int("alive", alive)
        .num("connects_per_s", ok as f64 / slowest.max(1e-9))
        .int("rss_base_bytes", rss0)
        .int("rss_bytes", rss1)
        .num(
            "rss_per_conn_bytes",
            (rss1 as f64 - rss0 as f64) / ok.max(1) as f64,
        )
        .raw("cpu", &cpu.finish());
    match errors.first() {
        Some(e) => j.str("error", e),
        None => j.raw("error", "null"),
    };
    Ok(j.finish())
}

fn open(addr: SocketAddr, src: Ipv4Addr, id: &str, v: ProtocolVersion) -> std::io::Result<Stream> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    s.set_linger(Some(Duration::ZERO))?;
    s.bind(&SocketAddrV4::new(src, 0).into())?;
    s.connect_timeout(&addr.into(), Duration::from_secs(10))?;
    Ok(Conn::handshake(Stream::Plain(s.into()), id, v)?.stream)
}

/// The child side: connect `--count` clients over `--threads` threads, report,
/// then answer "ping" lines until stdin closes.
pub fn worker(a: &Args) -> Result<(), String> {
    let addr: SocketAddr = a.get("addr", "127.0.0.1:1883".parse().unwrap())?;
    let ips = source_ips(&a.get("src", "127.0.0.2-9".to_string())?)?;
    let count: usize = a.get("count", 1000)?;
    let threads: usize = a.get("threads", 2)?.max(1);
    let id: String = a.get("id", "w".to_string())?;
    let v = if a.flag("v5") {
        ProtocolVersion::V5
    } else {
        ProtocolVersion::V311
    };
    a.finish()?;

    let t0 = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (ips, id) = (ips.clone(), id.clone());
            let n = count / threads + usize::from(t < count % threads);
            std::thread::spawn(move || {
                let (mut conns, mut failed, mut first_err) = (Vec::with_capacity(n), 0u64, None);
                for i in 0..n {
                    let cid = format!("{id}-{t}-{i}");
                    // Another address when one runs out of ports.
                    let res = (0..ips.len()).find_map(|k| {
                        match open(addr, ips[(i + k + t) % ips.len()], &cid, v) {
                            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => None,
                            r => Some(r),
                        }
                    });
                    match res {
                        Some(Ok(s)) => conns.push(s),
                        Some(Err(e)) => {
                            failed += 1;
                            first_err.get_or_insert(e.to_string());
                        }
                        None => {
                            failed += 1;
                            first_err.get_or_insert("no source port left".to_string());
                        }
                    }
                }
                (conns, failed, first_err)
            })
        })
        .collect();
    let (mut conns, mut failed, mut err) = (Vec::new(), 0, None);
    for h in handles {
        let (c, f, e) = h.join().map_err(|_| "worker thread panicked")?;
        conns.extend(c);
        failed += f;
        err = err.or(e);
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let mut out = std::io::stdout();
    let line = format!(
        "connected {} {failed} {elapsed:.4} {}",
        conns.len(),
        err.unwrap_or_default()
    );
    writeln!(out, "{}", line.trim_end())
        .and_then(|_| out.flush())
        .map_err(|e| e.to_string())?;

    for line in std::io::stdin().lock().lines() {
        if line.map_err(|e| e.to_string())? != "ping" {
            continue;
        }
        for s in &mut conns {
            let _ = s.write_all(&[0xC0, 0]);
        }
        let mut alive = 0;
        for s in &mut conns {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut resp = [0u8; 2];
            if s.read_exact(&mut resp).is_ok() && resp == [0xD0, 0] {
                alive += 1;
            }
        }
        writeln!(out, "alive {alive}")
            .and_then(|_| out.flush())
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}
