//! `musqratt-store`: the seam reserved for durable broker state (issue 13). It is empty today.
//!
//! Nothing persists yet: no crate depends on this one, `musqratt serve` keeps every session,
//! retained and held message in memory (`musqratt-core`), and without `--in-memory` it logs that
//! durable storage is not implemented. See README.md for what the crate is meant to hold.
#![forbid(unsafe_code)]
