"""The paper's claims, each checked against this project's metrics (stage ``figures``).

:func:`build_claims` reads the collected analyses (``metrics/transfer.json``,
``metrics/ablations.json``), the per-seed transfer runs (``metrics/transfer/<run>.json``), the
scored models (``metrics/workbench/<family>/<model>.json``) and ``metrics/latency.json``, and
returns one row per claim: the paper's number, this project's number with its spread, and a
verdict computed from them by :data:`VERDICT_RULE` (:func:`compare`). :func:`claims_markdown`
renders the table written to ``metrics/claims.md`` and into the README's results section;
``metrics/claims.json`` keeps the same rows as numbers (fractions, like every metrics file).

Nothing here is typed in by hand but the paper's numbers (``../shared/docs/paper.md``): change
a metric file and the verdict follows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from uwe.io import read_json

HOLDS, FAILS, UNDECIDED = "holds", "does not hold", "not decided at this budget"
Z = 2.0  # a difference is decided when it is more than Z standard errors from 0
LATENCY_NEAR = 1.5  # "near mean pooling": SLI / mean latency ratio at most this (paper: 1.20)
VERDICT_RULE = (
    f"A claim \"A > B\" compares A's and B's means over training seeds: d = mean(A) - mean(B), "
    f"se = sqrt(s_A^2 / n_A + s_B^2 / n_B), with s the sample std over the n seeds (0 for a "
    f"model that is not trained: an untuned backbone or a lexical baseline is deterministic). "
    f"**holds** when d > {Z:g} se, **does not hold** when d < -{Z:g} se, **not decided at this "
    f"budget** otherwise, and whenever a trained side has a single seed (its spread unknown). "
    f"The main model is trained once (seed 0): its seed std is taken from `ablations/reference`, "
    f"the same recipe at the analysis budget over its seeds (marked \"proxy\"). The scorer and "
    f"loss claims are decided on their budget curves (`metrics/budgets.json`): a verdict at each "
    f"budget (a one-seed point borrows its run's spread at the nearest budget with seeds: "
    f"\"proxy\"), a trend of the gap from the smallest to the largest budget (stable when the "
    f"change lies within {Z:g} se of it, else widening, closing, or crossed when it changed sign), "
    f"and the row's verdict at the largest budget, except that a gap beyond -{Z:g} se there that "
    f"is closing is **not decided at this budget** (the budget named), never **does not hold**. "
    f"The latency "
    f"claim holds when the SLI / mean-pooling latency ratio (batch 1, cached targets) is at "
    f"most {LATENCY_NEAR:g} (the paper: 15.9 / 13.2 ms = 1.20).")

#: Task groups each training graph is built from (``../shared/docs/workbench.md``): a transfer
#: run's other groups are its cross-task cells. The description graphs train no group of their
#: own.
OWN_GROUPS: dict[str, tuple[str, ...]] = {
    "sj": ("job2skill", "skill2job"), "sv": ("skill_extraction",), "sa": ("skill_norm",),
    "jj": ("job_norm",), "ss": ("skill_sim",), "sd": (), "jd": (),
}
#: Mean-pooled general-purpose embedders among the baselines (the "generalists").
EMBEDDER_KINDS = ("embedding",)


@dataclass(frozen=True)
class Side:
    """One side of a comparison: mean over ``n`` seeds and sample std (None = unknown)."""

    name: str
    mean: float | None
    std: float | None
    n: int
    proxy: bool = False  # std borrowed from another run (the main model)

    @classmethod
    def fixed(cls, name: str, value: float | None) -> Side:
        """A deterministic value (no training): std 0."""
        return cls(name, value, 0.0, 1)

    @classmethod
    def seeds(cls, name: str, values: Sequence[float | None]) -> Side:
        vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
        if not vals:
            return cls(name, None, None, 0)
        mean = sum(vals) / len(vals)
        std = (math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))
               if len(vals) > 1 else None)
        return cls(name, mean, std, len(vals))

    def text(self) -> str:
        if self.mean is None:
            return f"{self.name} n/a"
        if self.std is None:
            spread = " (1 seed)"
        elif self.n == 1 and self.std == 0 and not self.proxy:
            spread = ""
        else:
            seeds = "proxy" if self.proxy else f"{self.n} seeds"
            spread = f" ± {100 * self.std:.2f} ({seeds})"
        return f"{self.name} {100 * self.mean:.2f}{spread}"


def compare(a: Side, b: Side, z: float = Z) -> dict[str, Any]:
    """``d``, ``se`` and the verdict of "a > b" (:data:`VERDICT_RULE`)."""
    if a.mean is None or b.mean is None:
        return {"d": None, "se": None, "verdict": UNDECIDED, "why": "a side has no result"}
    d = a.mean - b.mean
    if a.std is None or b.std is None:
        return {"d": d, "se": None, "verdict": UNDECIDED, "why": "spread unknown (one seed)"}
    se = math.sqrt(a.std**2 / max(a.n, 1) + b.std**2 / max(b.n, 1))
    verdict = HOLDS if d > z * se else FAILS if d < -z * se else UNDECIDED
    return {"d": d, "se": se, "verdict": verdict, "why": None}


def combine(verdicts: Sequence[str]) -> str:
    """A chain "A > B > C": holds if every link holds, fails if any fails."""
    if any(v == FAILS for v in verdicts):
        return FAILS
    return HOLDS if verdicts and all(v == HOLDS for v in verdicts) else UNDECIDED


# ------------------------------------------------------------------------------ inputs
def _ablation_side(ablations: Mapping, axis: str, value: Any) -> Side | None:
    for e in ablations.get("axes", {}).get(axis, []):
        if e["value"] == value:
            n = int(e.get("n_seeds") or 0)
            return Side(f"{axis} {value}", e.get("map"), e.get("map_std") if n > 1 else None, n)
    return None


def _reference(ablations: Mapping) -> tuple[str, Mapping] | None:
    for axis in ablations.get("axes", {}).values():
        for e in axis:
            if e.get("reference"):
                return e["run"], ablations["runs"][e["run"]]
    return None


def _workbench(workbench_dir: Path, family: str) -> dict[str, dict]:
    """model name -> result of every ``<family>/<model>.json``."""
    folder = workbench_dir / family
    return {p.stem: read_json(p) for p in sorted(folder.glob("*.json"))} if folder.is_dir() else {}


def _zeroshot_mean(result: Mapping) -> float | None:
    vals = [t.get("map") for t in result.get("tasks", {}).values()]
    vals = [v for v in vals if v is not None]
    return sum(vals) / len(vals) if vals else None


def _model_kind(name: str, result: Mapping) -> str:
    from uwe.model.baselines import LEXICAL

    return "lexical" if name in LEXICAL or result.get("model") in LEXICAL else (
        "uwe" if name.startswith("uwe") else "embedding")


def _transfer_cross(metrics_dir: Path, transfer: Mapping) -> tuple[Side | None, dict]:
    """Per seed, the mean MAP gain over the untuned row on every cross-task cell of the
    single-graph runs; -> its Side and a summary of the cells."""
    baseline = transfer["baseline"]
    base = read_json(metrics_dir / "transfer" / f"{baseline}.json")
    base_groups = base["seeds"][0]["evaluation"]["groups"]
    runs = [r for r in transfer["order"] if r != baseline
            and len(transfer["rows"][r].get("graphs") or []) == 1
            and (transfer["rows"][r].get("n_seeds") or 0) >= 1
            and transfer["rows"][r]["graphs"][0] in OWN_GROUPS]
    per_seed: dict[Any, list[float]] = {}
    cells = 0
    for r in runs:
        graph = transfer["rows"][r]["graphs"][0]
        res = read_json(metrics_dir / "transfer" / f"{r}.json")
        cross = [g for g in base_groups if g not in OWN_GROUPS[graph]]
        cells += len(cross)
        for entry in res["seeds"]:
            groups = entry["evaluation"]["groups"]
            per_seed.setdefault(entry["seed"], []).extend(
                groups[g]["map"] - base_groups[g]["map"] for g in cross if g in groups)
    complete = [v for v in per_seed.values() if len(v) == cells]  # seeds every run has
    if not runs or not complete:
        return None, {"runs": runs, "cells": cells}
    side = Side.seeds("cross-task cells", [sum(v) / len(v) for v in complete])
    decided = sum(1 for r in runs for g in transfer["gain"][r]
                  if g in base_groups and g not in OWN_GROUPS[transfer["rows"][r]["graphs"][0]]
                  and transfer["gain"][r][g].get("map_decided") == "gain")
    return side, {"runs": runs, "cells": cells, "cells_positive_outside_spread": decided}


# ------------------------------------------------------------------------------ claims
@dataclass
class Claim:
    id: str
    claim: str
    paper: str
    ours: str
    d: float | None
    se: float | None
    verdict: str
    note: str = ""
    budget: int | None = None  # training steps the verdict is taken at (budget curves)
    trend: str | None = None  # of the gap over the budgets: stable / widening / closing / crossed
    budgets: list[dict] | None = None  # per budget: steps, pairs per graph, d, se, verdict

    def verdict_text(self) -> str:
        if self.verdict == UNDECIDED and self.budget is not None:
            return f"{UNDECIDED} ({self.budget} steps)"
        return self.verdict


# ------------------------------------------------------------------------------ budget curves
STABLE, WIDENING, CLOSING, CROSSED = "stable", "widening", "closing", "crossed"


def _curve_sides(budgets: Mapping, run: str, label: str, metric: str = "map"
                 ) -> dict[int, Side]:
    """steps -> Side of ``metric`` (heldout ``map``, or ``val_map``) of run ``run`` on its budget
    curve, at the points that measured it; a one-seed point borrows the std of the nearest
    budget with seeds (``proxy``), none when no budget has two seeds."""
    curve = [e for e in budgets.get("curves", {}).get(run) or [] if e.get(metric) is not None]
    spread = [(e["steps"], e.get(f"{metric}_std")) for e in curve
              if (e.get("n_seeds") or 0) > 1 and e.get(f"{metric}_std") is not None]
    out = {}
    for e in curve:
        n = int(e.get("n_seeds") or 0)
        name = label + (_softness_label(e.get("softness")) if metric == "map" else "")
        if n > 1:
            out[e["steps"]] = Side(name, e[metric], e.get(f"{metric}_std"), n)
        elif spread:
            std = min(spread, key=lambda s, st=e["steps"]: abs(math.log(s[0] / st)))[1]
            out[e["steps"]] = Side(name, e[metric], std, max(n, 1), proxy=True)
        else:
            out[e["steps"]] = Side(name, e[metric], None, n)
    return out


def _softness_label(softness: Mapping | None) -> str:
    """" (tau_a 30: max w 0.37, H/log Lt 0.91)" for an SLI run, "" otherwise."""
    if not softness:
        return ""
    unit = "" if softness.get("attention") == "raw" else " over cosines"
    return (f" (tau_a {softness['temperature']:g}{unit}: max w {softness['max_weight']:.2f}, "
            f"H/log Lt {softness['entropy_fraction']:.2f})")


def gap_trend(points: Sequence[Mapping], z: float = Z) -> str | None:
    """How the gap ``d`` moves from the smallest to the largest budget (module rule); None with
    fewer than two budgets or an unknown spread."""
    known = [p for p in points if p.get("d") is not None]
    if len(known) < 2:
        return None
    first, last = known[0], known[-1]
    if first.get("se") is None or last.get("se") is None:
        return None
    change = last["d"] - first["d"]
    if abs(change) <= z * math.sqrt(first["se"] ** 2 + last["se"] ** 2):
        return STABLE
    if first["d"] * last["d"] < 0:
        return CROSSED
    return WIDENING if abs(last["d"]) > abs(first["d"]) else CLOSING


def budget_verdict(points: Sequence[Mapping], z: float = Z) -> tuple[str, str | None, int | None]:
    """(verdict, trend, steps) of a comparison measured at several budgets (module rule): the
    verdict at the largest budget, except that a losing gap that is closing is not decided."""
    known = [p for p in points if p.get("d") is not None]
    if not known:
        return UNDECIDED, None, None
    last = known[-1]
    trend = gap_trend(known, z)
    verdict = last["verdict"]
    if verdict == FAILS and trend == CLOSING:
        verdict = UNDECIDED
    return verdict, trend, last["steps"]


def _curve_points(budgets: Mapping, run_a: str, label_a: str, run_b: str, label_b: str
                  ) -> tuple[list[dict], dict[int, Side], dict[int, Side]]:
    """The comparison "a > b" at every budget both runs were measured at, by steps."""
    a, b = _curve_sides(budgets, run_a, label_a), _curve_sides(budgets, run_b, label_b)
    pairs = {e["steps"]: e["pairs_per_graph"] for e in budgets["curves"].get(run_a, [])}
    points = []
    for steps in sorted(set(a) & set(b)):
        c = compare(a[steps], b[steps])
        points.append({"steps": steps, "pairs_per_graph": pairs.get(steps), "d": c["d"],
                       "se": c["se"], "verdict": c["verdict"],
                       "proxy": a[steps].proxy or b[steps].proxy,
                       "n_seeds": [a[steps].n, b[steps].n]})
    return points, a, b


def _points_text(points: Sequence[Mapping]) -> str:
    parts = []
    for p in points:
        gap = "n/a" if p["d"] is None else (
            f"{100 * p['d']:+.2f}" + ("" if p["se"] is None else f" ± {100 * p['se']:.2f}"))
        seeds = "/".join(str(n) for n in p["n_seeds"])
        proxy = ", proxy spread" if p["proxy"] else ""
        parts.append(f"{p['steps']} steps ({seeds} seeds{proxy}): {gap}, {p['verdict']}")
    return "; ".join(parts)


def _curve_claim(cid: str, text: str, paper: str, budgets: Mapping, a: tuple[str, str],
                 b: tuple[str, str]) -> Claim:
    """A pair claim decided on the budget curves of runs ``a`` and ``b`` ((run, label))."""
    if a[0] not in budgets.get("curves", {}) or b[0] not in budgets.get("curves", {}):
        return Claim(cid, text, paper, "not run", None, None, UNDECIDED, "no budget curve")
    points, sa, sb = _curve_points(budgets, a[0], a[1], b[0], b[1])
    verdict, trend, steps = budget_verdict(points)
    if not points:
        return Claim(cid, text, paper, "no budget both runs were measured at", None, None,
                     UNDECIDED)
    last = points[-1]
    ours = f"{sa[last['steps']].text()} vs {sb[last['steps']].text()} at {last['steps']} steps"
    note = f"by budget: {_points_text(points)}; gap {trend or 'trend unknown'}"
    return Claim(cid, text, paper, ours, last["d"], last["se"], verdict, note, steps, trend,
                 points)


def _pair_claim(cid: str, text: str, paper: str, a: Side | None, b: Side | None,
                note: str = "") -> Claim:
    if a is None or b is None:
        return Claim(cid, text, paper, "not run", None, None, UNDECIDED, note or "no result")
    c = compare(a, b)
    return Claim(cid, text, paper, f"{a.text()} vs {b.text()}", c["d"], c["se"], c["verdict"],
                 note or (c["why"] or ""))


def _run_of(ablations: Mapping, axis: str, value: Any) -> str | None:
    """The ablation run at ``value`` of ``axis`` (the reference for the base value)."""
    for e in ablations.get("axes", {}).get(axis, []):
        if e["value"] == value:
            return e["run"]
    return None


def build_claims(metrics_dir: str | Path, main_model: str = "uwe",
                 backbone: str | None = None) -> list[Claim]:
    """Every claim of the paper that the pipeline measures (module doc). ``main_model`` is the
    name of the main model's workbench results, ``backbone`` the name of its untuned
    backbone's (its mean-pooled baseline)."""
    metrics_dir = Path(metrics_dir)
    transfer = read_json(metrics_dir / "transfer.json")
    ablations = read_json(metrics_dir / "ablations.json")
    heldout = _workbench(metrics_dir / "workbench", "heldout")
    zeroshot = _workbench(metrics_dir / "workbench", "zeroshot")
    latency_path = metrics_dir / "latency.json"
    latency = read_json(latency_path) if latency_path.is_file() else None
    claims: list[Claim] = []

    # 1. cross-task transfer
    side, info = _transfer_cross(metrics_dir, transfer)
    cells = f"{info.get('cells_positive_outside_spread', 0)} of {info['cells']} cross-task cells"
    claims.append(_pair_claim(
        "transfer", "Training on one task helps the others (positive cross-task transfer)",
        "positive (matrix values not recoverable)", side, Side.fixed("untuned", 0.0),
        note=f"mean MAP gain over the untuned backbone on the task groups a graph does not "
             f"train; {cells} gain beyond {Z:g} se" if side is not None else ""))

    # 2-3. loss and scorer claims (on the budget curves when collected), 4. synthetic data
    budgets_path = metrics_dir / "budgets.json"
    if budgets_path.is_file():
        claims += _curve_claims(read_json(budgets_path), ablations)
    else:
        claims += _ablation_claims(ablations)
    graphs_axis = ablations.get("axes", {}).get("graphs", [])
    no_syn = next((e for e in graphs_axis if not e.get("reference")), None)
    claims.append(_pair_claim(
        "synthetic", "The synthetic (LLM-written) training data helps", "-1.7 without it",
        _ablation_side(ablations, "graphs", "all"),
        None if no_syn is None else _ablation_side(ablations, "graphs", no_syn["value"]),
        note="" if no_syn is None else f"the reference vs `{no_syn['run']}` ({no_syn['value']})"))

    # 5. UWE vs its backbone and the generalists (heldout macro MAP)
    ref_run = _reference(ablations)
    ref_std = None if ref_run is None else ref_run[1]["macro"].get("map_std")
    main = heldout.get(main_model)
    main_side = None if main is None else Side(main_model, main["macro"]["map"], ref_std,
                                               1, proxy=ref_std is not None)
    embedders = {n: r for n, r in heldout.items() if n != main_model
                 and _model_kind(n, r) in EMBEDDER_KINDS}
    if backbone in heldout:
        claims.append(_pair_claim("uwe_vs_backbone", "UWE > its untuned backbone",
                                  "40.2 vs 32.3 (MPNet, +7.9)", main_side,
                                  Side.fixed(backbone, heldout[backbone]["macro"]["map"])))
    best = max(embedders, key=lambda n: embedders[n]["macro"]["map"], default=None)
    claims.append(_pair_claim(
        "uwe_vs_generalists", "UWE > generalist embedders (heldout macro MAP)",
        "40.2 vs 35.8 (Qwen3-Embedding-8B, +4.4)", main_side,
        None if best is None else Side.fixed(best, embedders[best]["macro"]["map"]),
        note="" if best is None else f"best generalist here: {best}"))

    # 6. zero-shot on unseen target spaces (mean MAP over the zero-shot tasks)
    zs_std = None if ref_run is None else (ref_run[1].get("zeroshot") or {}).get("map_std")
    zs_main = zeroshot.get(main_model)
    others = {n: _zeroshot_mean(r) for n, r in zeroshot.items() if n != main_model}
    others = {n: v for n, v in others.items() if v is not None}
    zbest = max(others, key=others.get, default=None)
    claims.append(_pair_claim(
        "zeroshot", "UWE ranks unseen target spaces best (zero-shot, mean MAP)",
        "O*NET 35.1 vs 26.2; SkillsFuture 19.6 (+2.1)",
        None if zs_main is None else Side(main_model, _zeroshot_mean(zs_main), zs_std, 1,
                                          proxy=zs_std is not None),
        None if zbest is None else Side.fixed(zbest, others[zbest]),
        note="" if zbest is None else f"best other model: {zbest}"))

    # 7. latency of SLI vs mean pooling with cached targets
    claims.append(_latency_claim(latency))
    return claims



