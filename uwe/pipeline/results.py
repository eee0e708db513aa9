"""Collect the analyses' per-run results into the paper's tables (stage ``figures``).

* :func:`collect_transfer` -> ``metrics/transfer.json``: rows = training graph (run name,
  params order), columns = task group + macro, MAP and RP@10 (mean and std over seeds), and
  the gain over the untuned backbone row with its standard error over seeds and whether it
  lies beyond the claims' ``Z`` standard errors (``<metric>_decided``: gain / loss / null);
* :func:`collect_ablations` -> ``metrics/ablations.json``: per run and per factor (scorer,
  loss, attention temperature, training graphs) the macro MAP / RP@10, mean and std over
  seeds, and per run the mean over the zero-shot tasks (mean and std over seeds);
* :func:`collect_zeroshot` -> ``metrics/zeroshot.json``: per model, MAP / RP@10 of every
  zero-shot task and their mean.

Values are fractions (as in every metrics file); the ``*_frame`` helpers give percentages for
display. Std is the sample standard deviation over seeds (``ddof=1``), null for one seed.
``write_json`` sorts keys, so every collection also lists its row / column order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from uwe.config import RunParams, TrainParams
from uwe.data import tasks as task_lib
from uwe.io import read_json

METRICS = ("map", "rp@10")
LABELS = {"map": "MAP", "rp@10": "RP@10"}
AXES = ("scorer", "loss", "attention_temperature", "graphs")
# the sli_cos runs' temperature (attention over cosines: another unit than the raw-dot axis)
COSINE_AXIS = "cosine_attention_temperature"
ALL_GRAPHS = "all"  # the value of the reference (every graph of ``train``) on the graphs axis
# display order of the factor values (the paper's progression), unknown values last
AXIS_ORDER = {"scorer": ("mean", "maxsim", "sli_mean_target", "sli"),
              "loss": ("one_to_one", "symmetric", "many_to_many_one_direction", "many_to_many")}


def mean_std(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample std (ddof=1) of the finite values; std None for fewer than two."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return None, None
    std = float(np.std(vals, ddof=1)) if len(vals) > 1 else None
    return float(np.mean(vals)), std


def aggregate_seeds(evaluations: Sequence[Mapping], metrics: Sequence[str] = METRICS) -> dict:
    """Per group and macro: ``{metric: mean, f"{metric}_std": std}`` over the seeds' results."""

    def cell(parts: list[Mapping]) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for m in metrics:
            out[m], out[f"{m}_std"] = mean_std([p.get(m) for p in parts])
        return out

    present = {g for ev in evaluations for g in ev.get("groups", {})}
    groups = {g: cell([ev["groups"][g] for ev in evaluations if g in ev.get("groups", {})])
              for g in task_lib.TASK_GROUPS if g in present}
    return {"groups": groups, "macro": cell([ev.get("macro", {}) for ev in evaluations]),
            "n_seeds": len(evaluations)}


def load_runs(metrics_dir: str | Path, group: str, names: Sequence[str]) -> dict[str, dict]:
    """``metrics/<group>/<name>.json`` of every run; FileNotFoundError names the missing
    stages."""
    paths = {name: Path(metrics_dir) / group / f"{name}.json" for name in names}
    missing = [name for name, path in paths.items() if not path.is_file()]
    if missing:
        raise FileNotFoundError(
            f"no results under {Path(metrics_dir) / group} for run(s) {missing}: run the "
            f"stage(s) {', '.join(f'{group}@{n}' for n in missing)} (notebook 04_variant)")
    return {name: read_json(path) for name, path in paths.items()}


def _aggregate_run(result: Mapping) -> dict:
    return aggregate_seeds([entry["evaluation"] for entry in result["seeds"]])


