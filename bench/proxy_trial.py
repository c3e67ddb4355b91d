"""Proxy trial: wrk through the hub (and optionally a second hub build, nginx as a reverse
proxy, or HAProxy) against the nginx stand-in directly, paths alternating within each round.

This is the harness behind the figures marked "trial" in docs/benchmarks.md: quicker than
bench/vs_jupyterhub.sh (no JupyterHub, one workload), and it reports what that script does not,
CPU per request for each proxy and for the backend (µs, from /proc/<pid>/stat), how busy the
machine was, the hub's context switches per request, and each proxy's RSS right after its run. Run as root from the repository after
`bash bench/vs_jupyterhub.sh` has installed wrk and built the hub once:

    /opt/hub/bench/jupyterhub-venv/bin/python bench/proxy_trial.py [--case small|big]
        [--conns 32] [--rounds 6] [--paths direct,hub,nginx] [--hub2 PATH]
        [--hub2-env K=V ...] [--hub2-sched batch] [--haproxy http|tcp] [--haproxy-threads 1]
        [--haproxy-splice]

`--hub2` runs a second hub binary beside the first (say, a build with a change) against its own
nginx stand-in; `--hub2-env` and `--hub2-sched` start it with extra environment (for example
GLIBC_TUNABLES=glibc.malloc.mxfast=0) or as SCHED_BATCH. `--haproxy` adds HAProxy (apt
package `haproxy`, not installed by this project) forwarding to the hub's server socket, in
TCP mode or in HTTP mode with kept upstream connections and the header work the hub does;
`--haproxy-splice` adds three more of the same mode: one splicing bodies (splice(2)) from the
same socket, and one copying and one splicing from the stand-in's loopback port.
Ratios are req/s over the direct path's in the same round. A test user and a PAM service file
are created and removed.
"""

import argparse
import glob
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vs_jupyterhub as V  # noqa: E402

# A PAM service file of each run's own (its name gets the run's user name), so that two
# trials at once do not remove each other's.
PAM_PREFIX = "hub-bench-trial"


def cpu_ticks(pids):
    """utime + stime of `pids`, in clock ticks (1/100 s); processes gone are skipped."""
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except FileNotFoundError:
            pass
    return total


def machine_ticks():
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:]]


