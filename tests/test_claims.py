"""The claims table: verdicts computed from the metric files (uwe.pipeline.claims), on hand-made
files that go through the same collection as the figures stage."""

from __future__ import annotations

import math

import pytest

from uwe.bench.evaluation import write_results
from uwe.config import GraphParams, RunParams, TrainParams
from uwe.io import read_json, write_json
from uwe.pipeline import claims as cl
from uwe.pipeline import results as collect

GROUPS = ("job2skill", "skill2job", "job_norm", "skill_norm", "skill_extraction", "skill_sim")
BASE = TrainParams(scorer="mean", graphs={g: GraphParams() for g in ("sj", "sv", "sa", "jj", "ss")})
RUNS = {"reference": RunParams(), "scorer_sli": RunParams(scorer="sli"),
        "scorer_maxsim": RunParams(scorer="maxsim"),
        "scorer_sli_mean_target": RunParams(scorer="sli_mean_target"),
        "loss_one_to_one": RunParams(loss="one_to_one"),
        "loss_symmetric": RunParams(loss="symmetric"),
        "no_synthetic": RunParams(graphs=("sj", "sa", "jj", "ss"))}
# macro MAP level of each ablation run (its seeds scatter by +-0.002 around it)
LEVEL = {"reference": 0.38, "scorer_sli": 0.40, "scorer_maxsim": 0.36,
         "scorer_sli_mean_target": 0.39, "loss_one_to_one": 0.35, "loss_symmetric": 0.379,
         "no_synthetic": 0.37}


def _ev(level: float, **bump: float) -> dict:
    groups = {g: {"map": level + bump.get(g, 0.0), "rp@10": level} for g in GROUPS}
    macro = sum(v["map"] for v in groups.values()) / len(groups)
    return {"groups": groups, "macro": {"map": macro, "rp@10": level}, "tasks": {}}


def _zs(level: float) -> dict:
    return {"tasks": {"onet_job2skill": {"map": level, "rp@10": level},
                      "onet_skill2job": {"map": level + 0.02, "rp@10": level}}}


def _run(metrics, group, name, seeds, model=None, graphs=None):
    """seeds: list of (heldout evaluation, zero-shot evaluation or None)."""
    result = {"group": group, "run": name, "profile": "cpu", "overrides": {},
              "budget": {"max_queries": 500, "steps": 12, "batch_size": None},
              "train": None if model else {},
              "model": model or f"models/{group}/{name}", "model_info": {"graphs": graphs or []},
              "seeds": [{"seed": None if model else k, "training": None, "evaluation": ev,
                         **({"zeroshot": zs} if zs else {})}
                        for k, (ev, zs) in enumerate(seeds)]}
    write_results(result, metrics / group / f"{name}.json")


def _workbench(metrics, family, name, value):
    if family == "heldout":
        body = {"macro": {"map": value}, "groups": {}, "tasks": {}}
    else:
        body = {"tasks": {"onet_job2skill": {"map": value}, "onet_skill2job": {"map": value}}}
    write_json(metrics / "workbench" / family / f"{name}.json", {"model": name, **body})


def _write_all(metrics, levels=LEVEL, n_seeds=3, spread=0.002, cross_gain=0.01):
    _run(metrics, "transfer", "untuned", [(_ev(0.30), None)], model="untuned")
    for graph, own in (("sj", "job2skill"), ("ss", "skill_sim")):
        _run(metrics, "transfer", graph,
             [(_ev(0.30 + cross_gain + d, **{own: 0.05}), None) for d in (-0.001, 0.001)],
             graphs=[graph])
    _run(metrics, "transfer", "all", [(_ev(0.35), None)], model="models/uwe",
         graphs=["sj", "ss"])
    offsets = [spread * (k - (n_seeds - 1) / 2) for k in range(n_seeds)]
    for name, level in levels.items():
        _run(metrics, "ablations", name, [(_ev(level + o), _zs(0.44 + o)) for o in offsets])
    for name, value in (("uwe", 0.385), ("all-MiniLM-L6-v2", 0.352),
                        ("all-mpnet-base-v2", 0.341), ("bm25", 0.30)):
        _workbench(metrics, "heldout", name, value)
    for name, value in (("uwe", 0.45), ("all-MiniLM-L6-v2", 0.44), ("all-mpnet-base-v2", 0.48)):
        _workbench(metrics, "zeroshot", name, value)
    write_json(metrics / "latency.json", {
        "device": "cpu", "threads": 2,
        "models": {"sli_untuned": {"kind": "uwe", "scorer": "sli", "backbone": "all-MiniLM-L6-v2",
                                   "latency_ms": {"median": 50.0}},
                   "all-MiniLM-L6-v2": {"kind": "embedding", "scorer": "mean",
                                        "latency_ms": {"median": 40.0}}},
        "ratios": {"sli_untuned": {"mean_pooled": "all-MiniLM-L6-v2", "latency_ratio": 1.25}}})


