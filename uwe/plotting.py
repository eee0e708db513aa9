"""Figures of the paper, as functions of small tables (matplotlib; no state at import)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, stem: str | Path) -> list[Path]:
    """Save ``fig`` as ``<stem>.png`` (200 dpi) and ``<stem>.pdf``; return the paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    fig.savefig(paths[0], dpi=200, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    return paths


def training_curve(log: pd.DataFrame, smooth: int = 20):
    """Training loss (raw and rolling mean over ``smooth`` steps) and validation macro MAP."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.0, 3.2))
    ax.plot(log["step"], log["loss"], color="0.8", lw=0.8, label="loss")
    ax.plot(log["step"], log["loss"].rolling(smooth, min_periods=1).mean(), color="C0",
            lw=1.5, label=f"loss (mean of {smooth})")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    val = log.dropna(subset=["val_map"]) if "val_map" in log else log.iloc[0:0]
    if len(val):
        ax2 = ax.twinx()
        ax2.plot(val["step"], 100 * val["val_map"], "o-", color="C3", label="val macro MAP")
        ax2.set_ylabel("heldout val macro MAP (%)", color="C3")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return fig


def model_comparison(results: list[dict], metric: str = "map"):
    """Grouped bars: per task group + macro, one bar per model, with 95% CI whiskers.

    ``results`` are result dicts of one family (``uwe.evaluation`` format, fractions).
    """
    import numpy as np

    plt = _plt()
    from uwe.tasks import TASK_GROUPS

    present = set(results[0].get("groups", {})) if results else set()
    units = [g for g in TASK_GROUPS if g in present] + ["macro"]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(units) + 2), 3.4))
    width = 0.8 / max(1, len(results))
    x = np.arange(len(units))
    for k, res in enumerate(results):
        values, errs = [], [[], []]
        for unit in units:
            part = res["macro"] if unit == "macro" else res["groups"].get(unit, {})
            members = TASK_GROUPS.get(unit, [])
            if len(members) == 1 and members[0] in res["tasks"]:
                part = res["tasks"][members[0]]  # a one-task group: show the task's CI
            v = part.get(metric)
            ci = part.get(f"{metric}_ci") or [v, v]
            v = np.nan if v is None else 100 * v
            values.append(v)
            lo, hi = (np.nan, np.nan) if ci[0] is None else (100 * ci[0], 100 * ci[1])
            errs[0].append(max(0.0, v - lo) if np.isfinite(lo) else 0.0)
            errs[1].append(max(0.0, hi - v) if np.isfinite(hi) else 0.0)
        ax.bar(x + (k - (len(results) - 1) / 2) * width, values, width, label=res["model"],
               yerr=errs, capsize=2, error_kw={"lw": 0.7})
    ax.set_xticks(x, [u.replace("_", "\n") for u in units], fontsize=8)
    ax.set_ylabel(f"{metric.upper()} (%)")
    family = results[0].get("family", "") if results else ""
    ax.set_title(f"WorkBench ({family}), per task group and macro", fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig
