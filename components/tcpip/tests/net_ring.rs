//! The stack over DPDK (feature `nic`): two interfaces of the one lwIP stack, A = 10.78.0.1/24
//! on port a and B = 10.78.0.2/24 on port b of a `musqratt_nic::ring_pair` (two `rte_ring`s
//! joined back to back, DPDK's net_ring PMD). Every pcb is bound to its interface, so A→B
//! traffic leaves lwIP as Ethernet frames, crosses the rings as mbufs and is counted by the
//! ports.
//!
//! DPDK's EAL starts once per process, so this binary has one #[test] that runs the scenarios
//! in sequence, each on a fresh ring pair and a fresh stack (lwIP: one stack at a time).
//! EAL arguments: no hugepages, no PCI, no shared config, a --file-prefix unique to this
//! process; the runtime directory is removed by the EAL's drop and, on failure, by a guard.
mod common;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use common::traffic::{abort_is_reset_and_isolated, exchange, refused, LEN};
use musqratt_nic::{ring_pair, Eal, Port, PortStats};
use musqratt_tcpip::{Interface, Link, Stack, StackConfig, StackStats};

const A: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 2);

/// The port's counters as they were when the stack released it (it owns its links).
type Final = Arc<Mutex<Option<PortStats>>>;

/// A port that records its final counters when the stack drops it. Every `Link` call goes
/// to the `impl Link for Port` under test.
struct Recorded {
    port: Port,
    last: Final,
}

impl Link for Recorded {
    fn mac(&self) -> [u8; 6] {
        Link::mac(&self.port)
    }
    fn mtu(&self) -> u16 {
        Link::mtu(&self.port)
    }
    fn recv_burst(&mut self, f: &mut dyn FnMut(&[u8])) -> usize {
        Link::recv_burst(&mut self.port, f)
    }
    fn send(&mut self, frame: &[u8]) -> bool {
        Link::send(&mut self.port, frame)
    }
    fn flush(&mut self) {
        Link::flush(&mut self.port)
    }
}

impl Drop for Recorded {
    fn drop(&mut self) {
        let mut g = self.last.lock().unwrap_or_else(|e| e.into_inner());
        *g = Some(self.port.stats());
    }
}

/// Removes the runtime directory even when an assertion fails (the EAL's drop does it on
/// success; this guard runs after it and finds nothing).
struct DirGuard(PathBuf);

impl Drop for DirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn eal_args(prefix: &str) -> Vec<String> {
    [
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
    .collect()
}

/// A stack with A on port a and B on port b of a new ring pair `name`.
fn start(eal: &Eal, name: &str) -> (Stack, Final, Final) {
    let (pa, pb) = ring_pair(eal, name).expect("ring pair");
    assert_ne!(Link::mac(&pa), Link::mac(&pb));
    assert_eq!(Link::mtu(&pa), 1500);
    let (fa, fb) = (Final::default(), Final::default());
    let iface = |port, last: &Final, ip| Interface {
        link: Box::new(Recorded {
            port,
            last: last.clone(),
        }),
        ip,
        prefix_len: 24,
        gateway: None,
    };
    let cfg = StackConfig::new(vec![iface(pa, &fa, A), iface(pb, &fb, B)]);
    (Stack::start(cfg).expect("stack start"), fa, fb)
}

/// Stops the stack; returns its counters and the two ports' final counters.
fn stop(stack: Stack, fa: &Final, fb: &Final) -> (StackStats, PortStats, PortStats) {
    stack.shutdown();
    let st = stack.stats();
    let take = |f: &Final| {
        f.lock()
            .unwrap()
            .take()
            .expect("port released by the stack")
    };
    (st, take(fa), take(fb))
}

/// (a) 500 connections A → B, 20,000 bytes each way each (10 MB each way), closed gracefully.
fn ten_megabytes_each_way(eal: &Eal) {
    let n: usize = std::env::var("MUSQRATT_TCPIP_CONNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let (stack, fa, fb) = start(eal, "xfer");
    let t = std::time::Instant::now();
    exchange(&stack, A, B, 7100, n);
    let took = t.elapsed();
    let (st, a, b) = stop(stack, &fa, &fb);
    eprintln!("net_ring: {n} connections, {LEN} B each way each, in {took:?}; stack {st:?}");
    eprintln!("net_ring: port a {a:?}");
    eprintln!("net_ring: port b {b:?}");
    // Every frame lwIP received came out of a ring.
    assert_eq!(st.frames_in, a.ipackets + b.ipackets);
    assert_eq!(st.frames_dropped, 0, "a port ran out of mbufs");
    // Each direction carries n * LEN bytes in segments of at most 1460: at least that many
    // frames crossed each ring (plus handshakes, ACKs, FINs).
    let segments = (n * LEN).div_ceil(1460) as u64;
    for (name, p) in [("a", &a), ("b", &b)] {
        assert!(
            p.opackets > segments && p.ipackets > segments,
            "port {name}: {p:?}, {segments} data segments each way"
        );
        assert_eq!(
            p.ierrors + p.rx_dropped + p.rx_nombuf,
            0,
            "port {name}: {p:?}"
        );
    }
    // What one port put on its ring the other took off (no frame is left in a ring after a
    // graceful close), except frames a full ring refused (counted in tx_dropped).
    assert_eq!(a.opackets, b.ipackets);
    assert_eq!(b.opackets, a.ipackets);
}

/// (b) An abort is a reset for its peer only.
fn abort_is_reset(eal: &Eal) {
    let (stack, fa, fb) = start(eal, "abort");
    abort_is_reset_and_isolated(&stack, A, B, 7200, 20);
    let (_, a, b) = stop(stack, &fa, &fb);
    assert!(a.opackets > 0 && b.opackets > 0);
}

/// (c) No listener: ConnectionRefused, both directions.
fn refused_without_listener(eal: &Eal) {
    let (stack, fa, fb) = start(eal, "refuse");
    refused(&stack, A, B, 7300);
    refused(&stack, B, A, 7300);
    let (_, a, b) = stop(stack, &fa, &fb);
    // SYN and RST crossed the rings (A→B) and (B→A) in both tries.
    assert!(a.opackets >= 2 && b.opackets >= 2, "{a:?} {b:?}");
}

#[test]
fn lwip_over_dpdk_net_ring() {
    let prefix = format!("mq_tcpip_ring_{}", std::process::id());
    let _dir = DirGuard(Path::new("/var/run/dpdk").join(&prefix));
    let eal = Eal::init(&eal_args(&prefix)).expect("EAL init");
    let runtime = eal.runtime_dir().map(Path::to_path_buf);

    ten_megabytes_each_way(&eal);
    abort_is_reset(&eal);
    refused_without_listener(&eal);

    drop(eal);
    if let Some(dir) = runtime {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
}
