//! Issue 15, point 1: TLS listeners (docs/security.md "TLS"), with real clients: Debian's
//! mosquitto_pub/mosquitto_sub with `--cafile` (and `--cert`/`--key` for client certificates),
//! and raw TCP for what no well-behaved client does (plaintext on the TLS port, a stalled
//! handshake). Certificates are made in each test with rcgen (tls_common): a CA, a server
//! certificate for 127.0.0.1, client certificates with a CN. Our own client: tls_clients.rs.

mod common;
mod tls_common;

use std::io::Read;
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use tls_common::*;

#[test]
fn mosquitto_clients_round_trip_over_tls_all_qos_both_versions() {
    let dir = scratch_dir("tls-rt");
    let ca = Ca::new(&dir, "ca");
    let b = TlsBroker::start(&dir, &server_tls(&ca, ""), "");
    let cafile = ca.pem();
    for version in ["311", "5"] {
        let topic = format!("tls/rt/{version}");
        let sub = Sub::start(
            b.tls,
            &[
                "--cafile",
                s(&cafile),
                "-V",
                version,
                "-t",
                &topic,
                "-q",
                "2",
            ],
        );
        for qos in ["0", "1", "2"] {
            let payload = format!("v{version} q{qos}");
            let args = [
                "--cafile",
                s(&cafile),
                "-V",
                version,
                "-t",
                &topic,
                "-q",
                qos,
                "-m",
                &payload,
            ];
            mosquitto_pub(b.tls, &args);
        }
        let got = sub.wait_messages(3, WAIT);
        let got: Vec<(String, u8)> = got.into_iter().map(|m| (m.payload, m.qos)).collect();
        assert_eq!(
            got,
            [0, 1, 2].map(|q| (format!("v{version} q{q}"), q)).to_vec(),
            "v{version}"
        );
    }
    // A large message (many TLS records, more than one read) arrives whole.
    let big = "b".repeat(300_000);
    let file = dir.join("big.txt");
    std::fs::write(&file, &big).unwrap();
    let sub = Sub::start(b.tls, &["--cafile", s(&cafile), "-t", "tls/big", "-q", "1"]);
    let args = [
        "--cafile",
        s(&cafile),
        "-t",
        "tls/big",
        "-q",
        "1",
        "-f",
        s(&file),
    ];
    mosquitto_pub(b.tls, &args);
    let got = sub.wait_messages(1, WAIT);
    assert_eq!(got.first().map(|m| m.payload.len()), Some(big.len()));
    // The plain listener beside it still serves plain clients, and they share topics.
    let sub = Sub::start(b.plain, &["-t", "tls/mixed", "-q", "1"]);
    mosquitto_pub(
        b.tls,
        &[
            "--cafile",
            s(&cafile),
            "-t",
            "tls/mixed",
            "-q",
            "1",
            "-m",
            "across",
        ],
    );
    assert_eq!(sub.wait_messages(1, WAIT)[0].payload, "across");
}

#[test]
fn untrusted_ca_and_plaintext_clients_fail_others_are_served() {
    let dir = scratch_dir("tls-untrusted");
    let ca = Ca::new(&dir, "ca");
    let other = Ca::new(&dir, "other");
    let b = TlsBroker::start(&dir, &server_tls(&ca, ""), "");
    // The client does not trust the broker's CA: its handshake fails, the broker logs it.
    let out = tls_pub(b.tls, &["--cafile", s(&other.pem())]);
    assert!(!ok(&out), "a client with another CA got in");
    assert!(b.wait_for_log("TLS handshake failed"), "no log line");
    // A plaintext MQTT client on the TLS port is closed, with a log line too.
    let before = b.count("TLS handshake failed");
    let out = tls_pub(b.tls, &[]);
    assert!(!ok(&out), "a plaintext client got in: {}", stderr(&out));
    assert!(b.logs.wait_until(WAIT, |l| l
        .iter()
        .filter(|l| l.contains("TLS handshake failed"))
        .count()
        > before));
    // Raw plaintext CONNECT bytes: the broker answers with an alert (or nothing) and closes.
    let mut raw = TcpStream::connect(("127.0.0.1", b.tls)).unwrap();
    raw.set_read_timeout(Some(WAIT)).unwrap();
    let connect = raw::connect_credentials(raw::Version::V311, "plain", None, None);
    std::io::Write::write_all(&mut raw, &connect).unwrap();
    let mut got = Vec::new();
    let _ = raw.read_to_end(&mut got);
    // Not a CONNACK (0x20): at most a TLS alert record (content type 21).
    assert!(got.first().is_none_or(|&b| b == 21), "answered {got:?}");
    // Others are still served.
    let sub = Sub::start(b.tls, &["--cafile", s(&ca.pem()), "-t", "tls/after"]);
    mosquitto_pub(
        b.tls,
        &["--cafile", s(&ca.pem()), "-t", "tls/after", "-m", "fine"],
    );
    assert_eq!(sub.wait_messages(1, WAIT)[0].payload, "fine");
}

