//! RFC 6455 §4.2 opening handshake, server side: the client's HTTP/1.1 GET upgrade request,
//! read incrementally and bounded, answered with 101 (and the `mqtt` subprotocol, MQTT 5.0
//! §6.0) or with an HTTP error after which the connection closes.

use base64::Engine;
use bytes::{BufMut, BytesMut};
use sha1::{Digest, Sha1};

/// Bound on the request (request line and headers). Browsers send well under 2 KiB.
pub const MAX_REQUEST: usize = 8 * 1024;
/// Bound on the number of header lines.
pub const MAX_HEADERS: usize = 64;

/// §1.3: the GUID appended to the key before hashing.
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The subprotocols we speak, best first: `mqtt` (MQTT 5.0 §6.0 and 3.1.1 §6), and
/// `mqttv3.1`, which Mosquitto also accepts and some old clients offer.
const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];

/// A refused handshake: the HTTP status to answer and why (sent as the body and logged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub reason: &'static str,
}

impl Refusal {
    fn bad(reason: &'static str) -> Refusal {
        Refusal {
            status: 400,
            reason,
        }
    }

    /// The HTTP response for it (the connection closes after it).
    pub fn write(&self, out: &mut BytesMut) {
        let text = match self.status {
            426 => "Upgrade Required",
            431 => "Request Header Fields Too Large",
            _ => "Bad Request",
        };
        let version = if self.status == 426 {
            // §4.4: tell the client which version we speak.
            "Sec-WebSocket-Version: 13\r\n"
        } else {
            ""
        };
        let body = self.reason;
        out.put_slice(
            format!(
                "HTTP/1.1 {} {text}\r\n{version}Connection: close\r\nContent-Type: text/plain\r\n\
                 Content-Length: {}\r\n\r\n{body}\n",
                self.status,
                body.len() + 1
            )
            .as_bytes(),
        );
    }
}

/// Where the request ends in `buf`: the index just past its blank line, if it is there.
pub fn end_of_request(buf: &[u8]) -> Option<usize> {
    // Lines end in CRLF; a bare LF is accepted as well (RFC 9112 §2.2).
    let mut at = 0;
    while let Some(i) = buf.get(at..)?.iter().position(|&b| b == b'\n') {
        let next = at + i + 1;
        let rest = buf.get(next..)?;
        if rest.starts_with(b"\r\n") {
            return Some(next + 2);
        }
        if rest.starts_with(b"\n") {
            return Some(next + 1);
        }
        at = next;
    }
    None
}

/// Checks a complete request (without its blank line) and writes the 101 response.
pub fn answer(request: &[u8], out: &mut BytesMut) -> Result<(), Refusal> {
    let text = std::str::from_utf8(request).map_err(|_| Refusal::bad("request is not UTF-8"))?;
    let mut lines = text.lines().map(|l| l.strip_suffix('\r').unwrap_or(l));
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("GET"), Some(target), Some("HTTP/1.1"), None) if !target.is_empty() => {}
        (Some(_), Some(_), Some("HTTP/1.1"), None) => {
            return Err(Refusal::bad("the method must be GET"))
        }
        _ => return Err(Refusal::bad("not an HTTP/1.1 request line")),
    }
    let mut upgrade = false;
    let mut connection = false;
    let mut version = None;
    let mut key = None;
    let mut offered: Option<Vec<&str>> = None;
    let mut host = false;
    for (n, line) in lines.filter(|l| !l.is_empty()).enumerate() {
        if n >= MAX_HEADERS {
            return Err(Refusal {
                status: 431,
                reason: "too many header lines",
            });
        }
        if line.starts_with([' ', '\t']) {
            return Err(Refusal::bad("obsolete header line folding"));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or(Refusal::bad("header line without a colon"))?;
        let value = value.trim_matches([' ', '\t']);
        if name.is_empty() || !name.bytes().all(is_token) {
            return Err(Refusal::bad("invalid header name"));
        }
        let tokens = || value.split(',').map(|t| t.trim_matches([' ', '\t']));
        match name.to_ascii_lowercase().as_str() {
            "host" => host = true,
            "upgrade" => upgrade |= tokens().any(|t| t.eq_ignore_ascii_case("websocket")),
            "connection" => connection |= tokens().any(|t| t.eq_ignore_ascii_case("upgrade")),
            // The guards record the value; a second one is refused.
            "sec-websocket-version" if version.replace(value).is_some() => {
                return Err(Refusal::bad("Sec-WebSocket-Version given twice"));
            }
            "sec-websocket-key" if key.replace(value).is_some() => {
                return Err(Refusal::bad("Sec-WebSocket-Key given twice"));
            }
            "sec-websocket-protocol" => offered
                .get_or_insert_with(Vec::new)
                .extend(tokens().filter(|t| !t.is_empty())),
            _ => {}
        }
    }
    if !host {
        return Err(Refusal::bad("missing Host header"));
    }
    if !upgrade || !connection {
        return Err(Refusal::bad(
            "not a WebSocket upgrade (Upgrade: websocket and Connection: Upgrade expected)",
        ));
    }
    if version != Some("13") {
        return Err(Refusal {
            status: 426,
            reason: "Sec-WebSocket-Version must be 13",
        });
    }
    let key = key.ok_or(Refusal::bad("missing Sec-WebSocket-Key"))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(key)
        .map_err(|_| Refusal::bad("Sec-WebSocket-Key is not base64"))?;
    if decoded.len() != 16 {
        return Err(Refusal::bad("Sec-WebSocket-Key is not 16 bytes"));
    }
    // A client that offers subprotocols must offer ours. One that offers none gets MQTT all
    // the same, as with Mosquitto (MQTT §6 asks clients to offer "mqtt"; not all do).
    let protocol =
        match &offered {
            None => None,
            Some(list) => Some(SUBPROTOCOLS.iter().find(|p| list.contains(p)).ok_or(
                Refusal::bad("no MQTT subprotocol offered (expected \"mqtt\")"),
            )?),
        };
    out.put_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
    );
    out.put_slice(format!("Sec-WebSocket-Accept: {}\r\n", accept(key)).as_bytes());
    if let Some(p) = protocol {
        out.put_slice(format!("Sec-WebSocket-Protocol: {p}\r\n").as_bytes());
    }
    out.put_slice(b"\r\n");
    Ok(())
}

/// §4.2.2: base64(SHA-1(key + GUID)).
pub fn accept(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// RFC 9110 §5.6.2 token characters.
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}
