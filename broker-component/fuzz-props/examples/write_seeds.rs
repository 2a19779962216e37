//! Writes the seed corpus of the fuzz targets: `fuzz/corpus/<target>/<name>` (src/seeds.rs).
//!
//!     cargo run -p musqratt-fuzz-props --example write_seeds
//!
//! Run it again after changing src/seeds.rs and commit the files; the fuzzers' grown corpus
//! goes to `fuzz/corpus/<target>/grown/` (ignored by git, see scripts/fuzz.sh).

use std::path::Path;

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    for (target, seeds) in [
        ("codec_decode", musqratt_fuzz_props::seeds::codec()),
        ("core_sequence", musqratt_fuzz_props::seeds::core()),
    ] {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        for (name, data) in &seeds {
            std::fs::write(dir.join(name), data)?;
        }
        println!("{}: {} seeds", dir.display(), seeds.len());
    }
    Ok(())
}
