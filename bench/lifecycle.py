#!/usr/bin/env python3
"""Server lifecycle figures: hub start-up with recorded servers, concurrent spawns, stopping.

Run as root after `cargo build --release` and `scripts/setup.sh` (bench/run.sh does both):

    python3 bench/lifecycle.py [--rounds N] [--write docs/benchmarks.md]

1. Start-up with 0, 100 and 1,000 recorded running servers: time from `hub serve` to
   `/hub/health` 200, and to every recorded server re-adopted (`jupyterhub_running_servers`
   in /hub/metrics). The servers are a STAND-IN: one small Python asyncio process (as
   `nobody`) listening on N loopback ports and answering `api/status` with 200; every record
   points at it (its pid, start time and uid, a port each). This measures the hub's checks,
   not N JupyterLabs.
2. Spawns of real JupyterLab servers through the REST API (10 Linux users created for the run):
   one alone, then 10 at once; time until every one is ready; the ratio of the two.
3. Stopping those 10 servers at once (DELETE .../server), until all have stopped.
Rounds alternate the workloads; medians. Standard library only.
"""

import argparse
import json
import os
import secrets
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

import benchdoc  # bench/benchdoc.py (the script's own directory is on sys.path)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HUB = os.path.join(ROOT, "target/release/hub")
VENV = os.environ.get("HUB_VENV", "/opt/hub/jupyter-venv")
NOBODY = 65534

STANDIN = r"""
import asyncio, sys
n = int(sys.argv[1])
async def handle(reader, writer):
    try:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}")
        await writer.drain()
    except Exception:
        pass
    writer.close()
async def main():
    servers = [await asyncio.start_server(handle, "127.0.0.1", 0) for _ in range(n)]
    print(" ".join(str(s.sockets[0].getsockname()[1]) for s in servers), flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def ticks(pid):
    stat = open(f"/proc/{pid}/stat").read()
    return int(stat[stat.rindex(")") + 2:].split()[19])


def get(url, token=None, timeout=5):
    req = urllib.request.Request(url, headers={"Authorization": f"token {token}"} if token else {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


def api(base, token, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"{base}/hub/api{path}", data=data, method=method,
                                 headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def write_config(d, port, token_env, cmd):
    path = os.path.join(d, "hub.toml")
    with open(path, "w") as f:
        f.write(f"""[hub]