LOSS_M2M_O2O = ("loss_m2m_vs_o2o", "Many-to-many InfoNCE > one-to-one InfoNCE",
                "38.33 vs 36.40 (+1.93)")
LOSS_M2M_SYM = ("loss_m2m_vs_symmetric", "Many-to-many (multi-positive) > symmetric per-graph "
                "InfoNCE", "38.33 vs 38.17 (+0.16)")
SCORER_CHAIN = ("scorer_chain", "SLI > mean pooling > hard MaxSim", "39.45 > 38.00 > 37.63")
SCORER_MEAN_TARGET = ("scorer_sli_vs_mean_target", "SLI on both sides > SLI with a mean-pooled "
                      "target", "39.45 vs 39.12 (+0.33)")


#: The lines of each claim's budget figure: label -> (ablation axis, value); the run behind a
#: line is found on the ablations' axes (the reference fills its base values), see
#: :func:`curve_lines`.
CURVE_LINES: dict[str, dict[str, tuple[str, str]]] = {
    "scorer": {"SLI": ("scorer", "sli"), "mean pooling": ("scorer", "mean"),
               "hard MaxSim": ("scorer", "maxsim"),
               "SLI, mean-pooled target": ("scorer", "sli_mean_target")},
    "loss": {"many-to-many": ("loss", "many_to_many"), "one-to-one": ("loss", "one_to_one"),
             "symmetric": ("loss", "symmetric")},
}


