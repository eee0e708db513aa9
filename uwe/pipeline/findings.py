"""What a stage found, in a few sentences at the top of its executed notebook.

A stage notebook calls :func:`placeholder` in its first cell after the parameters, which shows
a line where the findings will be; its last cell calls :func:`show` with the text of this
module's function for the stage, which replaces that line (a Jupyter display update), so that
the executed notebook opens with what the run found. Every number in the text comes from the
stage's results (the objects the notebook just computed); none is typed. The texts hold no
timings, so an unchanged stage writes the same notebook again (``uwe.pipeline.notebooks``); the
``latency`` stage, whose results are timings, is the exception.

This module imports nothing of the package at import time: every stage notebook uses it, and a
stage depends on what its notebook imports.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from statistics import mean, stdev
from typing import Any

DISPLAY_ID = "uwe-findings"
PENDING = "*What this run found is written here when the notebook has run to its end.*"


def placeholder() -> None:
    """Show the line the findings replace (first cell after the parameters)."""
    from IPython.display import Markdown, display

    display(Markdown(PENDING), display_id=DISPLAY_ID)


def show(text: str) -> None:
    """Put ``text`` where :func:`placeholder` showed its line (and print it when the notebook
    is not run by a Jupyter kernel)."""
    from IPython.display import Markdown, update_display

    update_display(Markdown(f"**What this run found.** {text}"), display_id=DISPLAY_ID)


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def fetch(sources: Mapping[str, str]) -> str:
    """``fetch`` -> files and where each came from (mirror, cache, download)."""
    counts: dict[str, int] = {}
    for how in sources.values():
        counts[how] = counts.get(how, 0) + 1
    how = ", ".join(f"{n} from {k}" for k, n in sorted(counts.items()))
    return f"{len(sources)} files fetched and verified against their checksums ({how})."


def curate(report: Mapping[str, Any]) -> str:
    """``curate`` -> tasks per family, graphs and their edges, the heldout leakage count."""
    tasks = report.get("tasks") or {}
    per_family = ", ".join(f"{len(v)} {k}" for k, v in tasks.items() if isinstance(v, Mapping))
    graphs = report.get("graphs") or {}
    edges = sum(int(g.get("n_edges", g.get("edges", 0)) or 0) for g in graphs.values())
    leaks = 0
    for task in (report.get("leakage") or {}).get("heldout", {}).values():
        for split in task.values():
            leaks += int(split.get("query_text_overlap", 0)) + int(split.get("pair_overlap", 0))
    return (f"Task sets: {per_family}. {len(graphs)} training graphs with {edges:,} edges. "
            f"The leakage audit finds {leaks} heldout test or val texts or pairs in the "
            f"training graphs" + (" (the stage fails otherwise)." if leaks == 0 else "."))


def training(summary: Mapping[str, Any]) -> str:
    """``train`` -> steps, the validation that chose the model, precision and CPU."""
    history = summary.get("val_history") or []
    vals = ", ".join(f"{100 * h['val_map']:.2f} at step {h['step']}" for h in history)
    best = summary.get("best_val_map")
    cpu = (summary.get("cpu") or {}).get("cpu")
    where = f"{summary.get('device', '?')}" + (f" ({cpu})" if cpu else "")
    stopped = summary.get("stopped")
    text = (f"{summary.get('steps_done')} of {summary.get('steps')} steps"
            + (f" (stopped: {stopped})" if stopped else "")
            + f" in {summary.get('precision', '?')} on {where}.")
    if best is not None:
        text += (f" Heldout val macro MAP {vals}; the published model is step "
                 f"{summary.get('best_step')} ({100 * best:.2f}).")
    else:
        text += " No validation: the last step's model is published."
    return text


def evaluation(name: str, results: Mapping[str, Mapping[str, Any]]) -> str:
    """``evaluate`` / ``baselines`` -> macro MAP per family, the best and worst task group."""
    parts = []
    for family, res in results.items():
        macro = (res.get("macro") or {}).get("map")
        groups = {g: v["map"] for g, v in (res.get("groups") or {}).items()}
        if macro is not None and groups:
            hi, lo = max(groups, key=groups.get), min(groups, key=groups.get)
            parts.append(f"{family}: macro MAP {_pct(macro)} (best group {hi} "
                         f"{_pct(groups[hi])}, weakest {lo} {_pct(groups[lo])})")
        else:
            maps = [t["map"] for t in (res.get("tasks") or {}).values()]
            if maps:
                parts.append(f"{family}: mean MAP {_pct(mean(maps))} over {len(maps)} tasks")
    return f"`{name}` — " + "; ".join(parts) + "."


def variant(result: Mapping[str, Any]) -> str:
    """An analysis run -> heldout macro MAP per seed (mean ± std) and val MAP."""
    seeds = result.get("seeds") or []
    held = [e["evaluation"]["macro"]["map"] for e in seeds
            if (e.get("evaluation") or {}).get("macro", {}).get("map") is not None]
    vals = [(e.get("training") or {}).get("best_val_map") for e in seeds]
    vals = [v for v in vals if v is not None]
    name = f"{result.get('group')}/{result.get('run')}"
    if not held:
        return f"`{name}`: no heldout macro MAP."
    spread = f" ± {100 * stdev(held):.2f}" if len(held) > 1 else ""
    overrides = ", ".join(f"{k}={v}" for k, v in (result.get("overrides") or {}).items())
    text = (f"`{name}` ({overrides or 'the main config'}): heldout macro MAP "
            f"{100 * mean(held):.2f}{spread} over {len(held)} seed(s)")
    if vals:
        text += f"; val {100 * mean(vals):.2f}"
    return text + "."


def claims(rows: Sequence[Mapping[str, Any]]) -> str:
    """``figures`` -> how many of the paper's claims hold, do not hold, are undecided."""
    counts: dict[str, list[str]] = {}
    for row in rows:
        counts.setdefault(row["verdict"], []).append(row["claim"])
    order = ("holds", "does not hold", "not decided at this budget")
    parts = [f"{len(counts[v])} {v}" for v in order if v in counts]
    parts += [f"{len(c)} {v}" for v, c in counts.items() if v not in order]
    failing = counts.get("does not hold", [])
    text = f"Of the paper's {len(rows)} claims checked here: {', '.join(parts)}."
    if failing:
        text += " Not holding here: " + "; ".join(failing) + "."
    return text


def latency(report: Mapping[str, Any]) -> str:
    """``latency`` -> each model's median ms per query and the SLI / mean-pooling ratio (these
    are timings: this notebook changes with every run)."""
    models = report.get("models") or {}
    lines = ", ".join(f"{n} {e['latency_ms']['median']:.1f} ms" for n, e in models.items())
    ratio = report.get("sli_over_mean")
    text = (f"Median latency per query at batch 1 against {report.get('n_targets')} cached "
            f"targets: {lines}.")
    if ratio is not None:
        text += f" SLI / mean pooling through the same engine: {ratio:.2f}."
    return text
