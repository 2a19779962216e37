//! The WebSocket listener (`serve --listen-ws`, docs/security.md "WebSocket") at the byte level:
//! a hand-written RFC 6455 client over real TCP, beside mosquitto clients on the plain listener.
//! Covers what a real WebSocket client never sends: bad handshakes, unmasked, text and oversize
//! frames, a handshake that never ends, a ping flood that reads nothing; and the same client over
//! TLS (wss). The client and the brokers are in ws_common/. paho's websockets transport and mqtt.js
//! cover the well-behaved side (tests/paho/test_websocket.py).

mod common;
mod ws_common;

use std::io::Write;
use std::time::Instant;

use common::{mosquitto_pub, raw, Sub, WAIT};
use musqratt_test_support::hostile;
use raw::Version;
use ws_common::*;

/// What a test client sends to break the protocol.
type Breaker = Box<dyn Fn(&mut Ws)>;

#[test]
fn raw_ws_client_and_mosquitto_clients_both_versions() {
    let (b, port) = ws_broker(&[]);
    for v in [Version::V311, Version::V5] {
        let vflag = if v == Version::V5 {
            "mqttv5"
        } else {
            "mqttv311"
        };
        let mut ws = Ws::open(port);
        // CONNECT split over two frames, SUBSCRIBE in the second one: a byte stream.
        let connect = raw::connect(v, &format!("ws-{vflag}"));
        let (a, rest) = connect.split_at(3);
        ws.send(a);
        let mut second = rest.to_vec();
        second.extend(raw::subscribe(v, 1, "ws/in", 1));
        ws.send(&second);
        connack_ok(&mut ws);
        assert_eq!(ws.packet().0, 0x90, "SUBACK");
        // Plain TCP → WebSocket.
        mosquitto_pub(
            b.port(),
            &["-V", vflag, "-t", "ws/in", "-q", "1", "-m", "to-ws"],
        );
        let (first, body) = ws.packet();
        assert_eq!(first & 0xf0, 0x30, "PUBLISH");
        assert!(body.windows(5).any(|w| w == b"to-ws"), "{body:?}");
        let id = hostile::publish_packet_id(&body).expect("QoS 1");
        ws.send(&hostile::ack(0x40, id));
        // WebSocket → plain TCP, QoS 1, a payload bigger than one frame's 16-bit length.
        let sub = Sub::start(b.port(), &["-V", vflag, "-t", "ws/out", "-q", "1"]);
        let payload = "p".repeat(70_000);
        ws.send(&hostile::publish(v, b"ws/out", payload.as_bytes(), 1, 7));
        let (first, body) = ws.packet();
        assert_eq!(first, 0x40, "PUBACK");
        assert_eq!(&body[..2], &7u16.to_be_bytes());
        let got = sub.wait_messages(1, WAIT);
        assert_eq!(got[0].payload, payload);
        assert_eq!((got[0].topic.as_str(), got[0].qos), ("ws/out", 1));
        ws.send(&[0xe0, 0x00]); // DISCONNECT
                                // The broker closes: a WebSocket Close, then FIN.
        ws.expect_close(1000);
    }
}

#[test]
fn bad_handshakes_get_an_http_error_and_close() {
    let (b, port) = ws_broker(&[]);
    let upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\n";
    let cases = [
        (request(""), "400", "not a WebSocket upgrade"),
        (
            request(&format!("{upgrade}Sec-WebSocket-Version: 13\r\n")),
            "400",
            "missing Sec-WebSocket-Key",
        ),
        (
            request(&format!(
                "{upgrade}Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\
                 Sec-WebSocket-Protocol: stomp, wamp\r\n"
            )),
            "400",
            "no MQTT subprotocol offered",
        ),
        (
            request(&format!(
                "{upgrade}Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 8\r\n"
            )),
            "426",
            "Sec-WebSocket-Version must be 13",
        ),
        // MQTT straight to the WebSocket port.
        (
            String::from_utf8(raw::connect(Version::V311, "lost")).unwrap() + "\r\n\r\n",
            "400",
            "not an HTTP/1.1 request line",
        ),
    ];
    for (req, status, why) in cases {
        let mut ws = Ws::tcp(port);
        let head = ws.handshake(&req);
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status} ")),
            "{req:?} → {head}"
        );
        ws.expect_eof();
        assert!(
            b.wait_for_log(
                &format!("closing connection: websocket: handshake refused ({status}): {why}"),
                WAIT
            ),
            "no log line for {why}"
        );
    }
    // Refused connections left the listener working.
    let mut ws = Ws::open(port);
    ws.send(&raw::connect(Version::V5, "after"));
    connack_ok(&mut ws);
}

