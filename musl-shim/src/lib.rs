//! musqratt-musl-shim: the POSIX layer beneath libc (docs/design.md "The runtime stack",
//! docs/composite.md).
//!
//! Linked into a binary (the broker with its `lwip-dpdk` feature), this crate defines the socket, epoll,
//! poll, ioctl/fcntl and close calls that Rust's std and mio make. Until [`install`] runs, every
//! call goes straight to the kernel. After it, a TCP socket bound to an address of the
//! user-level stack (or connecting into one of its subnets) is served by musqratt-tcpip; every
//! other fd — files of the store, the kernel listener, pipes, eventfds, DPDK's own fds — still
//! passes to the kernel unchanged. The broker's socket and event-loop code is the same on both
//! paths.
//!
//! Modules: `sys` (the kernel, by raw syscall), `table` (which fds are ours), `ops` (socket
//! semantics over tcpip), `epoll` (readiness over both worlds), `posix` (the dispatcher),
//! `exports` (the symbols).

mod addr;
mod epoll;
mod exports;
mod ops;
mod posix;
mod sys;
mod table;

use std::net::Ipv4Addr;
use std::sync::OnceLock;

use musqratt_tcpip::Stack;

pub use table::MAX_FDS;

/// The installed user-level stack and the fd table; set once per process.
pub struct State {
    stack: Stack,
    table: table::Table,
    /// Destinations a `connect` on a fresh socket sends through the user-level stack.
    nets: Vec<(u32, u32)>,
}

impl State {
    fn routes(&self, ip: Ipv4Addr) -> bool {
        let ip = u32::from(ip);
        self.nets.iter().any(|&(net, mask)| ip & mask == net)
    }
}

static STATE: OnceLock<State> = OnceLock::new();

#[inline]
fn state() -> Option<&'static State> {
    STATE.get()
}

/// Puts `stack` under the POSIX calls of this process: from now on a TCP socket bound to one of
/// the stack's addresses, or connecting into one of `nets` (network, prefix length), is served by
/// it. Once per process (a second call is an error: sockets already routed cannot move).
pub fn install(stack: Stack, nets: &[(Ipv4Addr, u8)]) -> std::io::Result<()> {
    let nets = nets
        .iter()
        .map(|&(net, prefix)| {
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix.min(32)))
            };
            (u32::from(net) & mask, mask)
        })
        .collect();
    STATE
        .set(State {
            stack,
            table: table::Table::new(),
            nets,
        })
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "the POSIX shim is already installed",
            )
        })
}

/// Whether [`install`] has run.
pub fn installed() -> bool {
    STATE.get().is_some()
}

/// Whether `fd` is a user-level socket (for tests and diagnostics).
pub fn is_user_fd(fd: i32) -> bool {
    state().is_some_and(|s| s.table.is_user(fd))
}
