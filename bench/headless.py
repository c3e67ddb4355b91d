#!/usr/bin/env python3
"""Headless notebook runs: `hub run` against papermill and `jupyter nbconvert --execute`.

Run as root after `cargo build --release` and `scripts/setup.sh`:

    python3 bench/headless.py [--rounds N] [--concurrent 20] [--write docs/benchmarks.md]

The same notebooks, the same venv, the same ipykernel, run by each tool in turn, the order
rotating each round:

- `small`: 20 small code cells;
- `big`: one cell whose output is 10 MB of text.

For each run: the total wall time of the tool's command; the kernel's own part, which is
its start-up (from exec to its `kernel_info_reply`: the runner's `kernel_ready` event, the
median of the round's `hub run`s, the same kernel for every tool) plus the cells' execution (each tool's per-cell timing: the runner's events for `hub run`,
`metadata.papermill.duration` for papermill, nbclient's `metadata.execution` for nbconvert);
the **overhead**, total minus the kernel's part, and the same without ipykernel's graceful
shutdown (`shutdown_request` to exit, which every tool waits for; measured per round with
jupyter_client); and the peak RSS (VmHWM) of the
orchestrating process (`hub run` plus its runner; papermill's and nbconvert's Python
process), sampled every 10 ms. Then `--concurrent` runs of `small` by `hub run` at once:
the CPU time of the runners against the kernels' (the runner reports both).

Papermill is installed into the venv if missing (pip, from PyPI). A Linux user `hubbench`
is created for the run and removed after. Standard library only.
"""

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import benchdoc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HUB = os.path.join(ROOT, "target/release/hub")
VENV = os.environ.get("HUB_VENV", "/opt/hub/jupyter-venv")
PY = os.path.join(VENV, "bin/python")
USER = "hubbench"


def notebook(cells):
    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "cells": [
            {"cell_type": "code", "id": f"c{i}", "metadata": {}, "source": src, "outputs": [], "execution_count": None}
            for i, src in enumerate(cells)
        ],
    }


SMALL = notebook([f"x{i} = {i} * 2\nprint('cell', {i}, x{i})" for i in range(20)])
BIG = notebook(["print('y' * (10 * 1024 * 1024 - 1))"])


def peak_rss(procs_of, proc):
    """Polls VmHWM (KiB) of the processes `procs_of()` names while `proc` runs; the largest sum."""
    peak = {}
    while proc.poll() is None:
        for pid in procs_of():
            peak[pid] = max(peak.get(pid, 0), benchdoc.rss_kib(pid, "VmHWM"))
        time.sleep(0.01)
    return sum(peak.values())


def children(pid):
    out = []
    for st in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(st) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                out.append(int(st.split("/")[2]))
        except (OSError, ValueError, IndexError):
            pass
    return out


def kernel_shutdown():
    """Seconds ipykernel takes from `shutdown_request` to exiting (graceful shutdown, which
    every tool here waits for), measured with jupyter_client."""
    code = (
        "import time, jupyter_client\n"
        "km, kc = jupyter_client.manager.start_new_kernel(kernel_name='python3')\n"
        "kc.execute_interactive('x = 1')\n"
        "t = time.perf_counter()\n"
        "kc.shutdown()\n"
        "km.provisioner.process.wait()\n"
        "print(time.perf_counter() - t)\n"
    )
    out = subprocess.run(["runuser", "-u", USER, "--", PY, "-c", code], capture_output=True, text=True, cwd="/tmp")
    return float(out.stdout.strip().splitlines()[-1])


