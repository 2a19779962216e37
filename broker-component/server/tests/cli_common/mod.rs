//! Shared by the tests of the client subcommands (`cli_shell`, `cli_pubsub`, `cli_tty`): start
//! the binary under test as a client, feed it, and wait for its lines. Every wait is bounded by a
//! generous timeout and none measures time: these tests must pass on a loaded 2-core machine.
#![allow(dead_code, unused_imports)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::time::Duration;

pub use musqratt_test_support::{
    free_port, mosquitto_pub, run_with_timeout, scratch_dir, wait_timeout, Broker, Lines,
    Mosquitto, Sub, START_TIMEOUT,
};

/// How long to wait for something that should happen.
pub const WAIT: Duration = Duration::from_secs(20);

/// The binary cargo built for these tests (the broker too: `$MUSQRATT_BIN` may override that).
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_musqratt"))
}

pub fn broker() -> Broker {
    Broker::start_bin(Path::new(env!("CARGO_BIN_EXE_musqratt")), &[])
}

/// Our client subcommand (`pub`, `sub`, `shell`) against 127.0.0.1:port.
pub fn client(sub: &str, port: u16, args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.arg(sub)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .env("RUST_LOG", "warn");
    c
}

/// Run `musqratt pub ARGS` to completion.
pub fn our_pub(port: u16, args: &[&str]) -> Output {
    run_with_timeout(&mut client("pub", port, args), WAIT)
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A running client (`shell` or `sub`) with its stdout and stderr collected line by line.
pub struct Running {
    child: Child,
    stdin: Option<ChildStdin>,
    pub out: Lines,
    pub err: Lines,
}

impl Running {
    pub fn start(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let out = Lines::default();
        let err = Lines::default();
        out.collect(child.stdout.take().unwrap());
        err.collect(child.stderr.take().unwrap());
        Running {
            stdin: child.stdin.take(),
            child,
            out,
            err,
        }
    }

    /// `musqratt shell` against a broker, scripted through stdin.
    pub fn shell(port: u16, args: &[&str]) -> Running {
        Running::start(client("shell", port, args))
    }

    /// Type one command.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin already closed");
        writeln!(stdin, "{line}").expect("write to the shell");
        stdin.flush().unwrap();
    }

    /// Wait for a stdout line equal to `line`.
    pub fn expect_out(&self, line: &str) {
        assert!(
            self.out.wait_until(WAIT, |l| l.iter().any(|l| l == line)),
            "no stdout line `{line}`\n{}",
            self.dump()
        );
    }

    /// Wait for a stderr line containing `needle`; returns it.
    pub fn expect_err(&self, needle: &str) -> String {
        assert!(
            self.err
                .wait_until(WAIT, |l| l.iter().any(|l| l.contains(needle))),
            "no stderr line containing `{needle}`\n{}",
            self.dump()
        );
        self.err
            .snapshot()
            .into_iter()
            .find(|l| l.contains(needle))
            .unwrap()
    }

    /// Wait for the `n`-th stderr line containing `needle` (1-based).
    pub fn expect_err_n(&self, needle: &str, n: usize) {
        assert!(
            self.err
                .wait_until(WAIT, |l| l.iter().filter(|l| l.contains(needle)).count()
                    >= n),
            "fewer than {n} stderr lines containing `{needle}`\n{}",
            self.dump()
        );
    }

    /// Close stdin (end of the script) and wait for the exit.
    pub fn finish(mut self) -> (ExitStatus, Vec<String>, Vec<String>) {
        drop(self.stdin.take());
        self.wait()
    }

    /// Wait for the process to exit by itself.
    pub fn wait(&mut self) -> (ExitStatus, Vec<String>, Vec<String>) {
        let status = wait_timeout(&mut self.child, WAIT)
            .unwrap_or_else(|| panic!("client did not exit\n{}", self.dump()));
        // The collectors reach EOF right after the exit.
        self.out.wait_until(Duration::from_millis(500), |_| false);
        (status, self.out.snapshot(), self.err.snapshot())
    }

    pub fn dump(&self) -> String {
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            self.out.snapshot().join("\n"),
            self.err.snapshot().join("\n")
        )
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run a whole shell script (one command per line) and return (status, stdout, stderr).
pub fn run_script(
    port: u16,
    args: &[&str],
    script: &str,
) -> (ExitStatus, Vec<String>, Vec<String>) {
    let mut sh = Running::shell(port, args);
    for line in script.lines() {
        sh.send(line);
    }
    sh.finish()
}

/// The `error:` lines of a stderr capture.
pub fn errors(err: &[String]) -> Vec<&String> {
    err.iter().filter(|l| l.starts_with("error:")).collect()
}
