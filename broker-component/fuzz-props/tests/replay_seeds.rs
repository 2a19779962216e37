//! Replays every seed of `fuzz/corpus/` (and any crash input kept in `fuzz/regressions/`)
//! through the properties the fuzz targets check, on the stable toolchain, so `cargo test`
//! exercises them without cargo-fuzz.

use std::path::{Path, PathBuf};

use musqratt_fuzz_props::{codec, core_script, seeds};

fn files(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut out = Vec::new();
    for dir in [
        root.join("corpus").join(target),
        root.join("regressions").join(target),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            if e.path().is_file() {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

fn replay(target: &str, expected: &[(String, Vec<u8>)], check: fn(&[u8])) {
    let found = files(target);
    // The committed seeds are the ones src/seeds.rs builds (examples/write_seeds.rs).
    for (name, data) in expected {
        let on_disk = found
            .iter()
            .find(|p| p.file_name().is_some_and(|n| n == name.as_str()));
        let on_disk = on_disk.unwrap_or_else(|| panic!("{target}/{name} missing: run write_seeds"));
        assert_eq!(
            &std::fs::read(on_disk).unwrap(),
            data,
            "{target}/{name} is stale"
        );
    }
    for path in &found {
        let data = std::fs::read(path).unwrap();
        check(&data);
    }
    assert!(found.len() >= expected.len());
}

#[test]
fn codec_decode_seeds_hold_the_properties() {
    replay("codec_decode", &seeds::codec(), codec::check);
}

#[test]
fn core_sequence_seeds_hold_the_properties() {
    replay("core_sequence", &seeds::core(), core_script::run);
}
