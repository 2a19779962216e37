//! The shim's fd routing, in a binary that carries the interposed symbols: ordinary std::net and
//! mio code, unchanged, ends up on lwIP for the stack's addresses and on the kernel for
//! everything else — files, pipes, loopback sockets — before and after `install`.
//!
//! The stack runs over DPDK's net_ring (a `musqratt_nic::ring_pair`, no namespace needed): two
//! interfaces of the one lwIP stack, A = 10.79.0.1/24 and B = 10.79.0.2/24. The EAL and the
//! shim are once per process, so this binary has one #[test] running the steps in order.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

use mio::{Events, Interest, Poll, Token};
use musqratt_musl_shim::{install, is_user_fd};
use musqratt_nic::{ring_pair, Eal};
use musqratt_tcpip::{Interface, Stack, StackConfig};

const A: Ipv4Addr = Ipv4Addr::new(10, 79, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(10, 79, 0, 2);

/// Removes the EAL's runtime directory even when the test fails half-way.
struct RuntimeDir(std::path::PathBuf);
impl Drop for RuntimeDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn kernel_round_trip(tag: &str) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    assert!(
        !is_user_fd(l.as_raw_fd()),
        "{tag}: loopback listener must stay a kernel socket"
    );
    let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (mut s, _) = l.accept().unwrap();
    assert!(!is_user_fd(c.as_raw_fd()) && !is_user_fd(s.as_raw_fd()));
    c.write_all(b"kernel").unwrap();
    let mut b = [0u8; 6];
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"kernel", "{tag}");
    // A file and a pipe-like pair go through read/write/close too.
    let path = std::env::temp_dir().join(format!("musq-shim-{}-{tag}", std::process::id()));
    std::fs::write(&path, b"file bytes").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"file bytes");
    std::fs::remove_file(&path).unwrap();
    let (mut u1, mut u2) = std::os::unix::net::UnixStream::pair().unwrap();
    u1.write_all(b"unix").unwrap();
    let mut b = [0u8; 4];
    u2.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"unix");
}

