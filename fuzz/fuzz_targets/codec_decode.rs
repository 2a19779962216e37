//! Bytes → the codec's decoder (3.1, 3.1.1, 5.0; several maximum packet sizes): no panic,
//! round trip, prefixes incomplete. The properties: broker-component/fuzz-props/src/codec.rs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| musqratt_fuzz_props::codec::check(data));
