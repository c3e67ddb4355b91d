#!/usr/bin/env bash
# hub against JupyterHub 6 + configurable-http-proxy on this machine, side by side, and the
# figures written to docs/benchmarks.md. One command from a fresh machine, as root:
#   bash bench/vs_jupyterhub.sh [rounds]
#
# Installs what it compares against into a throwaway place of its own (HUB_BENCH_DIR, default
# /opt/hub/bench): JupyterHub 6.x from PyPI in a venv, pinned to the same jupyter-server,
# JupyterLab and ipykernel as the hub's venv, and configurable-http-proxy 5.x from npm under
# its own prefix; plus wrk from Debian. A second run reuses them; `--fresh` as the second
# argument rebuilds them.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
BENCH_DIR=${HUB_BENCH_DIR:-/opt/hub/bench}
bash scripts/setup.sh >/dev/null
if ! command -v wrk >/dev/null 2>&1; then
  echo "vs_jupyterhub.sh: installing wrk"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk >/dev/null
fi
if [ "${2:-}" = --fresh ]; then rm -rf "$BENCH_DIR"; fi
mkdir -p "$BENCH_DIR"
JH_VENV=$BENCH_DIR/jupyterhub-venv
if [ ! -f "$JH_VENV/.ok" ]; then
  echo "vs_jupyterhub.sh: installing JupyterHub 6.x into $JH_VENV"
  HUB_VENV=${HUB_VENV:-/opt/hub/jupyter-venv}
  # The single-user servers of both hubs run the same Jupyter versions.
  pins=$("$HUB_VENV/bin/pip" freeze --disable-pip-version-check |
    grep -iE '^(jupyter_server|jupyter-server|jupyterlab|ipykernel|tornado|jupyter_client|jupyter-client)==' || true)
  rm -rf "$JH_VENV"
  /usr/bin/python3 -m venv "$JH_VENV"
  # shellcheck disable=SC2086
  "$JH_VENV/bin/pip" install -q --disable-pip-version-check "jupyterhub>=6,<7" websocket-client requests $pins
  chmod -R a+rX "$BENCH_DIR"
  touch "$JH_VENV/.ok"
fi
if [ ! -x "$BENCH_DIR/chp/bin/configurable-http-proxy" ]; then
  echo "vs_jupyterhub.sh: installing configurable-http-proxy 5.x into $BENCH_DIR/chp"
  npm install -g --prefix "$BENCH_DIR/chp" "configurable-http-proxy@5" --no-audit --no-fund --loglevel=error
  chmod -R a+rX "$BENCH_DIR/chp"
fi
cargo build --release --locked
HUB_BENCH_DIR=$BENCH_DIR "$JH_VENV/bin/python" bench/vs_jupyterhub.py --rounds "$ROUNDS" \
  --json "$BENCH_DIR/last-run.json" --write docs/benchmarks.md
