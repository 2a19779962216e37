//! Epoll over both worlds. An epoll instance stays a kernel epoll (kernel fds — the broker's waker
//! eventfd, kernel listeners, pipes — are registered there unchanged); once a user-level socket is
//! registered in it, it also gets a `UserEpoll`: an interest in that socket's readiness kept in
//! user space, fed by the tcpip poll loop through the socket's notify callback.
//!
//! `epoll_wait` first takes what the user-level side has ready (no system call). Only when that is
//! empty does it block in the kernel's epoll_wait, and the loop wakes it through one eventfd that
//! sits in the kernel epoll — written only when a waiter is actually asleep, so a busy broker's
//! data path costs no wake-up system call per event. When user events are ready the kernel side
//! is still polled (timeout 0) so kernel fds are never starved.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::Mutex;

use libc::{c_int, epoll_event};
use musqratt_tcpip::Readiness;

use crate::sys;
use crate::table::{Entry, Kind, Table};

/// The epoll data of the internal wake eventfd; filtered out before events reach the caller.
const WAKE_DATA: u64 = 0x6d75_7371_7261_7474; // "musqratt"

pub struct UserEpoll {
    wake_fd: c_int,
    ready: Mutex<ReadyList>,
    sleeping: AtomicBool,
    wake_pending: AtomicBool,
}

#[derive(Default)]
struct ReadyList {
    order: VecDeque<c_int>,
    events: HashMap<c_int, u32>,
}

impl ReadyList {
    /// Records that `fd` gained `bits`, keeping first-ready-first-reported order.
    fn add(&mut self, fd: c_int, bits: u32) {
        let slot = self.events.entry(fd).or_insert(0);
        let new = *slot == 0;
        *slot |= bits;
        if new {
            self.order.push_back(fd);
        }
    }
}

/// Readiness of a user-level socket as epoll bits.
pub fn epoll_bits(r: Readiness) -> u32 {
    let mut bits = 0;
    if r.contains(Readiness::READABLE) {
        bits |= (libc::EPOLLIN | libc::EPOLLRDNORM) as u32;
    }
    if r.contains(Readiness::WRITABLE) {
        bits |= (libc::EPOLLOUT | libc::EPOLLWRNORM) as u32;
    }
    if r.contains(Readiness::HUP) {
        bits |= (libc::EPOLLHUP | libc::EPOLLRDHUP | libc::EPOLLIN) as u32;
    }
    if r.contains(Readiness::ERROR) {
        bits |= libc::EPOLLERR as u32;
    }
    bits
}

pub fn readiness(entry: &Entry) -> Readiness {
    match &entry.kind {
        Kind::Bound(_) => Readiness::default(),
        Kind::Listener(l) => l.readiness(),
        Kind::Stream(s) => s.readiness(),
    }
}

/// EPOLLHUP and EPOLLERR are reported whether asked for or not, as the kernel does.
fn wanted(mask: u32) -> u32 {
    mask | (libc::EPOLLHUP | libc::EPOLLERR) as u32
}

