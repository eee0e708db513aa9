"""uwe.workrb_adapter: UWE scored by WorkRB's own evaluate() equals uwe.bench.evaluation."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from uwe.bench.evaluation import evaluate_dataset
from uwe.data.dataset import RankingDataset
from uwe.model.uwe_model import UWEModel

QUERIES = [
    "data scientist",
    "baker",
    "truck driver",
    "nurse",
    "software developer",
    "chef",
    "accountant",
    "gardener",
]
TARGETS = [
    "python programming",
    "bake bread",
    "drive a truck",
    "care for patients",
    "statistics",
    "manage a team",
    "use spreadsheets",
    "sql",
    "knead dough",
    "logistics",
    "first aid",
    "machine learning",
    "cook food",
    "prepare budgets",
    "prune trees",
    "plant flowers",
    "audit accounts",
    "read maps",
]
POSITIVES = [[0, 4, 7, 11], [1, 8], [2, 9, 17], [3, 10], [0, 5, 7], [1, 12], [6, 13, 16], [14, 15]]


@pytest.fixture(scope="module")
def model(tiny_backbone) -> UWEModel:
    torch.set_num_threads(1)
    return UWEModel.from_backbone(tiny_backbone, device="cpu", batch_size=8)


def test_missing_extra_names_the_install(monkeypatch):
    from uwe import workrb_adapter

    monkeypatch.setitem(sys.modules, "workrb", None)  # import workrb -> ImportError
    workrb_adapter._model_class.cache_clear()
    try:
        with pytest.raises(ImportError, match=r"uwe\[workrb\]|workrb=="):
            workrb_adapter.as_workrb_model(object())
    finally:
        workrb_adapter._model_class.cache_clear()


def test_workrb_evaluate_equals_uwe_evaluation(model, tmp_path):
    workrb = pytest.importorskip("workrb")
    from uwe.workrb_adapter import as_workrb_model, workrb_task

    ds = RankingDataset("job2skill", "heldout", "test", QUERIES, TARGETS, POSITIVES)
    scores = model.score(QUERIES, TARGETS)
    assert all(len(np.unique(row)) == len(row) for row in scores)  # no ties: same ranking
    adapter = as_workrb_model(model, name="uwe-tiny")
    task = workrb_task(ds)
    assert task.query_input_type.value == "job_title"
    res = workrb.evaluate(adapter, [task], output_folder=str(tmp_path / "workrb"))
    got = res.task_results[task.name].datasetid_results["en"].metrics_dict
    ref = evaluate_dataset(model, ds, metrics=("map", "rp@10", "mrr"))
    for m in ("map", "rp@10", "mrr"):
        assert got[m] == pytest.approx(ref[m], abs=1e-6), m
    matrix = adapter.compute_rankings(
        QUERIES, TARGETS, task.query_input_type, task.target_input_type
    )
    np.testing.assert_array_equal(matrix.numpy(), scores)


def test_a_spec_is_loaded_through_the_ranker_api(monkeypatch):
    pytest.importorskip("workrb")
    from uwe.infer.ranker import Ranker
    from uwe.model.baselines import BM25Baseline
    from uwe.workrb_adapter import as_workrb_model

    seen = []
    real_model = Ranker.model
    monkeypatch.setattr(Ranker, "model", lambda self: seen.append(self.options) or real_model(self))
    adapter = as_workrb_model("bm25", device="cpu", batch_size=7)
    assert isinstance(adapter.model, BM25Baseline) and adapter.name == "UWE-bm25"
    assert [(o.model, o.device, o.batch_size, o.engine) for o in seen] == [
        ("bm25", "cpu", 7, "torch")]
    scores = adapter.compute_rankings(["bake bread"], ["drive a truck", "bake bread"])
    assert scores.shape == (1, 2) and scores[0, 1] > scores[0, 0]
    with pytest.raises(ValueError, match=r"unknown --device 'gpu'"):
        as_workrb_model("bm25", device="gpu")
