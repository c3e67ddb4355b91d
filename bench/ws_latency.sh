#!/usr/bin/env bash
# WebSocket round trips to a kernel, through the hub against the direct path, in the same run.
# Reuses the end-to-end measurement (tests/e2e: websocket_replies_are_not_nagle_bound: 15
# execute_request → execute_reply round trips each way, alternating), ROUNDS times, and
# records the medians in docs/benchmarks.md. As root:
#   bash bench/ws_latency.sh [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
bash scripts/setup.sh >/dev/null
out=$(mktemp)
for i in $(seq "$ROUNDS"); do
  cargo test -q --release --test e2e websocket_replies_are_not_nagle_bound -- --nocapture 2>&1 \
    | grep "execute_reply median" >> "$out"
done
python3 - "$out" <<'PY'
import re, statistics, sys, time, os
rows = [tuple(float(x) for x in re.findall(r"([\d.]+)ms", l)) for l in open(sys.argv[1])]
hub = statistics.median(r[0] for r in rows); direct = statistics.median(r[1] for r in rows)
ratio = statistics.median(r[0] / r[1] for r in rows)
section = f"""<!-- ws-latency:start -->
## WebSocket: execute_request → execute_reply (bench/ws_latency.sh)

{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, jupyter-server + ipykernel from PyPI, hub release build; {len(rows)} runs of
15 round trips each way, alternating through the hub and direct (client with TCP_NODELAY, like a browser); medians.

| path | execute_reply, median |
|---|---|
| direct to jupyter-server | {direct:.1f} ms |
| through the hub | {hub:.1f} ms |
| hub / direct (per run, median) | {ratio:.2f} |

The direct path waits for the client's delayed ACK (~40 ms) because jupyter-server re-enables Nagle
after the upgrade; the hub's tunnel re-arms TCP_QUICKACK on every upstream read, so every cell
execution and widget round trip through the hub skips that wait.
<!-- ws-latency:end -->
"""
path = "docs/benchmarks.md"; text = open(path).read()
s, e = "<!-- ws-latency:start -->", "<!-- ws-latency:end -->\n"
text = text[:text.index(s)] + section + text[text.index(e) + len(e):] if s in text else text.rstrip("\n") + "\n\n" + section
open(path, "w").write(text)
print(section)
PY