impl UserEpoll {
    pub fn new(epfd: c_int) -> std::io::Result<UserEpoll> {
        let wake_fd = sys::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK);
        if wake_fd < 0 {
            return Err(std::io::Error::from_raw_os_error(sys::errno()));
        }
        let mut ev = epoll_event {
            events: libc::EPOLLIN as u32,
            u64: WAKE_DATA,
        };
        if sys::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, wake_fd, &mut ev) < 0 {
            let e = std::io::Error::from_raw_os_error(sys::errno());
            sys::close(wake_fd);
            return Err(e);
        }
        Ok(UserEpoll {
            wake_fd,
            ready: Mutex::new(ReadyList::default()),
            sleeping: AtomicBool::new(false),
            wake_pending: AtomicBool::new(false),
        })
    }

    /// Called from the tcpip loop (or at registration): `fd` gained `bits`.
    pub fn push(&self, fd: c_int, bits: u32) {
        if bits == 0 {
            return;
        }
        {
            let mut list = self.ready.lock().unwrap_or_else(|e| e.into_inner());
            list.add(fd, bits);
        }
        // Pairs with the fence in `wait`: either the waiter sees our event before sleeping, or we
        // see it asleep and wake it.
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::SeqCst) && !self.wake_pending.swap(true, Ordering::AcqRel) {
            let one: u64 = 1;
            sys::write(self.wake_fd, (&one as *const u64).cast(), 8);
        }
    }

    fn has_ready(&self) -> bool {
        !self
            .ready
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .order
            .is_empty()
    }

    /// Moves ready user-level events into `out`; returns how many.
    fn drain(&self, table: &Table, out: &mut [epoll_event]) -> usize {
        let mut n = 0;
        let mut again = Vec::new();
        let mut list = self.ready.lock().unwrap_or_else(|e| e.into_inner());
        while n < out.len() {
            let Some(fd) = list.order.pop_front() else {
                break;
            };
            let bits = list.events.remove(&fd).unwrap_or(0);
            let Some(entry) = table.get(fd) else { continue };
            let mut reg = entry.reg.lock().unwrap_or_else(|e| e.into_inner());
            let Some(r) = reg.as_mut() else { continue };
            if !std::ptr::eq(r.epoll.as_ptr(), self) {
                continue;
            }
            let got = bits & wanted(r.events);
            if got == 0 {
                continue;
            }
            out[n] = epoll_event {
                events: got,
                u64: r.data,
            };
            n += 1;
            if r.events & libc::EPOLLONESHOT as u32 != 0 {
                r.events = 0;
            } else if r.events & libc::EPOLLET as u32 == 0 {
                // Level-triggered: report again next time while the condition holds.
                again.push(entry.clone());
            }
        }
        drop(list);
        for entry in again {
            let mask = entry
                .reg
                .lock()
                .map(|r| r.as_ref().map_or(0, |r| r.events))
                .unwrap_or(0);
            let bits = epoll_bits(readiness(&entry)) & wanted(mask);
            if bits != 0 {
                let mut list = self.ready.lock().unwrap_or_else(|e| e.into_inner());
                list.add(entry.fd, bits);
            }
        }
        n
    }

    /// epoll_pwait over both worlds.
    pub fn wait(
        &self,
        table: &Table,
        epfd: c_int,
        out: &mut [epoll_event],
        timeout: c_int,
        sigmask: *const libc::sigset_t,
    ) -> c_int {
        let deadline = (timeout > 0)
            .then(|| std::time::Instant::now() + std::time::Duration::from_millis(timeout as u64));
        loop {
            let mut n = self.drain(table, out);
            if n == out.len() {
                return n as c_int;
            }
            let mut t = if n > 0 {
                0
            } else {
                remaining(timeout, deadline)
            };
            if t != 0 {
                self.sleeping.store(true, Ordering::SeqCst);
                fence(Ordering::SeqCst);
                if self.has_ready() {
                    t = 0;
                }
            }
            let rest = &mut out[n..];
            let k = sys::epoll_pwait(epfd, rest.as_mut_ptr(), rest.len() as c_int, t, sigmask);
            self.sleeping.store(false, Ordering::SeqCst);
            if k < 0 {
                return if n > 0 { n as c_int } else { -1 };
            }
            // Drop our wake event from what the kernel returned.
            let mut woken = false;
            let mut kept = 0;
            for i in 0..k as usize {
                let ev = rest[i];
                if ev.u64 == WAKE_DATA {
                    woken = true;
                    continue;
                }
                rest[kept] = ev;
                kept += 1;
            }
            if woken {
                let mut v: u64 = 0;
                sys::read(self.wake_fd, (&mut v as *mut u64).cast(), 8);
                self.wake_pending.store(false, Ordering::Release);
            }
            n += kept;
            if n < out.len() {
                n += self.drain(table, &mut out[n..]);
            }
            if n > 0 || remaining(timeout, deadline) == 0 {
                return n as c_int;
            }
        }
    }

    /// Registration changed for `entry`: report what is already ready (the kernel does the same
    /// on EPOLL_CTL_ADD / MOD, and mio relies on it).
    pub fn arm(&self, entry: &Entry, mask: u32) {
        let bits = epoll_bits(readiness(entry)) & wanted(mask);
        self.push(entry.fd, bits);
    }
}

fn remaining(timeout: c_int, deadline: Option<std::time::Instant>) -> c_int {
    match deadline {
        None => timeout.min(0), // -1 stays -1 (forever), 0 stays 0
        Some(d) => {
            let left = d.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                0
            } else {
                // Round up: a 0.4 ms remainder must not become a busy 0.
                (left.as_micros().div_ceil(1000)).min(c_int::MAX as u128) as c_int
            }
        }
    }
}

impl Drop for UserEpoll {
    fn drop(&mut self) {
        sys::close(self.wake_fd);
    }
}
