"""Frozen-bottom caching (uwe.train.frozen) and mined hard negatives (uwe.train.negatives) on a tiny
3-layer random BERT: the cached forward equals the full forward, a frozen run trains only the
top, resumes after a crash to the same weights, and the disk cache is a pure function of its
key."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from test_training import read_log, run, tiny_cfg, write_tiny_curated

from uwe.core.batching import GraphSampler
from uwe.model.encoder import TokenEncoder
from uwe.train import loop as training
from uwe.train.frozen import (
    BottomCache,
    CachedTopEncoder,
    cache_key,
    freeze_bottom,
    use_cached_bottom,
)
from uwe.train.negatives import mine_pool


@pytest.fixture(scope="module")
def setup(tmp_path_factory, backbone_factory):
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("uwe_frozen")
    return backbone_factory(3), write_tiny_curated(base / "curated")


TEXTS = ["data scientist", "welding", "perform data analysis on large data sets", "nurse",
         "we need python and sql for the team", "a"]


@pytest.mark.parametrize("k", [1, 2])
def test_cached_forward_equals_the_full_forward(setup, k):
    backbone, _ = setup
    enc = TokenEncoder.from_pretrained(backbone, max_length=16).eval()
    exact = CachedTopEncoder(enc, k, BottomCache.build(enc, k, TEXTS, dtype="float32"))
    half = CachedTopEncoder(enc, k, BottomCache.build(enc, k, TEXTS, dtype="float16"))
    queries = [*TEXTS, "welding nurse", TEXTS[2] + " " + TEXTS[0]]  # 2 texts not in the cache
    with torch.no_grad():
        full, mask = enc(queries)
        for top, tol in ((exact, 1e-5), (half, 2e-2)):
            emb, m = top(queries)
            assert torch.equal(m, mask)
            err = ((emb - full).abs() * mask[..., None]).max()
            assert err <= tol * full.abs().max(), (top.cache.tokens.dtype, float(err))
    assert exact.misses == 2
    np.testing.assert_array_equal(exact.token_lengths(queries), enc.token_lengths(queries))


def test_freeze_bottom_leaves_only_the_top_trainable(setup):
    backbone, _ = setup
    enc = TokenEncoder.from_pretrained(backbone)
    freeze_bottom(enc.backbone, 2)
    trainable = {n.split(".")[0] + "." + n.split(".")[2] if n.startswith("encoder") else
                 n.split(".")[0] for n, p in enc.backbone.named_parameters() if p.requires_grad}
    assert trainable == {"encoder.2"}
    with pytest.raises(ValueError, match=r"frozen_layers must be in \[0, 2\].*got 3"):
        freeze_bottom(enc.backbone, 3)


def test_disk_cache_is_reused_and_a_damaged_file_is_rebuilt(setup, tmp_path):
    backbone, _ = setup
    enc = TokenEncoder.from_pretrained(backbone, max_length=16).eval()
    a, hit = BottomCache.load_or_build(enc, 2, TEXTS, cache_dir=tmp_path)
    assert not hit and len(list(tmp_path.glob("*.safetensors"))) == 1
    b, hit = BottomCache.load_or_build(enc, 2, TEXTS, cache_dir=tmp_path)
    assert hit and torch.equal(a.tokens, b.tokens) and torch.equal(a.start, b.start)
    # another text list or another K is another key
    assert cache_key(enc, 2, TEXTS, "float16") != cache_key(enc, 2, TEXTS[:-1], "float16")
    assert cache_key(enc, 2, TEXTS, "float16") != cache_key(enc, 1, TEXTS, "float16")
    path = next(tmp_path.glob("*.safetensors"))
    path.write_bytes(path.read_bytes()[:100])
    c, hit = BottomCache.load_or_build(enc, 2, TEXTS, cache_dir=tmp_path)
    assert not hit and torch.equal(a.tokens, c.tokens)
    assert BottomCache.load_or_build(enc, 2, TEXTS, cache_dir=tmp_path)[1]


def test_frozen_training_updates_only_the_top_and_the_loss_goes_down(setup, tmp_path):
    backbone, root = setup
    cfg = tiny_cfg(backbone, steps=30, warmup=0.0, eval_every=0, lr=3e-3, frozen_layers=2,
                   frozen_cache_dir=str(tmp_path / "cache"))
    summary = run(cfg, root, tmp_path)
    assert summary["frozen_cache"]["texts"] > 50
    losses = [float(r["loss"]) for r in read_log(tmp_path / "log.csv")]
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])
    before = load_file(f"{backbone}/model.safetensors")
    after = load_file(tmp_path / "model" / "model.safetensors")
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert changed and all(k.startswith("encoder.layer.2.") for k in changed), sorted(changed)


def test_frozen_run_resumes_after_a_crash_to_the_same_weights(setup, tmp_path, monkeypatch):
    backbone, root = setup
    cfg = tiny_cfg(backbone, frozen_layers=2, hard_negatives=1, hard_negative_pool=3,
                   frozen_cache_dir="")  # memory only: the resumed run rebuilds the cache
    straight = run(cfg, root, tmp_path / "a")
    real_step, calls = training.Trainer.train_step, {"n": 0}

    def crashing_step(self):
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("simulated crash")
        return real_step(self)

    monkeypatch.setattr(training.Trainer, "train_step", crashing_step)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(cfg, root, tmp_path / "b")
    monkeypatch.setattr(training.Trainer, "train_step", real_step)
    resumed = run(cfg, root, tmp_path / "b")
    assert resumed["resumed_from"] == 3 and resumed["steps_done"] == 6
    a = load_file(tmp_path / "a" / "ckpt" / "last" / "model.safetensors")
    b = load_file(tmp_path / "b" / "ckpt" / "last" / "model.safetensors")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-5
    assert resumed["best_val_map"] == pytest.approx(straight["best_val_map"], abs=1e-6)
    np.testing.assert_allclose([float(r["loss"]) for r in read_log(tmp_path / "b" / "log.csv")],
                               [float(r["loss"]) for r in read_log(tmp_path / "a" / "log.csv")],
                               atol=1e-5)


def test_mined_pool_excludes_neighbours_and_is_sorted():
    left = np.eye(3, dtype=np.float32)
    right = np.array([[1, 0, 0], [0.9, 0.1, 0], [0.5, 0.5, 0], [0, 0, 1]], np.float32)
    right /= np.linalg.norm(right, axis=1, keepdims=True)
    offsets = np.array([0, 1, 1, 3])  # left 0 -> {0}; left 1 -> {}; left 2 -> {2, 3}
    neighbours = np.array([0, 2, 3])
    pool = mine_pool(left, right, offsets, neighbours, pool=5)
    assert pool[0].tolist()[:3] == [1, 2, 3] and 0 not in pool[0]
    assert pool[1].tolist()[:2] == [2, 1] and pool[1, 4] == -1  # only 4 rights
    assert set(pool[2][pool[2] >= 0]) == {0, 1}


def test_sampler_adds_hard_negatives_that_stay_positives_where_linked():
    edges = pd.DataFrame({"left": ["a", "a", "b", "c"], "right": ["x", "y", "y", "z"]})
    s = GraphSampler(edges, 3, torch.Generator().manual_seed(0))
    # pools: a -> z; b -> x; c -> x (ids in sorted order: x=0, y=1, z=2)
    s.set_hard_negatives(np.array([[2, -1], [0, -1], [0, -1]]), 1)
    b = s.sample()
    assert set(b.right_texts) == {"x", "y", "z"}
    col = {t: j for j, t in enumerate(b.right_texts)}
    row = {t: i for i, t in enumerate(b.left_texts)}
    assert b.positive_mask[row["a"], col["x"]] and not b.positive_mask[row["b"], col["x"]]
    with pytest.raises(ValueError, match="pool must be"):
        s.set_hard_negatives(np.zeros((2, 1), np.int64), 1)


def test_mined_pools_are_stored_and_reused(setup, tmp_path):
    backbone, root = setup
    cfg = tiny_cfg(backbone, steps=2, eval_every=0, frozen_layers=1, hard_negatives=2,
                   hard_negative_pool=4, hard_negative_graphs=("sj", "jj"),
                   frozen_cache_dir=str(tmp_path / "cache"))
    first = run(cfg, root, tmp_path / "a")
    pools = sorted(p.name.split("-")[1] for p in (tmp_path / "cache").glob("hardneg-*.npy"))
    assert pools == ["jj", "sj"] and first["hard_negatives"]["graphs"] == ["sj", "jj"]
    again = run(cfg, root, tmp_path / "b")
    assert again["last_loss"] == first["last_loss"]
    with pytest.raises(ValueError, match="not trained"):
        run(tiny_cfg(backbone, steps=1, hard_negatives=1, hard_negative_graphs=("xx",)), root,
            tmp_path / "c")


def test_evaluation_through_the_cached_bottom_scores_as_the_full_model(setup, tmp_path):
    """A model trained with frozen_layers=2 scored through the backbone's cached bottom
    (uwe.train.frozen.use_cached_bottom, the analyses' evaluation) equals its full forward; a model
    whose bottom differs from the backbone's is left alone."""
    from uwe.model.uwe_model import load
    from uwe.pipeline.analyses import evaluation_bottom, frozen_layers_of

    backbone, root = setup
    cfg = tiny_cfg(backbone, steps=3, eval_every=0, lr=3e-3, frozen_layers=2,
                   frozen_cache_dir=str(tmp_path / "cache"))
    run(cfg, root, tmp_path)
    queries, targets = TEXTS[:4], [*TEXTS[2:], "python"]  # "python" not in the cache
    model = load(tmp_path / "model")
    assert frozen_layers_of(model) == 2
    full = model.score(queries, targets)
    cache, reference = evaluation_bottom(model, 2, TEXTS, str(tmp_path / "cache"))
    assert use_cached_bottom(model, cache, 2, reference)
    assert isinstance(model.encoder, CachedTopEncoder)
    np.testing.assert_allclose(model.score(queries, targets), full, atol=1e-5)
    assert model.encoder.misses > 0  # the text the cache lacks went through the bottom
    other = load(tmp_path / "model")
    with torch.no_grad():
        other.encoder.backbone.embeddings.word_embeddings.weight[0, 0] += 1.0
    assert not use_cached_bottom(other, cache, 2, reference)
    assert not use_cached_bottom(load(tmp_path / "model"), cache, 0, reference)
