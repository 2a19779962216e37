//! Wills (§3.1.2.5, §3.1.3.2.2): publishing them, and keeping them in the store so that a
//! broker crash does not lose them (docs/storage.md "Wills").
//!
//! A will belongs to a connection and, once that connection ends abnormally with a Will Delay
//! Interval, to its offline session (`Session::pending_will`). Both can outlive the broker
//! process: a crash ends the connection without DISCONNECT, and MQTT has the will published
//! then (after its delay, which the Session Expiry Interval caps). So the store keeps, per client
//! id, one will record (`Op::WillPut`, overwritten whole):
//!
//! - at CONNECT, the connection's will (any session, see `persist_connect_will`);
//! - when the connection ends abnormally with a delay, the pending will and when it is due;
//! - deleted (`Op::WillDelete`) when the will is published, deleted by a normal DISCONNECT,
//!   cancelled by a new connection, or replaced by a new connection without a will.
//!
//! Every will op of a client is recorded under its session's lock, after CONNECT bound the
//! session (a connection taken over records none), so they reach the journal in the order they
//! happened. A will's delete is recorded before its publication: the publication's durable
//! effects (queue entries, retained, held) are then in the same commit as the delete or a later
//! one, so a restart never publishes a will twice.

use std::sync::Arc;
use std::time::Instant;

use musqratt_codec::Will;

use crate::broker::{is_sys_topic, Broker};
use crate::connection::Output;
use crate::message::Message;
use crate::persist::{durable_session, Op};
use crate::restore::RestoredWill;
use crate::session::Session;

/// The Will Delay Interval (§3.1.3.2.2; 3.1.1 has none: 0).
pub(crate) fn will_delay(w: &Will) -> u32 {
    w.properties.will_delay_interval.unwrap_or(0)
}

/// What a CONNECT found under its client id, for the stored will.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replaced {
    /// No session: no will can be stored under the id.
    Nothing,
    /// A session, online or offline without a pending will: the stored will of the
    /// connection taken over, if it had one, is replaced.
    Session,
    /// An offline session whose pending will this connection cancelled (§3.1.3.2.2).
    PendingWill,
}

/// What a closing connection hands its session about its will.
pub(crate) struct LeftWill {
    /// The will to publish: None if there is none or a normal DISCONNECT deleted it.
    pub will: Option<Box<Will>>,
    /// Whether CONNECT stored the connection's will, so its record must be deleted or become
    /// the pending will.
    pub stored: bool,
}

/// A restored will that was due at start-up.
pub(crate) struct DueWill {
    client: Arc<str>,
    /// Its session's id (for No Local), or one no session has.
    publisher: u64,
    will: Box<Will>,
}

impl Broker {
    pub(crate) fn publish_will(
        &self,
        will: Box<Will>,
        publisher: u64,
        now: Instant,
        out: &mut Output,
    ) {
        let Will {
            topic,
            payload,
            qos,
            retain,
            properties,
        } = *will;
        // Same rule as a client PUBLISH (handle_publish.rs): clients may not
        // inject broker statistics, and a retained will would overwrite the
        // broker's own `$SYS` (e.g. `$SYS/broker/version`) for everyone.
        if is_sys_topic(&topic) {
            tracing::info!(%topic, retain, session = publisher, "will to $SYS not published");
            return;
        }
        let msg = Message::new(
            (topic, payload, qos, retain),
            properties,
            publisher,
            self.config.message_default_expiry_secs,
            now,
        );
        tracing::debug!(topic = %msg.topic, "publishing will");
        self.publish(Arc::new(msg), None, now, out);
    }

