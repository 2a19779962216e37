//! musqratt-tcpip over an in-process wire: two interfaces of the one lwIP stack talk to each
//! other as two hosts would (every pcb is bound to its interface, so A→B traffic really
//! crosses the wire as Ethernet frames, ARP included).
mod common;

use std::io::ErrorKind;
use std::net::{Shutdown, SocketAddrV4};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{pattern, serial, start, Bell, A, B};
use musqratt_tcpip::{Readiness, Stack, TcpStream};

/// Guards against a hang; never part of a pass/fail criterion of speed.
const HANG: Duration = Duration::from_secs(120);

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < HANG, "hung waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// One side of a connection in test (a): send `LEN` pattern bytes, receive and check `LEN`,
/// then the close sequence.
struct Conn {
    s: TcpStream,
    seed_out: u32,
    seed_in: u32,
    sent: usize,
    got: usize,
    eof: bool,
    client: bool,
    shut: bool,
}

const LEN: usize = 20_000;

impl Conn {
    /// Makes what progress it can; true if anything moved.
    fn step(&mut self, buf: &mut [u8]) -> bool {
        let mut moved = false;
        while self.sent < LEN {
            let chunk: Vec<u8> = (self.sent..LEN.min(self.sent + 4096))
                .map(|i| pattern(self.seed_out, i))
                .collect();
            match self.s.write(&chunk) {
                Ok(n) => {
                    self.sent += n;
                    moved = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("write: {e}"),
            }
        }
        if self.client && self.sent == LEN && self.got == LEN && !self.shut {
            self.s.shutdown(Shutdown::Write).unwrap();
            self.shut = true;
            moved = true;
        }
        loop {
            match self.s.read(buf) {
                Ok(0) => {
                    assert_eq!(self.got, LEN, "EOF before all data");
                    if !self.eof {
                        moved = true;
                    }
                    self.eof = true;
                    break;
                }
                Ok(n) => {
                    for (k, &b) in buf[..n].iter().enumerate() {
                        assert_eq!(
                            b,
                            pattern(self.seed_in, self.got + k),
                            "byte {} of a stream",
                            self.got + k
                        );
                    }
                    self.got += n;
                    assert!(self.got <= LEN);
                    moved = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("read: {e}"),
            }
        }
        moved
    }

    fn done(&self) -> bool {
        self.sent == LEN && self.got == LEN && self.eof
    }
}

#[test]
fn five_hundred_connections_move_ten_megabytes_each_way() {
    let _g = serial();
    let stack = start();
    // MUSQRATT_TCPIP_CONNS raises the count (e.g. 5000) for a manual scale check.
    let n_env = std::env::var("MUSQRATT_TCPIP_CONNS")
        .ok()
        .and_then(|v| v.parse().ok());
    let n: usize = n_env.unwrap_or(500);
    let listener = stack.listen(SocketAddrV4::new(B, 7000), n as u32).unwrap();
    let bell = Bell::default();
    listener.set_notify(Some(bell.notify()));

    let server_bell = bell.clone();
    let server = std::thread::spawn(move || {
        let mut conns: Vec<Conn> = Vec::new();
        let mut finished = 0;
        let mut buf = vec![0u8; 16384];
        while finished < n {
            let seen = server_bell.count();
            let mut moved = false;
            while let Ok((s, peer)) = listener.accept() {
                assert_eq!(*peer.ip(), A);
                s.set_notify(Some(server_bell.notify()));
                let port = peer.port() as u32;
                conns.push(Conn {
                    s,
                    seed_out: port + 1,
                    seed_in: port,
                    sent: 0,
                    got: 0,
                    eof: false,
                    client: false,
                    shut: false,
                });
                moved = true;
            }
            let mut i = 0;
            while i < conns.len() {
                moved |= conns[i].step(&mut buf);
                if conns[i].done() {
                    conns.swap_remove(i); // drop = graceful close after our data
                    finished += 1;
                } else {
                    i += 1;
                }
            }
            if !moved {
                server_bell.wait(seen);
            }
        }
    });

    let mut conns = Vec::new();
    for _ in 0..n {
        let s = stack
            .connect(Some(SocketAddrV4::new(A, 0)), SocketAddrV4::new(B, 7000))
            .unwrap();
        s.set_notify(Some(bell.notify()));
        let port = s.local_addr().port() as u32;
        conns.push(Conn {
            s,
            seed_out: port,
            seed_in: port + 1,
            sent: 0,
            got: 0,
            eof: false,
            client: true,
            shut: false,
        });
    }
    let mut buf = vec![0u8; 16384];
    let t = Instant::now();
    while !conns.is_empty() {
        assert!(
            t.elapsed() < HANG,
            "hung with {} connections left",
            conns.len()
        );
        let seen = bell.count();
        let mut moved = false;
        let mut i = 0;
        while i < conns.len() {
            moved |= conns[i].step(&mut buf);
            if conns[i].done() {
                conns.swap_remove(i);
            } else {
                i += 1;
            }
        }
        if !moved {
            bell.wait(seen);
        }
    }
    server.join().unwrap();
    wait_until("all sockets closed", || stack.stats().sockets_open == 0);
    let st = stack.stats();
    assert_eq!(st.accepted, n as u64);
    assert_eq!(st.frames_dropped, 0);
    // The data crossed the wire as frames (not lwIP's internal loopback).
    assert!(
        st.frames_in >= (2 * n * LEN / 1500) as u64,
        "only {} frames received",
        st.frames_in
    );
    stack.shutdown();
}

fn pair(stack: &Stack, port: u16) -> (TcpStream, TcpStream) {
    let l = stack.listen(SocketAddrV4::new(B, port), 8).unwrap();
    let c = stack.connect(None, SocketAddrV4::new(B, port)).unwrap();
    let mut acc = None;
    wait_until("accept", || {
        acc = l.accept().ok();
        acc.is_some()
    });
    let (s, peer) = acc.unwrap();
    assert_eq!(peer, c.local_addr());
    wait_until("connected", || c.readiness().contains(Readiness::WRITABLE));
    (c, s)
}

fn read_result(s: &TcpStream) -> std::io::Result<usize> {
    let mut buf = [0u8; 64];
    loop {
        match s.read(&mut buf) {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(1))
            }
            r => return r,
        }
    }
}

