"""Fingerprint of what the analysis code computes, to show a code change leaves results alone.

Trains run(s) of ``ablations.runs`` (profile applied) for a short budget into a temporary
folder, exactly as stage ``budgets`` does (:func:`uwe.pipeline.analyses.budget_spec`,
``train_run``, ``evaluate_run``), and prints one JSON object per run: the sha256 of each seed's
saved weights, the training summary's loss, val MAP, and the (capped) heldout and zero-shot
macro MAP with every task's MAP. Run it before and after a change; identical output is the
evidence that the committed stage results still stand (then ``dvc commit`` records the new code
hashes instead of re-running hours of training). Any difference prints, and the exit is 1 when
``--against`` names an earlier output that differs (each differing value is printed: path,
before, after).

    python scripts/same_results.py --runs reference scorer_maxsim --out before.json
    (change the code)
    python scripts/same_results.py --runs reference scorer_maxsim --out after.json \
        --against before.json
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import tempfile
from pathlib import Path


def fingerprint(root: Path, run: str, steps: int, seeds: list[int], max_queries: int,
                val_max_queries: int, profile: str | None) -> dict:
    from uwe.pipeline.analyses import budget_spec, evaluate_run, train_run
    from uwe.runtime import seed_everything, setup

    root, params = setup(root, "params.yaml", profile)
    seed_everything(params.seed)
    point = dataclasses.replace(next(iter(params.budgets.points.values())), steps=steps,
                                max_minutes=None, max_queries=max_queries,
                                val_max_queries=val_max_queries, seeds=list(seeds))
    params = dataclasses.replace(params, budgets=dataclasses.replace(
        params.budgets, points={"check": point}, publish={}))
    spec = budget_spec(params, run, "check")
    data_root = root / params.curate.out_dir
    with tempfile.TemporaryDirectory(prefix="uwe-same-") as tmp:
        out = Path(tmp)
        (out / params.curate.out_dir).parent.mkdir(parents=True, exist_ok=True)
        (out / params.curate.out_dir).symlink_to(data_root.resolve(), target_is_directory=True)
        summaries = train_run(spec, out, data_root, progress=False)
        weights = {}
        for seed in spec.seeds:
            files = sorted(spec.model_dir(out, seed).rglob("*.safetensors"))
            digest = hashlib.sha256()
            for f in files:
                digest.update(f.read_bytes())
            weights[str(seed)] = digest.hexdigest()
        result = evaluate_run(spec, params, out, summaries, progress=False)
    seeds_out = {}
    for entry in result["seeds"]:
        training = entry.get("training") or {}
        res = entry["evaluation"]
        seeds_out[str(entry["seed"])] = {
            "weights_sha256": weights[str(entry["seed"])],
            "steps_done": training.get("steps_done"),
            "last_loss": training.get("last_loss"),
            "val_map": training.get("best_val_map"),
            "heldout": _maps(res),
            "zeroshot": _maps(entry["zeroshot"]) if "zeroshot" in entry else None,
        }
    return {"run": run, "steps": steps, "profile": params.profile, "seeds": seeds_out}


def _maps(res: dict) -> dict:
    """Macro MAP and every task's MAP of an evaluation result, rounded to 1e-6."""
    tasks = res.get("tasks") or {}
    per_task = {t: round(float(m["map"]), 6) for t, m in sorted(tasks.items())
                if isinstance(m, dict) and "map" in m}
    macro = (res.get("macro") or {}).get("map")
    return {"macro_map": None if macro is None else round(float(macro), 6), "tasks": per_task}


def differences(a, b, path: str = "") -> list[tuple[str, object, object]]:
    """``(path, before, after)`` of every leaf that differs between two fingerprints."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b), key=str)
                for d in differences(a.get(k), b.get(k), f"{path}.{k}" if path else str(k))]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True))
                for d in differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [(path, a, b)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=".")
    ap.add_argument("--runs", nargs="+", default=["reference"],
                    help="runs of params.yaml ablations.runs that train")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--max-queries", type=int, default=100, help="heldout test queries per task")
    ap.add_argument("--val-max-queries", type=int, default=100)
    ap.add_argument("--profile", default=None)
    ap.add_argument("--out", type=Path, required=True, help="where the JSON fingerprint goes")
    ap.add_argument("--against", type=Path, default=None,
                    help="an earlier output of this script; exit 1 if this one differs")
    args = ap.parse_args()
    out = [fingerprint(Path(args.root), run, args.steps, args.seeds, args.max_queries,
                       args.val_max_queries, args.profile) for run in args.runs]
    args.out.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"fingerprint of {args.runs} written to {args.out}", file=sys.stderr)
    if args.against is not None:
        before = json.loads(args.against.read_text())
        diffs = differences(before, out)
        for path, a, b in diffs:
            delta = f" ({b - a:+.2e})" if isinstance(a, float) and isinstance(b, float) else ""
            print(f"{path}: {a} -> {b}{delta}", file=sys.stderr)
        if diffs:
            print(f"DIFFERENT from {args.against} in {len(diffs)} value(s)", file=sys.stderr)
            sys.exit(1)
        print(f"identical to {args.against}", file=sys.stderr)


if __name__ == "__main__":
    main()
