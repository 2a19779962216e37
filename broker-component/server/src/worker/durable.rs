//! Output held for the store: a PUBACK, PUBREC (and PUBREL, QoS 2 PUBLISH) leaves only once
//! the journal has made durable what it acknowledges (docs/storage.md "Group commit").
//!
//! `Worker::after` holds an event's bytes in the connection (`Conn::hold`) when they wait for
//! a ticket the journal has not reached. The commit thread, after each commit, sends
//! `Msg::Durable` to every worker that raised its inbox's `durable_wait`; the worker then
//! releases, in order, each held chunk whose ticket is durable. A chunk whose batch failed
//! (disk full, IO error) is never sent: its connection is closed, so the publisher resends.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::Worker;

impl Worker {
    /// Raises this worker's `durable_wait` so the next commit wakes it. A commit that landed
    /// since `seen` would not (its notifier already ran): look again at once.
    pub(super) fn wait_durable(&mut self, seen: u64) {
        let inbox = &self.shared.inboxes[self.id as usize];
        inbox.durable_wait.store(true, Ordering::SeqCst);
        let now_durable = self.broker.journal.as_ref().map_or(0, |j| j.durable());
        self.durable_recheck = now_durable > seen;
    }

    /// Sends what the journal has made durable since the last look.
    pub(super) fn release_durable(&mut self, now: Instant) {
        self.durable_recheck = false;
        self.router.recheck = false;
        if self.holding.is_empty() {
            return;
        }
        let Some(journal) = self.broker.journal.clone() else {
            return;
        };
        let durable = journal.durable();
        for (slot, serial) in std::mem::take(&mut self.holding) {
            if self.serial_at(slot) != Some(serial) {
                continue;
            }
            let Some(c) = self.conns.get_mut(slot) else {
                continue;
            };
            let mut failed = false;
            let released = c.release(|h| {
                let Some(tickets) = h.ready(durable) else {
                    return false;
                };
                failed |= tickets.iter().any(|&t| t != 0 && journal.failed(t));
                !failed
            });
            if failed {
                // What it held acknowledges what the store lost: dropped; a v5 client hears
                // why (DISCONNECT 0x97), then the connection closes.
                c.discard_out();
                c.core.handle_store_failed(&self.broker, now, &mut self.out);
                // The close's own records (its session, a will) hold nothing: no output is
                // left to order behind them.
                self.out.durable_after = 0;
                self.out.soft_after = 0;
                self.out.soft_messages.clear();
                self.after(slot, now);
                continue;
            }
            if released.is_ok() && c.read_paused && !c.out_full() {
                // Reading stopped while output was held (`out_full` counts it); no WRITABLE edge
                // may come for bytes that went straight out: read again next loop iteration.
                c.read_paused = false;
                self.unfinished.push((slot, serial));
            }
            match released {
                Err(e) => {
                    tracing::debug!("write error: {e}");
                    self.fail(slot, now);
                }
                Ok(true) => self.holding.push((slot, serial)),
                Ok(false) => {
                    if c.closing && c.out_idle() {
                        self.half_close(slot, now);
                    } else if c.out_idle() && c.wake_deferred && !c.closing {
                        c.wake_deferred = false;
                        c.core.handle_wake(&self.broker, now, &mut self.out);
                        self.after(slot, now);
                    }
                }
            }
        }
        if !self.holding.is_empty() {
            self.wait_durable(durable);
        }
    }
}