def _claims(metrics) -> dict[str, cl.Claim]:
    """The figures stage's path: collect, write the collections, build the claims."""
    write_json(metrics / "transfer.json",
               collect.collect_transfer(metrics, ["untuned", "sj", "ss", "all"]))
    write_json(metrics / "ablations.json", collect.collect_ablations(metrics, RUNS, BASE))
    return {c.id: c for c in cl.build_claims(metrics, backbone="all-MiniLM-L6-v2")}


def test_compare_rule():
    a, b = cl.Side.seeds("a", [0.40, 0.41, 0.42]), cl.Side.fixed("b", 0.30)
    assert a.std == pytest.approx(0.01) and a.n == 3
    c = cl.compare(a, b)
    assert c["d"] == pytest.approx(0.11) and c["se"] == pytest.approx(0.01 / math.sqrt(3))
    assert c["verdict"] == cl.HOLDS
    assert cl.compare(b, a)["verdict"] == cl.FAILS
    assert cl.compare(a, cl.Side.fixed("c", 0.405))["verdict"] == cl.UNDECIDED  # within 2 se
    one_seed = cl.Side.seeds("one", [0.9])
    assert one_seed.std is None and cl.compare(one_seed, b)["verdict"] == cl.UNDECIDED
    assert cl.combine([cl.HOLDS, cl.HOLDS]) == cl.HOLDS
    assert cl.combine([cl.HOLDS, cl.UNDECIDED]) == cl.UNDECIDED
    assert cl.combine([cl.UNDECIDED, cl.FAILS]) == cl.FAILS


def test_every_claim_has_a_verdict_from_the_files(tmp_path):
    _write_all(tmp_path)
    got = _claims(tmp_path)
    assert list(got) == ["transfer", "loss_m2m_vs_o2o", "loss_m2m_vs_symmetric", "scorer_chain",
                         "scorer_sli_vs_mean_target", "synthetic", "uwe_vs_backbone",
                         "uwe_vs_generalists", "zeroshot", "latency"]
    verdicts = {k: c.verdict for k, c in got.items()}
    assert verdicts == {
        "transfer": cl.HOLDS,  # +0.01 on every cross cell, seeds within 0.001
        "loss_m2m_vs_o2o": cl.HOLDS, "loss_m2m_vs_symmetric": cl.UNDECIDED,  # +0.001 < 2 se
        "scorer_chain": cl.HOLDS, "scorer_sli_vs_mean_target": cl.HOLDS,
        "synthetic": cl.HOLDS, "uwe_vs_backbone": cl.HOLDS, "uwe_vs_generalists": cl.HOLDS,
        "zeroshot": cl.FAILS,  # 0.45 vs MPNet's 0.48
        "latency": cl.HOLDS}
    assert got["loss_m2m_vs_o2o"].d == pytest.approx(0.03)
    assert "proxy" in got["uwe_vs_generalists"].ours  # the main model borrows the spread
    assert "all-MiniLM-L6-v2" in got["uwe_vs_generalists"].note  # best generalist here
    assert got["latency"].d == pytest.approx(1.25)
    transfer = read_json(tmp_path / "transfer.json")
    assert transfer["gain"]["sj"]["skill2job"]["map_decided"] == "gain"
    assert transfer["gain"]["all"]["macro"]["map_decided"] is None  # one seed: unknown spread
    assert "9 of 9 cross-task cells" in got["transfer"].note


