//! Issue 15, point 2: user names and passwords (docs/security.md "Authentication").
//!
//! Password files written by Debian's `mosquitto_passwd` (a default `$7$` PBKDF2 entry and a
//! `-H sha512` `$6$` one) work unchanged; `musqratt passwd` writes files Debian's Mosquitto reads;
//! the CONNACK codes are checked with mosquitto_pub (its exit status and error text) and with a
//! raw client for both protocol versions; SIGHUP reloads the file and a broken file keeps the old
//! table; no password ever reaches the log.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::*;
use musqratt_test_support::raw::{connect_credentials, Raw, Version};
use musqratt_test_support::{run_with_timeout, scratch_dir};

const ALICE_PW: &str = "alice-pw-Q7zx";
/// Has a colon and a space and non-ASCII: the password is everything after the user name.
const ERIN_PW: &str = "erin: pw-wörd-K2";
const BOB_PW: &str = "bob-pw-M4vy";
const WRONG_PW: &str = "wrong-pw-J9tt";

/// v5 CONNACK reason codes and the 3.1.1 return codes they map to.
const BAD_CREDENTIALS: (u8, u8) = (0x86, 4);
const NOT_AUTHORIZED: (u8, u8) = (0x87, 5);

fn musqratt() -> PathBuf {
    musqratt_test_support::broker_bin(Some(Path::new(env!("CARGO_BIN_EXE_musqratt"))))
}

fn run(cmd: &mut Command) -> Output {
    run_with_timeout(cmd, Duration::from_secs(30))
}

