//! `musqratt shell` on a real terminal (tmux): a message arriving while a command is half typed
//! prints above the prompt and leaves the typed text intact, on screen and in the line editor;
//! command completion and history work; `musqratt passwd` reads the password without echo. tmux
//! comes from `scripts/install-deps.sh test`.

mod cli_common;

use cli_common::*;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

/// A private tmux server (its own socket) running one command in a 150x40 pane.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(cmd: &[&str]) -> Tmux {
        let found = Command::new("tmux").arg("-V").output();
        assert!(
            found.is_ok_and(|o| o.status.success()),
            "tmux not found: `scripts/install-deps.sh test` installs it"
        );
        let socket = format!("musqratt-test-{}-{}", std::process::id(), free_port());
        let t = Tmux { socket };
        let out = Command::new("tmux")
            .args(["-L", &t.socket, "-f", "/dev/null"])
            .args(["new-session", "-d", "-x", "150", "-y", "40", "--"])
            .args(cmd)
            .output()
            .expect("run tmux");
        assert!(out.status.success(), "tmux: {}", text(&out.stderr));
        t
    }

    fn tmux(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("run tmux")
    }

    /// Keys by name (`Enter`, `Tab`, `Up`, `C-u`).
    fn keys(&self, keys: &[&str]) {
        let mut a = vec!["send-keys", "-t", "0"];
        a.extend_from_slice(keys);
        assert!(self.tmux(&a).status.success());
    }

    /// Text typed as is.
    fn type_text(&self, s: &str) {
        assert!(self
            .tmux(&["send-keys", "-t", "0", "-l", s])
            .status
            .success());
    }

    /// The visible lines, trailing blank lines dropped.
    fn screen(&self) -> Vec<String> {
        let out = self.tmux(&["capture-pane", "-p", "-t", "0"]);
        let mut lines: Vec<String> = text(&out.stdout)
            .lines()
            .map(|l| l.trim_end().to_string())
            .collect();
        while lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        lines
    }

    /// Poll the screen until `pred` holds; panics with the screen after the timeout.
    fn wait(&self, what: &str, pred: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let s = self.screen();
            if pred(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "screen never showed {what}:\n{}",
                s.join("\n")
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Wait until the last line (the prompt line) is exactly `line`.
    fn wait_prompt(&self, line: &str) -> Vec<String> {
        self.wait(&format!("prompt line `{line}`"), |s| {
            s.last().is_some_and(|l| l == line)
        })
    }

    fn wait_line(&self, line: &str) -> Vec<String> {
        self.wait(&format!("line `{line}`"), |s| s.iter().any(|l| l == line))
    }

    fn running(&self) -> bool {
        self.tmux(&["has-session"]).status.success()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

#[test]
fn incoming_message_keeps_the_half_typed_line() {
    let b = broker();
    let home = scratch_dir("tty-home");
    let bin = bin();
    let home_env = format!("HOME={}", home.display());
    let port = b.port().to_string();
    let t = Tmux::start(&[
        "env",
        &home_env,
        "RUST_LOG=warn",
        bin.to_str().unwrap(),
        "shell",
        "-h",
        "127.0.0.1",
        "-p",
        &port,
    ]);
    t.wait_prompt("musqratt>");
    t.type_text("connect t1");
    t.keys(&["Enter"]);
    t.wait_prompt("t1>");
    t.type_text("sub news");
    t.keys(&["Enter"]);
    t.wait_line("subscribed news (granted QoS 0)");
    t.wait_prompt("t1>");

    // Half a command on the prompt line, then a message from outside.
    t.type_text("pub news half-typ");
    t.wait_prompt("t1> pub news half-typ");
    let out = our_pub(b.port(), &["-t", "news", "-m", "breaking story"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = t.wait_line("news breaking story");
    // The message printed on a line of its own, above the prompt, which still holds the text.
    let msg = s.iter().position(|l| l == "news breaking story").unwrap();
    assert_eq!(
        &s[msg..],
        ["news breaking story", "t1> pub news half-typ"],
        "screen:\n{}",
        s.join("\n")
    );

    // The editor kept the text too: finishing and running the line publishes it.
    t.type_text("ed");
    t.keys(&["Enter"]);
    t.wait_line("news half-typed");
    t.wait_prompt("t1>");

    // Completion of command names and of client ids.
    t.type_text("disc");
    t.keys(&["Tab"]);
    t.wait_prompt("t1> disconnect");
    t.type_text("t");
    t.keys(&["Tab"]);
    t.wait_prompt("t1> disconnect t1");
    t.keys(&["Enter"]);
    t.wait_line("disconnected t1 (session deleted)");
    t.wait_prompt("musqratt>");

    // History: Up brings back the last command.
    t.keys(&["Up"]);
    t.wait_prompt("musqratt> disconnect t1");
    t.keys(&["C-u"]);
    t.wait_prompt("musqratt>");
    t.type_text("quit");
    t.keys(&["Enter"]);
    let deadline = Instant::now() + WAIT;
    while t.running() {
        assert!(Instant::now() < deadline, "the shell did not quit");
        thread::sleep(Duration::from_millis(100));
    }
    let history = std::fs::read_to_string(home.join(".musqratt_history")).unwrap_or_default();
    assert!(
        history.contains("pub news half-typed"),
        "history file: {history}"
    );
}

/// `musqratt passwd` on a terminal: two prompts, the password not echoed, and the entry it writes
/// lets the user in.
#[test]
fn passwd_asks_twice_without_echo() {
    let dir = scratch_dir("tty-passwd");
    let file = dir.join("passwd");
    let cmd = format!(
        "'{}' passwd -c '{}' zed; echo EXIT=$?; sleep 600",
        bin().display(),
        file.display()
    );
    let t = Tmux::start(&["sh", "-c", &cmd]);
    t.wait_prompt("Password:");
    t.type_text("typed-secret-9");
    t.keys(&["Enter"]);
    t.wait_prompt("Reenter password:");
    t.type_text("typed-secret-9");
    t.keys(&["Enter"]);
    let screen = t.wait_line("EXIT=0");
    assert_eq!(
        screen,
        ["Password:", "Reenter password:", "EXIT=0"],
        "the password was echoed, or a prompt is missing"
    );

    let conf = dir.join("musqratt.toml");
    std::fs::write(
        &conf,
        "[auth]\nallow_anonymous = false\npassword_file = \"passwd\"\n",
    )
    .unwrap();
    let b = Broker::start_bin(&bin(), &["-c", conf.to_str().unwrap()]);
    mosquitto_pub(
        b.port(),
        &["-t", "t", "-m", "m", "-u", "zed", "-P", "typed-secret-9"],
    );
}