#[test]
fn client_certificates_required_missing_or_wrong_ca_refused() {
    let dir = scratch_dir("tls-client-cert");
    let ca = Ca::new(&dir, "ca");
    let rogue = Ca::new(&dir, "rogue");
    let extra = format!(", client_ca = {:?}", s(&ca.pem()));
    let b = TlsBroker::start(&dir, &server_tls(&ca, &extra), "");
    let cafile = ca.pem();
    let (good_cert, good_key) = ca.issue("client", "sensor-1", false);
    let (bad_cert, bad_key) = rogue.issue("rogue-client", "sensor-1", false);
    let with = |cert: &Path, key: &Path, topic: &str| {
        tls_pub(
            b.tls,
            &[
                "--cafile",
                s(&cafile),
                "--cert",
                s(cert),
                "--key",
                s(key),
                "-t",
                topic,
                "-q",
                "1",
            ],
        )
    };
    let sub = Sub::start(
        b.tls,
        &[
            "--cafile",
            s(&cafile),
            "--cert",
            s(&good_cert),
            "--key",
            s(&good_key),
            "-t",
            "tls/#",
        ],
    );
    // No certificate: refused (require_certificate defaults to true with a client_ca).
    let out = tls_pub(
        b.tls,
        &["--cafile", s(&cafile), "-t", "tls/none", "-q", "1"],
    );
    assert!(!ok(&out), "a client without a certificate got in");
    assert!(b.wait_for_log("TLS handshake failed"));
    // A certificate from another CA: refused.
    let out = with(&bad_cert, &bad_key, "tls/rogue");
    assert!(!ok(&out), "a client with a rogue certificate got in");
    // The right one: in, and its message arrives (the refused ones' did not).
    let out = with(&good_cert, &good_key, "tls/good");
    assert!(ok(&out), "{}", stderr(&out));
    let got = sub.wait_messages(1, WAIT);
    assert_eq!(got[0].topic, "tls/good");
    assert_eq!(sub.messages().len(), 1, "{:?}", sub.messages());
}

#[test]
fn identity_as_username_lets_certificate_clients_in_and_no_one_else() {
    let dir = scratch_dir("tls-identity");
    let ca = Ca::new(&dir, "ca");
    let extra = format!(
        ", client_ca = {:?}, require_certificate = false, use_identity_as_username = true",
        s(&ca.pem())
    );
    // No password file and anonymous clients refused: only a certificate names a client.
    let b = TlsBroker::start(
        &dir,
        &server_tls(&ca, &extra),
        "[auth]\nallow_anonymous = false\n",
    );
    let cafile = ca.pem();
    let (cert, key) = ca.issue("client", "sensor-7", false);
    for version in ["311", "5"] {
        // With a certificate: in, whatever user name and password the CONNECT carries.
        let out = tls_pub(
            b.tls,
            &[
                "--cafile",
                s(&cafile),
                "--cert",
                s(&cert),
                "--key",
                s(&key),
                "-V",
                version,
                "-u",
                "someone-else",
                "-P",
                "wrong",
                "-q",
                "1",
            ],
        );
        assert!(ok(&out), "v{version}: {}", stderr(&out));
        // Without (the handshake passes, require_certificate = false): refused at CONNECT as a
        // bad user name or password, as Mosquitto does.
        let out = tls_pub(b.tls, &["--cafile", s(&cafile), "-V", version, "-q", "1"]);
        assert!(
            !ok(&out),
            "v{version}: a client without a certificate got in"
        );
        let code = if version == "5" { 0x86 } else { 4 };
        assert_eq!(
            out.status.code(),
            Some(code),
            "v{version}: {}",
            stderr(&out)
        );
    }
    assert!(b.wait_for_log("no client certificate with a subject CN"));
    // The plain listener: no certificate, no password file, anonymous refused: no one.
    let out = tls_pub(b.plain, &["-u", "sensor-7", "-q", "1"]);
    assert!(!ok(&out), "a plain client got in");
}