def collect_transfer(metrics_dir: str | Path, runs: Sequence[str],
                     baseline: str = "untuned") -> dict:
    """Transfer matrix (module doc); ``baseline`` is the row the gains are taken against."""
    results = load_runs(metrics_dir, "transfer", runs)
    if baseline not in results:
        raise ValueError(f"baseline run {baseline!r} not among the transfer runs {list(runs)}")
    agg = {name: _aggregate_run(res) for name, res in results.items()}
    present = {g for a in agg.values() for g in a["groups"]}
    columns = [g for g in task_lib.TASK_GROUPS if g in present] + ["macro"]
    rows, gain = {}, {}
    for name in runs:
        cells = {col: (agg[name]["macro"] if col == "macro" else agg[name]["groups"].get(col, {}))
                 for col in columns}
        info = results[name].get("model_info") or {}
        rows[name] = {"model": results[name]["model"], "graphs": info.get("graphs"),
                      "n_seeds": agg[name]["n_seeds"], **cells}
    base = rows[baseline]
    for name in runs:
        gain[name] = {}
        for col in columns:
            cell: dict[str, Any] = {}
            for m in METRICS:
                g = (None if rows[name][col].get(m) is None or base[col].get(m) is None
                     else rows[name][col][m] - base[col][m])
                se = _gain_se(results[name], rows[name][col].get(f"{m}_std"),
                              results[baseline], base[col].get(f"{m}_std"))
                cell[m], cell[f"{m}_se"] = g, se
                cell[f"{m}_decided"] = _decided(g, se)
            gain[name][col] = cell
    first = results[runs[0]]
    return {"units": "fraction", "metrics": list(METRICS), "baseline": baseline,
            "order": list(runs), "columns": columns, "rows": rows, "gain": gain,
            "family": "heldout", "max_queries": first["budget"].get("max_queries"),
            "profile": first.get("profile")}


def _seed_std(result: Mapping, std: float | None) -> float | None:
    """A run's seed std: its std over seeds when trained (None for one seed), 0 for the untuned
    backbone (deterministic), None (unknown) for an existing model trained elsewhere."""
    if result.get("train") is not None:
        return std
    return 0.0 if result.get("model") == "untuned" else None


def _gain_se(run: Mapping, run_std: float | None, base: Mapping, base_std: float | None
             ) -> float | None:
    """Standard error of a gain (run mean - baseline mean), None when a spread is unknown."""
    a, b = _seed_std(run, run_std), _seed_std(base, base_std)
    if a is None or b is None:
        return None
    return math.sqrt(a**2 / max(1, len(run["seeds"])) + b**2 / max(1, len(base["seeds"])))


def _decided(gain: float | None, se: float | None) -> str | None:
    """"gain" / "loss" when the gain lies beyond ``uwe.pipeline.claims.Z`` standard errors from 0,
    None when it lies within (or its spread is unknown)."""
    from uwe.pipeline.claims import Z

    if gain is None or se is None:
        return None
    return "gain" if gain > Z * se else "loss" if gain < -Z * se else None


def _axis_key(axis: str, value: Any) -> tuple:
    if axis == "graphs":  # subsets by name, the reference (every graph) last
        return (int(value == ALL_GRAPHS), 0.0, str(value))
    order = AXIS_ORDER.get(axis)
    if order is None:
        return (0, float(value), "")
    return (order.index(value) if value in order else len(order), 0.0, str(value))


def graphs_label(graphs: Sequence[str], base: Sequence[str]) -> str:
    """Short name of a training-graph subset of ``base``: ``"all"``, ``"without sv"`` or
    ``"only sj"`` (whichever lists fewer graphs)."""
    kept = [g for g in base if g in graphs]
    dropped = [g for g in base if g not in graphs]
    if not dropped:
        return ALL_GRAPHS
    return f"without {'+'.join(dropped)}" if len(dropped) <= len(kept) else \
        f"only {'+'.join(kept)}"


def _factor(run: RunParams, base: TrainParams, axis: str) -> Any:
    """The run's value of ``axis`` (the base's where the run keeps it)."""
    if axis == "graphs":
        return graphs_label(base.graphs if run.graphs is None else run.graphs, list(base.graphs))
    value = getattr(run, axis)
    return getattr(base, axis) if value is None else value


