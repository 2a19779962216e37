//! A worker thread: one mio event loop over a slab of connections.
//!
//! Each worker owns its connections outright (no locks on them); other
//! threads reach it only through its [`Inbox`](crate::inbox::Inbox) (new sockets, wakes, kicks,
//! shutdown) plus a `mio::Waker`. Everything a connection event produces is
//! handled before the next event: its bytes are written once (batched), wakes
//! and kicks for this worker's connections run right after, and those for
//! other workers are collected and handed over once per loop iteration.

use std::collections::{HashMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Registry, Token};
use musqratt_core::{Broker, ConnRef, Connection, Output};
use slab::Slab;

use crate::conn::{Conn, Held, ReadOutcome};
use crate::inbox::{Msg, Shared};
use crate::sched::SchedControl;
use crate::transport::Transport;

mod closing;
mod durable;
mod handover;
mod timers;

use closing::{panic_message, Linger};
use handover::hand_over;

/// The waker's token; connection tokens are slab slots.
pub const WAKER: Token = Token(usize::MAX);
/// One read buffer per worker, shared by all of its connections.
const READ_BUF: usize = 64 * 1024;
/// Reads per readiness event before serving other connections (fairness).
const MAX_READ_ROUNDS: usize = 16;
/// The timers' granularity: a worker looks at its connections' deadlines
/// (keep-alive, connect timeout, stalled publishers, lingering closes) at most
/// this often, so one fires up to this late. It wakes only when one is due:
/// an idle worker sleeps, which on a 2-vCPU edge box is a core given back.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// How long a worker with no deadline at all sleeps before looking again.
const IDLE_SWEEP: Duration = Duration::from_secs(3600);
/// How long a closing connection may take to flush before it is dropped.
const LINGER: Duration = Duration::from_secs(2);

/// How [`Worker::on_ready`] reads a connection's socket.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ReadMode {
    /// Not at all: only WRITABLE was reported.
    No,
    /// epoll just reported READABLE, without the peer's close. A read that
    /// returns less than the buffer took everything queued, and any byte or
    /// FIN that lands later raises a new edge, so reading stops there instead
    /// of paying a second `recvfrom` to hear EAGAIN: one system call less per
    /// message, ahead of the deliveries it produces (docs/architecture.md).
    Fresh,
    /// Until the socket would block: readiness known by other means (a resume,
    /// the read-round limit, a lifted read pause) or the peer's close, whose
    /// edge may already have been consumed, so a short read proves nothing.
    Drain,
}

#[derive(Clone, Copy)]
enum Event {
    Wake,
    Kick,
    Resume,
}

/// Where wakes and kicks go: this worker's queue or another worker's outbox.
struct Router {
    id: u32,
    local: VecDeque<(ConnRef, Event)>,
    outboxes: Vec<Vec<Msg>>,
    /// A message this worker's held output waits on was delivered (`Output::delivered`):
    /// look at the held output again before sleeping.
    recheck: bool,
}

impl Router {
    fn route(&mut self, out: &mut Output) {
        for w in out.delivered.drain(..) {
            if w == self.id {
                self.recheck = true;
            } else if let Some(outbox) = self.outboxes.get_mut(w as usize) {
                // One look per batch is enough: it releases whatever is ready then.
                if !matches!(outbox.last(), Some(Msg::Durable)) {
                    outbox.push(Msg::Durable);
                }
            }
        }
        for (list, ev) in [
            (&mut out.wakes, Event::Wake),
            (&mut out.kicks, Event::Kick),
            (&mut out.resumes, Event::Resume),
        ] {
            for r in list.drain(..) {
                if r.worker == self.id {
                    self.local.push_back((r, ev));
                } else if let Some(outbox) = self.outboxes.get_mut(r.worker as usize) {
                    outbox.push(match ev {
                        Event::Wake => Msg::Wake(r),
                        Event::Kick => Msg::Kick(r),
                        Event::Resume => Msg::Resume(r),
                    });
                }
            }
        }
    }
}

