//! The state every worker shares: the session registry, the subscription
//! tree, retained messages, hold queues, the broker-wide timer and counters.
//!
//! Locking (no global lock on the publish path):
//! - `sessions` (registry) is touched only by CONNECT and session end;
//! - `topics` is a sharded reader-writer lock: PUBLISH reads (one shard per
//!   thread, no shared cache line), SUBSCRIBE/UNSUBSCRIBE write (all shards);
//! - each session has its own mutex;
//! - order: registry → topics → (hold | retained | session), never the reverse.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_utils::sync::{ShardedLock, ShardedLockReadGuard, ShardedLockWriteGuard};
use parking_lot::Mutex;

use musqratt_codec::topic;

use crate::budget::{Charge, LimitLog, MemoryBudget};
use crate::config::BrokerConfig;
use crate::connection::{ConnRef, Output};
use crate::hold::HoldQueues;
use crate::metrics::Metrics;
use crate::retained::RetainedStore;
use crate::session::{Session, SessionCell};
use crate::topic_tree::TopicTree;
use crate::will::{will_delay, DueWill, LeftWill};

pub struct Broker {
    pub config: BrokerConfig,
    pub metrics: Metrics,
    pub(crate) sessions: Mutex<HashMap<Arc<str>, Arc<SessionCell>>>,
    /// Sharded: a reader (every PUBLISH) locks only its thread's shard, so
    /// readers on different cores never touch the same cache line; a writer
    /// (SUBSCRIBE, UNSUBSCRIBE) locks every shard.
    pub(crate) topics: ShardedLock<TopicTree>,
    pub(crate) hold: Mutex<HoldQueues>,
    pub(crate) retained: Mutex<RetainedStore>,
    /// Offline sessions' deadlines (will delay, session expiry), by time. The
    /// session keeps each deadline it scheduled (`pending_will`, `expires_at`),
    /// and a reconnect or the session's end removes those keys
    /// ([`cancel_timers`](Self::cancel_timers)), so there are at most two
    /// entries per offline session however often a client reconnects.
    timers: Mutex<BTreeMap<(Instant, u64), Arc<SessionCell>>>,
    next_session_id: AtomicU64,
    pub(crate) started: Instant,
    pub(crate) next_sys: Mutex<Instant>,
    next_hold_purge: Mutex<Instant>,
    /// Where durable state changes go (persist.rs); None = in memory only.
    pub journal: Option<Arc<dyn crate::persist::Journal>>,
    /// Store ids of messages and queue entries.
    pub ids: crate::persist::Ids,
    /// What messages may pin in memory (`limits.max_memory_mb`, budget.rs).
    pub memory: Arc<MemoryBudget>,
    /// Messages refused at the memory or disk budget: counted, logged once per interval.
    pub limit_log: LimitLog,
    /// Restored wills due at start-up, published by
    /// [`publish_restored_wills`](Self::publish_restored_wills) (will.rs).
    pub(crate) due_wills: Mutex<Vec<DueWill>>,
    /// The password table CONNECTs are checked against (auth.rs); the server installs it at
    /// start and replaces it on SIGHUP.
    pub auth: crate::auth::Auth,
    /// Access control (acl.rs): None without `auth.acl_file`, and then nothing is checked.
    /// The server installs it before the broker is shared; SIGHUP replaces its table.
    pub acl: Option<crate::acl::Acl>,
}

impl Broker {
    pub fn new(config: BrokerConfig, now: Instant) -> Broker {
        let memory = Arc::new(MemoryBudget::new(config.max_memory_bytes));
        let mut hold = HoldQueues::default();
        hold.charge = Charge::of(&memory);
        let mut retained = RetainedStore::default();
        retained.charge = Charge::of(&memory);
        Broker {
            config,
            metrics: Metrics::default(),
            sessions: Mutex::new(HashMap::new()),
            topics: ShardedLock::new(TopicTree::default()),
            hold: Mutex::new(hold),
            retained: Mutex::new(retained),
            timers: Mutex::new(BTreeMap::new()),
            next_session_id: AtomicU64::new(1),
            started: now,
            next_sys: Mutex::new(now),
            next_hold_purge: Mutex::new(now),
            journal: None,
            ids: crate::persist::Ids::default(),
            memory,
            limit_log: LimitLog::default(),
            due_wills: Mutex::new(Vec::new()),
            auth: crate::auth::Auth::default(),
            acl: None,
        }
    }

    /// The subscription tree for matching (a poisoned lock is still usable:
    /// the tree is never left half-updated by a panic in a reader).
    pub(crate) fn topics_read(&self) -> ShardedLockReadGuard<'_, TopicTree> {
        self.topics.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn topics_write(&self) -> ShardedLockWriteGuard<'_, TopicTree> {
        self.topics.write().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn new_session_id(&self) -> u64 {
        self.next_session_id.fetch_add(1, Ordering::Relaxed)
    }

