"""Benchmark UWE training steps on this machine: seconds per step, pairs / s, tokens / s, peak
memory, for the step as configured in params.yaml (``train``, profile applied) and for each
option of the frozen-bottom path (``train.frozen_layers``, batch size, chunk size, threads)
and of the arithmetic (``train.precision``: fp32, bf16 autocast, auto). The first line printed
names the CPU and the instruction-set features that decide bf16's speed (``uwe.precision``).

Every option runs in its own process (so its peak RSS is its own) with validation off: the
trainer is built (the frozen-bottom cache read from ``$UWE_CACHE_DIR/frozen`` or built and
stored there: the first run of a K pays for it, the time is reported), ``--warmup`` steps are
run untimed, then ``--steps`` steps are timed one by one; the figures are the median, with
min and max. ``pairs`` = the left nodes of every graph's batch (one sampled edge each, the
positives the loss sees), ``tokens`` = the real (unpadded) tokens the encoder's trainable
part runs over in the step.

    python scripts/bench_train.py                       # the default option set
    python scripts/bench_train.py --grid --steps 3 --warmup 1   # K 0-3 x fp32 / bf16
    python scripts/bench_train.py --only configured,k3_b128 --steps 5
    python scripts/bench_train.py --option 'mine:frozen_layers=3,batch_size=192'

Needs ``data/curated`` (``dvc repro curate``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OPTIONS = {
    "configured": {},
    # the step before frozen-bottom caching: full fine-tune, batch 32, SLI
    "before_k0_b32_sli": {"frozen_layers": 0, "batch_size": 32, "scorer": "sli"},
    "k0_b32": {"frozen_layers": 0, "batch_size": 32},
    "k3_b32": {"frozen_layers": 3, "batch_size": 32},
    "k3_b128": {"frozen_layers": 3, "batch_size": 128},
    "k3_b128_chunk256": {"frozen_layers": 3, "batch_size": 128, "encode_chunk": 256},
    "k3_b128_1thread": {"frozen_layers": 3, "batch_size": 128, "threads": 1},
    "k3_b256": {"frozen_layers": 3, "batch_size": 256},
    "k4_b128": {"frozen_layers": 4, "batch_size": 128},
    "k2_b128": {"frozen_layers": 2, "batch_size": 128},
}
DEFAULT = list(OPTIONS)  # what a bare run times
# the precision grid (train.precision): K frozen layers x fp32 / bf16 at batch 128
for _k in range(4):
    for _p in ("fp32", "bf16"):
        OPTIONS[f"k{_k}_{_p}"] = {"frozen_layers": _k, "batch_size": 128, "precision": _p}
GRID = [f"k{k}_{p}" for k in (3, 2, 1, 0) for p in ("fp32", "bf16")]


def parse_value(v: str):
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    return v


def run_one(args, changes: dict) -> dict:
    import torch

    threads = changes.pop("threads", None)
    from uwe.runtime import setup

    root, params = setup(args.root, args.params, args.profile, threads=threads)
    from uwe.model.pretrained import resolve_device
    from uwe.train.distributed import DistInfo
    from uwe.train.loop import Trainer

    cfg = dataclasses.replace(params.train, val_max_queries=0, eval_every=0,
                              steps=args.warmup + args.steps, max_minutes=None, **changes)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, params.seed, root / params.curate.out_dir, Path(tmp) / "out",
                          Path(tmp) / "ckpt", DistInfo(), resolve_device(cfg.device), [], False)
        init_s = time.perf_counter() - t0
        trainer.model.encoder.train()
        times, pairs, tokens = [], [], []
        draw = trainer.batcher.sample
        for i in range(args.warmup + args.steps):
            batches = draw()
            trainer.batcher.sample = lambda b=batches: b  # the step trains on this batch
            n_pairs = sum(len(b.left_texts) for b in batches.values())
            texts = [t for b in batches.values() for t in (*b.left_texts, *b.right_texts)]
            n_tok = int(trainer.token_lengths(texts).sum())
            s = time.perf_counter()
            trainer.train_step()
            if i >= args.warmup:
                times.append(time.perf_counter() - s)
                pairs.append(n_pairs)
                tokens.append(n_tok)
    med = statistics.median(times)
    return {"seconds_per_step": round(med, 3), "min": round(min(times), 3),
            "max": round(max(times), 3),
            "pairs_per_s": round(statistics.median(pairs) / med, 1),
            "tokens_per_s": round(statistics.median(tokens) / med, 0),
            "pairs_per_step": int(statistics.median(pairs)),
            "init_s": round(init_s, 1), "frozen_cache": trainer.cache_info,
            "threads": torch.get_num_threads(), "precision": trainer.precision,
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 0),
            "config": {k: v for k, v in changes.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=".")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--profile", default=None)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per option")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    ap.add_argument("--only", default=None, help="comma-separated option names")
    ap.add_argument("--grid", action="store_true",
                    help="the precision grid: frozen layers 3..0 x fp32 / bf16, batch 128")
    ap.add_argument("--option", action="append", default=[],
                    help="an extra option NAME:key=value,key=value (train fields, threads)")
    ap.add_argument("--json", default=None, help="also write the results to this file")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    options = dict(OPTIONS)
    for spec in args.option:
        name, _, kv = spec.partition(":")
        options[name] = {k: parse_value(v) for k, v in (x.split("=", 1) for x in kv.split(","))}
    if args.child is not None:
        print("RESULT " + json.dumps(run_one(args, json.loads(args.child))), flush=True)
        return
    names = args.only.split(",") if args.only else GRID if args.grid else DEFAULT
    names += [n for n in options if n not in OPTIONS and not args.only]  # --option extras
    unknown = [n for n in names if n not in options]
    if unknown:
        sys.exit(f"bench_train: unknown option(s) {unknown}; known: {sorted(options)}")
    results = {}
    from uwe.precision import cpu_isa, isa_line

    print(isa_line(), flush=True)
    print(f"{'option':<20} {'prec':>5} {'s/step':>7} {'min':>6} {'max':>6} {'pairs/s':>8} "
          f"{'tokens/s':>9} {'pairs':>6} {'init s':>7} {'peak MiB':>9}", flush=True)
    for name in names:
        cmd = [sys.executable, __file__, "--root", args.root, "--params", args.params,
               "--steps", str(args.steps), "--warmup", str(args.warmup),
               "--child", json.dumps(options[name])]
        if args.profile:
            cmd += ["--profile", args.profile]
        out = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
        line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
        if out.returncode or line is None:
            sys.exit(f"bench_train: option {name} failed:\n{out.stderr[-2000:]}")
        r = results[name] = json.loads(line[len("RESULT "):])
        print(f"{name:<20} {r['precision']:>5} {r['seconds_per_step']:>7.2f} {r['min']:>6.2f} "
              f"{r['max']:>6.2f} {r['pairs_per_s']:>8.1f} {r['tokens_per_s']:>9.0f} "
              f"{r['pairs_per_step']:>6} {r['init_s']:>7.1f} {r['peak_rss_mib']:>9.0f}", flush=True)
    if args.json:
        from uwe.io import write_json

        write_json(args.json, {"isa": cpu_isa(), "options": results})


if __name__ == "__main__":
    main()
