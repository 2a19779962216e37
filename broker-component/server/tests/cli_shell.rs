//! `musqratt shell` scripted through stdin against the real broker: every command, wrong
//! arguments, a dead broker, held messages, message expiry, sessions kept and deleted.
//! (Interactive use on a terminal: cli_tty.rs.)

mod cli_common;

use cli_common::*;
use std::thread;
use std::time::Duration;

const VERSIONS: [&str; 2] = ["311", "5"];

#[test]
fn every_command() {
    let b = broker();
    let file = scratch_dir("shell-file").join("payload.bin");
    std::fs::write(&file, b"from a file").unwrap();
    for v in VERSIONS {
        let script = format!(
            "help\n\
             connect me-{v}\n\
             sub -q 1 news{v}/# other\n\
             pub news{v}/a word\n\
             pub -q 1 news{v}/b \"two words\"\n\
             pub -q 2 -r news{v}/c @{}\n\
             unsub news{v}/#\n\
             pub news{v}/d unheard\n\
             disconnect\n\
             quit\n\
             pub never sent\n",
            file.display()
        );
        let (status, out, err) = run_script(b.port(), &["-V", v], &script);
        let all = format!("stdout:\n{}\nstderr:\n{}", out.join("\n"), err.join("\n"));
        assert!(status.success(), "v{v}: exit {status}\n{all}");
        assert!(errors(&err).is_empty(), "v{v}: errors\n{all}");
        assert_eq!(
            out,
            [
                format!("news{v}/a word"),
                format!("news{v}/b two words"),
                format!("news{v}/c from a file")
            ],
            "v{v}: messages\n{all}"
        );
        for want in [
            "connect [-x SECS]",
            &format!("connected me-{v} (CONNACK Success, session present: no)"),
            &format!("subscribed news{v}/# (granted QoS 1)"),
            "subscribed other (granted QoS 1)",
            &format!("published news{v}/a (4 bytes, QoS 0)"),
            &format!("published news{v}/b (9 bytes, QoS 1"),
            &format!("published news{v}/c (11 bytes, QoS 2, retained"),
            &format!("unsubscribed news{v}/#"),
            &format!("disconnected me-{v} (session deleted)"),
        ] {
            assert!(
                err.iter().any(|l| l.contains(want)),
                "v{v}: no `{want}`\n{all}"
            );
        }
    }
}

#[test]
fn wrong_arguments_print_one_error_each_and_the_shell_goes_on() {
    let b = broker();
    let bad = [
        ("frobnicate", "error: unknown command 'frobnicate'"),
        ("pub t x", "error: pub: not connected (use connect first)"),
        ("sub t", "error: sub: not connected"),
        ("unsub t", "error: unsub: not connected"),
        ("disconnect", "error: disconnect: not connected"),
        ("connect a b", "error: connect: too many arguments"),
        (
            "connect -x soon a",
            "error: connect: -x needs a number of seconds",
        ),
        ("connect -z a", "error: connect: unknown option -z"),
        ("help me", "error: help: takes no arguments"),
    ];
    let bad_connected = [
        ("pub", "error: pub: missing topic and payload"),
        ("pub t", "error: pub: missing payload"),
        ("pub t a b", "error: pub: too many arguments"),
        ("pub -q 3 t x", "error: pub: -q needs 0, 1 or 2"),
        ("pub -e t x", "error: pub: -e needs a number of seconds"),
        (
            "pub t/# x",
            "error: pub t/#: a topic name cannot contain + or #",
        ),
        ("pub t \"open", "error: unterminated"),
        (
            "pub t @/nonexistent/file",
            "error: pub: cannot read /nonexistent/file",
        ),
        ("sub", "error: sub: missing topic"),
        (
            "sub a/#/b",
            "error: sub a/#/b: + and # must fill a whole level",
        ),
        ("unsub", "error: unsub: missing topic"),
        (
            "disconnect nobody-here",
            "error: disconnect nobody-here: not connected from this shell",
        ),
    ];
    let mut sh = Running::shell(b.port(), &[]);
    for (line, _) in bad {
        sh.send(line);
    }
    sh.send("connect c1");
    sh.expect_err("connected c1");
    for (line, _) in bad_connected {
        sh.send(line);
    }
    // Still working after all that.
    sh.send("sub ok");
    sh.send("pub ok fine");
    sh.expect_out("ok fine");
    let (status, out, err) = sh.finish();
    let all = format!("stdout:\n{}\nstderr:\n{}", out.join("\n"), err.join("\n"));
    assert_eq!(
        status.code(),
        Some(1),
        "a failed command makes the exit status 1\n{all}"
    );
    let errs = errors(&err);
    assert_eq!(
        errs.len(),
        bad.len() + bad_connected.len(),
        "one error line each\n{all}"
    );
    for ((line, want), got) in bad.iter().chain(&bad_connected).zip(errs) {
        assert!(
            got.starts_with(want),
            "`{line}`: want `{want}`, got `{got}`\n{all}"
        );
    }
    // Every error is one line: nothing else on stderr but results.
    assert!(err.iter().all(|l| !l.is_empty()), "{all}");
}

