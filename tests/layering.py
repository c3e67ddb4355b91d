#!/usr/bin/env python3
"""The workspace's dependency rule, checked from `cargo metadata`.

Each crate may depend only on the crates below it (docs/architecture.md, "The dependency
rule"). Cargo already refuses cycles between crates; this refuses an edge that points up or
sideways, in normal, build and dev dependencies alike, and a workspace crate the table does
not know (a new crate must be placed in the table first).

Inside each crate, the modules must not import each other in a cycle (`use crate::a` in b and
`use crate::b` in a, or through more modules; a parent's path into its child counts as an
import too), and in `hub-web` the feature modules (the pages, the REST API, the proxy, the
metrics endpoint) use only the shared modules, never each other; only the router names them
all.

    python3 tests/layering.py              # checks the workspace; exit 1 names each bad edge
    python3 tests/layering.py --self-test  # checks that a forbidden edge and a cycle are caught
"""

import glob
import json
import os
import re
import subprocess
import sys

# crate -> the workspace crates it may depend on.
ALLOWED = {
    "hub-core": set(),
    "hub-config": {"hub-core"},
    "hub-store": {"hub-core"},
    "hub-auth": {"hub-core", "hub-config", "hub-store"},
    "hub-net": {"hub-core"},
    "hub-runner": {"hub-core"},
    "hub-servers": {"hub-core", "hub-config", "hub-store", "hub-net", "hub-runner"},
    "hub-jobs": {"hub-core", "hub-config", "hub-store", "hub-runner", "hub-servers"},
    "hub-web": {"hub-core", "hub-config", "hub-store", "hub-auth", "hub-net", "hub-runner", "hub-servers", "hub-jobs"},
    "hub": {"hub-core", "hub-config", "hub-store", "hub-auth", "hub-net", "hub-runner", "hub-servers", "hub-jobs", "hub-web"},
}


# hub-web's feature modules, which may not use each other (crate::router names them all).
FEATURES = {"web", "jobs_page", "token_page", "api", "proxy", "metrics"}


def modules(crate_src):
    """Module path (`a::b`, `` for the crate root) -> file, for every .rs file under src."""
    files={}
    for f in glob.glob(crate_src+'/**/*.rs', recursive=True):
        rel=os.path.relpath(f, crate_src)[:-3]
        parts=rel.split('/')
        if parts[-1] in ('lib','mod','main'): parts=parts[:-1]
        files['::'.join(parts)]=f
    return files
def refs(path, mod, mods):
    """The modules of `mods` that the file at `path` (module `mod`) names, outside its tests."""
    s=open(path).read()
    s=re.sub(r'#\[cfg\(test\)\]\s*mod tests \{.*', '', s, flags=re.S)  # drop test modules (at file end)
    s=re.sub(r'//[^\n]*', '', s)
    out=set()
    for m in re.finditer(r'\bcrate::((?:[a-z_][a-z0-9_]*::)*[a-z_][a-z0-9_]*)', s):
        p=m.group(1).split('::')
        while p and '::'.join(p) not in mods: p=p[:-1]
        if p: out.add('::'.join(p))
    for m in re.finditer(r'\bsuper::((?:[a-z_][a-z0-9_]*::)*[a-zA-Z_][a-zA-Z0-9_]*)', s):
        base=mod.split('::')[:-1] if mod else []
        p=base+[x for x in m.group(1).split('::')]
        while p and '::'.join(p) not in mods: p=p[:-1]
        out.add('::'.join(p))
    for m in re.finditer(r'\bsuper::\{', s):
        base=mod.split('::')[:-1] if mod else []
        out.add('::'.join(base))
    # `use crate::{a, b::c}` groups
    for m in re.finditer(r'\bcrate::\{([^}]*)\}', s):
        for item in m.group(1).split(','):
            p=item.strip().split('::')
            while p and '::'.join(p) not in mods: p=p[:-1]
            out.add('::'.join(p))
    # A path that starts at one of this module's own children (`kerberos::X` in lib.rs).
    prefix=(mod+'::') if mod else ''
    for m in re.finditer(r'(?<![:\w])([a-z_][a-z0-9_]*)::', s):
        child=prefix+m.group(1)
        if child in mods:
            out.add(child)
    out.discard(mod)
    return out


def cycles(graph):
    """Strongly connected components of more than one module (Tarjan), sorted."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def module_violations(crate, graph):
    """Import cycles in `graph` (module -> modules it names), and in hub-web, feature modules
    that name each other."""
    bad = [f"{crate}: modules import each other in a cycle: {', '.join(m or '(crate root)' for m in c)}"
           for c in cycles(graph)]
    if crate == "hub-web":
        top = lambda m: m.split("::")[0]
        for m, targets in sorted(graph.items()):
            for t in sorted(targets):
                if top(m) in FEATURES and top(t) in FEATURES and top(m) != top(t):
                    bad.append(f"hub-web: feature module {m} uses feature module {t}; move what they share "
                               "into a shared module")
    return bad


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
    assert module_violations("hub-x", {"": {"a"}, "a": {"b"}, "b": {"a"}}) == [
        "hub-x: modules import each other in a cycle: a, b"], "a cycle is caught"
    assert module_violations("hub-x", {"": {"a", "b"}, "a": {"b"}, "b": set()}) == [], "a chain is not a cycle"
    assert len(module_violations("hub-web", {"api": {"state"}, "proxy": {"api"}, "state": set()})) == 1
    bad["packages"].append(pkg("hub-extra", []))
    bad["workspace_members"].append("hub-extra")
    assert any(v.startswith("hub-extra: not in") for v in violations(bad))
    print("layering self-test: a forbidden edge, an unknown crate, a module cycle and a feature-to-feature use are refused")


def main():
    if sys.argv[1:] == ["--self-test"]:
        self_test()
        return 0
    out = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps", "--locked"],
        check=True, capture_output=True, text=True,
    ).stdout
    bad = violations(json.loads(out))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for src in sorted(glob.glob(os.path.join(root, "crates", "*", "src"))):
        crate = os.path.basename(os.path.dirname(src))
        mods = modules(src)
        bad += module_violations(crate, {m: refs(f, m, mods) for m, f in mods.items()})
    for line in bad:
        print(f"layering: {line}", file=sys.stderr)
    if bad:
        return 1
    print(f"layering: {len(ALLOWED)} crates, every dependency points down; no module import cycle")
    return 0


if __name__ == "__main__":
    sys.exit(main())
