"""Train UWE from params.yaml outside the notebook — the multi-GPU entry point.

    torchrun --standalone --nproc_per_node 8 scripts/train.py --profile paper
    python scripts/train.py                      # one process, the profile in params.yaml

Does exactly what notebooks/02_train.ipynb does (same params, same outputs: models/uwe,
metrics/train.json, metrics/train_log.csv); under torchrun every rank trains on its own
sampler seed, embeddings are gathered so negatives span the global batch, and rank 0 writes.
Both run :func:`uwe.train.loop.train_main_model`, so they resume alike (a checkpoint of this
configuration is continued, any other discarded; ``--no-resume`` starts over,
``--strict-resume`` fails on another config's checkpoint) and stop alike: a run stopped by
SIGTERM / SIGINT saves a checkpoint, writes no model and exits with status 3 (the notebook
raises), and running the same command again resumes it.
"""

from __future__ import annotations

import argparse
import os
import sys

EXIT_STOPPED = 3  # stopped by SIGTERM / SIGINT before the last step (resumable)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=".", help="repository root (default: .)")
    ap.add_argument("--params", default="params.yaml", help="params file, relative to --root")
    ap.add_argument("--profile", default=None, help="smoke, cpu or paper (default: params.yaml)")
    ap.add_argument("--no-resume", action="store_true", help="discard an existing checkpoint")
    ap.add_argument("--strict-resume", action="store_true",
                    help="continue the checkpoint, and fail if it belongs to another config "
                         "(default: continue a checkpoint of this config, discard any other)")
    args = ap.parse_args()
    if args.no_resume and args.strict_resume:
        ap.error("--no-resume and --strict-resume exclude each other")

    from uwe.runtime import seed_everything, setup
    from uwe.train.loop import TrainingStopped, train_main_model

    root, params = setup(args.root, args.params, args.profile)
    seed_everything(params.seed)
    resume = False if args.no_resume else True if args.strict_resume else "auto"
    try:
        train_main_model(params, root, resume=resume)
    except TrainingStopped as stop:
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"train.py: {stop}", file=sys.stderr)
        sys.exit(EXIT_STOPPED)
    except (ValueError, OSError) as err:  # a checkpoint of another run, a missing graph ...
        print(f"train.py: error: {' '.join(str(err).split())}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
