//! The properties behind the fuzz targets of `fuzz/` (cargo-fuzz, nightly), in a crate of their
//! own so the stable test suite replays the seed corpus through the very same checks
//! (`tests/replay_seeds.rs`). A violated property panics: that is what libFuzzer records as a
//! crash. Only the fuzz crate and tests depend on this crate; the broker binary does not.
//!
//! - [`codec::check`]: one input → the codec's decoder for 3.1, 3.1.1 and 5.0;
//! - [`core_script::run`]: one input → a script driving a `musqratt_core::Broker`;
//! - [`seeds`]: the seed inputs, built from real packets (`examples/write_seeds.rs` writes them
//!   to `fuzz/corpus/`).
#![forbid(unsafe_code)]

pub mod codec;
pub mod core_script;
pub mod seeds;