def _zeroshot_seeds(result: Mapping) -> dict[str, float | None] | None:
    """Mean MAP / RP@10 over the zero-shot tasks: mean and std over seeds (None if the run
    was not scored on them)."""
    per_seed = [e["zeroshot"]["tasks"] for e in result["seeds"] if e.get("zeroshot")]
    if not per_seed:
        return None
    out: dict[str, float | None] = {}
    for m in METRICS:
        means = [mean_std([t.get(m) for t in tasks.values()])[0] for tasks in per_seed]
        out[m], out[f"{m}_std"] = mean_std(means)
    return out


def collect_ablations(metrics_dir: str | Path, runs: Mapping[str, RunParams],
                      base: TrainParams) -> dict:
    """Ablations (module doc). A run changing exactly one factor of ``base`` (a training-graph
    subset counts as one factor) sits on that factor's axis; the run changing none (the
    reference) sits on every axis at its base value; other runs (several factors, an existing
    model) are listed under ``runs`` only. When ``base`` does not score with SLI, the
    attention-temperature axis holds the SLI runs instead (scorer SLI, any temperature,
    nothing else changed): the temperature means nothing to the other scorers."""
    results = load_runs(metrics_dir, "ablations", list(runs))
    out_runs, axes = {}, {a: [] for a in (*AXES, COSINE_AXIS)}
    base_values = {a: _factor(RunParams(), base, a) for a in AXES}
    sli_base = base_values["scorer"] == "sli"
    for name, run in runs.items():
        agg = _aggregate_run(results[name])
        softness = _softness_mean(results[name])
        out_runs[name] = {"overrides": results[name].get("overrides", {}),
                          "n_seeds": agg["n_seeds"], "macro": agg["macro"],
                          "groups": agg["groups"], "zeroshot": _zeroshot_seeds(results[name]),
                          "softness": softness}
        if run.model is not None:
            continue
        values = {a: _factor(run, base, a) for a in AXES}
        changed = [a for a in AXES if values[a] != base_values[a]]
        on_axes = AXES if not changed else changed if len(changed) == 1 else ()
        if not sli_base:
            # the temperature matters to SLI only: with another base scorer the attention axis
            # holds the SLI runs that change nothing else (the sweep, an SLI scorer run)
            on_axes = tuple(a for a in on_axes if a != "attention_temperature")
            if values["scorer"] == "sli" and set(changed) <= {"scorer",
                                                              "attention_temperature"}:
                on_axes = (*on_axes, "attention_temperature")
        if values["scorer"] == "sli_cos" and set(changed) <= {"scorer", "attention_temperature"}:
            # the declared deviation: attention over cosines, its own temperature axis
            on_axes = (COSINE_AXIS,)
        for axis in on_axes:
            value = values["attention_temperature" if axis == COSINE_AXIS else axis]
            axes[axis].append({"run": name, "value": value, "reference": not changed,
                               "n_seeds": agg["n_seeds"], "softness": softness, **agg["macro"]})
    for axis in (*AXES, COSINE_AXIS):
        axes[axis].sort(key=lambda e, a=axis: _axis_key(a, e["value"]))
    seeds = sorted({e["seed"] for r in results.values() for e in r["seeds"]
                    if e["seed"] is not None})
    first = next(iter(results.values()))
    return {"units": "fraction", "metrics": list(METRICS), "order": list(runs),
            "axes": {a: v for a, v in axes.items() if v}, "runs": out_runs, "seeds": seeds,
            "family": "heldout", "max_queries": first["budget"].get("max_queries"),
            "profile": first.get("profile")}


