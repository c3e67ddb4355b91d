#!/usr/bin/env bash
# Runs every test of the hub, on a fresh Debian 12 machine as root:
#   bash tests/run.sh
# Installs what the tests need (scripts/setup.sh: krb5 KDC and tools, PAM headers, a venv
# with JupyterLab), then checks formatting and lints, then runs the unit and end-to-end
# tests, then runs the fuzz targets briefly. The end-to-end tests create (and remove) real Linux users, PAM service files and
# throwaway Kerberos realms on loopback ports. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

export CARGO_TERM_COLOR=never
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# One build, then every test: unit tests, the hub binary's CLI tests and the end-to-end tests.
cargo test --workspace --locked -- --test-threads=2
# The fuzz targets (nightly + cargo-fuzz), 30 s each.
bash tests/fuzz.sh 30
echo "tests/run.sh: all tests passed"
