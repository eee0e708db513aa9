"""Train UWE from params.yaml outside the notebook — the multi-GPU entry point.

    torchrun --standalone --nproc_per_node 8 scripts/train.py --profile paper
    python scripts/train.py                      # one process, the profile in params.yaml

Does exactly what notebooks/02_train.ipynb does (same params, same outputs: models/uwe,
metrics/train.json, metrics/train_log.csv); under torchrun every rank trains on its own
sampler seed, embeddings are gathered so negatives span the global batch, and rank 0 writes.
A run stopped by SIGTERM / SIGINT saves a checkpoint, writes no model and exits with status 3
(running the same command again resumes it).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

EXIT_STOPPED = 3  # stopped by SIGTERM / SIGINT before the last step (resumable)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=".", help="repository root (default: .)")
    ap.add_argument("--params", default="params.yaml", help="params file, relative to --root")
    ap.add_argument("--profile", default=None, help="smoke, cpu or paper (default: params.yaml)")
    ap.add_argument("--no-resume", action="store_true", help="discard an existing checkpoint")
    args = ap.parse_args()

    from uwe.io import write_json
    from uwe.runtime import seed_everything, setup
    from uwe.train.loop import train

    root, params = setup(args.root, args.params, args.profile)
    seed_everything(params.seed)
    try:
        summary = train(
            params.train,
            seed=params.seed,
            data_root=root / params.curate.out_dir,
            out_dir=root / params.train.out_dir,
            checkpoint_dir=root / params.train.checkpoint_dir,
            log_path=root / "metrics" / "train_log.csv",
            resume=not args.no_resume,
        )
    except (ValueError, OSError) as err:  # a checkpoint of another run, a missing graph ...
        print(f"train.py: error: {' '.join(str(err).split())}", file=sys.stderr)
        sys.exit(2)
    main_rank = int(os.environ.get("RANK", "0")) == 0
    if summary["stopped"] == "signal":  # checkpointed, nothing published: not a success
        if main_rank:
            print(f"train.py: stopped by a signal at step {summary['steps_done']} of "
                  f"{summary['steps']}: no model written, metrics/train.json left as it was; "
                  f"the checkpoint in {root / params.train.checkpoint_dir} resumes it: run the "
                  f"same command again", file=sys.stderr)
        sys.exit(EXIT_STOPPED)
    if main_rank:
        write_json(Path(root) / "metrics" / "train.json",
                   {k: v for k, v in summary.items() if k != "out_dir"})


if __name__ == "__main__":
    main()
