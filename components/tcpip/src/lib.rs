//! musqratt-tcpip: the user-level TCP/IP component.
//!
//! One lwIP instance, driven by one poll-loop thread ("tcpip") over any number of network
//! interfaces (`Link`s), behind a safe socket API. Data moves through per-socket bounded
//! buffers shared between the application threads and the loop; requests (listen, connect,
//! close, shutdown, abort, options) are messages to the loop. See README.md for the model.
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

mod api;
mod bytequeue;
mod engine;
mod lwip;
#[cfg(feature = "nic")]
mod nic_link;
mod shared;
mod sock;

pub use api::{Stack, TcpListener, TcpStream};

/// One network interface's frames (a NIC port, a test wire, ...).
pub trait Link: Send + 'static {
    fn mac(&self) -> [u8; 6];
    /// IP MTU, e.g. 1500.
    fn mtu(&self) -> u16;
    /// Calls `f` with each received Ethernet frame (up to a burst); returns how many.
    fn recv_burst(&mut self, f: &mut dyn FnMut(&[u8])) -> usize;
    /// Queues one frame for transmission; false if it was dropped.
    fn send(&mut self, frame: &[u8]) -> bool;
    /// Pushes queued frames to the wire (called once per poll-loop iteration).
    fn flush(&mut self);
}

pub struct Interface {
    pub link: Box<dyn Link>,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
}

pub struct StackConfig {
    pub interfaces: Vec<Interface>,
    /// Receive buffer per socket (bytes).
    pub rx_buffer: usize,
    /// Send buffer per socket (bytes).
    pub tx_buffer: usize,
    /// Cap of the idle back-off sleep.
    pub idle_sleep_max: Duration,
    /// Open sockets (streams + listeners) beyond which connect/listen fail and accepted
    /// connections are reset.
    pub max_sockets: usize,
}

impl StackConfig {
    /// The defaults: 64 KiB buffers, 1 ms idle sleep cap, 65536 sockets.
    pub fn new(interfaces: Vec<Interface>) -> Self {
        StackConfig {
            interfaces,
            rx_buffer: 64 * 1024,
            tx_buffer: 64 * 1024,
            idle_sleep_max: Duration::from_millis(1),
            max_sockets: 65536,
        }
    }
}

impl Default for StackConfig {
    /// No interface yet; the defaults of `new`.
    fn default() -> Self {
        StackConfig::new(Vec::new())
    }
}

/// Socket readiness bits.
#[derive(Clone, Copy, PartialEq, Eq, Default, Debug, Hash)]
pub struct Readiness(pub u8);

impl Readiness {
    pub const NONE: Readiness = Readiness(0);
    /// Data, EOF, an error, or (listener) a pending accept.
    pub const READABLE: Readiness = Readiness(1);
    /// Connected and the send buffer has room.
    pub const WRITABLE: Readiness = Readiness(2);
    /// Peer closed, connection reset, or closed by us.
    pub const HUP: Readiness = Readiness(4);
    /// An error is pending (see `take_error`).
    pub const ERROR: Readiness = Readiness(8);

    pub fn contains(self, other: Readiness) -> bool {
        self.0 & other.0 == other.0
    }
    pub fn intersects(self, other: Readiness) -> bool {
        self.0 & other.0 != 0
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl std::ops::BitOr for Readiness {
    type Output = Readiness;
    fn bitor(self, o: Readiness) -> Readiness {
        Readiness(self.0 | o.0)
    }
}

impl std::ops::BitAnd for Readiness {
    type Output = Readiness;
    fn bitand(self, o: Readiness) -> Readiness {
        Readiness(self.0 & o.0)
    }
}

impl std::ops::BitOrAssign for Readiness {
    fn bitor_assign(&mut self, o: Readiness) {
        self.0 |= o.0;
    }
}

impl std::ops::Not for Readiness {
    type Output = Readiness;
    fn not(self) -> Readiness {
        Readiness(!self.0)
    }
}

/// Called on the poll-loop thread when a socket's readiness gains a bit (edge-triggered),
/// with the full current readiness. Never called while a lock of the socket is held, so it
/// may call the socket's methods; it must not block for long (it stalls the loop).
pub type Notify = Arc<dyn Fn(Readiness) + Send + Sync>;

/// Counters of the poll loop.
#[derive(Clone, Copy, Debug, Default)]
pub struct StackStats {
    pub iterations: u64,
    /// Iterations that ended in a sleep (idle back-off).
    pub sleeps: u64,
    pub frames_in: u64,
    pub frames_out: u64,
    /// Frames a link refused to queue.
    pub frames_dropped: u64,
    pub sockets_open: u64,
    pub listeners_open: u64,
    pub accepted: u64,
}

#[cfg(test)]
mod tests {
    fn send_sync<T: Send + Sync>() {}

    #[test]
    fn handles_are_send_and_sync() {
        send_sync::<crate::Stack>();
        send_sync::<crate::TcpStream>();
        send_sync::<crate::TcpListener>();
        fn send<T: Send>() {}
        send::<crate::StackConfig>();
    }
}