def collect_zeroshot(workbench_dir: str | Path, family: str = "zeroshot",
                     published_dir: str | Path | None = None) -> dict:
    """Per model (``metrics/workbench/<family>/*.json``, and the budget runs' published models
    with ``published_dir``): MAP / RP@10 per task and the mean."""
    from uwe.pipeline.reporting import load_results

    results = load_results(workbench_dir, (family,), published_dir)
    registered = task_lib.registered_tasks(family) if family in task_lib.FAMILIES else []
    present = {t for r in results for t in r["tasks"]}
    tasks = [t for t in registered if t in present] + sorted(present - set(registered))
    models = {}
    for res in results:
        cells = {t: {m: res["tasks"][t].get(m) for m in METRICS} for t in tasks
                 if t in res["tasks"]}
        cells["mean"] = {m: mean_std([c[m] for c in cells.values()])[0] for m in METRICS}
        models[res["model"]] = cells
    return {"units": "fraction", "metrics": list(METRICS), "family": family, "tasks": tasks,
            "order": [r["model"] for r in results], "models": models}


# ------------------------------------------------------------------ display (percentages)
def _pct(x: float | None) -> float:
    return float("nan") if x is None else round(100.0 * x, 1)


def transfer_frame(transfer: Mapping, metric: str = "map", gain: bool = False) -> pd.DataFrame:
    """Rows = training graph (run), columns = task group + macro; ``metric`` in %, or its
    gain over the baseline row in points with ``gain=True``."""
    source = transfer["gain"] if gain else transfer["rows"]
    data = [[_pct(source[r][c].get(metric)) for c in transfer["columns"]]
            for r in transfer["order"]]
    return pd.DataFrame(data, index=pd.Index(transfer["order"], name="trained on"),
                        columns=transfer["columns"])


def ordered_axes(ablations: Mapping) -> list[str]:
    """The factors of ``ablations`` in :data:`AXES` order (a JSON file sorts its keys)."""
    known = [a for a in (*AXES, COSINE_AXIS) if a in ablations["axes"]]
    return known + sorted(set(ablations["axes"]) - set(known))


def ablations_frame(ablations: Mapping) -> pd.DataFrame:
    """One row per (factor, value): macro MAP / RP@10 mean and std in %, seeds, and for an SLI
    run how soft its attention was (:func:`uwe.bench.softness.softness_text`: a largest weight
    near 1 is hard MaxSim in disguise)."""
    from uwe.bench.softness import softness_text

    rows = []
    for axis in ordered_axes(ablations):
        for e in ablations["axes"][axis]:
            row = {"factor": axis, "value": e["value"], "run": e["run"], "seeds": e["n_seeds"]}
            for m in METRICS:
                row[f"macro {LABELS[m]}"] = _pct(e.get(m))
                row[f"{LABELS[m]} std"] = _pct(e.get(f"{m}_std"))
            row["attention"] = softness_text(e.get("softness"))
            rows.append(row)
    return pd.DataFrame(rows)


def zeroshot_frame(zeroshot: Mapping) -> pd.DataFrame:
    """One row per model: MAP / RP@10 (%) per zero-shot task and the mean."""
    rows = []
    for model in zeroshot["order"]:
        row: dict[str, Any] = {"model": model}
        for task in [*zeroshot["tasks"], "mean"]:
            for m in METRICS:
                row[f"{task} {LABELS[m]}"] = _pct(zeroshot["models"][model].get(task, {}).get(m))
        rows.append(row)
    return pd.DataFrame(rows)


# ------------------------------------------------------------------ budget curves
def _softness_mean(result: Mapping) -> dict[str, Any] | None:
    """A run's attention softness, mean over its seeds (None for a scorer without attention,
    or a result written before softness was measured)."""
    per_seed = [e.get("softness") for e in result["seeds"]]
    if not per_seed or any(s is None for s in per_seed):
        return None
    out: dict[str, Any] = {"attention": per_seed[0]["attention"],
                           "temperature": per_seed[0]["temperature"]}
    for key in ("max_weight", "entropy", "entropy_fraction"):
        out[key] = mean_std([s[key] for s in per_seed])[0]
    return out


