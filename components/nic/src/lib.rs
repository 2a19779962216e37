//! The NIC component: a safe API over DPDK (via `musqratt-dpdk-sys`).
//!
//! - [`Eal::init`] starts DPDK's EAL from arguments (once per process).
//! - [`Port::open`] sets up a port (mbuf pool, one rx and one tx queue) and starts it;
//!   [`Port::rx_burst`] / [`Port::send`] / [`Port::flush`] move frames; [`Port::link`] and
//!   [`Port::stats`] report. Dropping a port stops and closes it and frees its pool; dropping
//!   the `Eal` and its last port cleans the EAL up and removes its runtime directory.
//! - [`ring_pair`] makes two ports joined back to back in memory, for tests.
//!
//! Threads: `Eal::init` from any thread; a `Port` is `Send` and used by one thread at a time
//! (it is not `Sync`). Callers never write `unsafe`.

mod eal;
mod error;
mod pool;
mod port;
mod ring;

pub use eal::Eal;
pub use error::NicError;
pub use port::{Link, Port, PortConfig, PortRef, PortStats, BURST};
pub use ring::{ring_pair, ring_pair_with};