def _line_run(ablations: Mapping, axis: str, value: str) -> str:
    """The run at ``value`` of ``axis``; ``<axis>_<value>`` when no ablation run sits there."""
    return _run_of(ablations, axis, value) or f"{axis}_{value}"


def curve_lines(ablations: Mapping, claim: str) -> dict[str, str]:
    """label -> run of the budget figure of ``claim`` (a key of :data:`CURVE_LINES`)."""
    if claim not in CURVE_LINES:
        raise ValueError(f"unknown claim {claim!r}; valid: {sorted(CURVE_LINES)}")
    return {label: _line_run(ablations, *where) for label, where in CURVE_LINES[claim].items()}


def _curve_claims(budgets: Mapping, ablations: Mapping) -> list[Claim]:
    """The loss and scorer claims on the budget curves (module rule)."""
    def run(axis: str, value: str) -> tuple[str, str]:
        return _line_run(ablations, axis, value), f"{axis} {value}"

    m2m = run("loss", "many_to_many")
    claims = [_curve_claim(*LOSS_M2M_O2O, budgets, m2m, run("loss", "one_to_one")),
              _curve_claim(*LOSS_M2M_SYM, budgets, m2m, run("loss", "symmetric"))]
    sli, mean, maxsim = run("scorer", "sli"), run("scorer", "mean"), run("scorer", "maxsim")
    links = [_curve_claim("", "", "", budgets, sli, mean),
             _curve_claim("", "", "", budgets, mean, maxsim)]
    first = links[0]
    claims.append(Claim(
        *SCORER_CHAIN, "; ".join(c.ours for c in links), first.d, first.se,
        combine([c.verdict for c in links]),
        f"SLI > mean: {first.verdict_text()}, {first.note}; mean > MaxSim: "
        f"{links[1].verdict_text()}, {links[1].note}", first.budget, first.trend,
        first.budgets))
    claims.append(_curve_claim(*SCORER_MEAN_TARGET, budgets, sli,
                               run("scorer", "sli_mean_target")))
    return claims


