"""The recipe-search table (``scripts/recipe_search.py``): one row per result file of
``metrics/recipes/`` (a parameterised training run validated on the heldout val splits), written
into ``docs/training-on-a-cpu.md`` (:data:`RECIPE_PAGE`) between :data:`RECIPES_START` and
:data:`RECIPES_END`. Its own module, so that
the stages that evaluate models do not import it."""

from __future__ import annotations

import json
from pathlib import Path

from uwe.data import tasks as task_lib

#: the page that holds the generated recipe table, relative to the repository root
RECIPE_PAGE = "docs/training-on-a-cpu.md"
RECIPES_START = "<!-- recipes:start -->"
RECIPES_END = "<!-- recipes:end -->"


def _recipe_value(v) -> str:
    if isinstance(v, dict):  # e.g. add_graphs: {sd: {weight, temperature, batch_size}}
        return "+".join(f"{k}({', '.join(f'{a}={b}' for a, b in sorted(x.items()))})"
                        if isinstance(x, dict) else f"{k}={x}" for k, x in sorted(v.items()))
    return str(v)


def _cpu_short(isa: dict | None) -> str:
    """``"AMD EPYC (avx512_bf16)"``-like: a recipe result's CPU and its bf16 feature, or "–"
    for a result written before the CPU was recorded."""
    if not isa:
        return "–"
    feature = ("amx_bf16" if isa.get("amx_bf16") else "avx512_bf16" if isa.get("avx512_bf16")
               else "no bf16")
    return f"{' '.join(str(isa.get('cpu', '?')).split()[:3])} ({feature})"


def recipe_table(folder: str | Path) -> str:
    """Markdown table of the recipe-search results in ``folder`` (``*.json`` written by
    ``scripts/recipe_search.py``), best val macro MAP first: the run, its overrides of the
    cpu ``train`` config, val macro MAP, its gain over the untuned backbone with the same
    scorer (the ``untuned=True`` result of that scorer, when there is one), MAP per task group
    (%), minutes from start to end (cache read or build, mining, training, validation),
    pairs seen per graph, the precision used, the CPU, and for an SLI run how soft its
    attention was on the val pairs (:func:`uwe.bench.softness.softness_text`; "not measured"
    for a result from before it was). The untuned result an SLI run's gain is taken against
    has the same attention temperature. Raises FileNotFoundError when there is no result."""
    from uwe.bench.softness import attention_unit, softness_text

    groups_of = task_lib.TASK_GROUPS
    files = sorted(Path(folder).glob("*.json"))
    if not files:
        raise FileNotFoundError(f"no recipe results in {folder}")
    results = [json.loads(path.read_text(encoding="utf-8")) for path in files]
    def key(r: dict) -> tuple:
        train = r.get("train", {})
        scorer = train.get("scorer", r["overrides"].get("scorer"))
        return scorer, train.get("attention_temperature") if attention_unit(scorer) else None

    untuned = {key(r): r["val_map"] for r in results if r["overrides"].get("untuned")}
    rows = []
    for r in results:
        groups = {}
        for g, members in groups_of.items():
            vals = [r["val_tasks"][t] for t in members if t in r["val_tasks"]]
            groups[g] = f"{100 * sum(vals) / len(vals):.1f}" if vals else "–"
        over = ", ".join(f"{k}={_recipe_value(v)}" for k, v in r["overrides"].items())
        scorer = key(r)[0]
        base = untuned.get(key(r))
        attention = ("–" if attention_unit(scorer) is None else
                     softness_text(r["softness"]) if r.get("softness") else "not measured")
        gain = ("–" if base is None or r["overrides"].get("untuned")
                else f"{100 * (r['val_map'] - base):+.2f}")
        pairs = r.get("pairs_per_graph") or {}
        minutes = r.get("total_minutes", r["train_minutes"])
        rows.append((r["val_map"], [r["run"], over or "(cpu config)", f"{100 * r['val_map']:.2f}",
                                    gain, *groups.values(), f"{minutes:.1f}",
                                    f"{max(pairs.values()):,}" if pairs else "0",
                                    # results from before train.precision ran fp32 on the CPU
                                    r.get("precision") or "fp32", _cpu_short(r.get("cpu")),
                                    attention]))
    head = ["run", "overrides", "val macro MAP", "gain vs untuned", *groups_of, "minutes",
            "pairs/graph", "precision", "CPU", "attention"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cells) + " |" for _, cells in sorted(rows, key=lambda x: -x[0])]
    return "\n".join(lines) + "\n"
