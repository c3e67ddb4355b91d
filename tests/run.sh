#!/usr/bin/env bash
# Runs every test of the hub, on a fresh Debian 12 machine as root:
#   bash tests/run.sh
# Installs what the tests need (scripts/setup.sh: krb5 KDC and tools, PAM headers, a venv
# with JupyterLab, PostgreSQL), then checks formatting, lints and the crates' dependency rule (tests/layering.py), then the dependencies (cargo
# deny, tests/supply-chain.sh), then runs the unit and end-to-end
# tests, then runs the fuzz targets briefly. The end-to-end tests create (and remove) real Linux users, PAM service files and
# throwaway Kerberos realms on loopback ports. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

export CARGO_TERM_COLOR=never
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The dependency rule between the workspace's crates (docs/architecture.md).
python3 tests/layering.py --self-test
python3 tests/layering.py
# Dependencies: RustSec advisories, licenses, bans, sources (deny.toml).
bash tests/supply-chain.sh
# A throwaway PostgreSQL cluster (as the unprivileged postgres user, loopback only) for the
# store conformance suite and the end-to-end test on PostgreSQL; each test makes its own
# database in it. Stopped and removed on exit.
PG_DIR=$(mktemp -d -u /tmp/hub-test-pg.XXXXXX)
trap 'bash scripts/throwaway-postgres.sh stop "$PG_DIR"' EXIT
HUB_TEST_POSTGRES_URL=$(bash scripts/throwaway-postgres.sh start "$PG_DIR")
export HUB_TEST_POSTGRES_URL
# One build, then every test: unit tests, the hub binary's CLI tests and the end-to-end tests.
cargo test --workspace --locked -- --test-threads=2
# The fuzz targets (nightly + cargo-fuzz), 30 s each.
bash tests/fuzz.sh 30
echo "tests/run.sh: all tests passed"
