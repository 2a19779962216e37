//! `musqratt pub` / `musqratt sub` against our broker and against Debian's Mosquitto, both ways
//! with mosquitto_pub / mosquitto_sub, in MQTT 3.1.1 and 5; their exit codes are compared with
//! mosquitto's own clients for the common failures.

mod cli_common;

use cli_common::*;
use std::thread;
use std::time::Duration;

/// (our -V, mosquitto's -V)
const VERSIONS: [(&str, &str); 2] = [("311", "mqttv311"), ("5", "mqttv5")];

/// Run a scenario against our broker and against Mosquitto.
fn on_both_brokers(scenario: impl Fn(u16, &str)) {
    let ours = broker();
    scenario(ours.port(), "musqratt");
    let theirs = Mosquitto::start();
    scenario(theirs.port(), "mosquitto");
}

/// Start `musqratt sub ARGS -d` and wait until it is subscribed.
fn our_sub(port: u16, args: &[&str]) -> Running {
    let mut a = vec!["-d"];
    a.extend_from_slice(args);
    let s = Running::start(client("sub", port, &a));
    s.expect_err("subscribed");
    s
}

#[test]
fn our_pub_to_mosquitto_sub() {
    let dir = scratch_dir("pub-file");
    let file = dir.join("msg");
    std::fs::write(&file, "file body").unwrap();
    on_both_brokers(|port, name| {
        for (v, mv) in VERSIONS {
            let t = format!("{name}/to-mosq/{v}");
            let sub = Sub::start(port, &["-V", mv, "-q", "2", "-t", &format!("{t}/#")]);
            let p = |args: &[&str]| {
                let out = our_pub(port, args);
                assert!(
                    out.status.success(),
                    "{name} v{v} pub {args:?}: {}",
                    text(&out.stderr)
                );
            };
            p(&["-V", v, "-t", &format!("{t}/m"), "-m", "hello world"]);
            p(&[
                "-V",
                v,
                "-t",
                &format!("{t}/q1"),
                "-m",
                "at least once",
                "-q",
                "1",
            ]);
            p(&[
                "-V",
                v,
                "-t",
                &format!("{t}/q2"),
                "-m",
                "exactly once",
                "-q",
                "2",
            ]);
            p(&[
                "-V",
                v,
                "-t",
                &format!("{t}/f"),
                "-f",
                file.to_str().unwrap(),
            ]);
            p(&["-V", v, "-t", &format!("{t}/n"), "-n"]);
            let msgs = sub.wait_messages(5, WAIT);
            // Compared as sets: mosquitto_sub prints a QoS 2 message when its PUBREL arrives,
            // so on a loaded machine the next publisher's QoS 0 message may print first.
            let mut got: Vec<_> = msgs
                .iter()
                .map(|m| (m.topic.clone(), m.payload.clone(), m.qos))
                .collect();
            got.sort();
            let mut want = [
                (format!("{t}/m"), "hello world".to_string(), 0),
                (format!("{t}/q1"), "at least once".to_string(), 1),
                (format!("{t}/q2"), "exactly once".to_string(), 2),
                (format!("{t}/f"), "file body".to_string(), 0),
                (format!("{t}/n"), String::new(), 0),
            ];
            want.sort();
            assert_eq!(got, want, "{name} v{v}\n{}", sub.output());
            // -l: one message per line of stdin, blank lines skipped.
            let mut pubber = Running::start(client(
                "pub",
                port,
                &["-V", v, "-t", &format!("{t}/l"), "-l", "-q", "1"],
            ));
            pubber.send("line one");
            pubber.send("");
            pubber.send("line two");
            let (st, _, err) = pubber.finish();
            assert!(st.success(), "{name} v{v} -l: {err:?}");
            let msgs = sub.wait_messages(7, WAIT);
            let lines: Vec<_> = msgs[5..].iter().map(|m| m.payload.as_str()).collect();
            assert_eq!(lines, ["line one", "line two"], "{name} v{v}");
        }
    });
}

