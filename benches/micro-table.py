#!/usr/bin/env python3
"""Summarise criterion's results for the `micro` bench as a Markdown table.

Run after `cargo bench -p ptalloc-benches --features compare --bench micro`:
    python3 benches/micro-table.py [target/criterion]
Each cell is criterion's median time per iteration; the ratio is to glibc's.
"""
import json
import os
import sys

ALLOCATORS = ["glibc", "ptalloc", "mimalloc", "jemalloc"]


def fmt(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.1f} ns"


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "target/criterion"
    if not os.path.isdir(root):
        sys.exit(f"micro-table: no criterion results in {root}; run the micro bench first")
    rows = {}
    for dirpath, _dirs, files in os.walk(root):
        if "estimates.json" not in files or os.path.basename(dirpath) != "new":
            continue
        parts = os.path.relpath(os.path.dirname(dirpath), root).split(os.sep)
        alloc = next((p for p in parts if p in ALLOCATORS), None)
        if alloc is None:
            continue
        key = "/".join(p for p in parts if p != alloc)
        with open(os.path.join(dirpath, "estimates.json")) as f:
            rows.setdefault(key, {})[alloc] = json.load(f)["median"]["point_estimate"]

    def order(key):
        group, _, param = key.partition("/")
        return (group, int(param) if param.isdigit() else param)

    print("| benchmark | " + " | ".join(ALLOCATORS) + " |")
    print("|---" * (len(ALLOCATORS) + 1) + "|")
    for key in sorted(rows, key=order):
        r = rows[key]
        base = r.get("glibc")
        cells = []
        for a in ALLOCATORS:
            if a not in r:
                cells.append("—")
            elif base:
                cells.append(f"{fmt(r[a])} ({r[a] / base:.2f})")
            else:
                cells.append(fmt(r[a]))
        print(f"| {key} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
