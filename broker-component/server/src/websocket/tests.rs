//! The codec alone: RFC 6455's own examples, and what a hostile client may send.

use bytes::BytesMut;

use super::handshake::{accept, MAX_REQUEST};
use super::{CloseCode, Error, Status, WebSocket};

const MAX: u64 = 1024;

fn request(extra: &str) -> String {
    format!(
        "GET /mqtt HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// A codec past a good handshake (subprotocol `mqtt`).
fn open() -> WebSocket {
    let mut ws = WebSocket::new(MAX);
    let (mut m, mut r) = (BytesMut::new(), BytesMut::new());
    let req = request("Sec-WebSocket-Protocol: mqtt\r\n");
    assert_eq!(ws.feed(req.as_bytes(), &mut m, &mut r), Ok(Status::Open));
    ws
}

/// A masked client frame.
fn client_frame(first: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut f = vec![first];
    match payload.len() {
        n @ 0..=125 => f.push(0x80 | n as u8),
        n @ 126..=0xFFFF => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

fn feed(ws: &mut WebSocket, wire: &[u8]) -> (Result<Status, Error>, Vec<u8>, Vec<u8>) {
    let (mut m, mut r) = (BytesMut::new(), BytesMut::new());
    let res = ws.feed(wire, &mut m, &mut r);
    (res, m.to_vec(), r.to_vec())
}

fn frame_error(res: Result<Status, Error>) -> CloseCode {
    match res {
        Err(Error::Frame(e)) => e.code,
        other => panic!("expected a frame error, got {other:?}"),
    }
}

fn refusal(res: Result<Status, Error>) -> u16 {
    match res {
        Err(Error::Handshake(r)) => r.status,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn accept_key_is_rfc_6455_example() {
    // §1.3.
    assert_eq!(
        accept("dGhlIHNhbXBsZSBub25jZQ=="),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
}

#[test]
fn handshake_answers_101_with_mqtt() {
    let mut ws = WebSocket::new(MAX);
    let req = request("Sec-WebSocket-Protocol: foo, mqtt\r\n");
    let (res, mqtt, reply) = feed(&mut ws, req.as_bytes());
    assert_eq!(res, Ok(Status::Open));
    assert!(mqtt.is_empty());
    let reply = String::from_utf8(reply).unwrap();
    assert!(
        reply.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{reply}"
    );
    assert!(reply.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    assert!(reply.contains("Sec-WebSocket-Protocol: mqtt\r\n"));
    assert!(reply.ends_with("\r\n\r\n"));
}

#[test]
fn handshake_accepts_mqttv31_and_no_subprotocol() {
    let mut ws = WebSocket::new(MAX);
    let (res, _, reply) = feed(
        &mut ws,
        request("Sec-WebSocket-Protocol: mqttv3.1\r\n").as_bytes(),
    );
    assert_eq!(res, Ok(Status::Open));
    assert!(String::from_utf8(reply)
        .unwrap()
        .contains("Sec-WebSocket-Protocol: mqttv3.1\r\n"));
    let mut ws = WebSocket::new(MAX);
    let (res, _, reply) = feed(&mut ws, request("").as_bytes());
    assert_eq!(res, Ok(Status::Open));
    assert!(!String::from_utf8(reply)
        .unwrap()
        .contains("Sec-WebSocket-Protocol"));
}

#[test]
fn handshake_byte_by_byte_then_a_frame_in_the_same_read() {
    let mut ws = WebSocket::new(MAX);
    let req = request("Sec-WebSocket-Protocol: mqtt\r\n");
    let (bytes, last) = req.as_bytes().split_at(req.len() - 1);
    for b in bytes {
        assert_eq!(feed(&mut ws, &[*b]).0, Ok(Status::Handshake));
    }
    let mut tail = last.to_vec();
    tail.extend(client_frame(0x82, b"\x10\x00", [1, 2, 3, 4]));
    let (res, mqtt, reply) = feed(&mut ws, &tail);
    assert_eq!(res, Ok(Status::Open));
    assert_eq!(mqtt, b"\x10\x00");
    assert!(reply.starts_with(b"HTTP/1.1 101"));
}

#[test]
fn bad_handshakes_are_refused_with_an_http_error() {
    let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let cases: Vec<(String, u16)> = vec![
        ("GET / HTTP/1.1\r\nHost: x\r\n\r\n".into(), 400),
        ("POST / HTTP/1.1\r\nHost: x\r\n\r\n".into(), 400),
        ("GET / HTTP/1.0\r\nHost: x\r\n\r\n".into(), 400),
        (
            "\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00\r\n\r\n".into(),
            400,
        ),
        (request("").replace(key, ""), 400),
        (
            request("").replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ="),
            400,
        ),
        (request("").replace("dGhlIHNhbXBsZSBub25jZQ==", "!!!"), 400),
        (request(key), 400),
        (request("").replace("Version: 13", "Version: 8"), 426),
        (
            request("").replace("Upgrade: websocket", "Upgrade: h2c"),
            400,
        ),
        (request("").replace("Host: example.com\r\n", ""), 400),
        (request("Sec-WebSocket-Protocol: wamp, stomp\r\n"), 400),
        (request(" folded\r\n"), 400),
        (request("Bad Name: x\r\n"), 400),
        (request("X-No-Colon\r\n"), 400),
        (request(&"X: y\r\n".repeat(70)), 431),
    ];
    for (req, status) in cases {
        let mut ws = WebSocket::new(MAX);
        let (res, mqtt, reply) = feed(&mut ws, req.as_bytes());
        assert_eq!(refusal(res), status, "{req:?}");
        assert!(mqtt.is_empty());
        let reply = String::from_utf8(reply).unwrap();
        assert!(reply.starts_with(&format!("HTTP/1.1 {status} ")), "{reply}");
        assert!(reply.contains("Connection: close\r\n"));
        // Done: nothing more is decoded.
        assert_eq!(ws.status(), Status::Closed);
        assert_eq!(feed(&mut ws, b"more").0, Ok(Status::Closed));
    }
}

#[test]
fn an_endless_request_is_refused_at_the_bound() {
    let mut ws = WebSocket::new(MAX);
    let line = format!("GET /{} HTTP/1.1\r\n", "a".repeat(100));
    assert_eq!(feed(&mut ws, line.as_bytes()).0, Ok(Status::Handshake));
    let junk = vec![b'x'; 1000];
    let mut fed = line.len();
    loop {
        let (res, _, reply) = feed(&mut ws, &junk);
        fed += junk.len();
        if res != Ok(Status::Handshake) {
            assert_eq!(refusal(res), 431);
            assert!(reply.starts_with(b"HTTP/1.1 431 "));
            break;
        }
        assert!(
            fed < MAX_REQUEST + junk.len(),
            "no refusal after {fed} bytes"
        );
    }
}

#[test]
fn binary_frames_are_a_byte_stream() {
    let mut ws = open();
    // One packet split over two frames, then two packets in one frame, fed a byte at a time.
    let mut wire = client_frame(0x82, b"\x30\x05\x00", [9, 8, 7, 6]);
    wire.extend(client_frame(0x82, b"\x01tab", [0xff, 0, 0x55, 1]));
    wire.extend(client_frame(0x82, b"\xc0\x00\xc0\x00", [0, 0, 0, 0]));
    let mut mqtt = Vec::new();
    for b in &wire {
        let (res, m, r) = feed(&mut ws, &[*b]);
        assert_eq!(res, Ok(Status::Open));
        assert!(r.is_empty());
        mqtt.extend(m);
    }
    assert_eq!(mqtt, b"\x30\x05\x00\x01tab\xc0\x00\xc0\x00");
}

#[test]
fn fragmented_message_with_a_ping_in_between() {
    let mut ws = open();
    let mut wire = client_frame(0x02, b"\x10", [1, 1, 1, 1]); // binary, FIN clear
    wire.extend(client_frame(0x89, b"hi", [2, 2, 2, 2])); // ping
    wire.extend(client_frame(0x80, b"\x00", [3, 3, 3, 3])); // continuation, FIN
    let (res, mqtt, reply) = feed(&mut ws, &wire);
    assert_eq!(res, Ok(Status::Open));
    assert_eq!(mqtt, b"\x10\x00");
    // §5.5.3: the pong echoes the ping's payload, unmasked.
    assert_eq!(reply, b"\x8a\x02hi");
}

#[test]
fn rfc_6455_example_frames() {
    // §5.7: a masked text frame "Hello" (refused: MQTT is binary), an unmasked one (refused: a
    // client must mask), and a masked ping.
    let mut ws = open();
    let (res, mqtt, reply) = feed(
        &mut ws,
        &[
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ],
    );
    assert_eq!(frame_error(res), CloseCode::UNSUPPORTED);
    assert!(mqtt.is_empty());
    assert_eq!(reply, b"\x88\x02\x03\xeb");
    let mut ws = open();
    let (res, _, reply) = feed(&mut ws, &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    assert_eq!(frame_error(res), CloseCode::PROTOCOL_ERROR);
    assert_eq!(reply, b"\x88\x02\x03\xea");
    let mut ws = open();
    let (res, _, reply) = feed(
        &mut ws,
        &client_frame(0x89, b"Hello", [0x37, 0xfa, 0x21, 0x3d]),
    );
    assert_eq!(res, Ok(Status::Open));
    assert_eq!(reply, [0x8a, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
}

#[test]
fn server_frames_are_unmasked_with_the_right_length_form() {
    for (n, header) in [
        (5usize, vec![0x82, 5]),
        (256, vec![0x82, 126, 1, 0]),
        (65536, vec![0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
    ] {
        let mut out = BytesMut::new();
        WebSocket::encode(&vec![7; n], &mut out);
        assert_eq!(out.get(..header.len()), Some(&header[..]));
        assert_eq!(out.len(), header.len() + n);
    }
}

#[test]
fn close_is_answered_and_ends_the_stream() {
    let mut ws = open();
    let mut wire = client_frame(0x88, b"\x03\xe8bye", [5, 6, 7, 8]);
    wire.extend(client_frame(0x82, b"\x10", [1, 2, 3, 4])); // after Close: ignored
    let (res, mqtt, reply) = feed(&mut ws, &wire);
    assert_eq!(res, Ok(Status::Closed));
    assert!(mqtt.is_empty());
    assert_eq!(reply, b"\x88\x02\x03\xe8");
    let mut ws = open();
    let (res, _, reply) = feed(&mut ws, &client_frame(0x88, b"", [0; 4]));
    assert_eq!(res, Ok(Status::Closed));
    assert_eq!(reply, b"\x88\x02\x03\xe8");
}

#[test]
fn protocol_violations_close_with_1002() {
    let cases: Vec<Vec<u8>> = vec![
        client_frame(0x80, b"\x10", [1; 4]), // continuation without a message
        client_frame(0xc2, b"\x10", [1; 4]), // RSV1 set
        client_frame(0x83, b"", [1; 4]),     // reserved opcode
        client_frame(0x09, b"", [1; 4]),     // fragmented ping
        client_frame(0x89, &[0; 126], [1; 4]), // ping longer than 125
        client_frame(0x88, b"\x03", [1; 4]), // close with one byte
        client_frame(0x88, b"\x03\xed", [1; 4]), // close code 1005 (reserved)
        [
            client_frame(0x02, b"\x10", [1; 4]),
            client_frame(0x82, b"\x00", [1; 4]),
        ]
        .concat(),
        vec![0x82, 0x02, 0x10, 0x00], // unmasked
    ];
    for wire in cases {
        let mut ws = open();
        let (res, _, reply) = feed(&mut ws, &wire);
        assert_eq!(frame_error(res), CloseCode::PROTOCOL_ERROR, "{wire:02x?}");
        assert_eq!(reply, b"\x88\x02\x03\xea");
        assert_eq!(ws.status(), Status::Closed);
    }
}

#[test]
fn oversize_frames_close_with_1009_before_their_payload() {
    let mut ws = open();
    // Only the header: the length alone decides, nothing of the payload is read.
    let header = [
        0x82,
        0x80 | 127,
        0x7f,
        0xff,
        0xff,
        0xff,
        0xff,
        0xff,
        0xff,
        0xff,
        1,
        2,
        3,
        4,
    ];
    let (res, mqtt, reply) = feed(&mut ws, &header);
    assert_eq!(frame_error(res), CloseCode::TOO_BIG);
    assert!(mqtt.is_empty());
    assert_eq!(reply, b"\x88\x02\x03\xf1");
    let mut ws = open();
    let (res, _, _) = feed(
        &mut ws,
        &client_frame(0x82, &vec![0; MAX as usize + 1], [1; 4]),
    );
    assert_eq!(frame_error(res), CloseCode::TOO_BIG);
    let mut ws = open();
    let (res, mqtt, _) = feed(&mut ws, &client_frame(0x82, &vec![0; MAX as usize], [1; 4]));
    assert_eq!(res, Ok(Status::Open));
    assert_eq!(mqtt.len(), MAX as usize);
}

#[test]
fn arbitrary_bytes_never_panic() {
    // A cheap deterministic scramble over handshake-shaped and frame-shaped inputs.
    let mut x: u32 = 0x1234_5678;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    for round in 0..2000 {
        let mut ws = if round % 2 == 0 {
            open()
        } else {
            WebSocket::new(MAX)
        };
        let mut wire = if round % 4 == 1 {
            request("").into_bytes()
        } else {
            Vec::new()
        };
        let len = next() % 300;
        wire.extend((0..len).map(|_| next() as u8));
        let _ = feed(&mut ws, &wire);
        let _ = feed(&mut ws, &wire);
    }
}
