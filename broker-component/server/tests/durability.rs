//! Durability (issue 13, docs/storage.md): what the broker acknowledged survives its crash.
//!
//! The clients here speak MQTT by hand (test-support's `raw`), so the test sees every packet
//! id and acknowledgement, and implements the receiver's side of QoS 2 exactly as the spec
//! asks (a packet id is delivered once until its PUBREL, whatever arrives again with it).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use musqratt_test_support::hostile::{ack, publish, publish_packet_id};
use musqratt_test_support::raw::{self, connect_with, subscribe, Raw, Read1, Version};
use musqratt_test_support::{
    broker_bin, mosquitto_pub, run_with_timeout, scratch_dir, Broker, Sub, WAIT,
};

const V: Version = Version::V311;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_musqratt"))
}
const KILLS: usize = 20;

/// What a subscriber received, across all its connections (its side of the session).
#[derive(Default)]
struct Received {
    /// Times each message number was delivered to the application.
    count: HashMap<u64, u32>,
    /// QoS 2 packet ids received (PUBREC sent) and not yet released by PUBREL.
    unreleased: HashSet<u16>,
}

fn number(payload: &[u8]) -> Option<u64> {
    std::str::from_utf8(payload).ok()?.parse().ok()
}

/// The payload of a 3.1.1 PUBLISH body with a packet id.
fn payload(body: &[u8]) -> &[u8] {
    let tlen = usize::from(u16::from_be_bytes([body[0], body[1]]));
    &body[2 + tlen + 2..]
}

/// One connection of a persistent-session subscriber: connects (clean session off), subscribes
/// on its first connection, then acknowledges and records deliveries until the broker goes
/// away or `stop` is set.
fn subscriber(
    port: u16,
    id: &'static str,
    filter: &'static str,
    qos: u8,
    first: bool,
    got: Arc<Mutex<Received>>,
    stop: Arc<AtomicBool>,
) -> JoinHandle<()> {
    let mut c = Raw::connect_bytes(port, V, &connect_with(V, id, 60, false));
    if first {
        c.send(&subscribe(V, 1, filter, qos));
    }
    thread::spawn(move || loop {
        match c.read(Duration::from_millis(100)) {
            Read1::Packet(p) if p.kind() == 3 => {
                let pid = publish_packet_id(&p.body).expect("QoS > 0 PUBLISH has a packet id");
                let n = number(payload(&p.body)).expect("numbered payload");
                let mut g = got.lock().unwrap();
                match (p.first >> 1) & 3 {
                    1 => {
                        *g.count.entry(n).or_default() += 1;
                        drop(g);
                        c.send(&ack(0x40, pid));
                    }
                    2 => {
                        if g.unreleased.insert(pid) {
                            *g.count.entry(n).or_default() += 1;
                        }
                        drop(g);
                        c.send(&ack(0x50, pid));
                    }
                    q => panic!("{id}: delivery at QoS {q}"),
                }
            }
            Read1::Packet(p) if p.kind() == 6 => {
                let pid = u16::from_be_bytes([p.body[0], p.body[1]]);
                got.lock().unwrap().unreleased.remove(&pid);
                c.send(&ack(0x70, pid));
            }
            Read1::Packet(_) => {}
            Read1::Closed => return,
            Read1::TimedOut if stop.load(Ordering::Relaxed) => return,
            Read1::TimedOut => {}
        }
    })
}

/// Publishes numbered messages, alternately QoS 1 to `crash/q1` and QoS 2 to `crash/q2`, each
/// waited for: the number goes into `acked` once the broker's PUBACK or PUBREC arrives.
fn publisher(
    port: u16,
    next: Arc<Mutex<u64>>,
    acked: Arc<Mutex<(Vec<u64>, Vec<u64>)>>,
) -> JoinHandle<()> {
    let mut c = Raw::connect_bytes(port, V, &connect_with(V, "crash-pub", 60, true));
    thread::spawn(move || loop {
        let n = {
            let mut next = next.lock().unwrap();
            *next += 1;
            *next
        };
        let qos = if n % 2 == 1 { 1 } else { 2 };
        let topic: &[u8] = if qos == 1 { b"crash/q1" } else { b"crash/q2" };
        let pid = (n % 65_535) as u16 + 1;
        c.send(&publish(V, topic, n.to_string().as_bytes(), qos, pid));
        let want = if qos == 1 { 4 } else { 5 };
        match c.read(WAIT) {
            Read1::Packet(p) if p.kind() == want => {}
            _ => return, // the broker was killed: this message is not acknowledged
        }
        {
            let mut a = acked.lock().unwrap();
            if qos == 1 { &mut a.0 } else { &mut a.1 }.push(n);
        }
        if qos == 2 {
            c.send(&ack(0x62, pid));
            match c.read(WAIT) {
                Read1::Packet(p) if p.kind() == 7 => {}
                _ => return,
            }
        }
    })
}

