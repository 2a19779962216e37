//! 64-byte TCP ping-pong round-trip latency between two interfaces of the one lwIP stack over
//! a DPDK ring pair (feature `nic`): a measurement, not a test.
//!
//! `cargo run --release -p musqratt-tcpip --features nic --example ring_pingpong [ROUND_TRIPS]`
//!
//! One application thread plays both ends with non-blocking calls (write the ping on the
//! client, poll the server until it has 64 bytes, echo, poll the client until it has them),
//! so with the stack's loop thread only two threads run: the machine's 2 cores are not
//! oversubscribed. A round trip: client write → A's lwIP → ring a→b → B's lwIP → server
//! read/write → B's lwIP → ring b→a → A's lwIP → client read.
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::time::{Duration, Instant};

use musqratt_nic::{ring_pair, Eal};
use musqratt_tcpip::{Interface, Stack, StackConfig, TcpStream};

const A: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 2);
const MSG: usize = 64;
const WARMUP: usize = 1000;

/// Polls `s` until `buf` is full.
fn read_full(s: &TcpStream, buf: &mut [u8]) {
    let mut got = 0;
    while got < buf.len() {
        match s.read(&mut buf[got..]) {
            Ok(0) => panic!("unexpected EOF"),
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::yield_now(),
            Err(e) => panic!("read: {e}"),
        }
    }
}

fn write_all(s: &TcpStream, buf: &[u8]) {
    let mut off = 0;
    while off < buf.len() {
        match s.write(&buf[off..]) {
            Ok(n) => off += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::yield_now(),
            Err(e) => panic!("write: {e}"),
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let prefix = format!("mq_pingpong_{}", std::process::id());
    let args: Vec<String> = [
        "--no-huge",
        "--no-pci",
        "--no-shconf",
        "-m",
        "256",
        "-l",
        "0",
        "--file-prefix",
        &prefix,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let eal = match Eal::init(&args) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let (pa, pb) = ring_pair(&eal, "pingpong").expect("ring pair");
    let iface = |link, ip| Interface {
        link,
        ip,
        prefix_len: 24,
        gateway: None,
    };
    let stack = Stack::start(StackConfig::new(vec![
        iface(Box::new(pa), A),
        iface(Box::new(pb), B),
    ]))
    .expect("stack start");

    let l = stack.listen(SocketAddrV4::new(B, 7400), 1).unwrap();
    let c = stack
        .connect(Some(SocketAddrV4::new(A, 0)), SocketAddrV4::new(B, 7400))
        .unwrap();
    let s = loop {
        match l.accept() {
            Ok((s, _)) => break s,
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    };
    c.set_nodelay(true);
    s.set_nodelay(true);

    let ping = [0x5au8; MSG];
    let mut buf = [0u8; MSG];
    let mut rtts = Vec::with_capacity(n);
    let before = stack.stats();
    for i in 0..WARMUP + n {
        let t = Instant::now();
        write_all(&c, &ping);
        read_full(&s, &mut buf);
        write_all(&s, &buf);
        read_full(&c, &mut buf);
        if i >= WARMUP {
            rtts.push(t.elapsed());
        }
        assert_eq!(buf, ping);
    }
    let after = stack.stats();
    rtts.sort();
    let mean = rtts.iter().sum::<Duration>() / rtts.len() as u32;
    println!(
        "{n} round trips of {MSG} B over net_ring (after {WARMUP} warm-up): \
         p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us, mean {:.1} us",
        percentile(&rtts, 0.50).as_secs_f64() * 1e6,
        percentile(&rtts, 0.99).as_secs_f64() * 1e6,
        percentile(&rtts, 0.999).as_secs_f64() * 1e6,
        rtts[rtts.len() - 1].as_secs_f64() * 1e6,
        mean.as_secs_f64() * 1e6,
    );
    println!(
        "loop: {} iterations, {} sleeps, {} frames in during the run",
        after.iterations - before.iterations,
        after.sleeps - before.sleeps,
        after.frames_in - before.frames_in
    );
    drop((c, s, l));
    stack.shutdown();
    drop(stack);
    let dir = eal.runtime_dir().map(Path::to_path_buf);
    drop(eal);
    if let Some(d) = dir {
        let _ = std::fs::remove_dir_all(d);
    }
}
