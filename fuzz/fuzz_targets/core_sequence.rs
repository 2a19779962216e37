//! A script of bytes, clock steps, closes and new connections → a `musqratt_core::Broker` with
//! up to four connections: no panic, every transmitted byte a valid packet.
//! The script format and properties: broker-component/fuzz-props/src/core_script.rs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| musqratt_fuzz_props::core_script::run(data));