def _ablation_claims(ablations: Mapping) -> list[Claim]:
    """The loss and scorer claims at the ablations' budget alone (no budget curves)."""
    claims = []
    ref = _ablation_side(ablations, "loss", "many_to_many")
    claims.append(_pair_claim(*LOSS_M2M_O2O, ref, _ablation_side(ablations, "loss", "one_to_one")))
    claims.append(_pair_claim(*LOSS_M2M_SYM, ref, _ablation_side(ablations, "loss", "symmetric")))
    sli, mean = (_ablation_side(ablations, "scorer", s) for s in ("sli", "mean"))
    maxsim = _ablation_side(ablations, "scorer", "maxsim")
    chain = [_pair_claim("", "", "", sli, mean), _pair_claim("", "", "", mean, maxsim)]
    ours = "; ".join(c.ours for c in chain)
    claims.append(Claim(*SCORER_CHAIN, ours,
                        chain[0].d, chain[0].se, combine([c.verdict for c in chain]),
                        "SLI > mean: " + chain[0].verdict + "; mean > MaxSim: " + chain[1].verdict))
    claims.append(_pair_claim(*SCORER_MEAN_TARGET, sli,
                              _ablation_side(ablations, "scorer", "sli_mean_target")))
    return claims


def _latency_claim(latency: Mapping | None) -> Claim:
    """The SLI entry's median latency over a mean-pooled one of the same backbone: a UWE model
    with the ``mean`` scorer timed through the same engine where one was, else the mean-pooled
    baseline (``latency.json`` ``ratios``). The ``onnx`` engine's entries (the deployment
    path, :mod:`uwe.infer.ort`) come first when both engines were timed."""
    from uwe.model.registry import model_slug

    text = "SLI with cached targets costs about as much per query as mean pooling"
    paper = "15.9 vs 13.2 ms (A100, ratio 1.20)"
    if latency is None:
        return Claim("latency", text, paper, "not run", None, None, UNDECIDED, "no latency.json")
    models = latency.get("models", {})

    def engine_of(e: Mapping) -> str:
        return e.get("engine", "torch")

    sli = [n for n, e in models.items() if e.get("scorer") == "sli" and e.get("kind") == "uwe"]
    if not sli:
        return Claim("latency", text, paper, "no SLI model timed", None, None, UNDECIDED,
                     "add a model with the sli scorer to params.yaml latency.models")
    sli.sort(key=lambda n: engine_of(models[n]) != "onnx")  # the deployment engine first
    name = sli[0]
    slug = model_slug(models[name].get("backbone") or "")
    same = [n for n, e in models.items() if e.get("kind") == "uwe" and e.get("scorer") == "mean"
            and model_slug(e.get("backbone") or "") == slug
            and engine_of(e) == engine_of(models[name])]
    base = same[0] if same else (latency.get("ratios") or {}).get(name, {}).get("mean_pooled")
    if base is None:
        return Claim("latency", text, paper, f"{name}: no mean-pooled model of its backbone "
                     "timed", None, None, UNDECIDED, "")
    ms, base_ms = models[name]["latency_ms"]["median"], models[base]["latency_ms"]["median"]
    ratio = ms / base_ms
    engine = (f"same engine, {engine_of(models[name])}" if same
              else "the baseline's engine")
    return Claim("latency", text, paper,
                 f"{name} {ms:.1f} vs {base} (mean pooling) {base_ms:.1f} ms "
                 f"({latency.get('device')}, {latency.get('threads')} threads, {engine})",
                 ratio, None, HOLDS if ratio <= LATENCY_NEAR else FAILS,
                 f"ratio {ratio:.2f}; holds at most {LATENCY_NEAR:g}")


