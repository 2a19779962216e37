//! A worker's timers: the broker-wide timer (worker 0), connection deadlines
//! (connect timeout, keep-alive, packet timeout), stalled publishers and
//! closing connections (docs/architecture.md, "Timers").

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use super::closing::panic_message;
use super::{Worker, IDLE_SWEEP};

impl Worker {
    pub(super) fn timers(&mut self, now: Instant) {
        if self.id == 0 && now >= self.broker.poll_timeout() {
            let (broker, out) = (&self.broker, &mut self.out);
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| broker.handle_timeout(now, out))) {
                tracing::error!("panic in the broker's timer: {}", panic_message(&*panic));
            }
            self.out.discard_own();
            self.router.route(&mut self.out);
            self.run_local(now);
        }
        if now < self.next_sweep {
            return;
        }
        // Re-plan from scratch: every deadline still ahead lowers next_sweep
        // again below (handled ones via `after`).
        self.last_sweep = now;
        self.next_sweep = now + IDLE_SWEEP;
        let mut due = Vec::new();
        let mut ahead = None::<Instant>;
        for (slot, c) in self.conns.iter() {
            match c.core.poll_timeout(&self.broker) {
                Some(t) if t <= now && !c.closing => due.push(slot),
                Some(t) => ahead = Some(ahead.map_or(t, |a| a.min(t))),
                None => {}
            }
        }
        if let Some(t) = ahead {
            self.due_at(t);
        }
        for slot in due {
            self.isolated(slot, now, |w| {
                if let Some(c) = w.conns.get_mut(slot) {
                    c.core.handle_timeout(&w.broker, now, &mut w.out);
                    w.after(slot, now);
                }
            });
            self.run_local(now);
        }
        // Paused publishers whose subscriber stopped moving: read again (the
        // core no longer pauses for a stalled subscriber; it drops instead).
        let stall = self.broker.config.publisher_stall;
        let stalled: Vec<usize> = self
            .paused
            .iter()
            .filter(|(_, &since)| now.saturating_duration_since(since) >= stall)
            .map(|(&slot, _)| slot)
            .collect();
        for slot in stalled {
            // No accept runs here, so a slot still names the same connection
            // (or none: `resume` then does nothing).
            self.isolated(slot, now, |w| w.resume(slot, now));
            self.run_local(now);
        }
        let still_paused = self.paused.values().map(|&since| since + stall).min();
        let mut expired = Vec::new();
        self.lingering.retain(|l| {
            let live = self
                .conns
                .get(l.slot)
                .is_some_and(|c| c.core.conn_ref().serial == l.serial);
            if live && l.deadline <= now {
                expired.push(l.slot);
            }
            live && l.deadline > now
        });
        for slot in expired {
            tracing::debug!("dropping a closing connection that did not flush or drain in time");
            self.fail(slot, now);
        }
        let lingering = self.lingering.iter().map(|l| l.deadline).min();
        for t in [still_paused, lingering].into_iter().flatten() {
            self.due_at(t);
        }
    }
}
