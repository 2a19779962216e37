//! Start-up: read every table, check every record, rebuild the core's state
//! (`musqratt_core::restore`), and clean up what cannot be used.
//!
//! Nothing found here stops the broker from starting. A record that does not decode (flipped
//! bytes, a torn write the engine did not catch, a format we do not know) is skipped with a log
//! line naming its table and key, and deleted; so is an entry whose message is missing, and an
//! expired message with its entries. Messages nothing refers to any more are deleted.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use musqratt_core::message::Message;
use musqratt_core::restore::{Restored, RestoredEntry, RestoredSession, RestoredWill};

use crate::engine::{Change, Engine, EngineError, Table};
use crate::record::{self, StoredEntry};

/// What recovery found, for the start-up log line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub sessions: usize,
    pub queued: usize,
    pub retained: usize,
    pub held: usize,
    pub incoming_qos2: usize,
    /// Wills restored (pending again, or published right after start-up).
    pub wills: usize,
    /// Records skipped (and deleted) because they were damaged or dangling.
    pub damaged: usize,
    /// Messages (and their entries) dropped because they expired while the broker was down.
    pub expired: usize,
    /// Sessions that expired while the broker was down (not restored).
    pub expired_sessions: usize,
}

/// The recovered state, the message reference counts for the journal, and the deletes
/// recovery wants committed before anything else.
pub struct Recovered {
    pub restored: Restored,
    pub refs: HashMap<u64, u32>,
    pub cleanup: Vec<Change>,
    pub report: Report,
}

/// A record as scanned: key and value.
type Row = (Vec<u8>, Vec<u8>);

fn key_text(k: &[u8]) -> String {
    String::from_utf8_lossy(k).chars().take(80).collect()
}

