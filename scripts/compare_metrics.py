"""Compare the metric files of two checkouts, timings set aside.

    python scripts/compare_metrics.py OLD/metrics NEW/metrics [--only LIST]

Every JSON and CSV file under OLD is flattened to ``path -> value``. Fields whose names are
timings (``seconds``, ``*_ms``, throughput, ...) or any value of ``latency.json`` are skipped.
Prints per file the number of numeric and text differences with the largest few. ``--only`` names
a file of paths (relative to the metrics folder or starting with ``metrics/``) to compare, e.g.
the files a run rewrote. Used to check that a refactor leaves every metric unchanged.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from pathlib import Path

TIMING = re.compile(r"seconds|time|_ms$|_s$|^init_s$|per_s|throughput|minutes|latency|^median$")


def flatten(x, prefix=""):
    if isinstance(x, dict):
        for k, v in x.items():
            yield from flatten(v, f"{prefix}/{k}")
    elif isinstance(x, list):
        for i, v in enumerate(x):
            yield from flatten(v, f"{prefix}[{i}]")
    else:
        yield prefix, x


def load(path: Path) -> dict:
    if path.suffix == ".json":
        return dict(flatten(json.loads(path.read_text())))
    rows = list(csv.reader(path.open()))
    return {f"[{i}]/{h}": v
            for i, r in enumerate(rows[1:]) for h, v in zip(rows[0], r, strict=True)}


def number(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def compare(a: Path, b: Path, rel: Path) -> float:
    da, db = load(a), load(b)
    diffs, texts, skipped = [], [], 0
    for key in sorted(set(da) | set(db)):
        if TIMING.search(key.split("/")[-1]) or rel.name == "latency.json":
            skipped += 1
            continue
        va, vb = da.get(key), db.get(key)
        na, nb = number(va), number(vb)
        if na is not None and nb is not None:
            if na != nb:
                diffs.append((abs(na - nb), key, va, vb))
        elif va != vb:
            texts.append((key, va, vb))
    worst = max((d for d, *_ in diffs), default=0.0)
    print(f"{rel}: {len(da)} values, {len(diffs)} numeric diffs (max {worst:.3g}), "
          f"{len(texts)} text diffs, {skipped} timing fields skipped")
    for d, key, va, vb in sorted(diffs, reverse=True)[:3]:
        print(f"    {key}: {va} vs {vb} ({d:.3g})")
    for key, va, vb in texts[:3]:
        print(f"    {key}: {str(va)[:80]!r} vs {str(vb)[:80]!r}")
    return worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old", type=Path)
    ap.add_argument("new", type=Path)
    ap.add_argument("--only", type=Path, help="file listing the paths to compare")
    args = ap.parse_args()
    if args.only:
        names = [line.strip().removeprefix("metrics/") for line in args.only.read_text().split()]
        paths = [args.old / n for n in names if n]
    else:
        paths = sorted(p for p in args.old.rglob("*") if p.suffix in (".json", ".csv"))
    for path in paths:
        rel = path.relative_to(args.old)
        if not (args.new / rel).is_file():
            print(f"{rel}: missing in {args.new}")
            continue
        compare(path, args.new / rel, rel)


if __name__ == "__main__":
    main()
