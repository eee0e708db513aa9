"""How soft SLI's attention is for a model at a grid of temperatures (``uwe.bench.softness``).

Over the (query, positive) pairs of the heldout val splits (``--max-pairs`` per task), prints per
temperature the mean largest attention weight, the mean entropy (nats) and the entropy as a
fraction of log Lt, macro-averaged over the tasks; ``--json`` writes the report. The grid of the
ablations' attention sweep and the range ``train.attention_temperature`` is chosen from come from
this table (docs/analyses.md, "The scorer's fair test").

    python scripts/softness.py                          # the untuned train.backbone, raw logits
    python scripts/softness.py --attention cosine --temperatures 0.01 0.03 0.1 0.3 1
    python scripts/softness.py --model models/uwe --json metrics/softness/uwe.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

RAW_GRID = (0.1, 1, 3, 10, 30, 100, 300, 1000)
COSINE_GRID = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=".")
    ap.add_argument("--model", default="untuned",
                    help="'untuned' (train.backbone) or a UWE model folder")
    ap.add_argument("--attention", default="raw", choices=("raw", "cosine"))
    ap.add_argument("--temperatures", type=float, nargs="+", default=None)
    ap.add_argument("--max-pairs", type=int, default=500)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from uwe.bench.softness import softness_report
    from uwe.io import write_json
    from uwe.model.encoder import TokenEncoder
    from uwe.runtime import setup
    from uwe.train.validation import load_val_sets

    root, params = setup(Path(args.root), "params.yaml", None)
    if args.model == "untuned":
        encoder = TokenEncoder.from_pretrained(params.train.backbone,
                                               max_length=params.train.max_length)
    else:
        from uwe.model.uwe_model import load

        encoder = load(args.model, device="cpu").encoder
    temps = args.temperatures or (COSINE_GRID if args.attention == "cosine" else RAW_GRID)
    val = load_val_sets(root / params.curate.out_dir, None, params.train.val_max_queries)
    report = softness_report(encoder, val, temps, attention=args.attention,
                             max_pairs=args.max_pairs)
    report["model"] = args.model
    print(f"{args.model}: SLI attention over {args.attention} logits, {report['pairs']} val "
          f"(query, positive) pairs")
    print("| tau_a | max weight | entropy (nats) | entropy / log Lt |")
    print("|---|---|---|---|")
    for e in report["by_temperature"]:
        print(f"| {e['temperature']:g} | {e['max_weight']:.3f} | {e['entropy']:.3f} | "
              f"{e['entropy_fraction']:.3f} |")
    if args.json:
        write_json(Path(args.json), report)


if __name__ == "__main__":
    main()