    /// A client identifier for a client that sent an empty one (§3.1.3.1):
    /// 128 bits from the operating system's CSPRNG. A predictable id (a salt
    /// and a counter) lets an attacker plant a persistent session under the
    /// next id and have it resumed by the next client that asks for one.
    /// `None` if the OS has no randomness to give: the caller refuses the
    /// connection rather than fall back to a guessable id.
    pub(crate) fn generate_client_id(&self) -> Option<String> {
        let mut bytes = [0u8; 16];
        if let Err(e) = getrandom::fill(&mut bytes) {
            tracing::error!("cannot assign a client identifier: no randomness from the OS: {e}");
            return None;
        }
        let mut id = String::with_capacity(9 + 2 * bytes.len());
        id.push_str("musqratt-");
        for b in bytes {
            id.push_str(&format!("{b:02x}"));
        }
        Some(id)
    }

    /// Topics that exist now: filters with subscribers plus topics with held
    /// messages (docs/design.md §3, `$SYS/broker/topics/count`).
    pub fn topic_count(&self) -> usize {
        self.topics_read().filter_count() + self.hold.lock().topic_count()
    }

    /// Sessions known to the broker, online or not.
    pub fn session_count(&self) -> usize {
        self.sessions.lock().len()
    }

    pub fn held_message_count(&self) -> usize {
        self.hold.lock().message_count()
    }

    pub fn retained_count(&self) -> usize {
        self.retained.lock().len()
    }

