//! Issue 15, point 3: access control lists in Mosquitto's `acl_file` format (docs/security.md
//! "Access control (ACL)").
//!
//! Real TCP, raw clients for both protocol versions (to read the reason codes) and Debian's
//! Mosquitto 2.0 fed the same file (its SUBACK and PUBACK codes are the reference). A message
//! that must not arrive is shown not to by a sentinel: something the client may receive, sent
//! after it on the same path, arrives first.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use musqratt_test_support::raw::{packet, read_varint, string, Packet, Raw, Version};
use musqratt_test_support::{run_with_timeout, scratch_dir};

const V5: Version = Version::V5;
const V311: Version = Version::V311;

/// A config with `[auth] acl_file` (relative to the config), the ACL file holding `acl`.
fn acl_config(dir: &Path, acl: &str) -> PathBuf {
    std::fs::write(dir.join("acl"), acl).unwrap();
    let conf = dir.join("musqratt.toml");
    std::fs::write(&conf, "[auth]\nacl_file = \"acl\"\n").unwrap();
    conf
}

fn broker_with_acl(dir: &Path, acl: &str) -> Broker {
    let conf = acl_config(dir, acl);
    let b = broker_with_args(&["-c", conf.to_str().unwrap()]);
    assert!(b.wait_for_log("ACL file loaded", WAIT));
    b
}

/// A clean CONNECT, keep-alive 60, with an optional user name (no password file: user names
/// are not checked, only the ACL looks at them) and an optional will (QoS 0, not retained).
fn connect_packet(v: Version, id: &str, user: Option<&str>, will: Option<&str>) -> Vec<u8> {
    let mut body = string(b"MQTT");
    body.push(v.level());
    let flags = 0x02 | user.map_or(0, |_| 0x80) | will.map_or(0, |_| 0x04);
    body.push(flags);
    body.extend_from_slice(&60u16.to_be_bytes());
    if v == V5 {
        body.push(0);
    }
    body.extend(string(id.as_bytes()));
    if let Some(topic) = will {
        if v == V5 {
            body.push(0); // will properties: none
        }
        body.extend(string(topic.as_bytes()));
        body.extend(string(b"gone"));
    }
    if let Some(u) = user {
        body.extend(string(u.as_bytes()));
    }
    packet(0x10, &body)
}

fn client(port: u16, v: Version, id: &str, user: Option<&str>) -> Raw {
    Raw::connect_bytes(port, v, &connect_packet(v, id, user, None))
}

fn publish_packet(v: Version, topic: &str, qos: u8, retain: bool, pid: u16) -> Vec<u8> {
    let mut body = string(topic.as_bytes());
    if qos > 0 {
        body.extend_from_slice(&pid.to_be_bytes());
    }
    if v == V5 {
        body.push(0);
    }
    body.extend_from_slice(b"payload");
    packet(0x30 | (qos << 1) | u8::from(retain), &body)
}

/// The next packet of `kind`, skipping others (deliveries to a client that also publishes).
fn expect_kind(raw: &mut Raw, kind: u8) -> Packet {
    loop {
        let p = raw.expect_packet(WAIT);
        if p.kind() == kind {
            return p;
        }
    }
}

/// The reason code of a PUBACK, PUBREC or PUBCOMP (none on the wire: 0).
fn ack_code(p: &Packet) -> u8 {
    p.body.get(2).copied().unwrap_or(0)
}

/// Publishes at `qos` and returns the reason code of its PUBACK or PUBREC; a QoS 2 exchange
/// that goes on (no failure code) is completed with PUBREL / PUBCOMP. QoS 0: None.
fn publish(raw: &mut Raw, topic: &str, qos: u8, retain: bool, pid: u16) -> Option<u8> {
    let v = raw.version;
    raw.send(&publish_packet(v, topic, qos, retain, pid));
    match qos {
        0 => None,
        1 => Some(ack_code(&expect_kind(raw, 4))),
        _ => {
            let rec = expect_kind(raw, 5);
            let code = ack_code(&rec);
            assert_eq!(rec.body.get(..2), Some(&pid.to_be_bytes()[..]));
            if code < 0x80 {
                raw.send(&packet(0x62, &pid.to_be_bytes()));
                let comp = expect_kind(raw, 7);
                assert_eq!(ack_code(&comp), 0, "PUBCOMP {comp:?}");
            }
            Some(code)
        }
    }
}

