#!/usr/bin/env python3
"""The workspace's dependency rule, checked from `cargo metadata`.

Each crate may depend only on the crates below it (docs/architecture.md, "The dependency
rule"). Cargo already refuses cycles between crates; this refuses an edge that points up or
sideways, in normal, build and dev dependencies alike, and a workspace crate the table does
not know (a new crate must be placed in the table first).

    python3 tests/layering.py              # checks the workspace; exit 1 names each bad edge
    python3 tests/layering.py --self-test  # checks that a forbidden edge is caught
"""

import json
import subprocess
import sys

# crate -> the workspace crates it may depend on.
ALLOWED = {
    "hub-core": set(),
    "hub-config": {"hub-core"},
    "hub-store": {"hub-core"},
    "hub-auth": {"hub-core", "hub-config", "hub-store"},
    "hub-net": {"hub-core"},
    "hub-servers": {"hub-core", "hub-config", "hub-store", "hub-net"},
    "hub-web": {"hub-core", "hub-config", "hub-store", "hub-auth", "hub-net", "hub-servers"},
    "hub": {"hub-core", "hub-config", "hub-store", "hub-auth", "hub-net", "hub-servers", "hub-web"},
}


def violations(metadata):
    """Every forbidden edge in `metadata` (cargo metadata's JSON), as readable lines."""
    members = {p["name"]: p for p in metadata["packages"] if p["id"] in metadata["workspace_members"]}
    bad = []
    for name, pkg in sorted(members.items()):
        if name not in ALLOWED:
            bad.append(f"{name}: not in tests/layering.py's table; place it in a layer first")
            continue
        for dep in pkg["dependencies"]:
            target = dep.get("rename") or dep["name"]
            if dep["name"] not in members:
                continue
            if dep["name"] not in ALLOWED[name]:
                kind = dep.get("kind") or "normal"
                bad.append(
                    f"{name} -> {target} ({kind} dependency): {name} may depend only on "
                    f"{', '.join(sorted(ALLOWED[name])) or 'nothing in the workspace'}"
                )
    return bad


def self_test():
    """A workspace where hub-net depends on hub-web must fail; the real table must pass."""
    def pkg(name, deps):
        return {"id": name, "name": name, "dependencies": [{"name": d, "kind": None} for d in deps]}
    good = {"packages": [pkg(n, sorted(a)) for n, a in ALLOWED.items()], "workspace_members": list(ALLOWED)}
    assert violations(good) == [], violations(good)
    bad = json.loads(json.dumps(good))
    next(p for p in bad["packages"] if p["name"] == "hub-net")["dependencies"].append({"name": "hub-web", "kind": "dev"})
    found = violations(bad)
    assert len(found) == 1 and found[0].startswith("hub-net -> hub-web (dev dependency)"), found
    bad["packages"].append(pkg("hub-extra", []))
    bad["workspace_members"].append("hub-extra")
    assert any(v.startswith("hub-extra: not in") for v in violations(bad))
    print("layering self-test: a forbidden edge and an unknown crate are refused")


def main():
    if sys.argv[1:] == ["--self-test"]:
        self_test()
        return 0
    out = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps", "--locked"],
        check=True, capture_output=True, text=True,
    ).stdout
    bad = violations(json.loads(out))
    for line in bad:
        print(f"layering: {line}", file=sys.stderr)
    if bad:
        return 1
    print(f"layering: {len(ALLOWED)} crates, every dependency points down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
