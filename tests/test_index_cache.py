"""uwe.infer.index_cache without a model: the memory-mapped reader, entries as arrays, target
lists."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from uwe.infer.index_cache import (
    FORMAT_VERSION,
    IndexCache,
    file_source_key,
    model_fingerprint,
    targets_sha256,
    task_source_key,
)
from uwe.infer.numpy_engine import mmap_safetensors

FP = {"kind": "baseline", "spec": "all-MiniLM-L6-v2"}


def test_mmap_safetensors_reads_what_safetensors_wrote(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {
        "f32": rng.standard_normal((3, 4, 5)).astype(np.float32),
        "i64": np.arange(7, dtype=np.int64),
        "mask": rng.random((2, 3)) > 0.5,
        "scalar": np.array(2.5, dtype=np.float64),
        "empty": np.zeros((0, 4), dtype=np.float32),
    }
    path = tmp_path / "x.safetensors"
    save_file(arrays, str(path), metadata={"nonce": "abc"})
    got, meta = mmap_safetensors(path)
    ref = load_file(str(path))
    assert meta == {"nonce": "abc"} and set(got) == set(ref) == set(arrays)
    for k, v in ref.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape
        np.testing.assert_array_equal(got[k], v)
    got["f32"][0, 0, 0] = 99.0  # copy-on-write: the file does not change
    assert load_file(str(path))["f32"][0, 0, 0] == arrays["f32"][0, 0, 0]


@pytest.mark.parametrize("damage", ["truncated", "short", "header"])
def test_mmap_safetensors_rejects_a_damaged_file(tmp_path, damage):
    path = tmp_path / "x.safetensors"
    save_file({"a": np.ones((64, 64), dtype=np.float32)}, str(path))
    data = path.read_bytes()
    path.write_bytes(
        {"truncated": data[:-100], "short": data[:5], "header": data[:8] + b"{" * (len(data) - 8)}[
            damage
        ]
    )
    with pytest.raises(ValueError):
        mmap_safetensors(path)


def test_embedding_entry_round_trip_and_misses(tmp_path):
    cache = IndexCache(tmp_path)
    emb = np.random.default_rng(1).standard_normal((5, 8)).astype(np.float32)
    targets = [f"t{i}" for i in range(5)]
    sha = targets_sha256(targets)
    path = cache.write_entry(FP, sha, 5, "embeddings", {"embeddings": emb})
    got = cache.read_entry(FP, sha, 5, "embeddings")
    np.testing.assert_array_equal(got["embeddings"], emb)
    assert cache.read_entry(FP, sha, 4, "embeddings") is None  # another count
    assert cache.read_entry({**FP, "spec": "other"}, sha, 5, "embeddings") is None
    meta_path = path.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "format_version": FORMAT_VERSION - 1}))
    assert cache.read_entry(FP, sha, 5, "embeddings") is None  # an older format
    meta_path.write_text(json.dumps({**meta, "nonce": "x"}))
    assert cache.read_entry(FP, sha, 5, "embeddings") is None  # torn pair
    meta_path.write_text(json.dumps(meta))
    path.write_bytes(path.read_bytes()[:-8])
    assert cache.read_entry(FP, sha, 5, "embeddings") is None  # truncated tensors


def test_a_uwe_entry_must_hold_the_norms(tmp_path):
    cache = IndexCache(tmp_path)
    arrays = {
        "b000000.index": np.arange(2, dtype=np.int64),
        "b000000.emb": np.ones((2, 3, 4), dtype=np.float32),
        "b000000.mask": np.ones((2, 3), dtype=bool),
        "b000000.norm": np.full((2, 3), 2.0, dtype=np.float32),
    }
    cache.write_entry(FP, "ab" * 32, 2, "uwe", arrays)
    assert set(cache.read_entry(FP, "ab" * 32, 2, "uwe")) == set(arrays)
    del arrays["b000000.norm"]  # as written by format 1
    cache.write_entry(FP, "cd" * 32, 2, "uwe", arrays)
    assert cache.read_entry(FP, "cd" * 32, 2, "uwe") is None


def test_target_lists(tmp_path):
    cache = IndexCache(tmp_path)
    targets = ["bake bread", "sql", "é"]
    assert cache.target_list("k" * 64) is None
    path = cache.save_target_list("k" * 64, targets, origin="test")
    assert cache.target_list("k" * 64) == (targets, targets_sha256(targets))
    assert cache.target_list("j" * 64) is None
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "targets": targets[:2]}))  # sha no longer matches
    assert cache.target_list("k" * 64) is None


def test_source_keys_follow_the_bytes(tmp_path):
    d = tmp_path / "tasks" / "heldout" / "t" / "test"
    assert task_source_key(tmp_path, "heldout", "t", "test") is None
    d.mkdir(parents=True)
    (d / "queries.parquet").write_bytes(b"q1")
    (d / "targets.parquet").write_bytes(b"t1")
    k1 = task_source_key(tmp_path, "heldout", "t", "test")
    (d / "queries.parquet").write_bytes(b"q2")
    k2 = task_source_key(tmp_path, "heldout", "t", "test")
    (d / "targets.parquet").write_bytes(b"t2")
    k3 = task_source_key(tmp_path, "heldout", "t", "test")
    assert len({k1, k2, k3}) == 3
    a, b = tmp_path / "a.csv", tmp_path / "a.tsv"
    a.write_bytes(b"x,y\n")
    b.write_bytes(b"x,y\n")
    assert file_source_key(a) != file_source_key(b)  # parsed differently
    assert file_source_key(a) == file_source_key(a)


def test_model_fingerprint_of_a_baseline_name():
    assert model_fingerprint("bm25") == {"kind": "baseline", "spec": "bm25"}


def test_a_local_folder_s_key_changes_with_its_weights(tmp_path):
    """Replacing model.safetensors of a sentence-transformers folder (same size, or in a module
    sub-folder) gives another key, so the old target embeddings are not reused."""
    import os

    folder = tmp_path / "st"
    (folder / "1_Pooling").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "1_Pooling" / "config.json").write_text('{"pooling_mode": "mean"}')
    weights = folder / "model.safetensors"
    weights.write_bytes(b"a" * 100)
    before = model_fingerprint(str(folder))
    weights.write_bytes(b"b" * 100)
    os.utime(weights, ns=(1, 1))
    assert model_fingerprint(str(folder)) != before
    again = model_fingerprint(str(folder))
    (folder / "1_Pooling" / "config.json").write_text('{"pooling_mode": "cls"}')
    assert model_fingerprint(str(folder)) != again
