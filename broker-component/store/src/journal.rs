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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use musqratt_core::persist::{self, Op, Ticket};

use crate::engine::{Change, Engine, Table};
use crate::record::{self, StoredEntry, StoredMessage, StoredSession};

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
/// A batch stops gathering when no op came for this long...
const GATHER_GAP: Duration = Duration::from_micros(100);
/// ...or this long after its first op.
const GATHER_MAX: Duration = Duration::from_millis(1);
/// The most ops one commit takes (bounds a batch's memory; the rest go in the next).
const MAX_BATCH_OPS: usize = 65_536;

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
    /// Ticket ranges (inclusive) whose batch failed; few, and pruned as workers catch up.
    failed: Mutex<Vec<(Ticket, Ticket)>>,
}

/// What the commit thread receives.
enum Cmd {
    Op(Ticket, Op),
    /// Commit everything before this, flush, answer, and stop.
    Close(Sender<()>),
}

/// The journal handle the core records into (`musqratt_core::persist::Journal`).
pub struct Journal {
    tx: Sender<Cmd>,
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Journal {
    /// Starts the commit thread over `engine`. `refs` are the message reference counts
    /// recovery found, so deletes free messages correctly.
    pub fn start(
        engine: Box<dyn Engine>,
        fsync: Fsync,
        refs: HashMap<u64, u32>,
        first_ticket: Ticket,
        notify: Notify,
    ) -> std::io::Result<Journal> {
        let (tx, rx) = crossbeam_channel::unbounded::<Cmd>();
        let shared = Arc::new(Shared {
            next: AtomicU64::new(first_ticket),
            durable: AtomicU64::new(first_ticket),
            failed: Mutex::new(Vec::new()),
        });
        let mut committer = Committer {
            engine,
            fsync,
            refs,
            shared: Arc::clone(&shared),
            notify,
            done: BTreeSet::new(),
            clock: (Instant::now(), SystemTime::now()),
            last_sync: Instant::now(),
            unsynced: false,
            failures_logged: 0,
            stats: (0, 0, 0, Duration::ZERO),
            stats_since: Instant::now(),
        };
        let thread = std::thread::Builder::new()
            .name("store".into())
            .spawn(move || committer.run(rx))?;
        Ok(Journal {
            tx,
            shared,
            thread: Mutex::new(Some(thread)),
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
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = thread {
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
}

/// One commit's changes, with the changes to one key folded: a key written and deleted in
/// the same batch, which did not exist before it, is not written at all. That is the common
/// case for a subscriber that keeps up: its acknowledgements arrive while the previous commit
/// runs, in the same batch as the messages they acknowledge, so a delivered message costs the
/// disk nothing (docs/storage.md "Group commit").
#[derive(Default)]
struct Batch {
    changes: Vec<Option<Change>>,
    /// Per key changed in this batch: where its change is, and whether this batch created it.
    index: HashMap<(Table, Vec<u8>), (usize, bool)>,
}

impl Batch {
    fn clear(&mut self) {
        self.changes.clear();
        self.index.clear();
    }

    /// `create`: the key cannot exist before this batch (a fresh id).
    fn put(&mut self, t: Table, k: Vec<u8>, v: Vec<u8>, create: bool) {
        if let Some(&(i, _)) = self.index.get(&(t, k.clone())) {
            self.changes[i] = Some(Change::Put(t, k, v));
            return;
        }
        self.index
            .insert((t, k.clone()), (self.changes.len(), create));
        self.changes.push(Some(Change::Put(t, k, v)));
    }

    fn delete(&mut self, t: Table, k: Vec<u8>) {
        match self.index.remove(&(t, k.clone())) {
            Some((i, true)) => self.changes[i] = None,
            Some((i, false)) => {
                self.changes[i] = Some(Change::Delete(t, k.clone()));
                self.index.insert((t, k), (i, false));
            }
            None => {
                self.index
                    .insert((t, k.clone()), (self.changes.len(), false));
                self.changes.push(Some(Change::Delete(t, k)));
            }
        }
    }

    fn delete_prefix(&mut self, t: Table, prefix: Vec<u8>) {
        // Later changes to these keys must come after the range delete: forget their slots.
        self.index
            .retain(|(table, k), _| *table != t || !k.starts_with(&prefix));
        self.changes.push(Some(Change::DeletePrefix(t, prefix)));
    }

    fn take(&mut self) -> Vec<Change> {
        self.changes.drain(..).flatten().collect()
    }
}

struct Committer {
    engine: Box<dyn Engine>,
    fsync: Fsync,
    /// Live references (queue entries, retained, held) per stored message.
    refs: HashMap<u64, u32>,
    shared: Arc<Shared>,
    notify: Notify,
    /// Committed tickets above the durable one (arrived out of order).
    done: BTreeSet<Ticket>,
    /// An `Instant` and the wall-clock time it was: message deadlines are stored as the latter.
    clock: (Instant, SystemTime),
    last_sync: Instant,
    unsynced: bool,
    failures_logged: u64,
    /// Commits, ops, changes written and time spent committing since `stats_since`: logged at
    /// debug level every few seconds (how big the group commits are, what one costs).
    stats: (u64, u64, u64, Duration),
    stats_since: Instant,
}

impl Committer {
    fn run(&mut self, rx: Receiver<Cmd>) {
        let mut tickets = Vec::new();
        let mut changes = Batch::default();
        let mut closing = None;
        while closing.is_none() {
            let first = if self.unsynced {
                match rx.recv_timeout(self.fsync.sync_every()) {
                    Ok(cmd) => cmd,
                    Err(RecvTimeoutError::Timeout) => {
                        self.sync_if_due(true);
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
            changes.clear();
            let mut next = Some(first);
            let gather_until = Instant::now() + GATHER_MAX;
            while let Some(cmd) = next.take() {
                match cmd {
                    Cmd::Op(t, op) => self.translate((t, op), &mut tickets, &mut changes),
                    Cmd::Close(ack) => {
                        closing = Some(ack);
                        break;
                    }
                }
                if tickets.len() < MAX_BATCH_OPS {
                    next = rx.try_recv().ok().or_else(|| {
                        // Gather the rest of a wave: the acknowledgements of the last commit
                        // bring the next messages over a few hundred microseconds; one commit
                        // for all of them, not one for its first few and one for the rest.
                        let left = gather_until.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            return None;
                        }
                        rx.recv_timeout(GATHER_GAP.min(left)).ok()
                    });
                }
            }
            if !tickets.is_empty() {
                let batch = changes.take();
                self.commit(&tickets, &batch);
            }
        }
        self.sync_if_due(true);
        if let Some(ack) = closing {
            let _ = ack.send(());
        }
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
            }
            Err(e) => {
                // Not acknowledged: the workers close the connections waiting for these
                // tickets, so their publishers resend (docs/storage.md "When the disk fails").
                self.failures_logged += 1;
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
        self.done.extend(tickets.iter().copied());
        let mut durable = self.shared.durable.load(Ordering::Acquire);
        while self.done.first() == Some(&(durable + 1)) {
            self.done.pop_first();
            durable += 1;
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

    fn wall_ms(&self, at: Instant) -> u64 {
        let wall = if at >= self.clock.0 {
            self.clock.1 + (at - self.clock.0)
        } else {
            self.clock.1 - (self.clock.0 - at)
        };
        wall.duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(1)
            .max(1)
    }

    fn add_ref(&mut self, msg: u64) {
        *self.refs.entry(msg).or_insert(0) += 1;
    }

    fn drop_ref(&mut self, msg: u64, changes: &mut Batch) {
        if let Some(n) = self.refs.get_mut(&msg) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.refs.remove(&msg);
                changes.delete(Table::Messages, msg.to_be_bytes().to_vec());
            }
        }
    }

    fn translate(
        &mut self,
        (ticket, op): (Ticket, Op),
        tickets: &mut Vec<Ticket>,
        changes: &mut Batch,
    ) {
        tickets.push(ticket);
        match op {
            Op::SessionPut {
                client,
                expiry_interval,
                expires_at,
                subscriptions,
            } => {
                let v = record::encode_session(&StoredSession {
                    expiry_interval,
                    expires_at_ms: expires_at.map_or(0, |t| self.wall_ms(t)),
                    subscriptions,
                });
                changes.put(Table::Sessions, client.as_bytes().to_vec(), v, false);
            }
            Op::SessionDelete { client, msgs } => {
                changes.delete(Table::Sessions, client.as_bytes().to_vec());
                let prefix = record::name_prefix(&client);
                changes.delete_prefix(Table::Queue, prefix.clone());
                changes.delete_prefix(Table::IncomingQos2, prefix);
                for m in msgs {
                    self.drop_ref(m, changes);
                }
            }
            Op::MessagePut { id, msg } => {
                self.refs.entry(id).or_insert(0);
                let stored = StoredMessage {
                    publish: msg.to_publish(),
                    publisher: msg.publisher,
                    expires_at_ms: msg.expires_at.map_or(0, |t| self.wall_ms(t)),
                };
                let v = record::encode_message(&stored);
                changes.put(Table::Messages, id.to_be_bytes().to_vec(), v, true);
            }
            Op::QueuePut {
                client,
                entry,
                msg,
                qos,
                retain,
                sub_ids,
            } => {
                self.add_ref(msg);
                let v = record::encode_entry(&StoredEntry {
                    msg,
                    qos,
                    retain,
                    sent: None,
                    sub_ids,
                });
                changes.put(Table::Queue, record::name_key(&client, entry), v, true);
            }
            Op::QueueSent {
                client,
                entry,
                msg,
                qos,
                retain,
                sub_ids,
                packet_id,
                state,
            } => {
                let v = record::encode_entry(&StoredEntry {
                    msg,
                    qos,
                    retain,
                    sent: Some((packet_id, state)),
                    sub_ids,
                });
                changes.put(Table::Queue, record::name_key(&client, entry), v, false);
            }
            Op::QueueDelete { client, entry, msg } => {
                changes.delete(Table::Queue, record::name_key(&client, entry));
                self.drop_ref(msg, changes);
            }
            // A packet id can be reused after its PUBREL: not a fresh key, never folded away.
            Op::IncomingQos2Put { client, packet_id } => changes.put(
                Table::IncomingQos2,
                record::name_key(&client, u64::from(packet_id)),
                Vec::new(),
                false,
            ),
            Op::IncomingQos2Delete { client, packet_id } => changes.delete(
                Table::IncomingQos2,
                record::name_key(&client, u64::from(packet_id)),
            ),
            Op::RetainedPut { topic, msg, old } => {
                self.add_ref(msg);
                changes.put(
                    Table::Retained,
                    topic.into_bytes(),
                    record::encode_ref(msg),
                    false,
                );
                if let Some(old) = old {
                    self.drop_ref(old, changes);
                }
            }
            Op::RetainedDelete { topic, msg } => {
                changes.delete(Table::Retained, topic.into_bytes());
                self.drop_ref(msg, changes);
            }
            Op::HeldPut { topic, entry, msg } => {
                self.add_ref(msg);
                // Hold seqs restart after a restart beyond the recovered ones only: not fresh.
                changes.put(
                    Table::Held,
                    record::name_key(&topic, entry),
                    record::encode_ref(msg),
                    false,
                );
            }
            Op::HeldDelete { topic, entry, msg } => {
                changes.delete(Table::Held, record::name_key(&topic, entry));
                self.drop_ref(msg, changes);
            }
        }
    }
}