pub struct Worker {
    id: u32,
    registry: Registry,
    shared: Arc<Shared>,
    broker: Arc<Broker>,
    conns: Slab<Conn>,
    read_buf: Box<[u8]>,
    out: Output,
    router: Router,
    next_serial: u64,
    /// Connections that hit MAX_READ_ROUNDS: read them again next iteration
    /// (edge-triggered readiness will not report them again).
    unfinished: Vec<(usize, u64)>,
    /// Publishers paused by flow control: slot → paused since. Exactly the
    /// connections with `Conn::paused` set (see `track_pause`, `resume`,
    /// `remove`), so the stall check does not scan every connection.
    paused: HashMap<usize, Instant>,
    /// Closing connections still flushing or draining, with their deadline.
    lingering: Vec<Linger>,
    /// When the deadlines were last looked at, and when next (the earliest
    /// known deadline, but not sooner than SWEEP_EVERY after the last look).
    last_sweep: Instant,
    next_sweep: Instant,
    shutdown_deadline: Option<Instant>,
    /// Connections holding output until the store makes it durable (docs/storage.md).
    holding: Vec<(usize, u64)>,
    /// A commit may have landed between the last release and raising `durable_wait`:
    /// look again without sleeping.
    durable_recheck: bool,
}

impl Worker {
    pub fn new(id: u32, registry: Registry, shared: Arc<Shared>) -> Worker {
        let workers = shared.inboxes.len();
        Worker {
            id,
            registry,
            broker: shared.broker.clone(),
            shared,
            conns: Slab::new(),
            read_buf: vec![0; READ_BUF].into_boxed_slice(),
            out: Output::new(),
            router: Router {
                id,
                local: VecDeque::new(),
                outboxes: (0..workers).map(|_| Vec::new()).collect(),
                recheck: false,
            },
            next_serial: 0,
            unfinished: Vec::new(),
            paused: HashMap::new(),
            lingering: Vec::new(),
            last_sweep: Instant::now(),
            next_sweep: Instant::now() + IDLE_SWEEP,
            shutdown_deadline: None,
            holding: Vec::new(),
            durable_recheck: false,
        }
    }