/// A small xorshift: the kill moments, reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn sigkill_at_random_moments_loses_no_acknowledged_message() {
    let dir = scratch_dir("durability-crash");
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        | 1;
    let mut rng = Rng(seed);
    let q1 = Arc::new(Mutex::new(Received::default()));
    let q2 = Arc::new(Mutex::new(Received::default()));
    let next = Arc::new(Mutex::new(0u64));
    let acked = Arc::new(Mutex::new((Vec::new(), Vec::new())));
    let stop = Arc::new(AtomicBool::new(false));

    for round in 0..=KILLS {
        let mut broker = Broker::start_with_store(bin(), &dir, &[]);
        let port = broker.port();
        let first = round == 0;
        let subs = [
            subscriber(
                port,
                "crash-s1",
                "crash/q1",
                1,
                first,
                q1.clone(),
                stop.clone(),
            ),
            subscriber(
                port,
                "crash-s2",
                "crash/q2",
                2,
                first,
                q2.clone(),
                stop.clone(),
            ),
        ];
        if first {
            // The SUBACKs are read by the subscriber threads: let them land first.
            thread::sleep(Duration::from_millis(300));
        }
        if round == KILLS {
            // The last start: no more publishing, every subscriber drains its session.
            let quiet_since =
                |r: &Arc<Mutex<Received>>| r.lock().unwrap().count.values().sum::<u32>();
            let mut last = (quiet_since(&q1), quiet_since(&q2));
            let mut still = Instant::now();
            while still.elapsed() < Duration::from_secs(2) {
                thread::sleep(Duration::from_millis(200));
                let now = (quiet_since(&q1), quiet_since(&q2));
                if now != last {
                    last = now;
                    still = Instant::now();
                }
            }
            stop.store(true, Ordering::Relaxed);
            for s in subs {
                s.join().unwrap();
            }
            break;
        }
        let p = publisher(port, next.clone(), acked.clone());
        thread::sleep(Duration::from_millis(100 + rng.below(600)));
        broker.kill();
        p.join().unwrap();
        for s in subs {
            s.join().unwrap();
        }
    }

    let (acked1, acked2) = acked.lock().unwrap().clone();
    let (got1, got2) = (q1.lock().unwrap(), q2.lock().unwrap());
    let lost1: Vec<u64> = acked1
        .iter()
        .copied()
        .filter(|n| !got1.count.contains_key(n))
        .collect();
    let lost2: Vec<u64> = acked2
        .iter()
        .copied()
        .filter(|n| !got2.count.contains_key(n))
        .collect();
    let dup2: Vec<(u64, u32)> = got2
        .count
        .iter()
        .filter(|(_, &c)| c > 1)
        .map(|(&n, &c)| (n, c))
        .collect();
    let dup1 = got1.count.values().filter(|&&c| c > 1).count();
    println!(
        "durability (seed {seed:#x}): {KILLS} SIGKILLs; QoS 1: {} acknowledged, {} delivered ({dup1} more than once, allowed); \
         QoS 2: {} acknowledged, {} delivered, {} more than once",
        acked1.len(),
        got1.count.len(),
        acked2.len(),
        got2.count.len(),
        dup2.len()
    );
    assert!(
        acked1.len() > KILLS && acked2.len() > KILLS,
        "too few messages acknowledged to mean anything"
    );
    assert!(
        lost1.is_empty(),
        "acknowledged QoS 1 messages lost: {lost1:?}"
    );
    assert!(
        lost2.is_empty(),
        "acknowledged QoS 2 messages lost: {lost2:?}"
    );
    assert!(
        dup2.is_empty(),
        "QoS 2 messages delivered more than once: {dup2:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn retained_held_and_sessions_survive_a_restart_and_expired_ones_do_not() {
    let dir = scratch_dir("durability-restart");
    let mut broker = Broker::start_with_store(bin(), &dir, &[]);
    let port = broker.port();
    // A persistent session (v5, one hour) with a subscription; one that expires in a second.
    let s = Sub::start(
        port,
        &[
            "-V", "5", "-c", "-i", "keeper", "-x", "3600", "-q", "1", "-t", "keep/#",
        ],
    );
    let short = Sub::start(
        port,
        &[
            "-V",
            "5",
            "-c",
            "-i",
            "shortlived",
            "-x",
            "1",
            "-q",
            "1",
            "-t",
            "short/#",
        ],
    );
    drop(s);
    drop(short);
    thread::sleep(Duration::from_millis(500));
    for args in [
        &["-t", "ret/a", "-m", "kept", "-r", "-q", "1"][..],
        &[
            "-V",
            "5",
            "-t",
            "ret/b",
            "-m",
            "gone",
            "-r",
            "-q",
            "1",
            "-D",
            "publish",
            "message-expiry-interval",
            "1",
        ][..],
        &["-t", "held/a", "-m", "held-kept", "-q", "1"][..],
        &["-t", "keep/x", "-m", "queued-kept", "-q", "1"][..],
        &["-t", "short/x", "-m", "queued-gone", "-q", "1"][..],
    ] {
        mosquitto_pub(port, args);
    }
    broker.kill();
    thread::sleep(Duration::from_millis(1500)); // the 1 s expiries run out while it is down

    let broker = Broker::start_with_store(bin(), &dir, &[]);
    let port = broker.port();
    assert!(broker.wait_for_log("store opened", WAIT));
    let line = broker
        .logs()
        .into_iter()
        .find(|l| l.contains("store opened"))
        .unwrap();
    assert!(line.contains("expired_sessions=1"), "{line}");

    let r = Sub::start(port, &["-t", "ret/#", "-W", "2"]);
    let got: Vec<String> = r
        .wait_messages(2, Duration::from_secs(2))
        .iter()
        .map(|m| format!("{} {}", m.topic, m.payload))
        .collect();
    assert_eq!(
        got,
        vec!["ret/a kept".to_string()],
        "retained after restart"
    );
    let h = Sub::start(port, &["-t", "held/#", "-q", "1", "-C", "1", "-W", "3"]);
    let got: Vec<String> = h
        .wait_messages(1, WAIT)
        .iter()
        .map(|m| format!("{} {}", m.topic, m.payload))
        .collect();
    assert_eq!(
        got,
        vec!["held/a held-kept".to_string()],
        "held after restart"
    );
    // Session present: the queued message may come before the SUBACK (spawn, not start).
    let k = Sub::spawn(
        port,
        &[
            "-V", "5", "-c", "-i", "keeper", "-x", "3600", "-q", "1", "-t", "keep/#", "-C", "1",
            "-W", "3",
        ],
    );
    let got: Vec<String> = k
        .wait_messages(1, WAIT)
        .iter()
        .map(|m| format!("{} {}", m.topic, m.payload))
        .collect();
    assert_eq!(
        got,
        vec!["keep/x queued-kept".to_string()],
        "queued message of the persistent session"
    );
    // The expired session is gone: reconnecting finds no session and no queued message.
    let g = Sub::start(
        port,
        &[
            "-V",
            "5",
            "-c",
            "-i",
            "shortlived",
            "-x",
            "1",
            "-q",
            "1",
            "-t",
            "short/#",
            "-W",
            "1",
        ],
    );
    assert!(
        g.wait_messages(1, Duration::from_millis(1500)).is_empty(),
        "expired session came back"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_second_broker_on_the_same_directory_is_refused() {
    let dir = scratch_dir("durability-lock");
    let _first = Broker::start_with_store(bin(), &dir, &[]);
    // With a timeout: a second broker that did start must not hang the test.
    let out = run_with_timeout(
        std::process::Command::new(broker_bin(Some(bin())))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&dir),
        WAIT,
    );
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "second broker started: {text}");
    assert!(text.contains("in use by another broker"), "{text}");
}

