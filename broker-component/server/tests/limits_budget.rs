//! Issue 13, limits: a subscriber that never reads is flooded until the broker-wide budgets
//! hit. The broker's RSS stays under `limits.max_memory_mb`, v5 publishers get 0x97 Quota
//! exceeded on PUBACK, the refusals are counted and logged once per interval, and the broker
//! goes on serving. The same for the store's `storage.max_disk_mb`.

use std::path::Path;
use std::time::Duration;

use musqratt_test_support::raw::{self, Raw, Read1, Version};
use musqratt_test_support::{hostile, scratch_dir, Broker, WAIT};

const V5: Version = Version::V5;
const PAYLOAD: usize = 64 * 1024;

fn config(tag: &str, conf: &str) -> String {
    let path = scratch_dir(tag).join("musqratt.toml");
    std::fs::write(&path, conf).expect("write config");
    path.to_str().unwrap().to_string()
}

/// A v5 PUBACK's reason code (absent = 0x00 Success).
fn puback_code(p: &raw::Packet) -> u8 {
    p.body.get(2).copied().unwrap_or(0)
}

/// Publishes QoS 1 messages of `PAYLOAD` bytes to `topic`, `window` at a time (within the
/// broker's Receive Maximum), until `stop` says so or `max` were sent. Returns the PUBACK
/// reason codes in order; `each` runs after every window.
fn flood(
    p: &mut Raw,
    topic: &[u8],
    window: u16,
    max: u16,
    mut each: impl FnMut(&[u8]),
    stop: impl Fn(&[u8]) -> bool,
) -> Vec<u8> {
    let payload = vec![b'f'; PAYLOAD];
    let mut codes = Vec::new();
    let mut id = 1u16;
    while id <= max && !stop(&codes) {
        let last = (id + window - 1).min(max);
        for i in id..=last {
            p.send(&hostile::publish(V5, topic, &payload, 1, i));
        }
        for _ in id..=last {
            match p.read(WAIT) {
                Read1::Packet(a) if a.kind() == 4 => codes.push(puback_code(&a)),
                other => panic!("expected PUBACK, got {other:?}"),
            }
        }
        each(&codes);
        id = last + 1;
    }
    codes
}

fn rss_mib(b: &Broker) -> u64 {
    hostile::rss_kib(b.pid()) / 1024
}

#[test]
fn memory_cap_bounds_rss_and_refuses_with_quota_exceeded() {
    const CAP_MB: u64 = 64;
    let conf = config(
        "limits-memory",
        "[limits]\nmax_memory_mb = 64\nmax_queued_messages = 0\nmax_publisher_pause_ms = 0\n\
         max_inflight = 4\n",
    );
    let mut b = Broker::start_with_args(&["--workers", "2", "-c", &conf]);
    let port = b.port();
    assert!(b.wait_for_log("memory cap", WAIT), "the budget is logged");
    // A subscriber at QoS 1 that never reads anything after its SUBACK.
    let mut sub = Raw::connect(port, V5, "never-reads");
    sub.send(&raw::subscribe(V5, 1, "flood/#", 1));
    hostile::expect_packet_kind(&mut sub, 9, "SUBACK");

    let mut p = Raw::connect(port, V5, "flooder");
    let mut peak = 0;
    // 3,000 x 64 KiB = 188 MiB offered, three times the cap; stop 200 after the first refusal.
    let codes = flood(
        &mut p,
        b"flood/a",
        4,
        3000,
        |_| peak = peak.max(rss_mib(&b)),
        |c| c.iter().filter(|&&x| x == 0x97).count() >= 200,
    );
    let accepted = codes.iter().filter(|&&c| c == 0).count();
    let refused = codes.iter().filter(|&&c| c == 0x97).count();
    println!(
        "memory cap {CAP_MB} MiB: {} published, {accepted} accepted, {refused} refused (0x97), peak RSS {peak} MiB",
        codes.len()
    );
    assert!(
        refused >= 200,
        "v5 publisher gets 0x97 at the cap: {codes:?}"
    );
    assert!(
        codes.iter().all(|&c| c == 0 || c == 0x97),
        "only Success and Quota exceeded: {codes:?}"
    );
    assert!(
        accepted > 100,
        "the budget takes messages before it is full"
    );
    assert!(
        peak < CAP_MB,
        "broker RSS {peak} MiB under max_memory_mb = {CAP_MB}"
    );
    assert!(
        b.wait_for_log("limits.max_memory_mb reached", WAIT),
        "one log line for the refusals"
    );
    let lines = b
        .logs()
        .iter()
        .filter(|l| l.contains("limits.max_memory_mb reached"))
        .count();
    assert!(
        lines <= 2,
        "logged once per interval, not per message: {lines} lines"
    );
    // Counted in $SYS.
    let sys = musqratt_test_support::mosquitto_sub(
        port,
        // The retained value first (maybe from before the flood), then the next report.
        &[
            "-t",
            "$SYS/broker/messages/refused/memory",
            "-C",
            "2",
            "-W",
            "25",
        ],
        Duration::from_secs(30),
    );
    let n: u64 = sys
        .iter()
        .filter_map(|m| m.payload.trim().parse().ok())
        .max()
        .unwrap_or(0);
    assert!(
        n >= refused as u64,
        "$SYS counts {n} refusals, publisher saw {refused}"
    );
    // The subscriber reads again: what it was sent arrives, and room comes back.
    let (topic, _) = sub.expect_publish(WAIT);
    assert_eq!(topic, b"flood/a");
    drop(sub);
    hostile::survives(&mut b, 2, "memory cap flood");
}

