"""Vectorised ranking metrics with WorkRB's definitions (arXiv:2511.07969).

``scores[i, j]`` is the score of target ``j`` for query ``i`` (higher = better) and
``positives[i]`` lists the relevant target indices of query ``i`` (duplicates are ignored).
With ``R`` = number of positives and ``rank(p)`` = 1-based rank of positive ``p``:

* ``map``      - average precision over the full ranking (no cut-off):
                 ``mean_j (j / rank(p_j))`` over positives sorted by rank (j = 1..R).
* ``mrr``      - ``1 / rank`` of the first positive.
* ``rp@K``     - (#positives in top K) / min(K, R).
* ``recall@K`` - (#positives in top K) / R.
* ``hit@K``    - 1 if any positive is in the top K, else 0.
* ``ndcg@K``   - binary gains, ``1/log2(rank + 1)`` discount, ideal DCG over min(K, R) hits
                 (``ndcg`` without ``@K`` = no cut-off).

Tie-breaking is deterministic: among equal scores the lower target index ranks first, i.e. the
ranking is a *stable* sort of ``-score`` (``-0.0 == 0.0`` counts as a tie). NaN scores raise
``ValueError`` naming the query row; ``+-inf`` are allowed (e.g. ``-inf`` to mask a target).

Queries without positives get NaN per query and are skipped by the means; if every query is
skipped the mean is 0.0 (as in WorkRB).

Implementation: only the ranks of the positives are needed, so instead of a full (slow) argsort
each chunk is value-sorted once (``np.sort``); ``#greater`` per positive comes from a batched
``searchsorted`` and, only for positives whose score is tied with another target, the number of
equal-scored targets with a lower index is counted explicitly. Memory per chunk is ~one copy of
the chunk's scores plus O(#positives).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy import stats

DEFAULT_METRICS = ("map", "rp@10", "mrr")
_METRIC_RE = re.compile(r"^(?:(map|mrr)|(rp|recall|hit|ndcg)(?:@(\d+))?)$")
_TIE_BLOCK = 256  # (row, score) groups of tied positives counted per block


def parse_metric(name: str) -> tuple[str, int | None]:
    """``"rp@10"`` -> ``("rp", 10)``, ``"map"`` -> ``("map", None)``; ValueError if unknown."""
    m = _METRIC_RE.match(name) if isinstance(name, str) else None
    if m is None or (m.group(2) in ("rp", "recall", "hit") and m.group(3) is None):
        raise ValueError(
            f"Unknown ranking metric {name!r}; expected 'map', 'mrr', 'ndcg' or "
            "'rp@K', 'recall@K', 'hit@K', 'ndcg@K' with integer K >= 1"
        )
    if m.group(1):
        return m.group(1), None
    k = int(m.group(3)) if m.group(3) is not None else None
    if k == 0:
        raise ValueError(f"Ranking metric {name!r}: K must be >= 1")
    return m.group(2), k


def _as_numpy_scores(scores: Any) -> np.ndarray:
    """Return a 2-D float32/float64 numpy view/copy of ``scores`` (numpy array or CPU tensor)."""
    if isinstance(scores, torch.Tensor):
        t = scores.detach().cpu()
        scores = (t if t.dtype in (torch.float32, torch.float64) else t.double()).numpy()
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D (n_queries, n_targets), got shape {scores.shape}")
    if scores.dtype not in (np.float32, np.float64):
        scores = scores.astype(np.float64)
    return scores


def _flatten_positives(
    positives: Sequence[Sequence[int]], n_queries: int, n_targets: int, row_offset: int
) -> tuple[np.ndarray, np.ndarray]:
    """Validate and de-duplicate positives -> (rows, cols), sorted by (row, col). Shapes (P,)."""
    if len(positives) != n_queries:
        raise ValueError(
            f"len(positives)={len(positives)} does not match n_queries={n_queries}"
        )
    arrays = [np.asarray(p).reshape(-1) for p in positives]
    lengths = np.array([a.size for a in arrays], dtype=np.int64)  # (Q,)
    for i, a in enumerate(arrays):  # loop over queries only, to name the bad one
        if a.size and a.dtype.kind not in "iu":
            raise ValueError(
                f"positives of query row {row_offset + i} must be integers, got dtype {a.dtype}"
            )
    cols = np.concatenate(arrays).astype(np.int64) if arrays else np.zeros(0, np.int64)
    rows = np.repeat(np.arange(n_queries, dtype=np.int64), lengths)
    bad = np.flatnonzero((cols < 0) | (cols >= n_targets))
    if bad.size:
        b = bad[0]
        raise ValueError(
            f"positive index {int(cols[b])} of query row {row_offset + int(rows[b])} is out of "
            f"range [0, {n_targets})"
        )
    keys = np.unique(rows * max(n_targets, 1) + cols)  # sorted, de-duplicated
    return keys // max(n_targets, 1), keys % max(n_targets, 1)


def _equal_before(scores: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """#targets with index < ``cols[i]`` and the same score as ``scores[rows[i], cols[i]]``.

    One cumulative count per distinct (row, score) group, so e.g. many positives tied at 0.0 in
    one row cost a single pass over that row. Shapes: (P,) in, (P,) out.
    """
    vals = scores[rows, cols]  # (P,)
    order = np.lexsort((vals, rows))  # groups of equal (row, score) become contiguous
    r, v = rows[order], vals[order]
    new = np.ones(order.size, dtype=bool)
    new[1:] = (r[1:] != r[:-1]) | (v[1:] != v[:-1])
    group = np.cumsum(new) - 1  # (P,) group id in sorted order
    g_start = np.flatnonzero(new)  # (G,) first sorted pair of each group
    g_bounds = np.append(g_start, order.size)
    out = np.empty(order.size, dtype=np.int64)
    for g0 in range(0, g_start.size, _TIE_BLOCK):
        g1 = min(g0 + _TIE_BLOCK, g_start.size)
        first = g_start[g0:g1]
        eq = scores[r[first]] == v[first][:, None]  # (B, T)
        counts = np.cumsum(eq, axis=1, dtype=np.int32)  # inclusive count of equal scores
        sel = order[g_bounds[g0] : g_bounds[g1]]
        local = group[g_bounds[g0] : g_bounds[g1]] - g0
        out[sel] = counts[local, cols[sel]] - 1  # exclusive of the positive itself
    return out


def _positive_ranks(
    scores: np.ndarray, rows: np.ndarray, cols: np.ndarray, row_offset: int
) -> np.ndarray:
    """0-based rank of each positive under a stable sort of ``-scores``. Shape (P,)."""
    n_q, n_t = scores.shape
    asc = np.sort(scores, axis=1)  # (Q, T); NaNs are sorted last
    nan_rows = np.flatnonzero(np.isnan(asc[:, -1])) if n_t else np.zeros(0, np.int64)
    if nan_rows.size:
        raise ValueError(f"scores of query row {row_offset + int(nan_rows[0])} contain NaN")
    if rows.size == 0:
        return np.zeros(0, np.int64)
    # Padded (Q, M) matrix of positive scores for a batched searchsorted.
    counts = np.bincount(rows, minlength=n_q)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    slot = np.arange(rows.size) - starts[rows]  # position of each positive within its row
    vals = np.full((n_q, int(counts.max())), np.inf, dtype=scores.dtype)
    vals[rows, slot] = scores[rows, cols]
    sorted_t, vals_t = torch.from_numpy(asc), torch.from_numpy(vals)
    right = torch.searchsorted(sorted_t, vals_t, right=True).numpy()[rows, slot]
    left = torch.searchsorted(sorted_t, vals_t, right=False).numpy()[rows, slot]
    ranks = n_t - right  # number of strictly greater scores
    tied = np.flatnonzero(right - left > 1)  # positives sharing their score with another target
    if tied.size:
        ranks[tied] += _equal_before(scores, rows[tied], cols[tied])
    return ranks


def ranking_metrics_per_query(
    scores: Any,
    positives: Sequence[Sequence[int]],
    metrics: Sequence[str] = DEFAULT_METRICS,
    *,
    row_offset: int = 0,
) -> dict[str, np.ndarray]:
    """Per-query metric values, shape (n_queries,) each; NaN for queries without positives.

    ``row_offset`` is only used to report global query rows in error messages.
    """
    parsed = {m: parse_metric(m) for m in metrics}
    s = _as_numpy_scores(scores)  # (Q, T)
    n_q, n_t = s.shape
    rows, cols = _flatten_positives(positives, n_q, n_t, row_offset)  # (P,), (P,)
    ranks = _positive_ranks(s, rows, cols, row_offset) + 1  # 1-based, (P,)
    order = np.lexsort((ranks, rows))  # by row, then rank
    rows, ranks = rows[order], ranks[order].astype(np.float64)
    npos = np.bincount(rows, minlength=n_q).astype(np.float64)  # (Q,)
    starts = np.concatenate(([0], np.cumsum(npos).astype(np.int64)[:-1]))
    j = np.arange(rows.size) - starts[rows] + 1.0  # 1-based position among the row's positives
    has = npos > 0
    out: dict[str, np.ndarray] = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        for name, (base, k) in parsed.items():
            k_eff = n_t if k is None else k
            hits = ranks <= k_eff  # (P,)
            if base == "map":
                val = np.bincount(rows, weights=j / ranks, minlength=n_q) / npos
            elif base == "mrr":
                val = np.zeros(n_q)
                val[has] = 1.0 / ranks[starts[has]]
            elif base in ("rp", "recall", "hit"):
                cnt = np.bincount(rows, weights=hits, minlength=n_q)
                denom = {"rp": np.minimum(k_eff, npos), "recall": npos, "hit": None}[base]
                val = (cnt > 0).astype(np.float64) if denom is None else cnt / denom
            else:  # ndcg
                dcg = np.bincount(rows, weights=hits / np.log2(ranks + 1.0), minlength=n_q)
                ideal = np.concatenate(([0.0], np.cumsum(1.0 / np.log2(np.arange(2, n_t + 2)))))
                val = dcg / ideal[np.minimum(k_eff, npos).astype(np.int64)]
            out[name] = np.where(has, val, np.nan)
    return out


def _nan_mean(values: np.ndarray) -> float:
    """Mean over non-NaN values; 0.0 if there are none (WorkRB convention)."""
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else 0.0


class MetricAccumulator:
    """Accumulates per-query metrics chunk by chunk, so no full score matrix is ever needed.

    >>> acc = MetricAccumulator(("map", "rp@10"))
    >>> for scores_chunk, pos_chunk in chunks: acc.update(scores_chunk, pos_chunk)  # doctest: +SKIP
    >>> acc.result()  # {"map": ..., "rp@10": ...}                                  # doctest: +SKIP
    """

    def __init__(self, metrics: Sequence[str] = DEFAULT_METRICS) -> None:
        self.metrics = tuple(metrics)
        for m in self.metrics:
            parse_metric(m)  # fail early on unknown names
        self._parts: dict[str, list[np.ndarray]] = {m: [] for m in self.metrics}
        self.n_queries = 0

    def update(self, scores_chunk: Any, positives_chunk: Sequence[Sequence[int]]) -> None:
        """Score one chunk of queries: ``scores_chunk`` (q, T), ``positives_chunk`` of length q."""
        res = ranking_metrics_per_query(
            scores_chunk, positives_chunk, self.metrics, row_offset=self.n_queries
        )
        for m in self.metrics:
            self._parts[m].append(res[m])
        self.n_queries += len(positives_chunk)

    def per_query(self) -> dict[str, np.ndarray]:
        """Concatenated per-query values, shape (n_queries,) each (NaN = no positives)."""
        return {
            m: np.concatenate(p) if p else np.zeros(0, np.float64) for m, p in self._parts.items()
        }

    def result(self) -> dict[str, float]:
        """Mean over queries with positives (0.0 if none)."""
        return {m: _nan_mean(v) for m, v in self.per_query().items()}


def ranking_metrics(
    scores: Any,
    positives: Sequence[Sequence[int]],
    metrics: Sequence[str] = DEFAULT_METRICS,
    query_chunk: int = 1024,
) -> dict[str, float]:
    """Mean metrics over queries with positives, evaluated ``query_chunk`` queries at a time."""
    if query_chunk < 1:
        raise ValueError(f"query_chunk must be >= 1, got {query_chunk}")
    if not isinstance(scores, torch.Tensor):
        scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D (n_queries, n_targets), got shape {scores.shape}")
    n_q = scores.shape[0]
    if len(positives) != n_q:
        raise ValueError(f"len(positives)={len(positives)} does not match n_queries={n_q}")
    acc = MetricAccumulator(metrics)
    for start in range(0, n_q, query_chunk):
        stop = min(start + query_chunk, n_q)
        acc.update(scores[start:stop], positives[start:stop])
    return acc.result()


def mean_ci(values: Any, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and two-sided Student-t confidence interval ``(mean, lo, hi)`` over finite values.

    NaN/inf values are dropped. No finite value -> ``(nan, nan, nan)``; a single value ``v`` ->
    ``(v, v, v)`` (the interval is undefined, so it is reported as zero-width).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return (float("nan"),) * 3
    mean = float(v.mean())
    if v.size == 1:
        return mean, mean, mean
    half = float(stats.t.ppf(0.5 + confidence / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))
    return mean, mean - half, mean + half