    /// At CONNECT, with the session bound to the connection and locked: stores the
    /// connection's will, or deletes the stored will of a connection or pending will this one
    /// replaces. Returns whether a will was stored.
    ///
    /// Wills of every session are stored, not only persistent ones: a clean session's will is
    /// what tells others that a client is gone (often a retained "offline" status), and a crash
    /// must not leave that status "online" forever. For a persistent session the op holds the
    /// CONNACK, which waits for the session's record in the same commit anyway; for a clean
    /// session it is recorded quietly, so its CONNACK never waits for the disk (a crash in the
    /// next millisecond loses that will, as it loses the connection's other unsent state).
    /// Except when it cancels a pending will: a crash must not publish a will whose
    /// cancellation the client saw (its CONNACK); the old persistent session's record or end
    /// mostly holds that CONNACK for the same commit already.
    pub(crate) fn persist_connect_will(
        &self,
        s: &Session,
        will: Option<&Will>,
        replaced: Replaced,
        out: &mut Output,
    ) -> bool {
        if self.journal.is_none() {
            return false;
        }
        let client = Arc::clone(&s.client_id);
        let op = match will.filter(|w| !is_sys_topic(&w.topic)) {
            Some(w) => Op::WillPut {
                client,
                will: Box::new(w.clone()),
                // §3.1.2.5: the will is published at the latest when the session ends.
                delay: will_delay(w).min(s.expiry_interval),
                fires_at: None,
            },
            // A cancelled pending will, or the will of the connection taken over.
            None if replaced != Replaced::Nothing => Op::WillDelete { client },
            None => return false,
        };
        if durable_session(s) || replaced == Replaced::PendingWill {
            self.record(op, out);
        } else {
            self.record_quietly(op);
        }
        matches!(will, Some(w) if !is_sys_topic(&w.topic))
    }

    /// The session's connection ended abnormally with a delayed will: the store keeps it with
    /// its deadline (replacing the connection's record), so a restart still publishes it when
    /// due, and not before. Under the session's lock.
    pub(crate) fn persist_pending_will(
        &self,
        s: &Session,
        will: &Will,
        fires_at: Instant,
        out: &mut Output,
    ) {
        if self.journal.is_none() || !durable_session(s) || is_sys_topic(&will.topic) {
            return;
        }
        let op = Op::WillPut {
            client: Arc::clone(&s.client_id),
            will: Box::new(will.clone()),
            delay: 0,
            fires_at: Some(fires_at),
        };
        self.record(op, out);
    }

    /// The client's stored will is gone (published, deleted, cancelled). Before publishing
    /// it, so that a restart cannot publish it again.
    pub(crate) fn persist_will_delete(&self, client: &Arc<str>, out: &mut Output) {
        if self.journal.is_some() {
            let op = Op::WillDelete {
                client: Arc::clone(client),
            };
            self.record(op, out);
        }
    }

    /// After the sessions are restored: each stored will becomes pending again on its session
    /// (due when its stored deadline or delay says, at the latest when the session expires);
    /// a will that is due already, or whose session did not come back (a clean session's, or
    /// one that expired or was lost while the broker was down: §3.1.2.5, the session ended),
    /// waits for [`publish_restored_wills`](Self::publish_restored_wills).
    pub(crate) fn restore_wills(&mut self, wills: Vec<RestoredWill>, now: Instant) {
        let mut due = Vec::new();
        for rw in wills {
            let cell = self.sessions.get_mut().get(&rw.client).cloned();
            let will = Box::new(rw.will);
            let Some(cell) = cell else {
                due.push(DueWill {
                    client: rw.client,
                    publisher: self.new_session_id(),
                    will,
                });
                continue;
            };
            let mut s = cell.lock();
            let mut at = now + rw.fires_in;
            if let Some(end) = s.expires_at {
                at = at.min(end);
            }
            if at <= now {
                due.push(DueWill {
                    client: rw.client,
                    publisher: s.id,
                    will,
                });
                continue;
            }
            s.pending_will = Some((at, will));
            let id = s.id;
            drop(s);
            self.schedule(at, id, &cell);
        }
        *self.due_wills.get_mut() = due;
    }

    /// Publishes the restored wills that were due at start-up (see `restore_wills`), each
    /// deleted from the store first. Call once, after [`restore`](Self::restore) and
    /// [`attach_journal`](Self::attach_journal), before any connection is served: a client
    /// that connects afterwards finds these wills published, and its own will is not
    /// mistaken for one of them.
    pub fn publish_restored_wills(&self, now: Instant, out: &mut Output) {
        let due = std::mem::take(&mut *self.due_wills.lock());
        for w in due {
            self.persist_will_delete(&w.client, out);
            self.publish_will(w.will, w.publisher, now, out);
        }
    }
}
