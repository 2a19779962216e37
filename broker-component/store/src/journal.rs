//! The group commit: one thread turns the core's ops into engine batches.
//!
//! Workers call [`Journal::record`] (a channel send, never the disk) and hold back the bytes
//! an event produced until [`Journal::durable`] reaches the event's last ticket. The commit
//! thread blocks for the first op, then takes every op that queued while it waited or while
//! the previous commit (and its fsync) ran, and commits them as one batch: one fsync covers
//! every message that arrived meanwhile, so the rate of fsyncs, not messages, is bounded by
//! the disk. After the commit it advances the durable ticket and calls the notifier, which
//! wakes the workers holding output (docs/storage.md "Group commit").
//!
//! Tickets are taken (an atomic counter) and sent by different threads, so they can reach the
//! channel slightly out of order: the durable ticket is the highest one below which every
//! ticket has been committed.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use musqratt_core::persist::{self, Op, Ticket};

use crate::engine::{Change, Engine};
use crate::translate::{Batch, Translator};

/// `storage.fsync` (docs/storage.md "What each fsync mode risks").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fsync {
    /// Acknowledge only what is on stable storage (group commit). The default.
    #[default]
    Always,
    /// Acknowledge what is committed; a durable commit every 100 ms.
    Batch,
    /// Acknowledge what is committed; a durable commit every second. (redb persists only
    /// through a durable commit: without any, a restart would find nothing.)
    Never,
}

impl Fsync {
    /// How long acknowledged but not yet durable commits may wait for a durable one.
    fn sync_every(self) -> Duration {
        match self {
            Fsync::Always => Duration::ZERO,
            Fsync::Batch => Duration::from_millis(100),
            Fsync::Never => Duration::from_secs(1),
        }
    }
}
/// The most ops one commit takes (bounds a batch's memory; the rest go in the next).
pub(crate) const MAX_BATCH_OPS: usize = 65_536;

/// Called after each commit with the new durable ticket (wakes the workers).
pub type Notify = Box<dyn Fn(Ticket) + Send + Sync>;

/// What happened to a ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pending,
    Durable,
    /// Its batch failed to commit (disk full, IO error): what it acknowledges is not stored.
    Failed,
}

struct Shared {
    next: AtomicU64,
    durable: AtomicU64,
    /// At the disk budget, or the last commit failed (persist::Journal::full).
    full: AtomicBool,
    /// Ticket ranges (inclusive) whose batch failed; few, and pruned as workers catch up.
    failed: Mutex<Vec<(Ticket, Ticket)>>,
}

/// What the commit thread receives.
pub(crate) enum Cmd {
    Op(Ticket, Op),
    /// Commit everything before this, flush, answer, and stop.
    Close(Sender<()>),
}

