//! Helpers shared by MusQraTT's integration tests.
//!
//! - [`Broker`]: runs the `musqratt` binary on a loopback port the OS chooses
//!   (`serve --listen 127.0.0.1:0 --in-memory`, the port read from its `listening on` log line),
//!   captures its log lines and kills it on drop.
//! - [`Mosquitto`]: runs Debian's `/usr/sbin/mosquitto` as a peer broker on a free port (retried
//!   on another port if that one was taken in the meantime).
//! - [`mosquitto_pub`] / [`Sub`]: the Mosquitto command line clients, with timeouts.
//! - [`raw`]: a tiny hand-rolled MQTT client over a `TcpStream` for malformed-input tests. It does
//!   not use the codec crate on purpose: the tests stay independent from the implementation.
//!
//! The broker binary is `$MUSQRATT_BIN` when set, otherwise the path the caller gives (the server
//! crate's tests pass `env!("CARGO_BIN_EXE_musqratt")`), otherwise `target/release/musqratt` or
//! `target/debug/musqratt` in the workspace.
#![forbid(unsafe_code)]

pub mod hostile;
pub mod raw;

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long a broker or a peer gets to come up.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Default wait for something that should happen (a message, a close).
pub const WAIT: Duration = Duration::from_secs(5);

/// A free TCP port on 127.0.0.1 (bind port 0, read it, release it). Racy: another process may
/// take it before it is used, so a caller that binds it must retry on failure (as
/// [`Mosquitto::start`] does); [`Broker`] does not use it (the broker binds port 0 itself).
/// The port of the first `listening on SCHEME://127.0.0.1:PORT` line the broker logged (`mqtt`,
/// `mqtts`, `ws`, `wss`): how a test learns the ports of listeners bound to port 0.
pub fn listening_port(lines: &[String], scheme: &str) -> Option<u16> {
    let want = format!("listening on {scheme}://127.0.0.1:");
    lines.iter().find_map(|l| {
        let rest = &l[l.find(&want)? + want.len()..];
        let end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        rest[..end].parse().ok()
    })
}

pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

/// The broker binary: `$MUSQRATT_BIN`, else `fallback`, else the workspace's release/debug build.
pub fn broker_bin(fallback: Option<&Path>) -> PathBuf {
    if let Some(p) = std::env::var_os("MUSQRATT_BIN").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(p) = fallback {
        return p.to_path_buf();
    }
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target");
    for profile in ["release", "debug"] {
        let p = target.join(profile).join("musqratt");
        if p.exists() {
            return p;
        }
    }
    panic!("no broker binary: set MUSQRATT_BIN or run `cargo build --release -p musqratt`")
}

/// A fresh, empty scratch directory under the system temp dir (left for post-mortems).
pub fn scratch_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "musqratt-test-{}-{}-{}",
        tag,
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Lines collected from a child's stdout and stderr, with a condvar to wait on.
#[derive(Clone, Default)]
pub struct Lines(Arc<(Mutex<Vec<String>>, Condvar)>);

