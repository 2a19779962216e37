//! One accepted socket as a worker holds it: the socket, the core's protocol
//! state, and buffers that exist only while they hold bytes.
//!
//! An idle connection owns no buffer (`pending_in` and `pending_out` are
//! `None`): reads go through the worker's shared read buffer, and bytes are
//! copied out of it only when a packet is split across reads. Writes go
//! straight from the worker's `Output` to the socket; only what the socket
//! refuses is copied into `pending_out`. See docs/architecture.md. The socket is
//! behind a [`Transport`] (plain TCP, or layers such as TLS over it).

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, BytesMut};

use musqratt_core::message::Message;
use musqratt_core::{Broker, Connection};

use crate::transport::Transport;

/// Bound on `pending_out` before the connection's input is no longer read.
const MAX_PENDING_OUT: usize = 256 * 1024;
/// Bound on the events whose output waits for the store before the connection's input is no
/// longer read. Held bytes are small (a PUBACK is 4 bytes) while what they acknowledge is not:
/// this bounds the input a client can have on its way to the disk at once, to this many read
/// events (each at most `MAX_READ_ROUNDS` × 64 KiB). A commit normally lands within one or two.
const MAX_HELD_EVENTS: usize = 8;

pub struct Conn {
    pub transport: Transport,
    pub core: Connection,
    /// The start of a packet not complete yet (bytes the core did not consume).
    /// Boxed: 8 B in every idle connection instead of 24 (they are rarely set).
    pending_in: Option<Box<BytesMut>>,
    /// Bytes the socket did not accept yet; WRITABLE will flush them.
    /// Boxed: 8 B in every idle connection instead of 32.
    /// With the output held for the store, in one box (see [`Out`]).
    pending_out: Option<Box<Out>>,
    /// The core asked to close: close as soon as `pending_out` drains.
    pub closing: bool,
    /// A wake arrived while `pending_out` was not empty. It is handled once the
    /// socket drains, so a slow reader's messages wait in its session queue
    /// (bounded by the core) instead of piling up in `pending_out`.
    pub wake_deferred: bool,
    /// Reading stopped because `pending_out` is over its bound (a client that
    /// sends but does not read); WRITABLE resumes it once the bytes drain.
    pub read_paused: bool,
    /// Flow control: the core paused this publisher because a subscriber it
    /// feeds is congested. Reading resumes on a resume from the core, or after
    /// `BrokerConfig::publisher_stall` (the worker keeps the time, so an idle
    /// connection does not pay for it).
    pub paused: bool,
    /// Closed for writing (FIN sent after the last bytes): the client's input
    /// is read and discarded until it closes too, or the drain's bound passes.
    /// Closing a socket that has unread input sends a RST, which makes the
    /// client's kernel drop the bytes it has not delivered yet — the
    /// DISCONNECT that says why.
    pub draining: bool,
}

/// Output that could not go out yet: bytes the socket refused, and behind them output
/// waiting for the store (docs/storage.md "Group commit"), each chunk with the journal ticket
/// it waits for, in order. One box for both keeps an idle connection at one pointer.
#[derive(Default)]
pub struct Out {
    bytes: BytesMut,
    held: VecDeque<Held>,
}

/// Output of one event waiting for the store: until the journal reports `ticket` durable,
/// and `soft` too unless every one of `messages` was delivered (handle_publish.rs, "Released
/// by delivery" in docs/storage.md).
pub struct Held {
    ticket: u64,
    soft: u64,
    messages: Vec<Arc<Message>>,
    bytes: BytesMut,
}

impl Held {
    /// What an event waits for; its bytes are added by `Conn::hold`.
    pub fn new(ticket: u64, soft: u64, messages: Vec<Arc<Message>>) -> Held {
        Held {
            ticket,
            soft,
            messages,
            bytes: BytesMut::new(),
        }
    }

    /// Whether it may go with the journal durable up to `durable`: the tickets whose
    /// outcome (`Journal::failed`) then decides whether it goes or its connection closes
    /// (0 = none); `None` while it must wait.
    pub fn ready(&self, durable: u64) -> Option<[u64; 2]> {
        if self.ticket > durable {
            return None;
        }
        if self.soft <= self.ticket || self.messages.iter().all(|m| m.delivered()) {
            return Some([self.ticket, 0]);
        }
        (self.soft <= durable).then_some([self.ticket, self.soft])
    }
}

