"""uwe.pipeline.findings: what each stage found, in sentences made from its results (here the
committed results of the last full run), with no timing but the latency stage's."""

from __future__ import annotations

import json
import re
from pathlib import Path

from uwe.pipeline import findings

METRICS = Path(__file__).resolve().parents[1] / "metrics"


def read(name: str):
    return json.loads((METRICS / name).read_text())


def test_fetch_counts_files_by_where_they_came_from():
    text = findings.fetch({"a.csv": "mirror", "b.zip": "mirror", "c.xlsx": "cache"})
    assert text == ("3 files fetched and verified against their checksums (1 from cache, "
                    "2 from mirror).")


def test_curate_states_tasks_graphs_and_the_audit():
    report = read("curation.json")
    text = findings.curate(report)
    assert f"{len(report['tasks']['heldout'])} heldout" in text
    assert f"{len(report['graphs'])} training graphs" in text
    edges = sum(g["n_edges"] for g in report["graphs"].values())
    assert f"{edges:,} edges" in text and "finds 0 heldout" in text


def test_training_states_the_validation_that_chose_the_model_and_no_seconds():
    summary = read("train.json")
    text = findings.training(summary)
    assert text.startswith(f"{summary['steps_done']} of {summary['steps']} steps in "
                           f"{summary['precision']} on cpu")
    assert f"step {summary['best_step']} ({100 * summary['best_val_map']:.2f})" in text
    assert str(summary["seconds"]) not in text and " s " not in text


def test_evaluation_states_each_family():
    results = {f: read(f"workbench/{f}/uwe.json") for f in ("full", "heldout", "zeroshot")}
    text = findings.evaluation("uwe", results)
    assert f"heldout: macro MAP {100 * results['heldout']['macro']['map']:.1f}" in text
    assert "zeroshot: mean MAP" in text  # no task group there: the mean over its tasks


def test_variant_states_the_seed_spread():
    result = read("ablations/reference.json")
    text = findings.variant(result)
    maps = [e["evaluation"]["macro"]["map"] for e in result["seeds"]]
    assert f"over {len(maps)} seed(s)" in text and re.search(r"\d\d\.\d\d ± \d\.\d\d", text)


def test_claims_count_the_verdicts_and_name_what_fails():
    rows = [{"claim": "A", "verdict": "holds"}, {"claim": "B", "verdict": "does not hold"},
            {"claim": "C", "verdict": "holds"}]
    assert findings.claims(rows) == ("Of the paper's 3 claims checked here: 2 holds, 1 does not "
                                     "hold. Not holding here: B.")


def test_latency_is_the_timed_exception():
    report = read("latency.json")
    text = findings.latency(report)
    assert all(name in text for name in report["models"]) and " ms" in text
