#!/usr/bin/env python3
"""Fails when the top-level modules of a crate import each other in a circle.

    scripts/module-cycles.py [CRATE_SRC_DIR ...]     (default: protocol, buffer, relay, connector)

An edge A -> B is any `crate::B` path in module A's files outside comments and `#[cfg(test)]`
blocks. The layout rule (README, "Layout"): inside a crate, dependencies run one way.
"""
import os
import re
import sys


def edges_of(src):
    edges = {}
    for folder, _, files in os.walk(src):
        for name in files:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(folder, name)
            top = os.path.relpath(path, src).split(os.sep)[0].removesuffix(".rs")
            if top in ("lib", "main"):
                continue
            with open(path, encoding="utf-8") as f:
                text = f.read()
            text = re.split(r"#\[cfg\(test\)\]", text)[0]
            text = re.sub(r"//[^\n]*", "", text)
            targets = set(re.findall(r"crate::([a-z_][a-z0-9_]*)", text))
            for group in re.findall(r"use crate::\{([^}]*)\}", text, re.S):
                targets |= set(re.findall(r"(?:^|[,{\s])([a-z_][a-z0-9_]*)(?=::|\s*,|\s*$)", group))
            edges.setdefault(top, set()).update(t for t in targets if t not in (top, "self"))
    return edges


def cycles(edges):
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in list(edges):
        if v not in index:
            visit(v)
    return found


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    crates = sys.argv[1:] or [os.path.join(root, c, "src") for c in ("protocol", "buffer", "relay", "connector")]
    failed = False
    for src in crates:
        found = cycles(edges_of(src))
        if found:
            failed = True
            for c in found:
                print(f"{os.path.relpath(src, root)}: import circle among {', '.join(c)}")
        else:
            print(f"{os.path.relpath(src, root)}: no import circle")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
