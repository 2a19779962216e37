#!/usr/bin/env bash
# Runs the cargo-fuzz targets of fuzz/ (docs/testing.md "Fuzzing"), each for a bounded time.
#
#   scripts/fuzz.sh                     # every target, FUZZ_SECONDS each (default 600)
#   FUZZ_SECONDS=30 scripts/fuzz.sh     # what `make test-fuzz` runs
#   scripts/fuzz.sh core_sequence       # one target
#
# Exits non-zero as soon as a target finds a crash: the input is in fuzz/artifacts/<target>/;
# reproduce with `cargo +nightly fuzz run -O -a -s none <target> <file>` from fuzz/, then keep
# it in fuzz/regressions/<target>/ with the fix (the stable test replay_seeds.rs replays it).
#
# Each target reads its seeds (fuzz/corpus/<target>/, committed), the regressions, and the
# corpus earlier runs grew (fuzz/grown/<target>/, not committed), and adds to the latter.
#
# Built with -O (optimised) -a (debug assertions and overflow checks: an overflow is a crash)
# and without AddressSanitizer (-s none): every crate forbids unsafe code, and ASan costs the
# core target about five times its speed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SECONDS_EACH="${FUZZ_SECONDS:-600}"
TARGETS=("$@")
[ "${#TARGETS[@]}" -gt 0 ] || TARGETS=(codec_decode core_sequence)

command -v cargo >/dev/null 2>&1 || { echo "fuzz: cargo not found" >&2; exit 1; }
cargo +nightly --version >/dev/null 2>&1 \
    || { echo "fuzz: no nightly toolchain: run 'make deps-test' (rustup toolchain install nightly --profile minimal)" >&2; exit 1; }
cargo fuzz --version >/dev/null 2>&1 \
    || { echo "fuzz: cargo-fuzz missing: run 'make deps-test' (cargo install cargo-fuzz --locked)" >&2; exit 1; }

cd "$ROOT/fuzz"
for t in "${TARGETS[@]}"; do
    mkdir -p "grown/$t" "regressions/$t"
    echo "fuzz: $t for ${SECONDS_EACH}s" >&2
    log="$(mktemp)"
    status=0
    nice -n 10 cargo +nightly fuzz run -O -a -s none "$t" "grown/$t" "corpus/$t" "regressions/$t" -- \
        -max_total_time="$SECONDS_EACH" -print_final_stats=1 >"$log" 2>&1 || status=$?
    grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec|stat::new_units_added)' "$log" >&2 || true
    if [ "$status" -ne 0 ]; then
        tail -n 60 "$log" >&2
        rm -f "$log"
        echo "fuzz: $t FAILED (exit $status); the input is in fuzz/artifacts/$t/" >&2
        exit 1
    fi
    rm -f "$log"
    echo "fuzz: $t ok" >&2
done
