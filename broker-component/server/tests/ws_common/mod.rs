//! Shared by the WebSocket integration tests (websocket.rs): a hand-written RFC 6455 client over
//! a raw `TcpStream` (or rustls over it), and brokers with WebSocket listeners.
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use crate::common::{broker_with_args, raw, Broker, WAIT};

/// The port of the broker's WebSocket listener, from its `listening on ws://` line.
pub fn ws_port(b: &Broker) -> u16 {
    let want = "listening on ws://127.0.0.1:";
    assert!(b.wait_for_log(want, WAIT), "no WebSocket listener");
    musqratt_test_support::listening_port(&b.logs(), "ws").expect("a port")
}

pub fn ws_broker(extra: &[&str]) -> (Broker, u16) {
    let mut args = vec!["--listen-ws", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let b = broker_with_args(&args);
    let port = ws_port(&b);
    (b, port)
}

/// A broker whose packets (and so frames) may be at most 1 KiB, and whose clients have 1 s to
/// send CONNECT (so a handshake that never ends is cut after it).
pub fn strict_broker() -> (Broker, u16, std::path::PathBuf) {
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

pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

pub fn request(headers: &str) -> String {
    format!("GET /mqtt HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n")
}

pub fn good_request() -> String {
    request(&format!(
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n"
    ))
}

/// What a test client reads and writes: the socket, or TLS over it.
pub trait Io: Read + Write {}
impl<T: Read + Write> Io for T {}

/// A hand-written WebSocket client.
pub struct Ws {
    /// The socket itself, for read timeouts.
    pub tcp: TcpStream,
    /// The byte stream the frames go over (the socket, or TLS over it).
    pub s: Box<dyn Io>,
    /// Bytes read and not yet parsed.
    pub buf: Vec<u8>,
    /// MQTT bytes from binary frames not yet parsed into packets.
    pub mqtt: Vec<u8>,
}

/// A frame from the server.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    pub first: u8,
    pub masked: bool,
    pub payload: Vec<u8>,
}

impl Ws {
    pub fn tcp(port: u16) -> Ws {
        let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_nodelay(true).unwrap();
        let s = Box::new(tcp.try_clone().unwrap());
        Ws::over(tcp, s)
    }

    pub fn over(tcp: TcpStream, s: Box<dyn Io>) -> Ws {
        Ws {
            tcp,
            s,
            buf: Vec::new(),
            mqtt: Vec::new(),
        }
    }

    /// Connected and upgraded: the 101 checked.
    pub fn open(port: u16) -> Ws {
        Ws::tcp(port).upgraded()
    }

    /// After the 101 (checked).
    pub fn upgraded(self) -> Ws {
        let mut ws = self;
        let head = ws.handshake(&good_request());
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        assert!(head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(head.contains("Sec-WebSocket-Protocol: mqtt\r\n"));
        ws
    }

    /// Sends a request; returns the response head (and body, for an error), up to the blank
    /// line, or everything until the server closes.
    pub fn handshake(&mut self, req: &str) -> String {
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
    pub fn fill(&mut self, deadline: Instant) -> bool {
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
    pub fn send_frame(&mut self, first: u8, payload: &[u8], masked: bool) {
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
    pub fn send(&mut self, mqtt: &[u8]) {
        self.send_frame(0x82, mqtt, true);
    }

    /// The next frame, or `None` if the server closed first.
    pub fn frame(&mut self, deadline: Instant) -> Option<Frame> {
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
    pub fn packet(&mut self) -> (u8, Vec<u8>) {
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
    pub fn expect_close(&mut self, code: u16) {
        let deadline = Instant::now() + WAIT;
        let f = self.frame(deadline).expect("a Close frame");
        assert_eq!(
            (f.first, f.payload.get(..2)),
            (0x88, Some(&code.to_be_bytes()[..]))
        );
        self.expect_eof();
    }

    pub fn expect_eof(&mut self) {
        let deadline = Instant::now() + WAIT;
        while self.fill(deadline) {}
        assert!(
            Instant::now() < deadline,
            "the server did not close the connection"
        );
    }
}

pub fn connack_ok(ws: &mut Ws) {
    let (first, body) = ws.packet();
    assert_eq!(first, 0x20, "CONNACK");
    assert_eq!(body.get(1), Some(&0), "accepted: {body:?}");
}

/// A broker with a plain listener and a `protocol = "websocket"` + `tls` one (wss), with a
/// certificate for 127.0.0.1 from a CA made here; killed on drop.
pub struct WssBroker {
    pub child: std::process::Child,
    pub logs: musqratt_test_support::Lines,
    pub plain: u16,
    pub wss: u16,
    pub ca: rustls::pki_types::CertificateDer<'static>,
}

impl WssBroker {
    pub fn start() -> WssBroker {
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
        let port = musqratt_test_support::listening_port;
        let up = logs.wait_until(crate::common::START_TIMEOUT, |l| {
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
    pub fn open(&self) -> Ws {
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
