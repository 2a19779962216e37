//! Issue 15, point 1: `musqratt pub/sub` over TLS (`--cafile`, `--cert`, `--key`,
//! `--insecure`, client/tls.rs) beside mosquitto's clients, and a TLS subscriber that stops
//! reading (the broker's records wait for WRITABLE, transport/tls.rs).

mod common;
mod tls_common;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use rcgen::{CertificateParams, DnType, KeyPair};
use tls_common::*;

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
