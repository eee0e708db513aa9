"""Task registry, RankingDataset validation / merging, loaders (tiny files under tmp_path)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from uwe.data import tasks as T


def test_normalize_text():
    assert T.normalize_text("  Pay for \t  Supplies\n") == "pay for supplies"
    assert T.normalize_text("STRASSE") == T.normalize_text("straße")


def test_from_rows_merges_duplicate_queries_and_targets():
    ds = T.RankingDataset.from_rows(
        "job_norm", "full", "test",
        queries=[" Nurse", "Cook", "Nurse ", "Idle"],
        positives=[[2], [0], [1, 3], []],
        targets=["chef", "nurse", "nurse ", "midwife"],
        target_ids=["u:chef", "u:nurse", "u:nurse-dup", "u:mid"])
    assert ds.queries == ["Nurse", "Cook", "Idle"]
    assert ds.targets == ["chef", "nurse", "midwife"]
    assert ds.target_ids == ["u:chef", "u:nurse", "u:mid"]
    assert ds.positives == [[1, 2], [0], []]
    assert ds.summary() == {"n_queries": 3, "n_targets": 3, "n_positives": 3,
                            "n_queries_without_positives": 1}


def test_from_rows_accepts_numpy_ints_and_rejects_bad_indices():
    ds = T.RankingDataset.from_rows("t", "full", "test", ["q"], [np.array([1, 0])], ["a", "b"])
    assert ds.positives == [[0, 1]]
    with pytest.raises(ValueError, match=r"full/t/test: query row 1 \('r'\).*index 5"):
        T.RankingDataset.from_rows("t", "full", "test", ["q", "r"], [[0], [5]], ["a", "b"])
    with pytest.raises(ValueError, match="not an int"):
        T.RankingDataset.from_rows("t", "full", "test", ["q"], [[0.5]], ["a", "b"])
    with pytest.raises(ValueError, match="empty target space"):
        T.RankingDataset.from_rows("t", "full", "test", ["q"], [[]], [])
    with pytest.raises(ValueError, match="query row 0 is empty"):
        T.RankingDataset.from_rows("t", "full", "test", ["  "], [[0]], ["a"])


def test_post_init_validation():
    with pytest.raises(ValueError, match="heldout/x/val: empty target space"):
        T.RankingDataset("x", "heldout", "val", ["q"], [], [[]])
    with pytest.raises(ValueError, match=r"query row 0 \('q'\): positive index 2 out of range"):
        T.RankingDataset("x", "heldout", "val", ["q"], ["a", "b"], [[2]])
    with pytest.raises(ValueError, match="sorted and unique"):
        T.RankingDataset("x", "heldout", "val", ["q"], ["a", "b"], [[1, 0]])
    with pytest.raises(ValueError, match="duplicate query 'q'.*from_rows"):
        T.RankingDataset("x", "heldout", "val", ["q", "q"], ["a"], [[0], [0]])
    with pytest.raises(ValueError, match="duplicate target"):
        T.RankingDataset("x", "heldout", "val", ["q"], ["a", "a"], [[0]])
    with pytest.raises(ValueError, match="2 queries but 1 positive"):
        T.RankingDataset("x", "heldout", "val", ["q", "r"], ["a"], [[0]])


def test_registry_is_consistent():
    names = [t.name for t in T.TASKS]
    assert len(names) == len(set(names))
    grouped = [t for members in T.TASK_GROUPS.values() for t in members]
    assert sorted(grouped) == sorted(t.name for t in T.TASKS if t.in_macro)
    for t in T.TASKS:
        assert (t.group is not None) == t.in_macro
        for family, splits in t.splits:
            assert family in T.FAMILIES and set(splits) <= set(T.SPLITS)
    assert set(T.TASK_GROUPS) == {"job2skill", "skill2job", "job_norm", "skill_norm",
                                  "skill_extraction", "skill_sim"}
    assert T.registered_tasks("zeroshot") == ["onet_job2skill", "onet_skill2job",
                                              "skillsfuture_norm"]


def test_macro_average():
    per_task = {"job2skill": 0.2, "skill2job": 0.4, "skill_extraction_house": 0.1,
                "skill_extraction_tech": 0.3, "skill_extraction_techwolf": 0.9}
    # groups: 0.2, 0.4, mean(0.1, 0.3) = 0.2 -> 0.8 / 3
    assert math.isclose(T.macro_average(per_task), 0.8 / 3)
    assert math.isclose(T.macro_average({"skill_extraction_house": 0.5}), 0.5)
    with pytest.raises(ValueError, match="belongs to a WorkBench group"):
        T.macro_average({"onet_job2skill": 0.3})
    with pytest.raises(ValueError, match="non-finite"):
        T.macro_average({"job2skill": float("nan")})


def _write_task(root: Path, family: str, name: str, split: str, queries, positives, targets,
                target_ids=None, drop: str | None = None) -> Path:
    d = root / "tasks" / family / name / split
    d.mkdir(parents=True, exist_ok=True)
    q = {"query": pa.array(queries, pa.string()),
         "positives": pa.array(positives, pa.list_(pa.int32()))}
    t = {"target": pa.array(targets, pa.string())}
    if target_ids is not None:
        t["target_id"] = pa.array(target_ids, pa.string())
    for cols in (q, t):
        cols.pop(drop, None)
    pq.write_table(pa.table(q), d / "queries.parquet")
    pq.write_table(pa.table(t), d / "targets.parquet")
    return d


def test_load_task_roundtrip_and_listing(tmp_path):
    _write_task(tmp_path, "heldout", "job2skill", "test", ["nurse", "cook", "nurse"],
                [[1], [0], [0]], ["cooking", "caring"], ["u:1", "u:2"])
    _write_task(tmp_path, "heldout", "job_norm", "val", ["RN"], [[0]], ["nurse"])
    ds = T.load_task("job2skill", "heldout", "test", root=tmp_path)
    assert ds.queries == ["nurse", "cook"]
    assert ds.positives == [[0, 1], [0]]
    assert ds.target_ids == ["u:1", "u:2"]
    assert (ds.name, ds.family, ds.split) == ("job2skill", "heldout", "test")
    assert T.list_tasks("heldout", root=tmp_path) == ["job2skill", "job_norm"]
    assert T.list_tasks("heldout", root=tmp_path, split="val") == ["job_norm"]
    assert T.list_tasks("full", root=tmp_path) == []
    assert T.list_splits("job_norm", "heldout", tmp_path) == ["val"]
    assert T.load_task("job_norm", "heldout", "val", root=tmp_path).target_ids is None


def test_load_task_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown task family 'nope'.*full, heldout, zeroshot"):
        T.load_task("job2skill", "nope", root=tmp_path)
    with pytest.raises(ValueError, match="unknown task 'jobs'.*registered: job2skill"):
        T.load_task("jobs", "heldout", root=tmp_path)
    with pytest.raises(ValueError, match="unknown task 'onet_job2skill' for family 'heldout'"):
        T.load_task("onet_job2skill", "heldout", root=tmp_path)
    with pytest.raises(ValueError, match="unknown split 'train'.*registered: val, test"):
        T.load_task("job2skill", "heldout", "train", root=tmp_path)
    with pytest.raises(ValueError, match="unknown split 'val' for full/job2skill"):
        T.load_task("job2skill", "full", "val", root=tmp_path)
    with pytest.raises(FileNotFoundError, match="queries.parquet.*curate"):
        T.load_task("job2skill", "heldout", "test", root=tmp_path)
    _write_task(tmp_path, "heldout", "skill_norm", "test", ["a"], [[0]], ["b"], drop="positives")
    with pytest.raises(ValueError, match="queries.parquet: missing column 'positives'"):
        T.load_task("skill_norm", "heldout", "test", root=tmp_path)
    _write_task(tmp_path, "heldout", "skill_norm", "val", ["a"], [[3]], ["b"])
    with pytest.raises(ValueError, match=r"queries\.parquet.*query row 0.*out of range"):
        T.load_task("skill_norm", "heldout", "val", root=tmp_path)
    _write_task(tmp_path, "full", "skill_norm", "val", [], [], [])
    with pytest.raises(ValueError, match="targets.parquet: empty target space"):
        T.load_task("skill_norm", "full", "val", root=tmp_path)


def test_load_graph(tmp_path):
    g = tmp_path / "graphs"
    g.mkdir()
    pq.write_table(pa.table({"left": ["python", "sql"], "right": ["developer", "analyst"]}),
                   g / "sj.parquet")
    df = T.load_graph("sj", root=tmp_path)
    assert df.columns.tolist() == ["left", "right"] and len(df) == 2
    with pytest.raises(FileNotFoundError, match="sa.parquet.*curate"):
        T.load_graph("sa", root=tmp_path)
    with pytest.raises(ValueError, match="unknown graph 'xx'"):
        T.load_graph("xx", root=tmp_path)
    pq.write_table(pa.table({"left": ["a"], "other": ["b"]}), g / "jj.parquet")
    with pytest.raises(ValueError, match="jj.parquet: missing column 'right'"):
        T.load_graph("jj", root=tmp_path)
    pq.write_table(pa.table({"left": pa.array([], pa.string()),
                             "right": pa.array([], pa.string())}), g / "ss.parquet")
    with pytest.raises(ValueError, match="no edges"):
        T.load_graph("ss", root=tmp_path)
    pq.write_table(pa.table({"left": ["a", " "], "right": ["b", "c"]}), g / "sv.parquet")
    with pytest.raises(ValueError, match="column 'left' has an empty value at row 1"):
        T.load_graph("sv", root=tmp_path)
