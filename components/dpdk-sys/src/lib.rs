//! Raw FFI to Debian's DPDK 22.11: only the items `musqratt-nic` uses (bindgen allowlist),
//! `rte_mbuf`, `rte_mempool` and `rte_ring` opaque, and `musqratt_*` wrappers (src/shim.c)
//! for DPDK's static-inline hot-path functions. Everything here is `unsafe` to call; the safe
//! API is `musqratt-nic`.
#![allow(non_camel_case_types, non_snake_case, non_upper_case_globals)]
#![allow(clippy::all)]

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
