//! Wills across a crash (docs/storage.md "Wills"): a broker SIGKILLed while a will is pending,
//! or while its client is connected, publishes it after the restart (once, when due); a will
//! cancelled by a reconnect or deleted by a normal DISCONNECT does not come back.
//!
//! The clients speak MQTT 5 over raw sockets (test-support's `raw`, packets built and read with
//! the broker's codec), so a client's socket can simply be dropped: the abnormal end of a
//! connection, which is what publishes a will.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use musqratt_codec::{
    decode, encode, Connect, Disconnect, Packet, Properties, ProtocolVersion, PubAck, QoS,
    ReasonCode, Will,
};
use musqratt_test_support::raw::{self, subscribe, Raw, Read1, Version};
use musqratt_test_support::{scratch_dir, Broker, WAIT};

const V5: ProtocolVersion = ProtocolVersion::V5;
/// Longer than any will delay below: what "nothing came" waits for.
const QUIET: Duration = Duration::from_secs(4);

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_musqratt"))
}

fn encoded(p: &Packet) -> Vec<u8> {
    let mut b = BytesMut::new();
    encode(p, V5, &mut b).expect("encodes");
    b.to_vec()
}

/// A v5 client with a session of `expiry` seconds and, with `will_delay`, a QoS 1 will
/// `ID is gone` on `will/ID` with that Will Delay Interval.
fn client(port: u16, id: &str, expiry: u32, will_delay: Option<u32>) -> Raw {
    let connect = Connect {
        protocol: V5,
        clean_start: false,
        keep_alive: 60,
        properties: Properties {
            session_expiry_interval: Some(expiry),
            ..Properties::default()
        },
        client_id: id.into(),
        will: will_delay.map(|delay| Will {
            topic: format!("will/{id}"),
            payload: Bytes::from(format!("{id} is gone")),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Properties {
                will_delay_interval: Some(delay),
                ..Properties::default()
            },
        }),
        username: None,
        password: None,
    };
    Raw::connect_bytes(port, Version::V5, &encoded(&Packet::Connect(connect)))
}

/// Once this returns, everything the broker recorded before is durable: a persistent
/// session's CONNACK waits for its record, and the journal reports durable a prefix of
/// its ops.
fn barrier(port: u16, id: &str) {
    let mut c = client(port, id, 300, None);
    c.send(&encoded(&Packet::Disconnect(Disconnect::new(
        ReasonCode::SUCCESS,
    ))));
}

/// The start-up line's `wills=N`.
fn restored_wills(broker: &Broker) -> String {
    assert!(
        broker.wait_for_log("store opened", WAIT),
        "no start-up line"
    );
    let line = broker
        .logs()
        .into_iter()
        .find(|l| l.contains("store opened"))
        .unwrap();
    line.split_whitespace()
        .find(|w| w.starts_with("wills="))
        .unwrap_or_else(|| panic!("no wills= in {line}"))
        .to_string()
}

/// A clean-session subscriber to `will/#` at QoS 1: records each will it receives, with when.
struct Watcher {
    got: Arc<Mutex<Vec<(String, Instant)>>>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
}

impl Watcher {
    fn start(port: u16, id: &str) -> Watcher {
        let mut c = Raw::connect(port, Version::V5, id);
        c.send(&subscribe(Version::V5, 1, "will/#", 1));
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (g, s) = (got.clone(), stop.clone());
        let reader = thread::spawn(move || loop {
            match c.read(Duration::from_millis(100)) {
                Read1::Packet(p) => {
                    let bytes = raw::packet(p.first, &p.body);
                    if let Ok(Some((Packet::Publish(publish), _))) = decode(&bytes, V5, u32::MAX) {
                        let payload = String::from_utf8_lossy(&publish.payload).into_owned();
                        g.lock().unwrap().push((payload, Instant::now()));
                        if let Some(pid) = publish.packet_id {
                            c.send(&encoded(&Packet::PubAck(PubAck::new(pid))));
                        }
                    }
                }
                Read1::Closed => return,
                Read1::TimedOut if s.load(Ordering::Relaxed) => return,
                Read1::TimedOut => {}
            }
        });
        Watcher {
            got,
            stop,
            reader: Some(reader),
        }
    }

    /// The wills received so far, once there are `n` (or after `timeout`).
    fn wait_for(&self, n: usize, timeout: Duration) -> Vec<(String, Instant)> {
        let deadline = Instant::now() + timeout;
        while self.got.lock().unwrap().len() < n && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        self.got.lock().unwrap().clone()
    }

