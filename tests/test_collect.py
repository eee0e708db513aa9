"""Collecting the analyses: mean ± std over seeds, the transfer matrix and its gains, the
ablation axes, the zero-shot table, on hand-made metrics files."""

from __future__ import annotations

import json
import math

import pytest

from uwe.bench.evaluation import write_results
from uwe.config import GraphParams, RunParams, TrainParams
from uwe.pipeline import results as collect


def _evaluation(j2s: float, s2j: float) -> dict:
    groups = {"job2skill": {"map": j2s, "rp@10": j2s + 0.1},
              "skill2job": {"map": s2j, "rp@10": s2j + 0.1}}
    return {"groups": groups, "macro": {"map": (j2s + s2j) / 2, "rp@10": (j2s + s2j) / 2 + 0.1},
            "tasks": {}}


def _write_run(metrics, group, name, evaluations, overrides=None, model=None, graphs=None):
    result = {"group": group, "run": name, "profile": "smoke", "overrides": overrides or {},
              "budget": {"max_queries": 10}, "model": model or f"models/{group}/{name}",
              "model_info": {"graphs": graphs or []},
              "seeds": [{"seed": k if model is None else None, "training": None,
                         "evaluation": ev} for k, ev in enumerate(evaluations)]}
    write_results(result, metrics / group / f"{name}.json")


def test_mean_std_over_seeds():
    assert collect.mean_std([0.2]) == (0.2, None)
    mean, std = collect.mean_std([0.1, 0.3, None, float("nan")])
    assert mean == pytest.approx(0.2) and std == pytest.approx(math.sqrt(0.02))
    assert collect.mean_std([]) == (None, None)


def test_aggregate_seeds_per_group_and_macro():
    agg = collect.aggregate_seeds([_evaluation(0.1, 0.3), _evaluation(0.3, 0.5)])
    assert agg["n_seeds"] == 2
    assert list(agg["groups"]) == ["job2skill", "skill2job"]
    assert agg["groups"]["job2skill"]["map"] == pytest.approx(0.2)
    assert agg["groups"]["job2skill"]["map_std"] == pytest.approx(math.sqrt(0.02))
    assert agg["macro"]["rp@10"] == pytest.approx(0.4)


def test_transfer_matrix_rows_columns_and_gain(tmp_path):
    _write_run(tmp_path, "transfer", "untuned", [_evaluation(0.10, 0.20)], model="untuned")
    _write_run(tmp_path, "transfer", "sj", [_evaluation(0.15, 0.18)], graphs=["sj"])
    _write_run(tmp_path, "transfer", "all", [_evaluation(0.20, 0.30)], model="models/uwe",
               graphs=["sj", "sv"])
    out = collect.collect_transfer(tmp_path, ["untuned", "sj", "all"])
    assert out["order"] == ["untuned", "sj", "all"]
    assert out["columns"] == ["job2skill", "skill2job", "macro"]
    assert out["rows"]["sj"]["graphs"] == ["sj"] and out["rows"]["all"]["model"] == "models/uwe"
    assert out["gain"]["sj"]["job2skill"]["map"] == pytest.approx(0.05)
    assert out["gain"]["sj"]["skill2job"]["map"] == pytest.approx(-0.02)
    assert out["gain"]["untuned"]["macro"]["rp@10"] == pytest.approx(0.0)
    assert out["max_queries"] == 10
    frame = collect.transfer_frame(out, "map", gain=True)
    assert frame.loc["all", "macro"] == 10.0 and frame.index.name == "trained on"
    assert collect.transfer_frame(out, "rp@10").loc["untuned", "job2skill"] == 20.0


def test_missing_run_names_its_stage(tmp_path):
    with pytest.raises(FileNotFoundError, match="transfer@sv"):
        collect.collect_transfer(tmp_path, ["untuned", "sv"])
    _write_run(tmp_path, "transfer", "sv", [_evaluation(0.1, 0.1)])
    with pytest.raises(ValueError, match="baseline run 'untuned'"):
        collect.collect_transfer(tmp_path, ["sv"])


def test_ablation_axes(tmp_path):
    # scorer sli, loss many_to_many, attention temperature 0.1
    base = TrainParams(graphs={g: GraphParams() for g in ("sj", "sv", "sa")})
    runs = {"reference": RunParams(), "scorer_mean": RunParams(scorer="mean"),
            "scorer_maxsim": RunParams(scorer="maxsim"),
            "attention_0p5": RunParams(attention_temperature=0.5),
            "attention_0p05": RunParams(attention_temperature=0.05),
            "both": RunParams(scorer="mean", loss="symmetric"),
            "sj_only": RunParams(graphs=("sj",)), "no_sv": RunParams(graphs=("sa", "sj")),
            "sj_mean": RunParams(graphs=("sj",), scorer="mean")}
    for k, name in enumerate(runs):
        _write_run(tmp_path, "ablations", name,
                   [_evaluation(0.1 + k / 100, 0.3), _evaluation(0.12 + k / 100, 0.3)],
                   overrides={})
    out = collect.collect_ablations(tmp_path, runs, base)
    assert [e["value"] for e in out["axes"]["scorer"]] == ["mean", "maxsim", "sli"]
    assert [e["run"] for e in out["axes"]["attention_temperature"]] == [
        "attention_0p05", "reference", "attention_0p5"]
    assert [e["run"] for e in out["axes"]["loss"]] == ["reference"]
    # a graph subset is one factor (several factors at once: no axis)
    assert [(e["run"], e["value"]) for e in out["axes"]["graphs"]] == [
        ("sj_only", "only sj"), ("no_sv", "without sv"), ("reference", "all")]
    assert not any(e["run"] == "sj_mean" for a in out["axes"].values() for e in a)
    ref = out["axes"]["loss"][0]
    assert ref["reference"] and ref["n_seeds"] == 2
    assert ref["map"] == pytest.approx(0.205)
    assert ref["map_std"] == pytest.approx(0.01 / math.sqrt(2))
    assert set(out["runs"]) == set(runs) and out["seeds"] == [0, 1]
    frame = collect.ablations_frame(json.loads(json.dumps(out, sort_keys=True)))  # as on disk
    assert list(dict.fromkeys(frame["factor"])) == ["scorer", "loss", "attention_temperature",
                                                    "graphs"]
    assert list(frame.columns) == ["factor", "value", "run", "seeds", "macro MAP", "MAP std",
                                   "macro RP@10", "RP@10 std", "attention"]
    assert len(frame) == 3 + 1 + 3 + 3


def test_attention_axis_holds_the_sli_runs_when_the_reference_is_mean_pooled(tmp_path):
    base = TrainParams(scorer="mean", graphs={g: GraphParams() for g in ("sj", "sv")})
    runs = {"reference": RunParams(), "scorer_sli": RunParams(scorer="sli"),
            "sli_0p5": RunParams(scorer="sli", attention_temperature=0.5),
            "sli_0p05": RunParams(scorer="sli", attention_temperature=0.05),
            "maxsim": RunParams(scorer="maxsim"),
            "sli_sj": RunParams(scorer="sli", graphs=("sj",))}
    for k, name in enumerate(runs):
        _write_run(tmp_path, "ablations", name, [_evaluation(0.1 + k / 100, 0.3)])
    out = collect.collect_ablations(tmp_path, runs, base)
    assert [(e["run"], e["value"]) for e in out["axes"]["attention_temperature"]] == [
        ("sli_0p05", 0.05), ("scorer_sli", 0.1), ("sli_0p5", 0.5)]
    assert [e["run"] for e in out["axes"]["scorer"]] == ["reference", "maxsim", "scorer_sli"]
    assert not any(e["reference"] for e in out["axes"]["attention_temperature"])


def test_graphs_label():
    base = ["sj", "sv", "sa", "jj", "ss"]
    assert collect.graphs_label(["ss", "jj", "sa", "sv", "sj"], base) == "all"
    assert collect.graphs_label(["sj", "sa", "jj", "ss"], base) == "without sv"
    assert collect.graphs_label(["sj", "sa", "ss"], base) == "without sv+jj"
    assert collect.graphs_label(["sv", "sj"], base) == "only sj+sv"


def test_zeroshot_collection(tmp_path):
    tasks = {"onet_skill2job": {"map": 0.4, "rp@10": 0.5},
             "onet_job2skill": {"map": 0.2, "rp@10": 0.3}}
    for model in ("uwe", "bm25"):
        write_results({"model": model, "family": "zeroshot", "tasks": tasks, "groups": {},
                       "macro": {"map": None}},
                      tmp_path / "zeroshot" / f"{model}.json")
    out = collect.collect_zeroshot(tmp_path)
    assert out["tasks"] == ["onet_job2skill", "onet_skill2job"]  # registry order
    assert out["order"] == ["bm25", "uwe"]
    assert out["models"]["uwe"]["mean"]["map"] == pytest.approx(0.3)
    frame = collect.zeroshot_frame(out)
    assert frame.loc[0, "onet_job2skill MAP"] == 20.0 and frame.loc[1, "mean RP@10"] == 40.0
