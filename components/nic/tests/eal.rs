//! Everything that needs DPDK's EAL, in one test binary: the EAL starts once per process, so
//! one #[test] runs the in-process sequence, and the failure cases (which leave DPDK's global
//! state unusable) re-execute this binary as a child process with an environment variable.
//!
//! EAL arguments: no hugepages, no PCI, no shared config, a unique --file-prefix per process;
//! the runtime directory is removed by the EAL's drop and, should a test fail, by a guard.

use std::path::{Path, PathBuf};
use std::process::Command;

use musqratt_nic::{ring_pair, ring_pair_with, Eal, NicError, Port, PortConfig, PortStats};

const CHILD_ENV: &str = "MUSQRATT_NIC_TEST_CHILD";
const RESULT_ENV: &str = "MUSQRATT_NIC_TEST_RESULT";

fn eal_args(prefix: &str, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "--no-huge",
        "--no-pci",
        "--no-shconf",
        "-m",
        "256",
        "-l",
        "0",
        "--file-prefix",
        prefix,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

/// Removes DPDK runtime directories of this test even when an assertion fails.
struct DirGuard(Vec<PathBuf>);

impl DirGuard {
    fn for_prefix(prefix: &str) -> DirGuard {
        let mut dirs = vec![Path::new("/var/run/dpdk").join(prefix)];
        if let Ok(xdg) = std::env::var("XDG_RUNTIME_DIR") {
            dirs.push(Path::new(&xdg).join("dpdk").join(prefix));
        }
        dirs.push(Path::new("/tmp/dpdk").join(prefix));
        DirGuard(dirs)
    }
}

impl Drop for DirGuard {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// This thread's allowed CPUs as the kernel lists them.
fn cpus_allowed() -> String {
    let status = std::fs::read_to_string("/proc/thread-self/status").expect("proc status");
    status
        .lines()
        .find(|l| l.starts_with("Cpus_allowed_list"))
        .expect("Cpus_allowed_list")
        .to_owned()
}

/// Frame `seq`: length 60..=1514, the sequence number in the first 8 bytes, then a pattern
/// derived from both, so a reordered, truncated or corrupted frame is noticed.
fn frame(seq: u64) -> Vec<u8> {
    let len = 60 + (seq as usize * 37) % (1514 - 60 + 1);
    let mut f = vec![0u8; len];
    f[..8].copy_from_slice(&seq.to_le_bytes());
    for (j, b) in f.iter_mut().enumerate().skip(8) {
        *b = (seq as usize).wrapping_mul(31).wrapping_add(j) as u8;
    }
    f
}

fn check_frame(got: &[u8], expect_seq: u64) {
    assert_eq!(got, frame(expect_seq).as_slice(), "frame {expect_seq}");
}

/// Receives everything `port` has, checking sequence numbers from `*next` on.
fn drain(port: &mut Port, next: &mut u64) -> u64 {
    let mut total = 0;
    loop {
        let n = port.rx_burst(|f| {
            check_frame(f, *next);
            *next += 1;
        });
        if n == 0 {
            return total;
        }
        total += n as u64;
    }
}

/// Sends frames `range` from `tx` to `rx` in batches that fit the ring, checking each arrives
/// in order.
fn stream(tx: &mut Port, rx: &mut Port, range: std::ops::Range<u64>) {
    let mut next = range.start;
    let mut seq = range.start;
    while seq < range.end {
        for _ in 0..256 {
            if seq == range.end {
                break;
            }
            assert!(tx.send(&frame(seq)), "send {seq}");
            seq += 1;
        }
        tx.flush();
        drain(rx, &mut next);
    }
    assert_eq!(next, range.end, "all frames received");
}

#[test]
fn eal_ports_and_cleanup() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return; // a child process runs child_entry only
    }
    let prefix = format!("mqnic_main_{}", std::process::id());
    let _guard = DirGuard::for_prefix(&prefix);
    let affinity_before = cpus_allowed();
    // net_af_packet9 names an interface that does not exist: its probe fails, which DPDK only
    // logs (init succeeds); opening the port must then say which argument failed and why.
    let eal = Eal::init(&eal_args(
        &prefix,
        &[
            "--vdev=net_ring0",
            "--vdev=net_af_packet9,iface=mqnic_nosuch9",
        ],
    ))
    .expect("EAL init");
    assert_eq!(
        cpus_allowed(),
        affinity_before,
        "EAL init leaves the caller's affinity"
    );
    assert_eq!(eal.file_prefix(), prefix);
    let runtime_dir = eal.runtime_dir().expect("runtime dir").to_path_buf();
    assert!(runtime_dir.ends_with(&prefix), "{runtime_dir:?}");
    assert!(runtime_dir.is_dir(), "EAL created {runtime_dir:?}");
    // The thread that ran rte_eal_init becomes the main lcore (and is pinned to its CPU);
    // other threads are not lcores.
    assert_eq!(eal.lcore_id(), Some(0));
    std::thread::scope(|s| {
        s.spawn(|| assert_eq!(eal.lcore_id(), None))
            .join()
            .expect("thread");
    });

    // Once per process.
    assert_eq!(
        Eal::init(&eal_args("mqnic_second", &[])).err(),
        Some(NicError::AlreadyInitialized)
    );

    // Ring pair: 10,000 frames A -> B, 1,000 B -> A, in order, counted.
    let (mut a, mut b) = ring_pair(&eal, "pair1").expect("ring pair");
    assert_eq!(a.name(), "net_ring_pair1_a");
    assert_ne!(a.mac(), b.mac(), "the two ends need distinct MACs");
    assert_eq!(a.mac()[0] & 0x03, 0x02, "locally administered unicast");
    assert!(a.link().up && b.link().up);
    stream(&mut a, &mut b, 0..10_000);
    stream(&mut b, &mut a, 0..1_000);
    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!(
        (sa.opackets, sb.ipackets),
        (10_000, 10_000),
        "{sa:?} {sb:?}"
    );
    assert_eq!((sb.opackets, sa.ipackets), (1_000, 1_000), "{sa:?} {sb:?}");
    assert_eq!(sa.tx_dropped + sb.tx_dropped, 0);
    // net_ring counts packets but not bytes (ibytes/obytes stay 0; see README).
    assert_eq!(sa.ierrors + sa.oerrors + sb.ierrors + sb.oerrors, 0);

    // Everything sent was received and freed: the shared pool is full again.
    let total = PortConfig::default().mbufs;
    assert_eq!(a.mbufs_available(), total);

    // A closure that panics mid-burst: the burst's mbufs are freed all the same. (The panic
    // message this prints is expected.)
    for seq in 0..10 {
        assert!(a.send(&frame(seq)));
    }
    a.flush();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        b.rx_burst(|f| {
            if f[0] == 3 {
                panic!("caller's closure panics on frame 3");
            }
        })
    }));
    assert!(caught.is_err());
    assert_eq!(a.mbufs_available(), total, "no mbuf leaked by the unwind");

    // A full ring: 1023 frames fit (1024 slots, one kept empty), the rest is refused by
    // the NIC, retried a bounded number of times, freed and counted.
    for seq in 0..2_000 {
        assert!(a.send(&frame(seq)));
    }
    a.flush();
    assert_eq!(a.stats().tx_dropped, 2_000 - 1_023);
    assert_eq!(
        a.stats().opackets,
        10_000 + 10 + 1_023,
        "refused frames are not sent packets"
    );
    let mut next = 0;
    assert_eq!(drain(&mut b, &mut next), 1_023);

    // Frames the port cannot carry in one mbuf.
    assert!(!a.send(&[]));
    assert!(!a.send(&vec![0u8; 2049]));
    assert!(a.send(&vec![7u8; 2048]));
    a.flush();
    let mut sizes = Vec::new();
    b.rx_burst(|f| sizes.push(f.len()));
    assert_eq!(sizes, vec![2048]);

    // Frames left in a ring when the ports close are freed with the pair (no leak, no crash).
    for seq in 0..100 {
        assert!(a.send(&frame(seq)));
    }
    a.flush();

    // A port is Send: it works on another thread.
    let b = std::thread::spawn(move || {
        let mut next = 0;
        assert_eq!(drain(&mut b, &mut next), 100);
        b
    })
    .join()
    .expect("thread");
    for seq in 0..10 {
        assert!(a.send(&frame(seq)));
    }
    a.flush();
    drop(a);
    drop(b);

    // Names are reusable after the pair is gone; bad names are refused.
    let (a2, b2) = ring_pair_with(&eal, "pair1", &PortConfig::default()).expect("pair again");
    drop((a2, b2));
    assert!(matches!(ring_pair(&eal, ""), Err(NicError::Config(_))));
    assert!(matches!(
        ring_pair(&eal, "name_of_17_chars_"),
        Err(NicError::Config(_))
    ));

    // Control-path calls from several threads at once (they serialise inside nic).
    std::thread::scope(|sc| {
        for t in 0..2 {
            let eal = &eal;
            sc.spawn(move || {
                let (mut a, mut b) = ring_pair(eal, &format!("par{t}")).expect("pair in thread");
                stream(&mut a, &mut b, 0..1_000);
                assert_eq!(b.stats().ipackets, 1_000);
            });
        }
    });

    // A single net_ring0 from --vdev loops back to itself.
    let mut lo = Port::open(&eal, "net_ring0", PortConfig::default()).expect("net_ring0");
    assert!(lo.link().up);
    assert!(lo.mtu() >= 1500, "mtu {}", lo.mtu());
    assert!(matches!(
        Port::open(&eal, "net_ring0", PortConfig::default()),
        Err(NicError::PortBusy(_))
    ));
    assert!(matches!(
        Port::open(&eal, lo.id(), PortConfig::default()),
        Err(NicError::PortBusy(_))
    ));
    assert!(matches!(
        Port::open(&eal, "net_nothing9", PortConfig::default()),
        Err(NicError::PortNotFound(_))
    ));
    match Port::open(&eal, "net_af_packet9", PortConfig::default()) {
        Err(e @ NicError::DeviceFailed { .. }) => {
            let line = e.to_string();
            assert!(
                line.contains("--vdev net_af_packet9,iface=mqnic_nosuch9"),
                "{line}"
            );
            assert!(line.contains("No such device"), "{line}");
        }
        other => panic!("expected DeviceFailed, got {:?}", other.err()),
    }
    for seq in 0..500 {
        assert!(lo.send(&frame(seq)));
    }
    assert_eq!(lo.pending(), 500 % 32);
    lo.flush();
    let mut next = 0;
    assert_eq!(drain(&mut lo, &mut next), 500);
    let st: PortStats = lo.stats();
    assert_eq!((st.opackets, st.ipackets, st.tx_dropped), (500, 500, 0));

    // The EAL lives on while a port does; the last owner cleans up and removes the dir.
    drop(eal);
    assert!(runtime_dir.is_dir(), "EAL still in use by the port");
    assert!(lo.send(&frame(0)));
    lo.flush();
    assert_eq!(lo.rx_burst(|f| check_frame(f, 0)), 1);
    drop(lo);
    assert!(!runtime_dir.exists(), "{runtime_dir:?} removed");
}

