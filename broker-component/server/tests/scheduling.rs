//! `[workers] scheduling` (sched.rs): the worker threads run under the policy the file asks for,
//! read back from the kernel (`/proc/PID/task/TID/stat`, field 41: 0 = SCHED_OTHER, 3 = SCHED_BATCH),
//! and the broker serves either way. The acceptor (main thread) is left alone. What *adaptive*
//! picks depends on the machine's CPU pressure at the time; its decision is unit-tested in sched.rs.

mod common;

use common::raw::{self, Raw, Version::*};
use common::*;
use musqratt_test_support::scratch_dir;

/// (thread name, scheduling policy) of every thread of `pid`.
fn policies(pid: u32) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("/proc/PID/task") {
        let dir = task.unwrap().path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
        // The name in parentheses may hold spaces: count fields after its closing ')'.
        let after = &stat[stat.rfind(')').expect("stat has (comm)") + 2..];
        // Field 3 (state) is the first after ')', so field 41 is the 39th.
        let policy = after
            .split_whitespace()
            .nth(38)
            .and_then(|v| v.parse().ok())
            .expect("policy field in /proc/PID/task/TID/stat");
        out.push((comm.trim().to_string(), policy));
    }
    out
}

fn broker_scheduling(mode: &str) -> Broker {
    let dir = scratch_dir(&format!("sched-{mode}"));
    let conf = dir.join("musqratt.toml");
    std::fs::write(
        &conf,
        format!("[storage]\nin_memory = true\n\n[workers]\nscheduling = \"{mode}\"\n"),
    )
    .unwrap();
    broker_with_args(&["-c", conf.to_str().unwrap(), "--workers", "2"])
}

/// A round trip through the broker, so that its workers have handled events.
fn round_trip(port: u16) {
    let mut sub = Raw::subscriber(port, V311, "sub", "sched/t");
    let mut publisher = Raw::connect(port, V311, "pub");
    publisher.send(&raw::publish_qos0(V311, b"sched/t", b"hello"));
    assert_eq!(
        sub.expect_publish(WAIT),
        (b"sched/t".to_vec(), b"hello".to_vec())
    );
}

fn worker_policies(b: &Broker) -> Vec<u32> {
    let all = policies(b.pid());
    let workers: Vec<u32> = all
        .iter()
        .filter(|(name, _)| name.starts_with("worker-"))
        .map(|&(_, p)| p)
        .collect();
    assert_eq!(workers.len(), 2, "threads: {all:?}");
    workers
}

#[test]
fn batch_puts_every_worker_under_sched_batch() {
    let b = broker_scheduling("batch");
    round_trip(b.port());
    assert_eq!(worker_policies(&b), vec![3, 3]);
    let main = policies(b.pid())
        .into_iter()
        .find(|(name, _)| !name.starts_with("worker-"))
        .expect("the acceptor thread");
    assert_eq!(main.1, 0, "the acceptor keeps the normal policy");
}

#[test]
fn normal_leaves_the_workers_alone() {
    let b = broker_scheduling("normal");
    round_trip(b.port());
    assert_eq!(worker_policies(&b), vec![0, 0]);
}
