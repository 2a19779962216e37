//! The first half of the group commit: the core's ops become one batch of engine changes
//! (records encoded, message references counted, changes to one message or entry folded).
//!
//! Translating on a thread of its own while the previous batch commits was measured and is
//! slower: batches get smaller, fewer messages fold away, and the commit is what bounds the
//! rate (docs/storage.md "Group commit").

use std::collections::HashMap;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender};
use musqratt_core::persist::{Op, Ticket};

use crate::engine::{Change, Table};
use crate::journal::{Cmd, MAX_BATCH_OPS};
use crate::record::{self, StoredEntry, StoredMessage, StoredSession, StoredWill};

/// One commit's changes, with the changes to one message or queue entry folded: one written
/// and deleted in the same batch, which did not exist before it, is not written at all. That
/// is the common case for a subscriber that keeps up: its acknowledgements arrive while the
/// previous commit runs, in the same batch as the messages they acknowledge, so a delivered
/// message costs the disk nothing (docs/storage.md "Group commit").
///
/// Folding is by id (message ids and queue entry ids are unique for the life of the store), so
/// the index costs no allocation per op; other tables are written as they come.
#[derive(Default)]
pub(crate) struct Batch {
    changes: Vec<Option<Change>>,
    /// Per message or queue entry changed in this batch: where its change is, and whether
    /// this batch created it.
    index: HashMap<(Table, u64), (usize, bool), foldhash::fast::RandomState>,
}

impl Batch {
    /// `fold`: the message or entry id, and whether this put creates it (a fresh id).
    fn put(&mut self, t: Table, k: Vec<u8>, v: Vec<u8>, fold: Option<(u64, bool)>) {
        let Some((id, create)) = fold else {
            self.changes.push(Some(Change::Put(t, k, v)));
            return;
        };
        match self.index.get(&(t, id)) {
            Some(&(i, _)) => self.changes[i] = Some(Change::Put(t, k, v)),
            None => {
                self.index.insert((t, id), (self.changes.len(), create));
                self.changes.push(Some(Change::Put(t, k, v)));
            }
        }
    }

    fn delete(&mut self, t: Table, k: Vec<u8>, fold: Option<u64>) {
        let Some(id) = fold else {
            self.changes.push(Some(Change::Delete(t, k)));
            return;
        };
        match self.index.get(&(t, id)).copied() {
            Some((i, true)) => {
                self.changes[i] = None;
                self.index.remove(&(t, id));
            }
            Some((i, false)) => self.changes[i] = Some(Change::Delete(t, k)),
            None => {
                self.index.insert((t, id), (self.changes.len(), false));
                self.changes.push(Some(Change::Delete(t, k)));
            }
        }
    }

    fn delete_prefix(&mut self, t: Table, prefix: Vec<u8>) {
        // Later changes of this table must come after the range delete: forget its slots.
        self.index.retain(|(table, _), _| *table != t);
        self.changes.push(Some(Change::DeletePrefix(t, prefix)));
    }

    pub(crate) fn take(&mut self) -> Vec<Change> {
        self.index.clear();
        self.changes.drain(..).flatten().collect()
    }
}

pub(crate) struct Translator {
    /// Live references (queue entries, retained, held) per stored message.
    refs: HashMap<u64, u32, foldhash::fast::RandomState>,
    /// An `Instant` and the wall-clock time it was: deadlines are stored as the latter.
    clock: (Instant, SystemTime),
}

impl Translator {
    pub(crate) fn new(refs: HashMap<u64, u32>) -> Translator {
        Translator {
            refs: refs.into_iter().collect(),
            clock: (Instant::now(), SystemTime::now()),
        }
    }

    /// Translates `first` and everything queued behind it (up to `MAX_BATCH_OPS`) into
    /// `tickets` and `batch`. Returns the acknowledgement channel of a `Close` met on the way.
    pub(crate) fn take_queued(
        &mut self,
        first: Cmd,
        rx: &Receiver<Cmd>,
        tickets: &mut Vec<Ticket>,
        batch: &mut Batch,
    ) -> Option<Sender<()>> {
        let mut next = Some(first);
        while let Some(cmd) = next.take() {
            match cmd {
                Cmd::Op(t, op) => self.translate((t, op), tickets, batch),
                Cmd::Close(ack) => return Some(ack),
            }
            if tickets.len() < MAX_BATCH_OPS {
                next = rx.try_recv().ok();
            }
        }
        None
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
                changes.delete(Table::Messages, msg.to_be_bytes().to_vec(), Some(msg));
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
                changes.put(Table::Sessions, client.as_bytes().to_vec(), v, None);
            }
            Op::SessionDelete { client, msgs } => {
                changes.delete(Table::Sessions, client.as_bytes().to_vec(), None);
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
                changes.put(
                    Table::Messages,
                    id.to_be_bytes().to_vec(),
                    v,
                    Some((id, true)),
                );
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
                changes.put(
                    Table::Queue,
                    record::name_key(&client, entry),
                    v,
                    Some((entry, true)),
                );
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
                changes.put(
                    Table::Queue,
                    record::name_key(&client, entry),
                    v,
                    Some((entry, false)),
                );
            }
            Op::QueueDelete { client, entry, msg } => {
                changes.delete(Table::Queue, record::name_key(&client, entry), Some(entry));
                self.drop_ref(msg, changes);
            }
            // A packet id can be reused after its PUBREL: not a fresh key, never folded away.
            Op::IncomingQos2Put { client, packet_id } => changes.put(
                Table::IncomingQos2,
                record::name_key(&client, u64::from(packet_id)),
                Vec::new(),
                None,
            ),
            Op::IncomingQos2Delete { client, packet_id } => changes.delete(
                Table::IncomingQos2,
                record::name_key(&client, u64::from(packet_id)),
                None,
            ),
            Op::RetainedPut { topic, msg, old } => {
                self.add_ref(msg);
                changes.put(
                    Table::Retained,
                    topic.into_bytes(),
                    record::encode_ref(msg),
                    None,
                );
                if let Some(old) = old {
                    self.drop_ref(old, changes);
                }
            }
            Op::RetainedDelete { topic, msg } => {
                changes.delete(Table::Retained, topic.into_bytes(), None);
                self.drop_ref(msg, changes);
            }
            Op::HeldPut { topic, entry, msg } => {
                self.add_ref(msg);
                // Hold seqs restart after a restart beyond the recovered ones only: not fresh.
                changes.put(
                    Table::Held,
                    record::name_key(&topic, entry),
                    record::encode_ref(msg),
                    None,
                );
            }
            Op::HeldDelete { topic, entry, msg } => {
                changes.delete(Table::Held, record::name_key(&topic, entry), None);
                self.drop_ref(msg, changes);
            }
            // One record per client id, rewritten whole: not folded (a clean session's will
            // written at CONNECT and deleted at DISCONNECT in one batch costs two B-tree
            // operations, and the delete is what the commit leaves).
            Op::WillPut {
                client,
                will,
                delay,
                fires_at,
            } => {
                let v = record::encode_will(&StoredWill {
                    will: *will,
                    delay,
                    fires_at_ms: fires_at.map_or(0, |t| self.wall_ms(t)),
                });
                changes.put(Table::Wills, client.as_bytes().to_vec(), v, None);
            }
            Op::WillDelete { client } => {
                changes.delete(Table::Wills, client.as_bytes().to_vec(), None);
            }
        }
    }
}