def test_changing_a_metric_file_changes_the_verdict(tmp_path):
    _write_all(tmp_path)
    assert _claims(tmp_path)["loss_m2m_vs_o2o"].verdict == cl.HOLDS
    path = tmp_path / "ablations" / "loss_one_to_one.json"
    result = read_json(path)
    for entry in result["seeds"]:  # one-to-one now scores above the reference
        entry["evaluation"]["macro"]["map"] += 0.05
    write_json(path, result)
    after = _claims(tmp_path)
    assert after["loss_m2m_vs_o2o"].verdict == cl.FAILS
    assert after["loss_m2m_vs_o2o"].d == pytest.approx(-0.02)
    lat = read_json(tmp_path / "latency.json")
    lat["models"]["sli_untuned"]["latency_ms"]["median"] = 80.0  # 2x the mean-pooled model
    write_json(tmp_path / "latency.json", lat)
    assert _claims(tmp_path)["latency"].verdict == cl.FAILS
    lat["models"]["uwe"] = {"kind": "uwe", "scorer": "mean", "backbone": "all-MiniLM-L6-v2",
                            "latency_ms": {"median": 64.0}}  # same engine: preferred
    write_json(tmp_path / "latency.json", lat)
    after = _claims(tmp_path)["latency"]
    assert after.verdict == cl.HOLDS and after.d == pytest.approx(1.25)
    assert "same engine" in after.ours


def test_wide_spread_or_one_seed_is_not_decided(tmp_path):
    _write_all(tmp_path, spread=0.08)  # seeds scatter more than the ablations differ
    got = _claims(tmp_path)
    assert got["loss_m2m_vs_o2o"].verdict == cl.UNDECIDED
    assert got["scorer_chain"].verdict == cl.UNDECIDED
    _write_all(tmp_path, n_seeds=1)
    got = _claims(tmp_path)
    assert {got[k].verdict for k in ("loss_m2m_vs_o2o", "scorer_chain", "synthetic",
                                     "uwe_vs_generalists")} == {cl.UNDECIDED}
    assert "one seed" in got["loss_m2m_vs_o2o"].note


def test_markdown_and_json(tmp_path):
    _write_all(tmp_path)
    claims = list(_claims(tmp_path).values())
    md_path, js_path = cl.write_claims(claims, tmp_path)
    md = md_path.read_text()
    assert md.count("\n| ") == len(claims) + 1 and "Verdict rule:" in md
    assert "| Many-to-many InfoNCE > one-to-one InfoNCE | 38.33 vs 36.40 (+1.93) |" in md
    assert "+3.00" in md  # d in points
    js = read_json(js_path)
    assert js["order"] == [c.id for c in claims] and js["rule"] == cl.VERDICT_RULE


# ------------------------------------------------------------------ budget curves
def _budget_run(metrics, run, point, steps, levels, softness=None, val=None):
    """A budgets@<run>-<point> result: one seed per level (val: each seed's val MAP)."""
    val = val or [None] * len(levels)
    result = {"group": "budgets", "run": f"{run}-{point}", "point": point,
              "budget": {"steps": steps, "batch_size": None, "max_queries": 500},
              "train": {}, "model": f"models/budgets/{run}-{point}",
              "seeds": [{"seed": k, "training": {"best_val_map": vk}, "evaluation": _ev(v),
                         "softness": softness}
                        for k, (v, vk) in enumerate(zip(levels, val, strict=True))]}
    write_results(result, metrics / "budgets" / f"{run}-{point}.json")


SOFT = {"attention": "raw", "temperature": 30.0, "max_weight": 0.37, "entropy": 1.48,
        "entropy_fraction": 0.91, "pairs": 100}


def _curves(metrics, sli_mid, sli_main, ref_mid=0.385, ref_main=0.39):
    """Every curve run at `mid` (48 steps, 3 seeds) and `main` (240 steps, 1 seed); SLI at the
    given levels, the others a little above their ablation level."""
    for run in collect_runs():
        level = LEVEL[run]
        mid = {"reference": ref_mid, "scorer_sli": sli_mid}.get(run, level + 0.005)
        main = {"reference": ref_main, "scorer_sli": sli_main}.get(run, level + 0.01)
        soft = SOFT if run == "scorer_sli" else None
        _budget_run(metrics, run, "mid", 48, [mid - 0.002, mid, mid + 0.002], soft)
        _budget_run(metrics, run, "main", 240, [main], soft)
    budgets = collect.collect_budgets(metrics, collect_runs(), ["mid", "main"], BASE)
    write_json(metrics / "budgets.json", budgets)
    return budgets