#[test]
fn fd_routing() {
    // 1. Before install, everything is the kernel's.
    kernel_round_trip("before");

    let prefix = format!("musq-shim-{}", std::process::id());
    let _dir = RuntimeDir(std::path::PathBuf::from(format!("/var/run/dpdk/{prefix}")));
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
    let eal = Eal::init(&args).expect("EAL");
    let (pa, pb) = ring_pair(&eal, "shim").expect("ring pair");
    drop(eal);
    let stack = Stack::start(StackConfig::new(vec![
        Interface {
            link: Box::new(pa),
            ip: A,
            prefix_len: 24,
            gateway: None,
        },
        Interface {
            link: Box::new(pb),
            ip: B,
            prefix_len: 24,
            gateway: None,
        },
    ]))
    .expect("stack");
    install(stack.clone(), &[(Ipv4Addr::new(10, 79, 0, 0), 24)]).expect("install");
    assert!(
        install(stack.clone(), &[]).is_err(),
        "install is once per process"
    );

    // 2. After install, kernel fds still pass through.
    kernel_round_trip("after");

    // 3. A listener bound to B is on lwIP; std's blocking calls work over it.
    let l = TcpListener::bind((B, 1883)).expect("bind on the lwIP address");
    assert!(is_user_fd(l.as_raw_fd()));
    assert_eq!(l.local_addr().unwrap(), SocketAddr::from((B, 1883)));
    let before = stack.stats();
    let mut c = TcpStream::connect((B, 1883)).expect("connect into the lwIP subnet");
    assert!(is_user_fd(c.as_raw_fd()));
    let (mut s, peer) = l.accept().unwrap();
    assert!(is_user_fd(s.as_raw_fd()));
    assert_eq!(peer, c.local_addr().unwrap());
    assert_eq!(s.peer_addr().unwrap(), c.local_addr().unwrap());
    c.set_nodelay(true).unwrap();
    assert!(c.nodelay().unwrap());
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    assert!(
        c.try_clone().is_err(),
        "a user-level socket has one fd (no dup)"
    );
    let writer = {
        let payload = payload.clone();
        std::thread::spawn(move || {
            c.write_all(&payload).unwrap();
            c.shutdown(std::net::Shutdown::Write).unwrap();
            c
        })
    };
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    assert_eq!(got.len(), payload.len());
    assert!(got == payload, "bytes differ");
    let c = writer.join().unwrap();
    let after = stack.stats();
    assert!(
        after.frames_in - before.frames_in > 100,
        "the bytes crossed the ring as frames: {before:?} -> {after:?}"
    );

    // 4. mio over both worlds: a user-level stream and a kernel socket in one epoll.
    let mut poll = Poll::new().unwrap();
    s.set_nonblocking(true).unwrap();
    let mut user = mio::net::TcpStream::from_std(s);
    let kl = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut kc = TcpStream::connect(kl.local_addr().unwrap()).unwrap();
    let (ks, _) = kl.accept().unwrap();
    ks.set_nonblocking(true).unwrap();
    let mut kernel = mio::net::TcpStream::from_std(ks);
    poll.registry()
        .register(&mut user, Token(1), Interest::READABLE | Interest::WRITABLE)
        .unwrap();
    poll.registry()
        .register(&mut kernel, Token(2), Interest::READABLE)
        .unwrap();
    let mut c = c; // the client side of the user-level connection, blocking
    let mut events = Events::with_capacity(16);
    // Initial WRITABLE edge for the user-level socket, as the kernel gives on registration.
    poll.poll(&mut events, Some(Duration::from_secs(10)))
        .unwrap();
    assert!(events
        .iter()
        .any(|e| e.token() == Token(1) && e.is_writable()));
    kc.write_all(b"to-kernel").unwrap();
    let mut seen_kernel = false;
    for _ in 0..50 {
        poll.poll(&mut events, Some(Duration::from_millis(200)))
            .unwrap();
        for e in events.iter() {
            if e.token() == Token(2) && e.is_readable() {
                let mut b = [0u8; 16];
                let n = kernel.read(&mut b).unwrap();
                assert_eq!(&b[..n], b"to-kernel");
                seen_kernel = true;
            }
        }
        if seen_kernel {
            break;
        }
    }
    assert!(
        seen_kernel,
        "a kernel fd's event arrives through an epoll that also holds user-level fds"
    );
    // The user-level side still writes to the client (which only shut down its own writing).
    user.write_all(b"from-user").unwrap();
    let mut b = [0u8; 9];
    c.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"from-user");
    let mut one = [0u8; 1];
    assert_eq!(
        user.read(&mut one).unwrap(),
        0,
        "EOF after the peer's shutdown"
    );

    // 5. A wakeup of a sleeping epoll_wait by the tcpip loop: nothing ready, then data arrives.
    let mut c2 = TcpStream::connect((B, 1883)).unwrap();
    let (s2, _) = l.accept().unwrap();
    s2.set_nonblocking(true).unwrap();
    let mut user2 = mio::net::TcpStream::from_std(s2);
    // Registered through a duplicate of a fresh epoll fd (mio's Registry::try_clone, as the
    // broker's workers do), waited on through the original.
    let mut poll2 = Poll::new().unwrap();
    let clone = poll2.registry().try_clone().unwrap();
    clone
        .register(&mut user2, Token(3), Interest::READABLE)
        .unwrap();
    poll2
        .poll(&mut events, Some(Duration::from_millis(50)))
        .unwrap(); // initial edges
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        c2.write_all(b"late").unwrap();
        c2
    });
    let mut got_late = false;
    for _ in 0..10 {
        poll2
            .poll(&mut events, Some(Duration::from_secs(1)))
            .unwrap();
        if events
            .iter()
            .any(|e| e.token() == Token(3) && e.is_readable())
        {
            let mut b = [0u8; 4];
            user2.read_exact(&mut b).unwrap();
            assert_eq!(&b, b"late");
            got_late = true;
            break;
        }
    }
    assert!(got_late, "the loop woke the sleeping epoll_wait");
    drop(t.join().unwrap());

    // 6. Close: the fd leaves the table; the kernel may hand the number out again.
    let fd = l.as_raw_fd();
    drop(l);
    assert!(!is_user_fd(fd));
    kernel_round_trip("end");
    // A bind to 0.0.0.0 stays on the kernel (documented rule: only the stack's own addresses).
    let any = TcpListener::bind("0.0.0.0:0").unwrap();
    assert!(!is_user_fd(any.as_raw_fd()));
    drop((user, user2, kernel, c));
    stack.shutdown();
}