#[test]
fn abort_is_seen_by_the_peer_as_reset() {
    let _g = serial();
    let stack = start();
    let (c, s) = pair(&stack, 7001);
    c.write(b"hello").unwrap();
    assert_eq!(read_result(&s).unwrap(), 5);
    c.abort();
    let e = read_result(&s).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConnectionReset);
    assert_eq!(
        s.take_error().map(|e| e.kind()),
        Some(ErrorKind::ConnectionReset)
    );
    assert!(s.take_error().is_none());
    assert!(s.readiness().contains(Readiness::HUP));
    assert_eq!(
        s.write(b"x").unwrap_err().kind(),
        ErrorKind::ConnectionReset
    );
    stack.shutdown();
}

#[test]
fn connect_to_a_closed_port_is_refused() {
    let _g = serial();
    let stack = start();
    let bell = Bell::default();
    let c = stack
        .connect(Some(SocketAddrV4::new(A, 0)), SocketAddrV4::new(B, 7999))
        .unwrap();
    c.set_notify(Some(bell.notify()));
    wait_until("refusal", || c.readiness().contains(Readiness::ERROR));
    assert!(c.readiness().contains(Readiness::HUP | Readiness::READABLE));
    assert_eq!(
        c.take_error().map(|e| e.kind()),
        Some(ErrorKind::ConnectionRefused)
    );
    assert_eq!(
        read_result(&c).unwrap_err().kind(),
        ErrorKind::ConnectionRefused
    );
    // The other direction too (B's RST to A's address routes through the other netif).
    let c2 = stack
        .connect(Some(SocketAddrV4::new(B, 0)), SocketAddrV4::new(A, 7999))
        .unwrap();
    assert_eq!(
        read_result(&c2).unwrap_err().kind(),
        ErrorKind::ConnectionRefused
    );
    stack.shutdown();
}

#[test]
fn readiness_notifications_arrive() {
    let _g = serial();
    let stack = start();
    let (c, s) = pair(&stack, 7002);
    let seen: Arc<Mutex<Vec<Readiness>>> = Default::default();
    let rec = seen.clone();
    s.set_notify(Some(Arc::new(move |r| rec.lock().unwrap().push(r))));
    let cseen: Arc<Mutex<Vec<Readiness>>> = Default::default();
    let crec = cseen.clone();
    c.set_notify(Some(Arc::new(move |r| crec.lock().unwrap().push(r))));

    // READABLE on data
    c.write(b"ping").unwrap();
    wait_until("READABLE", || {
        seen.lock()
            .unwrap()
            .iter()
            .any(|r| r.contains(Readiness::READABLE))
    });
    assert_eq!(read_result(&s).unwrap(), 4);

    // WRITABLE after the tx buffer drains: fill everything until the client's buffer is full.
    let chunk = vec![7u8; 8192];
    let mut total = 0usize;
    wait_until("client buffer full", || match c.write(&chunk) {
        Ok(n) => {
            total += n;
            false
        }
        Err(e) if e.kind() == ErrorKind::WouldBlock => !c.readiness().contains(Readiness::WRITABLE),
        Err(e) => panic!("{e}"),
    });
    // Bounded buffering: the client's tx buffer + lwIP's send buffer + the server's window
    // (rx buffer and loop-side pending data together are acknowledged only when read).
    assert!(
        total <= 3 * 65536 + 8192,
        "{total} bytes accepted while the peer reads nothing"
    );
    cseen.lock().unwrap().clear();
    let mut got = 0usize;
    let mut buf = vec![0u8; 65536];
    wait_until("WRITABLE after drain", || {
        if let Ok(n) = s.read(&mut buf) {
            got += n;
        }
        cseen
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.contains(Readiness::WRITABLE))
    });
    wait_until("all bytes", || {
        if let Ok(n) = s.read(&mut buf) {
            got += n;
        }
        got == total
    });

    // HUP on close
    seen.lock().unwrap().clear();
    drop(c);
    wait_until("HUP", || {
        seen.lock()
            .unwrap()
            .iter()
            .any(|r| r.contains(Readiness::HUP | Readiness::READABLE))
    });
    assert_eq!(read_result(&s).unwrap(), 0);
    stack.shutdown();
}

