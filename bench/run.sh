#!/usr/bin/env bash
# Runs the benchmarks and records the figures in docs/benchmarks.md. As root:
#   bash bench/run.sh [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --locked
/usr/bin/python3 bench/login_to_ready.py --rounds "${1:-5}" --write docs/benchmarks.md
bash bench/renewer.sh 8
bash bench/ws_latency.sh 5
/usr/bin/python3 bench/api_users.py --rounds "${1:-5}" --write docs/benchmarks.md
/usr/bin/python3 bench/lifecycle.py --rounds "${1:-3}" --write docs/benchmarks.md
"${HUB_VENV:-/opt/hub/jupyter-venv}/bin/python" bench/slurm.py --rounds "${1:-5}" --write docs/benchmarks.md
bash bench/vs_jupyterhub.sh "${1:-5}"
