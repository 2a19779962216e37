//! MQTT over WebSocket, server side (RFC 6455; MQTT 5.0 §6 and 3.1.1 §6): a sans-IO codec.
//!
//! Wire bytes in, MQTT bytes and wire replies out; no socket here (transport/websocket.rs
//! puts it between the socket, or TLS, and the worker). The MQTT core sees exactly the byte
//! stream it would see on TCP: the payloads of binary frames, in order, whatever the frame
//! boundaries.
//!
//! Everything a client controls is bounded: the handshake request by [`handshake::MAX_REQUEST`]
//! bytes and [`handshake::MAX_HEADERS`] lines, control frames by 125 bytes, and a data frame's
//! length by `limits.max_packet_size` (its payload is unmasked as it arrives, never held whole).
//! How long the handshake may take is the connect timeout's business: the core's CONNECT
//! deadline runs from the accept, and the handshake comes before CONNECT.

mod frame;
mod handshake;
#[cfg(test)]
mod tests;

use bytes::BytesMut;

pub use handshake::Refusal;

/// A WebSocket close status code (§7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseCode(pub u16);

impl CloseCode {
    pub const NORMAL: CloseCode = CloseCode(1000);
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// Data of a type we do not accept (text frames).
    pub const UNSUPPORTED: CloseCode = CloseCode(1003);
    /// A frame too big to process.
    pub const TOO_BIG: CloseCode = CloseCode(1009);

    /// Whether a peer may send it in a Close frame (§7.4.1: 1004-1006 and 1015 are reserved,
    /// below 1000 unused, 1012-2999 for IANA; 3000-4999 for applications).
    pub fn sendable(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1011 | 3000..=4999)
    }
}

/// A client broke the WebSocket protocol: the connection closes with `code` (already queued
/// as a Close frame in the wire replies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsError {
    pub code: CloseCode,
    pub reason: &'static str,
}

impl WsError {
    fn protocol(reason: &'static str) -> WsError {
        WsError {
            code: CloseCode::PROTOCOL_ERROR,
            reason,
        }
    }
}

/// Why feeding stopped for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The handshake was refused; the HTTP error response is queued.
    Handshake(Refusal),
    /// A frame broke the protocol; the Close frame is queued.
    Frame(WsError),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Handshake(r) => write!(f, "handshake refused ({}): {}", r.status, r.reason),
            Error::Frame(e) => write!(f, "closing with {}: {}", e.code.0, e.reason),
        }
    }
}

/// Where the connection stands after a `feed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The handshake request is not complete yet.
    Handshake,
    /// Frames flow.
    Open,
    /// The client sent Close and the reply is queued: the MQTT stream has ended.
    Closed,
}

enum State {
    /// The request so far (at most `MAX_REQUEST` bytes).
    Handshake(BytesMut),
    Open(frame::FrameReader),
    Closed,
}

/// One connection's WebSocket state (see the module doc).
pub struct WebSocket {
    state: State,
    max_payload: u64,
}

impl WebSocket {
    /// A connection that has not sent its handshake yet; data frames may be at most
    /// `max_payload` bytes (the listener passes `limits.max_packet_size`).
    pub fn new(max_payload: u64) -> WebSocket {
        WebSocket {
            state: State::Handshake(BytesMut::new()),
            max_payload,
        }
    }

    pub fn status(&self) -> Status {
        match self.state {
            State::Handshake(_) => Status::Handshake,
            State::Open(_) => Status::Open,
            State::Closed => Status::Closed,
        }
    }

    /// Decodes `wire`: MQTT bytes are appended to `mqtt_out`, what must go back to the client
    /// (the handshake response, pongs, Close frames, an HTTP error) to `wire_reply`. After an
    /// error or a Close, the connection is done: later input is ignored.
    pub fn feed(
        &mut self,
        wire: &[u8],
        mqtt_out: &mut BytesMut,
        wire_reply: &mut BytesMut,
    ) -> Result<Status, Error> {
        let rest = match &mut self.state {
            State::Closed => return Ok(Status::Closed),
            State::Open(_) => wire,
            State::Handshake(request) => {
                // Only what can still belong to the request is copied: the blank line may be
                // split across reads, so look again from a little before the new bytes.
                let before = request.len();
                let room = (handshake::MAX_REQUEST - before).min(wire.len());
                request.extend_from_slice(wire.get(..room).unwrap_or(&[]));
                let Some(end) = handshake::end_of_request(request) else {
                    if request.len() >= handshake::MAX_REQUEST {
                        return Err(self.refuse(
                            Refusal {
                                status: 431,
                                reason: "request larger than 8 KiB",
                            },
                            wire_reply,
                        ));
                    }
                    return Ok(Status::Handshake);
                };
                if let Err(r) = handshake::answer(request.get(..end).unwrap_or(&[]), wire_reply) {
                    return Err(self.refuse(r, wire_reply));
                }
                // Bytes after the request are the first frames (a client may send them before
                // it reads the 101): `end` is past `before`, as the request was incomplete.
                let used = end.saturating_sub(before);
                self.state = State::Open(frame::FrameReader::new(self.max_payload));
                wire.get(used..).unwrap_or(&[])
            }
        };
        let State::Open(reader) = &mut self.state else {
            return Ok(self.status());
        };
        match reader.feed(rest, mqtt_out, wire_reply) {
            Ok(frame::Control::None) => Ok(Status::Open),
            Ok(frame::Control::Close) => {
                self.state = State::Closed;
                Ok(Status::Closed)
            }
            Err(e) => {
                frame::close(e.code, wire_reply);
                self.state = State::Closed;
                Err(Error::Frame(e))
            }
        }
    }

    fn refuse(&mut self, r: Refusal, wire_reply: &mut BytesMut) -> Error {
        r.write(wire_reply);
        self.state = State::Closed;
        Error::Handshake(r)
    }

    /// Frames MQTT bytes for the client (one binary frame).
    pub fn encode(mqtt: &[u8], wire_out: &mut BytesMut) {
        frame::encode_binary(mqtt, wire_out);
    }

    /// A Close frame to end the connection from our side (the core closed it).
    pub fn encode_close(wire_out: &mut BytesMut) {
        frame::close(CloseCode::NORMAL, wire_out);
    }
}