#[test]
fn an_idle_stack_mostly_sleeps() {
    let _g = serial();
    let stack = start();
    let (c, s) = pair(&stack, 7003); // some traffic first, then idle
    c.write(b"x").unwrap();
    assert_eq!(read_result(&s).unwrap(), 1);
    let before = stack.stats();
    wait_until("idle iterations", || {
        stack.stats().iterations > before.iterations + 2000
    });
    let after = stack.stats();
    let iters = after.iterations - before.iterations;
    let sleeps = after.sleeps - before.sleeps;
    assert!(
        sleeps * 10 > iters * 8,
        "{sleeps} sleeps in {iters} idle iterations"
    );
    stack.shutdown();
}

#[test]
fn a_second_stack_is_refused_and_a_stopped_stack_can_restart() {
    let _g = serial();
    let stack = start();
    let (a, b) = common::wire();
    let cfg = musqratt_tcpip::StackConfig::new(vec![
        musqratt_tcpip::Interface {
            link: Box::new(a),
            ip: A,
            prefix_len: 24,
            gateway: None,
        },
        musqratt_tcpip::Interface {
            link: Box::new(b),
            ip: B,
            prefix_len: 24,
            gateway: None,
        },
    ]);
    assert!(Stack::start(cfg).is_err());
    assert!(stack.owns(A) && stack.owns(B) && !stack.owns(std::net::Ipv4Addr::new(10, 77, 0, 3)));
    let (c, _s) = pair(&stack, 7004);
    drop(stack); // last handle: stops the loop, aborts connections
    assert!(c.write(b"x").is_err());
    let again = start();
    let (c2, s2) = pair(&again, 7005);
    c2.write(b"ok").unwrap();
    assert_eq!(read_result(&s2).unwrap(), 2);
    again.shutdown();
}

#[test]
fn a_connection_to_our_own_interface_address_goes_through_loopback() {
    // lwIP queues packets to an interface's own address for its tcpip thread; the shim's
    // tcpip_try_callback replacement hands them to the poll loop instead (no abort).
    let _g = serial();
    let stack = start();
    let l = stack.listen(SocketAddrV4::new(A, 7006), 8).unwrap();
    let c = stack.connect(None, SocketAddrV4::new(A, 7006)).unwrap();
    let mut acc = None;
    wait_until("accept", || {
        acc = l.accept().ok();
        acc.is_some()
    });
    let (s, _) = acc.unwrap();
    wait_until("connected", || c.readiness().contains(Readiness::WRITABLE));
    c.write(b"self").unwrap();
    assert_eq!(read_result(&s).unwrap(), 4);
    stack.shutdown();
}

#[test]
fn dropping_a_stream_with_unread_input_resets_the_peer() {
    let _g = serial();
    let stack = start();
    let (c, s) = pair(&stack, 7007);
    c.write(b"never read").unwrap();
    wait_until("data arrived", || s.bytes_readable() > 0);
    drop(s);
    assert_eq!(
        read_result(&c).unwrap_err().kind(),
        ErrorKind::ConnectionReset
    );
    stack.shutdown();
}

#[test]
fn connections_beyond_the_backlog_are_reset() {
    let _g = serial();
    let stack = start();
    let l = stack.listen(SocketAddrV4::new(B, 7008), 1).unwrap();
    let first = stack.connect(None, SocketAddrV4::new(B, 7008)).unwrap();
    wait_until("first queued", || {
        l.readiness().contains(Readiness::READABLE)
    });
    let second = stack.connect(None, SocketAddrV4::new(B, 7008)).unwrap();
    assert_eq!(
        read_result(&second).unwrap_err().kind(),
        ErrorKind::ConnectionReset
    );
    let (s, _) = l.accept().unwrap();
    assert!(l.accept().is_err());
    wait_until("first connected", || {
        first.readiness().contains(Readiness::WRITABLE)
    });
    first.write(b"ok").unwrap();
    assert_eq!(read_result(&s).unwrap(), 2);
    stack.shutdown();
}
