"""Results tables from the per-model JSON files of :mod:`uwe.bench.evaluation`, and the README's
generated results section.

``results_table`` reads ``<metrics_dir>/<family>/*.json`` and gives one row per (family, model):
columns ``family``, ``model``, then ``<task> MAP`` / ``<task> RP@10`` per task (or per group
with ``level="group"``) and ``macro MAP`` / ``macro RP@10``; values are percentages rounded to
one decimal (the JSON holds fractions). A task missing for a model is NaN.

``update_readme_results`` replaces the text between :data:`RESULTS_START` and
:data:`RESULTS_END` in the README with :func:`results_section` (the main table and links to the
figures); the rest of the README is left byte for byte.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from uwe.data import tasks as task_lib
from uwe.io import write_text_atomic

logger = logging.getLogger(__name__)

TABLE_METRICS = {"map": "MAP", "rp@10": "RP@10"}


def _unit_order(units: set[str], level: str) -> list[str]:
    """Tasks (or groups) in WorkBench order, then the rest alphabetically."""
    groups = task_lib.TASK_GROUPS
    known = list(groups) if level == "group" else [t for ts in groups.values() for t in ts]
    return [u for u in known if u in units] + sorted(units - set(known))


def load_results(
    metrics_dir: str | Path = "metrics/workbench", families: Sequence[str] = ("full", "heldout"),
    published_dir: str | Path | None = None,
) -> list[dict]:
    """All result dicts under ``<metrics_dir>/<family>/*.json``, sorted by family then file;
    with ``published_dir`` (``metrics/budgets``) each family's list ends with the models that
    budget runs published (``budgets.publish``: the ``published`` entry of their result,
    :func:`uwe.pipeline.analyses.publish_model`), sorted by name."""
    out = []
    published = _published(published_dir) if published_dir is not None else {}
    for family in families:
        for path in sorted((Path(metrics_dir) / family).glob("*.json")):
            try:
                res = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as err:
                raise ValueError(f"results file {path} is not valid JSON: {err}") from err
            if not isinstance(res, dict) or "tasks" not in res:
                raise ValueError(f"results file {path} has no 'tasks' key")
            res.setdefault("family", family)
            res.setdefault("model", path.stem)
            out.append(res)
        for name in sorted(published):
            if family in published[name]:
                out.append({**published[name][family], "family": family, "model": name})
    return out


def _published(folder: str | Path) -> dict[str, dict[str, dict]]:
    """name -> family -> result of every published model under ``folder`` (budget results)."""
    out: dict[str, dict[str, dict]] = {}
    for path in sorted(Path(folder).glob("*.json")):
        res = json.loads(path.read_text(encoding="utf-8"))
        entry = res.get("published") if isinstance(res, dict) else None
        if entry is None:
            continue
        if entry["name"] in out:
            raise ValueError(f"{path}: result {entry['name']!r} is published by two budget runs")
        out[entry["name"]] = entry["families"]
    return out


def _pct(x) -> float:
    return float("nan") if x is None else round(100.0 * float(x), 1)


def results_table(
    metrics_dir: str | Path = "metrics/workbench",
    families: Sequence[str] = ("full", "heldout"),
    level: str = "task",
    published_dir: str | Path | None = None,
) -> pd.DataFrame:
    """One row per (family, model); per-task (or per-group) MAP / RP@10 and macro, in %
    (``published_dir``: :func:`load_results`)."""
    if level not in ("task", "group"):
        raise ValueError(f"level must be 'task' or 'group', got {level!r}")
    key = "tasks" if level == "task" else "groups"
    results = load_results(metrics_dir, families, published_dir)
    units = _unit_order({u for r in results for u in r.get(key, {})}, level)
    columns = ["family", "model"] + [
        f"{u} {label}" for u in [*units, "macro"] for label in TABLE_METRICS.values()
    ]
    rows = []
    for res in results:
        row = {"family": res["family"], "model": res["model"]}
        parts = {**res.get(key, {}), "macro": res.get("macro", {})}
        for unit, values in parts.items():
            for metric, label in TABLE_METRICS.items():
                row[f"{unit} {label}"] = _pct(values.get(metric))
        rows.append(row)
    if not rows:
        logger.warning("no results under %s for families %s", metrics_dir, list(families))
    return pd.DataFrame(rows, columns=columns)


def _simple_markdown(df: pd.DataFrame) -> str:
    """A GitHub markdown table without the optional ``tabulate`` dependency."""

    def cell(v) -> str:
        if isinstance(v, float):
            return "–" if pd.isna(v) else f"{v:.1f}"
        return str(v).replace("|", "\\|")

    lines = [
        "| " + " | ".join(map(str, df.columns)) + " |",
        "|" + "|".join("---" if c in ("family", "model") else "---:" for c in df.columns) + "|",
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(False)]
    return "\n".join(lines)


def to_markdown(df: pd.DataFrame) -> str:
    """Markdown table: ``DataFrame.to_markdown`` when ``tabulate`` is installed, else a fallback."""
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return _simple_markdown(df)
    cells = df.astype(object).where(df.notna(), None)  # tabulate's missingval covers None only
    return cells.to_markdown(index=False, floatfmt=".1f", missingval="–")


def write_results_table(df: pd.DataFrame, out_stem: str | Path) -> tuple[Path, Path]:
    """Write ``<out_stem>.md`` and ``<out_stem>.csv`` atomically; returns both paths."""
    stem = Path(out_stem)
    md = write_text_atomic(stem.with_name(stem.name + ".md"), to_markdown(df) + "\n")
    csv = write_text_atomic(stem.with_name(stem.name + ".csv"), df.to_csv(index=False))
    return md, csv


def per_task_frame(results_by_family: dict[str, dict]) -> pd.DataFrame:
    """One row per (family, task) of freshly computed results: MAP and RP@10 in %, sizes (the
    seconds stay in the metrics files: an executed notebook displays results, not timings)."""
    rows = []
    for family, res in results_by_family.items():
        for task, values in res["tasks"].items():
            rows.append({
                "family": family,
                "task": task,
                "MAP": _pct(values.get("map")),
                "RP@10": _pct(values.get("rp@10")),
                "queries": values.get("n_queries"),
                "targets": values.get("n_targets"),
            })
        macro = res.get("macro") or {}
        rows.append({"family": family, "task": "macro (6 groups)", "MAP": _pct(macro.get("map")),
                     "RP@10": _pct(macro.get("rp@10"))})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- README section
RESULTS_START = "<!-- results:start -->"
RESULTS_END = "<!-- results:end -->"


def results_section(table_md: str, figures: Mapping[str, str | Path], base_dir: str | Path,
                    profile: str | None = None, claims_md: str | None = None,
                    tables: Mapping[str, str] | None = None) -> str:
    """Markdown of the generated results section: a note, ``table_md``, the claims table
    (``claims_md``, :func:`uwe.pipeline.claims.claims_markdown`), each ``caption -> markdown``
    of ``tables`` and one image per ``caption -> figure path`` (links relative to
    ``base_dir``, the README's folder)."""
    note = ("<!-- generated by the figures stage (uwe.pipeline.reporting.update_readme_results); "
            "edits between the markers are overwritten -->")
    profile_note = f" (profile `{profile}`)" if profile else ""
    lines = [note, "", f"Heldout and full families, MAP / RP@10 in %{profile_note}:", "",
             table_md.strip(), ""]
    if claims_md:
        lines += ["The paper's claims, checked (`metrics/claims.md`; heldout MAP in %):", "",
                  claims_md.strip(), ""]
    for caption, md in (tables or {}).items():
        lines += [f"{caption}:", "", md.strip(), ""]
    for caption, path in figures.items():
        rel = Path(os.path.relpath(Path(path), Path(base_dir))).as_posix()
        lines += [f"![{caption}]({rel})", ""]
    return "\n".join(lines)


def replace_between_markers(text: str, body: str, start: str = RESULTS_START,
                            end: str = RESULTS_END) -> str:
    """``text`` with the part between the ``start`` and ``end`` lines replaced by ``body``.

    ValueError unless each marker occurs exactly once, ``start`` first.
    """
    counts = (text.count(start), text.count(end))
    if counts != (1, 1) or text.index(start) > text.index(end):
        raise ValueError(f"expected one {start!r} before one {end!r}; found {counts[0]} and "
                         f"{counts[1]}")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body.strip()}\n{end}{tail}"


def update_readme_results(readme: str | Path, body: str) -> bool:
    """Write ``body`` between the results markers of ``readme`` (atomically); True if the
    file changed. ValueError (naming the file) when the markers are missing."""
    readme = Path(readme)
    text = readme.read_text(encoding="utf-8")
    try:
        new = replace_between_markers(text, body)
    except ValueError as err:
        raise ValueError(f"{readme}: {err}") from err
    if new == text:
        return False
    write_text_atomic(readme, new)
    return True