#[test]
fn mosquitto_pub_to_our_sub() {
    on_both_brokers(|port, name| {
        for (v, mv) in VERSIONS {
            let t = format!("{name}/from-mosq/{v}");
            let sub = our_sub(
                port,
                &["-V", v, "-q", "2", "-v", "-C", "3", "-t", &format!("{t}/#")],
            );
            mosquitto_pub(port, &["-V", mv, "-t", &format!("{t}/a"), "-m", "zero"]);
            mosquitto_pub(
                port,
                &["-V", mv, "-t", &format!("{t}/b"), "-m", "one", "-q", "1"],
            );
            mosquitto_pub(
                port,
                &[
                    "-V",
                    mv,
                    "-t",
                    &format!("{t}/c"),
                    "-m",
                    "two words",
                    "-q",
                    "2",
                ],
            );
            let mut sub = sub;
            let (st, out, err) = sub.wait();
            assert!(st.success(), "{name} v{v}: -C 3 exits 0: {err:?}");
            assert_eq!(
                out,
                [
                    format!("{t}/a zero"),
                    format!("{t}/b one"),
                    format!("{t}/c two words")
                ],
                "{name} v{v}"
            );
            // Without -v: the payload only.
            let sub = our_sub(port, &["-V", v, "-C", "1", "-t", &t]);
            mosquitto_pub(port, &["-V", mv, "-t", &t, "-m", "bare"]);
            let mut sub = sub;
            let (st, out, _) = sub.wait();
            assert!(st.success());
            assert_eq!(out, ["bare"], "{name} v{v}");
        }
    });
}

#[test]
fn our_pub_to_our_sub_retained_and_persistent_sessions() {
    on_both_brokers(|port, name| {
        for (v, _) in VERSIONS {
            let t = format!("{name}/ours/{v}");
            let ok = |out: std::process::Output| {
                assert!(out.status.success(), "{name} v{v}: {}", text(&out.stderr))
            };
            // Retained: delivered to a later subscriber.
            ok(our_pub(
                port,
                &["-V", v, "-t", &t, "-m", "kept", "-r", "-q", "1"],
            ));
            let mut sub = our_sub(port, &["-V", v, "-C", "1", "-v", "-t", &t]);
            assert_eq!(sub.wait().1, [format!("{t} kept")], "{name} v{v}");
            ok(our_pub(port, &["-V", v, "-t", &t, "-n", "-r"])); // clear it

            // -c -i: the session and its subscription outlive the client.
            let id = format!("persist-{name}-{v}");
            let s = format!("{t}/session");
            let mut sub = our_sub(
                port,
                &["-V", v, "-c", "-i", &id, "-q", "1", "-t", &s, "-W", "1"],
            );
            assert_eq!(
                sub.wait().0.code(),
                Some(27),
                "{name} v{v}: -W times out with 27"
            );
            ok(our_pub(
                port,
                &["-V", v, "-t", &s, "-m", "while away", "-q", "1"],
            ));
            let mut sub = our_sub(
                port,
                &["-V", v, "-c", "-i", &id, "-q", "1", "-t", &s, "-C", "1"],
            );
            let (st, out, err) = sub.wait();
            assert!(st.success(), "{err:?}");
            assert_eq!(out, ["while away"], "{name} v{v}");
        }
    });
}

#[test]
fn held_and_expired_messages_on_our_broker() {
    let b = broker();
    let port = b.port();
    let ok = |out: std::process::Output| assert!(out.status.success(), "{}", text(&out.stderr));
    ok(our_pub(
        port,
        &["-t", "hold/a", "-m", "held for later", "-q", "1"],
    ));
    ok(our_pub(
        port,
        &["-t", "hold/b", "-m", "gone soon", "-q", "1", "-e", "1"],
    ));
    // Well past the 1 s expiry.
    thread::sleep(Duration::from_millis(2500));
    let sub = our_sub(port, &["-C", "2", "-v", "-t", "hold/#"]);
    ok(our_pub(port, &["-t", "hold/marker", "-m", "end"]));
    let mut sub = sub;
    let (st, out, err) = sub.wait();
    assert!(st.success(), "{err:?}");
    assert_eq!(out, ["hold/a held for later", "hold/marker end"]);
}

