//! Wills in the store (will.rs, docs/storage.md "Wills"): which ops the core records for a
//! will, in which order, and how restored wills come back. The journal here records the ops
//! and replays them into the record per client id that the store would hold.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use musqratt_codec::{
    Connect, Disconnect, Packet, ProtocolVersion, QoS, ReasonCode, SubscriptionOptions,
};
use musqratt_core::persist::{Journal, Op, Ticket};
use musqratt_core::restore::{Restored, RestoredSession, RestoredWill};
use musqratt_core::session::SubscriptionRecord;
use musqratt_core::{Broker, BrokerConfig};

const V5: ProtocolVersion = ProtocolVersion::V5;
const SEC: Duration = Duration::from_secs(1);

/// Every op, in journal order; everything durable at once.
#[derive(Default)]
struct Recorder(Mutex<Vec<Op>>);

impl Journal for Recorder {
    fn record(&self, op: Op) -> Ticket {
        let mut ops = self.0.lock().unwrap();
        ops.push(op);
        ops.len() as Ticket
    }

    fn durable(&self) -> Ticket {
        Ticket::MAX
    }
}

/// A will record as the store would hold it.
#[derive(Debug, Clone, PartialEq)]
struct Record {
    payload: String,
    delay: u32,
    fires_at: Option<Instant>,
}

impl Recorder {
    fn ops(&self) -> Vec<Op> {
        self.0.lock().unwrap().clone()
    }

    /// The will ops only, as text: `put CLIENT PAYLOAD`, `pending CLIENT PAYLOAD`, `delete CLIENT`.
    fn will_ops(&self) -> Vec<String> {
        self.ops()
            .iter()
            .filter_map(|op| match op {
                Op::WillPut {
                    client,
                    will,
                    fires_at,
                    ..
                } => Some(format!(
                    "{} {client} {}",
                    if fires_at.is_some() { "pending" } else { "put" },
                    String::from_utf8_lossy(&will.payload)
                )),
                Op::WillDelete { client } => Some(format!("delete {client}")),
                _ => None,
            })
            .collect()
    }

    /// The will table after every op recorded so far.
    fn table(&self) -> HashMap<String, Record> {
        let mut t = HashMap::new();
        for op in self.ops() {
            match op {
                Op::WillPut {
                    client,
                    will,
                    delay,
                    fires_at,
                } => {
                    let r = Record {
                        payload: String::from_utf8_lossy(&will.payload).into_owned(),
                        delay,
                        fires_at,
                    };
                    t.insert(client.to_string(), r);
                }
                Op::WillDelete { client } => {
                    t.remove(&*client);
                }
                _ => {}
            }
        }
        t
    }

    fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
}

/// A harness whose broker records into a fresh `Recorder`, after restoring `restored`.
fn stored(restored: Restored) -> (Harness, Arc<Recorder>) {
    let now = Instant::now();
    let mut broker = Broker::new(BrokerConfig::default(), now);
    let journal = Arc::new(Recorder::default());
    broker.restore(restored, now);
    broker.attach_journal(journal.clone());
    let h = Harness::with_broker(broker, now);
    (h, journal)
}

/// A v5 CONNECT with a session expiry and a retained QoS 1 will on `will/CLIENT`.
fn client(id: &str, expiry: u32, will_payload: Option<&str>, delay: Option<u32>) -> Connect {
    let mut c = connect(V5, id);
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(expiry);
    c.will = will_payload.map(|p| {
        let mut w = will(&format!("will/{id}"), p, delay);
        w.retain = true;
        w
    });
    c
}

fn watch(h: &mut Harness) -> Id {
    let w = h.connect(V5, "watcher");
    h.subscribe(w, "will/#", QoS::AtLeastOnce);
    w
}

fn disconnect(h: &mut Harness, id: Id, reason: ReasonCode) {
    h.send(id, Packet::Disconnect(Disconnect::new(reason)));
}

#[test]
fn a_wills_record_lives_from_connect_to_a_normal_disconnect() {
    let (mut h, j) = stored(Restored::default());
    let (id, _) = h.connect_with(client("dev", 300, Some("gone"), Some(2)));
    assert_eq!(j.will_ops(), ["put dev gone"]);
    // The will of an open connection: after a crash it is due its delay after the restart.
    assert_eq!(j.table()["dev"].delay, 2);
    assert_eq!(j.table()["dev"].fires_at, None);
    disconnect(&mut h, id, ReasonCode::SUCCESS);
    assert_eq!(j.will_ops(), ["put dev gone", "delete dev"]);
    assert!(j.table().is_empty());

    // The delay is capped by the session expiry (§3.1.2.5), and 0 for a clean session.
    j.clear();
    let (id, _) = h.connect_with(client("short", 1, Some("x"), Some(60)));
    assert_eq!(j.table()["short"].delay, 1);
    disconnect(&mut h, id, ReasonCode::SUCCESS);
    let (id, _) = h.connect_with(client("clean", 0, Some("x"), Some(60)));
    assert_eq!(j.table()["clean"].delay, 0);
    disconnect(&mut h, id, ReasonCode::SUCCESS);
    assert!(j.table().is_empty());

    // A client without a will and no earlier session records nothing about wills.
    j.clear();
    let (id, _) = h.connect_with(client("nowill", 300, None, None));
    disconnect(&mut h, id, ReasonCode::SUCCESS);
    assert!(j.will_ops().is_empty(), "{:?}", j.will_ops());
}

