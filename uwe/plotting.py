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