bind = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
data_dir = "{d}"
[spawner]
cmd = {json.dumps(cmd)}
start_timeout = "120s"
[kerberos]
enabled = false
[api]
authenticate_metrics = false
[[services]]
name = "bench"
api_token_env = "{token_env}"
scopes = ["admin:users", "list:users", "read:users", "servers", "delete:servers", "read:servers"]
""")
    subprocess.run([HUB, "migrate", "--config", path], check=True, capture_output=True)
    return path


def running_servers(base):
    _, body = get(f"{base}/hub/metrics")
    for line in body.decode().splitlines():
        if line.startswith("jupyterhub_running_servers "):
            return int(float(line.split()[1]))
    return 0


def startup(work, n, standin_pid, ports, token):
    """Seconds from exec to /hub/health 200 and to all n servers re-adopted."""
    d = os.path.join(work, f"startup-{n}-{secrets.token_hex(3)}")
    os.makedirs(d, mode=0o711)
    port = benchdoc.free_port()
    cfg = write_config(d, port, "HUB_BENCH_TOKEN", ["/bin/true"])
    db = sqlite3.connect(os.path.join(d, "hub.sqlite"))
    now, t = int(time.time()), ticks(standin_pid)
    db.executemany("INSERT INTO users (name, admin, created) VALUES (?, 0, ?)",
                   [(f"standin{i:04d}", now) for i in range(n)])
    db.executemany("INSERT INTO servers (username, state, pid, port, started, token, pid_start, uid, gid) "
                   "VALUES (?, 'running', ?, ?, ?, ?, ?, ?, ?)",
                   [(f"standin{i:04d}", standin_pid, ports[i], now, secrets.token_hex(16), t, NOBODY, NOBODY)
                    for i in range(n)])
    db.commit()
    db.close()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ, HUB_BENCH_TOKEN=token, RUST_LOG="warn")
    t0 = time.perf_counter()
    proc = subprocess.Popen([HUB, "serve", "--config", cfg], env=env, stdout=subprocess.DEVNULL,
                            stderr=open(os.path.join(d, "hub.log"), "w"))
    try:
        health = None
        while True:
            try:
                if health is None and get(f"{base}/hub/health", timeout=1)[0] == 200:
                    health = time.perf_counter() - t0
                if health is not None and running_servers(base) == n:
                    return health, time.perf_counter() - t0
            except OSError:
                pass
            if time.perf_counter() - t0 > 120:
                raise SystemExit(f"start-up with {n} servers did not finish; see {d}/hub.log")
            time.sleep(0.005)
    finally:
        proc.kill()  # SIGKILL: the stand-in must not be stopped
        proc.wait()


def wait_ready(base, token, names, timeout=180):
    deadline = time.monotonic() + timeout
    left = set(names)
    while left:
        for n in list(left):
            _, u = api(base, token, "GET", f"/users/{n}")
            s = (u or {}).get("servers", {}).get("")
            if s and s.get("ready"):
                left.discard(n)
            elif s and s.get("hub_state") == "failed":
                raise SystemExit(f"{n}'s server failed: {s.get('hub_message')}")
        if time.monotonic() > deadline:
            raise SystemExit(f"servers never ready: {sorted(left)}")
        time.sleep(0.05)


def spawn(base, token, names):
    t0 = time.perf_counter()
    threads = [threading.Thread(target=api, args=(base, token, "POST", f"/users/{n}/server", {})) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wait_ready(base, token, names)
    return time.perf_counter() - t0


def stop(base, token, names):
    t0 = time.perf_counter()
    threads = [threading.Thread(target=api, args=(base, token, "DELETE", f"/users/{n}/server")) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    while any(api(base, token, "GET", f"/users/{n}")[1]["servers"] for n in names):
        time.sleep(0.05)
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--write", help="replace the lifecycle section of this markdown file")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("lifecycle.py: run as root (it creates Linux users)")
    work = tempfile.mkdtemp(prefix="hub-bench-life-")
    os.chmod(work, 0o711)
    token = secrets.token_hex(24)
    prefix = "hubl" + secrets.token_hex(2)
    users = [f"{prefix}{i:02d}" for i in range(10)]
    def as_nobody():
        import resource
        resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))  # 1,000 listening sockets
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)

    # Debian's python3: the stand-in runs as nobody, who cannot read a pyenv under /root.
    standin = subprocess.Popen(["/usr/bin/python3", "-c", STANDIN, "1000"], stdout=subprocess.PIPE, text=True,
                               preexec_fn=as_nobody, cwd="/")
    hub = None
    try:
        ports = [int(p) for p in standin.stdout.readline().split()]
        res = {"rounds": args.rounds}
        for n in (0, 100, 1000):
            runs = [startup(work, n, standin.pid, ports, token) for _ in range(args.rounds)]
            res[f"health_{n}"] = statistics.median(r[0] for r in runs)
            res[f"adopted_{n}"] = statistics.median(r[1] for r in runs)
            print(f"start-up with {n} recorded servers: health {res[f'health_{n}']:.3f} s, all adopted "
                  f"{res[f'adopted_{n}']:.3f} s", flush=True)
        for u in users:
            subprocess.run(["useradd", "-m", "-s", "/bin/bash", u], check=True)
        d = os.path.join(work, "spawns")
        os.makedirs(d, mode=0o711)
        port = benchdoc.free_port()
        cfg = write_config(d, port, "HUB_BENCH_TOKEN", [f"{VENV}/bin/jupyter-lab"])
        base = f"http://127.0.0.1:{port}"
        hub = subprocess.Popen([HUB, "serve", "--config", cfg], env=dict(os.environ, HUB_BENCH_TOKEN=token,
                               RUST_LOG="warn"), stdout=subprocess.DEVNULL, stderr=open(os.path.join(d, "hub.log"), "w"))
        deadline = time.monotonic() + 20
        while True:
            try:
                get(f"{base}/hub/health", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("the spawn hub did not start")
                time.sleep(0.02)
        status, body = api(base, token, "POST", "/users", {"usernames": users})
        assert status == 201, (status, body)
        one, ten, stops, ratios = [], [], [], []
        for _ in range(args.rounds):
            a = spawn(base, token, users[:1])
            stop(base, token, users[:1])
            b = spawn(base, token, users)
            c = stop(base, token, users)
            one.append(a)
            ten.append(b)
            stops.append(c)
            ratios.append(b / a)
            print(f"round: one spawn {a:.2f} s, ten at once {b:.2f} s (x{b / a:.2f}), stop ten {c:.2f} s", flush=True)
        res.update(one=statistics.median(one), ten=statistics.median(ten), ratio=statistics.median(ratios),
                   stop=statistics.median(stops))
        print(json.dumps(res, indent=2))
        if args.write:
            write_section(args.write, res)
    finally:
        if hub:
            hub.terminate()
            hub.wait()
        standin.kill()
        standin.wait()
        for u in users:
            subprocess.run(["pkill", "-KILL", "-u", u], check=False)
            subprocess.run(["userdel", "-r", u], check=False, capture_output=True)
        subprocess.run(["rm", "-rf", work], check=False)


def write_section(path, r):
    machine = benchdoc.machine()
    jl = subprocess.run([f"{VENV}/bin/jupyter-lab", "--version"], capture_output=True, text=True).stdout.strip()
    section = f"""<!-- lifecycle:start -->
## Server lifecycle (bench/lifecycle.py)

{time.strftime('%Y-%m-%d')}, {machine}, hub release build, SQLite, Kerberos off, JupyterLab {jl}; {r['rounds']} rounds, medians.

Start-up with recorded running servers. The servers are a **stand-in**: one Python asyncio
process listening on 1,000 loopback ports, which every record points at; the hub checks each
record's process (pid, start time, owner) and its `api/status`, 32 at a time, while it already
answers.

| recorded servers | `hub serve` → `/hub/health` 200 | → all re-adopted |
|---|---|---|
| 0 | {r['health_0']*1000:.0f} ms | {r['adopted_0']*1000:.0f} ms |
| 100 | {r['health_100']*1000:.0f} ms | {r['adopted_100']*1000:.0f} ms |
| 1,000 | {r['health_1000']*1000:.0f} ms | {r['adopted_1000']*1000:.0f} ms |

Real JupyterLab servers through the REST API (`POST`/`DELETE /hub/api/users/<name>/server`),
until every one is ready (or gone):

| figure | value |
|---|---|
| one spawn | {r['one']:.2f} s |
| 10 spawns at once | {r['ten']:.2f} s |
| 10 at once / one, per round (2 cores: 10 JupyterLabs compete for them) | {r['ratio']:.2f} |
| stop 10 servers at once | {r['stop']:.2f} s |
<!-- lifecycle:end -->
"""
    benchdoc.replace_section(path, "lifecycle", section)


if __name__ == "__main__":
    sys.exit(main())