#[test]
fn a_will_published_at_close_is_deleted_before_its_publication() {
    let (mut h, j) = stored(Restored::default());
    let w = watch(&mut h);
    // A clean session: its will is stored too, and published when the socket drops.
    let (id, _) = h.connect_with(client("clean", 0, Some("bye"), None));
    j.clear();
    h.drop_socket(id);
    assert_eq!(payloads(&h.recv(w)), ["bye"]);
    let ops = j.ops();
    let delete = ops
        .iter()
        .position(|o| matches!(o, Op::WillDelete { client } if &**client == "clean"))
        .expect("will deleted");
    let retained = ops
        .iter()
        .position(|o| matches!(o, Op::RetainedPut { topic, .. } if topic == "will/clean"))
        .expect("retained will stored");
    assert!(
        delete < retained,
        "the delete must come first (a restart must not publish it again): {ops:?}"
    );
    assert!(j.table().is_empty());

    // DISCONNECT 0x04 keeps the will: published, and its record deleted too.
    let (id, _) = h.connect_with(client("asked", 300, Some("asked for"), None));
    disconnect(&mut h, id, ReasonCode::DISCONNECT_WITH_WILL_MESSAGE);
    assert_eq!(payloads(&h.recv(w)), ["asked for"]);
    assert!(j.table().is_empty());
}

#[test]
fn a_delayed_will_is_stored_pending_and_deleted_when_published() {
    let (mut h, j) = stored(Restored::default());
    let w = watch(&mut h);
    let (id, _) = h.connect_with(client("dev", 300, Some("late"), Some(5)));
    let closed_at = h.now;
    h.drop_socket(id);
    assert_eq!(j.will_ops(), ["put dev late", "pending dev late"]);
    assert_eq!(j.table()["dev"].fires_at, Some(closed_at + 5 * SEC));
    h.advance(4 * SEC);
    assert!(h.recv(w).is_empty());
    h.advance(SEC);
    assert_eq!(payloads(&h.recv(w)), ["late"]);
    assert_eq!(
        j.will_ops(),
        ["put dev late", "pending dev late", "delete dev"]
    );
    assert!(j.table().is_empty());
}

#[test]
fn a_reconnect_cancels_the_stored_pending_will() {
    let (mut h, j) = stored(Restored::default());
    let w = watch(&mut h);
    let (id, _) = h.connect_with(client("dev", 300, Some("late"), Some(5)));
    h.drop_socket(id);
    h.advance(2 * SEC);
    // Back without a will: the pending will's record goes.
    let (id, _) = h.connect_with(client("dev", 300, None, None));
    assert!(j.table().is_empty(), "{:?}", j.table());
    h.drop_socket(id);
    // Back with a new will: it replaces the pending one.
    let (id, _) = h.connect_with(client("dev", 300, Some("late"), Some(5)));
    h.drop_socket(id);
    h.advance(SEC);
    let (_id, _) = h.connect_with(client("dev", 300, Some("newer"), Some(5)));
    let t = j.table();
    assert_eq!(t["dev"].payload, "newer");
    assert_eq!(t["dev"].fires_at, None);
    h.advance(10 * SEC);
    assert!(h.recv(w).is_empty(), "a cancelled will was published");
}

#[test]
fn a_taken_over_connection_leaves_the_new_connections_will() {
    let (mut h, j) = stored(Restored::default());
    let w = watch(&mut h);
    let (_a, _) = h.connect_with(client("dev", 300, Some("first"), None));
    let (b, _) = h.connect_with(client("dev", 300, Some("second"), Some(5)));
    // The old connection's will (no delay) goes out when it is taken over (§3.1.4); its
    // record was replaced by the new connection's at CONNECT and stays that.
    assert_eq!(payloads(&h.recv(w)), ["first"]);
    assert_eq!(j.table()["dev"].payload, "second");
    // Taken over by a connection without a will: nothing stays.
    let (c, _) = h.connect_with(client("dev", 300, None, None));
    assert!(j.table().is_empty(), "{:?}", j.table());
    assert!(h.is_closed(b));
    disconnect(&mut h, c, ReasonCode::SUCCESS);
    h.advance(10 * SEC);
    assert!(h.recv(w).is_empty());
}

