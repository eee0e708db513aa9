"""Parameterised recipe-search runs for UWE training (``experiments/recipes.yaml``).

``--run NAME`` trains the ``train`` config of params.yaml (profile applied) with the run's
overrides from scratch into a temporary folder, validates once at the end on the heldout val
splits (``val_max_queries`` per task) and writes ``metrics/recipes/NAME.json``: the overrides,
the full resolved config, val macro MAP and per-task MAP, minutes (training and validation),
steps, pairs seen per graph and the frozen-bottom cache report. ``--table`` prints the table of
every result (config -> val macro MAP, minutes), sorted by val MAP, and with ``--docs``
writes it into docs/training-on-a-cpu.md between the ``recipes:start`` / ``recipes:end``
markers. The table is made from the result files only (``uwe.pipeline.recipes.recipe_table``).

    python scripts/recipe_search.py --list
    UWE_THREADS=1 python scripts/recipe_search.py --run k3_b128_mean_lr1e-4_s150
    python scripts/recipe_search.py --table --docs
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import yaml

RECIPES = "experiments/recipes.yaml"
OUT = "metrics/recipes"


def load_recipes(path: Path) -> tuple[dict, dict]:
    raw = yaml.safe_load(path.read_text()) or {}
    return dict(raw.get("defaults") or {}), dict(raw.get("runs") or {})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=".")
    ap.add_argument("--recipes", default=RECIPES)
    ap.add_argument("--run", default=None)
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--table", action="store_true")
    ap.add_argument("--docs", action="store_true",
                    help="with --table: write the table into docs/training-on-a-cpu.md")
    args = ap.parse_args()
    root = Path(args.root)
    defaults, runs = load_recipes(root / args.recipes)
    if args.list:
        for name, over in runs.items():
            print(name, over)
        return
    if args.table:
        from uwe.pipeline.recipes import RECIPE_PAGE, RECIPES_END, RECIPES_START, recipe_table
        from uwe.pipeline.reporting import replace_between_markers

        table = recipe_table(root / OUT)
        print(table)
        if args.docs:
            page = root / RECIPE_PAGE
            page.write_text(replace_between_markers(page.read_text(), table, RECIPES_START,
                                                    RECIPES_END))
        return
    if args.run not in runs:
        sys.exit(f"recipe_search: unknown run {args.run!r} in {args.recipes}; "
                 f"known: {sorted(runs)}")
    from uwe.io import write_json
    from uwe.pipeline.analyses import model_softness
    from uwe.precision import cpu_isa
    from uwe.runtime import seed_everything, setup
    from uwe.train.checkpoint import _jsonable
    from uwe.train.loop import train

    over = {**defaults, **runs[args.run]}
    threads = over.pop("threads", None)
    untuned = over.pop("untuned", False)
    root, params = setup(root, "params.yaml", None, threads=threads)
    from uwe.config import TrainParams, build

    graphs = {k: dataclasses.asdict(v) for k, v in params.train.graphs.items()}
    graphs.update(over.pop("add_graphs", None) or {})  # extra graphs beside train.graphs
    for g in over.pop("drop_graphs", None) or []:
        graphs.pop(g, None)
    try:  # the same typed conversion (and unknown-key check) as params.yaml gets
        cfg = build(TrainParams, {**{f.name: getattr(params.train, f.name)
                                     for f in dataclasses.fields(TrainParams)
                                     if f.name != "graphs"}, "graphs": graphs, **over},
                    "train")
    except (TypeError, ValueError) as err:
        sys.exit(f"recipe_search: run {args.run}: {err}")
    seed_everything(params.seed)
    t0 = time.perf_counter()
    if untuned:  # the backbone as it is, scored with cfg.scorer: the reference row
        from uwe.model.uwe_model import UWEModel
        from uwe.train.validation import load_val_sets, validate

        model = UWEModel.from_backbone(cfg.backbone, cfg.scorer, cfg.attention_temperature,
                                       cfg.max_length, device="cpu")
        macro, tasks = validate(model, load_val_sets(root / params.curate.out_dir, None,
                                                     cfg.val_max_queries))
        summary = {"val_history": [{"val_map": macro, "tasks": tasks}], "global_batch": {},
                   "steps_done": 0, "seconds": 0.0, "precision": "fp32", "device": "cpu"}
        softness = model_softness(model, root / params.curate.out_dir, cfg.val_max_queries)
    else:
        with tempfile.TemporaryDirectory(prefix="uwe-recipe-") as tmp:
            summary = train(cfg, seed=params.seed, data_root=root / params.curate.out_dir,
                            out_dir=Path(tmp) / "model", checkpoint_dir=Path(tmp) / "ckpt",
                            resume=False, progress=False)
            from uwe.model.uwe_model import load

            softness = model_softness(load(Path(tmp) / "model", device="cpu"),
                                      root / params.curate.out_dir, cfg.val_max_queries)
    total = time.perf_counter() - t0
    val = summary["val_history"][-1]
    batch = summary["global_batch"]
    write_json(root / OUT / f"{args.run}.json", {
        "run": args.run, "overrides": _jsonable(runs[args.run]), "train": _jsonable(
            dataclasses.asdict(cfg)), "profile": params.profile, "seed": params.seed,
        "val_map": val["val_map"], "val_tasks": val["tasks"], "steps": summary["steps_done"],
        "train_minutes": round(summary["seconds"] / 60, 2), "total_minutes": round(total / 60, 2),
        "pairs_per_graph": {g: summary["steps_done"] * s[0] for g, s in batch.items()},
        "frozen_cache": summary.get("frozen_cache"),
        "hard_negatives": summary.get("hard_negatives"), "threads": threads,
        # the arithmetic of the run: bf16 rounding changes the weights (uwe.precision)
        "precision": summary.get("precision"), "device": summary.get("device"),
        "cpu": cpu_isa(), "softness": softness})
    print(f"{args.run}: val macro MAP {100 * val['val_map']:.2f} after {summary['steps_done']} "
          f"steps, {summary['seconds'] / 60:.1f} min training")


if __name__ == "__main__":
    main()