#[test]
fn broken_frames_close_with_their_code_and_others_are_unaffected() {
    let (b, port, _dir) = strict_broker();
    // A subscriber on each listener, there before and checked after.
    let sub = Sub::start(b.port(), &["-t", "calm/#", "-q", "1"]);
    let mut calm = Ws::open(port);
    calm.send(&raw::connect(Version::V5, "calm-ws"));
    connack_ok(&mut calm);
    calm.send(&raw::subscribe(Version::V5, 1, "calm/#", 0));
    assert_eq!(calm.packet().0, 0x90);

    let connect = raw::connect(Version::V311, "victim");
    // (what the client sends after CONNECT, the close code, the log's reason)
    let cases: Vec<(Breaker, u16, &str)> = vec![
        (
            Box::new(|ws| ws.send_frame(0x82, &[0xc0, 0x00], false)),
            1002,
            "unmasked client frame",
        ),
        (
            Box::new(|ws| ws.send_frame(0x81, b"hello", true)),
            1003,
            "text frame",
        ),
        (
            // Only the header: a 2000-byte frame (max_packet_size is 1024) is refused before
            // its payload.
            Box::new(|ws| {
                let mut h = vec![0x82, 0x80 | 126];
                h.extend_from_slice(&2000u16.to_be_bytes());
                h.extend_from_slice(&[1, 2, 3, 4]);
                ws.s.write_all(&h).unwrap();
                ws.s.flush().unwrap();
            }),
            1009,
            "frame larger than max_packet_size",
        ),
        (
            Box::new(|ws| ws.send_frame(0x80, &[0xc0, 0x00], true)),
            1002,
            "continuation frame without a message",
        ),
    ];
    for (send, code, why) in cases {
        let mut ws = Ws::open(port);
        ws.send(&connect);
        connack_ok(&mut ws);
        send(&mut ws);
        ws.expect_close(code);
        assert!(
            b.wait_for_log(&format!("closing with {code}: {why}"), WAIT),
            "no log line for {why}"
        );
    }
    // A frame within the bound still goes through; the others saw nothing of the above.
    let mut ws = Ws::open(port);
    ws.send(&raw::connect(Version::V5, "fine"));
    connack_ok(&mut ws);
    ws.send(&hostile::publish(
        Version::V5,
        b"calm/x",
        &[b'z'; 900],
        0,
        0,
    ));
    let (first, body) = calm.packet();
    assert_eq!(first & 0xf0, 0x30);
    assert!(body.ends_with(&[b'z'; 900]));
    assert_eq!(sub.wait_messages(1, WAIT)[0].topic, "calm/x");
    hostile::qos1_round_trip(
        b.port(),
        "plain-after",
        WAIT,
        "after broken WebSocket frames",
    );
}

#[test]
fn ping_gets_pong_and_close_gets_close() {
    let (_b, port) = ws_broker(&[]);
    let mut ws = Ws::open(port);
    ws.send(&raw::connect(Version::V311, "pinger"));
    connack_ok(&mut ws);
    ws.send_frame(0x89, b"are you there", true);
    let f = ws.frame(Instant::now() + WAIT).expect("a pong");
    assert_eq!(
        f,
        Frame {
            first: 0x8a,
            masked: false,
            payload: b"are you there".to_vec()
        }
    );
    // MQTT still flows after a control frame between packets.
    ws.send(&raw::packet(0xc0, &[])); // PINGREQ
    assert_eq!(ws.packet().0, 0xd0, "PINGRESP");
    // A Close from the client: echoed, then the server closes.
    ws.send_frame(0x88, &4000u16.to_be_bytes(), true);
    ws.expect_close(4000);
}