#[test]
fn a_session_that_expires_publishes_and_deletes_its_pending_will() {
    let (mut h, j) = stored(Restored::default());
    let w = watch(&mut h);
    // The delay exceeds the expiry: due when the session ends (§3.1.2.5).
    let (id, _) = h.connect_with(client("dev", 3, Some("ended"), Some(60)));
    h.drop_socket(id);
    assert_eq!(j.table()["dev"].fires_at, Some(h.now + 3 * SEC));
    h.advance(3 * SEC);
    assert_eq!(payloads(&h.recv(w)), ["ended"]);
    assert!(j.table().is_empty());
}

fn session(client: &str, expiry: u32, expires_in: Option<Duration>) -> RestoredSession {
    RestoredSession {
        client: client.into(),
        expiry_interval: expiry,
        expires_in,
        subscriptions: Vec::new(),
        entries: Vec::new(),
        incoming_qos2: Vec::new(),
    }
}

fn restored_will(client: &str, payload: &str, fires_in: Duration) -> RestoredWill {
    let mut w = will(&format!("will/{client}"), payload, None);
    w.retain = true;
    RestoredWill {
        client: client.into(),
        will: w,
        fires_in,
    }
}

#[test]
fn restored_wills_are_pending_again_or_published_at_start() {
    let mut watcher = session("watcher", 300, Some(300 * SEC));
    watcher.subscriptions.push((
        "will/#".into(),
        SubscriptionRecord {
            options: SubscriptionOptions::new(QoS::AtLeastOnce),
            sub_id: None,
        },
    ));
    let restored = Restored {
        sessions: vec![
            watcher,
            session("pending", 300, Some(300 * SEC)),
            session("capped", 300, Some(2 * SEC)),
            session("overdue", 300, Some(300 * SEC)),
            session("back", 300, Some(300 * SEC)),
        ],
        wills: vec![
            restored_will("pending", "pending", 3 * SEC),
            // Its session ends before its delay: due then.
            restored_will("capped", "capped", 100 * SEC),
            restored_will("overdue", "overdue", Duration::ZERO),
            // A clean session's (no session came back): due now whatever its delay.
            restored_will("clean", "clean", 10 * SEC),
            restored_will("back", "cancelled", 3 * SEC),
        ],
        ..Restored::default()
    };
    let (mut h, j) = stored(restored);

    let mut out = musqratt_core::Output::new();
    h.broker.publish_restored_wills(h.now, &mut out);
    let mut deleted = j.will_ops();
    deleted.sort();
    assert_eq!(deleted, ["delete clean", "delete overdue"]);
    // Published to the offline subscriber's session (queued) and retained.
    let mut c = connect(V5, "watcher");
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(300);
    let (w, got) = h.connect_with(c);
    let mut got = payloads(&got);
    got.sort();
    assert_eq!(got, ["clean", "overdue"]);
    let retained = h.subscribe(w, "will/clean", QoS::AtMostOnce);
    assert_eq!(payloads(&retained), ["clean"]);

    // A reconnect within the delay cancels a restored will, and deletes its record.
    j.clear();
    let (_back, _) = h.connect_with(client("back", 300, None, None));
    assert_eq!(j.will_ops(), ["delete back"]);

    h.advance(2 * SEC);
    assert_eq!(payloads(&h.recv(w)), ["capped"]);
    h.advance(SEC);
    assert_eq!(payloads(&h.recv(w)), ["pending"]);
    h.advance(10 * SEC);
    assert!(h.recv(w).is_empty());
    let mut deleted = j.will_ops();
    deleted.sort();
    assert_eq!(deleted, ["delete back", "delete capped", "delete pending"]);
    // Nothing left to publish a second time.
    h.broker.publish_restored_wills(h.now, &mut out);
    assert!(h.recv(w).is_empty());
}

#[test]
fn which_connacks_wait_for_the_will_record() {
    let (mut h, j) = stored(Restored::default());
    // A clean session's will: stored, and its CONNACK waits for nothing.
    let (id, _) = h.connect_with(client("clean", 0, Some("x"), None));
    assert_eq!(j.will_ops(), ["put clean x"]);
    assert_eq!(h.last_durable_after, 0, "a clean session's CONNACK held");
    disconnect(&mut h, id, ReasonCode::SUCCESS);

    // A persistent session's: its CONNACK waits for the will with the session's record.
    j.clear();
    let (id, _) = h.connect_with(client("dev", 300, Some("late"), Some(5)));
    assert_eq!(h.last_durable_after, j.ops().len() as u64);
    h.drop_socket(id);

    // A clean reconnect that cancels the pending will: its CONNACK waits for the delete.
    j.clear();
    let (_id, _) = h.connect_with(client("dev", 0, None, None));
    let ops = j.ops();
    let delete = ops
        .iter()
        .position(|o| matches!(o, Op::WillDelete { .. }))
        .expect("pending will deleted") as u64
        + 1;
    assert!(
        h.last_durable_after >= delete,
        "CONNACK not held for the cancelled will's delete: {} < {delete}",
        h.last_durable_after
    );
}
