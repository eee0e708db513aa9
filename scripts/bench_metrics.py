"""Benchmark uwe.core.metrics against a plain per-query loop, and measure chunked peak memory.

Usage: .venv/bin/python scripts/bench_metrics.py [--quick]

1. Speed: ``ranking_metrics`` vs a WorkRB-style loop (per query: argsort, then a Python loop over
   the positives) on a seeded random 3,039 x 13,939 float32 matrix, ~43 positives per query.
2. Memory: a 71,000 x 13,939 task evaluated with ``MetricAccumulator`` in chunks of 1,024
   queries whose scores are generated chunk by chunk (the full matrix never exists). Run in a
   fresh child process so that its peak RSS is not masked by part 1. Two numbers are reported:
   * peak RSS growth: the process's peak resident set size during the loop (Linux VmHWM, reset
     just before the loop via /proc/self/clear_refs) minus its RSS just before the loop. It
     covers all allocations (numpy, torch, Python), including the chunk itself. (Without the
     reset, ru_maxrss would be dominated by the transient peak of importing torch.)
   * tracemalloc peak: peak of traced allocations (Python + numpy buffers, not torch-internal
     buffers) during the loop; includes the chunk itself.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import tracemalloc

import numpy as np
import torch

from uwe.core.metrics import MetricAccumulator, ranking_metrics

METRICS = ("map", "mrr", "rp@5", "rp@10", "recall@10", "hit@10", "ndcg@10")
N_TARGETS = 13_939
MEAN_POS = 43


def random_positives(rng: np.random.Generator, n_q: int, n_t: int) -> list[list[int]]:
    """~MEAN_POS distinct positives per query (Poisson count, at least 1)."""
    counts = np.clip(rng.poisson(MEAN_POS, n_q), 1, n_t)
    return [rng.choice(n_t, size=c, replace=False).tolist() for c in counts]


def loop_metrics(scores: np.ndarray, positives: list[list[int]]) -> dict[str, float]:
    """WorkRB-style reference: per query a stable argsort, then Python loops over positives."""
    sums = dict.fromkeys(METRICS, 0.0)
    n = 0
    for row, pos in zip(scores, positives, strict=True):
        if not pos:
            continue
        n += 1
        order = np.argsort(-row, kind="stable")
        rank_of = np.empty(len(row), dtype=np.int64)
        rank_of[order] = np.arange(1, len(row) + 1)
        ranks = sorted(int(rank_of[p]) for p in pos)
        ap = 0.0
        for i, r in enumerate(ranks):
            ap += (i + 1) / r
        sums["map"] += ap / len(ranks)
        sums["mrr"] += 1.0 / ranks[0]
        for k in (5, 10):
            sums[f"rp@{k}"] += sum(r <= k for r in ranks) / min(k, len(ranks))
        top10 = sum(r <= 10 for r in ranks)
        sums["recall@10"] += top10 / len(ranks)
        sums["hit@10"] += float(top10 > 0)
        dcg = sum(1.0 / np.log2(r + 1) for r in ranks if r <= 10)
        sums["ndcg@10"] += dcg / sum(1.0 / np.log2(i + 2) for i in range(min(10, len(ranks))))
    return {m: v / n if n else 0.0 for m, v in sums.items()}


def bench_speed(n_q: int, seed: int) -> list[tuple[str, str]]:
    rng = np.random.default_rng(seed)
    scores = rng.standard_normal((n_q, N_TARGETS), dtype=np.float32)  # (Q, T)
    positives = random_positives(rng, n_q, N_TARGETS)
    t0 = time.perf_counter()
    fast = ranking_metrics(scores, positives, METRICS)
    t_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    slow = loop_metrics(scores, positives)
    t_slow = time.perf_counter() - t0
    diff = max(abs(fast[m] - slow[m]) for m in METRICS)
    n_pos = np.mean([len(p) for p in positives])
    return [
        ("speed task", f"{n_q:,} x {N_TARGETS:,} float32, {n_pos:.1f} positives/query"),
        ("metrics", ", ".join(METRICS)),
        ("ranking_metrics (vectorised)", f"{t_fast:8.2f} s"),
        ("per-query Python loop", f"{t_slow:8.2f} s"),
        ("speed-up", f"{t_slow / t_fast:8.1f} x"),
        ("max |difference| of means", f"{diff:.2e}"),
    ]


def _proc_status_kib(field: str) -> int:
    """``VmRSS`` / ``VmHWM`` of this process in KiB (Linux /proc)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not found in /proc/self/status")


