#!/usr/bin/env bash
# Dependency weight of each candidate engine: for each, a throwaway crate depending on it alone,
# then `cargo tree | wc -l`, the number of distinct crates it adds, and the wall time of a cold
# `cargo build --release -j 1` (sources fetched beforehand, so no download is timed), REPS times.
#
#   bench/store-compare/scripts/deps.sh            # REPS=3 by default
#   REPS=1 bench/store-compare/scripts/deps.sh
#
# Everything is built under a temporary directory that is removed at the end.
set -euo pipefail
REPS=${REPS:-3}
CANDIDATES=${CANDIDATES:-"redb@=5.0.0 fjall@=3.1.13 canopydb@=0.2.5"}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/store-compare-deps.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

echo "| crate | \`cargo tree \| wc -l\` | distinct crates added (normal + build deps) | cold release build, -j 1 (s, median of $REPS; all runs) |"
echo "|---|---|---|---|"
for cand in $CANDIDATES; do
  name=${cand%@*}
  ver=${cand#*@}
  dir="$tmp/dep-$name"
  mkdir -p "$dir/src"
  cat >"$dir/Cargo.toml" <<EOF
[package]
name = "dep-$name"
version = "0.0.0"
edition = "2021"
publish = false

[workspace]

[dependencies]
$name = "$ver"
EOF
  echo 'fn main() {}' >"$dir/src/main.rs"
  (cd "$dir" && cargo generate-lockfile -q && cargo fetch -q)
  lines=$(cd "$dir" && cargo tree 2>/dev/null | wc -l)
  # distinct packages, excluding the throwaway root crate itself
  distinct=$(cd "$dir" && cargo tree -e normal,build --prefix none 2>/dev/null | sed 's/ (\*)//' | sort -u | grep -vc "^dep-$name ")
  times=()
  for _ in $(seq "$REPS"); do
    rm -rf "$dir/target"
    start=$(date +%s.%N)
    (cd "$dir" && cargo build -q --release -j 1)
    end=$(date +%s.%N)
    times+=("$(echo "$end - $start" | bc)")
  done
  sorted=$(printf '%s\n' "${times[@]}" | sort -n)
  med=$(printf '%s\n' "$sorted" | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}')
  all=$(printf '%.0f ' "${times[@]}")
  resolved=$(cd "$dir" && cargo tree --depth 0 -e normal 2>/dev/null | head -1 >/dev/null; cargo tree -i "$name" --depth 0 2>/dev/null | head -1)
  printf '| %s | %s | %s | %.0f (%s) |\n' "$resolved" "$lines" "$distinct" "$med" "${all% }"
done