#[test]
fn disk_budget_refuses_with_quota_exceeded_and_recovers() {
    let dir = scratch_dir("limits-disk").join("data");
    let conf = config(
        "limits-disk",
        "[storage]\nmax_disk_mb = 8\n[limits]\nmax_queued_messages = 0\n\
         max_publisher_pause_ms = 0\nmax_inflight = 4\n",
    );
    let mut b = Broker::start_with_store(
        Path::new(env!("CARGO_BIN_EXE_musqratt")),
        &dir,
        &["--workers", "2", "-c", &conf],
    );
    let port = b.port();
    // A persistent v5 session (expiry 1 h) subscribed at QoS 1, then gone: its queue is stored.
    let mut sub = Raw::tcp(port, V5);
    sub.send(&raw::persistent_connect(V5, "offline-sub"));
    hostile::expect_packet_kind(&mut sub, 2, "CONNACK");
    sub.send(&raw::subscribe(V5, 1, "disk/#", 1));
    hostile::expect_packet_kind(&mut sub, 9, "SUBACK");
    drop(sub);
    std::thread::sleep(Duration::from_millis(200));

    let mut p = Raw::connect(port, V5, "disk-flooder");
    // 8 MiB of budget: 64 KiB messages refused after at most 128 (plus the one window in
    // flight when the store noticed); redb holds a changed page twice until the next commit,
    // so from about 64 on.
    let codes = flood(
        &mut p,
        b"disk/a",
        4,
        1000,
        |_| {},
        |c| c.iter().filter(|&&x| x == 0x97).count() >= 20,
    );
    let accepted = codes.iter().filter(|&&c| c == 0).count();
    let refused = codes.iter().filter(|&&c| c == 0x97).count();
    println!("disk budget 8 MiB: {accepted} accepted, {refused} refused (0x97)");
    assert!(refused >= 20, "0x97 at the disk budget: {codes:?}");
    assert!(
        (40..=132).contains(&accepted),
        "{accepted} messages of 64 KiB fill 8 MiB"
    );
    assert!(b.wait_for_log("storage.max_disk_mb reached", WAIT));
    // The subscriber comes back and takes its queue: the store drains and takes messages again.
    let mut sub = Raw::tcp(port, V5);
    sub.send(&raw::persistent_connect(V5, "offline-sub"));
    hostile::expect_packet_kind(&mut sub, 2, "CONNACK");
    let mut got = 0;
    while got < accepted {
        let p = sub.expect_packet(WAIT);
        if p.kind() == 3 {
            let id = hostile::publish_packet_id(&p.body).expect("QoS 1 id");
            sub.send(&hostile::ack(0x40, id));
            got += 1;
        }
    }
    assert!(b.wait_for_log("store: takes messages again", Duration::from_secs(10)));
    let again = flood(&mut p, b"disk/a", 1, 1, |_| {}, |_| false);
    assert_eq!(again, vec![0], "accepted again after the queue drained");
    hostile::survives(&mut b, 2, "disk budget flood");
}
