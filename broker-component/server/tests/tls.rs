//! Issue 15, point 1: TLS listeners (docs/security.md "TLS"), with real clients: Debian's
//! mosquitto_pub/mosquitto_sub with `--cafile` (and `--cert`/`--key` for client certificates),
//! and raw TCP for what no well-behaved client does (plaintext on the TLS port, a stalled
//! handshake). Certificates are made in each test with rcgen: a CA, a server certificate for
//! 127.0.0.1, client certificates with a CN.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use musqratt_test_support::{run_with_timeout, scratch_dir, Lines};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};

/// A CA that signs server and client certificates, written as PEM files into a directory.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
    dir: PathBuf,
    name: String,
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        let cert = p.self_signed(&key).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        Ca {
            cert,
            key,
            dir: dir.to_path_buf(),
            name: name.into(),
        }
    }

    fn pem(&self) -> PathBuf {
        self.dir.join(format!("{}.pem", self.name))
    }

    /// A certificate signed by this CA: `{file}.pem` and `{file}.key`.
    fn issue(&self, file: &str, cn: &str, server: bool) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let sans = if server {
            vec!["127.0.0.1".to_string(), "localhost".to_string()]
        } else {
            Vec::new()
        };
        let mut p = CertificateParams::new(sans).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        let cert = p.signed_by(&key, &self.cert, &self.key).unwrap();
        let (c, k) = (
            self.dir.join(format!("{file}.pem")),
            self.dir.join(format!("{file}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }
}

/// `musqratt serve -c CONF` with a plain and a TLS listener, both on port 0; killed on drop.
/// (The shared `Broker` passes `--listen`, which replaces the file's listeners.)
struct TlsBroker {
    child: Child,
    logs: Lines,
    plain: u16,
    tls: u16,
}

impl TlsBroker {
    fn start(dir: &Path, tls: &str, extra: &str) -> TlsBroker {
        let conf = dir.join("musqratt.toml");
        std::fs::write(
            &conf,
            format!(
                "{extra}\n[[listener]]\nbind = \"127.0.0.1:0\"\n\
                 [[listener]]\nbind = \"127.0.0.1:0\"\ntls = {{ {tls} }}\n"
            ),
        )
        .unwrap();
        let mut child = Command::new(musqratt())
            .args(["serve", "--in-memory", "-c"])
            .arg(&conf)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let logs = Lines::default();
        logs.collect(child.stdout.take().unwrap());
        logs.collect(child.stderr.take().unwrap());
        let port = |l: &[String], scheme: &str| {
            l.iter().find_map(|l| {
                let rest = l
                    .split(&format!("listening on {scheme}://127.0.0.1:"))
                    .nth(1)?;
                rest.trim().parse::<u16>().ok()
            })
        };
        let up = logs.wait_until(START_TIMEOUT, |l| {
            port(l, "mqtt").is_some() && port(l, "mqtts").is_some()
        });
        let lines = logs.snapshot();
        assert!(up, "broker did not start:\n{}", lines.join("\n"));
        TlsBroker {
            child,
            plain: port(&lines, "mqtt").unwrap(),
            tls: port(&lines, "mqtts").unwrap(),
            logs,
        }
    }

    fn wait_for_log(&self, needle: &str) -> bool {
        self.logs
            .wait_until(WAIT, |l| l.iter().any(|l| l.contains(needle)))
    }

    fn count(&self, needle: &str) -> usize {
        self.logs
            .snapshot()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }
}

impl Drop for TlsBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- broker log ---\n{}", self.logs.snapshot().join("\n"));
        }
    }
}

