"""uwe.pipeline.walkthrough: the paper's claims in its order, each with its numbers and verdict
from the committed results (what notebooks/05_paper.ipynb shows)."""

from __future__ import annotations

import json
from pathlib import Path

from uwe.pipeline import walkthrough

REPO = Path(__file__).resolve().parents[1]


def test_every_claim_the_pipeline_decides_has_a_place_in_the_walkthrough():
    placed = [c for s in walkthrough.SECTIONS for c in s.claims]
    assert len(placed) == len(set(placed))
    claims = json.loads((REPO / "metrics" / "claims.json").read_text())
    assert set(claims["order"]) <= set(placed), "a new claim needs a section"


def test_the_walkthrough_of_the_committed_results(tmp_path):
    story = walkthrough.load_walkthrough(REPO)
    claims = json.loads((REPO / "metrics" / "claims.json").read_text())
    assert list(story.summary["verdict"]) == [claims["claims"][c]["verdict"]
                                              for c in claims["order"]]
    assert [p.title for p in story.parts][:-1] == [s.title for s in walkthrough.SECTIONS]
    workbench = story.parts[0]
    assert workbench.table is not None and len(workbench.table) >= 6
    assert f"{int(workbench.table['queries'].sum()):,} queries" in workbench.text
    latency = next(p for p in story.parts if "latency" in p.text or "cost" in p.title.lower())
    claim = claims["claims"]["latency"]
    assert claim["ours"] in latency.text and f"**{claim['verdict']}**" in latency.text
    assert all(f.is_file() for p in story.parts for f in p.figures)

    # a claim the results do not hold is said to be missing, not skipped
    (tmp_path / "metrics").mkdir()
    partial = {**claims, "claims": {k: v for k, v in claims["claims"].items() if k != "zeroshot"}}
    (tmp_path / "metrics" / "claims.json").write_text(json.dumps(partial))
    last = walkthrough.load_walkthrough(tmp_path).parts[-2]
    assert "`zeroshot` is not in metrics/claims.json" in last.text and last.figures == []


def test_claim_text_states_the_numbers_and_the_verdict():
    text = walkthrough.claim_text({"id": "x", "claim": "A > B", "paper": "2 vs 1",
                                   "ours": "3 vs 1", "d": 0.02, "se": 0.0025,
                                   "verdict": "holds"})
    assert text == ("**A > B.** The paper: 2 vs 1. Here: 3 vs 1 (d = +2.00 MAP points, se 0.25)"
                    " — **holds**.")
    latency = walkthrough.claim_text({"id": "latency", "claim": "x", "paper": "p", "ours": "o",
                                      "d": 3.7, "se": None, "verdict": "does not hold"})
    assert "(latency ratio 3.70)" in latency and "MAP" not in latency