impl Lines {
    /// Start a thread that appends every line of `r` (lossy UTF-8). Joining it waits for `r`'s
    /// end (a child's exit closes its pipes): then every line it wrote is here.
    pub fn collect<R: Read + Send + 'static>(&self, r: R) -> JoinHandle<()> {
        let me = self.clone();
        thread::spawn(move || {
            let mut r = BufReader::new(r);
            let mut buf = Vec::new();
            while let Ok(n) = r.read_until(b'\n', &mut buf) {
                if n == 0 {
                    break;
                }
                let line = String::from_utf8_lossy(&buf)
                    .trim_end_matches(['\r', '\n'])
                    .to_string();
                buf.clear();
                let (m, cv) = &*me.0;
                m.lock().unwrap().push(line);
                cv.notify_all();
            }
        })
    }

    /// A copy of all lines so far.
    pub fn snapshot(&self) -> Vec<String> {
        self.0 .0.lock().unwrap().clone()
    }

    pub fn len(&self) -> usize {
        self.0 .0.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Wait until `pred` holds for the lines, or `timeout` passes. Returns whether it held.
    pub fn wait_until(&self, timeout: Duration, pred: impl Fn(&[String]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let (m, cv) = &*self.0;
        let mut g = m.lock().unwrap();
        loop {
            if pred(&g) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            g = cv.wait_timeout(g, deadline - now).unwrap().0;
        }
    }
}

/// A running `musqratt serve`, killed on drop.
pub struct Broker {
    child: Child,
    port: u16,
    logs: Lines,
}

impl Broker {
    /// `musqratt serve --listen 127.0.0.1:0 --in-memory` with the default binary.
    pub fn start() -> Broker {
        Self::start_with_args(&[])
    }

    /// Same as [`Broker::start`] with extra `serve` arguments (e.g. `["--hold", "off"]`).
    pub fn start_with_args(args: &[&str]) -> Broker {
        Self::start_bin(&broker_bin(None), args)
    }

    /// Start a given binary (unless `$MUSQRATT_BIN` overrides it, see [`broker_bin`]).
    pub fn start_bin(bin: &Path, args: &[&str]) -> Broker {
        Self::start_exact(&broker_bin(Some(bin)), args)
    }

    /// Start exactly this binary, whatever `$MUSQRATT_BIN` says (for a test that needs a binary
    /// built with a feature, e.g. `fault-injection`).
    ///
    /// The broker binds port 0, so the OS picks a free port with no race; the port is read from
    /// the log line `listening on mqtt://127.0.0.1:PORT`, which the broker prints once its workers
    /// run.
    pub fn start_exact(bin: &Path, args: &[&str]) -> Broker {
        Self::launch(bin, &["--in-memory"], args, None)
    }

    /// As [`Broker::start_bin`] with this `RUST_LOG` filter (e.g. `"trace"`), whatever the test's
    /// environment says: for tests that assert on what the broker logs at every level.
    pub fn start_bin_with_log(bin: &Path, args: &[&str], rust_log: &str) -> Broker {
        Self::launch(
            &broker_bin(Some(bin)),
            &["--in-memory"],
            args,
            Some(rust_log),
        )
    }

    /// The default binary with its durable store in `dir` (`--data-dir DIR`) instead of
    /// `--in-memory`: for the durability tests, which kill and restart it on the same directory.
    /// `bin` as for [`Broker::start_bin`].
    pub fn start_with_store(bin: &Path, dir: &Path, args: &[&str]) -> Broker {
        let dir = dir.to_str().expect("a UTF-8 data directory");
        Self::launch(&broker_bin(Some(bin)), &["--data-dir", dir], args, None)
    }

    /// SIGKILL: the broker gets no chance to flush anything (a crash, a power cut for what the
    /// process had not handed to the kernel). Waits until it is gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn launch(bin: &Path, storage: &[&str], args: &[&str], rust_log: Option<&str>) -> Broker {
        let bin = bin.to_path_buf();
        let rust_log = rust_log.map_or_else(
            || std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            str::to_string,
        );
        let mut child = Command::new(&bin)
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(storage)
            .args(args)
            .env("RUST_LOG", rust_log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start broker {}: {e}", bin.display()));
        let logs = Lines::default();
        let readers = [
            logs.collect(child.stdout.take().unwrap()),
            logs.collect(child.stderr.take().unwrap()),
        ];
        let mut broker = Broker {
            child,
            port: 0,
            logs,
        };
        let want = "listening on mqtt://127.0.0.1:";
        let port_in = |l: &String| listening_port(std::slice::from_ref(l), "mqtt");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            // Woken by every new line; the short timeout is only to notice an early exit.
            if broker.logs.wait_until(Duration::from_millis(100), |l| {
                l.iter().any(|l| port_in(l).is_some())
            }) {
                broker.port = broker.logs.snapshot().iter().find_map(port_in).unwrap();
                return broker;
            }
            if let Ok(Some(status)) = broker.child.try_wait() {
                for r in readers {
                    let _ = r.join(); // every line the broker wrote, for the message below
                }
                panic!(
                    "broker {} exited ({status}) before printing `{want}`; output:\n{}",
                    bin.display(),
                    broker.logs.snapshot().join("\n")
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "broker {} did not print `{want}` within {:?}; output:\n{}",
                    bin.display(),
                    START_TIMEOUT,
                    broker.logs.snapshot().join("\n")
                );
            }
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The broker's process id (for /proc readings).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// All log lines so far (stdout and stderr, interleaved as they arrived).
    pub fn logs(&self) -> Vec<String> {
        self.logs.snapshot()
    }

    /// The live log collector (to wait for lines).
    pub fn log_lines(&self) -> &Lines {
        &self.logs
    }

    /// Wait until some log line contains `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        self.logs
            .wait_until(timeout, |l| l.iter().any(|l| l.contains(needle)))
    }

    /// Whether the broker process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!(
                "--- broker log (port {}) ---\n{}\n---",
                self.port,
                self.logs.snapshot().join("\n")
            );
        }
    }
}

