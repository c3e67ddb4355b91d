#!/usr/bin/env python3
"""The REST API's user list at 1,000 and 10,000 users, on SQLite and on PostgreSQL.

Run as root after `cargo build --release` and `scripts/setup.sh` (bench/run.sh does both):

    python3 bench/api_users.py [--rounds N] [--write docs/benchmarks.md]

Creates 1,000 Linux accounts (`newusers`; the API only adds users that have one) and removes
them afterwards, starts a throwaway PostgreSQL cluster (scripts/throwaway-postgres.sh), and
for each backend runs `hub migrate` and `hub serve` with a service token, then measures:

  - POST /hub/api/users with 1,000 names in one request;
  - a paged walk of GET /hub/api/users (limit 200, following `_pagination.next`, as
    jupyterhub-idle-culler does) at 1,000 users, N rounds alternating the two backends;
  - the same at 10,000 users (the other 9,000 rows are inserted into the database directly:
    they need no Linux account to be listed);
  - the hub's RSS after the walks (VmRSS; VmHWM for the peak).

Reports medians and the PostgreSQL/SQLite ratio within each round. Standard library only.
"""

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import benchdoc  # bench/benchdoc.py (the script's own directory is on sys.path)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HUB = os.path.join(ROOT, "target/release/hub")
PSQL = "/usr/lib/postgresql/15/bin/psql"
PREFIX = "hubb" + secrets.token_hex(2)


def request(base, token, method, path, body=None, accept="application/json"):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"{base}{path}", data=data, method=method,
                                 headers={"Authorization": f"token {token}", "Accept": accept,
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return r.status, json.loads(r.read() or b"null")


def walk(base, token):
    """Pages through every user; returns (seconds, users seen, requests)."""
    t0 = time.perf_counter()
    path, seen, n = "/hub/api/users?limit=200", 0, 0
    while path:
        _, body = request(base, token, "GET", path, accept="application/jupyterhub-pagination+json")
        seen += len(body["items"])
        n += 1
        nxt = body["_pagination"]["next"]
        path = nxt["url"][len(base):] if nxt else None
    return time.perf_counter() - t0, seen, n


class Hub:
    def __init__(self, work, name, database_url, token):
        self.dir = os.path.join(work, name)
        os.makedirs(self.dir, mode=0o711)
        self.port = benchdoc.free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.url = database_url
        self.config = os.path.join(self.dir, "hub.toml")
        with open(self.config, "w") as f:
            f.write(f"""[hub]
bind = "127.0.0.1:{self.port}"
public_url = "{self.base}"
data_dir = "{self.dir}"
database_url = "{database_url}"
[spawner]
cmd = ["/bin/true"]
[kerberos]
enabled = false
[api]
page_max_limit = 200
[[services]]
name = "bench"
api_token_env = "HUB_BENCH_TOKEN"
scopes = ["admin:users", "list:users", "read:users", "read:servers", "read:users:activity"]
""")
        os.chmod(self.config, 0o600)
        subprocess.run([HUB, "migrate", "--config", self.config], check=True, capture_output=True)
        self.env = dict(os.environ, HUB_BENCH_TOKEN=token, RUST_LOG="warn")
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([HUB, "serve", "--config", self.config], env=self.env,
                                     stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.dir, "hub.log"), "a"))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{self.base}/hub/health", timeout=1).read()
                return
            except OSError:
                time.sleep(0.02)
        raise SystemExit(f"hub on {self.url} did not start; see {self.dir}/hub.log")

    def stop(self):
        if self.proc:
            self.proc.terminate()
            self.proc.wait(timeout=30)
            self.proc = None