fn must(cmd: &mut Command) -> Output {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `mosquitto_passwd -c -b FILE alice ...` ($7$), then `-H sha512 -b FILE erin ...` ($6$).
fn mosquitto_password_file(dir: &Path) -> PathBuf {
    let file = dir.join("passwd");
    let mut c = Command::new("mosquitto_passwd");
    must(c.args(["-c", "-b"]).arg(&file).args(["alice", ALICE_PW]));
    let mut c = Command::new("mosquitto_passwd");
    must(
        c.args(["-H", "sha512", "-b"])
            .arg(&file)
            .args(["erin", ERIN_PW]),
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.starts_with("alice:$7$101$"), "{text}");
    assert!(text.contains("\nerin:$6$"), "{text}");
    file
}

/// A config file in `dir` with `[auth]`: the password file by a path relative to the config.
fn config(dir: &Path, allow_anonymous: bool) -> PathBuf {
    let conf = dir.join("musqratt.toml");
    let text = format!("[auth]\nallow_anonymous = {allow_anonymous}\npassword_file = \"passwd\"\n");
    std::fs::write(&conf, text).unwrap();
    conf
}

fn broker_with(conf: &Path) -> Broker {
    broker_with_args(&["-c", conf.to_str().unwrap()])
}

/// mosquitto_pub with credentials (`None`: anonymous); its output, whatever the status.
fn publish(port: u16, v5: bool, user: Option<&str>, pw: Option<&str>) -> Output {
    let mut c = Command::new("mosquitto_pub");
    c.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", "auth/t"])
        .args(["-m", "hello", "-q", "1"]);
    if v5 {
        c.args(["-V", "5"]);
    }
    if let Some(u) = user {
        c.args(["-u", u]);
    }
    if let Some(p) = pw {
        c.args(["-P", p]);
    }
    run(&mut c)
}

/// mosquitto_pub is refused: its exit status is the CONNACK's code, its error names it.
fn assert_refused(out: &Output, v5: bool, code: (u8, u8)) {
    let err = String::from_utf8_lossy(&out.stderr);
    let (status, text) = match (v5, code) {
        (true, BAD_CREDENTIALS) => (0x86, "Bad User Name or Password"),
        (true, _) => (0x87, "Not authorized"),
        (false, BAD_CREDENTIALS) => (4, "Connection Refused: bad user name or password"),
        (false, _) => (5, "Connection Refused: not authorised"),
    };
    assert_eq!(out.status.code(), Some(status), "v5={v5}: {err}");
    assert!(err.contains(text), "v5={v5}: {err}");
}

/// The CONNACK code a raw client gets, for 3.1.1 and 5.0.
fn raw_codes(port: u16, user: Option<&str>, pw: Option<&str>) -> (u8, u8) {
    let code = |v| {
        let bytes = connect_credentials(v, "raw-auth", user, pw.map(str::as_bytes));
        Raw::connack_code(port, v, &bytes)
    };
    (code(Version::V5), code(Version::V311))
}

#[test]
fn mosquitto_passwd_file_right_credentials_pass() {
    let dir = scratch_dir("auth-ok");
    mosquitto_password_file(&dir);
    let b = broker_with(&config(&dir, false));
    assert!(b.wait_for_log("password file loaded", WAIT));
    for v5 in [false, true] {
        let version = if v5 { "5" } else { "311" };
        // $7$ (PBKDF2) subscribes, $6$ (SHA-512) publishes: the message goes through.
        let topic = format!("auth/{version}");
        let sub = Sub::start(
            b.port(),
            &[
                "-V", version, "-t", &topic, "-q", "1", "-u", "alice", "-P", ALICE_PW,
            ],
        );
        mosquitto_pub(
            b.port(),
            &[
                "-V", version, "-t", &topic, "-m", "hi", "-q", "1", "-u", "erin", "-P", ERIN_PW,
            ],
        );
        let got = sub.wait_messages(1, WAIT);
        assert_eq!(got.first().map(|m| m.payload.as_str()), Some("hi"));
    }
    assert_eq!(raw_codes(b.port(), Some("alice"), Some(ALICE_PW)), (0, 0));
    assert_eq!(raw_codes(b.port(), Some("erin"), Some(ERIN_PW)), (0, 0));
}

#[test]
fn wrong_password_unknown_user_and_anonymous_are_refused() {
    let dir = scratch_dir("auth-refused");
    mosquitto_password_file(&dir);
    let b = broker_with(&config(&dir, false));
    for v5 in [false, true] {
        let wrong = publish(b.port(), v5, Some("alice"), Some(WRONG_PW));
        assert_refused(&wrong, v5, BAD_CREDENTIALS);
        // erin's right password for alice, and a $6$ user with a wrong one.
        assert_refused(
            &publish(b.port(), v5, Some("alice"), Some(ERIN_PW)),
            v5,
            BAD_CREDENTIALS,
        );
        assert_refused(
            &publish(b.port(), v5, Some("erin"), Some(WRONG_PW)),
            v5,
            BAD_CREDENTIALS,
        );
        let unknown = publish(b.port(), v5, Some("mallory"), Some(ALICE_PW));
        assert_refused(&unknown, v5, BAD_CREDENTIALS);
        assert_refused(&publish(b.port(), v5, None, None), v5, NOT_AUTHORIZED);
    }
    assert_eq!(
        raw_codes(b.port(), Some("alice"), Some(WRONG_PW)),
        BAD_CREDENTIALS
    );
    assert_eq!(
        raw_codes(b.port(), Some("mallory"), Some(ALICE_PW)),
        BAD_CREDENTIALS
    );
    // A user name without a password (5.0 allows it; 3.1.1 too) is not the user.
    assert_eq!(raw_codes(b.port(), Some("alice"), None), BAD_CREDENTIALS);
    assert_eq!(raw_codes(b.port(), None, None), NOT_AUTHORIZED);
    // One log line per refusal, naming the user; the right one is still let in.
    assert!(b.wait_for_log(
        r#"bad user name or password client=raw-auth username="mallory""#,
        WAIT
    ));
    assert!(b.wait_for_log(
        "no user name and auth.allow_anonymous is false client=raw-auth",
        WAIT
    ));
    assert_eq!(raw_codes(b.port(), Some("alice"), Some(ALICE_PW)), (0, 0));
}

#[test]
fn anonymous_allowed_by_default_users_still_checked() {
    let dir = scratch_dir("auth-anon");
    mosquitto_password_file(&dir);
    let b = broker_with(&config(&dir, true));
    for v5 in [false, true] {
        let out = publish(b.port(), v5, None, None);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = publish(b.port(), v5, Some("alice"), Some(ALICE_PW));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let wrong = publish(b.port(), v5, Some("alice"), Some(WRONG_PW));
        assert_refused(&wrong, v5, BAD_CREDENTIALS);
    }
    assert_eq!(raw_codes(b.port(), None, None), (0, 0));
    assert_eq!(
        raw_codes(b.port(), Some("nobody"), Some("x")),
        BAD_CREDENTIALS
    );
}

#[test]
fn musqratt_passwd_file_is_read_by_mosquitto_and_musqratt() {
    let dir = scratch_dir("auth-passwd");
    let file = dir.join("passwd");
    must(
        Command::new(musqratt())
            .args(["passwd", "-c", "-b"])
            .arg(&file)
            .args(["alice", ALICE_PW]),
    );
    // Interactive: the password twice on stdin (not a terminal here, so no echo to turn off).
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(r#"printf '%s\n%s\n' "$PW" "$PW" | "$BIN" passwd "$FILE" erin"#)
        .env("PW", ERIN_PW)
        .env("BIN", musqratt())
        .env("FILE", &file);
    must(&mut c);
    // Update keeps the other lines; -D deletes.
    must(
        Command::new(musqratt())
            .args(["passwd", "-b"])
            .arg(&file)
            .args(["bob", "first"]),
    );
    must(
        Command::new(musqratt())
            .args(["passwd", "-b"])
            .arg(&file)
            .args(["bob", BOB_PW]),
    );
    must(
        Command::new(musqratt())
            .args(["passwd", "-b"])
            .arg(&file)
            .args(["gone", "x-pw"]),
    );
    must(
        Command::new(musqratt())
            .args(["passwd", "-D"])
            .arg(&file)
            .arg("gone"),
    );
    let text = std::fs::read_to_string(&file).unwrap();
    let users: Vec<&str> = text.lines().map(|l| l.split(':').next().unwrap()).collect();
    assert_eq!(users, ["alice", "erin", "bob"], "{text}");
    assert!(text
        .lines()
        .all(|l| l.split(':').nth(1).unwrap().starts_with("$7$101$")));
    assert!(!text.contains(ALICE_PW) && !text.contains(BOB_PW), "{text}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // Refusals: a password on the command line without -b, an unknown user to delete, a
    // mismatch, a missing file without -c.
    let out = run(Command::new(musqratt())
        .args(["passwd"])
        .arg(&file)
        .args(["x", "pw"]));
    assert_eq!(out.status.code(), Some(1));
    let out = run(Command::new(musqratt())
        .args(["passwd", "-D"])
        .arg(&file)
        .arg("nobody"));
    assert_eq!(out.status.code(), Some(1));
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(r#"printf 'a\nb\n' | "$BIN" passwd "$FILE" carol"#);
    let out = run(c.env("BIN", musqratt()).env("FILE", &file));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("do not match"));
    let missing = dir.join("missing");
    let out = run(Command::new(musqratt())
        .args(["passwd", "-b"])
        .arg(&missing)
        .args(["a", "b"]));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        text,
        "a refusal changed the file"
    );

    // Debian's Mosquitto reads it (as root: `user root`, or it could not open a 0600 file).
    let pw = file.to_str().unwrap();
    let m = Mosquitto::start_with_config(&format!(
        "user root\nallow_anonymous false\npassword_file {pw}\n"
    ));
    for (user, pass) in [("alice", ALICE_PW), ("erin", ERIN_PW), ("bob", BOB_PW)] {
        for v5 in [false, true] {
            let out = publish(m.port(), v5, Some(user), Some(pass));
            assert!(out.status.success(), "mosquitto refused {user}: {out:?}");
        }
    }
    // Mosquitto 2.0 answers a wrong password with "not authorised" (rc 5 / 0x87).
    assert!(!publish(m.port(), false, Some("alice"), Some(WRONG_PW))
        .status
        .success());
    assert!(!publish(m.port(), false, Some("gone"), Some("x-pw"))
        .status
        .success());

    // And so does MusQraTT.
    let b = broker_with(&config(&dir, false));
    for (user, pass) in [("alice", ALICE_PW), ("erin", ERIN_PW), ("bob", BOB_PW)] {
        assert_eq!(
            raw_codes(b.port(), Some(user), Some(pass)),
            (0, 0),
            "{user}"
        );
    }
    assert_eq!(
        raw_codes(b.port(), Some("bob"), Some("first")),
        BAD_CREDENTIALS
    );
    assert_eq!(
        raw_codes(b.port(), Some("gone"), Some("x-pw")),
        BAD_CREDENTIALS
    );
}

fn sighup(b: &Broker) {
    let status = Command::new("kill")
        .args(["-HUP", &b.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -HUP");
}

#[test]
fn sighup_reloads_the_password_file_and_a_broken_one_keeps_the_old() {
    let dir = scratch_dir("auth-sighup");
    let file = mosquitto_password_file(&dir);
    let mut b = broker_with(&config(&dir, false));
    assert_eq!(
        raw_codes(b.port(), Some("bob"), Some(BOB_PW)),
        BAD_CREDENTIALS
    );

    let mut c = Command::new("mosquitto_passwd");
    must(c.arg("-b").arg(&file).args(["bob", BOB_PW]));
    sighup(&b);
    assert!(b.wait_for_log("password file reloaded", WAIT), "no reload");
    assert!(b
        .logs()
        .iter()
        .any(|l| l.contains("password file reloaded") && l.contains("users=3")));
    assert_eq!(raw_codes(b.port(), Some("bob"), Some(BOB_PW)), (0, 0));
    assert!(b.is_running());

    // Line 3 broken (an absurd iteration count): the reload fails, the old table stays.
    let good = std::fs::read_to_string(&file).unwrap();
    let broken = good.replacen("bob:$7$101$", "bob:$7$99999999$", 1);
    assert_ne!(good, broken);
    std::fs::write(&file, format!("{broken}carol-without-hash\n")).unwrap();
    sighup(&b);
    let want = format!("{}:3: user \"bob\": iteration count", file.display());
    assert!(b.wait_for_log(&want, WAIT), "no error naming line 3");
    assert!(b
        .logs()
        .iter()
        .any(|l| l.contains("password file not reloaded") && l.contains(&want)));
    for (user, pass) in [("alice", ALICE_PW), ("erin", ERIN_PW), ("bob", BOB_PW)] {
        assert_eq!(
            raw_codes(b.port(), Some(user), Some(pass)),
            (0, 0),
            "{user}"
        );
    }

    // A file that is gone: the same.
    std::fs::remove_file(&file).unwrap();
    sighup(&b);
    assert!(b.wait_for_log("cannot read", WAIT));
    assert_eq!(raw_codes(b.port(), Some("bob"), Some(BOB_PW)), (0, 0));
    assert!(b.is_running());
}

#[test]
fn broken_password_file_stops_the_start_naming_the_line() {
    let dir = scratch_dir("auth-bad-start");
    let file = mosquitto_password_file(&dir);
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, format!("# users\n{text}eve:plaintext\n")).unwrap();
    let conf = config(&dir, false);
    let out = run(Command::new(musqratt())
        .args(["serve", "--in-memory", "--listen", "127.0.0.1:0", "-c"])
        .arg(&conf));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let want = format!(
        "{}:4: user \"eve\": not a $6$ or $7$ password hash",
        file.display()
    );
    assert!(err.contains(&want), "{err}");
    assert!(!err.contains("plaintext"), "{err}");
}

#[test]
fn no_password_in_the_log_at_any_level() {
    let dir = scratch_dir("auth-log");
    mosquitto_password_file(&dir);
    let conf = config(&dir, false);
    let b = Broker::start_bin_with_log(
        Path::new(env!("CARGO_BIN_EXE_musqratt")),
        &["-c", conf.to_str().unwrap()],
        "trace",
    );
    for v5 in [false, true] {
        assert!(publish(b.port(), v5, Some("alice"), Some(ALICE_PW))
            .status
            .success());
        assert_refused(
            &publish(b.port(), v5, Some("alice"), Some(WRONG_PW)),
            v5,
            BAD_CREDENTIALS,
        );
        assert_refused(
            &publish(b.port(), v5, Some("nobody"), Some(BOB_PW)),
            v5,
            BAD_CREDENTIALS,
        );
    }
    assert_eq!(raw_codes(b.port(), Some("erin"), Some(ERIN_PW)), (0, 0));
    assert!(b.wait_for_log(r#"username="nobody""#, WAIT));
    sighup(&b);
    assert!(b.wait_for_log("password file reloaded", WAIT));
    let logs = b.logs();
    for pw in [ALICE_PW, ERIN_PW, BOB_PW, WRONG_PW] {
        assert!(
            !logs.iter().any(|l| l.contains(pw)),
            "password {pw:?} in the log:\n{}",
            logs.join("\n")
        );
    }
    // Nor the hashes of the file.
    let text = std::fs::read_to_string(dir.join("passwd")).unwrap();
    for line in text.lines() {
        let hash = line.rsplit('$').next().unwrap();
        assert!(!logs.iter().any(|l| l.contains(hash)), "a hash in the log");
    }
}