def memory_child(n_q: int, chunk: int, seed: int) -> None:
    """Runs in a fresh process; prints one JSON line with the memory measurements."""
    rng = np.random.default_rng(seed)
    acc = MetricAccumulator(METRICS)
    acc.update(np.zeros((1, 4), np.float32), [[0]])  # warm up lazy imports / torch kernels
    acc = MetricAccumulator(METRICS)
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset the peak-RSS counter VmHWM to the current RSS
    rss0 = _proc_status_kib("VmRSS")
    tracemalloc.start()
    seconds = 0.0  # time spent in acc.update only (not in generating the random chunks)
    for start in range(0, n_q, chunk):
        q = min(chunk, n_q - start)
        scores = rng.standard_normal((q, N_TARGETS), dtype=np.float32)  # (q, T) chunk only
        positives = random_positives(rng, q, N_TARGETS)
        t0 = time.perf_counter()
        acc.update(scores, positives)
        seconds += time.perf_counter() - t0
        del scores
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss1 = _proc_status_kib("VmHWM")
    print(json.dumps({"seconds": seconds, "rss_delta_mb": (rss1 - rss0) / 1024,
                      "traced_peak_mb": traced_peak / 2**20, "n_queries": acc.n_queries,
                      "map": acc.result()["map"]}))


def bench_memory(n_q: int, chunk: int, seed: int) -> list[tuple[str, str]]:
    cmd = [sys.executable, __file__, "--memory-child", str(n_q), str(chunk), str(seed)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    res = json.loads(out.strip().splitlines()[-1])
    chunk_mb = chunk * N_TARGETS * 4 / 2**20
    return [
        ("memory task", f"{res['n_queries']:,} x {N_TARGETS:,} float32, chunks of {chunk:,}"),
        ("full score matrix would be", f"{n_q * N_TARGETS * 4 / 2**20:8.0f} MB"),
        ("one score chunk", f"{chunk_mb:8.0f} MB"),
        ("chunked eval time (update only)", f"{res['seconds']:8.2f} s"),
        ("peak RSS growth (VmHWM - VmRSS)", f"{res['rss_delta_mb']:8.0f} MB (incl. chunk)"),
        ("tracemalloc peak", f"{res['traced_peak_mb']:8.0f} MB (incl. chunk; numpy+Python)"),
        ("tracemalloc peak beyond chunk", f"{res['traced_peak_mb'] - chunk_mb:8.0f} MB"),
    ]


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--memory-child":
        torch.set_num_threads(2)
        memory_child(*(int(a) for a in sys.argv[2:]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller tasks (smoke run)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk", type=int, default=1024)
    args = parser.parse_args()
    torch.set_num_threads(2)
    n_speed, n_mem = (500, 8_000) if args.quick else (3_039, 71_000)
    rows = bench_speed(n_speed, args.seed) + [("", "")]
    rows += bench_memory(n_mem, args.chunk, args.seed)
    width = max(len(k) for k, _ in rows)
    print(f"uwe.core.metrics benchmark (torch threads={torch.get_num_threads()}"
          f"{', --quick' if args.quick else ''})")
    print("-" * (width + 50))
    for key, val in rows:
        print(f"{key:<{width}}  {val}")


if __name__ == "__main__":
    main()