# ------------------------------------------------------------------------------ the cpu scorer
SCORER_RULE = (
    f"The shipped model scores with SLI unless SLI is worse than mean pooling on the val splits "
    f"at the largest budget both were validated at, beyond {Z:g} se (d = val(SLI) - val(mean); "
    f"a one-seed point borrows the val spread of the nearest budget with seeds).")


def scorer_choice(budgets: Mapping, ablations: Mapping, trained: str) -> dict[str, Any]:
    """:data:`SCORER_RULE` applied to the budget curves' val MAP: the scorer the evidence
    picks (``sli`` / ``mean``, None when the curves have no common validated budget) and
    whether the profile's ``trained`` scorer follows it."""
    sli = _curve_sides(budgets, _line_run(ablations, "scorer", "sli"), "SLI", "val_map")
    mean = _curve_sides(budgets, _line_run(ablations, "scorer", "mean"), "mean pooling",
                        "val_map")
    common = sorted(set(sli) & set(mean))
    if not common:
        return {"rule": SCORER_RULE, "choice": None, "trained": trained, "follows": None,
                "steps": None, "d": None, "se": None,
                "text": "no budget where SLI and mean pooling were both validated"}
    steps = common[-1]
    c = compare(sli[steps], mean[steps])
    choice = None if c["se"] is None else ("mean" if c["d"] < -Z * c["se"] else "sli")
    follows = None if choice is None else trained == choice
    gap = f"d {100 * c['d']:+.2f}" + ("" if c["se"] is None else f" ± {100 * c['se']:.2f}")
    follow = {None: "", True: " (follows it)", False: " (**does not follow it**)"}[follows]
    text = (f"val macro MAP at {steps} steps: {sli[steps].text()} vs {mean[steps].text()}, "
            f"{gap}; the evidence picks **{choice or 'neither (spread unknown)'}**, the profile "
            f"trains `{trained}`{follow}")
    return {"rule": SCORER_RULE, "choice": choice, "trained": trained, "follows": follows,
            "steps": steps, "d": c["d"], "se": c["se"], "text": text}


