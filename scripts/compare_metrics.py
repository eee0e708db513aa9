"""Compare the metric files of two checkouts, timings set aside.

    python scripts/compare_metrics.py OLD/metrics NEW/metrics [--only LIST] [--tol X]

Every JSON and CSV file under OLD is flattened to ``path -> value``. Fields whose names are
timings (``seconds``, ``*_ms``, throughput, ...) or any value of ``latency.json`` are skipped.
Prints per file the number of numeric and text differences with the largest few. ``--only`` names
a file of paths (relative to the metrics folder or starting with ``metrics/``) to compare, e.g.
the files a run rewrote. ``--tol`` counts apart the differences above it (float rounding across
CPU types moves an untrained model's MAP by ~1e-6). Run-state fields (``from_disk``: whether a
cache was read or built) are skipped with the timings. Used to check that a refactor leaves every
metric unchanged; the last line sums up, and the exit status is 1 when a numeric difference
exceeds ``--tol`` (or any, without it), a text differs (a verdict, a name) or a file is missing.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from pathlib import Path

TIMING = re.compile(r"seconds|time|_ms$|_s$|^init_s$|per_s|throughput|minutes|latency|^median$")
RUN_STATE = {"from_disk"}


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


def compare(a: Path, b: Path, rel: Path, tol: float = 0.0) -> tuple[float, int, int]:
    """Print the differences of one file; return (largest numeric difference, numeric differences
    above ``tol``, text differences)."""
    da, db = load(a), load(b)
    diffs, texts, skipped = [], [], 0
    for key in sorted(set(da) | set(db)):
        leaf = key.split("/")[-1]
        if TIMING.search(leaf) or leaf in RUN_STATE or rel.name == "latency.json":
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
    above = sum(d > tol for d, *_ in diffs)
    tol_text = f", {above} above {tol:g}" if tol else ""
    print(f"{rel}: {len(da)} values, {len(diffs)} numeric diffs (max {worst:.3g}{tol_text}), "
          f"{len(texts)} text diffs, {skipped} timing / run-state fields skipped")
    for d, key, va, vb in sorted(diffs, reverse=True)[:3]:
        print(f"    {key}: {va} vs {vb} ({d:.3g})")
    for key, va, vb in texts[:3]:
        print(f"    {key}: {str(va)[:80]!r} vs {str(vb)[:80]!r}")
    return worst, above, len(texts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old", type=Path)
    ap.add_argument("new", type=Path)
    ap.add_argument("--only", type=Path, help="file listing the paths to compare")
    ap.add_argument("--tol", type=float, default=0.0,
                    help="numeric differences up to this count as rounding (default 0: none)")
    args = ap.parse_args()
    if args.only:
        names = [line.strip().removeprefix("metrics/") for line in args.only.read_text().split()]
        paths = [args.old / n for n in names if n]
    else:
        paths = sorted(p for p in args.old.rglob("*") if p.suffix in (".json", ".csv"))
    worst, above, texts, missing = 0.0, 0, 0, 0
    for path in paths:
        rel = path.relative_to(args.old)
        absent = [str(d) for d in (args.old, args.new) if not (d / rel).is_file()]
        if absent:
            print(f"{rel}: missing in {' and '.join(absent)}")
            missing += 1
            continue
        w, a, t = compare(path, args.new / rel, rel, args.tol)
        worst, above, texts = max(worst, w), above + a, texts + t
    print(f"{len(paths)} files: largest numeric difference {worst:.3g}, {above} above "
          f"{args.tol:g}, {texts} text differences, {missing} missing")
    return int(above > 0 or texts > 0 or missing > 0)


if __name__ == "__main__":
    raise SystemExit(main())
