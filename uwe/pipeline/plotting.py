"""Figures of the paper, as functions of small tables (matplotlib; no state at import)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

AXIS_TITLES = {"graphs": "training graphs"}  # other factors: their name with spaces


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, stem: str | Path) -> list[Path]:
    """Save ``fig`` as ``<stem>.png`` (200 dpi) and ``<stem>.pdf``; return the paths. The PDF
    carries no creation date, so the same figure gives the same bytes (no spurious diffs)."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    fig.savefig(paths[0], dpi=200, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight", metadata={"CreationDate": None})
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

    ``results`` are result dicts of one family (``uwe.bench.evaluation`` format, fractions).
    """
    import numpy as np

    plt = _plt()
    from uwe.data.tasks import TASK_GROUPS

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


def _label(unit: str) -> str:
    return unit.replace("skill_extraction", "skill_extr.").replace("_", "\n", 1)


def transfer_heatmap(transfer: dict, metric: str = "map"):
    """Gain over the untuned backbone (points) of each training graph (rows) on each task group
    (columns), from ``uwe.pipeline.results.collect_transfer``; cells annotated, diverging colours; a
    cell whose gain is within the seed spread (or whose spread is unknown) is hatched and its
    number in parentheses."""
    import numpy as np

    from uwe.pipeline.results import transfer_frame

    plt = _plt()
    gain = transfer_frame(transfer, metric, gain=True)
    values = transfer_frame(transfer, metric)
    rows = [r for r in gain.index if r != transfer["baseline"]]
    data = gain.loc[rows].to_numpy(dtype=float)  # (rows, columns)
    lim = max(1.0, float(np.nanmax(np.abs(data))) if np.isfinite(data).any() else 1.0)
    fig, ax = plt.subplots(figsize=(6.4, 0.42 * len(rows) + 1.4))
    im = ax.imshow(data, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
    for i, j in np.ndindex(data.shape):
        if np.isfinite(data[i, j]):
            cell = transfer["gain"][rows[i]][gain.columns[j]]
            decided = cell.get(f"{metric}_decided") is not None
            text = f"{data[i, j]:+.1f}" if decided else f"({data[i, j]:+.1f})"
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="white" if abs(data[i, j]) > 0.6 * lim else "black",
                    fontweight="bold" if decided else "normal")
            if not decided:  # within the seed spread (or spread unknown): hatched
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///",
                                           edgecolor="0.55", lw=0))
    ax.set_xticks(range(len(gain.columns)), [_label(c) for c in gain.columns], fontsize=8)
    base = values.loc[transfer["baseline"]]
    ax.set_yticks(range(len(rows)), [f"{r} " for r in rows], fontsize=8)
    ax.set_ylabel("trained on", fontsize=9)
    from uwe.pipeline.claims import Z

    ax.set_title(f"{metric.upper()} gain over the untuned backbone (points); untuned macro "
                 f"{base['macro']:.1f}\nbold: beyond {Z:g} seed se; hatched, in parentheses: "
                 "within it or spread unknown", fontsize=8)
    cbar = fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02)
    cbar.ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


def ablation_bars(ablations: dict, metric: str = "map"):
    """One panel per factor (scorer, loss, attention temperature, training graphs): macro
    ``metric`` (%) mean over seeds with std error bars (none for one seed); the reference bar is
    red."""
    import numpy as np

    plt = _plt()
    from uwe.pipeline.results import ordered_axes

    axes_data = {a: ablations["axes"][a] for a in ordered_axes(ablations)}
    widths = [max(2, len(entries)) for entries in axes_data.values()]  # same bar width
    fig, axes = plt.subplots(1, len(axes_data), figsize=(7.6, 2.8), sharey=True, squeeze=False,
                             gridspec_kw={"width_ratios": widths})
    lows = []
    for ax, (axis, entries) in zip(axes[0], axes_data.items(), strict=True):
        means = np.array([np.nan if e.get(metric) is None else 100 * e[metric] for e in entries])
        stds = np.array([0.0 if e.get(f"{metric}_std") is None else 100 * e[f"{metric}_std"]
                         for e in entries])
        colors = ["C3" if e["reference"] else "C0" for e in entries]
        has_std = any(e.get(f"{metric}_std") is not None for e in entries)
        ax.bar(range(len(entries)), means, 0.7, yerr=stds if has_std else None, color=colors,
               capsize=3, error_kw={"lw": 0.8})
        for k, (m, sd) in enumerate(zip(means, stds, strict=True)):
            if np.isfinite(m):
                ax.text(k, m + sd, f"{m:.1f}", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(entries)), [str(e["value"]).replace("_", "\n") for e in entries],
                      fontsize=7)
        ax.set_title(AXIS_TITLES.get(axis, axis.replace("_", " ")), fontsize=9)
        pad = (max(2, len(entries)) - len(entries)) / 2  # centre a short panel's bars
        ax.set_xlim(-0.6 - pad, len(entries) - 0.4 + pad)
        ax.tick_params(axis="y", labelsize=7)
        lows.append(np.nanmin(means - stds) if np.isfinite(means).any() else 0.0)
    low = min(lows) if lows else 0.0
    axes[0][0].set_ylim(max(0.0, low - 5.0), None)
    axes[0][0].set_ylabel(f"heldout macro {metric.upper()} (%)", fontsize=8)
    counts = sorted({int(e.get("n_seeds") or 0) for es in axes_data.values() for e in es})
    span = (f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}") if counts else "0"
    fig.suptitle(f"Ablations (red: reference; mean ± std over {span} seed(s) per bar)",
                 fontsize=9)
    fig.tight_layout()
    return fig


def latency_vs_map(latency: dict, results: list[dict]):
    """Median per-query latency (ms, log scale) vs heldout macro MAP (%); bubble area ∝
    parameters. A model timed through another engine (``<name>@onnx``) has its model's MAP
    (the same scores up to float rounding). Models without both numbers are left out."""
    import numpy as np

    plt = _plt()
    maps = {r["model"]: (r.get("macro") or {}).get("map") for r in results}
    points = [(name, e["latency_ms"]["median"], 100 * maps[name.split("@")[0]],
               e.get("parameters") or 0)
              for name, e in latency["models"].items()
              if maps.get(name.split("@")[0]) is not None]
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    fig, ax = plt.subplots(figsize=(4.6, 3.2))
    if points:
        sizes = np.array([p[3] for p in points], dtype=float)
        area = 60 + 900 * sizes / max(1.0, sizes.max())
        for k, (name, ms, m, params) in enumerate(points):
            ax.scatter(ms, m, s=area[k], alpha=0.55, color=f"C{k}", edgecolor="k", lw=0.5)
            label = f"{name} ({params / 1e6:.0f}M)" if params else name
            ax.annotate(label, (ms, m), xytext=(0, 4 + np.sqrt(area[k]) / 2),
                        textcoords="offset points", fontsize=7, ha="center", va="bottom")
        ax.set_xscale("log")
        ms_all, map_all = [p[1] for p in points], [p[2] for p in points]
        ax.set_xlim(min(ms_all) / 2, max(ms_all) * 2)
        span = max(2.0, max(map_all) - min(map_all))
        ax.set_ylim(min(map_all) - 0.3 * span, max(map_all) + 0.5 * span)
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(f"median latency per query, batch 1 (ms, {latency.get('device', '')})",
                  fontsize=8)
    ax.set_ylabel("heldout macro MAP (%)", fontsize=8)
    ax.set_title(f"Quality vs latency ({latency.get('n_targets')} cached targets; "
                 "area ∝ parameters)", fontsize=9)
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


def zeroshot_bars(zeroshot: dict, metric: str = "map"):
    """Grouped bars: ``metric`` (%) per zero-shot task and the mean, one bar per model."""
    import numpy as np

    plt = _plt()
    units = [*zeroshot["tasks"], "mean"]
    models = zeroshot["order"]
    fig, ax = plt.subplots(figsize=(6.0, 2.9))
    width = 0.8 / max(1, len(models))
    x = np.arange(len(units))
    for k, model in enumerate(models):
        cells = zeroshot["models"][model]
        values = [np.nan if cells.get(u, {}).get(metric) is None else 100 * cells[u][metric]
                  for u in units]
        ax.bar(x + (k - (len(models) - 1) / 2) * width, values, width, label=model)
    ax.set_xticks(x, [u.replace("_", "\n", 1) for u in units], fontsize=8)
    ax.set_ylabel(f"{metric.upper()} (%)", fontsize=8)
    ax.set_title("Zero-shot on unseen target spaces (O*NET 29.2, SkillsFuture)", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


def budget_curves(budgets: dict, lines: dict[str, str], title: str, metric: str = "map"):
    """One claim's budget curves: heldout macro ``metric`` (%) against the pairs seen per
    graph (log axis), one line per ``{label: run}`` of ``metrics/budgets.json``, mean ± std over
    seeds (a one-seed point is drawn hollow, without a bar), each point marked with its seeds."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.0, 3.4))
    for k, (label, run) in enumerate(lines.items()):
        curve = budgets["curves"].get(run) or []
        if not curve:
            continue
        x = [e["pairs_per_graph"] for e in curve]
        y = [float("nan") if e.get(metric) is None else 100 * e[metric] for e in curve]
        err = [0.0 if e.get(f"{metric}_std") is None else 100 * e[f"{metric}_std"]
               for e in curve]
        color = f"C{k}"
        ax.errorbar(x, y, yerr=err, color=color, lw=1.3, capsize=3, label=label, zorder=2)
        for xi, yi, e in zip(x, y, curve, strict=True):
            one = int(e.get("n_seeds") or 0) < 2
            ax.plot(xi, yi, "o", ms=5, mfc="white" if one else color, mec=color, zorder=3)
    ax.set_xscale("log")
    steps = sorted({(e["pairs_per_graph"], e["steps"]) for c in budgets["curves"].values()
                    for e in c})
    ax.set_xticks([p for p, _ in steps], [f"{p:,}\n({s} steps)" for p, s in steps], fontsize=7)
    ax.minorticks_off()
    ax.set_xlabel("pairs seen per training graph (log)", fontsize=8)
    ax.set_ylabel(f"heldout macro {metric.upper()} (%)", fontsize=8)
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title(f"{title} (mean ± std over seeds; hollow: one seed)", fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig
