"""Analysis runs: every configured run resolves to a valid training config, overrides and
budgets land where they should, and the run's result table reads the metrics file format."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from uwe.config import (
    ANALYSIS_GROUPS,
    BudgetParams,
    GraphParams,
    RunParams,
    TrainParams,
    load_params,
)
from uwe.pipeline import analyses

REPO = Path(__file__).resolve().parents[1]
BASE = TrainParams(graphs={"sj": GraphParams(1.0, 0.05), "sv": GraphParams(0.5, 0.02)},
                   steps=200, max_minutes=28, eval_every=100, val_max_queries=100)


@pytest.mark.parametrize("profile", ["smoke", "cpu", "paper"])
def test_every_configured_run_resolves(profile):
    params = load_params(REPO / "params.yaml", profile=profile)
    for group in ANALYSIS_GROUPS:
        section = getattr(params, group)
        for name, run in section.runs.items():
            spec = analyses.run_spec(params, group, name)
            assert spec.trains == (run.model is None)
            if spec.trains:
                assert spec.train.steps == section.budget.steps
                assert set(spec.train.graphs) <= set(params.train.graphs)
                assert spec.seeds == (run.seeds or section.budget.seeds)
            else:
                assert spec.seeds == (None,)


def test_transfer_runs_keep_one_graph_with_its_weight_and_temperature():
    params = load_params(REPO / "params.yaml", profile="cpu")
    for graph in ("sj", "sv", "sa", "jj", "ss"):
        spec = analyses.run_spec(params, "transfer", graph)
        assert spec.train.graphs == {graph: params.train.graphs[graph]}
        assert spec.train.scorer == params.train.scorer


def test_overrides_and_budget_replace_the_main_config():
    budget = BudgetParams(steps=7, max_minutes=2.0, eval_every=0, val_max_queries=0,
                          batch_size=None, max_queries=50, seeds=(0, 1))
    run = RunParams(graphs=("sv",), scorer="mean", loss="symmetric", attention_temperature=0.5)
    cfg = analyses.variant_train_params(BASE, run, budget, "models/ablations/x")
    assert (cfg.steps, cfg.max_minutes, cfg.eval_every) == (7, 2.0, 0)
    assert cfg.val_max_queries == 100  # 0 = no validation: the main value is kept, unused
    assert cfg.batch_size == BASE.batch_size
    assert cfg.graphs == {"sv": GraphParams(0.5, 0.02)}
    assert (cfg.scorer, cfg.loss, cfg.attention_temperature) == ("mean", "symmetric", 0.5)
    assert cfg.out_dir == "models/ablations/x"
    unchanged = analyses.variant_train_params(BASE, RunParams(), budget)
    assert dataclasses.replace(unchanged, steps=200, max_minutes=28, eval_every=100,
                               out_dir=BASE.out_dir, checkpoint_dir=BASE.checkpoint_dir) == BASE
    bigger = dataclasses.replace(budget, batch_size=8, val_max_queries=None)
    cfg = analyses.variant_train_params(BASE, RunParams(), bigger)
    assert cfg.batch_size == 8 and cfg.val_max_queries is None
    own_cap = analyses.variant_train_params(BASE, RunParams(max_minutes=9.5), budget)
    assert own_cap.max_minutes == 9.5  # a run's own cap replaces the group's
    assert analyses.variant_train_params(BASE, RunParams(max_minutes=9.5), dataclasses.replace(
        budget, max_minutes=None)).max_minutes == 9.5


@pytest.mark.parametrize("run,match", [
    (RunParams(graphs=("xx",)), "unknown or empty"),
    (RunParams(graphs=()), "unknown or empty"),
    (RunParams(scorer="colbert"), "unknown scorer"),
    (RunParams(loss="triplet"), "unknown loss"),
    (RunParams(model="untuned"), "trains nothing"),
])
def test_bad_overrides_are_rejected(run, match):
    with pytest.raises(ValueError, match=match):
        analyses.variant_train_params(BASE, run, BudgetParams())


def _params(tmp_path, text: str):
    """Params loaded from a params.yaml holding ``text``."""
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return load_params(path)


def test_run_spec_errors_name_the_run(tmp_path):
    params = _params(tmp_path, "transfer:\n  runs:\n    bad: {model: untuned, graphs: [sj]}\n"
                               "    folder: {model: models/uwe, scorer: mean}\n"
                               "    cold: {model: untuned, scorer: mean}\n")
    with pytest.raises(ValueError, match=r"transfer\.runs\.bad.*graphs"):
        analyses.run_spec(params, "transfer", "bad")
    with pytest.raises(ValueError, match=r"transfer\.runs\.folder.*scorer"):
        analyses.run_spec(params, "transfer", "folder")
    assert analyses.run_spec(params, "transfer", "cold").overrides == {
        "model": "untuned", "scorer": "mean"}
    with pytest.raises(ValueError, match="unknown transfer run 'nope'"):
        analyses.run_spec(params, "transfer", "nope")
    with pytest.raises(ValueError, match="unknown analysis group"):
        analyses.run_spec(params, "sweeps", "cold")


def test_a_run_may_set_its_own_seeds(tmp_path):
    params = _params(tmp_path, "ablations:\n  budget: {seeds: [0, 1, 2]}\n  runs:\n"
                               "    ref: {}\n    few: {scorer: sli, seeds: [0, 1]}\n"
                               "transfer:\n  runs:\n    cold: {model: untuned, seeds: [0, 1]}\n")
    assert analyses.run_spec(params, "ablations", "ref").seeds == (0, 1, 2)
    assert analyses.run_spec(params, "ablations", "few").seeds == (0, 1)
    with pytest.raises(ValueError, match=r"transfer\.runs\.cold.*seeds"):
        analyses.run_spec(params, "transfer", "cold")  # nothing trained: nothing to seed


def test_paths_of_a_run(tmp_path):
    params = load_params(REPO / "params.yaml", profile="smoke")
    spec = analyses.run_spec(params, "ablations", "scorer_mean")
    run_dir = tmp_path / "models" / "ablations" / "scorer_mean"
    assert spec.run_dir(tmp_path) == run_dir and spec.model_dir(tmp_path, 1) == run_dir / "seed1"
    assert spec.metrics_path(tmp_path) == tmp_path / "metrics" / "ablations" / "scorer_mean.json"
    assert spec.overrides == {"scorer": "mean"}
    assert spec.validates == (params.ablations.budget.val_max_queries != 0)


def test_run_frame_has_one_row_per_seed():
    ev = {"groups": {"job2skill": {"map": 0.1, "rp@10": 0.2}},
          "macro": {"map": 0.1, "rp@10": 0.2}}
    result = {"seeds": [{"seed": 0, "training": {"seconds": 3.0, "best_step": 8},
                         "evaluation": ev},
                        {"seed": 1, "training": None, "evaluation": ev}]}
    df = analyses.run_frame(result)
    assert list(df["seed"]) == [0, 1]
    assert df.loc[0, "job2skill MAP"] == 10.0 and df.loc[1, "macro RP@10"] == 20.0
    assert df.loc[0, "best step"] == 8 and "train seconds" not in df  # results, not timings


def test_macro_tasks_in_group_order(tmp_path):
    for name in ("skill_sim_esco", "job2skill", "skill_extraction_tech", "onet_job2skill"):
        (tmp_path / "tasks" / "heldout" / name / "test").mkdir(parents=True)
        (tmp_path / "tasks" / "heldout" / name / "test" / "queries.parquet").touch()
    names = analyses.macro_tasks(tmp_path)
    assert names == ["job2skill", "skill_extraction_tech", "skill_sim_esco"]


@pytest.mark.parametrize("profile", ["smoke", "cpu", "paper"])
def test_every_budget_instance_resolves(profile):
    """budgets@<run>-<point>: the ablation run's overrides at the point's budget, its own seeds
    and cap ignored; only the publish run at the main model's steps publishes."""
    params = load_params(REPO / "params.yaml", profile=profile)
    for run in params.budgets.runs:
        for point, budget in params.budgets.points.items():
            spec = analyses.budget_spec(params, run, point)
            assert spec.group == "budgets" and spec.name == f"{run}-{point}"
            assert spec.train.steps == budget.steps and spec.seeds == budget.seeds
            assert spec.metrics_path(".") == Path("metrics/budgets") / f"{run}-{point}.json"
            expect = {"scorer", "loss", "attention_temperature"} & set(spec.overrides)
            ablation = params.ablations.runs[run]
            assert {k: getattr(ablation, k) for k in expect} == {
                k: spec.overrides[k] for k in expect}
            published = (run in params.budgets.publish.values()
                         and budget.steps == params.train.steps)
            assert (spec.publish is not None) == published


def test_budget_spec_errors_name_the_value(tmp_path):
    params = _params(tmp_path, "ablations:\n  runs:\n    ref: {}\n"
                               "    sli: {scorer: sli, seeds: [0]}\n    cold: {model: untuned}\n"
                               "budgets:\n  runs: [ref, sli, cold, ghost]\n"
                               "  points: {mid: {steps: 48, seeds: [0, 1, 2]}}\n"
                               "  publish: {uwe-sli: sli}\n")
    spec = analyses.budget_spec(params, "sli", "mid")
    assert spec.seeds == (0, 1, 2) and spec.run.seeds is None  # the point's seeds
    assert spec.publish is None  # 48 steps are not the main model's
    with pytest.raises(ValueError, match="unknown budgets run 'nope'"):
        analyses.budget_spec(params, "nope", "mid")
    with pytest.raises(ValueError, match="unknown budgets point 'late'"):
        analyses.budget_spec(params, "ref", "late")
    with pytest.raises(ValueError, match="'ghost', which ablations.runs does not define"):
        analyses.budget_spec(params, "ghost", "mid")
    with pytest.raises(ValueError, match="'cold', which trains nothing"):
        analyses.budget_spec(params, "cold", "mid")
