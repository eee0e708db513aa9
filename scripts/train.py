"""Train UWE from params.yaml outside the notebook — the multi-GPU entry point.

    torchrun --standalone --nproc_per_node 8 scripts/train.py --profile paper
    python scripts/train.py                      # one process, the profile in params.yaml

Does exactly what notebooks/02_train.ipynb does (same params, same outputs: models/uwe,
metrics/train.json, metrics/train_log.csv); under torchrun every rank trains on its own
sampler seed, embeddings are gathered so negatives span the global batch, and rank 0 writes.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=".", help="repository root (default: .)")
    ap.add_argument("--params", default="params.yaml", help="params file, relative to --root")
    ap.add_argument("--profile", default=None, help="smoke, cpu or paper (default: params.yaml)")
    ap.add_argument("--no-resume", action="store_true", help="discard an existing checkpoint")
    args = ap.parse_args()

    from uwe.io import write_json
    from uwe.runtime import seed_everything, setup
    from uwe.training import train

    root, params = setup(args.root, args.params, args.profile)
    seed_everything(params.seed)
    summary = train(
        params.train,
        seed=params.seed,
        data_root=root / params.curate.out_dir,
        out_dir=root / params.train.out_dir,
        checkpoint_dir=root / params.train.checkpoint_dir,
        log_path=root / "metrics" / "train_log.csv",
        resume=not args.no_resume,
    )
    if int(os.environ.get("RANK", "0")) == 0:
        write_json(Path(root) / "metrics" / "train.json",
                   {k: v for k, v in summary.items() if k != "out_dir"})


if __name__ == "__main__":
    main()