#[test]
fn message_expiry_needs_mqtt5() {
    let b = broker();
    let (status, _, err) = run_script(b.port(), &["-V", "311"], "connect a\npub -e 5 t x\n");
    assert_eq!(status.code(), Some(1));
    assert!(
        err.iter()
            .any(|l| l.starts_with("error: pub: -e (message expiry) needs MQTT 5")),
        "{err:?}"
    );
}

#[test]
fn dead_broker() {
    // Nobody listens on this port.
    let port = free_port();
    let (status, _, err) = run_script(port, &[], "connect a\nconnect b\n");
    assert_eq!(status.code(), Some(1), "{err:?}");
    let errs = errors(&err);
    assert_eq!(errs.len(), 2, "{err:?}");
    assert_eq!(
        errs[0],
        &format!("error: connect a: cannot connect to 127.0.0.1:{port}: Connection refused")
    );

    // A broker that dies under a connected shell.
    let b = broker();
    let port = b.port();
    let mut sh = Running::shell(port, &[]);
    sh.send("connect a");
    sh.expect_err("connected a");
    drop(b);
    // "connection closed by the broker" (or "connection lost: ..." should the kernel reset it).
    sh.expect_err("error: a: connection ");
    sh.send("pub t x");
    sh.expect_err("error: pub t: connection ");
    sh.send("connect b");
    sh.expect_err(&format!(
        "error: connect b: cannot connect to 127.0.0.1:{port}"
    ));
    let (status, _, err) = sh.finish();
    assert_eq!(status.code(), Some(1), "{err:?}");
}

#[test]
fn refused_connect_prints_the_reason() {
    let b = broker();
    // 3.1.1: an empty client id with clean session off is refused (identifier rejected).
    let (status, _, err) = run_script(b.port(), &["-V", "311"], "connect -x 60 \"\"\n");
    assert_eq!(status.code(), Some(1), "{err:?}");
    assert_eq!(
        errors(&err),
        ["error: connect \"\": connection refused: 2 identifier rejected"],
        "{err:?}"
    );
}

#[test]
fn held_message_is_delivered_to_the_next_subscriber() {
    let b = broker();
    for v in VERSIONS {
        // Published by one shell to a topic nobody subscribes to...
        let (status, _, err) = run_script(
            b.port(),
            &["-V", v],
            &format!("connect p{v}\npub -q 1 held/{v} \"kept for you\"\nquit\n"),
        );
        assert!(status.success(), "{err:?}");
        // ...and received by another that subscribes later, once.
        let script = format!("connect s{v}\nsub -q 1 held/{v}\nunsub held/{v}\nsub held/{v}\n");
        let (status, out, err) = run_script(b.port(), &["-V", v], &script);
        assert!(status.success(), "{err:?}");
        assert_eq!(out, [format!("held/{v} kept for you")], "{err:?}");
    }
}