#[test]
fn sighup_reloads_the_certificate_and_keeps_connections() {
    let dir = scratch_dir("tls-reload");
    let ca = Ca::new(&dir, "ca");
    let b = TlsBroker::start(&dir, &server_tls(&ca, ""), "");
    let sub = Sub::start(
        b.tls,
        &["--cafile", s(&ca.pem()), "-t", "tls/reload", "-q", "1"],
    );
    // A new CA signs a new server certificate, written over the old files.
    let ca2 = Ca::new(&dir, "ca2");
    let (c2, k2) = ca2.issue("new-server", "localhost", true);
    std::fs::copy(&c2, dir.join("server.pem")).unwrap();
    std::fs::copy(&k2, dir.join("server.key")).unwrap();
    hup(&b);
    assert!(b.wait_for_log("TLS certificate reloaded"));
    // New handshakes use it: the old CA no longer verifies the broker, the new one does.
    let out = tls_pub(b.tls, &["--cafile", s(&ca.pem())]);
    assert!(!ok(&out), "the old certificate is still served");
    let out = tls_pub(
        b.tls,
        &[
            "--cafile",
            s(&ca2.pem()),
            "-t",
            "tls/reload",
            "-q",
            "1",
            "-m",
            "after",
        ],
    );
    assert!(ok(&out), "{}", stderr(&out));
    // The subscriber connected before the reload is still connected and receives it.
    assert_eq!(sub.wait_messages(1, WAIT)[0].payload, "after");
    // A bad file: logged, the certificate in force stays.
    std::fs::write(dir.join("server.key"), "not a key\n").unwrap();
    hup(&b);
    assert!(b.wait_for_log("TLS files not reloaded, the previous certificate stays in force"));
    assert!(b.wait_for_log("key 'listener.tls.key'"));
    let out = tls_pub(b.tls, &["--cafile", s(&ca2.pem())]);
    assert!(ok(&out), "{}", stderr(&out));
}

#[test]
fn a_stalled_handshake_is_closed_after_the_connect_timeout() {
    let dir = scratch_dir("tls-stall");
    let ca = Ca::new(&dir, "ca");
    let b = TlsBroker::start(
        &dir,
        &server_tls(&ca, ""),
        "[limits]\nconnect_timeout_secs = 1\n",
    );
    // Opens the connection and sends the first bytes of a ClientHello record, then nothing.
    let mut raw = TcpStream::connect(("127.0.0.1", b.tls)).unwrap();
    std::io::Write::write_all(&mut raw, &[22, 3, 1, 0, 200, 1]).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let start = Instant::now();
    let mut got = Vec::new();
    let end = raw.read_to_end(&mut got);
    // Closed by the broker (EOF), not by our read timeout; what came first is at most a TLS
    // alert record (content type 21: its close_notify), never a byte of MQTT.
    assert!(end.is_ok(), "{end:?} after {:?}", start.elapsed());
    assert!(got.first().is_none_or(|&b| b == 21), "{got:?}");
    // And a client that does complete its handshake still gets in.
    let out = tls_pub(b.tls, &["--cafile", s(&ca.pem())]);
    assert!(ok(&out), "{}", stderr(&out));
}

#[test]
fn bad_tls_files_stop_the_start_naming_the_key() {
    let dir = scratch_dir("tls-bad");
    let ca = Ca::new(&dir, "ca");
    let (cert, key) = ca.issue("server", "localhost", true);
    let (_, other_key) = ca.issue("other", "localhost", true);
    std::fs::write(dir.join("empty.pem"), "# nothing here\n").unwrap();
    for (tls, want) in [
        (
            format!("cert = \"missing.pem\", key = {:?}", s(&key)),
            "key 'listener.tls.cert': ",
        ),
        (
            format!("cert = \"empty.pem\", key = {:?}", s(&key)),
            "empty.pem: no certificate in the PEM file",
        ),
        (
            format!("cert = {:?}, key = \"empty.pem\"", s(&cert)),
            "key 'listener.tls.key': ",
        ),
        (
            format!("cert = {:?}, key = {:?}", s(&cert), s(&other_key)),
            "the private key does not match the certificate",
        ),
        (
            format!(
                "cert = {:?}, key = {:?}, client_ca = \"empty.pem\"",
                s(&cert),
                s(&key)
            ),
            "key 'listener.tls.client_ca': ",
        ),
    ] {
        let conf = dir.join("bad.toml");
        std::fs::write(
            &conf,
            format!("[[listener]]\nbind = \"127.0.0.1:0\"\ntls = {{ {tls} }}\n"),
        )
        .unwrap();
        let out = run_with_timeout(
            Command::new(musqratt()).args(["serve", "--in-memory", "-c", s(&conf)]),
            Duration::from_secs(10),
        );
        let err = stderr(&out);
        assert!(!ok(&out), "started with {tls}");
        assert!(err.contains("bad.toml:3: "), "{err}");
        assert!(err.contains(want), "want {want:?}: {err}");
    }
}
