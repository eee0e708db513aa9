"""MAP and batch-1 scoring time of the SLI target-token layouts of the ONNX engine, per task.

    python scripts/bench_layouts.py                     # untuned:sli on all-MiniLM-L6-v2
    python scripts/bench_layouts.py --tasks job_norm,skill2job --max-queries 300

For each layout of :data:`uwe.infer.ort.LAYOUTS` (``float32``: the NumPy passes of
:func:`uwe.infer.numpy_engine.sli_dense`, the reference; ``fused32``, ``float16``, ``int8``: the
fused kernel
:func:`uwe.infer.kernels.sli_compact` on float32 tokens, float16 tokens, int8 tokens with one scale
per
token) it evaluates ``--model`` on the ``--family`` tasks with :func:`uwe.bench.evaluation.evaluate`
(a seeded subsample of ``--max-queries`` queries per task when given) and prints MAP per task,
its difference from ``float32`` in points, the index size and the median scoring time of one
query against job2skill's targets. Run from the repository root.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="untuned:sli")
    ap.add_argument("--backbone", default="all-MiniLM-L6-v2")
    ap.add_argument("--family", default="heldout")
    ap.add_argument("--tasks", default=None, help="comma-separated (default: every task)")
    ap.add_argument("--max-queries", type=int, default=None)
    ap.add_argument("--root", default="data/curated")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--layouts", default="float32,fused32,float16,int8")
    args = ap.parse_args()

    from uwe.bench.evaluation import subsample_queries
    from uwe.bench.latency import index_mb
    from uwe.data.tasks import list_tasks, load_task
    from uwe.infer.ort import ort_model_for

    names = args.tasks.split(",") if args.tasks else list_tasks(args.family, root=args.root)
    layouts = args.layouts.split(",")
    base = ort_model_for(args.model, backbone=args.backbone, threads=args.threads)
    shared = SharedEncodings(base)  # every layout scores the same token embeddings
    datasets = {}
    for name in names:
        ds = load_task(name, args.family, "test", root=args.root)
        datasets[name] = subsample_queries(ds, args.max_queries, seed=0) if args.max_queries else ds
    maps: dict[str, dict[str, float]] = {}
    for layout in layouts:
        model = shared.layout(layout)
        jobs = load_task("job2skill", args.family, "test", root=args.root)
        index = model.index_targets(jobs.targets)
        enc = [base.encode_queries([q]) for q in jobs.queries[:40]]
        base.score_encoded(enc[0], 1, index)  # compile / warm up
        ms = []
        for e in enc:
            t0 = time.perf_counter()
            base.score_encoded(e, 1, index)
            ms.append(1000 * (time.perf_counter() - t0))
        size = 2**20 * index_mb(index)
        t0 = time.perf_counter()
        maps[layout] = {name: _eval_one(model, ds) for name, ds in datasets.items()}
        print(f"{layout}: job2skill index {size / 2**20:.1f} MiB, score {np.median(ms[5:]):.2f} ms"
              f" per query (median of {len(ms) - 5}); evaluation {time.perf_counter() - t0:.0f} s",
              flush=True)
    ref = layouts[0]
    counts = ", ".join(f"{n} {len(ds.queries)}" for n, ds in datasets.items())
    print(f"queries per task: {counts}")
    print(f"{'task':<30}" + "".join(f"{lay:>12}" for lay in layouts)
          + "".join(f"{'d ' + lay:>12}" for lay in layouts[1:]))
    for name in names:
        row = [100 * maps[lay][name] for lay in layouts]
        print(f"{name:<30}" + "".join(f"{v:>12.4f}" for v in row)
              + "".join(f"{v - row[0]:>12.4f}" for v in row[1:]))
    for lay in layouts[1:]:
        worst = max(abs(100 * (maps[lay][n] - maps[ref][n])) for n in names)
        print(f"{lay}: largest |MAP difference| from {ref}: {worst:.4f} points")


class SharedEncodings:
    """The ONNX model's token embeddings of each target list and query list, computed once and
    scored in any layout (:meth:`uwe.infer.ort.OrtModel.prepare`): the layouts differ only in how
    the target tokens are stored, so the benchmark encodes each text once."""

    def __init__(self, base):
        self.base, self.targets, self.queries = base, {}, {}

    def layout(self, layout: str):
        shared = self

        class Scored:
            name = f"{shared.base.name}@{layout}"

            def index_targets(self, targets):
                key = tuple(targets)
                if key not in shared.targets:
                    shared.targets[key] = shared.base.token_index(list(targets))
                shared.base.target_layout = layout
                return shared.base.prepare(shared.targets[key])

            def score_index(self, queries, index):
                key = tuple(queries)
                if key not in shared.queries:
                    shared.queries[key] = shared.base.encode_queries(list(queries))
                return shared.base.score_encoded(shared.queries[key], len(queries), index)

        return Scored()


def _eval_one(model, ds) -> float:
    from uwe.bench.evaluation import evaluate_dataset

    return evaluate_dataset(model, ds)["map"]


if __name__ == "__main__":
    main()
