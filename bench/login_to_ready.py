#!/usr/bin/env python3
"""Login → ready through the hub, against the single-user server's own start time.

Run as root after `cargo build --release` and `scripts/setup.sh` (bench/run.sh does both):

    python3 bench/login_to_ready.py [--rounds N] [--write docs/benchmarks.md]

Each round alternates A and B on the same machine:
  A  direct: start jupyter-lab as the bench user (setgroups/setgid/setuid, as the hub does,
     no PAM session) with the same arguments and environment the hub
     uses, time until GET /user/<name>/api/status answers 200 (the floor).
  B  hub:    POST /hub/login, then poll GET /user/<name>/api/status through the hub until 200;
     then stop the server from /hub/home.
Reports medians and the per-round difference B - A, plus the hub's RSS at idle (no server
running) after the rounds. Uses only the standard library.
"""

import argparse
import http.cookiejar
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

import benchdoc  # bench/benchdoc.py (the script's own directory is on sys.path)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.environ.get("HUB_VENV", "/opt/hub/jupyter-venv")
HUB = os.path.join(ROOT, "target/release/hub")


def wait_status(url, headers=None, timeout=90.0, opener=None):
    deadline = time.monotonic() + timeout
    req = urllib.request.Request(url, headers=headers or {})
    while time.monotonic() < deadline:
        try:
            with (opener.open(req, timeout=2) if opener else urllib.request.urlopen(req, timeout=2)) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.02)
    raise SystemExit(f"timed out waiting for {url}")


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--write", help="replace the login-to-ready section of this markdown file")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (creates a bench user and switches to it)")

    user = "hubbench" + secrets.token_hex(2)
    password = secrets.token_hex(12)
    pam = "hub-bench-" + secrets.token_hex(2)
    work = tempfile.mkdtemp(prefix="hub-bench-")
    os.chmod(work, 0o711)
    subprocess.run(["useradd", "-m", "-s", "/bin/bash", user], check=True)
    subprocess.run(["chpasswd"], input=f"{user}:{password}\n", text=True, check=True)
    with open(f"/etc/pam.d/{pam}", "w") as f:
        f.write("auth required pam_unix.so nodelay\naccount required pam_unix.so\n")
    hub = None
    try:
        port = benchdoc.free_port()
        cfg = os.path.join(work, "hub.toml")
        with open(cfg, "w") as f:
            f.write(
                f'[hub]\nbind = "127.0.0.1:{port}"\npublic_url = "http://127.0.0.1:{port}"\ndata_dir = "{work}"\n'
                f'[auth]\npam_service = "{pam}"\n[spawner]\ncmd = ["{VENV}/bin/jupyter-lab"]\n'
            )
        subprocess.run([HUB, "migrate", "--config", cfg], check=True, stdout=subprocess.DEVNULL)
        hub = subprocess.Popen([HUB, "serve", "--config", cfg], stderr=open(os.path.join(work, "hub.log"), "w"))
        wait_status(f"http://127.0.0.1:{port}/hub/health")
        base = f"http://127.0.0.1:{port}"

        direct, via_hub = [], []
        for _ in range(args.rounds):
            # A: the server alone.
            p = benchdoc.free_port()
            token = secrets.token_hex(16)
            t0 = time.monotonic()
            srv = subprocess.Popen(
                [f"{VENV}/bin/jupyter-lab", f"--ServerApp.base_url=/user/{user}/",
                 "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={p}", "--ServerApp.port_retries=0",
                 "--ServerApp.open_browser=False", "--ServerApp.allow_remote_access=True"],
                env={"HOME": f"/home/{user}", "PATH": "/usr/bin:/bin", "JUPYTER_TOKEN": token, "LANG": "C.UTF-8"},
                cwd=f"/home/{user}", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                # The same identity switch the hub makes (setgroups, setgid, setuid), no PAM session.
                user=user, group=user, extra_groups=[], start_new_session=True,
            )
            wait_status(f"http://127.0.0.1:{p}/user/{user}/api/status", {"Authorization": f"token {token}"})
            direct.append(time.monotonic() - t0)
            srv.terminate()
            srv.wait()
            subprocess.run(["pkill", "-u", user], check=False)

            # B: through the hub, from the login POST.
            jar = http.cookiejar.CookieJar()
            opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect)
            # As a browser: the login page sets the XSRF cookie, and forms are posted with it
            # and an Origin header (the hub refuses a form POST without both).
            opener.open(f"{base}/hub/login", timeout=10).read()
            xsrf = next((c.value for c in jar if c.name == "_xsrf"), "")
            form = {"username": user, "password": password, "next": "", "_xsrf": xsrf}
            body = urllib.parse.urlencode(form).encode()
            t0 = time.monotonic()
            try:
                opener.open(urllib.request.Request(f"{base}/hub/login", data=body, headers={"Origin": base}), timeout=10)
            except urllib.error.HTTPError as e:
                if e.code != 303:
                    raise
            wait_status(f"{base}/user/{user}/api/status", {"Accept": "application/json"}, opener=opener)
            via_hub.append(time.monotonic() - t0)
            # The stop form's XSRF token is the one the home page puts in its forms.
            page = opener.open(f"{base}/hub/home", timeout=10).read().decode()
            xsrf = re.search(r'name="_xsrf" value="([^"]*)"', page).group(1)
            stop = urllib.request.Request(
                f"{base}/hub/home/stop", data=urllib.parse.urlencode({"_xsrf": xsrf}).encode(), headers={"Origin": base}
            )
            try:
                opener.open(stop, timeout=30)
            except urllib.error.HTTPError as e:
                if e.code != 303:
                    raise

        time.sleep(1)
        idle_rss = benchdoc.rss_kib(hub.pid)
        rows = {
            "rounds": args.rounds,
            "server_alone_s": statistics.median(direct),
            "login_to_ready_s": statistics.median(via_hub),
            "added_s": statistics.median([b - a for a, b in zip(direct, via_hub)]),
            "hub_idle_rss_mib": idle_rss / 1024,
            "added_per_round_ms": [round((b - a) * 1000) for a, b in zip(direct, via_hub)],
        }
        print(json.dumps(rows, indent=2))
        if args.write:
            write_section(args.write, rows)
    finally:
        if hub:
            hub.terminate()
            hub.wait()
        subprocess.run(["pkill", "-KILL", "-u", user], check=False)
        time.sleep(0.2)
        subprocess.run(["userdel", "-r", "-f", user], check=False, stderr=subprocess.DEVNULL)
        os.remove(f"/etc/pam.d/{pam}")
        subprocess.run(["rm", "-rf", work], check=False)


