//! Clients in the peer namespace: mosquitto_sub / mosquitto_pub (one-shot and line mode, i.e. one
//! connection fed message by message) and the repository's Python with paho-mqtt. Each runs under
//! `ip netns exec`, which execs the client: killing the child kills the client itself.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ExitStatus, Output, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use musqratt_test_support::{run_with_timeout, wait_timeout, Lines, Msg, START_TIMEOUT};

use super::topo::{Topo, BROKER_IP, PORT};

/// Output format of [`PeerSub`]: a marker, then topic, QoS, retain flag and payload.
const SUB_FORMAT: &str = "MSG\t%t\t%q\t%r\t%p";

fn host_args() -> [String; 4] {
    ["-h".into(), BROKER_IP.into(), "-p".into(), PORT.to_string()]
}

fn parse(line: &str) -> Option<Msg> {
    let mut f = line.strip_prefix("MSG\t")?.splitn(4, '\t');
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
}

/// `mosquitto_pub ARGS...` to the broker, one connection; panics unless it exits 0.
pub fn publish(t: &Topo, args: &[&str]) -> Output {
    let out = run_with_timeout(
        t.peer_cmd("mosquitto_pub").args(host_args()).args(args),
        Duration::from_secs(20),
    );
    assert!(
        out.status.success(),
        "mosquitto_pub {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A background `mosquitto_sub -d` (its SUBACK is visible), killed on drop.
pub struct PeerSub {
    child: Child,
    lines: Lines,
    readers: Vec<JoinHandle<()>>,
}

impl PeerSub {
    /// Start and wait for the SUBACK.
    pub fn start(t: &Topo, args: &[&str]) -> PeerSub {
        let s = Self::spawn(t, args);
        s.wait_suback();
        s
    }

    /// Start without waiting (to start many at once, then wait for each).
    pub fn spawn(t: &Topo, args: &[&str]) -> PeerSub {
        // stdbuf: mosquitto_sub's stdout is block-buffered on a pipe; we want each line now.
        let mut child = t
            .peer_cmd("stdbuf")
            .args(["-oL", "mosquitto_sub"])
            .args(host_args())
            .args(["-d", "-F", SUB_FORMAT])
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
        PeerSub {
            child,
            lines,
            readers,
        }
    }

    pub fn wait_suback(&self) {
        let ok = self.lines.wait_until(START_TIMEOUT, |l| {
            l.iter().any(|l| l.contains("received SUBACK"))
        });
        assert!(
            ok,
            "mosquitto_sub got no SUBACK; output:\n{}",
            self.output()
        );
    }

    /// The messages received so far.
    pub fn messages(&self) -> Vec<Msg> {
        self.lines
            .snapshot()
            .iter()
            .filter_map(|l| parse(l))
            .collect()
    }

    /// Wait until `pred` holds for the payloads received so far, or `timeout`; returns whether.
    /// Counts cheaply (a prefix test per line): callers may have thousands of lines.
    pub fn wait_payloads(&self, timeout: Duration, pred: impl Fn(&[&str]) -> bool) -> bool {
        self.lines.wait_until(timeout, |l| {
            let p: Vec<&str> = l
                .iter()
                .filter(|l| l.starts_with("MSG\t"))
                .map(|l| l.rsplit('\t').next().unwrap_or(""))
                .collect();
            pred(&p)
        })
    }

    /// Wait until at least `n` messages arrived (or `timeout`); returns what arrived.
    pub fn wait_messages(&self, n: usize, timeout: Duration) -> Vec<Msg> {
        self.wait_payloads(timeout, |p| p.len() >= n);
        self.messages()
    }

    /// Everything mosquitto_sub printed (debug lines included), for failure messages.
    pub fn output(&self) -> String {
        self.lines.snapshot().join("\n")
    }

    /// Wait for it to exit by itself (`-C N`); kill it after `timeout`. Joins the readers, so
    /// every line it printed is in [`PeerSub::messages`] afterwards.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let s = wait_timeout(&mut self.child, timeout);
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        s
    }
}

impl Drop for PeerSub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `mosquitto_pub -l`: one connection publishing each line written to its stdin.
pub struct LinePub {
    child: Child,
    stdin: Option<ChildStdin>,
    err: Lines,
}

impl LinePub {
    pub fn start(t: &Topo, args: &[&str]) -> LinePub {
        let mut child = t
            .peer_cmd("mosquitto_pub")
            .args(host_args())
            .arg("-l")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run mosquitto_pub");
        let err = Lines::default();
        err.collect(child.stderr.take().unwrap());
        let stdin = child.stdin.take();
        LinePub { child, stdin, err }
    }

    /// Publish one message (a line). Err when the client is gone.
    pub fn send(&mut self, line: &str) -> std::io::Result<()> {
        let w = self.stdin.as_mut().expect("stdin open");
        w.write_all(format!("{line}\n").as_bytes())
    }

    /// Take the stdin (to feed it from another thread).
    pub fn take_stdin(&mut self) -> ChildStdin {
        self.stdin.take().expect("stdin open")
    }

    /// Close stdin (end of input: it publishes what is left and disconnects) and wait.
    pub fn finish(mut self, timeout: Duration) -> (Option<ExitStatus>, String) {
        drop(self.stdin.take());
        let s = wait_timeout(&mut self.child, timeout);
        (s, self.err.snapshot().join("\n"))
    }

    /// SIGKILL: no DISCONNECT, the connection is cut mid-stream.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for LinePub {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The repository's venv Python (paho-mqtt 2.x, from scripts/install-deps.sh test), or
/// `$MUSQRATT_PYTHON`.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("MUSQRATT_PYTHON").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    assert!(
        p.exists(),
        "{} missing: run scripts/install-deps.sh test (or set MUSQRATT_PYTHON)",
        p.display()
    );
    p
}

/// Run a Python script in the peer namespace with the broker's address as arguments.
pub fn run_python(t: &Topo, script: &str) -> Output {
    let py = python();
    let mut c = t.peer_cmd(py.to_str().expect("utf-8 path"));
    c.args(["-c", script, BROKER_IP, &PORT.to_string()]);
    run_with_timeout(&mut c, Duration::from_secs(60))
}
