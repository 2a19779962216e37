//! How other threads reach a worker: its [`Inbox`] (a locked list of [`Msg`] plus a
//! `mio::Waker`), and the state all threads share ([`Shared`]). A delivery wakes the worker only
//! if it is asleep (`Inbox::deliver`); `worker::hand_over` skips even that when it can run the
//! sleeping worker's handlers itself.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use mio::Waker;
use musqratt_core::{Broker, ConnRef};

use crate::sched::Scheduling;
use crate::transport::Transport;
use crate::worker::Worker;

/// A message to a worker.
pub enum Msg {
    /// A new connection. Boxed: a transport with layers (TLS) is larger than the other
    /// messages, and accepts are rare next to wakes.
    Accept(Box<Transport>),
    Wake(ConnRef),
    Kick(ConnRef),
    /// Flow control: a publisher paused by a congested subscriber may read again.
    Resume(ConnRef),
    /// The store made more of the journal durable: release held output (docs/storage.md).
    Durable,
    Shutdown,
}

/// A worker's mailbox: other threads append, then wake the worker.
pub struct Inbox {
    msgs: Mutex<Vec<Msg>>,
    waker: Waker,
    /// The worker is in (or entering) `epoll_wait`: deliveries must wake it.
    sleeping: AtomicBool,
    /// The worker's state, lockable by other workers while it sleeps (see
    /// [`hand_over`]). Weak: the worker's thread owns it.
    pub(crate) worker: OnceLock<Weak<Mutex<Worker>>>,
    /// The worker holds output waiting for the store: the commit thread's notifier sends it
    /// `Msg::Durable` (and clears this) after each commit.
    pub durable_wait: AtomicBool,
}

impl Inbox {
    pub fn new(waker: Waker) -> Inbox {
        Inbox {
            msgs: Mutex::new(Vec::new()),
            waker,
            sleeping: AtomicBool::new(false),
            worker: OnceLock::new(),
            durable_wait: AtomicBool::new(false),
        }
    }

    pub(crate) fn wake(&self) {
        if let Err(e) = self.waker.wake() {
            tracing::error!("cannot wake worker: {e}");
        }
    }

    /// Hands over a batch with one lock, and a wakeup only if the worker is
    /// (about to be) asleep: a running worker empties its inbox every loop
    /// iteration anyway, and an `eventfd` write per batch is a syscall plus a
    /// spurious `epoll_wait` return on the other side.
    pub fn deliver(&self, batch: &mut Vec<Msg>) {
        if batch.is_empty() {
            return;
        }
        self.msgs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .append(batch);
        // SeqCst pairs with `sleep_unless_busy`: either the worker sees the
        // message before sleeping, or we see it sleeping and wake it.
        if self.sleeping.load(Ordering::SeqCst) {
            self.wake();
        }
    }

    /// Marks the worker as going to sleep; false if its inbox has messages
    /// (then it must not block).
    pub(crate) fn sleep_unless_busy(&self) -> bool {
        self.sleeping.store(true, Ordering::SeqCst);
        let empty = self
            .msgs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty();
        if !empty {
            self.sleeping.store(false, Ordering::SeqCst);
        }
        empty
    }

    pub(crate) fn awake(&self) {
        self.sleeping.store(false, Ordering::SeqCst);
    }

    pub(crate) fn take(&self, into: &mut Vec<Msg>) {
        std::mem::swap(
            &mut *self.msgs.lock().unwrap_or_else(|e| e.into_inner()),
            into,
        );
    }
}

/// The store's notifier: tells each worker that waits for the journal to look again.
pub fn notify_durable(inboxes: &[Inbox]) {
    for inbox in inboxes {
        if inbox.durable_wait.swap(false, Ordering::SeqCst) {
            inbox.deliver(&mut vec![Msg::Durable]);
        }
    }
}

/// What all threads share.
pub struct Shared {
    pub broker: Arc<Broker>,
    /// The workers' scheduling policy (`[workers] scheduling`, sched.rs).
    pub scheduling: Scheduling,
    pub inboxes: Vec<Inbox>,
    /// Open connections across all workers (for `limits.max_connections`).
    pub live: AtomicUsize,
}
