"""Evaluation harness: chunked == unchunked, format of workbench.md §6, atomic JSON output."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from uwe.bench import evaluation
from uwe.bench.evaluation import (
    evaluate,
    evaluate_dataset,
    evaluate_to_file,
    summarize,
    write_results,
)
from uwe.core.metrics import mean_ci, ranking_metrics, ranking_metrics_per_query
from uwe.data.dataset import RankingDataset
from uwe.data.tasks import TASK_GROUPS, macro_average
from uwe.model.baselines import TfidfCharBaseline

SKILLS = [
    "python",
    "java",
    "sql",
    "bake bread",
    "decorate cakes",
    "drive forklift",
    "load trucks",
    "teach maths",
    "grade exams",
    "manage team",
]


def _dataset(name: str, family: str = "full") -> RankingDataset:
    queries = ["python developer", "baker", "truck driver", "teacher", "nobody", "manager java"]
    positives = [[0, 1, 2], [3, 4], [5, 6], [7, 8], [], [1, 9]]
    return RankingDataset(name, family, "test", queries, list(SKILLS), positives)


@pytest.fixture
def fake_tasks(monkeypatch):
    """Every WorkBench task + one task outside the groups, served from memory."""
    names = [t for ts in TASK_GROUPS.values() for t in ts] + ["skill_extraction_techwolf"]
    calls = []

    def load_task(name, family="heldout", split="test", root="data/curated"):
        calls.append((name, family, split, str(root)))
        return _dataset(name, family)

    monkeypatch.setattr(evaluation.task_lib, "load_task", load_task)
    monkeypatch.setattr(evaluation.task_lib, "list_tasks", lambda family, root, split: names)
    return names, calls


class CountingModel(TfidfCharBaseline):
    """TF-IDF that counts index builds and records chunk sizes."""

    def __init__(self):
        super().__init__()
        self.n_index, self.chunks = 0, []

    def index_targets(self, targets):
        self.n_index += 1
        return super().index_targets(targets)

    def score_index(self, queries, index):
        self.chunks.append(len(queries))
        return super().score_index(queries, index)


class ScoreOnly:
    """A model with only ``score``: the harness must fall back to it."""

    name = "score-only"

    def score(self, queries, targets):
        return TfidfCharBaseline().score(queries, targets)


def test_chunked_equals_full_matrix_and_indexes_once():
    ds, model = _dataset("job2skill"), CountingModel()
    full_scores = TfidfCharBaseline().score(ds.queries, ds.targets)
    expected = ranking_metrics(full_scores, ds.positives, evaluation.EVAL_METRICS)
    res = evaluate_dataset(model, ds, query_chunk=4)
    assert model.n_index == 1 and model.chunks == [4, 2]
    for m, v in expected.items():
        assert res[m] == pytest.approx(v, abs=1e-12)
        assert 0.0 <= res[m] <= 1.0
    assert res["n_queries"] == 5 and res["n_targets"] == len(SKILLS) and res["seconds"] >= 0
    per_q = ranking_metrics_per_query(full_scores, ds.positives, ["map"])["map"]
    _, lo, hi = mean_ci(per_q)
    assert res["map_ci"] == pytest.approx([lo, hi])
    for chunk in (1, 1000):
        other = evaluate_dataset(model, ds, query_chunk=chunk)
        assert all(other[m] == pytest.approx(res[m], abs=1e-12) for m in expected)
    assert evaluate_dataset(ScoreOnly(), ds, query_chunk=2)["map"] == pytest.approx(res["map"])


def test_bad_score_shape_and_chunk_are_errors():
    class Bad(ScoreOnly):
        def score(self, queries, targets):
            return np.zeros((len(queries), len(targets) - 1), np.float32)

    with pytest.raises(ValueError, match="shape"):
        evaluate_dataset(Bad(), _dataset("job2skill"))
    with pytest.raises(ValueError, match="query_chunk"):
        evaluate_dataset(ScoreOnly(), _dataset("job2skill"), query_chunk=0)


def test_evaluate_format_groups_and_macro(fake_tasks, tmp_path):
    names, calls = fake_tasks
    res = evaluate(TfidfCharBaseline(), "heldout", root=tmp_path, progress=False)
    assert [c[0] for c in calls] == names and {c[1:3] for c in calls} == {("heldout", "test")}
    assert res["model"] == "tfidf_char" and res["family"] == "heldout" and res["split"] == "test"
    assert list(res["tasks"]) == names and set(res["groups"]) == set(TASK_GROUPS)
    task = res["tasks"]["job2skill"]
    assert {
        "map",
        "rp@10",
        "mrr",
        "recall@10",
        "hit@10",
        "ndcg@10",
        "map_ci",
        "rp@10_ci",
        "n_queries",
        "n_targets",
        "seconds",
    } <= set(task)
    for m in ("map", "rp@10"):
        per_task = {t: r[m] for t, r in res["tasks"].items()}
        assert res["macro"][m] == pytest.approx(macro_average(per_task))
        group_vals = [g[m] for g in res["groups"].values()]
        assert res["macro"][f"{m}_ci"] == pytest.approx(list(mean_ci(group_vals)[1:]))
    assert res["macro"]["n_groups"] == 6


def test_summarize_partial_groups():
    per_task = {
        "skill_extraction_house": {"map": 0.2},
        "skill_extraction_tech": {"map": 0.4},
        "job2skill": {"map": 0.5},
        "skill_extraction_techwolf": {"map": 0.9},
    }
    groups, macro = summarize(per_task, ["map"])
    assert groups == {"job2skill": {"map": 0.5}, "skill_extraction": {"map": pytest.approx(0.3)}}
    assert macro["map"] == pytest.approx(0.4) and macro["n_groups"] == 2
    _, none = summarize({"onet_job2skill": {"map": 0.3}}, ["map"])
    assert none == {"map": None, "map_ci": [None, None], "n_groups": 0}


def test_write_results_is_strict_json_and_atomic(tmp_path):
    path = write_results(
        {"macro": {"map": float("nan"), "x": np.float32(0.5)}}, tmp_path / "a" / "b.json"
    )
    text = path.read_text()
    assert json.loads(text) == {"macro": {"map": None, "x": 0.5}} and "NaN" not in text
    assert [p.name for p in path.parent.iterdir()] == ["b.json"]


def test_evaluate_to_file_path(fake_tasks, tmp_path):
    path = evaluate_to_file(
        TfidfCharBaseline(),
        "org/My-Model",
        "full",
        out_dir=tmp_path / "wb",
        root=tmp_path,
        progress=False,
        tasks=["job2skill"],
        metrics=("map", "rp@10"),
    )
    assert path == tmp_path / "wb" / "full" / "My-Model.json"
    res = json.loads(path.read_text())
    assert res["model"] == "org/My-Model" and list(res["tasks"]) == ["job2skill"]
    value = res["tasks"]["job2skill"]["map"]
    assert res["macro"]["n_groups"] == 1 and math.isclose(res["macro"]["map"], value)
    assert res["macro"]["map_ci"] == pytest.approx([value, value])  # one unit: zero width


def test_index_cache_indexes_a_shared_target_space_once():
    from uwe.bench.evaluation import TargetIndexes

    calls = []

    class Model:
        def index_targets(self, targets):
            calls.append(tuple(targets))
            return list(targets)

    cache = TargetIndexes(size=1)
    model = Model()
    assert cache.get(model, ["a", "b"]) == ["a", "b"]
    assert cache.get(model, ["a", "b"]) == ["a", "b"]
    assert calls == [("a", "b")]
    cache.get(model, ["c"])  # evicts ["a", "b"] (size 1)
    cache.get(model, ["a", "b"])
    assert calls == [("a", "b"), ("c",), ("a", "b")]


def test_query_memo_reuses_queries_and_gives_identical_results():
    ds, model = _dataset("job2skill"), CountingModel()
    memo = evaluation.QueryMemo()
    first = evaluate_dataset(model, ds, query_chunk=4, memo=memo)
    assert sum(model.chunks) == len(ds.queries)
    # a subset with identical positives (the heldout situation): nothing is scored again
    sub = RankingDataset("job2skill", "heldout", "test", ds.queries[1:4], ds.targets,
                         ds.positives[1:4])
    model.chunks.clear()
    again = evaluate_dataset(model, sub, memo=memo)
    fresh = evaluate_dataset(CountingModel(), sub)
    assert model.chunks == []
    for m in evaluation.EVAL_METRICS:
        assert again[m] == pytest.approx(fresh[m], abs=1e-12)
        assert again[f"{m}_ci"] == pytest.approx(fresh[f"{m}_ci"])
    # different positives for the same query text, or another target space: scored again
    changed = RankingDataset("x", "heldout", "test", ds.queries[:2], ds.targets,
                             [[0], ds.positives[1]])
    res = evaluate_dataset(model, changed, memo=memo)
    assert model.chunks == [1]
    assert res["map"] == pytest.approx(evaluate_dataset(CountingModel(), changed)["map"])
    other = RankingDataset("y", "heldout", "test", ds.queries[:2], ds.targets[::-1],
                           [[9], [5, 6]])
    model.chunks.clear()
    evaluate_dataset(model, other, memo=memo)
    assert model.chunks == [2]
    assert first["n_queries"] == 5


def test_subsample_queries_is_seeded_and_keeps_positives():
    ds = _dataset("job2skill")
    a = evaluation.subsample_queries(ds, 3, seed=1)
    b = evaluation.subsample_queries(ds, 3, seed=1)
    assert a.queries == b.queries and len(a.queries) == 3
    assert all(len(p) > 0 for p in a.positives)
    for q, p in zip(a.queries, a.positives, strict=True):
        assert p == ds.positives[ds.queries.index(q)]
    assert evaluation.subsample_queries(ds, None) is ds
    assert evaluation.subsample_queries(ds, 100) is ds
    with pytest.raises(ValueError, match="max_queries"):
        evaluation.subsample_queries(ds, 0)
