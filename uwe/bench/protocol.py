"""The contract of every model the WorkBench harness scores, and a check of it.

:class:`Ranker` is the :class:`typing.Protocol` that :func:`uwe.bench.evaluation.evaluate`,
``uwe rank``, the latency stage and the WorkRB adapter rely on: the lexical baselines (BM25,
char TF-IDF), the sentence-embedding baselines, :class:`uwe.model.uwe_model.UWEModel`, its two-stage
ANN wrapper (:class:`uwe.infer.ann.TwoStageModel`) and the fast engines
(:class:`uwe.infer.ort.OrtModel`, :class:`uwe.infer.numpy_engine.NumpyUWE`) all implement it.

* ``index = index_targets(targets)``: whatever the model needs to score against ``targets``
  (a matrix, token buckets, a fitted vocabulary), built once per target space;
* ``score_index(queries, index) -> (n_q, n_t) float32``: ``scores[i, j]`` is query ``i``
  against target ``j``, higher is better; ``-inf`` marks a target the model did not score (a
  two-stage model's non-candidates; the metrics rank it last), NaN and ``+inf`` never occur;
* ``score(queries, targets)`` = ``score_index(queries, index_targets(targets))``.

:func:`check_ranker` runs the same checks on any object, in the spirit of scikit-learn's
``check_estimator``: a new model kind passes it before the harness sees it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Ranker(Protocol):
    """A model the harness can score (see the module doc)."""

    def index_targets(self, targets: list[str]) -> Any: ...

    def score_index(self, queries: list[str], index: Any) -> np.ndarray: ...

    def score(self, queries: list[str], targets: list[str]) -> np.ndarray: ...


def _fail(model: Any, check: str, detail: str) -> AssertionError:
    return AssertionError(f"{type(model).__name__} breaks the Ranker contract ({check}): {detail}")


def check_ranker(model: Any, queries: Sequence[str], targets: Sequence[str],
                 atol: float = 1e-5) -> None:
    """Assert that ``model`` keeps the :class:`Ranker` contract on these texts (at least two
    queries and three targets, all distinct); AssertionError naming the broken check.

    Checks: the protocol's methods; scores ``(n_q, n_t)`` float32, no NaN or +inf; ``score`` equals
    ``score_index`` on a fresh index; the same call twice gives the same scores; a query scored
    alone equals its row in a batch; reversing the targets reverses the columns; no queries
    give a ``(0, n_t)`` array."""
    queries, targets = list(queries), list(targets)
    if len(queries) < 2 or len(targets) < 3 or len(set(targets)) != len(targets):
        raise ValueError("check_ranker needs >= 2 queries and >= 3 distinct targets")
    if not isinstance(model, Ranker):
        missing = [m for m in ("index_targets", "score_index", "score")
                   if not callable(getattr(model, m, None))]
        raise _fail(model, "methods", f"missing {missing}")
    index = model.index_targets(targets)
    scores = model.score_index(queries, index)
    if not isinstance(scores, np.ndarray):
        raise _fail(model, "type", f"score_index returned {type(scores).__name__}, not ndarray")
    if scores.shape != (len(queries), len(targets)) or scores.dtype != np.float32:
        raise _fail(model, "shape", f"{scores.shape} {scores.dtype}, expected "
                    f"({len(queries)}, {len(targets)}) float32")
    if np.isnan(scores).any() or np.isposinf(scores).any():
        raise _fail(model, "finite", "scores contain NaN or +inf")
    checks = {
        "score = score_index(index_targets)": np.asarray(model.score(queries, targets)),
        "deterministic": np.asarray(model.score_index(queries, index)),
        "batch independence": np.concatenate(
            [np.asarray(model.score_index([q], index)) for q in queries]),
        "target order": np.asarray(model.score_index(queries, model.index_targets(
            targets[::-1])))[:, ::-1],
    }
    for check, got in checks.items():
        if got.shape != scores.shape or not np.allclose(got, scores, atol=atol, rtol=0):
            diff = (float(np.nanmax(np.abs(got - scores))) if got.shape == scores.shape
                    else f"shape {got.shape}")
            raise _fail(model, check, f"differs from score_index by {diff}")
    empty = np.asarray(model.score_index([], index))
    if empty.shape != (0, len(targets)):
        raise _fail(model, "no queries", f"shape {empty.shape}, expected (0, {len(targets)})")


__all__ = ["Ranker", "check_ranker"]