/// Exit status and stderr of one of our clients and of mosquitto's for the same arguments.
fn both_clients(ours: &str, port: u16, args: &[&str]) -> ((Option<i32>, String), Option<i32>) {
    let o = run_with_timeout(&mut client(ours, port, args), WAIT);
    let m = run_with_timeout(
        std::process::Command::new(format!("mosquitto_{ours}"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(args),
        WAIT,
    );
    ((o.status.code(), text(&o.stderr)), m.status.code())
}

#[test]
fn exit_codes_match_mosquitto() {
    // Unreachable broker.
    let port = free_port();
    for c in ["pub", "sub"] {
        let args: &[&str] = if c == "pub" {
            &["-t", "a", "-m", "x"]
        } else {
            &["-t", "a"]
        };
        let ((code, err), theirs) = both_clients(c, port, args);
        assert_eq!(code, Some(1), "{c}: {err}");
        assert_eq!(code, theirs, "{c}");
        assert_eq!(
            err.trim_end(),
            format!("error: cannot connect to 127.0.0.1:{port}: Connection refused")
        );
    }
    // A refused CONNECT: the exit status is the CONNACK code, as mosquitto's.
    let m = Mosquitto::start_with_config("allow_anonymous false");
    for (v, mv, code, reason) in [
        ("5", "mqttv5", 135, "0x87 Not authorized"),
        ("311", "mqttv311", 5, "5 not authorized"),
    ] {
        for c in ["pub", "sub"] {
            let mut args = vec!["-t", "a", "-V", mv];
            if c == "pub" {
                args.extend(["-m", "x"]);
            }
            let ((ours, err), theirs) = both_clients(c, m.port(), &args);
            assert_eq!(ours, Some(code), "{c} v{v}: {err}");
            assert_eq!(ours, theirs, "{c} v{v}");
            assert_eq!(
                err.trim_end(),
                format!("error: connection refused: {reason}")
            );
        }
    }
    // Usage errors and -W: 1 and 27.
    let b = broker();
    for (c, args, want) in [
        ("pub", &["-t", "a"][..], 1),
        ("pub", &["-t", "a/#", "-m", "x"][..], 1),
        ("pub", &["-t", "a", "-m", "x", "-q", "3"][..], 1),
        ("pub", &["-t", "a", "-m", "x", "--bogus"][..], 1),
        ("sub", &["-t", "a", "-c"][..], 1),
        ("sub", &["-t", "a", "-W", "1"][..], 27),
    ] {
        let ((ours, err), theirs) = both_clients(c, b.port(), args);
        assert_eq!(ours, Some(want), "{c} {args:?}: {err}");
        assert_eq!(ours, theirs, "{c} {args:?}");
        assert!(err.starts_with("error:"), "{c} {args:?}: {err}");
    }
}

#[test]
fn tls_files_that_cannot_be_used_are_clear_errors() {
    // TLS itself is tested in tls.rs; here: a bad --cafile stops the client before it connects.
    for args in [
        &["pub", "-t", "a", "-m", "x", "--cafile", "no-such-ca.pem"][..],
        &["sub", "-t", "a", "--cafile", "no-such-ca.pem"][..],
    ] {
        let out = run_with_timeout(&mut client(args[0], 1, &args[1..]), WAIT);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = text(&out.stderr);
        assert!(
            err.starts_with("error: --cafile no-such-ca.pem: cannot read: "),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn help_is_long_and_h_is_the_host() {
    for c in ["pub", "sub", "shell"] {
        let out = run_with_timeout(std::process::Command::new(bin()).args([c, "--help"]), WAIT);
        assert!(out.status.success());
        let help = text(&out.stdout);
        assert!(help.contains("-h, --host <HOST>"), "{c}: {help}");
        assert!(help.contains("-V, --protocol-version"), "{c}: {help}");
    }
}
