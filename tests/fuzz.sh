#!/usr/bin/env bash
# Runs each cargo-fuzz target of the hub (crates/hub/fuzz) for a bounded time:
#   bash tests/fuzz.sh [SECONDS_PER_TARGET]     (default 30)
# Needs the nightly toolchain (libFuzzer instrumentation); installs cargo-fuzz from crates.io
# if missing. A crash fails the script and leaves the input under
# crates/hub/fuzz/artifacts/<target>/. Called by tests/run.sh.
set -euo pipefail
cd "$(dirname "$0")/../crates/hub"
secs=${1:-30}
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "tests/fuzz.sh: no nightly toolchain (rustup toolchain install nightly); cannot fuzz" >&2
  exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked --quiet
fi
for target in principal_mapping session_cookie; do
  echo "fuzzing $target for ${secs}s"
  cargo +nightly fuzz run "$target" -- -max_total_time="$secs" -max_len=4096 2>&1 | tail -n 3
done
echo "tests/fuzz.sh: no crashes"
