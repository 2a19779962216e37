//! Traffic scenarios shared by the test binaries (in-process wire and DPDK net_ring): the same
//! checks run over any pair of interfaces `a` (clients) and `b` (servers) of the one stack.
use std::io::ErrorKind;
use std::net::{Ipv4Addr, Shutdown, SocketAddrV4};
use std::time::{Duration, Instant};

use musqratt_tcpip::{Readiness, Stack, TcpListener, TcpStream};

use super::{pattern, Bell};

/// Guards against a hang; never part of a pass/fail criterion of speed.
pub const HANG: Duration = Duration::from_secs(120);

pub fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < HANG, "hung waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Bytes each way per connection in `exchange`.
pub const LEN: usize = 20_000;

/// One side of a connection in `exchange`: send `LEN` pattern bytes, receive and check `LEN`,
/// then the close sequence (the client shuts down its write side, the server closes after
/// seeing EOF; both must see EOF).
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

impl Conn {
    fn new(s: TcpStream, seed_out: u32, seed_in: u32, client: bool) -> Conn {
        Conn {
            s,
            seed_out,
            seed_in,
            sent: 0,
            got: 0,
            eof: false,
            client,
            shut: false,
        }
    }

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

/// Steps `conns` until all are done, dropping (gracefully closing) each finished one; waits
/// on `bell` when nothing moved. Returns how many finished.
fn drive(conns: &mut Vec<Conn>, bell: &Bell, buf: &mut [u8]) -> (bool, usize) {
    let seen = bell.count();
    let mut moved = false;
    let mut finished = 0;
    let mut i = 0;
    while i < conns.len() {
        moved |= conns[i].step(buf);
        if conns[i].done() {
            conns.swap_remove(i); // drop = graceful close after our data
            finished += 1;
        } else {
            i += 1;
        }
    }
    if !moved {
        bell.wait(seen);
    }
    (moved, finished)
}

/// `n` concurrent connections from `a` to a listener on `b:port`, each moving `LEN` bytes
/// each way (verified byte for byte), then closed gracefully with EOF seen on both sides.
/// Returns when every socket of the stack is closed.
pub fn exchange(stack: &Stack, a: Ipv4Addr, b: Ipv4Addr, port: u16, n: usize) {
    let listener = stack.listen(SocketAddrV4::new(b, port), n as u32).unwrap();
    let bell = Bell::default();
    listener.set_notify(Some(bell.notify()));

    let server_bell = bell.clone();
    let server = std::thread::spawn(move || {
        let mut conns: Vec<Conn> = Vec::new();
        let mut finished = 0;
        let mut buf = vec![0u8; 16384];
        while finished < n {
            while let Ok((s, peer)) = listener.accept() {
                assert_eq!(*peer.ip(), a);
                s.set_notify(Some(server_bell.notify()));
                let port = peer.port() as u32;
                conns.push(Conn::new(s, port + 1, port, false));
                server_bell.ring(); // step it in this round
            }
            finished += drive(&mut conns, &server_bell, &mut buf).1;
        }
    });

    let mut conns = Vec::new();
    for _ in 0..n {
        let s = stack
            .connect(Some(SocketAddrV4::new(a, 0)), SocketAddrV4::new(b, port))
            .unwrap();
        s.set_notify(Some(bell.notify()));
        let port = s.local_addr().port() as u32;
        conns.push(Conn::new(s, port, port + 1, true));
    }
    let mut buf = vec![0u8; 16384];
    let t = Instant::now();
    while !conns.is_empty() {
        assert!(
            t.elapsed() < HANG,
            "hung with {} connections left",
            conns.len()
        );
        drive(&mut conns, &bell, &mut buf);
    }
    server.join().unwrap();
    wait_until("all sockets closed", || stack.stats().sockets_open == 0);
    assert_eq!(stack.stats().accepted, n as u64);
}

/// The next connection `l` accepts (waiting for it).
pub fn accept(l: &TcpListener) -> (TcpStream, SocketAddrV4) {
    let mut acc = None;
    wait_until("accept", || {
        acc = l.accept().ok();
        acc.is_some()
    });
    acc.unwrap()
}

/// A connected (client, server) pair from `from` (None: chosen by the stack) to `to`, over a
/// listener `l` on `to`.
pub fn pair_on(stack: &Stack, l: &TcpListener, from: Option<Ipv4Addr>) -> (TcpStream, TcpStream) {
    let to = l.local_addr();
    let c = stack
        .connect(from.map(|ip| SocketAddrV4::new(ip, 0)), to)
        .unwrap();
    let (s, peer) = accept(l);
    assert_eq!(peer, c.local_addr());
    wait_until("connected", || c.readiness().contains(Readiness::WRITABLE));
    (c, s)
}

/// A connected (client, server) pair to a fresh listener on `b:port`.
pub fn pair(stack: &Stack, b: Ipv4Addr, port: u16) -> (TcpStream, TcpStream) {
    let l = stack.listen(SocketAddrV4::new(b, port), 8).unwrap();
    pair_on(stack, &l, None)
}

/// The first result of `read` other than WouldBlock.
pub fn read_result(s: &TcpStream) -> std::io::Result<usize> {
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

/// Reads exactly `want.len()` bytes and checks them.
pub fn read_exact(s: &TcpStream, want: &[u8]) {
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    wait_until("data", || {
        match s.read(&mut buf) {
            Ok(0) => panic!("EOF after {} of {} bytes", got.len(), want.len()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => panic!("read: {e}"),
        }
        got.len() >= want.len()
    });
    assert_eq!(got, want);
}

/// `others + 1` connections `a` → `b:port` with data in flight; the first is aborted: its
/// peer sees ConnectionReset (on read, `take_error` once, write; HUP), and every other
/// connection still moves data both ways and closes gracefully with EOF on both sides.
pub fn abort_is_reset_and_isolated(
    stack: &Stack,
    a: Ipv4Addr,
    b: Ipv4Addr,
    port: u16,
    others: usize,
) {
    let l = stack
        .listen(SocketAddrV4::new(b, port), others as u32 + 1)
        .unwrap();
    let pairs: Vec<(TcpStream, TcpStream)> =
        (0..=others).map(|_| pair_on(stack, &l, Some(a))).collect();
    for (c, s) in &pairs {
        c.write(b"hello").unwrap();
        read_exact(s, b"hello");
    }
    let (c0, s0) = &pairs[0];
    c0.abort();
    let e = read_result(s0).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConnectionReset);
    assert_eq!(
        s0.take_error().map(|e| e.kind()),
        Some(ErrorKind::ConnectionReset)
    );
    assert!(s0.take_error().is_none());
    assert!(s0.readiness().contains(Readiness::HUP));
    assert_eq!(
        s0.write(b"x").unwrap_err().kind(),
        ErrorKind::ConnectionReset
    );
    for (i, (c, s)) in pairs.iter().enumerate().skip(1) {
        let up = format!("up {i}");
        let down = format!("down {i}");
        c.write(up.as_bytes()).unwrap();
        s.write(down.as_bytes()).unwrap();
        read_exact(s, up.as_bytes());
        read_exact(c, down.as_bytes());
        c.shutdown(Shutdown::Write).unwrap();
        assert_eq!(read_result(s).unwrap(), 0, "server EOF on connection {i}");
        s.shutdown(Shutdown::Write).unwrap();
        assert_eq!(read_result(c).unwrap(), 0, "client EOF on connection {i}");
        let errs = (c.take_error(), s.take_error());
        assert!(
            errs.0.is_none() && errs.1.is_none(),
            "connection {i}: {errs:?}"
        );
    }
    drop(pairs);
    wait_until("all sockets closed", || stack.stats().sockets_open == 0);
}

/// A connect from `from` to `to:port` where nothing listens is refused: ERROR | HUP |
/// READABLE readiness, `take_error` and `read` give ConnectionRefused.
pub fn refused(stack: &Stack, from: Ipv4Addr, to: Ipv4Addr, port: u16) {
    let bell = Bell::default();
    let c = stack
        .connect(
            Some(SocketAddrV4::new(from, 0)),
            SocketAddrV4::new(to, port),
        )
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
}
