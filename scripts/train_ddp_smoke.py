"""Smoke run of UWE's distributed training path on CPU (gloo), e.g. two processes:

    torchrun --standalone --nproc_per_node 2 scripts/train_ddp_smoke.py \\
        --root CURATED --backbone MODEL --out OUT [--graphs sa sj] [--batch-size 4] [--steps 2]

Every rank writes ``OUT/summary_rank{r}.json`` (the dict ``uwe.train.loop.train`` returns);
rank 0 also writes the model to ``OUT/model``, the checkpoint to ``OUT/ckpt`` and the log to
``OUT/log.csv``. Used by tests/test_training.py; also a quick check of a multi-GPU set-up
(``--device cuda``).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def main() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from uwe.config import GraphParams, TrainParams
    from uwe.train.loop import train

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True, help="curated data folder (graphs/, tasks/)")
    ap.add_argument("--backbone", default="all-MiniLM-L6-v2")
    ap.add_argument("--out", required=True)
    ap.add_argument("--graphs", nargs="+", default=["sa", "sj"])
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = TrainParams(backbone=args.backbone, batch_size=args.batch_size, steps=args.steps,
                      graphs={g: GraphParams(1.0, 0.05) for g in args.graphs}, eval_every=0,
                      lr=1e-4, warmup=0.0, device=args.device, val_max_queries=8)
    out = Path(args.out)
    summary = train(cfg, seed=0, data_root=args.root, out_dir=out / "model",
                    checkpoint_dir=out / "ckpt", log_path=out / "log.csv", resume=False,
                    progress=False)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"summary_rank{summary['rank']}.json"
    path.write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
