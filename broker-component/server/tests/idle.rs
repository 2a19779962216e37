//! An idle broker sleeps: with clients connected and nothing to do, its worker
//! threads wake only when a deadline is due (a keep-alive, `$SYS` every
//! `sys_interval`), not on a fixed tick. On an edge box that is CPU and power
//! given back, and on a 2-vCPU machine one runnable thread fewer.

mod common;

use std::thread;
use std::time::Duration;

use common::{broker_with_args, raw};

/// Voluntary context switches of the broker's worker threads so far: each is
/// one return from `epoll_wait` followed by sleeping again.
fn worker_wakeups(pid: u32) -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("/proc/PID/task") {
        let dir = task.unwrap().path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if !comm.starts_with("worker-") {
            continue;
        }
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        total += status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .expect("voluntary_ctxt_switches in /proc/PID/task/TID/status");
    }
    total
}

#[test]
fn idle_workers_do_not_wake_on_a_tick() {
    // Two workers, each with an idle client (keep-alive 60 s: first due in 90 s).
    let b = broker_with_args(&["--workers", "2"]);
    let _clients: Vec<raw::Raw> = (0..2)
        .map(|i| raw::Raw::connect(b.port(), raw::Version::V311, &format!("idle-{i}")))
        .collect();
    thread::sleep(Duration::from_millis(500));
    let before = worker_wakeups(b.pid());
    thread::sleep(Duration::from_millis(3500));
    let woken = worker_wakeups(b.pid()) - before;
    // A 1 s tick would be at least 6 here (2 workers × 3 ticks). Allowed: one
    // `$SYS` publication (every 10 s) and one spare.
    assert!(
        woken <= 2,
        "worker threads woke {woken} times in 3.5 s while idle"
    );
}