    fn payloads(&self) -> Vec<String> {
        let mut p: Vec<String> = self
            .got
            .lock()
            .unwrap()
            .iter()
            .map(|g| g.0.clone())
            .collect();
        p.sort();
        p
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// Starts the broker on `dir` again: it restores no will, and a subscriber to every will
/// topic receives nothing (`what` says what must not have come back).
fn no_will_after_restart(dir: &Path, what: &str) {
    let broker = Broker::start_with_store(bin(), dir, &[]);
    assert_eq!(restored_wills(&broker), "wills=0");
    let w = Watcher::start(broker.port(), "watcher-after");
    thread::sleep(QUIET);
    assert!(w.payloads().is_empty(), "{what}: {:?}", w.payloads());
}

#[test]
fn a_pending_will_survives_a_crash_and_is_published_once_after_its_delay() {
    let dir = scratch_dir("will-pending");
    let mut broker = Broker::start_with_store(bin(), &dir, &[]);
    let c = client(broker.port(), "dev", 300, Some(2));
    let dropped = Instant::now();
    drop(c); // the socket closes without DISCONNECT: the will is pending for 2 s
    thread::sleep(Duration::from_millis(300));
    barrier(broker.port(), "barrier-1");
    broker.kill();

    let mut broker = Broker::start_with_store(bin(), &dir, &[]);
    assert_eq!(restored_wills(&broker), "wills=1");
    let w = Watcher::start(broker.port(), "watcher-1");
    let got = w.wait_for(1, WAIT + QUIET);
    assert_eq!(got.len(), 1, "the pending will after the restart: {got:?}");
    assert_eq!(got[0].0, "dev is gone");
    // Not before its delay (the deadline is kept in wall-clock time across the restart).
    assert!(
        got[0].1 >= dropped + Duration::from_millis(1900),
        "published {:?} after the socket dropped, before its 2 s delay",
        got[0].1 - dropped
    );
    thread::sleep(QUIET);
    assert_eq!(w.payloads(), ["dev is gone"], "published more than once");
    drop(w);
    barrier(broker.port(), "barrier-2");
    broker.kill();

    // Published before this crash: it does not come back.
    no_will_after_restart(&dir, "published again");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_will_of_a_connection_open_at_the_crash_is_published_after_the_restart() {
    let dir = scratch_dir("will-online");
    let mut broker = Broker::start_with_store(bin(), &dir, &[]);
    let port = broker.port();
    // Connected when the broker dies: a persistent session without and with a will delay, and
    // a clean session (its will is stored too).
    let _live = client(port, "live", 300, Some(0));
    let _slow = client(port, "slow", 300, Some(2));
    let _clean = client(port, "clean", 0, Some(30));
    barrier(port, "barrier-1");
    broker.kill();

    let restarted = Instant::now();
    let mut broker = Broker::start_with_store(bin(), &dir, &[]);
    assert_eq!(restored_wills(&broker), "wills=3");
    // `live` and `clean` were published before anyone could subscribe: held, then delivered to
    // the first subscriber. `slow` waits its delay, counted from the restart.
    let w = Watcher::start(broker.port(), "watcher-1");
    let got = w.wait_for(3, WAIT + QUIET);
    assert_eq!(
        w.payloads(),
        ["clean is gone", "live is gone", "slow is gone"],
        "wills after the restart (received after {:?})",
        got.iter().map(|g| g.1 - restarted).collect::<Vec<_>>()
    );
    let slow = got.iter().find(|g| g.0 == "slow is gone").unwrap();
    assert!(
        slow.1 >= restarted + Duration::from_secs(2),
        "a will delay of 2 s ran out {:?} after the restart",
        slow.1 - restarted
    );
    thread::sleep(Duration::from_secs(1));
    assert_eq!(w.payloads().len(), 3, "published more than once");
    drop(w);
    barrier(broker.port(), "barrier-2");
    broker.kill();

    no_will_after_restart(&dir, "published again");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_will_cancelled_by_a_reconnect_does_not_come_back() {
    let dir = scratch_dir("will-cancelled");
    let mut broker = Broker::start_with_store(bin(), &dir, &[]);
    let port = broker.port();
    drop(client(port, "back", 300, Some(3)));
    thread::sleep(Duration::from_millis(300));
    // Back within the delay (without a will): the pending will is cancelled (§3.1.3.2.2).
    let _back = client(port, "back", 300, None);
    barrier(port, "barrier");
    broker.kill();

    no_will_after_restart(&dir, "a cancelled will came back");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_will_deleted_by_a_normal_disconnect_does_not_come_back() {
    let dir = scratch_dir("will-disconnect");
    let mut broker = Broker::start_with_store(bin(), &dir, &[]);
    let port = broker.port();
    for (id, delay) in [("polite", 0), ("polite-delayed", 2)] {
        let mut c = client(port, id, 300, Some(delay));
        c.send(&encoded(&Packet::Disconnect(Disconnect::new(
            ReasonCode::SUCCESS,
        ))));
        c.expect_closed(WAIT);
    }
    barrier(port, "barrier");
    broker.kill();

    no_will_after_restart(&dir, "a deleted will came back");
    let _ = std::fs::remove_dir_all(&dir);
}

/// SIGTERM, and the broker's exit (its clean stop: connections closed, the store flushed).
fn stop(broker: &mut Broker) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &broker.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM");
    let deadline = Instant::now() + WAIT;
    while broker.is_running() {
        assert!(Instant::now() < deadline, "broker did not stop on SIGTERM");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_clean_stop_keeps_pending_wills_and_publishes_none_of_connected_clients() {
    let dir = scratch_dir("will-stop");
    let mut broker = Broker::start_with_store(bin(), &dir, &[]);
    let port = broker.port();
    drop(client(port, "away", 300, Some(3)));
    let _here = client(port, "here", 300, Some(0));
    thread::sleep(Duration::from_millis(300));
    // A stop is no abnormal end of a connection: the broker sends DISCONNECT 0x8B and, as
    // without a store, does not publish the will of a client it disconnects.
    stop(&mut broker);

    let broker = Broker::start_with_store(bin(), &dir, &[]);
    assert_eq!(restored_wills(&broker), "wills=1");
    let w = Watcher::start(broker.port(), "watcher");
    w.wait_for(1, WAIT + QUIET);
    thread::sleep(Duration::from_secs(1));
    assert_eq!(w.payloads(), ["away is gone"], "wills after a clean stop");
    let _ = std::fs::remove_dir_all(&dir);
}
