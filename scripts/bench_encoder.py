"""Batch-1 query encoding in ONNX Runtime: UWE's encoder against its backbone's, on this CPU.

    python scripts/bench_encoder.py                         # models/uwe vs all-MiniLM-L6-v2
    python scripts/bench_encoder.py --a models/uwe --b sentence-transformers/all-MiniLM-L6-v2
    python scripts/bench_encoder.py --int8 --map            # + a's int8 encoder: speed, MAP

The latency stage measured ``uwe@onnx`` encoding a query in 5.9 ms and
``all-MiniLM-L6-v2@onnx`` in 3.4 ms, the same architecture and size. This script separates
the possible causes. For each of the two models (:func:`uwe.infer.ort.ort_model_for`) it
prints the exported graph (file, size, node count per op type where they differ), the
tokenizer's token count over the queries, and the median encode time of job2skill's queries
one at a time (the latency stage's thread count), in three conditions: (1) alone, the models
interleaved query by query (A B A B ...: the same machine state for both); (2) each query
right after a torch matrix product on every core; (3) right after a Numba parallel kernel (the
SLI scorer's thread pool). A difference present in (1) is the model's; one that appears only in
(2) or (3) is the threads of another library spinning beside ONNX Runtime.

``--int8`` adds model a with its encoder dynamically quantised to int8 (``encoder_precision``
of :class:`uwe.infer.ort.OrtModel`) to the timings; ``--map`` then scores every ``--family``
task with a's float32 and int8 encoders and prints MAP per task and the difference in points.
"""

from __future__ import annotations

import argparse
import collections
import time

import numpy as np


def op_counts(path) -> collections.Counter:
    import onnx

    return collections.Counter(n.op_type for n in onnx.load(str(path), load_external_data=False)
                               .graph.node)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--a", default="models/uwe")
    ap.add_argument("--b", default="sentence-transformers/all-MiniLM-L6-v2")
    ap.add_argument("--root", default="data/curated")
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--int8", action="store_true", help="add a's int8-quantised encoder")
    ap.add_argument("--map", action="store_true", help="with --int8: MAP per task, both encoders")
    ap.add_argument("--family", default="heldout")
    args = ap.parse_args()

    import torch

    from uwe.data.tasks import load_task
    from uwe.infer.ort import ort_model_for

    threads = torch.get_num_threads()
    models = {name: ort_model_for(name, threads=threads) for name in (args.a, args.b)}
    if args.int8:
        models[f"{args.a}@int8"] = ort_model_for(args.a, threads=threads, encoder_precision="int8")
    queries = list(load_task("job2skill", "heldout", "test", root=args.root).queries)
    queries = queries[: args.queries]
    counts = {}
    for name, m in models.items():
        path = m.onnx_path
        if getattr(m, "encoder_precision", "float32") == "int8":
            path = path.with_name("encoder.int8.onnx")
        counts[name] = op_counts(path) if path else collections.Counter()
        n_tok = [len(x) for x in m.token_ids(queries)]
        print(f"{name}: graph {path} ({path.stat().st_size / 2**20:.1f} MiB, "
              f"{sum(counts[name].values())} nodes), max_length {m.max_length}, threads "
              f"{m.threads}; tokens per query: mean {np.mean(n_tok):.2f}, max {max(n_tok)}")
    ops = sorted(set(counts[args.a]) | set(counts[args.b]))
    differ = [(op, counts[args.a][op], counts[args.b][op]) for op in ops
              if counts[args.a][op] != counts[args.b][op]]
    print("op counts that differ (a, b):", differ or "none")

    def encode_ms(m, q) -> float:
        t0 = time.perf_counter()
        m.encode_queries([q])
        return 1000 * (time.perf_counter() - t0)

    def torch_work():
        x = torch.randn(1024, 1024)
        for _ in range(5):
            x @ x

    def numba_work():  # the segmented softmax on Numba's pool (as for a batch of queries)
        from uwe.infer.kernels import grouped_sli, work_items

        raw = np.ones((6, 60000), np.float32)
        out = np.zeros((1, 10000), np.float32)
        ones = np.ones(60000, np.float32)
        grouped_sli(raw, np.ones(6, np.float32), ones, np.ones(6, np.float32), ones,
                    work_items(np.array([6]), np.array([10000])), 6, out, parallel=True)

    for m in models.values():  # warm up: sessions, kernels
        for q in queries[:5]:
            encode_ms(m, q)
    numba_work()
    conditions = {"alone, interleaved": None, "after a torch product": torch_work,
                  "after a Numba kernel": numba_work}
    for label, before in conditions.items():
        times = {name: [] for name in models}
        for q in queries:
            for name, m in models.items():
                if before is not None:
                    before()
                times[name].append(encode_ms(m, q))
        print(f"{label}: " + "; ".join(f"{name} {np.median(t):.2f} ms" for name, t in
                                        times.items()), flush=True)
    if args.int8 and args.map:
        from uwe.bench.evaluation import evaluate_dataset
        from uwe.data.tasks import list_tasks

        pair = (args.a, f"{args.a}@int8")
        print(f"{'task':<30}{'float32':>10}{'int8':>10}{'d':>10}")
        worst = 0.0
        for task in list_tasks(args.family, root=args.root):
            ds = load_task(task, args.family, "test", root=args.root)
            f32, i8 = (100 * evaluate_dataset(models[n], ds)["map"] for n in pair)
            worst = max(worst, abs(i8 - f32))
            print(f"{task:<30}{f32:>10.4f}{i8:>10.4f}{i8 - f32:>10.4f}", flush=True)
        print(f"int8 encoder: largest |MAP difference| {worst:.4f} points")


if __name__ == "__main__":
    main()
