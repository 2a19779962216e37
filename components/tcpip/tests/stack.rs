//! musqratt-tcpip over an in-process wire: two interfaces of the one lwIP stack talk to each
//! other as two hosts would (every pcb is bound to its interface, so A→B traffic really
//! crosses the wire as Ethernet frames, ARP included).
mod common;

use std::io::ErrorKind;
use std::net::SocketAddrV4;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::traffic::{
    abort_is_reset_and_isolated, exchange, pair, pair_on, read_result, refused, wait_until, LEN,
};
use common::{serial, start, A, B};
use musqratt_tcpip::{Readiness, Stack};

#[test]
fn five_hundred_connections_move_ten_megabytes_each_way() {
    let _g = serial();
    let stack = start();
    // MUSQRATT_TCPIP_CONNS raises the count (e.g. 5000) for a manual scale check.
    let n_env = std::env::var("MUSQRATT_TCPIP_CONNS")
        .ok()
        .and_then(|v| v.parse().ok());
    let n: usize = n_env.unwrap_or(500);
    exchange(&stack, A, B, 7000, n);
    let st = stack.stats();
    assert_eq!(st.frames_dropped, 0);
    // The data crossed the wire as frames (not lwIP's internal loopback).
    assert!(
        st.frames_in >= (2 * n * LEN / 1500) as u64,
        "only {} frames received",
        st.frames_in
    );
    stack.shutdown();
}

#[test]
fn abort_is_seen_by_the_peer_as_reset() {
    let _g = serial();
    let stack = start();
    abort_is_reset_and_isolated(&stack, A, B, 7001, 10);
    stack.shutdown();
}

#[test]
fn connect_to_a_closed_port_is_refused() {
    let _g = serial();
    let stack = start();
    refused(&stack, A, B, 7999);
    // The other direction too (B's RST to A's address routes through the other netif).
    refused(&stack, B, A, 7999);
    stack.shutdown();
}

#[test]
fn readiness_notifications_arrive() {
    let _g = serial();
    let stack = start();
    let (c, s) = pair(&stack, B, 7002);
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
    let (c, s) = pair(&stack, B, 7003); // some traffic first, then idle
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
    let (c, _s) = pair(&stack, B, 7004);
    drop(stack); // last handle: stops the loop, aborts connections
    assert!(c.write(b"x").is_err());
    let again = start();
    let (c2, s2) = pair(&again, B, 7005);
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
    let (c, s) = pair_on(&stack, &l, None);
    c.write(b"self").unwrap();
    assert_eq!(read_result(&s).unwrap(), 4);
    stack.shutdown();
}

#[test]
fn dropping_a_stream_with_unread_input_resets_the_peer() {
    let _g = serial();
    let stack = start();
    let (c, s) = pair(&stack, B, 7007);
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

/// Waits until the wire has been quiet for 1,000 loop iterations (every frame in flight
/// delivered and answered); counts iterations, not time.
fn quiesce(stack: &Stack) {
    let mut last = stack.stats();
    wait_until("a quiet wire", || {
        let now = stack.stats();
        if now.frames_in != last.frames_in || now.frames_out != last.frames_out {
            last = now;
            return false;
        }
        now.iterations > last.iterations + 1000
    });
}

#[test]
fn unread_data_survives_a_clean_close_both_ways() {
    // The passive closer's pcb is freed by lwIP (err callback ERR_CLSD) once its FIN is
    // acknowledged; data received before the peer's FIN that the application has not read
    // yet must still be delivered, then EOF, and no error.
    let _g = serial();
    let stack = common::start_config(Vec::new(), |c| c.rx_buffer = 16 * 1024);
    let (c, s) = pair(&stack, B, 7009);
    const N: usize = 40_000; // more than the server's rx buffer, less than lwIP's window
    let data: Vec<u8> = (0..N).map(|i| common::pattern(9, i)).collect();
    let mut off = 0;
    wait_until("client buffered everything", || {
        match c.write(&data[off..]) {
            Ok(n) => off += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => panic!("{e}"),
        }
        off == N
    });
    c.shutdown(std::net::Shutdown::Write).unwrap();
    quiesce(&stack); // data and FIN at the server, most of it unread
    s.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(read_result(&c).unwrap(), 0);
    quiesce(&stack); // the server's FIN acknowledged: its pcb is gone
    let mut got = Vec::new();
    let mut buf = vec![0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(e) => panic!("read after {} bytes: {e}", got.len()),
        }
    }
    assert!(got == data, "{} of {N} bytes, or not in order", got.len());
    assert!(s.take_error().is_none() && c.take_error().is_none());
    assert!(!s.readiness().contains(Readiness::ERROR));
    stack.shutdown();
}
