#!/usr/bin/env bash
# Renewer benchmark: N real principals in a throwaway KDC (N = 100 and 1,000), renewed through
# the hub's own Renewer at the kinit concurrency bound, against the direct path (the same N
# `kinit -kt` run by `xargs -P <bound>`), in the same run. As root:
#   bash bench/renewer.sh [bound]
# Prints a markdown section and writes it into docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
BOUND=${1:-8}
bash scripts/setup.sh >/dev/null
cargo build --release --locked --example renewer_bench -q
BIN=target/release/examples/renewer_bench

W=$(mktemp -d /tmp/hub-renewer-bench.XXXXXX)
trap 'kill "$(cat "$W/kdc.pid" 2>/dev/null)" 2>/dev/null || true; rm -rf "$W"' EXIT
REALM=RENEWBENCH.LOCAL
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export KRB5_CONFIG=$W/krb5.conf KRB5_KDC_PROFILE=$W/kdc.conf
printf '[libdefaults]\n default_realm = %s\n dns_lookup_kdc = false\n udp_preference_limit = 1\n[realms]\n %s = {\n  kdc = 127.0.0.1:%s\n }\n' "$REALM" "$REALM" "$PORT" > "$KRB5_CONFIG"
printf '[kdcdefaults]\n kdc_listen = 127.0.0.1:%s\n kdc_tcp_listen = 127.0.0.1:%s\n[realms]\n %s = {\n  database_name = %s/principal\n  key_stash_file = %s/stash\n  acl_file = %s/acl\n  max_life = 10h\n }\n' \
  "$PORT" "$PORT" "$REALM" "$W" "$W" "$W" > "$KRB5_KDC_PROFILE"
touch "$W/acl"
kdb5_util -r $REALM create -s -P "$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')" >/dev/null
krb5kdc -r $REALM -P "$W/kdc.pid"

run() {
  local n=$1 prefix=b$1u
  { for i in $(seq 0 $((n-1))); do echo "addprinc -randkey $prefix$i"; echo "ktadd -k $W/k$n.keytab $prefix$i"; done; } \
    | kadmin.local -r $REALM >/dev/null 2>&1
  chmod 600 "$W/k$n.keytab"
  mkdir -p "$W/direct$n"
  # Alternate A (direct: xargs -P) and B (the hub's renewer) three times; medians.
  for round in 1 2 3; do
    local t0 t1
    t0=$(date +%s.%N)
    seq 0 $((n-1)) | xargs -P "$BOUND" -I{} kinit -k -t "$W/k$n.keytab" -c "FILE:$W/direct$n/cc{}" "$prefix{}@$REALM"
    t1=$(date +%s.%N)
    echo "direct $(echo "$t1 - $t0" | bc)" >> "$W/times$n"
    "$BIN" "$KRB5_CONFIG" $REALM "$W/k$n.keytab" "$prefix" "$n" "$BOUND" >> "$W/hub$n.json"
  done
}
command -v bc >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bc >/dev/null
run 100
run 1000

python3 - "$W" "$BOUND" <<'PY'
import json, statistics, sys, os, subprocess, time
w, bound = sys.argv[1], int(sys.argv[2])
rows = []
for n in (100, 1000):
    direct = [float(l.split()[1]) for l in open(f"{w}/times{n}")]
    hub = [json.loads(l) for l in open(f"{w}/hub{n}.json")]
    ratios = [h["wall_s"] / d for h, d in zip(hub, direct)]
    med = lambda k: statistics.median(h[k] for h in hub)
    rows.append((n, statistics.median(direct), med("wall_s"), statistics.median(ratios), med("kinit_per_s"),
                 max(h["peak_concurrent_kinit"] for h in hub), sum(h["failures"] for h in hub),
                 med("next_renewal_fraction_min"), med("next_renewal_fraction_p50"), med("next_renewal_fraction_max"),
                 med("busiest_second"), med("hub_cpu_s"), med("kinit_cpu_s"), med("hub_peak_rss_mib")))
cores = os.cpu_count()
kv = subprocess.run(["krb5-config", "--version"], capture_output=True, text=True).stdout.strip()
out = [f"<!-- renewer:start -->", "## Renewer (bench/renewer.sh)", "",
       f"{time.strftime('%Y-%m-%d')}, {cores} cores, {kv}, KDC on loopback, hub release build, `max_concurrent_kinit = {bound}`.",
       f"Each round renews N principals once through the hub's Renewer (B) and runs the same N `kinit -kt` with",
       f"`xargs -P {bound}` (A, the direct path); 3 rounds alternating A and B, medians.", "",
       "| N | A: xargs -P | B: hub renewer | B/A | kinit/s (hub) | peak kinit at once | failures | next renewal at (fraction of lifetime: min / median / max) | most renewals in one second | hub CPU | kinit CPU | hub peak RSS |",
       "|---|---|---|---|---|---|---|---|---|---|---|---|"]
for r in rows:
    out.append(f"| {r[0]} | {r[1]:.2f} s | {r[2]:.2f} s | {r[3]:.2f} | {r[4]:.0f} | {r[5]} | {r[6]} | {r[7]:.3f} / {r[8]:.3f} / {r[9]:.3f} | {r[10]:.0f} | {r[11]:.2f} s | {r[12]:.2f} s | {r[13]:.1f} MiB |")
out += ["", "The timer places every next renewal between 65 % and 75 % of the ticket's life (jitter only moves it",
        "earlier), so a 10 h ticket's renewals spread over an hour; \"most renewals in one second\" is for these",
        "tickets, which were all issued within seconds of each other, the worst case.", "<!-- renewer:end -->", ""]
section = "\n".join(out)
print(section)
path = "docs/benchmarks.md"
text = open(path).read()
s, e = "<!-- renewer:start -->", "<!-- renewer:end -->\n"
if s in text:
    a, b = text.index(s), text.index(e) + len(e)
    text = text[:a] + section + text[b:]
else:
    text = text.rstrip("\n") + "\n\n" + section
open(path, "w").write(text)
PY