    /// Pending broker-wide timer entries (delayed wills, session expiry): at
    /// most two per offline session.
    pub fn timer_count(&self) -> usize {
        self.timers.lock().len()
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has work to do.
    pub fn poll_timeout(&self) -> Instant {
        let mut next = *self.next_sys.lock();
        next = next.min(*self.next_hold_purge.lock());
        if let Some(((t, _), _)) = self.timers.lock().first_key_value() {
            next = next.min(*t);
        }
        next
    }

    /// Broker-wide timers: delayed wills, session expiry, held-message expiry,
    /// `$SYS` publication. Call from one worker, at or after `poll_timeout()`.
    pub fn handle_timeout(&self, now: Instant, out: &mut Output) {
        loop {
            let entry = {
                let mut timers = self.timers.lock();
                match timers.first_key_value() {
                    Some(((t, _), _)) if *t <= now => timers.pop_first(),
                    _ => None,
                }
            };
            let Some((_, cell)) = entry else { break };
            self.fire_session_timer(&cell, now, out);
        }
        // Every second while messages are held; with none, only at the next
        // `$SYS` publication (so its counts are current) and no wake-up of its
        // own: an idle broker sleeps.
        if *self.next_hold_purge.lock() <= now {
            let held = {
                let mut hold = self.hold.lock();
                hold.purge_expired(now);
                self.persist_hold_changes(&mut hold, out);
                hold.topic_count() > 0
            };
            *self.next_hold_purge.lock() = if held {
                now + Duration::from_secs(1)
            } else {
                now + self.config.sys_interval
            };
        }
        self.publish_sys_if_due(now, out);
    }

    fn fire_session_timer(&self, cell: &Arc<SessionCell>, now: Instant, out: &mut Output) {
        let mut s = cell.lock();
        if s.conn.is_some() {
            return; // the client came back: stale timer
        }
        let mut will = None;
        if matches!(s.pending_will, Some((t, _)) if t <= now) {
            will = s.pending_will.take();
        }
        let expired = matches!(s.expires_at, Some(t) if t <= now);
        if expired {
            // §3.1.2.5: a pending will is sent when the session ends.
            will = will.or_else(|| s.pending_will.take());
            tracing::debug!(client = %s.client_id, "session expired");
        }
        if will.is_some() {
            // Under the session's lock (ordered with its other will ops), before publishing.
            self.persist_will_delete(&s.client_id, out);
        }
        let publisher = s.id;
        drop(s);
        if let Some((_, w)) = will {
            self.publish_will(w, publisher, now, out);
        }
        if expired {
            self.remove_session(cell, out);
        }
    }

    pub(crate) fn schedule(&self, at: Instant, session_id: u64, cell: &Arc<SessionCell>) {
        self.timers
            .lock()
            .insert((at, session_id), Arc::clone(cell));
    }

    /// Removes the timer entries the session scheduled and forgets its
    /// deadlines: a client came back (a new connection cancels a delayed will,
    /// §3.1.3.2.2) or the session ends. Called with the session locked
    /// (lock order: session → timers, as [`schedule`](Self::schedule)).
    /// Returns whether a pending will was dropped (its stored record is the
    /// caller's to delete or replace).
    pub(crate) fn cancel_timers(&self, s: &mut Session) -> bool {
        let will_at = s.pending_will.take().map(|(t, _)| t);
        let expires_at = s.expires_at.take();
        if will_at.is_none() && expires_at.is_none() {
            return false;
        }
        let mut timers = self.timers.lock();
        for at in [will_at, expires_at].into_iter().flatten() {
            timers.remove(&(at, s.id));
        }
        will_at.is_some()
    }

    /// A connection left its session (closed, taken over, or DISCONNECT).
    /// `left.will` is the will to publish (None when deleted by a normal DISCONNECT).
    pub(crate) fn detach_session(
        &self,
        cell: &Arc<SessionCell>,
        conn: ConnRef,
        expiry: u32,
        left: LeftWill,
        now: Instant,
        out: &mut Output,
    ) {
        let LeftWill {
            will,
            stored: will_stored,
        } = left;
        let mut s = cell.lock();
        if s.conn != Some(conn) {
            // Taken over: the new connection owns the session. The will goes out
            // only if it has no delay (§3.1.3.2.2: a new connection within the
            // delay cancels it). Its stored record is the new connection's to
            // replace or delete (it did at its CONNECT): nothing to record here.
            let publisher = s.id;
            drop(s);
            if let Some(w) = will.filter(|w| will_delay(w) == 0) {
                self.publish_will(w, publisher, now, out);
            }
            return;
        }
        s.conn = None;
        s.wake_pending = false;
        s.release_waiters(&mut out.resumes);
        s.drop_qos0();
        let stored = crate::persist::durable_session(&s);
        s.expiry_interval = expiry;
        if stored && expiry == 0 {
            self.persist_session_end(&s, true, out);
        }
        let mut will_now = None;
        match will {
            Some(w) => {
                let delay = will_delay(&w).min(expiry);
                if delay == 0 {
                    if will_stored {
                        self.persist_will_delete(&s.client_id, out);
                    }
                    will_now = Some(w);
                } else {
                    let at = now + Duration::from_secs(u64::from(delay));
                    self.persist_pending_will(&s, &w, at, out);
                    s.pending_will = Some((at, w));
                    self.schedule(at, s.id, cell);
                }
            }
            // Deleted by a normal DISCONNECT (§3.1.2.5).
            None if will_stored => self.persist_will_delete(&s.client_id, out),
            None => {}
        }
        let publisher = s.id;
        if expiry != 0 && expiry != u32::MAX {
            let at = now + Duration::from_secs(u64::from(expiry));
            s.expires_at = Some(at);
            self.schedule(at, s.id, cell);
        }
        if stored && expiry != 0 {
            // With its expiry deadline: a session that expires while the broker is down does
            // not come back.
            self.persist_session(&s, out);
        }
        drop(s);
        if let Some(w) = will_now {
            self.publish_will(w, publisher, now, out);
        }
        if expiry == 0 {
            self.remove_session(cell, out);
        }
    }

    /// Ends a session: out of the registry, its subscriptions out of the tree.
    /// Does nothing if a connection attached to it meanwhile.
    pub(crate) fn remove_session(&self, cell: &Arc<SessionCell>, out: &mut Output) {
        let subscriptions = {
            let mut registry = self.sessions.lock();
            let mut s = cell.lock();
            if s.conn.is_some() {
                return;
            }
            let current = registry
                .get(&s.client_id)
                .is_some_and(|c| Arc::ptr_eq(c, cell));
            if current {
                registry.remove(&s.client_id);
            }
            if self.cancel_timers(&mut s) && current {
                // The paths that end a session here publish its pending will first; should
                // one not, its record must not outlive the session. (Only the current
                // session of its client id: a replaced one's record is its successor's.)
                self.persist_will_delete(&s.client_id, out);
            }
            self.persist_session_end(&s, false, out);
            (s.id, s.end())
        };
        self.unsubscribe_all(subscriptions.0, &subscriptions.1);
    }

    pub(crate) fn unsubscribe_all(&self, session_id: u64, filters: &[String]) {
        if filters.is_empty() {
            return;
        }
        let mut tree = self.topics_write();
        for f in filters {
            let (group, filter) = split_shared(f);
            tree.unsubscribe(filter, group, session_id);
        }
    }
}

/// Topics under `$SYS`, which only the broker publishes (docs/design.md §3).
pub(crate) fn is_sys_topic(topic: &str) -> bool {
    topic == "$SYS" || topic.starts_with("$SYS/")
}

/// `$share/group/filter` → (Some(group), filter); other filters → (None, filter).
pub(crate) fn split_shared(filter: &str) -> (Option<&str>, &str) {
    match topic::parse_shared(filter) {
        Some(Ok((g, f))) => (Some(g), f),
        _ => (None, filter),
    }
}