def collect_runs():
    return ["reference", "scorer_sli", "scorer_maxsim", "scorer_sli_mean_target",
            "loss_one_to_one", "loss_symmetric"]


def test_budget_curves_collect_every_point_by_steps(tmp_path):
    levels = {**LEVEL, "scorer_sli": 0.36}
    _write_all(tmp_path, levels=levels)
    budgets = _curves(tmp_path, sli_mid=0.37, sli_main=0.385)
    curve = budgets["curves"]["scorer_sli"]
    assert [e["point"] for e in curve] == ["ablations", "mid", "main"]
    assert [e["steps"] for e in curve] == [12, 48, 240]
    assert [e["pairs_per_graph"] for e in curve] == [s * BASE.batch_size for s in (12, 48, 240)]
    assert [e["n_seeds"] for e in curve] == [3, 3, 1] and curve[2]["map_std"] is None
    assert curve[1]["softness"]["max_weight"] == pytest.approx(0.37)
    assert budgets["missing"] == []
    (tmp_path / "budgets" / "loss_symmetric-main.json").unlink()
    partial = collect.collect_budgets(tmp_path, collect_runs(), ["mid", "main"], BASE)
    assert partial["missing"] == ["loss_symmetric-main"]
    assert [e["steps"] for e in partial["curves"]["loss_symmetric"]] == [12, 48]
    frame = collect.budgets_frame(budgets)
    assert len(frame) == 6 * 3 and "max w 0.37" in frame.loc[4, "attention"]


def test_a_closing_gap_is_not_decided_at_this_budget(tmp_path):
    """SLI 2 points behind mean pooling at 12 steps, 0.7 behind at 240 (beyond 2 se there):
    the gap is closing, so the verdict is "not decided at this budget", with the budget named,
    never "does not hold"."""
    _write_all(tmp_path, levels={**LEVEL, "scorer_sli": 0.36})
    _curves(tmp_path, sli_mid=0.37, sli_main=0.383)
    got = _claims(tmp_path)
    chain = got["scorer_chain"]
    assert [p["verdict"] for p in chain.budgets] == [cl.FAILS, cl.FAILS, cl.FAILS]
    assert chain.budgets[-1]["proxy"] and chain.budgets[-1]["steps"] == 240
    assert chain.trend == cl.CLOSING and chain.budget == 240
    assert chain.verdict == cl.UNDECIDED
    assert chain.verdict_text() == "not decided at this budget (240 steps)"
    assert chain.d == pytest.approx(-0.007)
    assert "max w 0.37, H/log Lt 0.91" in chain.ours  # softness beside the SLI side
    md = cl.claims_markdown(list(got.values()))
    assert "**not decided at this budget (240 steps)**" in md


def test_a_widening_gap_does_not_hold_and_a_crossed_one_holds(tmp_path):
    _write_all(tmp_path, levels={**LEVEL, "scorer_sli": 0.37})
    _curves(tmp_path, sli_mid=0.36, sli_main=0.34)  # behind and falling further
    chain = _claims(tmp_path)["scorer_chain"]
    assert chain.trend == cl.WIDENING and chain.verdict == cl.FAILS
    _curves(tmp_path, sli_mid=0.39, sli_main=0.40)  # behind at 12 steps, ahead from 48 on
    got = _claims(tmp_path)
    chain = got["scorer_chain"]
    assert chain.trend == cl.CROSSED and chain.budgets[-1]["verdict"] == cl.HOLDS
    assert chain.verdict == cl.HOLDS  # and mean > MaxSim holds at every budget
    assert got["loss_m2m_vs_o2o"].trend == cl.STABLE
    assert got["loss_m2m_vs_o2o"].verdict == cl.HOLDS