def write_section(path, r):
    machine = benchdoc.machine()
    jl = subprocess.run([f"{VENV}/bin/jupyter-lab", "--version"], capture_output=True, text=True).stdout.strip()
    # jupyter-lab's own start time varies by hundreds of milliseconds from one start to the
    # next, so the spread of B − A says how far the median can be trusted.
    q = statistics.quantiles(r["added_per_round_ms"], n=4) if len(r["added_per_round_ms"]) > 1 else [0, 0, 0]
    section = f"""<!-- login-to-ready:start -->
## Login → ready (bench/login_to_ready.py)

{time.strftime('%Y-%m-%d')}, {machine}, JupyterLab {jl}, hub release build, SQLite, Kerberos off,
{r['rounds']} rounds alternating A (server alone) and B (through the hub); medians.

| figure | value |
|---|---|
| A: jupyter-lab start → `api/status` 200, alone | {r['server_alone_s']:.3f} s |
| B: login POST → `api/status` 200 through the hub | {r['login_to_ready_s']:.3f} s |
| B − A, per round (what the hub adds: PAM, session, spawn, readiness polling, proxy) | {r['added_s']*1000:.0f} ms (quartiles {q[0]:.0f} / {q[2]:.0f} ms) |
| hub RSS at idle after the rounds (no server running) | {r['hub_idle_rss_mib']:.1f} MiB |

jupyter-lab's own start varies more from round to round than what the hub adds, so the median
above moves by up to hundreds of milliseconds between runs; the hub's own part, measured with a stand-in
server that starts in ~50 ms, is row 2b of the side-by-side table below.
<!-- login-to-ready:end -->
"""
    benchdoc.replace_section(path, "login-to-ready", section)


if __name__ == "__main__":
    sys.exit(main())