# ------------------------------------------------------------------------------ output
def claims_json(claims: Sequence[Claim], scorer: Mapping | None = None) -> dict:
    return {"rule": VERDICT_RULE, "z": Z, "latency_near": LATENCY_NEAR, "units": "fraction",
            "order": [c.id for c in claims], "claims": {c.id: asdict(c) for c in claims},
            "scorer_choice": None if scorer is None else dict(scorer)}


def claims_markdown(claims: Sequence[Claim], scorer: Mapping | None = None) -> str:
    """The claims table (percent points; d and se of the MAP difference), the rule, and with
    ``scorer`` (:func:`scorer_choice`) the check of the shipped model's scorer."""
    def num(x: float | None, fmt: str) -> str:
        return "–" if x is None else fmt.format(x)

    lines = ["| claim | paper | this project (MAP %, mean ± seed std) | d | se | verdict |",
             "|---|---|---|---|---|---|"]
    for c in claims:
        ours = c.ours + (f" — {c.note}" if c.note else "")
        d = num(c.d, "{:.2f}") if c.id == "latency" else num(None if c.d is None
                                                              else 100 * c.d, "{:+.2f}")
        se = num(None if c.se is None else 100 * c.se, "{:.2f}")
        lines.append(f"| {c.claim} | {c.paper} | {ours} | {d} | {se} | **{c.verdict_text()}** |")
    out = "\n".join(lines) + f"\n\nVerdict rule: {VERDICT_RULE}\n"
    if scorer is not None:
        out += f"\n**The shipped model's scorer**: {scorer['text']}. Rule: {scorer['rule']}\n"
    return out


def write_claims(claims: Sequence[Claim], metrics_dir: str | Path,
                 scorer: Mapping | None = None) -> tuple[Path, Path]:
    """``metrics/claims.md`` and ``metrics/claims.json`` (atomically)."""
    from uwe.io import write_json, write_text_atomic

    metrics_dir = Path(metrics_dir)
    md = metrics_dir / "claims.md"
    write_text_atomic(md, "# The paper's claims, checked\n\n" + claims_markdown(claims, scorer))
    js = metrics_dir / "claims.json"
    write_json(js, claims_json(claims, scorer))
    return md, js