/// Damages the store file of a stopped broker in `how`, restarts it, and checks that it starts,
/// says what was lost, and serves.
fn damaged_store_still_starts(how: &str, damage: impl FnOnce(&Path)) {
    let dir = scratch_dir(&format!("durability-damage-{how}"));
    let mut broker = Broker::start_with_store(bin(), &dir, &[]);
    for i in 0..50 {
        let topic = format!("dmg/{i}");
        mosquitto_pub(
            broker.port(),
            &["-t", &topic, "-m", "retained payload", "-r", "-q", "1"],
        );
    }
    broker.kill();
    damage(&dir.join("musqratt.redb"));
    let broker = Broker::start_with_store(bin(), &dir, &[]);
    let logs = broker.logs().join("\n");
    assert!(
        logs.contains("cannot be opened")
            || logs.contains("damaged data skipped")
            || logs.contains("lost"),
        "{how}: no log line about the damage:\n{logs}"
    );
    // It serves: a retained message set now comes back.
    mosquitto_pub(
        broker.port(),
        &["-t", "after/damage", "-m", "ok", "-r", "-q", "1"],
    );
    let s = Sub::start(broker.port(), &["-t", "after/damage", "-C", "1", "-W", "3"]);
    assert_eq!(
        s.wait_messages(1, WAIT).len(),
        1,
        "{how}: broker does not serve after damage"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_store_with_flipped_bytes_still_lets_the_broker_start() {
    damaged_store_still_starts("flipped", |file| {
        let mut bytes = std::fs::read(file).expect("read store");
        // Every page: 64 bytes inverted past its start.
        for page in (4096..bytes.len()).step_by(4096) {
            for b in bytes.iter_mut().skip(page + 100).take(64) {
                *b ^= 0xff;
            }
        }
        std::fs::write(file, bytes).expect("write store");
    });
}

#[test]
fn a_truncated_store_still_lets_the_broker_start() {
    damaged_store_still_starts("truncated", |file| {
        let len = std::fs::metadata(file).expect("store").len();
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(file)
            .expect("open store");
        f.set_len(len / 2).expect("truncate store");
    });
}

/// Unmounts the test's tmpfs even when the test fails.
struct Tmpfs(std::path::PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_full_disk_refuses_the_acknowledgement_and_the_broker_goes_on() {
    full_disk(V);
}

/// A v5 publisher also hears why: DISCONNECT 0x97 (Quota exceeded) instead of its PUBACK.
#[test]
fn a_full_disk_tells_a_v5_publisher_quota_exceeded() {
    full_disk(Version::V5);
}

fn full_disk(v: Version) {
    if !std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"))
    {
        eprintln!("SKIP: mounting a small tmpfs needs root");
        return;
    }
    let dir = scratch_dir(if v == V {
        "durability-full"
    } else {
        "durability-full-v5"
    });
    std::fs::create_dir_all(&dir).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(&dir)
        .status()
        .expect("run mount");
    assert!(mounted.success(), "mount tmpfs on {}", dir.display());
    let _guard = Tmpfs(dir.clone());
    let broker = Broker::start_with_store(bin(), &dir.join("data"), &[]);
    let port = broker.port();
    // A persistent-session subscriber that never reads: every message stays queued, on disk.
    let _sub = {
        let mut c = Raw::connect_bytes(port, v, &raw::persistent_connect(v, "full-sub"));
        c.send(&subscribe(v, 1, "full/#", 1));
        let p = c.expect_packet(WAIT);
        assert_eq!(p.kind(), 9, "SUBACK");
        c
    };
    let mut p = Raw::connect_bytes(port, v, &connect_with(v, "full-pub", 60, true));
    let payload = vec![b'x'; 60_000];
    let mut acked = 0;
    let mut refused = false;
    for i in 1..=200u16 {
        p.send(&publish(v, b"full/t", &payload, 1, i));
        match p.read(WAIT) {
            Read1::Packet(a) if a.kind() == 4 => acked += 1,
            Read1::Closed if v == V => {
                refused = true;
                break;
            }
            Read1::Packet(d) if v != V && d.kind() == 14 => {
                assert_eq!(d.body.first(), Some(&0x97), "DISCONNECT reason: {d:?}");
                assert!(
                    matches!(p.read(WAIT), Read1::Closed),
                    "closed after DISCONNECT"
                );
                refused = true;
                break;
            }
            other => panic!("message {i}: expected PUBACK or a close, got {other:?}"),
        }
    }
    assert!(
        refused,
        "2 MB held {acked} messages of 60 kB without a refusal"
    );
    assert!(acked > 0, "nothing was acknowledged before the disk filled");
    assert!(
        broker.wait_for_log("commit failed", WAIT),
        "no log line for the failed commit"
    );
    // The broker goes on: a QoS 0 round trip on other clients still works.
    let s = Sub::start(port, &["-t", "alive/#", "-C", "1", "-W", "3"]);
    mosquitto_pub(port, &["-t", "alive/x", "-m", "ok"]);
    assert_eq!(
        s.wait_messages(1, WAIT).len(),
        1,
        "broker does not serve after a full disk"
    );
    println!("full disk: {acked} messages of 60 kB acknowledged before the refusal");
}
