//! What the shim costs per call (a measurement, not a test; numbers go to docs/benchmarks.md):
//!
//! 1. `recv` on a kernel socket that has nothing to read (EAGAIN), through the shim's symbol,
//!    before `install` and after it (one bitmap load more), against the raw system call.
//! 2. `recv` and `send` on a user-level socket (no system call: the socket's buffers).
//! 3. A 64-byte ping-pong between two user-level sockets over the tcpip loop and a DPDK net_ring
//!    pair (the loop in between), against the same over kernel loopback TCP.
//!
//! Run as root: `cargo run --release -p musqratt-musl-shim --example shim_cost`.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Instant;

use musqratt_nic::{ring_pair, Eal};
use musqratt_tcpip::{Interface, Stack, StackConfig};

const N: u32 = 1_000_000;

fn per_call(label: &str, n: u32, mut f: impl FnMut()) {
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    let ns = t.elapsed().as_nanos() as f64 / f64::from(n);
    println!("{label:<58} {ns:>9.1} ns/call");
}

/// `libc::recv` resolves to the shim's own `recv` symbol in this binary.
fn empty_recv(fd: i32) {
    let mut b = [0u8; 64];
    // SAFETY: `fd` is an open socket of ours and `b` a 64-byte stack buffer.
    let r = unsafe { libc::recv(fd, b.as_mut_ptr().cast(), b.len(), libc::MSG_DONTWAIT) };
    assert!(r < 0);
}

fn ping_pong(label: &str, mut a: TcpStream, mut b: TcpStream) {
    for s in [&a, &b] {
        s.set_nodelay(true).unwrap();
        s.set_nonblocking(false).unwrap();
    }
    let echo = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while b.read_exact(&mut buf).is_ok() {
            if b.write_all(&buf).is_err() {
                break;
            }
        }
    });
    let msg = [7u8; 64];
    let mut buf = [0u8; 64];
    let mut rtts = Vec::with_capacity(20_000);
    for i in 0..21_000 {
        let t = Instant::now();
        a.write_all(&msg).unwrap();
        a.read_exact(&mut buf).unwrap();
        if i >= 1_000 {
            rtts.push(t.elapsed());
        }
    }
    drop(a);
    let _ = echo.join();
    rtts.sort();
    let p = |q: f64| rtts[((rtts.len() as f64 * q) as usize).min(rtts.len() - 1)];
    println!(
        "{label:<58} p50 {:>7.1?}  p99 {:>7.1?}  p99.9 {:>7.1?}",
        p(0.5),
        p(0.99),
        p(0.999)
    );
}

fn main() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let kc = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (ks, _) = l.accept().unwrap();
    kc.set_nonblocking(true).unwrap();
    let kfd = kc.as_raw_fd();
    per_call("kernel socket, raw recvfrom syscall (EAGAIN)", N, || {
        let mut b = [0u8; 64];
        // SAFETY: a raw system call on our own open fd and a 64-byte stack buffer.
        let r = unsafe { libc::syscall(libc::SYS_recvfrom, kfd, b.as_mut_ptr(), 64, 0, 0, 0) };
        assert!(r < 0);
    });
    per_call(
        "kernel socket through the shim, not installed (EAGAIN)",
        N,
        || empty_recv(kfd),
    );

    let prefix = format!("musq-shimcost-{}", std::process::id());
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
    let eal = Eal::init(&args).expect("EAL (run as root)");
    let (pa, pb) = ring_pair(&eal, "cost").unwrap();
    drop(eal);
    let a_ip = Ipv4Addr::new(10, 80, 0, 1);
    let b_ip = Ipv4Addr::new(10, 80, 0, 2);
    let stack = Stack::start(StackConfig::new(vec![
        Interface {
            link: Box::new(pa),
            ip: a_ip,
            prefix_len: 24,
            gateway: None,
        },
        Interface {
            link: Box::new(pb),
            ip: b_ip,
            prefix_len: 24,
            gateway: None,
        },
    ]))
    .unwrap();
    musqratt_musl_shim::install(stack.clone(), &[(Ipv4Addr::new(10, 80, 0, 0), 24)]).unwrap();
    per_call(
        "kernel socket through the shim, installed (EAGAIN)",
        N,
        || empty_recv(kfd),
    );

    let ul = TcpListener::bind((b_ip, 1883)).unwrap();
    let uc = TcpStream::connect((b_ip, 1883)).unwrap();
    let (us, _) = ul.accept().unwrap();
    us.set_nonblocking(true).unwrap();
    let ufd = us.as_raw_fd();
    per_call(
        "user-level socket, recv on an empty buffer (EAGAIN)",
        N,
        || empty_recv(ufd),
    );
    // send 64 bytes then read them back on the other side, both non-blocking buffer operations
    // plus whatever the loop does in between (the reader waits for the loop to move them).
    ping_pong(
        "user-level sockets over lwIP + net_ring, 64 B ping-pong",
        uc,
        us,
    );
    ping_pong("kernel loopback TCP, 64 B ping-pong", kc, ks);
    stack.shutdown();
    let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{prefix}"));
}
