//! The WebSocket listener (`serve --listen-ws`, docs/security.md "WebSocket") at the byte level:
//! a hand-written RFC 6455 client over real TCP, beside mosquitto clients on the plain listener.
//! Covers what a real WebSocket client never sends: bad handshakes, unmasked, text and oversize
//! frames, and a handshake that never ends. paho's websockets transport covers the well-behaved
//! side (tests/paho/test_websocket.py).

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use common::{broker_with_args, mosquitto_pub, raw, Broker, Sub, WAIT};
use musqratt_test_support::hostile;
use raw::Version;

/// The port of the broker's WebSocket listener, from its `listening on ws://` line.
fn ws_port(b: &Broker) -> u16 {
    let want = "listening on ws://127.0.0.1:";
    assert!(b.wait_for_log(want, WAIT), "no WebSocket listener");
    b.logs()
        .iter()
        .find_map(|l| {
            let rest = &l[l.find(want)? + want.len()..];
            let end = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            rest[..end].parse().ok()
        })
        .expect("a port")
}

fn ws_broker(extra: &[&str]) -> (Broker, u16) {
    let mut args = vec!["--listen-ws", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let b = broker_with_args(&args);
    let port = ws_port(&b);
    (b, port)
}

/// A broker whose packets (and so frames) may be at most 1 KiB, and whose clients have 1 s to
/// send CONNECT (so a handshake that never ends is cut after it).
fn strict_broker() -> (Broker, u16, std::path::PathBuf) {
    let dir = musqratt_test_support::scratch_dir("ws-strict");
    let conf = dir.join("musqratt.toml");
    std::fs::write(
        &conf,
        "[limits]\nmax_packet_size = 1024\nconnect_timeout_secs = 1\n",
    )
    .unwrap();
    let (b, port) = ws_broker(&["--config", conf.to_str().unwrap()]);
    (b, port, dir)
}

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn request(headers: &str) -> String {
    format!("GET /mqtt HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n")
}

fn good_request() -> String {
    request(&format!(
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n"
    ))
}

/// What a test client reads and writes: the socket, or TLS over it.
trait Io: Read + Write {}
impl<T: Read + Write> Io for T {}

/// A hand-written WebSocket client.
struct Ws {
    /// The socket itself, for read timeouts.
    tcp: TcpStream,
    /// The byte stream the frames go over (the socket, or TLS over it).
    s: Box<dyn Io>,
    /// Bytes read and not yet parsed.
    buf: Vec<u8>,
    /// MQTT bytes from binary frames not yet parsed into packets.
    mqtt: Vec<u8>,
}

/// A frame from the server.
#[derive(Debug, PartialEq, Eq)]
struct Frame {
    first: u8,
    masked: bool,
    payload: Vec<u8>,
}

impl Ws {
    fn tcp(port: u16) -> Ws {
        let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_nodelay(true).unwrap();
        let s = Box::new(tcp.try_clone().unwrap());
        Ws::over(tcp, s)
    }

    fn over(tcp: TcpStream, s: Box<dyn Io>) -> Ws {
        Ws {
            tcp,
            s,
            buf: Vec::new(),
            mqtt: Vec::new(),
        }
    }

    /// Connected and upgraded: the 101 checked.
    fn open(port: u16) -> Ws {
        Ws::tcp(port).upgraded()
    }

    /// After the 101 (checked).
    fn upgraded(self) -> Ws {
        let mut ws = self;
        let head = ws.handshake(&good_request());
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        assert!(head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(head.contains("Sec-WebSocket-Protocol: mqtt\r\n"));
        ws
    }

    /// Sends a request; returns the response head (and body, for an error), up to the blank
    /// line, or everything until the server closes.
    fn handshake(&mut self, req: &str) -> String {
        self.s.write_all(req.as_bytes()).unwrap();
        self.s.flush().unwrap();
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end + 4]).into_owned();
                self.buf.drain(..end + 4);
                return head;
            }
            if !self.fill(deadline) {
                return String::from_utf8_lossy(&self.buf).into_owned();
            }
        }
    }

    /// Reads more; false once the server closed (or the deadline passed: the caller's assert
    /// then fails on what is missing).
    fn fill(&mut self, deadline: Instant) -> bool {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        self.tcp.set_read_timeout(Some(left)).unwrap();
        let mut chunk = [0u8; 16 * 1024];
        match self.s.read(&mut chunk) {
            Ok(0) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
            Err(_) => false,
        }
    }

    /// Sends one frame: `first` is FIN/RSV/opcode; masked unless `masked` is false.
    fn send_frame(&mut self, first: u8, payload: &[u8], masked: bool) {
        let mask = [0x5a, 0x01, 0xc3, 0x7e];
        let bit = if masked { 0x80 } else { 0 };
        let mut f = vec![first];
        match payload.len() {
            n @ 0..=125 => f.push(bit | n as u8),
            n @ 126..=0xFFFF => {
                f.push(bit | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(bit | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        if masked {
            f.extend_from_slice(&mask);
            f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        } else {
            f.extend_from_slice(payload);
        }
        self.s.write_all(&f).unwrap();
        self.s.flush().unwrap();
    }

    /// MQTT bytes in one masked binary frame.
    fn send(&mut self, mqtt: &[u8]) {
        self.send_frame(0x82, mqtt, true);
    }

    /// The next frame, or `None` if the server closed first.
    fn frame(&mut self, deadline: Instant) -> Option<Frame> {
        loop {
            if self.buf.len() >= 2 {
                let (b0, b1) = (self.buf[0], self.buf[1]);
                let (len, at) = match b1 & 0x7f {
                    126 if self.buf.len() >= 4 => {
                        (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                    }
                    127 if self.buf.len() >= 10 => {
                        let mut l = [0u8; 8];
                        l.copy_from_slice(&self.buf[2..10]);
                        (u64::from_be_bytes(l) as usize, 10)
                    }
                    126 | 127 => (usize::MAX, 0),
                    n => (n as usize, 2),
                };
                let masked = b1 & 0x80 != 0;
                let at = at + if masked { 4 } else { 0 };
                if len != usize::MAX && self.buf.len() >= at + len {
                    let payload = self.buf[at..at + len].to_vec();
                    self.buf.drain(..at + len);
                    return Some(Frame {
                        first: b0,
                        masked,
                        payload,
                    });
                }
            }
            if !self.fill(deadline) {
                return None;
            }
        }
    }

    /// The next MQTT packet out of binary frames (first byte, body).
    fn packet(&mut self) -> (u8, Vec<u8>) {
        let deadline = Instant::now() + WAIT;
        loop {
            if self.mqtt.len() >= 2 {
                let (len, n) = raw::read_varint(&self.mqtt[1..]);
                if n > 0 && self.mqtt.len() >= 1 + n + len {
                    let first = self.mqtt[0];
                    let body = self.mqtt[1 + n..1 + n + len].to_vec();
                    self.mqtt.drain(..1 + n + len);
                    return (first, body);
                }
            }
            let f = self.frame(deadline).expect("a frame before the close");
            assert_eq!(f.first, 0x82, "a binary frame with FIN: {f:?}");
            assert!(!f.masked, "server frames are not masked");
            self.mqtt.extend(f.payload);
        }
    }

    /// The server sent Close with `code`, then closed the TCP connection.
    fn expect_close(&mut self, code: u16) {
        let deadline = Instant::now() + WAIT;
        let f = self.frame(deadline).expect("a Close frame");
        assert_eq!(
            (f.first, f.payload.get(..2)),
            (0x88, Some(&code.to_be_bytes()[..]))
        );
        self.expect_eof();
    }

    fn expect_eof(&mut self) {
        let deadline = Instant::now() + WAIT;
        while self.fill(deadline) {}
        assert!(
            Instant::now() < deadline,
            "the server did not close the connection"
        );
    }
}

/// What a test client sends to break the protocol.
type Breaker = Box<dyn Fn(&mut Ws)>;

fn connack_ok(ws: &mut Ws) {
    let (first, body) = ws.packet();
    assert_eq!(first, 0x20, "CONNACK");
    assert_eq!(body.get(1), Some(&0), "accepted: {body:?}");
}

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

/// A broker with a plain listener and a `protocol = "websocket"` + `tls` one (wss), with a
/// certificate for 127.0.0.1 from a CA made here; killed on drop.
struct WssBroker {
    child: std::process::Child,
    logs: musqratt_test_support::Lines,
    plain: u16,
    wss: u16,
    ca: rustls::pki_types::CertificateDer<'static>,
}

impl WssBroker {
    fn start() -> WssBroker {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let dir = musqratt_test_support::scratch_dir("wss");
        let ca_key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, "wss test CA");
        let ca = p.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        std::fs::write(dir.join("server.pem"), server.pem()).unwrap();
        std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
        let conf = dir.join("musqratt.toml");
        std::fs::write(
            &conf,
            "[limits]\nmax_packet_size = 1024\n\n[[listener]]\nbind = \"127.0.0.1:0\"\n\n\
             [[listener]]\nbind = \"127.0.0.1:0\"\nprotocol = \"websocket\"\n\
             tls = { cert = \"server.pem\", key = \"server.key\" }\n",
        )
        .unwrap();
        let bin = musqratt_test_support::broker_bin(Some(std::path::Path::new(env!(
            "CARGO_BIN_EXE_musqratt"
        ))));
        let mut child = std::process::Command::new(bin)
            .args(["serve", "--in-memory", "-c"])
            .arg(&conf)
            .env("RUST_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let logs = musqratt_test_support::Lines::default();
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
        let up = logs.wait_until(common::START_TIMEOUT, |l| {
            port(l, "mqtt").is_some() && port(l, "wss").is_some()
        });
        let lines = logs.snapshot();
        let mut b = WssBroker {
            child,
            logs,
            plain: 0,
            wss: 0,
            ca: ca.der().clone(),
        };
        assert!(up, "broker did not start:\n{}", lines.join("\n"));
        b.plain = port(&lines, "mqtt").unwrap();
        b.wss = port(&lines, "wss").unwrap();
        b
    }

    /// TLS to the wss listener (trusting the CA), then the WebSocket upgrade.
    // ring, as the broker (tls_config.rs): deprecated only for lacking post-quantum exchange.
    #[allow(deprecated)]
    fn open(&self) -> Ws {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.clone()).unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
        let tcp = TcpStream::connect(("127.0.0.1", self.wss)).unwrap();
        let tls = rustls::StreamOwned::new(conn, tcp.try_clone().unwrap());
        Ws::over(tcp, Box::new(tls)).upgraded()
    }
}

impl Drop for WssBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- broker log ---\n{}", self.logs.snapshot().join("\n"));
        }
    }
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