pub fn recover(engine: &mut dyn Engine, now: Instant) -> Result<Recovered, EngineError> {
    let wall_now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut report = Report::default();
    let mut cleanup = Vec::new();
    let mut max_id = 0u64;

    let scan = |engine: &mut dyn Engine,
                table: Table,
                report: &mut Report|
     -> Result<Vec<Row>, EngineError> {
        let mut rows = Vec::new();
        engine.scan(
            table,
            &mut |k, v| rows.push((k.to_vec(), v.to_vec())),
            &mut |what| {
                report.damaged += 1;
                tracing::warn!(table = table.name(), "store: damaged data skipped: {what}");
            },
        )?;
        Ok(rows)
    };

    // Messages first: everything else refers to them.
    let mut messages: HashMap<u64, Arc<Message>> = HashMap::new();
    let mut expired: HashSet<u64> = HashSet::new();
    for (k, v) in scan(engine, Table::Messages, &mut report)? {
        let id = match <[u8; 8]>::try_from(k.as_slice()) {
            Ok(b) => u64::from_be_bytes(b),
            Err(_) => {
                report.damaged += 1;
                tracing::warn!("store: message with an invalid key skipped and deleted");
                cleanup.push(Change::Delete(Table::Messages, k));
                continue;
            }
        };
        max_id = max_id.max(id);
        match record::decode_message(&v) {
            Ok(m) if m.expires_at_ms != 0 && m.expires_at_ms <= wall_now => {
                expired.insert(id);
                cleanup.push(Change::Delete(Table::Messages, k));
            }
            Ok(m) => {
                let left = (m.expires_at_ms != 0)
                    .then(|| Duration::from_millis(m.expires_at_ms - wall_now));
                let msg = Message::restored(m.publish, m.publisher, left, id, now);
                messages.insert(id, Arc::new(msg));
            }
            Err(e) => {
                report.damaged += 1;
                tracing::warn!(id, "store: message lost: {e}; record deleted");
                cleanup.push(Change::Delete(Table::Messages, k));
            }
        }
    }
    report.expired = expired.len();

    let mut refs: HashMap<u64, u32> = HashMap::new();
    // A reference to a message: resolved, or the reference is dropped (and deleted).
    let mut resolve =
        |table: Table, k: &[u8], id: u64, report: &mut Report, cleanup: &mut Vec<Change>| {
            if let Some(m) = messages.get(&id) {
                *refs.entry(id).or_insert(0) += 1;
                return Some(Arc::clone(m));
            }
            if !expired.contains(&id) {
                report.damaged += 1;
                tracing::warn!(
                    table = table.name(),
                    key = %key_text(k),
                    "store: entry refers to a lost message; entry deleted"
                );
            }
            cleanup.push(Change::Delete(table, k.to_vec()));
            None
        };

    let mut sessions: BTreeMap<String, RestoredSession> = BTreeMap::new();
    for (k, v) in scan(engine, Table::Sessions, &mut report)? {
        let client = match std::str::from_utf8(&k) {
            Ok(c) => c.to_owned(),
            Err(_) => {
                report.damaged += 1;
                cleanup.push(Change::Delete(Table::Sessions, k));
                continue;
            }
        };
        match record::decode_session(&v) {
            Ok(s) if s.expires_at_ms != 0 && s.expires_at_ms <= wall_now => {
                // Expired while the broker was down: it does not come back.
                report.expired_sessions += 1;
                cleanup.push(Change::Delete(Table::Sessions, k.clone()));
                let prefix = record::name_prefix(&client);
                cleanup.push(Change::DeletePrefix(Table::Queue, prefix.clone()));
                cleanup.push(Change::DeletePrefix(Table::IncomingQos2, prefix));
            }
            Ok(s) => {
                sessions.insert(
                    client.clone(),
                    RestoredSession {
                        client: Arc::from(client.as_str()),
                        expiry_interval: s.expiry_interval,
                        expires_in: (s.expires_at_ms != 0)
                            .then(|| Duration::from_millis(s.expires_at_ms - wall_now)),
                        subscriptions: s.subscriptions,
                        entries: Vec::new(),
                        incoming_qos2: Vec::new(),
                    },
                );
            }
            Err(e) => {
                report.damaged += 1;
                tracing::warn!(client = %key_text(&k), "store: session lost: {e}; record deleted");
                cleanup.push(Change::Delete(Table::Sessions, k.clone()));
                let prefix = record::name_prefix(&client);
                cleanup.push(Change::DeletePrefix(Table::Queue, prefix.clone()));
                cleanup.push(Change::DeletePrefix(Table::IncomingQos2, prefix));
            }
        }
    }

    for (k, v) in scan(engine, Table::Queue, &mut report)? {
        let parsed =
            record::split_name_key(&k).and_then(|(c, n)| Ok((c, n, record::decode_entry(&v)?)));
        let (client, entry, e): (String, u64, StoredEntry) = match parsed {
            Ok(p) => p,
            Err(e) => {
                report.damaged += 1;
                tracing::warn!(key = %key_text(&k), "store: queued message lost: {e}; entry deleted");
                cleanup.push(Change::Delete(Table::Queue, k));
                continue;
            }
        };
        max_id = max_id.max(entry);
        let Some(session) = sessions.get_mut(&client) else {
            cleanup.push(Change::Delete(Table::Queue, k));
            continue;
        };
        let Some(msg) = resolve(Table::Queue, &k, e.msg, &mut report, &mut cleanup) else {
            continue;
        };
        session.entries.push(RestoredEntry {
            entry,
            msg,
            qos: e.qos,
            retain: e.retain,
            sub_ids: e.sub_ids,
            sent: e.sent,
        });
        report.queued += 1;
    }

    for (k, _) in scan(engine, Table::IncomingQos2, &mut report)? {
        match record::split_name_key(&k) {
            Ok((client, pid)) if pid <= u64::from(u16::MAX) && sessions.contains_key(&client) => {
                if let Some(s) = sessions.get_mut(&client) {
                    s.incoming_qos2.push(pid as u16);
                    report.incoming_qos2 += 1;
                }
            }
            _ => cleanup.push(Change::Delete(Table::IncomingQos2, k)),
        }
    }

    let wills = recover_wills(
        scan(engine, Table::Wills, &mut report)?,
        wall_now,
        &mut report,
        &mut cleanup,
    );

    let mut retained = Vec::new();
    for (k, v) in scan(engine, Table::Retained, &mut report)? {
        let Ok(id) = record::decode_ref(&v) else {
            report.damaged += 1;
            tracing::warn!(topic = %key_text(&k), "store: retained message lost: invalid record; deleted");
            cleanup.push(Change::Delete(Table::Retained, k));
            continue;
        };
        if let Some(m) = resolve(Table::Retained, &k, id, &mut report, &mut cleanup) {
            retained.push(m);
        }
    }

    let mut held = Vec::new();
    for (k, v) in scan(engine, Table::Held, &mut report)? {
        let parsed =
            record::split_name_key(&k).and_then(|(_, seq)| Ok((seq, record::decode_ref(&v)?)));
        let Ok((seq, id)) = parsed else {
            report.damaged += 1;
            tracing::warn!(key = %key_text(&k), "store: held message lost: invalid record; deleted");
            cleanup.push(Change::Delete(Table::Held, k));
            continue;
        };
        if let Some(m) = resolve(Table::Held, &k, id, &mut report, &mut cleanup) {
            held.push((seq, m));
        }
    }

    // Messages nothing refers to any more (their last reference went in a torn batch, or
    // they expired): deleted.
    for id in messages.keys() {
        if !refs.contains_key(id) {
            cleanup.push(Change::Delete(Table::Messages, id.to_be_bytes().to_vec()));
        }
    }
    report.sessions = sessions.len();
    report.retained = retained.len();
    report.held = held.len();
    Ok(Recovered {
        restored: Restored {
            sessions: sessions.into_values().collect(),
            wills,
            retained,
            held,
            max_id,
        },
        refs,
        cleanup,
        report,
    })
}

/// The will records: each will is due when its deadline says (a pending will) or its delay
/// after this start (the will of a connection that was open when the broker stopped). Whether
/// its session came back is the core's to check (`Broker::restore`). A will whose time passed
/// is kept: it is published right after start-up, and deleted then.
fn recover_wills(
    rows: Vec<Row>,
    wall_now: u64,
    report: &mut Report,
    cleanup: &mut Vec<Change>,
) -> Vec<RestoredWill> {
    let mut wills = Vec::new();
    for (k, v) in rows {
        let parsed = std::str::from_utf8(&k)
            .map_err(|_| record::Corrupt("will: client id not UTF-8"))
            .and_then(|c| Ok((c, record::decode_will(&v)?)));
        let (client, w) = match parsed {
            Ok(p) => p,
            Err(e) => {
                report.damaged += 1;
                tracing::warn!(client = %key_text(&k), "store: will lost: {e}; record deleted");
                cleanup.push(Change::Delete(Table::Wills, k));
                continue;
            }
        };
        // No will waits longer than the longest Will Delay Interval (a deadline far off is a
        // clock that went back, or a flipped byte the format did not catch).
        let longest = u64::from(u32::MAX) * 1000;
        let fires_in = if w.fires_at_ms != 0 {
            Duration::from_millis(w.fires_at_ms.saturating_sub(wall_now).min(longest))
        } else {
            Duration::from_secs(u64::from(w.delay))
        };
        wills.push(RestoredWill {
            client: Arc::from(client),
            will: w.will,
            fires_in,
        });
    }
    report.wills = wills.len();
    wills
}
