//! Raw bindings to Debian's lwIP 2.1.3 (`liblwip-dev`, found with pkg-config) and to the small
//! C shim in `csrc/` (macros, static inlines, struct fields, netif glue and the deferred
//! callback queue that stands in for lwIP's tcpip thread). Everything here is `unsafe` to
//! call; the safe layer is `musqratt-tcpip`.
#![allow(
    non_camel_case_types,
    non_upper_case_globals,
    non_snake_case,
    dead_code
)]
#![allow(clippy::all)]

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
