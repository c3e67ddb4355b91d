"""Shared by the bench scripts: the machine line, replacing a script's own section of
docs/benchmarks.md (between `<!-- KEY:start -->` and `<!-- KEY:end -->`, appended when absent),
a free loopback port and a process's memory from /proc."""

import os
import socket
import subprocess


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid, field="VmRSS"):
    """`field` of /proc/PID/status in KiB (VmRSS: resident now; VmHWM: peak); 0 if the
    process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def machine():
    """'2 cores, Linux 6.1.0-...' for the header of a section."""
    uname = subprocess.run(["uname", "-sr"], capture_output=True, text=True).stdout.strip()
    return f"{os.cpu_count()} cores, {uname}"


def replace_section(path, key, section):
    """Replaces the KEY section of the markdown file at `path` with `section`, which must
    start with `<!-- KEY:start -->` and end with `<!-- KEY:end -->` and a newline."""
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->\n"
    assert section.startswith(start) and section.endswith(end), f"section markers for {key}"
    if start in text:
        a, b = text.index(start), text.index(end) + len(end)
        text = text[:a] + section + text[b:]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    with open(path, "w") as f:
        f.write(text)