def test_gap_trend_rule():
    def pts(*ds, se=0.001):
        return [{"steps": 12 * 4**k, "d": d, "se": se, "verdict": cl.UNDECIDED}
                for k, d in enumerate(ds)]

    assert cl.gap_trend(pts(-0.02, -0.019)) == cl.STABLE
    assert cl.gap_trend(pts(-0.02, -0.01)) == cl.CLOSING
    assert cl.gap_trend(pts(-0.01, -0.03)) == cl.WIDENING
    assert cl.gap_trend(pts(-0.01, 0.02)) == cl.CROSSED
    assert cl.gap_trend(pts(-0.01)) is None
    assert cl.gap_trend([{"steps": 1, "d": 0.1, "se": None}, {"steps": 2, "d": 0.0, "se": 0.1}]
                        ) is None


def test_a_curve_never_mixes_recipes(tmp_path):
    """Budget results beside ablations of another recipe (an older config) are refused with a
    line naming both, instead of a curve whose points were trained differently."""
    _write_all(tmp_path)
    _curves(tmp_path, sli_mid=0.39, sli_main=0.40)
    path = tmp_path / "budgets" / "scorer_sli-mid.json"
    result = read_json(path)
    result["train"] = {"lr": 3e-4, "steps": 48, "out_dir": "models/budgets/scorer_sli-mid"}
    write_json(path, result)
    with pytest.raises(ValueError, match=r"scorer_sli-mid\.json: trained with another recipe "
                                         r"than metrics/ablations/scorer_sli\.json \(train\.lr"):
        collect.collect_budgets(tmp_path, collect_runs(), ["mid", "main"], BASE)


def test_the_figures_lines_are_found_on_the_ablation_axes(tmp_path):
    """The base recipe (here mean pooling) fills its own value: the mean-pooling line is the
    reference; a base that trains SLI would make the reference the SLI line."""
    _write_all(tmp_path)
    ablations = collect.collect_ablations(tmp_path, RUNS, BASE)
    assert cl.curve_lines(ablations, "scorer") == {
        "SLI": "scorer_sli", "mean pooling": "reference", "hard MaxSim": "scorer_maxsim",
        "SLI, mean-pooled target": "scorer_sli_mean_target"}
    assert cl.curve_lines(ablations, "loss")["many-to-many"] == "reference"
    with pytest.raises(ValueError, match="unknown claim 'speed'"):
        cl.curve_lines(ablations, "speed")


def _val_curves(metrics, sli_main_val):
    """SLI and mean pooling validated at 48 steps (3 seeds, std ~0.0037) and 240 (1 seed)."""
    for run, mid, main in (("scorer_sli", [0.4242, 0.4174, 0.4178], sli_main_val),
                           ("reference", [0.4244, 0.4217, 0.4171], 0.4274)):
        _budget_run(metrics, run, "mid", 48, [0.38] * 3, val=mid)
        _budget_run(metrics, run, "main", 240, [0.39], val=[main])
    for run in collect_runs()[2:]:
        _budget_run(metrics, run, "mid", 48, [0.38] * 3)
        _budget_run(metrics, run, "main", 240, [0.39])
    return collect.collect_budgets(metrics, collect_runs(), ["mid", "main"], BASE)


def test_the_shipped_scorer_is_sli_unless_worse_on_val_beyond_the_seed_noise(tmp_path):
    _write_all(tmp_path)
    ablations = collect.collect_ablations(tmp_path, RUNS, BASE)
    # 0.51 behind at the main budget, the seed std of the difference (proxy from 48 steps) 0.53
    choice = cl.scorer_choice(_val_curves(tmp_path, 0.4223), ablations, trained="mean")
    assert choice["choice"] == "sli" and choice["steps"] == 240 and choice["follows"] is False
    assert choice["d"] == pytest.approx(-0.0051) and choice["se"] == pytest.approx(0.0053, abs=1e-4)
    assert "the evidence picks **sli**, the profile trains `mean` (**does not follow it**)" in (
        choice["text"])
    # 2.7 behind: beyond 2 se, mean pooling is picked
    choice = cl.scorer_choice(_val_curves(tmp_path, 0.40), ablations, trained="mean")
    assert choice["choice"] == "mean" and choice["follows"] is True
    md = cl.claims_markdown([], choice)
    assert "**The shipped model's scorer**: val macro MAP at 240 steps" in md
    # no validated budget: no choice, said so
    none = cl.scorer_choice(_curves(tmp_path, 0.39, 0.40), ablations, trained="sli")
    assert none["choice"] is None and "both validated" in none["text"]
