"""The SLI target-token layouts of the ONNX engine: speed against the machine's memory bandwidth,
index size and MAP change, per layout, on this CPU.

    python scripts/bench_layouts.py                      # untuned:sli on all-MiniLM-L6-v2
    python scripts/bench_layouts.py --model models/uwe --layouts float32,int8_block
    python scripts/bench_layouts.py --model models/uwe --layouts float32,int8_block:64
    python scripts/bench_layouts.py --no-map             # speed only (a minute)

Prints first the CPU (model name, torch's kernel capability and the ISA flags that decide the
16-bit and 8-bit kernels: ``amx_bf16``, ``avx512_bf16``, ``avx512_vnni``) and the machine's
streaming memory bandwidth (torch sum over a 256 MiB float32 array, best of 5). Then, for each
layout of :data:`uwe.infer.ort.LAYOUTS` against job2skill's cached targets (the latency stage's
target space): the index in MiB, the median scoring time of one query (batch 1, 100 queries,
the first 10 untimed), split into the matrix product with every target token and the segmented
softmax, the time per query in batches of 64, and the bandwidth the batch-1 product achieves
reading the stored target tokens once (token bytes / product time), as a share of the
measured bandwidth. With MAP (the default) every layout then scores every ``--family`` task
(the same token embeddings: each text is encoded once) and the table gives MAP per task and
its difference in points from the first layout (``float32``, the exact path). Run from the
repository root after ``dvc repro curate``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def memory_bandwidth(mib: int = 256, repeats: int = 5) -> float:
    """Streaming read bandwidth in GB/s: the best of ``repeats`` torch sums over ``mib`` MiB."""
    import torch

    x = torch.ones(mib * 2**20 // 4, dtype=torch.float32)
    best = float("inf")
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        float(x.sum())
        best = min(best, time.perf_counter() - t0)
    return x.numel() * 4 / best / 1e9


def time_scoring(model, index, queries: list[str], batch: int = 64
                 ) -> tuple[float, float, float, float]:
    """(median ms of one query, of its product with every target token, of its segmented
    softmax; ms per query in batches of ``batch``) against ``index``, a TokenMatrix."""
    enc = [model.encode_queries([q]) for q in queries[:100]]
    ms, prod, soft = [], [], []
    for e in enc:
        t0 = time.perf_counter()
        model.score_encoded(e, 1, index)
        ms.append(1000 * (time.perf_counter() - t0))
    for e in enc:  # the two halves, timed apart on the same queries
        q = e[0][1]
        t0 = time.perf_counter()
        raw = index.products(q[0])
        t1 = time.perf_counter()
        index.softmax_sums(raw, q, model.attention_temperature, "raw",
                           np.zeros((1, len(index)), np.float32))
        t2 = time.perf_counter()
        prod.append(1000 * (t1 - t0))
        soft.append(1000 * (t2 - t1))
    stream = [queries[i % len(queries)] for i in range(3 * batch)]
    batches = [model.encode_queries(stream[k * batch:(k + 1) * batch]) for k in range(3)]
    model.score_encoded(batches[0], batch, index)  # warm-up
    t0 = time.perf_counter()
    for b in batches[1:]:
        model.score_encoded(b, batch, index)
    per_query = 1000 * (time.perf_counter() - t0) / (2 * batch)
    return (float(np.median(ms[10:])), float(np.median(prod[10:])), float(np.median(soft[10:])),
            per_query)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="untuned:sli")
    ap.add_argument("--backbone", default="all-MiniLM-L6-v2")
    ap.add_argument("--family", default="heldout")
    ap.add_argument("--tasks", default=None, help="comma-separated (default: every task)")
    ap.add_argument("--max-queries", type=int, default=None)
    ap.add_argument("--root", default="data/curated")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--layouts", default=None, help="comma-separated (default: all, float32 first)")
    ap.add_argument("--no-map", action="store_true", help="speed and size only")
    args = ap.parse_args()

    import torch

    from uwe.bench.evaluation import subsample_queries
    from uwe.bench.latency import index_mb
    from uwe.data.tasks import list_tasks, load_task
    from uwe.infer.ort import LAYOUTS, ort_model_for
    from uwe.precision import isa_line

    layouts = args.layouts.split(",") if args.layouts else list(LAYOUTS)
    print(isa_line())
    bandwidth = memory_bandwidth()
    print(f"threads: torch {torch.get_num_threads()}; bandwidth (torch sum over 256 MiB, best "
          f"of 5): {bandwidth:.1f} GB/s", flush=True)
    base = ort_model_for(args.model, backbone=args.backbone, threads=args.threads)
    shared = SharedEncodings(base)  # every layout scores the same token embeddings
    jobs = load_task("job2skill", args.family, "test", root=args.root)
    token_index = shared.token_index(jobs.targets)
    n_tokens = sum(b[1].shape[0] * b[1].shape[1] for b in token_index.buckets)
    print(f"job2skill: {len(jobs.targets)} targets, {n_tokens} target tokens; "
          f"{len(jobs.queries)} queries")
    print(f"{'layout':<14}{'index MiB':>10}{'ms (b=1)':>10}{'product':>9}{'softmax':>9}"
          f"{'ms/q (b=64)':>12}{'GB/s':>7}{'of peak':>9}", flush=True)
    for layout in layouts:
        index = build_index(base, token_index, layout)
        one, prod, soft, per_query = time_scoring(base, index, list(jobs.queries))
        size = 2**20 * index_mb(index)
        gbs = index.tokens.nbytes / (prod / 1000) / 1e9
        print(f"{layout:<14}{size / 2**20:>10.1f}{one:>10.2f}{prod:>9.2f}{soft:>9.2f}"
              f"{per_query:>12.3f}{gbs:>7.1f}{gbs / bandwidth:>9.0%}", flush=True)
        del index
    if args.no_map:
        return
    names = args.tasks.split(",") if args.tasks else list_tasks(args.family, root=args.root)
    datasets = {}
    for name in names:
        ds = load_task(name, args.family, "test", root=args.root)
        datasets[name] = subsample_queries(ds, args.max_queries, seed=0) if args.max_queries else ds
    maps: dict[str, dict[str, float]] = {}
    for layout in layouts:
        t0 = time.perf_counter()
        maps[layout] = {name: _eval_one(shared.layout(layout), ds) for name, ds in datasets.items()}
        print(f"{layout}: evaluated in {time.perf_counter() - t0:.0f} s", flush=True)
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

    def token_index(self, targets):
        key = tuple(targets)
        if key not in self.targets:
            self.targets[key] = self.base.token_index(list(targets))
        return self.targets[key]

    def layout(self, layout: str):
        shared = self

        class Scored:
            name = f"{shared.base.name}@{layout}"

            def index_targets(self, targets):
                return build_index(shared.base, shared.token_index(targets), layout)

            def score_index(self, queries, index):
                key = tuple(queries)
                if key not in shared.queries:
                    shared.queries[key] = shared.base.encode_queries(list(queries))
                return shared.base.score_encoded(shared.queries[key], len(queries), index)

        return Scored()


def build_index(model, token_index, spec: str):
    """The :class:`uwe.infer.token_matrix.TokenMatrix` of ``token_index`` in layout ``spec``:
    a layout name, or ``int8_block:<values per scale>`` (default 32) to try another block."""
    from uwe.infer.token_matrix import QUANT_BLOCK, TokenMatrix

    layout, _, block = spec.partition(":")
    return TokenMatrix.from_buckets(len(token_index), token_index.buckets, layout, model.threads,
                                    int(block or QUANT_BLOCK))


def _eval_one(model, ds) -> float:
    from uwe.bench.evaluation import evaluate_dataset

    return evaluate_dataset(model, ds)["map"]


if __name__ == "__main__":
    main()