/// Sends one SUBSCRIBE with `filters` (QoS 0) and returns the SUBACK's codes.
fn subscribe(raw: &mut Raw, pid: u16, filters: &[&str]) -> Vec<u8> {
    subscribe_qos(raw, pid, filters, 0)
}

fn subscribe_qos(raw: &mut Raw, pid: u16, filters: &[&str], qos: u8) -> Vec<u8> {
    let mut body = pid.to_be_bytes().to_vec();
    if raw.version == V5 {
        body.push(0);
    }
    for f in filters {
        body.extend(string(f.as_bytes()));
        body.push(qos);
    }
    raw.send(&packet(0x82, &body));
    let ack = expect_kind(raw, 9);
    let mut at = 2;
    if raw.version == V5 {
        let (len, n) = read_varint(&ack.body[at..]);
        at += n + len;
    }
    ack.body[at..].to_vec()
}

fn unsubscribe(raw: &mut Raw, pid: u16, filter: &str) {
    let mut body = pid.to_be_bytes().to_vec();
    if raw.version == V5 {
        body.push(0);
    }
    body.extend(string(filter.as_bytes()));
    raw.send(&packet(0xA2, &body));
    expect_kind(raw, 11);
}

fn next_topic(raw: &mut Raw) -> String {
    String::from_utf8(raw.expect_publish(WAIT).0).unwrap()
}

