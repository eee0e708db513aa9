"""Tests for uwe.core.metrics: hand-computed cases, ranx and a plain-Python reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

import uwe.core.metrics
from uwe.core.metrics import MetricAccumulator, mean_ci, ranking_metrics, ranking_metrics_per_query

ALL = ("map", "mrr", "rp@1", "rp@3", "rp@10", "recall@3", "recall@10", "hit@1", "hit@3",
       "ndcg@3", "ndcg@10", "ndcg")


# --------------------------------------------------------------------------- plain reference
def reference_per_query(scores: np.ndarray, positives: list[list[int]], metric: str) -> list:
    """Per-query loop over an explicitly stable-sorted ranking (lower index wins ties)."""
    out = []
    for row, pos in zip(scores, positives, strict=True):
        pos = set(int(p) for p in pos)
        if not pos:
            out.append(math.nan)
            continue
        order = sorted(range(len(row)), key=lambda j: (-float(row[j]), j))
        ranks = sorted(r + 1 for r, j in enumerate(order) if j in pos)  # 1-based
        base, _, k = metric.partition("@")
        k = int(k) if k else len(row)
        n_hit = sum(r <= k for r in ranks)
        if base == "map":
            val = sum((i + 1) / r for i, r in enumerate(ranks)) / len(ranks)
        elif base == "mrr":
            val = 1.0 / ranks[0]
        elif base == "rp":
            val = n_hit / min(k, len(pos))
        elif base == "recall":
            val = n_hit / len(pos)
        elif base == "hit":
            val = float(n_hit > 0)
        else:  # ndcg
            dcg = sum(1.0 / math.log2(r + 1) for r in ranks if r <= k)
            val = dcg / sum(1.0 / math.log2(i + 2) for i in range(min(k, len(pos))))
        out.append(val)
    return out


def random_task(seed, n_q=50, n_t=120, max_pos=15, tied=False, empty_frac=0.1):
    rng = np.random.default_rng(seed)
    if tied:
        scores = rng.integers(0, 3, size=(n_q, n_t)).astype(np.float32)  # massive ties
    else:
        scores = rng.standard_normal((n_q, n_t))
    positives = [
        [] if rng.random() < empty_frac
        else rng.choice(n_t, size=rng.integers(1, max_pos + 1), replace=False).tolist()
        for _ in range(n_q)
    ]
    return scores, positives


# --------------------------------------------------------------------------- hand-computed
def test_hand_computed_example():
    scores = np.array([
        [0.1, 0.9, 0.5, 0.5, 0.3, 0.7],  # ranking: 1, 5, 2, 3, 4, 0 (2 before 3: lower index)
        [0.2, 0.2, 0.2, 0.2, 0.2, 0.2],  # all tied: ranking 0, 1, 2, 3, 4, 5
        [0.0, 1.0, 2.0, 3.0, 4.0, 5.0],  # no positives -> skipped
    ])
    positives = [[2, 4], [3], []]  # row 0: ranks 3 and 5; row 1: rank 4
    pq = ranking_metrics_per_query(scores, positives, ALL)
    lg = math.log2
    expected = {
        "map": [(1 / 3 + 2 / 5) / 2, 1 / 4],       # precision at each positive, averaged
        "mrr": [1 / 3, 1 / 4],
        "rp@1": [0 / 1, 0 / 1],                    # top-1 = {1} / {0}
        "rp@3": [1 / 2, 0 / 1],                    # top-3 holds 1 of 2 / 0 of 1 positives
        "rp@10": [2 / 2, 1 / 1],                   # min(10, R) = R
        "recall@3": [1 / 2, 0 / 1],
        "recall@10": [1.0, 1.0],
        "hit@1": [0.0, 0.0],
        "hit@3": [1.0, 0.0],
        "ndcg@3": [(1 / lg(4)) / (1 + 1 / lg(3)), 0.0],      # ideal: 2 hits at ranks 1, 2
        "ndcg@10": [(1 / lg(4) + 1 / lg(6)) / (1 + 1 / lg(3)), (1 / lg(5)) / 1],
        "ndcg": [(1 / lg(4) + 1 / lg(6)) / (1 + 1 / lg(3)), (1 / lg(5)) / 1],
    }
    means = ranking_metrics(scores, positives, ALL)
    for name, exp in expected.items():
        np.testing.assert_allclose(pq[name][:2], exp, rtol=1e-12, err_msg=name)
        assert np.isnan(pq[name][2]), name
        assert means[name] == pytest.approx(np.mean(exp), rel=1e-12), name
    assert means["map"] == pytest.approx((11 / 30 + 1 / 4) / 2)  # (0.3667 + 0.25) / 2


def test_perfect_and_worst_ranking():
    scores = np.array([[3.0, 2.0, 1.0, 0.0]])
    best = ranking_metrics(scores, [[0, 1]], ALL)
    assert all(v == pytest.approx(1.0) for v in best.values())
    worst = ranking_metrics(scores, [[3]], ("map", "mrr", "hit@3", "ndcg"))
    # rank 4: AP = 1/4, RR = 1/4, not in top 3, nDCG = 1/log2(5)
    assert worst == pytest.approx({"map": 0.25, "mrr": 0.25, "hit@3": 0.0,
                                   "ndcg": 1 / math.log2(5)})


# --------------------------------------------------------------------------- references
@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_against_plain_reference(seed, tied, monkeypatch):
    scores, positives = random_task(seed, tied=tied)
    monkeypatch.setattr(uwe.core.metrics, "_TIE_BLOCK", 3)  # exercise several tie blocks
    pq = ranking_metrics_per_query(scores, positives, ALL)
    for name in ALL:
        np.testing.assert_allclose(pq[name], reference_per_query(scores, positives, name),
                                   rtol=1e-12, equal_nan=True, err_msg=name)


def stable_order(scores: np.ndarray) -> np.ndarray:
    """Independent stable ranking: sort by -score, then by target index. Shape (Q, T)."""
    idx = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    return np.lexsort((idx, -scores.astype(np.float64)), axis=1)


def ranx_per_query(scores, positives, metrics):
    """ranx on pre-sorted runs (ranx's own tie order is unspecified; ours is passed instead).

    Arrays instead of ranx.Qrels/Run keep the test fast (no numba dict compilation).
    """
    ranx = pytest.importorskip("ranx")
    numba = pytest.importorskip("numba")
    keep = [i for i, p in enumerate(positives) if p]
    order = stable_order(scores)[keep].astype(np.float64)  # (Q', T) doc ids in rank order
    run = np.stack([order, np.broadcast_to(-np.arange(order.shape[1]), order.shape)], axis=2)
    qrels = numba.typed.List(
        [np.stack([np.asarray(positives[i], float), np.ones(len(positives[i]))], axis=1)
         for i in keep]
    )
    res = ranx.evaluate(qrels, run, list(metrics), return_mean=False, threads=1)
    return keep, {m: np.asarray(res[m]) for m in metrics}


@pytest.mark.filterwarnings("ignore:unsafe cast")
@pytest.mark.parametrize("tied", [False, True])
def test_against_ranx(tied):
    scores, positives = random_task(3, n_q=60, n_t=200, max_pos=25, tied=tied)
    names = {"map": "map", "mrr": "mrr", "ndcg@10": "ndcg@10", "recall@10": "recall@10",
             "hit@3": "hit_rate@3", "ndcg": "ndcg"}
    keep, ref = ranx_per_query(scores, positives, [*names.values(), "precision@10"])
    ours = ranking_metrics_per_query(scores, positives, [*names, "rp@10"])
    for mine, theirs in names.items():
        np.testing.assert_allclose(ours[mine][keep], ref[theirs], rtol=1e-9, err_msg=mine)
    # rp@10 = precision@10 when R >= 10, else recall@10
    n_pos = np.array([len(positives[i]) for i in keep])
    rp_ref = np.where(n_pos >= 10, ref["precision@10"], ref["recall@10"])
    np.testing.assert_allclose(ours["rp@10"][keep], rp_ref, rtol=1e-9)


# --------------------------------------------------------------------------- chunking, inputs
def test_chunked_equals_unchunked_and_accumulator():
    scores, positives = random_task(5, n_q=53, tied=True)
    whole = ranking_metrics(scores, positives, ALL, query_chunk=10_000)
    assert ranking_metrics(scores, positives, ALL, query_chunk=7) == pytest.approx(whole)
    acc = MetricAccumulator(ALL)
    for start in range(0, 53, 7):
        acc.update(scores[start:start + 7], positives[start:start + 7])
    assert acc.n_queries == 53
    pq = ranking_metrics_per_query(scores, positives, ALL)
    for name in ALL:
        np.testing.assert_array_equal(acc.per_query()[name], pq[name])
    assert acc.result() == pytest.approx(whole)


def test_torch_and_dtype_inputs():
    scores, positives = random_task(7, tied=True)
    ref = ranking_metrics(scores, positives, ALL)
    for variant in (torch.from_numpy(scores), torch.from_numpy(scores).to(torch.bfloat16),
                    scores.astype(np.int64), scores.astype(np.float16), scores.tolist()):
        assert ranking_metrics(variant, positives, ALL) == pytest.approx(ref)
    arr_pos = [np.asarray(p, dtype=np.int32) for p in positives]
    assert ranking_metrics(scores, arr_pos, ALL) == pytest.approx(ref)


def test_duplicates_inf_and_signed_zero():
    # duplicate positives count once; -inf masks a target; -0.0 ties with 0.0 (index order)
    scores = np.array([[0.0, -np.inf, -0.0, 1.0, np.inf]])
    pq = ranking_metrics_per_query(scores, [[2, 2, 1]], ("map", "recall@3", "rp@2"))
    # ranking: 4, 3, 0, 2, 1 -> positives at ranks 4 and 5
    assert pq["map"][0] == pytest.approx((1 / 4 + 2 / 5) / 2)
    assert pq["recall@3"][0] == 0.0 and pq["rp@2"][0] == 0.0


def test_skipped_queries():
    scores, _ = random_task(9, n_q=4)
    positives = [[], [3], [], [5, 7]]
    pq = ranking_metrics_per_query(scores, positives, ALL)
    res = ranking_metrics(scores, positives, ALL)
    for name in ALL:
        assert np.isnan(pq[name][[0, 2]]).all()
        assert res[name] == pytest.approx(np.mean(pq[name][[1, 3]]))
    assert ranking_metrics(scores, [[]] * 4, ALL) == {name: 0.0 for name in ALL}
    assert ranking_metrics(np.zeros((0, 5)), [], ("map",)) == {"map": 0.0}
    assert MetricAccumulator().result() == {"map": 0.0, "rp@10": 0.0, "mrr": 0.0}


# --------------------------------------------------------------------------- errors
def test_errors():
    scores = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"positive index 4 of query row 1 is out of range"):
        ranking_metrics(scores, [[0], [4], []])
    with pytest.raises(ValueError, match=r"positive index -1 of query row 2"):
        ranking_metrics_per_query(scores, [[0], [1], [-1]])
    with pytest.raises(ValueError, match=r"positive index 9 of query row 5 "):
        ranking_metrics(np.zeros((6, 4)), [[0]] * 5 + [[9]], query_chunk=2)  # global row
    with pytest.raises(ValueError, match=r"must be 2-D.*\(4,\)"):
        ranking_metrics(np.zeros(4), [[0]])
    with pytest.raises(ValueError, match=r"must be 2-D"):
        ranking_metrics_per_query(np.zeros((2, 2, 2)), [[0], [0]])
    with pytest.raises(ValueError, match=r"len\(positives\)=2 does not match n_queries=3"):
        ranking_metrics(scores, [[0], [1]])
    with pytest.raises(ValueError, match=r"len\(positives\)=2 does not match n_queries=3"):
        ranking_metrics_per_query(scores, [[0], [1]])
    with pytest.raises(ValueError, match=r"query row 1 must be integers"):
        ranking_metrics(scores, [[0], [1.5], []])
    bad = scores.copy()
    bad[2, 3] = np.nan
    with pytest.raises(ValueError, match=r"query row 2 contain NaN"):
        ranking_metrics(bad, [[0], [1], [2]])
    with pytest.raises(ValueError, match=r"query row 2 contain NaN"):
        ranking_metrics(bad, [[0], [1], []])  # NaN raises even without positives
    for name in ("precision@10", "rp", "map@10", "ndcg@k", "rp@0", "RP@10", " map"):
        with pytest.raises(ValueError, match=r"(?i)ranking metric"):
            ranking_metrics(scores, [[0]] * 3, ("map", name))
    with pytest.raises(ValueError, match=r"Unknown ranking metric 'foo'"):
        MetricAccumulator(("foo",))
    with pytest.raises(ValueError, match=r"query_chunk"):
        ranking_metrics(scores, [[0]] * 3, query_chunk=0)


# --------------------------------------------------------------------------- mean_ci
def test_mean_ci():
    vals = np.array([0.2, 0.4, 0.9, 0.5, np.nan, np.inf])  # non-finite values dropped
    mean, lo, hi = mean_ci(vals, 0.9)
    finite = vals[:4]
    exp_lo, exp_hi = stats.t.interval(0.9, 3, loc=finite.mean(), scale=stats.sem(finite))
    assert mean == pytest.approx(0.5)
    assert (lo, hi) == pytest.approx((exp_lo, exp_hi))
    assert mean_ci([0.7]) == (0.7, 0.7, 0.7)
    assert mean_ci([0.3, 0.3, 0.3]) == pytest.approx((0.3, 0.3, 0.3))
    assert all(math.isnan(x) for x in mean_ci([np.nan]))
    assert all(math.isnan(x) for x in mean_ci([]))
    with pytest.raises(ValueError, match="confidence"):
        mean_ci([1.0, 2.0], confidence=1.5)
