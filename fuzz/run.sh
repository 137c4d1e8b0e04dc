#!/usr/bin/env bash
# Runs one cargo-fuzz target for a fixed time budget.
#
#   fuzz/run.sh TARGET SECONDS [libFuzzer options...]
#   fuzz/run.sh mqtt_decode 300
#   fuzz/run.sh all 60          # every target in turn, 60 s each
#   SANITIZER=none fuzz/run.sh mqtt_decode 60 -jobs=2 -workers=2
#
# Installs cargo-fuzz on first use. The machine has only a stable Rust toolchain, and
# cargo-fuzz passes nightly-only `-Z` flags to rustc (the sanitizer), so the build runs
# with RUSTC_BOOTSTRAP=1. The corpus grows in fuzz/corpus/TARGET, starting from the
# committed seeds in fuzz/seeds/TARGET; crashes land in fuzz/artifacts/TARGET (both
# git-ignored). Replay a crash with `RUSTC_BOOTSTRAP=1 cargo fuzz run TARGET FILE` from
# fuzz/, and turn it into a unit test beside the code it broke.
set -euo pipefail

usage="usage: fuzz/run.sh TARGET SECONDS [libFuzzer options...]"
target=${1:?$usage}
seconds=${2:?$usage}
shift 2
case $seconds in
  '' | *[!0-9]*) echo "$usage" >&2; exit 2 ;;
esac

cd "$(dirname "$0")"

# The targets, in the order `all` runs them.
targets=(mqtt_decode stomp_decode ws_frames session_bytes)
if [ "$target" = all ]; then
  for t in "${targets[@]}"; do
    bash ./run.sh "$t" "$seconds" "$@"
  done
  exit 0
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
mkdir -p "corpus/$target" "artifacts/$target"
seeds=()
if [ -d "seeds/$target" ]; then
  seeds=("seeds/$target")
fi

exec cargo fuzz run --sanitizer "${SANITIZER:-address}" "$target" "corpus/$target" "${seeds[@]}" -- \
  -max_total_time="$seconds" -timeout=10 -print_final_stats=1 "$@"