/// The journal handle the core records into (`musqratt_core::persist::Journal`).
pub struct Journal {
    tx: Sender<Cmd>,
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Journal {
    /// Starts the commit thread over `engine`. `refs` are the message reference counts
    /// recovery found, so deletes free messages correctly.
    pub fn start(
        engine: Box<dyn Engine>,
        fsync: Fsync,
        max_disk_bytes: u64,
        refs: HashMap<u64, u32>,
        notify: Notify,
    ) -> std::io::Result<Journal> {
        let (tx, rx) = crossbeam_channel::unbounded::<Cmd>();
        let shared = Arc::new(Shared {
            next: AtomicU64::new(0),
            durable: AtomicU64::new(0),
            full: AtomicBool::new(false),
            failed: Mutex::new(Vec::new()),
        });
        let mut committer = Committer {
            engine,
            fsync,
            disk: DiskBudget {
                max: max_disk_bytes,
                full: Full::No,
                last_measured: None,
                last_used: 0,
                written_since: 0,
            },
            shared: Arc::clone(&shared),
            notify,
            done: BTreeSet::new(),
            last_sync: Instant::now(),
            unsynced: false,
            stats: (0, 0, 0, Duration::ZERO),
            stats_since: Instant::now(),
        };
        let translator = Translator::new(refs);
        committer.check_disk(0);
        let threads = vec![std::thread::Builder::new()
            .name("store".into())
            .spawn(move || committer.run(translator, rx))?];
        Ok(Journal {
            tx,
            shared,
            threads: Mutex::new(threads),
        })
    }

    pub fn outcome(&self, ticket: Ticket) -> Outcome {
        if let Ok(failed) = self.shared.failed.lock() {
            if failed.iter().any(|&(a, b)| (a..=b).contains(&ticket)) {
                return Outcome::Failed;
            }
        }
        if ticket <= self.shared.durable.load(Ordering::Acquire) {
            Outcome::Durable
        } else {
            Outcome::Pending
        }
    }

    /// Commits what is queued, flushes, and stops the thread (on shutdown, after the
    /// workers). Ops recorded afterwards are dropped.
    pub fn close(&self) {
        let (ack_tx, ack_rx) = crossbeam_channel::bounded(1);
        if self.tx.send(Cmd::Close(ack_tx)).is_ok() {
            let _ = ack_rx.recv();
        }
        let threads = self
            .threads
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default();
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.close();
    }
}

impl persist::Journal for Journal {
    fn record(&self, op: Op) -> Ticket {
        let ticket = self.shared.next.fetch_add(1, Ordering::AcqRel) + 1;
        // Fails only after `close`: the op is dropped, and its ticket never becomes durable.
        let _ = self.tx.send(Cmd::Op(ticket, op));
        ticket
    }

    fn durable(&self) -> Ticket {
        self.shared.durable.load(Ordering::Acquire)
    }

    fn failed(&self, ticket: Ticket) -> bool {
        self.outcome(ticket) == Outcome::Failed
    }

    fn full(&self) -> bool {
        self.shared.full.load(Ordering::Relaxed)
    }

    fn backlog(&self) -> u64 {
        let next = self.shared.next.load(Ordering::Relaxed);
        next.saturating_sub(self.shared.durable.load(Ordering::Relaxed))
    }
}

/// Why the store takes no new messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Full {
    No,
    /// At `storage.max_disk_mb`, until deletes bring it under 90% of it.
    Budget,
    /// A commit failed (the disk is full, or failing): until a commit succeeds again.
    Failed,
}

/// `storage.max_disk_mb`, as the commit thread watches it.
struct DiskBudget {
    /// Bytes (`u64::MAX` = no budget).
    max: u64,
    full: Full,
    /// When the engine last counted its pages (at most every `MEASURE_EVERY`, unless
    /// `written_since` may have reached the budget).
    last_measured: Option<Instant>,
    /// What the engine counted then.
    last_used: u64,
    /// Keys and values put since then: what the store may have grown by (× `GROWTH`).
    written_since: u64,
}

/// How often, near the budget, the engine's used pages are counted (a walk of its trees).
const MEASURE_EVERY: Duration = Duration::from_millis(100);

/// How much the engine's used pages may grow per byte put: redb copies the pages a commit
/// changes and frees the old ones only after the next commit, so a message briefly takes
/// about twice its size (measured: 16 MiB of 64 KiB messages showed 32 MiB used).
const GROWTH: u64 = 2;

/// How often a full store (a failed commit, or at the budget) is probed with an empty commit
/// when nothing else arrives, so it takes messages again once there is room.
const FAILED_PROBE_EVERY: Duration = Duration::from_secs(1);

/// The second half of the group commit (thread `store`): commits each batch, advances the
/// durable ticket, wakes the workers.
struct Committer {
    engine: Box<dyn Engine>,
    fsync: Fsync,
    disk: DiskBudget,
    shared: Arc<Shared>,
    notify: Notify,
    /// Committed tickets above the durable one (arrived out of order).
    done: BTreeSet<Ticket>,
    last_sync: Instant,
    unsynced: bool,
    /// Commits, ops, changes written and time spent committing since `stats_since`: logged at
    /// debug level every few seconds (how big the group commits are, what one costs).
    stats: (u64, u64, u64, Duration),
    stats_since: Instant,
}

