"""Figures: every plotting function draws from its small input and saves PNG + PDF."""

from __future__ import annotations

import pandas as pd
import pytest

from uwe.pipeline import plotting

pytest.importorskip("matplotlib")


def _cell(v):
    return {"map": v, "rp@10": v + 0.1, "map_std": None, "rp@10_std": None}


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


def _saved(fig, tmp_path, stem):
    paths = plotting.save_figure(fig, tmp_path / stem)
    assert [p.suffix for p in paths] == [".png", ".pdf"]
    assert all(p.stat().st_size > 1000 for p in paths)


def test_transfer_heatmap(tmp_path):
    cols = ["job2skill", "skill_extraction", "macro"]
    rows = {"untuned": {c: _cell(0.2) for c in cols}, "sj": {c: _cell(0.25) for c in cols},
            "all": {c: _cell(0.1) for c in cols}}
    gain = {r: {c: {"map": v[c]["map"] - 0.2, "rp@10": 0.0,
                    "map_decided": "gain" if r == "sj" else None} for c in cols}
            for r, v in rows.items()}
    transfer = {"order": list(rows), "columns": cols, "rows": rows, "gain": gain,
                "baseline": "untuned"}
    fig = plotting.transfer_heatmap(transfer)
    assert len(fig.axes[0].get_yticklabels()) == 2  # the baseline row is the reference
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["+5.0"] * 3 + ["(-10.0)"] * 3  # within the spread: in parentheses
    assert len([p for p in fig.axes[0].patches if p.get_hatch()]) == 3
    _saved(fig, tmp_path, "transfer")


def test_ablation_bars_with_and_without_std(tmp_path):
    def entry(run, value, ref, m, s):
        return {"run": run, "value": value, "reference": ref, "map": m, "map_std": s,
                "n_seeds": 2}

    ablations = {"seeds": [0, 1], "axes": {
        "scorer": [entry("scorer_mean", "mean", False, 0.3, 0.01),
                   entry("reference", "sli", True, 0.32, None)],
        "loss": [entry("reference", "many_to_many", True, 0.32, None)]}}
    fig = plotting.ablation_bars(ablations)
    assert len(fig.axes) == 2
    from matplotlib.container import ErrorbarContainer

    def has_error_bars(ax):
        return any(isinstance(c, ErrorbarContainer) for c in ax.containers)

    assert has_error_bars(fig.axes[0])  # a std on the panel: error bars
    assert not has_error_bars(fig.axes[1])  # one seed only: none drawn
    assert [ax.get_title() for ax in fig.axes] == ["scorer", "loss"]
    _saved(fig, tmp_path, "ablations")


def test_latency_vs_map_skips_models_without_map(tmp_path):
    lat = {"device": "cpu", "n_targets": 100, "models": {
        "uwe": {"latency_ms": {"median": 8.0}, "parameters": 22_700_000},
        "all-mpnet-base-v2": {"latency_ms": {"median": 20.0}, "parameters": 109_000_000},
        "bm25": {"latency_ms": {"median": 1.0}, "parameters": None}}}
    results = [{"model": "uwe", "macro": {"map": 0.35}},
               {"model": "all-mpnet-base-v2", "macro": {"map": 0.33}}]
    fig = plotting.latency_vs_map(lat, results)
    assert len(fig.axes[0].collections) == 2
    _saved(fig, tmp_path, "latency")


def test_zeroshot_bars(tmp_path):
    zs = {"tasks": ["onet_job2skill", "skillsfuture_norm"], "order": ["bm25", "uwe"],
          "models": {"bm25": {"onet_job2skill": _cell(0.1), "mean": _cell(0.1)},
                     "uwe": {"onet_job2skill": _cell(0.3), "skillsfuture_norm": _cell(0.2),
                             "mean": _cell(0.25)}}}
    fig = plotting.zeroshot_bars(zs)
    assert len(fig.axes[0].patches) == 2 * 3
    _saved(fig, tmp_path, "zeroshot")


def test_training_curve(tmp_path):
    log = pd.DataFrame({"step": [1, 2, 3], "loss": [3.0, 2.0, 1.5], "val_map": [None, None, 0.3]})
    _saved(plotting.training_curve(log), tmp_path, "curve")


def test_saving_the_same_figure_twice_gives_the_same_bytes(tmp_path):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1, 2], [1, 3, 2])
    first = [p.read_bytes() for p in plotting.save_figure(fig, tmp_path / "a" / "f")]
    second = [p.read_bytes() for p in plotting.save_figure(fig, tmp_path / "b" / "f")]
    assert first == second


def test_budget_curves_one_line_per_run_on_a_log_axis(tmp_path):
    def point(steps, m, s, n):
        return {"steps": steps, "pairs_per_graph": steps * 128, "map": m, "map_std": s,
                "n_seeds": n}

    budgets = {"curves": {
        "reference": [point(12, 0.36, 0.002, 3), point(48, 0.38, 0.003, 3),
                      point(240, 0.40, None, 1)],
        "scorer_sli": [point(12, 0.34, 0.002, 3), point(48, 0.385, 0.001, 3)]}}
    fig = plotting.budget_curves(budgets, {"mean pooling": "reference", "SLI": "scorer_sli",
                                           "MaxSim": "scorer_maxsim"}, "scorer")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["mean pooling", "SLI"]
    hollow = [line for line in ax.lines if line.get_marker() == "o"
              and line.get_markerfacecolor() == "white"]
    assert len(hollow) == 1  # the one-seed point
    _saved(fig, tmp_path, "budgets_scorer")
