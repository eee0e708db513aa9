"""WorkBench evaluation harness: any scoring model x a family of ranking tasks -> results JSON.

Model contract (see :mod:`uwe.model.baselines`): ``index_targets(targets) -> index`` and
``score_index(queries, index) -> (n_q, n_t)`` with ``scores[i, j]`` = query ``i`` vs target
``j`` (higher = better); a model with only ``score(queries, targets)`` also works (its targets
are then re-processed for every chunk).

Per task the targets are indexed once and the queries are scored ``query_chunk`` at a time,
each chunk feeding per-query metrics (:class:`uwe.core.metrics.MetricAccumulator`), so a
71k x 14k task never holds its full score matrix.

Results (workbench.md §6; metrics are fractions in [0, 1])::

    {"model", "family", "split",
     "tasks":  {task: {metric: mean, f"{metric}_ci": [lo, hi], "n_queries", "n_targets",
                       "seconds"}},
     "groups": {group: {metric: mean over the group's tasks}},
     "macro":  {metric: mean over groups, f"{metric}_ci": [lo, hi], "n_groups"}}

* task means are over queries with >= 1 positive (``n_queries`` counts those);
* task CI = Student-t 95% interval over the per-query values;
* group = plain mean of its tasks present in the run (``uwe.data.tasks.TASK_GROUPS``); tasks outside
  every group (e.g. techwolf, skillskape) are reported per task only;
* macro = plain mean of the groups, CI = Student-t 95% interval over the group values (the
  WorkRB convention: an interval over the averaged units). One unit gives a zero-width
  interval (:func:`uwe.core.metrics.mean_ci`); no unit gives ``[null, null]``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from uwe.core.metrics import MetricAccumulator, _nan_mean, mean_ci
from uwe.data import tasks as task_lib
from uwe.errors import InputError
from uwe.io import write_json
from uwe.model.registry import model_slug

logger = logging.getLogger(__name__)

EVAL_METRICS = ("map", "rp@10", "mrr", "recall@10", "hit@10", "ndcg@10")


def _finite_or_none(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _ci(values: Sequence[float]) -> list[float | None]:
    _, lo, hi = mean_ci(values)
    return [_finite_or_none(lo), _finite_or_none(hi)]


class TargetIndexes:
    """Target indexes of one model, keyed by the exact target list (its sha256), least recently
    used dropped beyond ``size``: tasks that share a target space (all ESCO skills for
    job2skill, skill_norm and skill_sim) index it once per evaluation run."""

    def __init__(self, size: int = 4):
        self.size = size
        self._items: OrderedDict[str, Any] = OrderedDict()

    @staticmethod
    def key(targets: Sequence[str]) -> str:
        return hashlib.sha256("\x1f".join(targets).encode("utf-8")).hexdigest()

    def get(self, model: Any, targets: list[str]) -> Any:
        key = self.key(targets)
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        index = model.index_targets(targets)
        self._items[key] = index
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return index


def score_chunks(
    model: Any,
    queries: list[str],
    targets: list[str],
    query_chunk: int,
    progress: bool = False,
    desc: str = "",
    index_cache: TargetIndexes | None = None,
):
    """Yield ``(start, scores)`` per chunk of queries; scores ``(len(chunk), n_t)`` as returned.

    Targets are indexed once with ``model.index_targets`` when the model has it (and reused
    from ``index_cache`` when one is given).
    """
    if query_chunk < 1:
        raise ValueError(f"query_chunk must be >= 1, got {query_chunk}")
    cached = hasattr(model, "index_targets") and hasattr(model, "score_index")
    index = None
    if cached:
        index = (index_cache or TargetIndexes(size=1)).get(model, targets)
    starts = range(0, len(queries), query_chunk)
    for start in tqdm(starts, desc=desc, disable=not progress, leave=False):
        chunk = queries[start : start + query_chunk]
        scores = model.score_index(chunk, index) if cached else model.score(chunk, targets)
        scores = np.asarray(scores)
        if scores.shape != (len(chunk), len(targets)):
            raise ValueError(
                f"model returned scores of shape {scores.shape} for {len(chunk)} queries x "
                f"{len(targets)} targets ({desc})"
            )
        yield start, scores


class QueryMemo:
    """Per-query metric values of one model, keyed by (target space, query text, positives).

    A query whose text, positives and target space were already scored (the ``heldout``
    family re-uses most ``full`` queries verbatim: job_norm, skill_extraction, and subsets of
    job2skill, skill_norm and skill_sim) gets the stored values instead of being encoded and
    scored again; the values are exactly what a re-evaluation would give, because a query's
    metrics depend only on its score row and its positives.
    """

    def __init__(self):
        self._items: dict[str, dict[tuple[str, tuple[int, ...]], np.ndarray]] = {}

    def lookup(self, targets_key: str, queries: Sequence[str], positives: Sequence[Sequence[int]],
               metrics: Sequence[str]) -> tuple[np.ndarray, np.ndarray | None]:
        """``(known (n,) bool, values (n, len(metrics)) or None)``."""
        space = self._items.get(f"{targets_key}|{','.join(metrics)}", {})
        rows = [space.get((q, tuple(p))) for q, p in zip(queries, positives, strict=True)]
        known = np.array([r is not None for r in rows], dtype=bool)
        if not known.any():
            return known, None
        values = np.zeros((len(rows), len(metrics)), dtype=np.float64)
        for i, r in enumerate(rows):
            if r is not None:
                values[i] = r
        return known, values

    def store(self, targets_key: str, queries: Sequence[str],
              positives: Sequence[Sequence[int]], metrics: Sequence[str],
              values: np.ndarray) -> None:
        space = self._items.setdefault(f"{targets_key}|{','.join(metrics)}", {})
        for q, p, v in zip(queries, positives, values, strict=True):
            space[(q, tuple(p))] = np.asarray(v, dtype=np.float64)


def subsample_queries(ds: Any, max_queries: int | None, seed: int = 0) -> Any:
    """``ds`` restricted to at most ``max_queries`` queries with positives (a seeded sample,
    original order kept, the same for every model); ``None`` keeps every query."""
    import dataclasses
    import zlib

    keep = np.array([i for i, p in enumerate(ds.positives) if len(p) > 0], dtype=np.int64)
    if max_queries is None or len(keep) <= max_queries:
        return ds
    if max_queries < 1:
        raise ValueError(f"max_queries must be >= 1 or None, got {max_queries}")
    rng = np.random.default_rng([seed, zlib.crc32(f"{ds.family}/{ds.name}".encode())])
    keep = np.sort(rng.choice(keep, size=max_queries, replace=False))
    return dataclasses.replace(ds, queries=[ds.queries[i] for i in keep],
                               positives=[ds.positives[i] for i in keep])


def evaluate_dataset(
    model: Any,
    ds: Any,
    metrics: Sequence[str] = EVAL_METRICS,
    query_chunk: int = 1024,
    progress: bool = False,
    index_cache: TargetIndexes | None = None,
    memo: QueryMemo | None = None,
) -> dict[str, Any]:
    """Metrics of ``model`` on one :class:`uwe.data.dataset.RankingDataset` (see module doc).

    With a ``memo``, queries already scored against the same target space (same positives)
    are taken from it and only the others are scored.
    """
    t0 = time.perf_counter()
    if not any(len(p) for p in ds.positives):  # its 0.0 would enter the macro average
        raise InputError(
            f"task {ds.family}/{ds.name}/{ds.split}: "
            + (f"none of its {len(ds.queries)} queries has a positive target"
               if len(ds.queries) else "no queries")
            + ", so no metric can be computed")
    metrics = tuple(metrics)
    queries, positives = list(ds.queries), [list(p) for p in ds.positives]
    tkey = TargetIndexes.key(list(ds.targets))
    known, known_values = (memo.lookup(tkey, queries, positives, metrics) if memo is not None
                           else (np.zeros(len(queries), dtype=bool), None))
    todo = np.flatnonzero(~known)
    acc = MetricAccumulator(metrics)
    todo_queries = [queries[i] for i in todo]
    todo_positives = [positives[i] for i in todo]
    if len(todo):
        for start, scores in score_chunks(
            model, todo_queries, list(ds.targets), query_chunk, progress, desc=ds.name,
            index_cache=index_cache,
        ):
            try:
                acc.update(scores, todo_positives[start : start + len(scores)])
            except ValueError as err:  # NaN scores: name the task and the query
                raise ValueError(f"task {ds.family}/{ds.name}/{ds.split}, model "
                                 f"{getattr(model, 'name', type(model).__name__)}: {err} "
                                 f"(query {todo_queries[start]!r} is the chunk's first)"
                                 ) from err
    fresh = acc.per_query()  # {m: (len(todo),)}, NaN for a query without positives
    if memo is not None and len(todo):
        memo.store(tkey, todo_queries, todo_positives, metrics,
                   np.stack([fresh[m] for m in metrics], axis=1))
    per_query: dict[str, np.ndarray] = {}  # (n_queries,) in the dataset's order
    for k, m in enumerate(metrics):
        col = np.full(len(queries), np.nan, dtype=np.float64)
        if known_values is not None:
            col[known] = known_values[known, k]
        if len(todo):
            col[todo] = fresh[m]
        per_query[m] = col
    out: dict[str, Any] = {m: _nan_mean(per_query[m]) for m in metrics}
    for m in metrics:
        out[f"{m}_ci"] = _ci(per_query[m])
    out["n_queries"] = int(sum(1 for p in ds.positives if len(p) > 0))
    out["n_targets"] = len(ds.targets)
    out["seconds"] = round(time.perf_counter() - t0, 3)
    return out


def summarize(
    per_task: dict[str, dict[str, Any]], metrics: Sequence[str] = EVAL_METRICS
) -> tuple[dict, dict]:
    """``(groups, macro)`` from per-task results: group = mean of tasks, macro = mean of groups.

    Without any WorkBench group (e.g. the zero-shot family) the macro values are ``None``.
    """
    groups: dict[str, dict[str, float]] = {}
    for group, members in task_lib.TASK_GROUPS.items():
        present = [t for t in members if t in per_task]
        if present:
            groups[group] = {m: float(np.mean([per_task[t][m] for t in present])) for m in metrics}
    missing = [g for g in task_lib.TASK_GROUPS if g not in groups]
    if missing and groups:
        logger.warning("macro average without group(s) %s (no task evaluated)", missing)
    macro: dict[str, Any] = {}
    for m in metrics:
        values = [g[m] for g in groups.values()]
        macro[m] = float(np.mean(values)) if values else None
        macro[f"{m}_ci"] = _ci(values)
    macro["n_groups"] = len(groups)
    return groups, macro


def _default_tasks(family: str, root: str | Path, split: str) -> list[str]:
    names = task_lib.list_tasks(family, root=root, split=split)
    if not names:
        raise ValueError(f"no tasks of family {family!r} with split {split!r} under {root}")
    return list(names)


def evaluate(
    model: Any,
    family: str,
    tasks: Sequence[str] | None = None,
    split: str = "test",
    root: str | Path = "data/curated",
    query_chunk: int = 1024,
    metrics: Sequence[str] = EVAL_METRICS,
    progress: bool = True,
    model_name: str | None = None,
    index_cache: TargetIndexes | None = None,
    memo: QueryMemo | None = None,
    max_queries: int | None = None,
    sample_seed: int = 0,
) -> dict[str, Any]:
    """Evaluate ``model`` on ``tasks`` (default: every task of ``family`` on disk).

    Target spaces shared by several tasks are indexed once (``index_cache``); queries already
    scored against the same target space are not scored again (``memo``). Pass the same cache
    and memo to several calls to share them across families. ``max_queries`` evaluates a
    seeded subsample of each task's queries (:func:`subsample_queries`; the analyses' cpu
    budgets), ``None`` every query.
    """
    names = list(tasks) if tasks is not None else _default_tasks(family, root, split)
    name = model_name or getattr(model, "name", None) or type(model).__name__
    index_cache = index_cache if index_cache is not None else TargetIndexes()
    per_task: dict[str, dict[str, Any]] = {}
    for task in tqdm(names, desc=f"{name} / {family}", disable=not progress):
        ds = task_lib.load_task(task, family=family, split=split, root=root)
        ds = subsample_queries(ds, max_queries, sample_seed)
        per_task[task] = evaluate_dataset(model, ds, metrics, query_chunk, progress, index_cache,
                                          memo)
        logger.info(
            "%s %s/%s: MAP %.1f RP@10 %s (%d queries x %d targets, %.1f s)",
            name,
            family,
            task,
            100 * per_task[task].get("map", float("nan")),
            f"{100 * per_task[task]['rp@10']:.1f}" if "rp@10" in per_task[task] else "-",
            per_task[task]["n_queries"],
            per_task[task]["n_targets"],
            per_task[task]["seconds"],
        )
    groups, macro = summarize(per_task, metrics)
    return {
        "model": str(name),
        "family": family,
        "split": split,
        "tasks": per_task,
        "groups": groups,
        "macro": macro,
        **({"max_queries": max_queries, "sample_seed": sample_seed} if max_queries else {}),
    }


def _json_safe(obj: Any) -> Any:
    """NaN/inf -> None and numpy scalars -> Python, recursively (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_results(results: dict[str, Any], path: str | Path) -> Path:
    """Write ``results`` as strict JSON atomically (temp file + rename), creating parents."""
    return write_json(path, _json_safe(results))


def results_path(model_name: str, family: str, out_dir: str | Path = "metrics/workbench") -> Path:
    """``<out_dir>/<family>/<model_slug>.json``."""
    return Path(out_dir) / family / f"{model_slug(model_name)}.json"


def evaluate_to_file(
    model: Any,
    model_name: str,
    family: str,
    out_dir: str | Path = "metrics/workbench",
    **kwargs: Any,
) -> Path:
    """:func:`evaluate` then :func:`write_results` to :func:`results_path`; returns the path."""
    results = evaluate(model, family, model_name=model_name, **kwargs)
    path = write_results(results, results_path(model_name, family, out_dir))
    logger.info("wrote %s (macro: %s)", path, results["macro"])
    return path