fn sighup(b: &Broker) {
    let status = Command::new("kill")
        .args(["-HUP", &b.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -HUP");
}

const PARITY_ACL: &str = "\
# anonymous clients
topic read public/#
topic write public/in

user alice
topic read a/+/c
topic read b/#
topic deny b/secret/#
topic readwrite rw/#
topic write w/only

pattern read users/%u/#
pattern readwrite dev/%c/#
pattern deny dev/%c/locked
";

const IDENTITIES: [(&str, Option<&str>); 3] =
    [("d1", None), ("d1", Some("alice")), ("d2", Some("bob"))];

/// The PUBACK codes (granted 0, refused 0x87 in v5; 0 for both in 3.1.1) of PUBLISH to each
/// topic for each identity, from the broker at `port`.
fn publish_codes(port: u16, v: Version, topics: &[&str]) -> Vec<(String, u8)> {
    let mut seen = Vec::new();
    for (id, user) in IDENTITIES {
        let mut raw = client(port, v, id, user);
        for (i, t) in topics.iter().enumerate() {
            let code = publish(&mut raw, t, 1, false, 1 + i as u16).unwrap();
            // v5 0x10 No matching subscribers (Mosquitto does not send it) is a grant too.
            let code = if code == 0x10 { 0 } else { code };
            seen.push((format!("{id}/{user:?} PUBLISH {t}"), code));
        }
        raw.send(&packet(0xE0, &[]));
    }
    seen
}

#[test]
fn publish_codes_match_mosquitto() {
    let dir = scratch_dir("acl-parity");
    let b = broker_with_acl(&dir, PARITY_ACL);
    let acl = dir.join("acl");
    let m = Mosquitto::start_with_config(&format!("user root\nacl_file {}\n", acl.display()));
    let topics = [
        "public/in",
        "public/x",
        "a/x/c",
        "b/x",
        "b/secret/x",
        "rw/x",
        "w/only",
        "users/alice/x",
        "dev/d1/x",
        "dev/d2/x",
        "dev/d1/locked",
        "other",
    ];
    for v in [V5, V311] {
        let ours = publish_codes(b.port(), v, &topics);
        let theirs = publish_codes(m.port(), v, &topics);
        assert_eq!(ours, theirs, "{v:?}");
        let refused = ours.iter().filter(|(_, c)| *c == 0x87).count();
        // What each identity may write: d1 anonymous public/in and dev/d1/x; alice rw/x,
        // w/only and dev/d1/x; bob only his dev/d2/x.
        let want = if v == V5 {
            3 * topics.len() - 2 - 3 - 1
        } else {
            0
        };
        assert_eq!(refused, want, "{v:?}: {ours:?}");
    }
    assert!(b.wait_for_log("PUBLISH not authorized by the ACL", WAIT));
}

#[test]
fn subscribe_is_refused_where_nothing_could_be_read() {
    // Mosquitto 2.0's acl_file grants every SUBSCRIBE and checks only deliveries; we also
    // refuse a filter no readable topic can match, or whose every topic is denied.
    let dir = scratch_dir("acl-subscribe");
    let b = broker_with_acl(&dir, PARITY_ACL);
    for v in [V5, V311] {
        let refused = if v == V5 { 0x87 } else { 0x80 };
        for ((id, user), filters) in IDENTITIES.into_iter().zip([
            &[
                ("public/#", 0),
                ("public/x", 0),
                ("#", 0),
                ("a/#", refused),
                ("users/+/x", refused),
                ("dev/d1/#", 0),
                ("dev/+/x", 0),
                ("dev/d2/x", refused),
                ("dev/d1/locked", refused),
                ("$SYS/#", refused),
            ][..],
            &[
                ("a/+/c", 0),
                ("a/#", 0),
                ("a/x/d", refused),
                ("b/+", 0),
                ("b/secret/#", refused),
                ("b/secret/x", refused),
                ("w/only", refused),
                ("users/alice/#", 0),
                ("users/bob/x", refused),
                ("public/#", refused),
            ][..],
            &[
                ("users/bob/#", 0),
                ("users/alice/#", refused),
                ("dev/d2/+", 0),
            ][..],
        ]) {
            let mut raw = client(b.port(), v, id, user);
            let names: Vec<&str> = filters.iter().map(|f| f.0).collect();
            let want: Vec<u8> = filters.iter().map(|f| f.1).collect();
            // All in one SUBSCRIBE: one code per filter, in order.
            assert_eq!(subscribe(&mut raw, 1, &names), want, "{v:?} {id} {user:?}");
        }
    }
    assert!(b.wait_for_log(
        "SUBSCRIBE not authorized by the ACL (refusals since the last line: 1) client=d1 username=None topic=a/#",
        WAIT
    ));
}

const DELIVERY_ACL: &str = "\
topic write acl/#
user reader
topic read #
topic deny acl/hidden/#
user boss
topic read acl/#
";

#[test]
fn denied_publish_is_acknowledged_but_not_routed_retained_or_held() {
    let dir = scratch_dir("acl-publish");
    let b = broker_with_acl(
        &dir,
        "topic read acl/#\nuser writer\ntopic write acl/shown/#\n",
    );
    let mut reader = client(b.port(), V5, "reader", None);
    assert_eq!(subscribe(&mut reader, 1, &["acl/#"]), [0]);
    for v in [V5, V311] {
        let mut w = client(b.port(), v, &format!("writer-{v:?}"), Some("writer"));
        let denied = if v == V5 { Some(0x87) } else { Some(0) };
        assert_eq!(publish(&mut w, "acl/hidden/1", 1, false, 1), denied);
        // 3.1.1: the QoS 2 exchange runs to its PUBCOMP (the client does not retry).
        assert_eq!(publish(&mut w, "acl/hidden/2", 2, false, 2), denied);
        assert_eq!(publish(&mut w, "acl/hidden/0", 0, true, 0), None);
        assert_eq!(publish(&mut w, "acl/hidden/r", 1, true, 3), denied);
        // The packet id of the refused QoS 2 PUBLISH is free again: reused, it is a new one.
        assert_eq!(publish(&mut w, "acl/shown/2", 2, false, 2), Some(0));
        assert_eq!(publish(&mut w, "acl/shown/1", 1, false, 4), Some(0));
        assert_eq!(next_topic(&mut reader), "acl/shown/2", "{v:?}");
        assert_eq!(next_topic(&mut reader), "acl/shown/1", "{v:?}");
    }
    // Not retained, not held: with no subscriber, a denied and an allowed message; a new
    // subscriber gets the allowed retained one, then the allowed held one. The denied ones
    // would sort first ("acl/hidden" < "acl/shown").
    unsubscribe(&mut reader, 2, "acl/#");
    let mut w = client(b.port(), V5, "writer-held", Some("writer"));
    assert_eq!(publish(&mut w, "acl/hidden/h", 1, false, 1), Some(0x87));
    assert_eq!(publish(&mut w, "acl/shown/r", 1, true, 2), Some(0x10));
    assert_eq!(publish(&mut w, "acl/shown/h", 1, false, 3), Some(0));
    let mut late = client(b.port(), V311, "late", None);
    assert_eq!(subscribe(&mut late, 1, &["acl/#"]), [0]);
    assert_eq!(next_topic(&mut late), "acl/shown/r");
    assert_eq!(next_topic(&mut late), "acl/shown/h");
}

#[test]
fn delivery_needs_read_access_live_retained_and_held() {
    let dir = scratch_dir("acl-delivery");
    let b = broker_with_acl(&dir, DELIVERY_ACL);
    let mut w = client(b.port(), V5, "w", None);
    // `#` is granted to the reader; each delivery is checked on its own.
    let mut reader = client(b.port(), V311, "r", Some("reader"));
    assert_eq!(subscribe(&mut reader, 1, &["#"]), [0]);
    assert_eq!(subscribe(&mut reader, 2, &["acl/hidden/#"]), [0x80]);
    // A subscriber that may not read it is no match: the message is held, for one that may.
    assert_eq!(publish(&mut w, "acl/hidden/1", 1, false, 1), Some(0));
    assert_eq!(publish(&mut w, "acl/shown/1", 1, false, 2), Some(0));
    assert_eq!(next_topic(&mut reader), "acl/shown/1");
    let mut boss = client(b.port(), V5, "boss", Some("boss"));
    assert_eq!(subscribe(&mut boss, 1, &["acl/hidden/1"]), [0]);
    assert_eq!(next_topic(&mut boss), "acl/hidden/1");

    // Retained and held messages at SUBSCRIBE: only the readable ones; the held one the reader
    // may not read stays held for the boss.
    unsubscribe(&mut reader, 3, "#");
    // No subscriber: retained ones are not held (v5 0x10 No matching subscribers), the
    // others are (success).
    for (i, (topic, retain, code)) in [
        ("acl/hidden/r", true, 0x10),
        ("acl/shown/r", true, 0x10),
        ("acl/hidden/h", false, 0),
        ("acl/shown/h", false, 0),
    ]
    .into_iter()
    .enumerate()
    {
        assert_eq!(
            publish(&mut w, topic, 1, retain, 10 + i as u16),
            Some(code),
            "{topic}"
        );
    }
    assert_eq!(subscribe(&mut reader, 4, &["acl/#"]), [0]);
    assert_eq!(next_topic(&mut reader), "acl/shown/r");
    assert_eq!(next_topic(&mut reader), "acl/shown/h");
    assert_eq!(subscribe(&mut boss, 2, &["acl/hidden/+"]), [0]);
    assert_eq!(next_topic(&mut boss), "acl/hidden/r");
    assert_eq!(next_topic(&mut boss), "acl/hidden/h");
}

#[test]
fn wills_need_write_access_and_reach_only_readers() {
    let dir = scratch_dir("acl-will");
    let conf = acl_config(
        &dir,
        "topic write will/ok\ntopic write will/hidden\n\
         user reader\ntopic read will/#\ntopic deny will/hidden\n\
         user boss\ntopic read will/#\n",
    );
    let b = Broker::start_bin_with_log(
        Path::new(env!("CARGO_BIN_EXE_musqratt")),
        // One worker: a close is handled (its will published) before the next event.
        &["-c", conf.to_str().unwrap(), "--workers", "1"],
        "debug",
    );
    let mut reader = client(b.port(), V5, "reader", Some("reader"));
    assert_eq!(subscribe(&mut reader, 1, &["will/#"]), [0]);
    let mut boss = client(b.port(), V311, "boss", Some("boss"));
    assert_eq!(subscribe(&mut boss, 1, &["will/#"]), [0]);
    // Accepted, its will dropped (Mosquitto 2.0 does not refuse the CONNECT either).
    for (v, id, topic) in [
        (V311, "w-nowrite", "will/nowrite"),
        (V5, "w-hidden", "will/hidden"),
        (V5, "w-ok", "will/ok"),
    ] {
        let w = Raw::connect_bytes(b.port(), v, &connect_packet(v, id, None, Some(topic)));
        // Closed without DISCONNECT: the will is due. One at a time, in this order.
        drop(w);
        assert!(b.wait_for_log(&format!("connection closed by peer client={id}"), WAIT));
    }
    assert!(b.wait_for_log(
        "will dropped: the ACL denies write access to its topic",
        WAIT
    ));
    assert_eq!(next_topic(&mut reader), "will/ok");
    assert_eq!(next_topic(&mut boss), "will/hidden");
    assert_eq!(next_topic(&mut boss), "will/ok");
}

#[test]
fn sys_topics_need_read_access() {
    let dir = scratch_dir("acl-sys");
    let b = broker_with_acl(
        &dir,
        "user all\ntopic read $SYS/#\nuser some\ntopic read $SYS/#\ntopic deny $SYS/broker/bytes/#\n",
    );
    let mut all = client(b.port(), V5, "all", Some("all"));
    assert_eq!(subscribe(&mut all, 1, &["$SYS/#"]), [0]);
    // Retained `$SYS` topics arrive sorted; `bytes` comes first.
    assert!(next_topic(&mut all).starts_with("$SYS/broker/bytes/"));
    let mut some = client(b.port(), V5, "some", Some("some"));
    assert_eq!(subscribe(&mut some, 1, &["$SYS/#"]), [0]);
    let first = next_topic(&mut some);
    assert!(first.starts_with("$SYS/broker/") && !first.starts_with("$SYS/broker/bytes/"));
    // Anonymous clients have no rule: refused.
    let mut anon = client(b.port(), V311, "anon", None);
    assert_eq!(subscribe(&mut anon, 1, &["$SYS/#"]), [0x80]);
}

/// A 3.1.1 CONNECT with clean session off, client id `shared-id`, as `user`.
fn persistent(user: &str) -> Vec<u8> {
    let mut body = string(b"MQTT");
    body.push(4);
    body.push(0x80); // user name, clean session off
    body.extend_from_slice(&60u16.to_be_bytes());
    body.extend(string(b"shared-id"));
    body.extend(string(user.as_bytes()));
    packet(0x10, &body)
}

#[test]
fn a_user_cannot_take_over_another_users_session() {
    let dir = scratch_dir("acl-takeover");
    let b = broker_with_acl(
        &dir,
        "user alice\ntopic readwrite a/#\nuser eve\ntopic read e/#\n",
    );
    let mut alice = Raw::connect_bytes(b.port(), V311, &persistent("alice"));
    assert_eq!(subscribe(&mut alice, 1, &["a/#"]), [0]);
    alice.send(&packet(0xE0, &[]));
    alice.expect_closed(WAIT);
    // Alice's session is present for alice ...
    let mut raw = Raw::tcp(b.port(), V311);
    raw.send(&persistent("alice"));
    let ack = expect_kind(&mut raw, 2);
    assert_eq!(ack.body, [1, 0], "session present for alice");
    raw.send(&packet(0xE0, &[]));
    raw.expect_closed(WAIT);
    // ... and not for eve, who gets a new one (nothing queued for alice reaches her).
    let mut raw = Raw::tcp(b.port(), V311);
    raw.send(&persistent("eve"));
    let ack = expect_kind(&mut raw, 2);
    assert_eq!(ack.body, [0, 0], "eve must not resume alice's session");
}

#[test]
fn sighup_reloads_the_acl_and_clients_stay_connected() {
    let dir = scratch_dir("acl-sighup");
    let b = broker_with_acl(&dir, "topic read a/#\n");
    let mut c = client(b.port(), V5, "c", None);
    assert_eq!(subscribe(&mut c, 1, &["b/#"]), [0x87]);
    assert_eq!(publish(&mut c, "b/x", 1, false, 1), Some(0x87));

    std::fs::write(dir.join("acl"), "topic read a/#\ntopic readwrite b/#\n").unwrap();
    sighup(&b);
    assert!(b.wait_for_log("ACL file reloaded", WAIT));
    assert_eq!(subscribe(&mut c, 2, &["b/#"]), [0]);
    assert_eq!(publish(&mut c, "b/x", 1, false, 2), Some(0));
    assert_eq!(next_topic(&mut c), "b/x");

    // A broken file: the error names the file and line, the table in force stays.
    std::fs::write(dir.join("acl"), "topic read a/#\n\ntopic read a/#/b\n").unwrap();
    sighup(&b);
    let want = format!(
        "{}:3: topic: \"a/#/b\" is not a valid topic filter",
        dir.join("acl").display()
    );
    assert!(b.wait_for_log("ACL file not reloaded", WAIT));
    assert!(b.wait_for_log(&want, WAIT), "no error naming line 3");
    assert_eq!(publish(&mut c, "b/y", 1, false, 3), Some(0));
    assert_eq!(next_topic(&mut c), "b/y");
}

#[test]
fn a_bad_acl_file_stops_the_start_naming_the_line() {
    let dir = scratch_dir("acl-bad-start");
    let conf = acl_config(&dir, "# rules\ntopic read a/#\ntopci read b\n");
    let out = run_with_timeout(
        Command::new(env!("CARGO_BIN_EXE_musqratt"))
            .args(["serve", "--in-memory", "--listen", "127.0.0.1:0", "-c"])
            .arg(&conf),
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let want = format!("{}:3: unknown keyword \"topci\"", dir.join("acl").display());
    assert!(err.contains(&want), "{err}");
}

#[test]
fn a_restored_session_keeps_only_what_its_new_user_may_read() {
    // The store does not keep user names: after a restart a session's user is not known until
    // its client is back, and then what it holds is checked against that client's rights.
    let dir = scratch_dir("acl-restore");
    let conf = acl_config(
        &dir,
        "topic write a/#\nuser alice\ntopic read a/#\nuser eve\ntopic read a/public/#\n",
    );
    let conf = conf.to_str().unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_musqratt"));
    let data = dir.join("data");
    let mut b = Broker::start_with_store(bin, &data, &["-c", conf]);
    let mut alice = Raw::connect_bytes(b.port(), V311, &persistent("alice"));
    assert_eq!(subscribe_qos(&mut alice, 1, &["a/#"], 1), [1]);
    alice.send(&packet(0xE0, &[]));
    alice.expect_closed(WAIT);
    let mut w = client(b.port(), V5, "w", None);
    assert_eq!(publish(&mut w, "a/private/1", 1, false, 1), Some(0));
    assert_eq!(publish(&mut w, "a/public/2", 1, false, 2), Some(0));
    b.kill();

    let b = Broker::start_with_store(bin, &data, &["-c", conf]);
    let mut raw = Raw::tcp(b.port(), V311);
    raw.send(&persistent("eve"));
    let ack = expect_kind(&mut raw, 2);
    assert_eq!(ack.body, [1, 0], "the restored session is resumed");
    assert_eq!(next_topic(&mut raw), "a/public/2");
    assert!(b.wait_for_log(
        "restored session resumed: messages this user may not read dropped (ACL) client=shared-id dropped=1",
        WAIT
    ));
}

#[test]
fn mosquitto_clients_see_the_refusals_and_only_what_they_may_read() {
    let dir = scratch_dir("acl-mosquitto-clients");
    let b = broker_with_acl(
        &dir,
        "topic write acl/#\nuser reader\ntopic read acl/#\ntopic deny acl/hidden/#\n",
    );
    let port = b.port().to_string();
    for version in ["mqttv311", "mqttv5"] {
        let topic = format!("acl/shown/{version}");
        let reader = Sub::start(
            b.port(),
            &["-V", version, "-u", "reader", "-t", "#", "-q", "1"],
        );
        // Anonymous clients may write, not read: mosquitto_sub is told every filter was denied.
        let out = run_with_timeout(
            Command::new("mosquitto_sub")
                .args(["-h", "127.0.0.1", "-p", &port, "-V", version, "-t", "acl/#"])
                .args(["-C", "1"]),
            Duration::from_secs(10),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("All subscription requests were denied"),
            "{version}: {err}"
        );
        // A denied PUBLISH: mosquitto_pub reports 0x87 in v5; 3.1.1 has no way to say it.
        let out = run_with_timeout(
            Command::new("mosquitto_pub")
                .args(["-h", "127.0.0.1", "-p", &port, "-V", version, "-q", "1"])
                .args(["-u", "reader", "-t", &topic, "-m", "denied"]),
            Duration::from_secs(10),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            err.contains("Publish 1 failed: Not authorized"),
            version == "mqttv5",
            "{version}: {err}"
        );
        // The reader's `#`: the hidden topic published first does not arrive, the shown one does.
        mosquitto_pub(
            b.port(),
            &["-V", version, "-q", "1", "-t", "acl/hidden/x", "-m", "no"],
        );
        mosquitto_pub(
            b.port(),
            &["-V", version, "-q", "1", "-t", &topic, "-m", "yes"],
        );
        let got = reader.wait_messages(1, WAIT);
        assert_eq!(
            got.first().map(|m| (m.topic.as_str(), m.payload.as_str())),
            Some((topic.as_str(), "yes")),
            "{version}"
        );
    }
}
