//! Test fixtures: an in-process Ethernet wire between two interfaces of the one stack
//! (A = 10.77.0.1/24, B = 10.77.0.2/24), and a condvar that notify callbacks bump.
#![allow(dead_code)]
use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use musqratt_tcpip::{Interface, Link, Notify, Readiness, Stack, StackConfig};

pub mod traffic;

type Queue = Arc<Mutex<VecDeque<Vec<u8>>>>;

/// One end of the wire: frames sent here are received by the other end.
pub struct WireEnd {
    mac: [u8; 6],
    rx: Queue,
    tx: Queue,
    out: Vec<Vec<u8>>,
}

/// Frames the wire holds per direction before it drops (like a NIC ring).
const WIRE_FRAMES: usize = 8192;

impl Link for WireEnd {
    fn mac(&self) -> [u8; 6] {
        self.mac
    }
    fn mtu(&self) -> u16 {
        1500
    }
    fn recv_burst(&mut self, f: &mut dyn FnMut(&[u8])) -> usize {
        let burst: Vec<Vec<u8>> = {
            let mut q = self.rx.lock().unwrap();
            let n = q.len().min(32);
            q.drain(..n).collect()
        };
        for fr in &burst {
            f(fr);
        }
        burst.len()
    }
    fn send(&mut self, frame: &[u8]) -> bool {
        self.out.push(frame.to_vec());
        true
    }
    fn flush(&mut self) {
        if self.out.is_empty() {
            return;
        }
        let mut q = self.tx.lock().unwrap();
        for fr in self.out.drain(..) {
            if q.len() < WIRE_FRAMES {
                q.push_back(fr);
            }
        }
    }
}

pub fn wire() -> (WireEnd, WireEnd) {
    let ab: Queue = Default::default();
    let ba: Queue = Default::default();
    let a = WireEnd {
        mac: [0x02, 0, 0, 0, 0, 0x0a],
        rx: ba.clone(),
        tx: ab.clone(),
        out: Vec::new(),
    };
    let b = WireEnd {
        mac: [0x02, 0, 0, 0, 0, 0x0b],
        rx: ab,
        tx: ba,
        out: Vec::new(),
    };
    (a, b)
}

pub const A: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
pub const B: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);

static SERIAL: Mutex<()> = Mutex::new(());

/// One stack per process: tests take this lock for their whole run.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn start() -> Stack {
    start_with(Vec::new())
}

/// A and B on the wire, plus `extra` interfaces.
pub fn start_with(extra: Vec<Interface>) -> Stack {
    start_config(extra, |_| {})
}

/// A and B on the wire, plus `extra` interfaces, with `tune` applied to the configuration.
pub fn start_config(extra: Vec<Interface>, tune: impl FnOnce(&mut StackConfig)) -> Stack {
    let (a, b) = wire();
    let mut ifs = vec![
        Interface {
            link: Box::new(a),
            ip: A,
            prefix_len: 24,
            gateway: None,
        },
        Interface {
            link: Box::new(b),
            ip: B,
            prefix_len: 24,
            gateway: None,
        },
    ];
    ifs.extend(extra);
    let mut cfg = StackConfig::new(ifs);
    tune(&mut cfg);
    Stack::start(cfg).expect("stack start")
}

/// The far end of a wire, driven by the test itself (raw frames).
pub struct Probe {
    rx: Queue,
    tx: Queue,
}

impl Probe {
    pub fn send(&self, frame: Vec<u8>) {
        self.tx.lock().unwrap().push_back(frame);
    }
    pub fn recv(&self) -> Option<Vec<u8>> {
        self.rx.lock().unwrap().pop_front()
    }
}

/// A link for an interface of the stack whose other end is a `Probe`.
pub fn probe_wire(mac: [u8; 6]) -> (WireEnd, Probe) {
    let to_stack: Queue = Default::default();
    let from_stack: Queue = Default::default();
    let end = WireEnd {
        mac,
        rx: to_stack.clone(),
        tx: from_stack.clone(),
        out: Vec::new(),
    };
    (
        end,
        Probe {
            rx: from_stack,
            tx: to_stack,
        },
    )
}

/// A counter bumped by notify callbacks; app loops wait on it instead of spinning.
#[derive(Clone, Default)]
pub struct Bell(Arc<(Mutex<u64>, Condvar)>);

impl Bell {
    pub fn notify(&self) -> Notify {
        let b = self.clone();
        Arc::new(move |_r: Readiness| b.ring())
    }
    pub fn ring(&self) {
        *self.0 .0.lock().unwrap() += 1;
        self.0 .1.notify_all();
    }
    pub fn count(&self) -> u64 {
        *self.0 .0.lock().unwrap()
    }
    /// Waits until the count moves past `seen` (the timeout only bounds a missed edge).
    pub fn wait(&self, seen: u64) {
        let g = self.0 .0.lock().unwrap();
        let _ = self
            .0
             .1
            .wait_timeout_while(g, Duration::from_millis(20), |c| *c == seen);
    }
}

/// Test pattern: byte `i` of the stream identified by `seed`.
pub fn pattern(seed: u32, i: usize) -> u8 {
    ((i as u32)
        .wrapping_mul(7)
        .wrapping_add(seed.wrapping_mul(13))
        % 251) as u8
}
