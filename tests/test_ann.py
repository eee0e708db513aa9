"""uwe.infer.ann: two-stage (FAISS mean-pooled first stage + exact SLI) vs exhaustive SLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from uwe.bench.evaluation import evaluate_dataset
from uwe.data.dataset import RankingDataset
from uwe.infer.ann import TwoStageIndex, TwoStageModel, pack_index
from uwe.model.uwe_model import UWEModel

WORDS = (
    "data analysis python team manage bake bread truck drive patient care nurse sql "
    "finance budget report sales customer machine learning welding metal plan build "
    "teach child law contract garden plant cook food clean safety audit"
).split()


def random_texts(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    out: dict[str, None] = {}
    while len(out) < n:
        out[" ".join(rng.choice(WORDS, size=int(rng.integers(1, 6))))] = None
    return list(out)


@pytest.fixture(scope="module")
def model(tiny_backbone) -> UWEModel:
    torch.set_num_threads(1)
    return UWEModel.from_backbone(tiny_backbone, device="cpu", batch_size=16)


@pytest.fixture(scope="module")
def space(model):
    targets, queries = random_texts(300, 0), random_texts(40, 1)
    index = model.index_targets(targets)
    return targets, queries, index, model.score_index(queries, index)


def test_pack_index_gathers_the_bucket_tokens(model, space):
    targets, _, index, _ = space
    packed, vectors = pack_index(index)
    assert vectors.shape == (len(targets), 32)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    b = index.buckets[1]
    emb, mask = packed.gather(b.index)
    assert torch.equal(mask, b.mask[:, : mask.shape[1]])
    assert torch.equal(emb[mask], b.emb[b.mask])


@pytest.mark.parametrize("first_stage", ["flat", "hnsw"])
def test_all_candidates_equals_exhaustive(model, space, first_stage):
    targets, queries, index, exact = space
    two = TwoStageIndex.build(
        model, targets, n_candidates=len(targets), index=index, first_stage=first_stage
    )
    ids, scores = two.search(queries, top_k=10)
    ref = np.argsort(-exact, axis=1, kind="stable")[:, :10]
    np.testing.assert_allclose(scores, np.take_along_axis(exact, ref, 1), atol=1e-5)
    gaps = np.diff(-np.sort(-exact, axis=1)[:, :11], axis=1)
    clear = np.abs(gaps).min(axis=1) > 1e-5  # rows without near-ties in the top 11
    assert clear.sum() > len(queries) // 2
    np.testing.assert_array_equal(ids[clear], ref[clear])
    np.testing.assert_allclose(two.score_matrix(queries), exact, atol=1e-5)


def test_recall_grows_with_n_candidates_and_matrix_masks_the_rest(model, space):
    targets, queries, index, exact = space
    ref = np.argsort(-exact, axis=1, kind="stable")[:, :10]
    recalls = []
    for n in (10, 30, 100, 300):
        two = TwoStageIndex.build(model, targets, n_candidates=n, index=index)
        ids, _ = two.search(queries, top_k=10)
        recalls.append(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, ref, strict=True)]))
        matrix = two.score_matrix(queries)
        assert (np.isfinite(matrix).sum(axis=1) == n).all()  # -inf outside the candidates
        top = np.argsort(-matrix, axis=1, kind="stable")[:, :10]
        np.testing.assert_array_equal(top, ids)  # search == ranking the matrix
    assert recalls == sorted(recalls) and recalls[-1] == 1.0
    assert recalls[0] > 0.3  # mean pooling is a useful, not a random, first stage


def well_separated(row: np.ndarray, ranks: tuple[int, ...], gap: float = 1e-4) -> list[int]:
    """Targets near the given ranks whose score differs from both neighbours by > ``gap``, so
    float rounding (pairwise vs all-pairs kernels) cannot change their rank."""
    order = np.argsort(-row, kind="stable")
    s = row[order]
    ok = np.ones(len(s), dtype=bool)
    ok[1:] &= (s[:-1] - s[1:]) > gap
    ok[:-1] &= (s[:-1] - s[1:]) > gap
    picks = [order[np.flatnonzero(ok[r:])[0] + r] for r in ranks]
    return sorted({int(j) for j in picks})


def test_two_stage_model_in_the_evaluation_harness(model, space):
    targets, queries, _, exact = space
    positives = [well_separated(row, (0, 5, 50)) for row in exact]
    ds = RankingDataset("toy", "heldout", "test", queries, targets, positives)
    full = evaluate_dataset(model, ds, metrics=("map", "rp@10"))
    same = evaluate_dataset(
        TwoStageModel(model, n_candidates=len(targets)), ds, metrics=("map", "rp@10")
    )
    small = evaluate_dataset(TwoStageModel(model, n_candidates=20), ds, metrics=("map",))
    assert same["map"] == pytest.approx(full["map"], abs=1e-6)
    assert same["rp@10"] == pytest.approx(full["rp@10"], abs=1e-6)
    assert 0 < small["map"] < full["map"]  # the ~51st target is never a candidate


def test_bad_arguments(model, space):
    targets, _, index, _ = space
    with pytest.raises(ValueError, match="n_candidates"):
        TwoStageIndex.build(model, targets, n_candidates=0, index=index)
    with pytest.raises(ValueError, match="first stage"):
        TwoStageIndex.build(model, targets, first_stage="ivf", index=index)
    with pytest.raises(ValueError, match="different target list"):
        TwoStageIndex.build(model, targets[::-1], index=index)