#[test]
fn expired_message_is_not_delivered() {
    let b = broker();
    let mut sh = Running::shell(b.port(), &[]);
    sh.send("connect p");
    sh.send("pub -q 1 -e 1 soon/gone \"short lived\"");
    sh.send("pub -q 1 -e 600 soon/kept \"long lived\"");
    sh.expect_err("published soon/kept");
    // Well past the 1 s expiry (no upper bound matters: it must never arrive).
    thread::sleep(Duration::from_millis(2500));
    sh.send("sub -q 1 soon/#");
    sh.expect_err("subscribed soon/#");
    // A marker published after the SUBACK: anything held would have arrived before it.
    sh.send("pub -q 1 soon/marker end");
    sh.expect_out("soon/marker end");
    let (status, out, err) = sh.finish();
    assert!(status.success(), "{err:?}");
    assert_eq!(out, ["soon/kept long lived", "soon/marker end"], "{err:?}");
}

#[test]
fn session_kept_with_expiry_and_deleted_by_disconnect() {
    let b = broker();
    for v in VERSIONS {
        let id = format!("keeper{v}");
        let a = ["-V", v];
        let (st, _, err) = run_script(
            b.port(),
            &a,
            &format!("connect -x 300 {id}\nsub -q 1 box/{v}\nquit\n"),
        );
        assert!(st.success(), "{err:?}");
        let (st, _, err) = run_script(
            b.port(),
            &a,
            &format!("connect other{v}\npub -q 1 box/{v} \"while away\"\n"),
        );
        assert!(st.success(), "{err:?}");
        // The session survived quit: present, with the message queued for it.
        let (st, out, err) =
            run_script(b.port(), &a, &format!("connect -x 300 {id}\ndisconnect\n"));
        assert!(st.success(), "{err:?}");
        assert!(
            err.iter().any(|l| l.contains(&format!(
                "connected {id} (CONNACK Success, session present: yes)"
            ))),
            "v{v}: {err:?}"
        );
        assert_eq!(out, [format!("box/{v} while away")], "v{v}: {err:?}");
        assert!(err
            .iter()
            .any(|l| l == &format!("disconnected {id} (session deleted)")));
        // disconnect deleted it.
        let (st, _, err) = run_script(b.port(), &a, &format!("connect -x 300 {id}\nquit\n"));
        assert!(st.success(), "{err:?}");
        assert!(
            err.iter().any(|l| l.contains("session present: no")),
            "v{v}: disconnect must delete the session: {err:?}"
        );
        // disconnect ID of a client this shell does not hold deletes its session too.
        let (st, _, err) = run_script(b.port(), &a, &format!("disconnect {id}\n"));
        assert!(st.success(), "{err:?}");
        let (st, _, err) = run_script(b.port(), &a, &format!("connect -x 300 {id}\ndisconnect\n"));
        assert!(st.success(), "{err:?}");
        assert!(
            err.iter().any(|l| l.contains("session present: no")),
            "v{v}: {err:?}"
        );
    }
}

#[test]
fn several_connections_and_the_current_one() {
    let b = broker();
    let mut sh = Running::shell(b.port(), &[]);
    sh.send("connect listener");
    sh.send("sub room");
    sh.send("connect talker");
    sh.expect_err("connected talker");
    // pub goes from the current connection (talker); the message reaches listener.
    sh.send("pub room hello");
    sh.expect_out("room hello");
    // connect ID of a held connection switches to it.
    sh.send("connect listener");
    sh.expect_err("using listener (already connected)");
    sh.send("unsub room");
    sh.expect_err("unsubscribed room");
    sh.send("disconnect talker");
    sh.expect_err("disconnected talker (session deleted); current connection: listener");
    sh.send("disconnect");
    sh.expect_err("disconnected listener (session deleted)");
    sh.send("connect");
    sh.expect_err("connected musqratt-");
    let (status, out, err) = sh.finish();
    assert!(status.success(), "{err:?}");
    assert_eq!(out, ["room hello"]);
}
