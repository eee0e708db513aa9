"""Two-stage (FAISS mean-pooled first stage + exact SLI rerank) vs exhaustive SLI on a 100k+
target space built from real data.

Target space: ESCO v1.2.0 skill preferred + alt labels, occupation preferred + alt labels and
O*NET 29.2 occupation titles (``data/raw`` via :mod:`uwe.data.sources`), stripped, exact duplicates
dropped (~131k texts). Queries: a seeded sample of job titles (heldout job2skill test queries)
and of skill aliases (heldout skill_norm test queries). Reported:

* recall@10 of the two-stage top-10 against the exhaustive SLI top-10, per first stage
  (flat / HNSW) and ``n_candidates``;
* median per-query latency at batch size 1 (query encoding included in both) and the speed-up;
* MAP (%) of two-stage vs exhaustive SLI on heldout job2skill and skill_norm (13,939 targets;
  skill_norm on a seeded query sample, the full 25k queries take an hour exhaustively on CPU).

Usage::

    .venv/bin/python scripts/bench_ann.py [--model models/uwe] [--quick] [--threads 1]

Without ``--model`` it uses models/uwe when present, else an untuned all-MiniLM-L6-v2 UWE saved
once under the cache dir. Target indexes go through :mod:`uwe.infer.index_cache`, so a rerun skips
encoding. Timings depend on machine load; ``--threads 1`` is the default because on a busy
2-core machine OpenMP synchronisation makes 2 threads ~3x slower.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def target_space(raw_dir: Path) -> tuple[list[str], dict[str, int]]:
    """ESCO v1.2.0 skills/occupations (preferred + alt labels) + O*NET titles, deduplicated."""
    from uwe.data import sources

    esco = sources.raw_path(raw_dir, "esco_120_en")
    skills, occs = sources.read_esco_skills(esco), sources.read_esco_occupations(esco)
    onet = sources.read_onet_occupations(sources.raw_path(raw_dir, "onet_occupations"))
    parts = {
        "ESCO skill labels": list(skills["label"]),
        "ESCO skill alt labels": [a for alts in skills["alt_labels"] for a in alts],
        "ESCO occupation labels": list(occs["label"]),
        "ESCO occupation alt labels": [a for alts in occs["alt_labels"] for a in alts],
        "O*NET occupation titles": list(onet["title"]),
    }
    texts = [t.strip() for p in parts.values() for t in p]
    unique = list(dict.fromkeys(t for t in texts if t))
    return unique, {k: len(v) for k, v in parts.items()}


def get_model(spec: str | None, cache_dir: Path):
    """``(model, fingerprint)``: ``spec``, else models/uwe, else an untuned MiniLM UWE."""
    from uwe.infer.index_cache import model_fingerprint
    from uwe.model.uwe_model import UWEModel, load, save

    if spec is None:
        spec = "models/uwe" if (Path("models/uwe") / "uwe_config.json").is_file() else None
    if spec is None:
        spec = str(cache_dir / "models" / "untuned-all-MiniLM-L6-v2-sli")
        if not (Path(spec) / "uwe_config.json").is_file():
            save(
                UWEModel.from_backbone("all-MiniLM-L6-v2", device="cpu"),
                spec,
                extra_config={"note": "untuned all-MiniLM-L6-v2 backbone (bench_ann)"},
            )
    return load(spec, device="cpu", batch_size=128), model_fingerprint(spec)


def exact_top10(model, index, queries: list[str], chunk: int = 32) -> np.ndarray:
    """Exhaustive SLI top-10 ids ``(n_q, 10)``, ties -> lower index."""
    out = []
    for s in range(0, len(queries), chunk):
        scores = model.score_index(queries[s : s + chunk], index)  # (c, n_t)
        out.append(np.argsort(-scores, axis=1, kind="stable")[:, :10])
    return np.concatenate(out)


def median_ms(fn, queries: list[str]) -> float:
    fn(queries[0])  # warm-up
    times = []
    for q in queries:
        t0 = time.perf_counter()
        fn(q)
        times.append(1000 * (time.perf_counter() - t0))
    return statistics.median(times)


def recall_at_10(ids: np.ndarray, ref: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(ids, ref, strict=True)]))


def sweep(model, index, queries, groups, ref, latency_q, grid, stages, hnsw_m, ef_c):
    """Recall@10 and batch-1 latency per (first stage, n_candidates)."""
    from uwe.infer.ann import TwoStageIndex

    rows = []
    for stage in stages:
        t0 = time.perf_counter()
        base = TwoStageIndex.build(model, index.targets, grid[0], stage, hnsw_m, ef_c, index=index)
        build_s = time.perf_counter() - t0
        for n in grid:
            base.n_candidates = n
            ids, _ = base.search(queries, top_k=10)
            rec = {g: recall_at_10(ids[m], ref[m]) for g, m in groups.items()}
            lat = median_ms(lambda q, b=base: b.search([q], 10), latency_q)
            rows.append(
                {
                    "first_stage": stage,
                    "n_candidates": n,
                    "build_s": build_s,
                    "recall@10": rec,
                    "latency_ms": lat,
                }
            )
            print(
                f"  {stage:<5} n={n:<5} recall@10 {rec['all']:.3f} latency {lat:.1f} ms", flush=True
            )
    return rows


def map_comparison(model, fp, cache, root, tasks, grid, seed):
    """MAP (%) of exhaustive SLI and flat two-stage per ``n_candidates`` on heldout tasks."""
    from uwe.bench.evaluation import evaluate_dataset
    from uwe.data.tasks import RankingDataset, load_task
    from uwe.infer.ann import TwoStageModel
    from uwe.infer.index_cache import CachedIndexModel

    cached = CachedIndexModel(model, fp, cache)
    out = {}
    for name, n_q in tasks.items():
        ds = load_task(name, "heldout", "test", root=root)
        if n_q and n_q < ds.n_queries:
            keep = np.sort(np.random.default_rng(seed).choice(ds.n_queries, n_q, replace=False))
            ds = RankingDataset(
                ds.name,
                ds.family,
                ds.split,
                [ds.queries[i] for i in keep],
                ds.targets,
                [ds.positives[i] for i in keep],
            )
        t0 = time.perf_counter()
        row = {
            "n_queries": ds.n_queries,
            "n_targets": ds.n_targets,
            "exhaustive": 100 * evaluate_dataset(cached, ds, ("map",))["map"],
        }
        row["exhaustive_s"] = time.perf_counter() - t0
        for n in grid:
            two = TwoStageModel(model, n, "flat", index_fn=cached.index_targets)
            row[f"flat{n}"] = 100 * evaluate_dataset(two, ds, ("map",))["map"]
        out[name] = row
        print(f"  {name}: {row}", flush=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="UWE folder (default: models/uwe or untuned)")
    ap.add_argument("--quick", action="store_true", help="100+100 queries, smaller MAP samples")
    ap.add_argument("--raw-dir", default="data/raw")
    ap.add_argument("--root", default="data/curated")
    ap.add_argument("--grid", default="50,100,200,500,1000,2000", help="n_candidates values")
    ap.add_argument("--first-stages", default="flat,hnsw")
    ap.add_argument("--hnsw-m", type=int, default=32)
    ap.add_argument("--ef-construction", type=int, default=80)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache-dir", default=None, help="index cache (default: uwe default)")
    ap.add_argument("--out", default=None, help="also write the results as JSON")
    ap.add_argument(
        "--max-targets",
        type=int,
        default=None,
        help="keep only the first N targets (a smoke run of the script)",
    )
    args = ap.parse_args(argv)

    import faiss
    import torch

    from uwe.data.tasks import load_task
    from uwe.infer.index_cache import IndexCache

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    n_per = 100 if args.quick else 300
    n_lat = 20 if args.quick else 40
    map_tasks = (
        {"job2skill": 300, "skill_norm": 300}
        if args.quick
        else {"job2skill": None, "skill_norm": 2000}
    )
    grid = [int(x) for x in args.grid.split(",")]
    stages = [s for s in args.first_stages.split(",") if s]
    cache = IndexCache(args.cache_dir)
    t_start = time.perf_counter()

    targets, parts = target_space(Path(args.raw_dir))
    targets = targets[: args.max_targets]
    model, fp = get_model(args.model, cache.dir.parent)
    print(f"model {fp['path']}; {len(targets):,} targets; threads {args.threads}", flush=True)
    t0 = time.perf_counter()
    index, status = cache.get_or_build(model, fp, targets)
    index_s = time.perf_counter() - t0
    print(f"target index: {status.status} in {index_s:.0f} s", flush=True)

    rng = np.random.default_rng(args.seed)
    jobs = load_task("job2skill", "heldout", "test", root=args.root).queries
    aliases = load_task("skill_norm", "heldout", "test", root=args.root).queries
    queries = [jobs[i] for i in rng.choice(len(jobs), n_per, replace=False)] + [
        aliases[i] for i in rng.choice(len(aliases), n_per, replace=False)
    ]
    groups = {
        "jobs": np.arange(len(queries)) < n_per,
        "aliases": np.arange(len(queries)) >= n_per,
        "all": np.ones(len(queries), dtype=bool),
    }
    latency_q = queries[: n_lat // 2] + queries[n_per : n_per + n_lat // 2]

    t0 = time.perf_counter()
    ref = exact_top10(model, index, queries)
    exact_batch_ms = 1000 * (time.perf_counter() - t0) / len(queries)
    exact_ms = median_ms(lambda q: exact_top10(model, index, [q]), latency_q)
    print(
        f"exhaustive: {exact_ms:.0f} ms/query at batch 1, {exact_batch_ms:.0f} ms/query at "
        f"batch 32",
        flush=True,
    )
    rows = sweep(
        model,
        index,
        queries,
        groups,
        ref,
        latency_q,
        grid,
        stages,
        args.hnsw_m,
        args.ef_construction,
    )
    index = None  # free the exhaustive index (~2 GB) before the MAP runs
    maps = map_comparison(model, fp, cache, args.root, map_tasks, grid, args.seed)

    res = {
        "model": fp["path"],
        "n_targets": len(targets),
        "parts": parts,
        "threads": args.threads,
        "n_queries": {"jobs": n_per, "aliases": n_per},
        "latency_queries": len(latency_q),
        "index_status": status.status,
        "index_s": index_s,
        "exhaustive_ms": exact_ms,
        "exhaustive_batch_ms": exact_batch_ms,
        "sweep": rows,
        "map": maps,
        "total_s": time.perf_counter() - t_start,
    }
    print_report(res)
    if args.out:
        from uwe.io import write_json

        write_json(args.out, res)
    return 0


def print_report(res: dict) -> None:
    print("\n" + "=" * 88)
    print(
        f"target space: {res['n_targets']:,} unique texts from "
        + ", ".join(f"{k} {v:,}" for k, v in res["parts"].items())
    )
    print(
        f"model: {res['model']}   torch/faiss threads: {res['threads']}   "
        f"queries: {res['n_queries']['jobs']} job titles + {res['n_queries']['aliases']} "
        f"skill aliases   latency: median of {res['latency_queries']} queries at batch 1"
    )
    print(
        f"exhaustive SLI: {res['exhaustive_ms']:.0f} ms/query (batch 1), "
        f"{res['exhaustive_batch_ms']:.0f} ms/query (batch 32); target index "
        f"{res['index_status']} ({res['index_s']:.0f} s)"
    )
    head = (
        f"{'stage':<6}{'n_cand':>7}{'build s':>9}{'R@10 jobs':>11}{'R@10 alias':>12}"
        f"{'R@10 all':>10}{'ms/query':>10}{'speed-up':>10}"
    )
    print(head + "\n" + "-" * len(head))
    for r in res["sweep"]:
        rec = r["recall@10"]
        print(
            f"{r['first_stage']:<6}{r['n_candidates']:>7}{r['build_s']:>9.1f}"
            f"{rec['jobs']:>11.3f}{rec['aliases']:>12.3f}{rec['all']:>10.3f}"
            f"{r['latency_ms']:>10.1f}{res['exhaustive_ms'] / r['latency_ms']:>9.1f}x"
        )
    grid = sorted({r["n_candidates"] for r in res["sweep"]})
    head = f"{'MAP % (heldout test)':<22}{'queries':>8}{'exhaustive':>11}" + "".join(
        f"{'flat' + str(n):>10}" for n in grid
    )
    print("\n" + head + "\n" + "-" * len(head))
    for name, row in res["map"].items():
        print(
            f"{name:<22}{row['n_queries']:>8}{row['exhaustive']:>11.2f}"
            + "".join(f"{row[f'flat{n}']:>10.2f}" for n in grid)
        )
    print(f"total {res['total_s'] / 60:.1f} min (timings depend on machine load)")


if __name__ == "__main__":
    raise SystemExit(main())
