//! How a worker closes connections: flush (linger), half-close and drain, drop;
//! and how a panic while handling one connection closes that connection only.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::Worker;
use crate::conn::Drain;

/// Once a closing connection's output is flushed, its write side is shut
/// (FIN) and its input drained for at most this long and this many bytes
/// before the socket is closed: long enough for a client that is still
/// writing to read the DISCONNECT, short and small enough that a client which
/// never stops costs little.
pub(super) const DRAIN_FOR: Duration = Duration::from_secs(2);
pub(super) const DRAIN_MAX: usize = 1024 * 1024;

/// A closing connection still flushing its output, or draining its input.
pub(super) struct Linger {
    pub(super) slot: usize,
    pub(super) serial: u64,
    pub(super) deadline: Instant,
    /// Input bytes discarded so far (see `DRAIN_MAX`).
    pub(super) drained: usize,
}

impl Worker {
    /// Runs one event's handling for the connection in `slot` (its core calls:
    /// bytes, wake, kick, timeout, close) so that a panic in it closes that
    /// connection only, logged with its client id, and the worker lives on.
    ///
    /// `AssertUnwindSafe`: what a panic can leave half-done is (1) this
    /// connection's `Conn` and core `Connection`, which are dropped right away;
    /// (2) the shared `Broker`, whose locks are parking_lot's (released on
    /// unwind, never poisoned), so at worst this client's own entries (its
    /// session, subscriptions) are inconsistent, and its session is detached
    /// by the close that follows; (3) the worker's `Output`, whose bytes for
    /// this connection are discarded (possibly a half-encoded packet) while its
    /// wakes, kicks and resumes, which name other connections, still go out (a
    /// wake with nothing to deliver is harmless, a lost resume is not).
    pub(super) fn isolated(&mut self, slot: usize, now: Instant, f: impl FnOnce(&mut Worker)) {
        let serial = self.serial_at(slot);
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| f(self))) {
            self.after_panic(slot, serial, now, &*panic);
        }
    }

    pub(super) fn after_panic(
        &mut self,
        slot: usize,
        serial: Option<u64>,
        now: Instant,
        panic: &(dyn Any + Send),
    ) {
        let what = panic_message(panic);
        self.out.discard_own();
        self.router.route(&mut self.out);
        match self.conns.get_mut(slot) {
            Some(c) if serial == Some(c.core.conn_ref().serial) => {
                let peer = c.transport.peer_addr().ok();
                tracing::error!(
                    client = %c.core.client_id(),
                    ?peer,
                    worker = self.id,
                    "closing connection: panic while handling it: {what}"
                );
                c.discard_out();
                self.remove(slot, now);
            }
            _ => tracing::error!(
                worker = self.id,
                "panic while handling a connection already gone: {what}"
            ),
        }
    }

    /// A closing connection's output is flushed: shut its write side (the
    /// client reads everything, then EOF) and drain its input, so the close
    /// that follows sends a FIN rather than a RST (see `Conn::draining`).
    pub(super) fn half_close(&mut self, slot: usize, now: Instant) {
        let Some(c) = self.conns.get_mut(slot) else {
            return;
        };
        if c.draining {
            return;
        }
        let serial = c.core.conn_ref().serial;
        if c.half_close().is_err() {
            return self.remove(slot, now); // already reset by the peer
        }
        self.linger(slot, serial, now + DRAIN_FOR);
        // The client may have closed already, its FIN's edge consumed.
        self.drain(slot, now);
    }

    /// Gives a closing connection until `deadline` to flush or drain (then
    /// the sweep drops it), replacing any earlier deadline of that slot.
    pub(super) fn linger(&mut self, slot: usize, serial: u64, deadline: Instant) {
        self.lingering.retain(|l| l.slot != slot);
        self.lingering.push(Linger {
            slot,
            serial,
            deadline,
            drained: 0,
        });
        self.due_at(deadline);
    }

    /// Discards a draining connection's input; closes it at the client's EOF
    /// or beyond `DRAIN_MAX` (the deadline is the sweep's).
    pub(super) fn drain(&mut self, slot: usize, now: Instant) {
        let Some(c) = self.conns.get_mut(slot) else {
            return;
        };
        let serial = c.core.conn_ref().serial;
        let Some(l) = self
            .lingering
            .iter_mut()
            .find(|l| l.slot == slot && l.serial == serial)
        else {
            return self.remove(slot, now);
        };
        match c.drain_input(&mut self.read_buf, DRAIN_MAX.saturating_sub(l.drained)) {
            Drain::Done => self.remove(slot, now),
            Drain::Pending(n) => {
                l.drained += n;
                if l.drained >= DRAIN_MAX {
                    tracing::debug!("closing a draining connection: the client kept writing");
                    self.remove(slot, now);
                }
            }
        }
    }

    /// The socket failed: the core sees an abnormal close (will published).
    pub(super) fn fail(&mut self, slot: usize, now: Instant) {
        if let Some(c) = self.conns.get_mut(slot) {
            c.discard_out();
            self.remove(slot, now);
        }
    }

    pub(super) fn remove(&mut self, slot: usize, now: Instant) {
        let Some(mut c) = self.conns.try_remove(slot) else {
            return;
        };
        self.paused.remove(&slot);
        self.lingering.retain(|l| l.slot != slot);
        if !c.core.is_closed() {
            // After a panic in this connection's handling its state may be
            // what panicked: the close is isolated too, and the socket goes
            // regardless (see `isolated`).
            let (broker, out) = (&self.broker, &mut self.out);
            let closed = catch_unwind(AssertUnwindSafe(|| c.core.handle_close(broker, now, out)));
            if let Err(panic) = closed {
                tracing::error!(
                    client = %c.core.client_id(),
                    "panic while closing a connection (its session may stay attached): {}",
                    panic_message(&*panic)
                );
            }
        }
        self.out.discard_own();
        self.router.route(&mut self.out);
        let _ = self.registry.deregister(&mut c.transport);
        self.shared.live.fetch_sub(1, Ordering::Relaxed);
        // Dropping `c` closes the socket.
    }
}

/// The message of a panic payload (`panic!` with a literal or a format string).
pub(super) fn panic_message(panic: &(dyn Any + Send)) -> &str {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s
    } else {
        "(no message)"
    }
}
