//! `hand_over`: how a worker hands wakes, kicks and resumes to another, running
//! them itself when the other sleeps (docs/architecture.md, "Wakes across workers").

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{TryLockError, Weak};
use std::time::Instant;

use super::panic_message;
use crate::inbox::{Msg, Shared};

/// Hands a batch of wakes, kicks and resumes to worker `target`.
///
/// If the target is asleep in `epoll_wait` (its state unlocked), the calling
/// thread does the work itself: it runs the target's connections' handlers and
/// writes their sockets directly. Waking a sleeping thread on another core
/// costs tens of microseconds on these machines, which is most of a
/// cross-worker delivery's latency; a thread that is already running pays
/// none of it. When the target is busy, the batch goes through its inbox.
pub(super) fn hand_over(shared: &Shared, target: usize, batch: &mut Vec<Msg>) {
    if batch.is_empty() {
        return;
    }
    let inbox = &shared.inboxes[target];
    let Some(cell) = inbox.worker.get().and_then(Weak::upgrade) else {
        return inbox.deliver(batch);
    };
    let mut w = match cell.try_lock() {
        Ok(w) => w,
        // Poisoned by a panic that escaped a holder (see `Worker::run`): the
        // state is consistent per connection, as the owner's `lock` assumes.
        Err(TryLockError::Poisoned(p)) => p.into_inner(),
        Err(TryLockError::WouldBlock) => return inbox.deliver(batch),
    };
    // The target went to sleep with an epoll timeout computed from this.
    let before = w.next_deadline();
    let now = Instant::now();
    // Each connection's handling is isolated (`Worker::isolated`); this only
    // keeps a panic in the target's own bookkeeping from killing the caller,
    // whose thread it is. The target's state is then as a panic in its own
    // `iterate` would leave it (see `Worker::run`).
    let ran = catch_unwind(AssertUnwindSafe(|| {
        for msg in batch.drain(..) {
            w.on_msg(msg, now);
        }
        w.run_local(now);
        // What that produced for other workers goes by inbox (never recursively).
        for (t, outbox) in w.router.outboxes.iter_mut().enumerate() {
            shared.inboxes[t].deliver(outbox);
        }
    }));
    if let Err(panic) = ran {
        tracing::error!(
            worker = target,
            "panic while running a sleeping worker's handlers: {}",
            panic_message(&*panic)
        );
    }
    // Wake the target if it must not sleep as long as it planned: work left
    // for it (zero timeout), or a deadline the handlers moved earlier (a
    // closing connection's linger or drain, a paused publisher's stall).
    if !w.unfinished.is_empty()
        || w.durable_recheck
        || w.router.recheck
        || w.next_deadline() < before
    {
        inbox.wake();
    }
}