/// What draining a half-closed connection found.
pub enum Drain {
    /// The client closed its side (or the socket failed): drop the connection.
    Done,
    /// Nothing more to read for now; `n` bytes were discarded.
    Pending(usize),
}

/// What a read attempt found.
pub enum ReadOutcome {
    /// The socket has no more bytes for now.
    Drained,
    /// Bytes were read and handed to the core; the buffer was filled, so more
    /// may be waiting.
    Data,
    /// Fewer bytes than the buffer holds were read and handed to the core:
    /// the read emptied the socket's receive queue.
    Short,
    /// End of stream, or a socket error.
    Closed,
}

impl Conn {
    pub fn new(transport: Transport, core: Connection) -> Conn {
        Conn {
            transport,
            core,
            pending_in: None,
            pending_out: None,
            closing: false,
            wake_deferred: false,
            read_paused: false,
            paused: false,
            draining: false,
        }
    }

    /// Reads once into the worker's buffer and feeds the core.
    pub fn read_once(
        &mut self,
        buf: &mut [u8],
        broker: &Broker,
        now: Instant,
        out: &mut musqratt_core::Output,
    ) -> ReadOutcome {
        match self.transport.read(buf) {
            Ok(0) => ReadOutcome::Closed,
            Ok(n) => {
                if let Some(identity) = self.transport.take_identity() {
                    // The handshake is done and no MQTT byte was handled yet.
                    self.core.set_identity(identity);
                }
                let data = buf.get(..n).unwrap_or(&[]);
                self.feed(broker, data, now, out);
                if n < buf.len() && self.transport.short_read_is_empty() {
                    ReadOutcome::Short
                } else {
                    ReadOutcome::Data
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => ReadOutcome::Drained,
            // A layer took bytes of its own (transport/mod.rs): a round without MQTT bytes.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => ReadOutcome::Data,
            Err(e) => {
                tracing::debug!("read error: {e}");
                ReadOutcome::Closed
            }
        }
    }

    /// Feeds the bytes kept while paused (flow control) to the core again.
    pub fn resume_input(&mut self, broker: &Broker, now: Instant, out: &mut musqratt_core::Output) {
        if self.pending_in.is_some() {
            self.feed(broker, &[], now, out);
        }
    }

    /// Hands received bytes to the core, keeping an incomplete packet's bytes
    /// for the next read (the core consumes whole packets only).
    fn feed(
        &mut self,
        broker: &Broker,
        data: &[u8],
        now: Instant,
        out: &mut musqratt_core::Output,
    ) {
        match self.pending_in.take() {
            None => {
                let used = self.core.handle_bytes(broker, data, now, out);
                if used < data.len() && !self.core.is_closed() {
                    self.pending_in = Some(Box::new(BytesMut::from(&data[used..])));
                }
            }
            Some(mut held) => {
                held.extend_from_slice(data);
                let used = self.core.handle_bytes(broker, &held, now, out);
                if used < held.len() && !self.core.is_closed() {
                    held.advance(used);
                    self.pending_in = Some(held);
                }
                // Otherwise `held` is dropped: the buffer goes back to the allocator.
            }
        }
    }

    /// Sends `transmit` (taking its bytes): directly when nothing is pending,
    /// else behind the pending bytes, which WRITABLE flushes in order. Output held for the
    /// store must be released (`release`) first: callers check `is_holding`.
    pub fn send(&mut self, transmit: &mut BytesMut) -> io::Result<()> {
        if transmit.is_empty() {
            return Ok(());
        }
        if let Some(out) = &mut self.pending_out {
            if !out.bytes.is_empty() {
                out.bytes.extend_from_slice(transmit);
                transmit.clear();
                return Ok(());
            }
        }
        let written = self.transport.write(transmit);
        let result = match written {
            Ok(n) if n < transmit.len() => {
                let out = self.pending_out.get_or_insert_with(Default::default);
                out.bytes.extend_from_slice(&transmit[n..]);
                Ok(())
            }
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        transmit.clear();
        result
    }

    /// Sends FIN after the bytes already written (the connection is closing
    /// and its output has drained); from now on its input is only discarded.
    pub fn half_close(&mut self) -> io::Result<()> {
        self.draining = true;
        self.transport.shutdown_write()
    }

    /// Reads and discards the client's input (see `draining`) until the socket
    /// would block, or `budget` bytes were discarded.
    pub fn drain_input(&mut self, buf: &mut [u8], budget: usize) -> Drain {
        let mut n = 0;
        while n < budget {
            match self.transport.discard(buf) {
                Ok(0) => return Drain::Done,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Drain::Pending(n),
                Err(_) => return Drain::Done,
            }
        }
        Drain::Pending(n)
    }

    /// Writes pending bytes after WRITABLE (the transport's own first); frees
    /// the buffer once empty.
    pub fn flush(&mut self) -> io::Result<()> {
        self.transport.flush()?;
        if let Some(out) = &mut self.pending_out {
            let n = self.transport.write(&out.bytes)?;
            out.bytes.advance(n);
            self.free_out();
        }
        Ok(())
    }

    /// Drops the box once nothing is pending or held (the memory goes back).
    fn free_out(&mut self) {
        if self
            .pending_out
            .as_ref()
            .is_some_and(|o| o.bytes.is_empty() && o.held.is_empty())
        {
            self.pending_out = None;
        }
    }

    /// Unsent bytes (waiting for the socket or for the store), or events held for the store,
    /// beyond which reading pauses (backpressure on the sender).
    /// A layer's own backlog counts too: a WebSocket client that sends pings and reads nothing
    /// is not read either once its pongs fill the bound.
    pub fn out_full(&self) -> bool {
        self.transport.queued_out() >= MAX_PENDING_OUT
            || self.pending_out.as_ref().is_some_and(|o| {
                o.held.len() >= MAX_HELD_EVENTS
                    || o.bytes.len() + o.held.iter().map(|h| h.bytes.len()).sum::<usize>()
                        >= MAX_PENDING_OUT
            })
    }

    /// No bytes waiting for the socket (here or inside the transport) or the store.
    pub fn out_idle(&self) -> bool {
        self.pending_out.is_none() && !self.transport.wants_write()
    }

    /// Gives up on unsent bytes (the socket failed).
    pub fn discard_out(&mut self) {
        self.pending_out = None;
    }

    /// Whether output is waiting for the store: what this connection sends next must queue
    /// behind it.
    pub fn is_holding(&self) -> bool {
        self.pending_out
            .as_ref()
            .is_some_and(|o| !o.held.is_empty())
    }

    /// Keeps `transmit` (taking its bytes) until `held` may go (`Held::ready`).
    pub fn hold(&mut self, mut held: Held, transmit: &mut BytesMut) {
        held.bytes = transmit.split();
        self.pending_out
            .get_or_insert_with(Default::default)
            .held
            .push_back(held);
    }

    /// Sends the held chunks `ready` accepts, in order, stopping at the first it does not.
    /// Returns whether anything is still held.
    pub fn release(&mut self, mut ready: impl FnMut(&Held) -> bool) -> io::Result<bool> {
        loop {
            let Some(out) = self.pending_out.as_mut() else {
                return Ok(false);
            };
            let chunk = match out.held.front() {
                Some(h) if ready(h) => out.held.pop_front().map(|h| h.bytes),
                Some(_) => return Ok(true),
                None => {
                    self.free_out();
                    return Ok(false);
                }
            };
            if let Some(mut chunk) = chunk {
                // Behind bytes the socket refused, or straight out.
                if out.bytes.is_empty() {
                    self.send(&mut chunk)?;
                } else {
                    out.bytes.extend_from_slice(&chunk);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    /// The slab holds one `Conn` per connection: what the transport adds to
    /// the core's `Connection` (socket, the box of its layers, two boxed
    /// buffers, flags) stays small.
    #[test]
    fn conn_stays_small() {
        let core = std::mem::size_of::<musqratt_core::Connection>();
        let size = std::mem::size_of::<super::Conn>();
        // mio's TcpStream carries a selector id in debug builds (+8 B, +padding); the
        // transport's layer pointer is 8 B (transport/mod.rs).
        assert!(
            size - core <= 48,
            "Conn is {size} B, of which Connection {core} B"
        );
    }
}