#[test]
fn a_handshake_that_never_ends_is_cut_at_the_connect_timeout() {
    let (b, port, _dir) = strict_broker();
    let mut ws = Ws::tcp(port);
    // Half a request, then nothing: connect_timeout_secs = 1 closes it.
    ws.s.write_all(b"GET /mqtt HTTP/1.1\r\nHost: localhost\r\n")
        .unwrap();
    ws.expect_eof();
    assert!(ws.buf.is_empty(), "no response to half a request");
    // A request past 8 KiB is refused without waiting for its end.
    let mut ws = Ws::tcp(port);
    let mut big = String::from("GET /mqtt HTTP/1.1\r\n");
    big.push_str(&format!("X-Filler: {}\r\n", "f".repeat(9000)));
    let head = ws.handshake(&big);
    assert!(head.starts_with("HTTP/1.1 431 "), "{head}");
    ws.expect_eof();
    assert!(b.wait_for_log("request larger than 8 KiB", WAIT));
}

#[test]
fn wss_carries_mqtt_and_closes_broken_frames_with_their_code() {
    let b = WssBroker::start();
    let sub = Sub::start(b.plain, &["-t", "wss/#", "-q", "1"]);
    let mut ws = b.open();
    ws.send(&raw::connect(Version::V5, "wss-raw"));
    connack_ok(&mut ws);
    ws.send(&raw::subscribe(Version::V5, 1, "back", 1));
    assert_eq!(ws.packet().0, 0x90, "SUBACK");
    ws.send(&hostile::publish(Version::V5, b"wss/up", b"over tls", 1, 3));
    assert_eq!(ws.packet().0, 0x40, "PUBACK");
    assert_eq!(sub.wait_messages(1, WAIT)[0].payload, "over tls");
    mosquitto_pub(b.plain, &["-t", "back", "-q", "1", "-m", "down"]);
    let (first, body) = ws.packet();
    assert_eq!(first & 0xf0, 0x30, "PUBLISH");
    assert!(body.ends_with(b"down"));
    // Hostile frames over TLS get the same answers as over TCP.
    ws.send_frame(0x82, &[0xc0, 0x00], false);
    ws.expect_close(1002);
    let mut ws = b.open();
    let mut h = vec![0x82, 0x80 | 126];
    h.extend_from_slice(&2000u16.to_be_bytes());
    h.extend_from_slice(&[1, 2, 3, 4]);
    ws.s.write_all(&h).unwrap();
    ws.s.flush().unwrap();
    ws.expect_close(1009);
    // The listener and the other clients go on.
    let mut ws = b.open();
    ws.send(&raw::connect(Version::V311, "wss-after"));
    connack_ok(&mut ws);
    hostile::qos1_round_trip(b.plain, "plain-after-wss", WAIT, "after broken wss frames");
}

#[test]
fn a_client_that_pings_and_never_reads_is_not_read_either() {
    let (b, port) = ws_broker(&[]);
    hostile::round_trip_every_worker(b.port(), 2, "warm-up");
    let baseline = hostile::rss_kib(b.pid());
    let mut ws = Ws::open(port);
    ws.send(&raw::connect(Version::V311, "pinger"));
    connack_ok(&mut ws);
    // 1 MiB of pings (125-byte payloads) at a time, up to 64 MiB, never reading a pong: once its
    // pongs fill the connection's output bound the broker stops reading, the socket buffers fill
    // and the writes block (the timeout tells us so).
    let mut chunk = Vec::new();
    let mask = [1u8, 2, 3, 4];
    while chunk.len() < 1 << 20 {
        chunk.extend_from_slice(&[0x89, 0x80 | 125]);
        chunk.extend_from_slice(&mask);
        chunk.extend((0..125u8).map(|i| i ^ mask[usize::from(i) % 4]));
    }
    ws.tcp
        .set_write_timeout(Some(std::time::Duration::from_secs(2)))
        .unwrap();
    let mut sent_mib = 0;
    while sent_mib < 64 && ws.tcp.write_all(&chunk).is_ok() {
        sent_mib += 1;
    }
    assert!(
        sent_mib < 64,
        "the broker read 64 MiB of pings from a client that reads nothing"
    );
    let rss = hostile::rss_kib(b.pid());
    assert!(
        rss < baseline + 24 * 1024,
        "broker RSS grew from {baseline} KiB to {rss} KiB after {sent_mib} MiB of pings"
    );
    hostile::qos1_round_trip(b.port(), "beside-the-pinger", WAIT, "beside a ping flood");
    // Paused, not closed: once it reads, its pongs come.
    let f = ws.frame(Instant::now() + WAIT).expect("a pong");
    assert_eq!((f.first, f.payload.len()), (0x8a, 125));
}