/// Runs `case` in a child process and returns the one line it reports.
fn run_child(case: &str) -> String {
    let exe = std::env::current_exe().expect("test binary");
    // The child writes its result to a file: DPDK prints its usage text on stdout through C
    // stdio buffers, which interleave unpredictably with Rust's output.
    let result_file =
        std::env::temp_dir().join(format!("mqnic_child_{case}_{}.txt", std::process::id()));
    let _ = std::fs::remove_file(&result_file);
    let out = Command::new(exe)
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, case)
        .env(RESULT_ENV, &result_file)
        .output()
        .expect("spawn child");
    let result = std::fs::read_to_string(&result_file);
    let _ = std::fs::remove_file(&result_file);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child {case} failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    result.unwrap_or_else(|e| panic!("no result from child {case} ({e}): {stdout}"))
}

/// The body of a child process: one failing EAL start; prints the error line.
#[test]
fn child_entry() {
    let Ok(case) = std::env::var(CHILD_ENV) else {
        return;
    };
    let prefix = format!("mqnic_{case}_{}", std::process::id());
    let _guard = DirGuard::for_prefix(&prefix);
    let extra: &[&str] = match case.as_str() {
        "bad_flag" => &["--no-such-flag"],
        "bad_vdev" => &["--vdev=net_bogus0"],
        other => panic!("unknown child case {other}"),
    };
    let err = Eal::init(&eal_args(&prefix, extra))
        .err()
        .expect("EAL init must fail");
    let line = err.to_string();
    assert!(!line.contains('\n'), "one line: {line}");
    // A later attempt in this process is refused without touching DPDK.
    assert_eq!(
        Eal::init(&eal_args(&prefix, &[])).err(),
        Some(NicError::AlreadyInitialized)
    );
    for d in &_guard.0 {
        assert!(!d.exists(), "no runtime dir left by a failed init: {d:?}");
    }
    let out = std::env::var(RESULT_ENV).expect("result file");
    std::fs::write(out, line).expect("write result");
}

#[test]
fn bad_flag_is_named() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let line = run_child("bad_flag");
    assert!(line.contains("bad argument: --no-such-flag"), "{line}");
    assert!(line.contains("--file-prefix"), "arguments listed: {line}");
}

#[test]
fn bad_vdev_is_named() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let line = run_child("bad_vdev");
    assert!(line.contains("bad argument: --vdev net_bogus0"), "{line}");
}
