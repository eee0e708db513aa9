"""MAP of the ONNX Runtime query side against the torch path, per task.

    python scripts/bench_onnx.py                          # models/uwe on the heldout family
    python scripts/bench_onnx.py --tasks job_norm --model models/uwe

Evaluates ``--model`` through :class:`uwe.infer.ort.OrtModel` (the same harness,
:func:`uwe.bench.evaluation.evaluate`) and prints, per task, its MAP and RP@10 next to the torch
path's from ``metrics/workbench/<family>/<name>.json`` (written by the ``evaluate`` stage), the
differences in points, the largest of them and the seconds the ONNX evaluation took. Run from
the repository root.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="models/uwe")
    ap.add_argument("--name", default="uwe", help="its metrics file name (default: uwe)")
    ap.add_argument("--family", default="heldout")
    ap.add_argument("--tasks", default=None, help="comma-separated (default: every task)")
    ap.add_argument("--root", default="data/curated")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()

    from uwe.bench.evaluation import evaluate
    from uwe.infer.ort import ort_model_for

    ref_path = Path("metrics") / "workbench" / args.family / f"{args.name}.json"
    ref = json.loads(ref_path.read_text(encoding="utf-8"))["tasks"]
    tasks = args.tasks.split(",") if args.tasks else list(ref)
    model = ort_model_for(args.model, threads=args.threads)
    t0 = time.perf_counter()
    res = evaluate(model, args.family, tasks=tasks, root=args.root)["tasks"]
    seconds = time.perf_counter() - t0
    print(f"{'task':<30} {'torch MAP':>10} {'onnx MAP':>10} {'d MAP':>9} {'d RP@10':>9}")
    worst = 0.0
    for name in tasks:
        a, b = ref[name], res[name]
        d_map, d_rp = 100 * (b["map"] - a["map"]), 100 * (b["rp@10"] - a["rp@10"])
        worst = max(worst, abs(d_map), abs(d_rp))
        print(f"{name:<30} {100 * a['map']:>10.4f} {100 * b['map']:>10.4f} {d_map:>9.5f} "
              f"{d_rp:>9.5f}")
    print(f"largest |difference|: {worst:.2e} points; ONNX evaluation {seconds:.1f} s "
          f"({args.family}, {len(tasks)} tasks; reference {ref_path})")


if __name__ == "__main__":
    main()