fn musqratt() -> PathBuf {
    musqratt_test_support::broker_bin(Some(Path::new(env!("CARGO_BIN_EXE_musqratt"))))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The `tls = { ... }` of a listener with a server certificate from `ca`.
fn server_tls(ca: &Ca, extra: &str) -> String {
    let (cert, key) = ca.issue("server", "localhost", true);
    format!("cert = {:?}, key = {:?}{extra}", s(&cert), s(&key))
}

/// mosquitto_pub over TLS to 127.0.0.1:`port`; its output, whatever the status.
fn tls_pub(port: u16, args: &[&str]) -> Output {
    let mut c = Command::new("mosquitto_pub");
    c.args(["-h", "127.0.0.1", "-p", &port.to_string()]);
    if !args.contains(&"-t") {
        c.args(["-t", "tls/t"]);
    }
    if !args.contains(&"-m") {
        c.args(["-m", "x"]);
    }
    run_with_timeout(c.args(args), Duration::from_secs(10))
}

fn ok(out: &Output) -> bool {
    out.status.success()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into()
}

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

/// `musqratt pub`/`sub` (our own client, rustls) with `--cafile`, `--cert`, `--key`.
fn our_client(sub: &str, port: u16, args: &[&str]) -> Command {
    let mut c = Command::new(musqratt());
    c.args([sub, "-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args);
    c
}

#[test]
fn musqratt_pub_and_sub_over_tls_with_and_without_client_certificates() {
    let dir = scratch_dir("tls-ours");
    let ca = Ca::new(&dir, "ca");
    let extra = format!(
        ", client_ca = {:?}, require_certificate = false",
        s(&ca.pem())
    );
    let b = TlsBroker::start(&dir, &server_tls(&ca, &extra), "");
    let cafile = ca.pem();
    let (cert, key) = ca.issue("client", "ours", false);
    for version in ["311", "5"] {
        let topic = format!("tls/ours/{version}");
        // Our sub with a client certificate, our pub without; mosquitto_sub beside them.
        let mut sub = our_client(
            "sub",
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
                "-t",
                &topic,
                "-q",
                "2",
                "-C",
                "3",
                "-W",
                "20",
                "-d",
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        let said = Lines::default();
        let reader = said.collect(sub.stderr.take().unwrap());
        // -d: it says "subscribed" on stderr once its SUBACK is in.
        assert!(
            said.wait_until(WAIT, |l| l.iter().any(|l| l.contains("subscribed "))),
            "v{version}: {:?}",
            said.snapshot()
        );
        let theirs = Sub::start(b.tls, &["--cafile", s(&cafile), "-t", &topic, "-q", "2"]);
        for qos in ["0", "1", "2"] {
            let out = run_with_timeout(
                &mut our_client(
                    "pub",
                    b.tls,
                    &[
                        "--cafile",
                        s(&cafile),
                        "-V",
                        version,
                        "-t",
                        &topic,
                        "-q",
                        qos,
                        "-m",
                        &format!("q{qos}"),
                    ],
                ),
                WAIT,
            );
            assert!(ok(&out), "v{version} q{qos}: {}", stderr(&out));
        }
        let out = sub.wait_with_output().unwrap();
        let _ = reader.join();
        assert!(out.status.success(), "v{version}: {:?}", said.snapshot());
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "q0\nq1\nq2\n",
            "v{version}"
        );
        let got: Vec<String> = theirs
            .wait_messages(3, WAIT)
            .into_iter()
            .map(|m| m.payload)
            .collect();
        assert_eq!(got, ["q0", "q1", "q2"], "v{version}");
    }
    // A CA that does not sign the broker's certificate: our client's handshake fails.
    let other = Ca::new(&dir, "other");
    let out = run_with_timeout(
        &mut our_client(
            "pub",
            b.tls,
            &["--cafile", s(&other.pem()), "-t", "a", "-m", "x"],
        ),
        WAIT,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("TLS handshake failed"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn insecure_skips_the_host_name_check_only_as_mosquitto() {
    let dir = scratch_dir("tls-insecure");
    let ca = Ca::new(&dir, "ca");
    let other = Ca::new(&dir, "other");
    // A certificate for another name than the 127.0.0.1 the clients connect to.
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec!["broker.example".to_string()]).unwrap();
    p.distinguished_name
        .push(DnType::CommonName, "broker.example");
    let cert = p.signed_by(&key, &ca.cert, &ca.key).unwrap();
    std::fs::write(dir.join("named.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("named.key"), key.serialize_pem()).unwrap();
    let tls = format!(
        "cert = {:?}, key = {:?}",
        s(&dir.join("named.pem")),
        s(&dir.join("named.key"))
    );
    let b = TlsBroker::start(&dir, &tls, "");
    let run = |ours: bool, cafile: &Path, insecure: bool| {
        let mut args = vec!["--cafile", s(cafile), "-t", "tls/insecure", "-m", "x"];
        if insecure {
            args.push("--insecure");
        }
        let out = if ours {
            run_with_timeout(&mut our_client("pub", b.tls, &args), WAIT)
        } else {
            tls_pub(b.tls, &args)
        };
        ok(&out)
    };
    for ours in [true, false] {
        // The name does not match: refused, unless --insecure.
        assert!(
            !run(ours, &ca.pem(), false),
            "ours={ours}: name not checked"
        );
        assert!(
            run(ours, &ca.pem(), true),
            "ours={ours}: --insecure refused"
        );
        // --insecure still checks the chain.
        assert!(
            !run(ours, &other.pem(), true),
            "ours={ours}: chain not checked"
        );
    }
}

#[test]
fn a_stopped_tls_subscriber_gets_everything_in_order_once_it_reads_again() {
    // The broker's writes to a subscriber that does not read block in the socket: TLS records
    // wait in the session and output in pending_out until WRITABLE (transport/tls.rs).
    let dir = scratch_dir("tls-stopped");
    let ca = Ca::new(&dir, "ca");
    let b = TlsBroker::start(
        &dir,
        &server_tls(&ca, ""),
        "[limits]\nmax_inflight = 1000\n",
    );
    let cafile = ca.pem();
    const N: usize = 150;
    const SIZE: usize = 100_000;
    let mut sub = our_client(
        "sub",
        b.tls,
        &[
            "--cafile",
            s(&cafile),
            "-V",
            "5",
            "-t",
            "tls/stopped",
            "-q",
            "1",
            "-C",
            &N.to_string(),
            "-W",
            "60",
            "-d",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let said = Lines::default();
    let err_reader = said.collect(sub.stderr.take().unwrap());
    assert!(said.wait_until(WAIT, |l| l.iter().any(|l| l.contains("subscribed "))));
    let mut stdout = sub.stdout.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        let _ = stdout.read_to_end(&mut all);
        all
    });
    let pid = sub.id().to_string();
    let signal = |sig: &str| {
        let st = Command::new("kill").args([sig, &pid]).status().unwrap();
        assert!(st.success());
    };
    signal("-STOP");
    // 15 MB at QoS 1 while it is stopped: far more than the socket buffers hold.
    let lines: String = (0..N)
        .map(|i| format!("{i:05}:{}\n", "p".repeat(SIZE)))
        .collect();
    let mut publisher = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &b.tls.to_string(),
            "--cafile",
            s(&cafile),
        ])
        .args(["-t", "tls/stopped", "-q", "1", "-l"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = publisher.stdin.take().unwrap();
    let writer =
        std::thread::spawn(move || std::io::Write::write_all(&mut stdin, lines.as_bytes()));
    // The publisher is flow-controlled or its messages queue: either way the broker has
    // written what the socket takes. Let the subscriber read again.
    assert!(writer.join().unwrap().is_ok());
    signal("-CONT");
    let status = musqratt_test_support::wait_timeout(&mut sub, Duration::from_secs(60));
    let got = out_reader.join().unwrap();
    let _ = err_reader.join();
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}: {:?}",
        said.snapshot()
    );
    let got = String::from_utf8(got).unwrap();
    let got: Vec<&str> = got.lines().collect();
    assert_eq!(got.len(), N);
    for (i, line) in got.iter().enumerate() {
        assert!(
            line.starts_with(&format!("{i:05}:")),
            "message {i} out of order"
        );
        assert_eq!(line.len(), 6 + SIZE, "message {i} cut");
    }
    let _ = publisher.kill();
    let _ = publisher.wait();
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

fn hup(b: &TlsBroker) {
    let out = Command::new("kill")
        .args(["-HUP", &b.child.id().to_string()])
        .output()
        .unwrap();
    assert!(out.status.success());
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