def seed(hub, count):
    """Inserts `count` extra user rows directly (names {PREFIX}x00000...)."""
    now = int(time.time())
    if hub.url.startswith("sqlite://"):
        import sqlite3
        db = sqlite3.connect(hub.url[len("sqlite://"):])
        db.executemany("INSERT INTO users (name, admin, created) VALUES (?, 0, ?)",
                       [(f"{PREFIX}x{i:05d}", now) for i in range(count)])
        db.commit()
        db.close()
    else:
        sql = (f"INSERT INTO users (name, admin, created) SELECT '{PREFIX}x' || lpad(i::text, 5, '0'), false, {now} "
               f"FROM generate_series(0, {count - 1}) AS i")
        subprocess.run([PSQL, hub.url, "-qAtc", sql], check=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--write", help="replace the api-users section of this markdown file")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("api_users.py: run as root (it creates Linux accounts)")
    work = tempfile.mkdtemp(prefix="hub-bench-api-")
    os.chmod(work, 0o711)
    names = [f"{PREFIX}{i:04d}" for i in range(1000)]
    pg_dir = os.path.join(tempfile.gettempdir(), f"hub-bench-pg-{secrets.token_hex(4)}")
    token = secrets.token_hex(24)
    hubs = []
    try:
        t0 = time.perf_counter()
        lines = "".join(f"{n}:!::::/nonexistent:/usr/sbin/nologin\n" for n in names)
        subprocess.run(["newusers"], input=lines, text=True, check=True)
        print(f"created 1000 Linux accounts in {time.perf_counter() - t0:.1f} s", flush=True)
        admin_url = subprocess.run(["bash", os.path.join(ROOT, "scripts/throwaway-postgres.sh"), "start", pg_dir],
                                   check=True, capture_output=True, text=True).stdout.strip()
        subprocess.run([PSQL, admin_url, "-qAtc", "CREATE DATABASE hubbench"], check=True)
        pg_url = admin_url.rsplit("/", 1)[0] + "/hubbench"
        hubs = [Hub(work, "sqlite", f"sqlite://{work}/sqlite/hub.sqlite", token), Hub(work, "postgres", pg_url, token)]
        r = {h.dir: {} for h in hubs}
        for h in hubs:
            h.start()
            t = time.perf_counter()
            status, made = request(h.base, token, "POST", "/hub/api/users", {"usernames": names})
            r[h.dir]["post_1000_s"] = time.perf_counter() - t
            assert status == 201 and len(made) == 1000, (status, len(made))
        for size in (1000, 10000):
            if size == 10000:
                for h in hubs:
                    seed(h, 9000)
            times = {h.dir: [] for h in hubs}
            ratios = []
            for _ in range(args.rounds):
                round_t = {}
                for h in hubs:
                    s, seen, n = walk(h.base, token)
                    assert seen >= size, (seen, size)
                    round_t[h.dir] = s
                    times[h.dir].append(s)
                ratios.append(round_t[hubs[1].dir] / round_t[hubs[0].dir])
            for h in hubs:
                r[h.dir][f"walk_{size}_s"] = statistics.median(times[h.dir])
                r[h.dir][f"walk_{size}_requests"] = n
            r[f"ratio_{size}"] = statistics.median(ratios)
        for h in hubs:
            r[h.dir]["rss_mib"] = benchdoc.rss_kib(h.proc.pid) / 1024
            r[h.dir]["hwm_mib"] = benchdoc.rss_kib(h.proc.pid, "VmHWM") / 1024
        rows = {"rounds": args.rounds, "sqlite": r[hubs[0].dir], "postgres": r[hubs[1].dir],
                "ratio_1000": r["ratio_1000"], "ratio_10000": r["ratio_10000"]}
        print(json.dumps(rows, indent=2))
        if args.write:
            write_section(args.write, rows)
    finally:
        for h in hubs:
            h.stop()
        subprocess.run(["bash", os.path.join(ROOT, "scripts/throwaway-postgres.sh"), "stop", pg_dir], check=False)
        for n in names:
            subprocess.run(["userdel", n], check=False, capture_output=True)
        subprocess.run(["rm", "-rf", work], check=False)


def write_section(path, r):
    machine = benchdoc.machine()
    import re
    pg = re.search(r"\d+\.\d+", subprocess.run([PSQL, "--version"], capture_output=True, text=True).stdout).group(0)
    s, p = r["sqlite"], r["postgres"]
    section = f"""<!-- api-users:start -->
## REST API: users at 1,000 and 10,000 (bench/api_users.py)

{time.strftime('%Y-%m-%d')}, {machine}, hub release build, PostgreSQL {pg} on loopback (fsync off), a service
token; walks page with `limit=200` through `_pagination.next`; {r['rounds']} rounds alternating the backends, medians.

| figure | SQLite | PostgreSQL | PostgreSQL / SQLite |
|---|---|---|---|
| `POST /hub/api/users` with 1,000 names (one request) | {s['post_1000_s']:.2f} s | {p['post_1000_s']:.2f} s | {p['post_1000_s'] / s['post_1000_s']:.2f} |
| paged walk of `GET /hub/api/users`, 1,000 users ({s['walk_1000_requests']} requests) | {s['walk_1000_s']*1000:.0f} ms | {p['walk_1000_s']*1000:.0f} ms | {r['ratio_1000']:.2f} |
| paged walk, 10,000 users ({s['walk_10000_requests']} requests) | {s['walk_10000_s']:.2f} s | {p['walk_10000_s']:.2f} s | {r['ratio_10000']:.2f} |
| hub RSS after the walks, 10,000 users (peak) | {s['rss_mib']:.1f} MiB ({s['hwm_mib']:.1f}) | {p['rss_mib']:.1f} MiB ({p['hwm_mib']:.1f}) | |

The POST checks each name against the Linux account database (`getpwnam`, which reads
/etc/passwd, here 1,000+ lines) and then inserts all rows in one transaction. Pages are cut
in the database (`LIMIT`/`OFFSET`, the total from `COUNT(*)`) when the list is not filtered by
server state, so a walk grows linearly with the number of users; a `state=` filter or a
`last_activity` sort reads the whole list for each page.
<!-- api-users:end -->
"""
    benchdoc.replace_section(path, "api-users", section)


if __name__ == "__main__":
    sys.exit(main())