def run_hub(config, home, name):
    """`hub run`: (total s, cells s, peak KiB, kernel start-up s)."""
    t = time.perf_counter()
    p = subprocess.Popen([HUB, "--config", config, "run", "--user", USER, f"{name}.ipynb", "--output", f"out/{name}-hub.ipynb"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def procs():
        # `hub run` and the runner (its child, through the spawner's fork), not the kernel.
        return [p.pid] + [c for c in children(p.pid)]

    peak = peak_rss(procs, p)
    total = time.perf_counter() - t
    assert p.returncode == 0, f"hub run failed ({p.returncode})"
    log = max(glob.glob(os.path.join(os.path.dirname(config), "data/runs/cli-*.log")), key=os.path.getmtime)
    cells, startup = 0.0, None
    for line in open(log):
        if line.startswith("@hub-run "):
            e = json.loads(line[len("@hub-run "):])
            if e["event"] == "cell":
                cells += e["duration_ms"] / 1000
            if e["event"] == "kernel_ready":
                startup = e["startup_ms"] / 1000
    return total, cells, peak, startup


def run_papermill(home, name):
    t = time.perf_counter()
    p = subprocess.Popen(["runuser", "-u", USER, "--", os.path.join(VENV, "bin/papermill"), "--no-progress-bar", "-k", "python3",
                          f"{name}.ipynb", f"out/{name}-pm.ipynb"], cwd=home, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # runuser's child is papermill's python.
    peak = peak_rss(lambda: children(p.pid), p)
    total = time.perf_counter() - t
    assert p.returncode == 0, "papermill failed"
    nb = json.load(open(os.path.join(home, f"out/{name}-pm.ipynb")))
    cells = sum(c["metadata"].get("papermill", {}).get("duration") or 0 for c in nb["cells"])
    return total, cells, peak


def run_nbconvert(home, name):
    t = time.perf_counter()
    p = subprocess.Popen(["runuser", "-u", USER, "--", os.path.join(VENV, "bin/jupyter-nbconvert"), "--to", "notebook", "--execute",
                          f"{name}.ipynb", "--output", f"out/{name}-nbc.ipynb"], cwd=home,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = peak_rss(lambda: children(p.pid), p)
    total = time.perf_counter() - t
    assert p.returncode == 0, "nbconvert failed"
    nb = json.load(open(os.path.join(home, f"out/{name}-nbc.ipynb")))

    def ts(s):
        # 2026-12-01T10:00:00.123456Z
        from datetime import datetime
        return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()

    cells = 0.0
    for c in nb["cells"]:
        ex = c["metadata"].get("execution", {})
        if "iopub.execute_input" in ex and "shell.execute_reply" in ex:
            cells += ts(ex["shell.execute_reply"]) - ts(ex["iopub.execute_input"])
    return total, cells, peak


def concurrent(config, n):
    """n `hub run`s of `small` at once: (wall s, runners' CPU s, kernels' CPU s)."""
    t = time.perf_counter()
    procs = [subprocess.Popen([HUB, "--config", config, "run", "--user", USER, "small.ipynb", "--output", f"out/c{i}.ipynb"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(n)]
    for p in procs:
        assert p.wait() == 0, "a concurrent run failed"
    wall = time.perf_counter() - t
    logs = sorted(glob.glob(os.path.join(os.path.dirname(config), "data/runs/cli-*.log")), key=os.path.getmtime)[-n:]
    runner = kernels = 0.0
    for log in logs:
        for line in open(log):
            if line.startswith('@hub-run {"event":"finished"'):
                e = json.loads(line[len("@hub-run "):])
                runner += e["runner_cpu_ms"] / 1000
                kernels += e["kernel_cpu_ms"] / 1000
    return wall, runner, kernels


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--concurrent", type=int, default=20)
    ap.add_argument("--write", help="replace the headless section of this markdown file")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (it creates a user and runs notebooks as that user)")
    if not os.path.exists(HUB):
        sys.exit("build first: cargo build --release")
    if subprocess.run([PY, "-c", "import papermill"], capture_output=True).returncode != 0:
        subprocess.run([os.path.join(VENV, "bin/pip"), "install", "-q", "papermill"], check=True)
    subprocess.run(["useradd", "-m", USER], check=False, stderr=subprocess.DEVNULL)
    home = os.path.expanduser(f"~{USER}")
    work = tempfile.mkdtemp(prefix="hub-bench-headless-")
    os.chmod(work, 0o711)
    try:
        config = os.path.join(work, "hub.toml")
        with open(config, "w") as f:
            f.write(f'[hub]\ndata_dir = "{work}/data"\n[spawner]\ncmd = ["{VENV}/bin/jupyter-lab"]\n[kerberos]\nenabled = false\n')
        os.makedirs(os.path.join(home, "out"), exist_ok=True)
        for name, nb in [("small", SMALL), ("big", BIG)]:
            with open(os.path.join(home, f"{name}.ipynb"), "w") as f:
                json.dump(nb, f)
        subprocess.run(["chown", "-R", f"{USER}:{USER}", home], check=True)
        startups = []

        def hub(name):
            total, cells, peak, startup = run_hub(config, home, name)
            startups.append(startup)
            return total, cells, peak

        tools = {
            "hub run": hub,
            "papermill": lambda name: run_papermill(home, name),
            "nbconvert": lambda name: run_nbconvert(home, name),
        }
        order = list(tools)
        results = {(t, nb): [] for t in tools for nb in ("small", "big")}
        for r in range(a.rounds):
            startups.clear()
            measured = []
            for nb in ("small", "big"):
                for tool in order[r % 3:] + order[: r % 3]:
                    total, cells, peak = tools[tool](nb)
                    measured.append((tool, nb, total, cells, peak))
            startup = statistics.median(startups)
            shutdown = statistics.median(kernel_shutdown() for _ in range(3))
            for tool, nb, total, cells, peak in measured:
                overhead = total - startup - cells
                results[(tool, nb)].append(
                    {"total": total, "overhead": overhead, "without_shutdown": overhead - shutdown, "peak_kib": peak}
                )
            print(f"round {r + 1}: kernel start-up {startup * 1000:.0f} ms, shutdown {shutdown * 1000:.0f} ms", file=sys.stderr)
        wall, runner_cpu, kernel_cpu = concurrent(config, a.concurrent)
        report = {
            "rows": {f"{t}|{nb}": v for (t, nb), v in results.items()},
            "concurrent": {"n": a.concurrent, "wall": wall, "runner_cpu": runner_cpu, "kernel_cpu": kernel_cpu},
        }
        print(json.dumps(report, indent=1))
        if a.write:
            write_section(a.write, results, report["concurrent"], a.rounds)
    finally:
        subprocess.run(["pkill", "-KILL", "-u", USER], check=False)
        time.sleep(0.3)
        subprocess.run(["userdel", "-r", "-f", USER], check=False, stderr=subprocess.DEVNULL)
        subprocess.run(["rm", "-rf", work], check=False)


def write_section(path, results, conc, rounds):
    ms = lambda s: f"{s * 1000:.0f} ms"
    lines = [
        "<!-- headless:start -->",
        "## Headless notebook runs: `hub run`, papermill, `jupyter nbconvert --execute`",
        "",
        f"`bench/headless.py`, {benchdoc.machine()}, {rounds} rounds, tools in rotating order, medians; "
        "same venv and ipykernel. Overhead = total − (the kernel's start-up, exec to `kernel_info_reply`, "
        "+ the cells' execution by the tool's own per-cell timing). Peak RSS: `hub run` and its runner together; "
        "papermill's and nbconvert's Python process.",
        "",
        "| notebook | tool | total | overhead | overhead, worst round | overhead less the kernel's shutdown | peak RSS of the orchestrator |",
        "|---|---|---|---|---|---|---|",
    ]
    for nb, label in [("small", "20 small cells"), ("big", "one 10 MB output")]:
        for tool in ("hub run", "papermill", "nbconvert"):
            v = results[(tool, nb)]
            lines.append(
                f"| {label} | {tool} | {ms(statistics.median(x['total'] for x in v))} | "
                f"{ms(statistics.median(x['overhead'] for x in v))} | {ms(max(x['overhead'] for x in v))} | "
                f"{ms(statistics.median(x['without_shutdown'] for x in v))} | "
                f"{statistics.median(x['peak_kib'] for x in v) / 1024:.1f} MiB |"
            )
    wins = sum(
        1
        for nb in ("small", "big")
        for i in range(rounds)
        if results[("hub run", nb)][i]["overhead"] < results[("papermill", nb)][i]["overhead"]
    )
    lines += [
        "",
        f"`hub run`'s overhead was below papermill's in {wins} of {2 * rounds} runs.",
        "",
        f"{conc['n']} `hub run`s of the small notebook at once: {conc['wall']:.1f} s wall; the runners used "
        f"{conc['runner_cpu']:.2f} s of CPU, the kernels {conc['kernel_cpu']:.2f} s "
        f"({100 * conc['runner_cpu'] / max(conc['kernel_cpu'], 1e-9):.1f} % of the kernels').",
        "<!-- headless:end -->",
        "",
    ]
    benchdoc.replace_section(path, "headless", "\n".join(lines))


if __name__ == "__main__":
    main()