def ctx_switches(pid):
    with open(f"/proc/{pid}/status") as f:
        t = f.read()
    return [int(re.search(k + r":\s+(\d+)", t).group(1)) for k in ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")]


def haproxy_config(mode, threads, port, socket, splice=False):
    http = (
        "  option forwardfor\n"
        "  http-request set-header X-Forwarded-Proto http\n"
        "  http-request set-header X-Forwarded-Host %[req.hdr(host)]\n"
        '  http-request set-header Authorization "token 0123456789abcdef0123456789abcdef"\n'
        "  http-request del-header Cookie\n"
    )
    return (
        f"global\n  nbthread {threads}\ndefaults\n  mode {mode}\n  timeout connect 5s\n"
        f"  timeout client 60s\n  timeout server 60s\nfrontend f\n  bind 127.0.0.1:{port}\n"
        f"  default_backend b\n{http if mode == 'http' else ''}backend b\n"
        f"{'  http-reuse always' + chr(10) if mode == 'http' else ''}"
        f"{'  option splice-request' + chr(10) + '  option splice-response' + chr(10) if splice else ''}"
        f"  server s1 {socket}\n"
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--case", choices=["small", "big"], default="small", help="100-byte or 1 MiB response")
    ap.add_argument("--conns", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    ap.add_argument("--paths", default="direct,hub,hub2,nginx,haproxy", help="which of them to run")
    ap.add_argument("--hub2", help="a second hub binary to run beside the first")
    ap.add_argument("--hub2-env", nargs="*", default=[], metavar="K=V")
    ap.add_argument("--hub2-sched", choices=["batch"])
    ap.add_argument("--haproxy", choices=["http", "tcp"])
    ap.add_argument("--haproxy-threads", type=int, default=1)
    ap.add_argument("--haproxy-splice", action="store_true",
                    help="also run HAProxy of the same mode splicing bodies (splice(2)) from the hub's "
                    "socket, and copying and splicing them from the stand-in's loopback port")
    a = ap.parse_args()
    # `timeout` and Ctrl-C end the run through the cleanup below, not around it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    work = tempfile.mkdtemp(prefix="hub-trial-")
    os.chmod(work, 0o711)
    user, pw = "trial" + secrets.token_hex(3), secrets.token_hex(8)
    PAM = f"{PAM_PREFIX}-{user}"
    with open(f"/etc/pam.d/{PAM}", "w") as f:
        f.write("auth required pam_unix.so nodelay\naccount required pam_unix.so\n")
    subprocess.run(["useradd", "-m", user], check=True)
    subprocess.run(["chpasswd"], input=f"{user}:{pw}\n", text=True, check=True)
    procs, hubs = [], []
    try:
        script = os.path.join(work, "nginx-server.sh")
        with open(script, "w") as f:
            f.write(V.NGINX_SERVER)
        os.chmod(script, 0o755)

        def start_hub(binary, directory, env):
            os.makedirs(directory, mode=0o711, exist_ok=True)
            V.HUB = binary
            h = V.OurHub(directory, "t" * 48, PAM, cmd=[script])
            saved = dict(os.environ)
            os.environ.update(env)
            try:
                h.start()
            finally:
                os.environ.clear()
                os.environ.update(saved)
            hubs.append(h)
            _, session = V.login_ready(h.base, user, pw, ready_path=f"/user/{user}/api/status")
            return h, {"Cookie": V.cookie_header(session)}

        hub, hub_hdr = start_hub(V.HUB, work, {})
        paths = {"hub": (hub.base, hub_hdr, [hub.proc.pid])}
        if a.hub2:
            env = dict(kv.split("=", 1) for kv in a.hub2_env)
            hub2, hub2_hdr = start_hub(a.hub2, os.path.join(work, "second"), env)
            if a.hub2_sched == "batch":
                subprocess.run(["chrt", "-a", "-b", "-p", "0", str(hub2.proc.pid)], check=True)
            paths["hub2"] = (hub2.base, hub2_hdr, [hub2.proc.pid])
        backend, _ = hub.direct(user)
        paths["direct"] = (f"http://127.0.0.1:{backend}", {}, [])
        rp, rp_port = V.nginx_reverse_proxy(work, backend)
        procs.append(rp)
        paths["nginx"] = (f"http://127.0.0.1:{rp_port}", {}, [rp.pid] + V.children(rp.pid))
        if a.haproxy:
            if not shutil.which("haproxy"):
                raise SystemExit("--haproxy: install it first (apt-get install haproxy)")
            socket = next(p for p in subprocess.check_output(["find", work, "-name", "server.sock"], text=True).split()
                          if f"/{user}/" in p)
            port = V.benchdoc.free_port()
            cfg = os.path.join(work, "haproxy.cfg")
            with open(cfg, "w") as f:
                f.write(haproxy_config(a.haproxy, a.haproxy_threads, port, socket))
            hap = subprocess.Popen(["haproxy", "-db", "-f", cfg])
            procs.append(hap)
            paths["haproxy"] = (f"http://127.0.0.1:{port}", {}, [hap.pid])
            if a.haproxy_splice:
                # Beside "haproxy" (copying, from the hub's Unix socket): one splicing from the
                # same socket, and a copying and a splicing one from the stand-in's loopback
                # port, to see what splice(2) saves an HTTP proxy here with either upstream.
                tcp = f"127.0.0.1:{backend}"
                for name, up, splice in (("hap-splice-unix", socket, True), ("hap-copy-tcp", tcp, False),
                                         ("hap-splice-tcp", tcp, True)):
                    p2 = V.benchdoc.free_port()
                    cfg2 = os.path.join(work, f"{name}.cfg")
                    with open(cfg2, "w") as f:
                        f.write(haproxy_config(a.haproxy, a.haproxy_threads, p2, up, splice))
                    h2 = subprocess.Popen(["haproxy", "-db", "-f", cfg2])
                    procs.append(h2)
                    paths[name] = (f"http://127.0.0.1:{p2}", {}, [h2.pid])
            time.sleep(1)
        wanted = a.paths.split(",")
        order = ["direct", "hub", "hub2", "nginx", "haproxy", "hap-splice-unix", "hap-copy-tcp", "hap-splice-tcp"]
        paths = {k: paths[k] for k in order if k in paths and (k in wanted or k.startswith("hap-"))}
        backend_pids = [int(x) for x in subprocess.check_output(["pgrep", "-u", user, "nginx"]).split()]

        rps = {p: [] for p in paths}
        for i in range(a.rounds):
            for p in list(paths) if i % 2 == 0 else list(paths)[::-1]:
                base, hdr, pids = paths[p]
                c0, b0, m0 = cpu_ticks(pids), cpu_ticks(backend_pids), machine_ticks()
                s0 = ctx_switches(pids[0]) if p.startswith("hub") else None
                r = V.wrk(f"{base}/user/{user}/{a.case}", a.conns, a.duration, hdr)
                c1, b1, m1 = cpu_ticks(pids), cpu_ticks(backend_pids), machine_ticks()
                n = r["rps"] * a.duration
                d = [y - x for x, y in zip(m0, m1)]
                busy = 1 - (d[3] + d[4]) / sum(d)
                line = (f"{p:15s} req/s {r['rps']:8.0f}  proxy µs/req {(c1 - c0) * 1e4 / n:5.1f}  "
                        f"backend µs/req {(b1 - b0) * 1e4 / n:5.1f}  machine busy {busy:.2f}")
                if s0:
                    s1 = ctx_switches(pids[0])
                    line += f"  ctx switches/req vol {(s1[0] - s0[0]) / n:.3f} invol {(s1[1] - s0[1]) / n:.3f}"
                if pids:
                    line += f"  RSS after {sum(V.benchdoc.rss_kib(x) for x in pids) / 1024:.1f} MiB"
                print(line, flush=True)
                rps[p].append(r["rps"])
        if "direct" in rps:
            for p in paths:
                print(f"{p:15s} of direct, per round:", [round(x / y, 3) for x, y in zip(rps[p], rps["direct"])])
    finally:
        for p in procs:
            p.terminate()
            p.wait()
        for h in hubs:
            try:
                h.stop()
            except Exception as e:  # keep cleaning up
                print("stopping a hub:", e, file=sys.stderr)
        subprocess.run(["pkill", "-KILL", "-u", user])
        time.sleep(0.3)
        # The stand-in's own directories (NGINX_SERVER: /tmp/hub-bench-nginx-*), the user's.
        uid = int(subprocess.check_output(["id", "-u", user]))
        for d in glob.glob("/tmp/hub-bench-nginx-*"):
            if os.stat(d).st_uid == uid:
                shutil.rmtree(d, ignore_errors=True)
        subprocess.run(["userdel", "-r", "-f", user], capture_output=True)
        if os.path.exists(f"/etc/pam.d/{PAM}"):
            os.remove(f"/etc/pam.d/{PAM}")
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
