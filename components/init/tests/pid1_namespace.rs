//! The binary itself, without root or a VM.
//!
//! As PID 1 of private user, PID, mount and network namespaces (`unshare -Urnpf --mount-proc`)
//! init gets as far as such a namespace allows: proc and sysfs mount, devtmpfs cannot (it is
//! not mountable from a user namespace). It must then print one failure line and power off,
//! which reboot(2) in a child PID namespace turns into ending that namespace's init: the host
//! is never affected. Skipped where unprivileged user namespaces are disabled.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const INIT: &str = env!("CARGO_BIN_EXE_musqratt-init");
const UNSHARE: [&str; 3] = ["-Urnpf", "--mount-proc", "--"];

fn namespaces_available() -> bool {
    Command::new("unshare")
        .args(UNSHARE)
        .arg("true")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn refuses_to_run_unless_pid_1() {
    let out = Command::new(INIT).output().expect("run musqratt-init");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not PID 1"), "{err}");
}

#[test]
fn a_failure_as_pid_1_prints_one_line_and_powers_off() {
    if !namespaces_available() {
        eprintln!("skipped: unprivileged user namespaces are not available here");
        return;
    }
    let mut child = Command::new("unshare")
        .args(UNSHARE)
        .arg(INIT)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start unshare");
    let start = Instant::now();
    while child.try_wait().expect("try_wait").is_none() {
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let out = child.wait_with_output().expect("wait");
            panic!(
                "init did not power off within 30 s:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines.iter().all(|l| l.starts_with("init: ")), "{err}");
    assert_eq!(lines.last(), Some(&"init: powering off"), "{err}");
    let failures: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with("init: mount "))
        .collect();
    assert_eq!(failures.len(), 1, "{err}");
    assert!(
        failures[0].starts_with("init: mount devtmpfs on /dev: EPERM"),
        "{err}"
    );
}