/// Debian's Mosquitto as a peer broker on a free port, killed on drop.
pub struct Mosquitto {
    child: Child,
    port: u16,
    logs: Lines,
    _dir: PathBuf,
}

impl Mosquitto {
    pub const BIN: &'static str = "/usr/sbin/mosquitto";

    /// `listener PORT 127.0.0.1`, `allow_anonymous true`, logging to stderr.
    pub fn start() -> Mosquitto {
        Self::start_with_config("")
    }

    /// Same as [`Mosquitto::start`] with extra configuration lines appended.
    ///
    /// Mosquitto cannot bind port 0 and report it, so it gets a [`free_port`]; if another process
    /// took that port in the meantime, Mosquitto exits at once and is started again on another.
    pub fn start_with_config(extra: &str) -> Mosquitto {
        let mut tries = 0;
        loop {
            tries += 1;
            match Self::try_start(extra) {
                Ok(m) => return m,
                Err(logs) if tries < 5 && logs.contains("Address already in use") => {}
                Err(logs) => panic!("mosquitto did not start; output:\n{logs}"),
            }
        }
    }

    /// One attempt: `Err(its output)` if it exited or did not get ready in time.
    fn try_start(extra: &str) -> Result<Mosquitto, String> {
        let dir = scratch_dir("mosquitto");
        let port = free_port();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
                 log_dest stderr\nlog_type all\n{extra}\n"
            ),
        )
        .expect("write mosquitto.conf");
        let mut child = Command::new(Self::BIN)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} (scripts/install-deps.sh test): {e}",
                    Self::BIN
                )
            });
        let logs = Lines::default();
        let readers = [
            logs.collect(child.stdout.take().unwrap()),
            logs.collect(child.stderr.take().unwrap()),
        ];
        // Ready once it says so: it logs `mosquitto version X running` after binding its listeners.
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            // Woken by every new line; the short timeout is only to notice an early exit.
            if logs.wait_until(Duration::from_millis(100), |l| {
                l.iter().any(|l| l.contains(" running"))
            }) && TcpStream::connect(("127.0.0.1", port)).is_ok()
            {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                for r in readers {
                    let _ = r.join();
                }
                return Err(format!(
                    "exited ({status}):\n{}",
                    logs.snapshot().join("\n")
                ));
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "did not listen on {port} within {START_TIMEOUT:?}:\n{}",
                    logs.snapshot().join("\n")
                ));
            }
        }
        Ok(Mosquitto {
            child,
            port,
            logs,
            _dir: dir,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn logs(&self) -> Vec<String> {
        self.logs.snapshot()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Wait for a child with a timeout; kill it when the time is up (returns `None` then).
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Run a command to completion with a timeout, capturing its output; panics on timeout.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let out = Lines::default();
    let err = Lines::default();
    let readers = [
        out.collect(child.stdout.take().unwrap()),
        err.collect(child.stderr.take().unwrap()),
    ];
    let status = wait_timeout(&mut child, timeout).unwrap_or_else(|| {
        panic!(
            "{cmd:?} did not finish within {timeout:?}; stderr:\n{}",
            err.snapshot().join("\n")
        )
    });
    // The reader threads finish at EOF, once the exited child's pipes are closed.
    for r in readers {
        let _ = r.join();
    }
    let join = |l: &Lines| {
        l.snapshot()
            .iter()
            .map(|s| format!("{s}\n"))
            .collect::<String>()
            .into_bytes()
    };
    Output {
        status,
        stdout: join(&out),
        stderr: join(&err),
    }
}

/// `mosquitto_pub -h 127.0.0.1 -p PORT ARGS...`; panics unless it exits 0 within 10 s.
pub fn mosquitto_pub(port: u16, args: &[&str]) -> Output {
    let out = run_with_timeout(
        Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(args),
        Duration::from_secs(10),
    );
    assert!(
        out.status.success(),
        "mosquitto_pub {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A message as printed by [`Sub`]: topic, payload, QoS and the retain flag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Msg {
    pub topic: String,
    pub payload: String,
    pub qos: u8,
    pub retain: bool,
}

/// A background `mosquitto_sub` (run with `-d` to see its SUBACK), killed on drop.
pub struct Sub {
    child: Child,
    lines: Lines,
    /// The stdout/stderr reader threads (joined once the process has exited).
    readers: Vec<JoinHandle<()>>,
}

/// Output format of [`Sub`]: a marker, then topic, QoS, retain flag and payload, tab separated.
const SUB_FORMAT: &str = "MSG\t%t\t%q\t%r\t%p";

impl Sub {
    /// Start `mosquitto_sub -h 127.0.0.1 -p PORT -d -F FORMAT ARGS...` and wait for its SUBACK.
    pub fn start(port: u16, args: &[&str]) -> Sub {
        let sub = Self::spawn(port, args);
        let ok = sub.lines.wait_until(START_TIMEOUT, |l| {
            l.iter().any(|l| l.contains("received SUBACK"))
        });
        assert!(
            ok,
            "mosquitto_sub {args:?} got no SUBACK; output:\n{}",
            sub.lines.snapshot().join("\n")
        );
        sub
    }

    /// Start without waiting for the SUBACK.
    pub fn spawn(port: u16, args: &[&str]) -> Sub {
        // stdbuf: mosquitto_sub's stdout is block-buffered on a pipe; we want each line now.
        let mut child = Command::new("stdbuf")
            .args([
                "-oL",
                "mosquitto_sub",
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-d",
                "-F",
                SUB_FORMAT,
            ])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run mosquitto_sub (scripts/install-deps.sh test)");
        let lines = Lines::default();
        let readers = vec![
            lines.collect(child.stdout.take().unwrap()),
            lines.collect(child.stderr.take().unwrap()),
        ];
        Sub {
            child,
            lines,
            readers,
        }
    }

    fn parse(lines: &[String]) -> Vec<Msg> {
        lines
            .iter()
            .filter_map(|l| {
                let mut f = l.strip_prefix("MSG\t")?.splitn(4, '\t');
                let topic = f.next()?.to_string();
                let qos = f.next()?.parse().ok()?;
                let retain = f.next()? == "1";
                let payload = f.next().unwrap_or("").to_string();
                Some(Msg {
                    topic,
                    payload,
                    qos,
                    retain,
                })
            })
            .collect()
    }

    /// The messages received so far.
    pub fn messages(&self) -> Vec<Msg> {
        Self::parse(&self.lines.snapshot())
    }

    /// Wait until at least `n` messages arrived (or `timeout`); returns what arrived.
    pub fn wait_messages(&self, n: usize, timeout: Duration) -> Vec<Msg> {
        self.lines
            .wait_until(timeout, |l| Self::parse(l).len() >= n);
        self.messages()
    }

    /// Wait until `pred` holds for the messages received so far (or `timeout`); returns them.
    pub fn wait_until(&self, timeout: Duration, pred: impl Fn(&[Msg]) -> bool) -> Vec<Msg> {
        self.lines.wait_until(timeout, |l| pred(&Self::parse(l)));
        self.messages()
    }

    /// Everything mosquitto_sub printed (debug lines included), for failure messages.
    pub fn output(&self) -> String {
        self.lines.snapshot().join("\n")
    }

    /// Wait for the process to exit by itself (e.g. `-C`/`-W`); kill it after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let s = wait_timeout(&mut self.child, timeout);
        // Exited (or killed): its pipes are closed, so the readers end with its last line.
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        s
    }

    /// Kill it abruptly (SIGKILL: no DISCONNECT, so the broker sends its will).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Run `mosquitto_sub ARGS...` to its end (give it `-C N` and/or `-W SECS`) and return the
/// messages it printed. Killed after `timeout`.
pub fn mosquitto_sub(port: u16, args: &[&str], timeout: Duration) -> Vec<Msg> {
    let mut sub = Sub::spawn(port, args);
    sub.wait_exit(timeout);
    sub.messages()
}