    /// The worker's thread: sleep in `epoll_wait` with the state unlocked (so
    /// other workers may [`hand_over`] work to it), then handle the events with
    /// it locked.
    pub fn run(self, mut poll: Poll) {
        let id = self.id as usize;
        let shared = Arc::clone(&self.shared);
        let cell = Arc::new(Mutex::new(self));
        let _ = shared.inboxes[id].worker.set(Arc::downgrade(&cell));
        let mut events = Events::with_capacity(1024);
        let mut inbox = Vec::new();
        // Per thread, so on this one (a worker that runs another's handlers in `hand_over` does
        // so under its own policy).
        let mut sched = SchedControl::start(shared.scheduling, Instant::now());
        loop {
            let mut timeout = lock(&cell).poll_timeout(Instant::now());
            if !shared.inboxes[id].sleep_unless_busy() {
                timeout = Duration::ZERO;
            }
            let polled = poll.poll(&mut events, Some(timeout));
            shared.inboxes[id].awake();
            if let Err(e) = polled {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    tracing::error!(worker = id, "poll failed: {e}");
                    return;
                }
            }
            // Each connection's handling is isolated (`isolated`); this is the
            // last guard, for a panic in the worker's own bookkeeping: a dead
            // worker would hang all of its clients and keep getting new ones.
            // What it leaves: per-connection state is updated one connection
            // at a time, and every list the loop keeps (unfinished, lingering,
            // paused) is checked against the connection's serial when used.
            match catch_unwind(AssertUnwindSafe(|| {
                lock(&cell).iterate(&events, &mut inbox)
            })) {
                Ok(true) => {}
                Ok(false) => return,
                Err(panic) => {
                    tracing::error!(
                        worker = id,
                        "panic in the worker loop, outside a connection's handling: {}",
                        panic_message(&*panic)
                    );
                }
            }
            if !events.is_empty() {
                sched.after_events(Instant::now());
            }
        }
    }

    /// One loop iteration's work. Returns false once shut down.
    fn iterate(&mut self, events: &Events, inbox: &mut Vec<Msg>) -> bool {
        let now = Instant::now();
        // The inbox is read every iteration: deliveries to a running worker
        // come without a wakeup.
        self.shared.inboxes[self.id as usize].take(inbox);
        for msg in inbox.drain(..) {
            self.on_msg(msg, now);
        }
        self.release_durable(now);
        self.run_local(now);
        for ev in events.iter() {
            if ev.token() == WAKER {
                continue; // its messages were taken above
            }
            let read = if ev.is_read_closed() || ev.is_error() {
                ReadMode::Drain
            } else if ev.is_readable() {
                ReadMode::Fresh
            } else {
                ReadMode::No
            };
            let (slot, writable) = (ev.token().0, ev.is_writable());
            self.isolated(slot, now, |w| w.on_ready(slot, read, writable, now));
            self.run_local(now);
        }
        for (slot, serial) in std::mem::take(&mut self.unfinished) {
            if self.serial_at(slot) == Some(serial) {
                self.isolated(slot, now, |w| w.on_ready(slot, ReadMode::Drain, false, now));
                self.run_local(now);
            }
        }
        self.timers(now);
        for (worker, outbox) in self.router.outboxes.iter_mut().enumerate() {
            hand_over(&self.shared, worker, outbox);
        }
        if let Some(deadline) = self.shutdown_deadline {
            if self.conns.is_empty() || now >= deadline {
                return false;
            }
        }
        true
    }

    fn poll_timeout(&self, now: Instant) -> Duration {
        if !self.unfinished.is_empty() || self.durable_recheck || self.router.recheck {
            return Duration::ZERO;
        }
        self.next_deadline().saturating_duration_since(now)
    }

    /// When the worker must next look at its timers.
    fn next_deadline(&self) -> Instant {
        let mut next = self.next_sweep;
        if self.id == 0 {
            next = next.min(self.broker.poll_timeout());
        }
        if let Some(d) = self.shutdown_deadline {
            next = next.min(d);
        }
        next
    }

    fn serial_at(&self, slot: usize) -> Option<u64> {
        self.conns.get(slot).map(|c| c.core.conn_ref().serial)
    }

    fn on_msg(&mut self, msg: Msg, now: Instant) {
        match msg {
            Msg::Accept(transport) => self.accept(*transport, now),
            Msg::Wake(r) => self.router.local.push_back((r, Event::Wake)),
            Msg::Kick(r) => self.router.local.push_back((r, Event::Kick)),
            Msg::Resume(r) => self.router.local.push_back((r, Event::Resume)),
            Msg::Durable => self.release_durable(now),
            Msg::Shutdown => self.shutdown(now),
        }
    }

    fn accept(&mut self, mut transport: Transport, now: Instant) {
        if self.shutdown_deadline.is_some() {
            self.shared.live.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        let entry = self.conns.vacant_entry();
        let slot = entry.key();
        let registered = self.registry.register(
            &mut transport,
            Token(slot),
            // Both at once, for good: edge-triggered WRITABLE costs nothing
            // while idle and saves a reregister syscall per blocked write.
            Interest::READABLE | Interest::WRITABLE,
        );
        if let Err(e) = registered {
            tracing::warn!("cannot register connection: {e}");
            self.shared.live.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        self.next_serial += 1;
        let conn_ref = ConnRef {
            worker: self.id,
            slot: slot as u32,
            serial: self.next_serial,
        };
        entry.insert(Conn::new(transport, Connection::new(conn_ref, now)));
        self.due_at(now + self.broker.config.connect_timeout);
    }

    /// Makes the next sweep come no later than `deadline` (rounded up to the
    /// sweep granularity).
    fn due_at(&mut self, deadline: Instant) {
        let at = deadline.max(self.last_sweep + SWEEP_EVERY);
        self.next_sweep = self.next_sweep.min(at);
    }

    /// Readiness on a connection's socket.
    fn on_ready(&mut self, slot: usize, mut read: ReadMode, writable: bool, now: Instant) {
        let Some(c) = self.conns.get_mut(slot) else {
            return;
        };
        if c.draining {
            if read != ReadMode::No {
                self.drain(slot, now);
            }
            return;
        }
        let mut paused = false;
        if writable && !c.out_idle() {
            if let Err(e) = c.flush() {
                tracing::debug!("write error: {e}");
                self.fail(slot, now);
                return;
            }
            if c.out_idle() && c.wake_deferred && !c.closing {
                c.wake_deferred = false;
                c.core.handle_wake(&self.broker, now, &mut self.out);
            }
            if c.read_paused && !c.out_full() {
                // Edge-triggered: no new READABLE will come for bytes already
                // waiting, so read them now.
                c.read_paused = false;
                read = ReadMode::Drain;
            }
        }
        let readable = read != ReadMode::No;
        if readable && c.paused {
            // Flow control: bytes wait in the socket until a resume.
        } else if readable && c.out_full() {
            c.read_paused = true;
        } else if readable && !c.closing {
            let mut rounds = 0;
            loop {
                let short = match c.read_once(&mut self.read_buf, &self.broker, now, &mut self.out)
                {
                    ReadOutcome::Drained => break,
                    ReadOutcome::Short => true,
                    ReadOutcome::Data => false,
                    ReadOutcome::Closed => {
                        c.core.handle_close(&self.broker, now, &mut self.out);
                        break;
                    }
                };
                rounds += 1;
                if self.out.close || c.core.is_closed() {
                    break;
                }
                if self.out.pause {
                    c.paused = true;
                    paused = true;
                    break;
                }
                if short && read == ReadMode::Fresh {
                    break;
                }
                if rounds == MAX_READ_ROUNDS {
                    self.unfinished.push((slot, c.core.conn_ref().serial));
                    break;
                }
            }
        }
        self.after(slot, now);
        if paused {
            self.track_pause(slot, now);
        }
    }

    /// Records a connection that flow control just paused, and when its
    /// subscriber counts as stalled (then the sweep lets it read again).
    fn track_pause(&mut self, slot: usize, now: Instant) {
        if self.conns.contains(slot) {
            self.paused.insert(slot, now);
            self.due_at(now + self.broker.config.publisher_stall);
        }
    }

    /// Finishes one event on a connection: writes its output once, routes its
    /// wakes and kicks, and closes it when asked and flushed.
    fn after(&mut self, slot: usize, now: Instant) {
        let Some(c) = self.conns.get_mut(slot) else {
            return;
        };
        // A CONNECT can bring the keep-alive deadline forward; later packets
        // only push it back (then the sweep finds nothing due and re-plans).
        let deadline = c.core.poll_timeout(&self.broker);
        // Output that acknowledges something the journal has not made durable yet waits for
        // it, and so does everything this connection sends after it (order is the protocol's).
        // Output released by delivery (handle_publish.rs) may also go once the messages it
        // acknowledges were acknowledged by their subscribers.
        let need = std::mem::take(&mut self.out.durable_after);
        let soft = std::mem::take(&mut self.out.soft_after);
        // 0 without a store, or when the event recorded nothing: no atomic load then.
        let durable = match &self.broker.journal {
            Some(j) if need != 0 || soft != 0 || c.is_holding() => j.durable(),
            _ => u64::MAX,
        };
        let waits = need > durable
            || (soft > durable && !self.out.soft_messages.iter().all(|m| m.delivered()));
        if !waits {
            self.out.soft_messages.clear();
        }
        let sent = if c.is_holding() || waits {
            let messages = std::mem::take(&mut self.out.soft_messages);
            c.hold(Held::new(need, soft, messages), &mut self.out.transmit);
            let serial = c.core.conn_ref().serial;
            if !self.holding.contains(&(slot, serial)) {
                self.holding.push((slot, serial));
            }
            self.wait_durable(durable);
            Ok(())
        } else {
            c.send(&mut self.out.transmit)
        };
        let Some(c) = self.conns.get_mut(slot) else {
            return;
        };
        self.out.pause = false;
        if self.out.close {
            self.out.close = false;
            c.closing = true;
        }
        self.router.route(&mut self.out);
        if let Err(e) = sent {
            tracing::debug!("write error: {e}");
            self.fail(slot, now);
        } else if c.closing {
            let serial = c.core.conn_ref().serial;
            if c.out_idle() {
                self.half_close(slot, now);
            } else if !self
                .lingering
                .iter()
                .any(|l| l.slot == slot && l.serial == serial)
            {
                self.linger(slot, serial, now + LINGER);
            }
        }
        if let Some(t) = deadline {
            self.due_at(t);
        }
    }

    /// Wakes and kicks for this worker's own connections.
    fn run_local(&mut self, now: Instant) {
        while let Some((r, ev)) = self.router.local.pop_front() {
            let slot = r.slot as usize;
            self.isolated(slot, now, |w| w.local_event(r, ev, now));
        }
    }

    fn local_event(&mut self, r: ConnRef, ev: Event, now: Instant) {
        let slot = r.slot as usize;
        let Some(c) = self.conns.get_mut(slot) else {
            return;
        };
        if c.core.conn_ref() != r {
            return; // the slot now holds another connection
        }
        match ev {
            Event::Wake if !c.out_idle() => {
                c.wake_deferred = true;
                return;
            }
            Event::Wake => c.core.handle_wake(&self.broker, now, &mut self.out),
            Event::Kick => c.core.handle_kick(&self.broker, now, &mut self.out),
            Event::Resume => return self.resume(slot, now),
        }
        self.after(slot, now);
    }

    /// Lets a paused publisher read again: first the bytes it kept, now; the
    /// socket on the next loop iteration (edge-triggered readiness will not
    /// report bytes already there). Not now: a resume comes from the drain of
    /// the subscriber that paused it, and reading at once would pause it again
    /// and drain again, a cycle inside `run_local` that never returns to
    /// `epoll_wait` while the publisher keeps sending — every other connection
    /// of the worker starved (found with `make bench` pairs: subscribers saw
    /// nothing for seconds).
    fn resume(&mut self, slot: usize, now: Instant) {
        let Some(c) = self.conns.get_mut(slot) else {
            return;
        };
        if !std::mem::take(&mut c.paused) {
            return;
        }
        self.paused.remove(&slot);
        if c.closing {
            return;
        }
        c.resume_input(&self.broker, now, &mut self.out);
        if self.out.pause {
            c.paused = true;
            self.after(slot, now);
            self.track_pause(slot, now);
        } else {
            let serial = c.core.conn_ref().serial;
            self.after(slot, now);
            self.unfinished.push((slot, serial));
        }
    }

    /// SIGINT/SIGTERM: every connection is told and closed; the loop ends once
    /// they are flushed or after LINGER.
    fn shutdown(&mut self, now: Instant) {
        if self.shutdown_deadline.is_some() {
            return;
        }
        self.shutdown_deadline = Some(now + LINGER);
        let slots: Vec<usize> = self.conns.iter().map(|(slot, _)| slot).collect();
        for slot in slots {
            self.isolated(slot, now, |w| {
                if let Some(c) = w.conns.get_mut(slot) {
                    c.core.handle_shutdown(&w.broker, now, &mut w.out);
                    w.after(slot, now);
                }
            });
        }
        self.run_local(now);
    }
}

/// Locks a worker's state; a panic in another holder does not stop this one.
fn lock(cell: &Mutex<Worker>) -> MutexGuard<'_, Worker> {
    cell.lock().unwrap_or_else(|e| e.into_inner())
}