def _curve_point(point: str, result: Mapping, base: TrainParams) -> dict[str, Any]:
    agg = _aggregate_run(result)
    budget = result["budget"]
    steps = int(budget["steps"])
    batch = budget.get("batch_size") or base.batch_size
    val, val_std = mean_std([(e.get("training") or {}).get("best_val_map")
                             for e in result["seeds"]])
    return {"point": point, "steps": steps, "pairs_per_graph": steps * int(batch),
            "n_seeds": agg["n_seeds"], **agg["macro"], "groups": agg["groups"],
            "softness": _softness_mean(result), "val_map": val, "val_map_std": val_std}


# what may differ between the points of one curve: the budget and where the run was written
BUDGET_KEYS = ("steps", "max_minutes", "eval_every", "val_max_queries", "out_dir",
               "checkpoint_dir")


def _same_recipe(first: Mapping, other: Mapping, first_name: str, other_path: Path) -> None:
    """ValueError naming both results when ``other`` was trained with another recipe than
    ``first`` (a curve mixing recipes, e.g. budget runs beside ablations of an older config)."""
    a, b = first.get("train") or {}, other.get("train") or {}
    differ = sorted(k for k in set(a) | set(b) if k not in BUDGET_KEYS and a.get(k) != b.get(k))
    if differ:
        raise ValueError(
            f"{other_path}: trained with another recipe than metrics/{first_name}.json "
            f"(train.{', train.'.join(differ)} differ); re-run the stale stage "
            f"({first_name.replace('/', '@')} or the budget instance) before collecting the "
            f"curves")


def collect_budgets(metrics_dir: str | Path, runs: Sequence[str], points: Sequence[str],
                    base: TrainParams, first_point: str = "ablations") -> dict:
    """Budget curves -> ``metrics/budgets.json``: per run, its heldout macro MAP / RP@10 (mean
    and std over seeds, the groups too) at the ablations' budget (``metrics/ablations/<run>.json``,
    the curve's first point, named ``first_point``) and at every point of ``budgets.points``
    whose stage has run (``metrics/budgets/<run>-<point>.json``), sorted by steps, with the
    pairs seen per graph (steps x batch) and the attention softness. Points not run yet are
    listed under ``missing`` (the ``budgets@<run>-<point>`` stages to run)."""
    metrics_dir = Path(metrics_dir)
    ablations = load_runs(metrics_dir, "ablations", list(runs))
    curves, missing = {}, []
    for run in runs:
        curve = [_curve_point(first_point, ablations[run], base)]
        for point in points:
            path = metrics_dir / "budgets" / f"{run}-{point}.json"
            if path.is_file():
                result = read_json(path)
                _same_recipe(ablations[run], result, f"ablations/{run}", path)
                curve.append(_curve_point(point, result, base))
            else:
                missing.append(f"{run}-{point}")
        curves[run] = sorted(curve, key=lambda e: e["steps"])
    return {"units": "fraction", "metrics": list(METRICS), "runs": list(runs),
            "points": [first_point, *points], "curves": curves, "missing": missing,
            "family": "heldout",
            "max_queries": next(iter(ablations.values()))["budget"].get("max_queries")}


def budgets_frame(budgets: Mapping) -> pd.DataFrame:
    """One row per (run, point): steps, pairs per graph, seeds, heldout test macro MAP mean and
    std (%), val macro MAP (mean over seeds; a point that validated), and the softness of an
    SLI run's attention."""
    from uwe.bench.softness import softness_text

    rows = []
    for run in budgets["runs"]:
        for e in budgets["curves"][run]:
            rows.append({"run": run, "point": e["point"], "steps": e["steps"],
                         "pairs/graph": e["pairs_per_graph"], "seeds": e["n_seeds"],
                         "macro MAP": _pct(e.get("map")), "MAP std": _pct(e.get("map_std")),
                         "val MAP": _pct(e.get("val_map")),
                         "attention": softness_text(e.get("softness"))})
    return pd.DataFrame(rows)