impl Committer {
    /// Blocks for the first op, takes everything queued behind it, commits it as one batch;
    /// until `Close` (or every sender is gone).
    fn run(&mut self, mut translator: Translator, rx: Receiver<Cmd>) {
        let mut tickets = Vec::new();
        let mut batch = Batch::default();
        loop {
            let wait = match (self.unsynced, self.disk.full != Full::No) {
                (false, false) => None,
                (true, false) => Some(self.fsync.sync_every()),
                (false, true) => Some(FAILED_PROBE_EVERY),
                (true, true) => Some(self.fsync.sync_every().min(FAILED_PROBE_EVERY)),
            };
            let first = if let Some(wait) = wait {
                match rx.recv_timeout(wait) {
                    Ok(cmd) => cmd,
                    Err(RecvTimeoutError::Timeout) => {
                        self.sync_if_due(true);
                        self.probe_failed();
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            } else {
                match rx.recv() {
                    Ok(cmd) => cmd,
                    Err(_) => break,
                }
            };
            tickets.clear();
            let closing = translator.take_queued(first, &rx, &mut tickets, &mut batch);
            if !tickets.is_empty() {
                let changes = batch.take();
                self.commit(&tickets, &changes);
            }
            if let Some(ack) = closing {
                self.sync_if_due(true);
                let _ = ack.send(());
                return;
            }
        }
        self.sync_if_due(true);
    }

    fn commit(&mut self, tickets: &[Ticket], changes: &[Change]) {
        let sync = self.fsync == Fsync::Always;
        let started = Instant::now();
        let result = self.engine.commit(changes, sync);
        self.note_stats(tickets.len(), changes.len(), started.elapsed());
        match result {
            Ok(()) => {
                if !sync {
                    self.unsynced = true;
                    self.sync_if_due(false);
                }
                self.check_disk(put_bytes(changes));
            }
            Err(e) => {
                self.set_full(Full::Failed, None);
                // Not acknowledged: the workers close the connections waiting for these
                // tickets, so their publishers resend (docs/storage.md "When the disk fails").
                tracing::error!(
                    ops = tickets.len(),
                    "store: commit failed, nothing in it is acknowledged: {e}"
                );
                if let (Some(&lo), Some(&hi)) = (tickets.iter().min(), tickets.iter().max()) {
                    if let Ok(mut failed) = self.shared.failed.lock() {
                        failed.push((lo, hi));
                        // Keep the list short: a broker on a full disk fails every batch.
                        if failed.len() > 64 {
                            failed.remove(0);
                        }
                    }
                }
            }
        }
        // Tickets come almost in order: advance over the contiguous run, and keep only the
        // few that overtook a missing one.
        let mut durable = self.shared.durable.load(Ordering::Acquire);
        let mut sorted = tickets.to_vec();
        sorted.sort_unstable();
        for t in sorted {
            if t == durable + 1 {
                durable = t;
                while self.done.first() == Some(&(durable + 1)) {
                    self.done.pop_first();
                    durable += 1;
                }
            } else {
                self.done.insert(t);
            }
        }
        self.shared.durable.store(durable, Ordering::Release);
        (self.notify)(durable);
    }

    fn note_stats(&mut self, ops: usize, changes: usize, took: Duration) {
        self.stats.0 += 1;
        self.stats.1 += ops as u64;
        self.stats.2 += changes as u64;
        self.stats.3 += took;
        if self.stats_since.elapsed() >= Duration::from_secs(5) {
            let (n, ops, written, time) = self.stats;
            tracing::debug!(
                commits = n,
                ops_per_commit = ops / n.max(1),
                written_per_commit = written / n.max(1),
                commit_us = (time.as_micros() as u64) / n.max(1),
                "store: group commits"
            );
            self.stats = (0, 0, 0, Duration::ZERO);
            self.stats_since = Instant::now();
        }
    }

    /// After a commit that put `written` bytes: whether the store is (still) at its disk
    /// budget. Below 90% of it (by the file's length, an upper bound) nothing is counted;
    /// nearer, the engine's used pages are, every `MEASURE_EVERY` or as soon as what was put
    /// since the last count may have reached the budget, so a fast publisher overshoots it by
    /// about one group commit, not by 100 ms of writes.
    fn check_disk(&mut self, written: u64) {
        let max = self.disk.max;
        if self.disk.full == Full::Failed {
            // A commit just succeeded: the disk took it.
            self.set_full(Full::No, None);
        }
        if max == u64::MAX {
            return;
        }
        let under = max - max / 10;
        if self.engine.file_bytes() < under {
            self.set_full(Full::No, None);
            self.disk.last_measured = None;
            return;
        }
        let d = &mut self.disk;
        d.written_since = d.written_since.saturating_add(written);
        let now = Instant::now();
        let may_be_over = d
            .last_used
            .saturating_add(d.written_since.saturating_mul(GROWTH))
            >= max;
        let recent = d
            .last_measured
            .is_some_and(|t| now.saturating_duration_since(t) < MEASURE_EVERY);
        if recent && !may_be_over {
            return;
        }
        d.last_measured = Some(now);
        match self.engine.used_bytes() {
            Ok(used) => {
                self.disk.last_used = used;
                self.disk.written_since = 0;
                if used >= max {
                    self.set_full(Full::Budget, Some(used));
                } else if used < under {
                    self.set_full(Full::No, Some(used));
                } // between: as it was (hysteresis)
            }
            Err(e) => tracing::warn!("store: cannot measure its size: {e}"),
        }
    }

    /// A full store with nothing to commit: an empty durable commit says whether the disk
    /// takes writes again (after a failure), and lets the engine release the pages the last
    /// deletes freed (at the budget), before the store is measured again.
    fn probe_failed(&mut self) {
        if self.disk.full != Full::No && self.engine.sync().is_ok() {
            self.disk.last_measured = None;
            self.check_disk(0);
        }
    }

    fn set_full(&mut self, full: Full, used: Option<u64>) {
        if self.disk.full == full {
            return;
        }
        // The flag first: whoever reads the log line (a test, an operator) sees the state it
        // names already in force.
        self.disk.full = full;
        self.shared.full.store(full != Full::No, Ordering::Relaxed);
        let mib = |b: u64| b >> 20;
        match full {
            Full::Budget => tracing::warn!(
                used_mib = used.map(mib),
                max_mib = mib(self.disk.max),
                "store: storage.max_disk_mb reached: QoS 1/2 messages for persistent sessions, held and retained messages are refused (v5 publishers get 0x97) until it is back under 90%"
            ),
            Full::Failed => tracing::error!(
                "store: a commit failed: new messages are refused (v5 publishers get 0x97) until a commit succeeds"
            ),
            Full::No => tracing::warn!(
                used_mib = used.map(mib),
                "store: takes messages again"
            ),
        }
    }

    fn sync_if_due(&mut self, force: bool) {
        if !self.unsynced || (!force && self.last_sync.elapsed() < self.fsync.sync_every()) {
            return;
        }
        if let Err(e) = self.engine.sync() {
            tracing::error!("store: durable commit failed: {e}");
        }
        self.unsynced = false;
        self.last_sync = Instant::now();
    }
}

/// The bytes of keys and values a batch puts (what it may add to the store).
fn put_bytes(changes: &[Change]) -> u64 {
    changes
        .iter()
        .map(|c| match c {
            Change::Put(_, k, v) => (k.len() + v.len()) as u64,
            Change::Delete(..) | Change::DeletePrefix(..) => 0,
        })
        .sum()
}
