"""The paper, claim by claim: what ``notebooks/05_paper.ipynb`` shows a reader who opens the
project first (stage ``paper``).

It reads committed results only -- ``metrics/claims.json`` (the verdicts of
:mod:`uwe.pipeline.claims`), ``metrics/results.md``, ``metrics/curation.json`` and the figures of
``figures/`` -- and walks through them in the order of the paper: WorkBench, the tasks' shared
structure, the method's parts (loss, scorer, synthetic data, the cost of a query), then UWE
against its backbone and the generalists, and unseen target spaces. Every number in the text
comes from those files; the only typed numbers are the paper's own, in ``claims.json``'s
``paper`` field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from uwe.io import read_json


@dataclass(frozen=True)
class Section:
    """One step of the walk-through: a title, what the paper says in a sentence, the claims of
    ``metrics/claims.json`` it decides and the figures that show them."""

    title: str
    paper: str
    claims: tuple[str, ...] = ()
    figures: tuple[str, ...] = ()


#: the walk-through, in the order of the paper (arXiv 2511.07969; ../shared/docs/paper.md)
SECTIONS = (
    Section("WorkBench: six ranking tasks over large target spaces",
            "one evaluation suite of six work-domain tasks, each a ranking problem over a "
            "target space of up to ~14k ESCO skills, scored with MAP and RP@10, "
            "macro-averaged over the task groups"),
    Section("The tasks share structure", "training on one task helps the others",
            ("transfer",), ("transfer_heatmap.png",)),
    Section("The loss: many-to-many InfoNCE",
            "every positive of a graph is a positive, in both directions",
            ("loss_m2m_vs_o2o", "loss_m2m_vs_symmetric"), ("budgets_loss.png",)),
    Section("The scorer: soft late interaction",
            "a softmax attention over the target's tokens, scored with cosines",
            ("scorer_chain", "scorer_sli_vs_mean_target"), ("budgets_scorer.png",)),
    Section("The synthetic training data", "the LLM-written descriptions help",
            ("synthetic",), ("ablations.png",)),
    Section("The cost of a query", "with cached targets, SLI costs about what mean pooling "
            "costs", ("latency",), ("latency_vs_map.png",)),
    Section("UWE against its backbone and the generalist embedders",
            "one task-agnostic bi-encoder beats the generalists on WorkBench",
            ("uwe_vs_backbone", "uwe_vs_generalists"), ("model_comparison_heldout.png",)),
    Section("Unseen target spaces", "UWE ranks zero-shot on O*NET and SkillsFuture",
            ("zeroshot",), ("zeroshot.png",)),
)


@dataclass
class Part:
    """What the notebook shows for one section: Markdown text, a table (or None) and the
    figures that exist."""

    title: str
    text: str
    table: pd.DataFrame | None = None
    figures: list[Path] = field(default_factory=list)

    def show(self) -> None:
        """Display the part in a notebook (Markdown, the table, the figures)."""
        from IPython.display import Image, Markdown, display

        display(Markdown(f"## {self.title}\n\n{self.text}"))
        if self.table is not None:
            display(self.table)
        for path in self.figures:
            display(Image(filename=str(path)))


@dataclass
class Walkthrough:
    summary: pd.DataFrame  # one row per claim: claim, paper, here, verdict
    parts: list[Part]


def claim_text(claim: dict[str, Any]) -> str:
    """A claim of ``metrics/claims.json`` as a paragraph: the claim, the paper's numbers, this
    project's, the difference of the means and its standard error (MAP points: the file holds
    fractions) or, for the latency claim, the SLI / mean-pooling latency ratio, the verdict."""
    d, se = claim.get("d"), claim.get("se")
    stats = ""
    if d is not None and claim.get("id") == "latency":
        stats = f" (latency ratio {d:.2f})"
    elif d is not None:
        stats = f" (d = {100 * d:+.2f} MAP points" + (
            f", se {100 * se:.2f})" if se is not None else ")")
    return (f"**{claim['claim']}.** The paper: {claim['paper']}. Here: {claim['ours']}{stats}"
            f" — **{claim['verdict']}**.")


def workbench_table(metrics_dir: Path) -> pd.DataFrame | None:
    """The heldout test sets (queries, targets) and the leakage audit's overlap counts."""
    path = metrics_dir / "workbench" / "heldout" / "uwe.json"
    curation = metrics_dir / "curation.json"
    if not path.is_file():
        return None
    tasks = read_json(path)["tasks"]
    leaks = (read_json(curation).get("leakage") or {}).get("heldout", {}) if curation.is_file() \
        else {}
    rows = []
    for name, res in tasks.items():
        test = (leaks.get(name) or {}).get("test") or {}
        rows.append({"task": name, "queries": res["n_queries"], "targets": res["n_targets"],
                     "texts seen in training": test.get("query_text_overlap"),
                     "test pairs that are training edges": test.get("pair_overlap")})
    return pd.DataFrame(rows)


def load_walkthrough(root: str | Path) -> Walkthrough:
    """The walk-through of the results committed under ``root`` (module doc). A claim missing
    from ``metrics/claims.json`` is said to be missing, not skipped."""
    root = Path(root)
    metrics = root / "metrics"
    claims = read_json(metrics / "claims.json")
    by_id = claims["claims"]
    summary = pd.DataFrame([{"claim": by_id[c]["claim"], "paper": by_id[c]["paper"],
                             "here": by_id[c]["ours"], "verdict": by_id[c]["verdict"]}
                            for c in claims["order"] if c in by_id])
    parts = []
    for section in SECTIONS:
        lines = [f"*The paper:* {section.paper}."]
        for cid in section.claims:
            lines.append(claim_text(by_id[cid]) if cid in by_id
                         else f"*Claim `{cid}` is not in metrics/claims.json (not measured).*")
        table = workbench_table(metrics) if not section.claims else None
        if table is not None:
            queries, targets = int(table["queries"].sum()), int(table["targets"].max())
            leaks = table[["texts seen in training", "test pairs that are training edges"]]
            lines.append(f"Here: {len(table)} heldout test sets, {queries:,} queries in all, "
                         f"target spaces of up to {targets:,} texts; "
                         f"{int(leaks.fillna(0).to_numpy().sum())} heldout test texts or pairs "
                         f"appear in the training graphs (the leakage audit).")
        figures = [root / "figures" / f for f in section.figures
                   if (root / "figures" / f).is_file()]
        parts.append(Part(section.title, "\n\n".join(lines), table, figures))
    parts.append(Part("How the verdicts are decided", claims.get("rule", "")))
    return Walkthrough(summary, parts)
