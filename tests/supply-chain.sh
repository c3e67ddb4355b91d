#!/usr/bin/env bash
# Supply-chain checks with cargo-deny against deny.toml: advisories, licenses, bans, sources.
#
#   bash tests/supply-chain.sh
#
# Installs cargo-deny (crates.io, --locked) if missing. The RustSec advisory database is a git
# repository on GitHub (github.com/rustsec/advisory-db), which cargo-deny clones into
# ~/.cargo/advisory-dbs. Where GitHub cannot be reached (this project's CI machine reaches only
# package registries), a copy already there is used as it is (offline), or one is cloned from
# $HUB_ADVISORY_DB (a clone or mirror of that repository; default: the mirror this machine
# has). The date of the database used is printed. Without any copy, the check fails and says so.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo deny --version >/dev/null 2>&1; then
  echo "supply-chain.sh: installing cargo-deny (a few minutes, once)"
  cargo install --locked cargo-deny >/dev/null 2>&1
fi

cargo deny --log-level error check licenses bans sources

# Where cargo-deny keeps the default database (its directory name is derived from the URL).
DB=${CARGO_HOME:-$HOME/.cargo}/advisory-dbs/advisory-db-3157b0e258782691
if [ ! -d "$DB/.git" ]; then
  cargo deny --log-level error fetch db >/dev/null 2>&1 || true
fi
if [ ! -d "$DB/.git" ]; then
  SRC=${HUB_ADVISORY_DB:-/work/.mirror/rustsec+advisory-db/repo}
  if [ ! -d "$SRC" ]; then
    echo "supply-chain.sh: cannot fetch the RustSec advisory database (github.com/rustsec/advisory-db) and there is no local copy; set HUB_ADVISORY_DB to a clone of it" >&2
    exit 1
  fi
  mkdir -p "$(dirname "$DB")"
  git clone -q --branch main "$SRC" "$DB"
fi
# cargo-deny updates the database where it can reach GitHub, and uses it as it is otherwise.
cargo deny --log-level error check advisories
echo "supply-chain.sh: cargo deny check passed (advisory database of $(git -C "$DB" log -1 --format=%cd --date=short))"
