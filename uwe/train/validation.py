"""Validation during training (rank 0): MAP on the ``heldout`` val splits of the macro tasks,
each capped at ``val_max_queries`` queries (a subsample fixed by ``VAL_SEED``, identical for every
run and seed), macro-averaged with :func:`uwe.data.tasks.macro_average`."""

from __future__ import annotations

import dataclasses
import zlib
from pathlib import Path

import numpy as np

from uwe.model.uwe_model import UWEModel

VAL_SEED = 0


def load_val_sets(root: str | Path, tasks: list[str] | None, max_queries: int | None) -> list:
    """Heldout val splits (default: every macro task with a val split on disk), each subsampled
    to ``max_queries`` queries with positives (``VAL_SEED``; same subsample in every run)."""
    from uwe.data import tasks as task_lib

    if tasks is None:
        on_disk = set(task_lib.list_tasks("heldout", root))
        members = [t for g in task_lib.TASK_GROUPS.values() for t in g]
        tasks = [t for t in members
                 if t in on_disk and "val" in task_lib.list_splits(t, "heldout", root)]
    sets = []
    for name in tasks:
        ds = task_lib.load_task(name, "heldout", "val", root)
        keep = np.array([i for i, p in enumerate(ds.positives) if p], dtype=np.int64)
        if max_queries is not None and len(keep) > max_queries:
            rng = np.random.default_rng([VAL_SEED, zlib.crc32(name.encode())])
            keep = np.sort(rng.choice(keep, size=max_queries, replace=False))
        sets.append(dataclasses.replace(ds, queries=[ds.queries[i] for i in keep],
                                        positives=[ds.positives[i] for i in keep]))
    return sets


def validate(model: UWEModel, val_sets: list) -> tuple[float, dict[str, float]]:
    """``(macro MAP, {task: MAP})``. Every distinct target text of all tasks is encoded once
    (the ESCO skill spaces of several tasks overlap almost entirely)."""
    from uwe.core.metrics import ranking_metrics
    from uwe.data.tasks import macro_average

    union = list(dict.fromkeys(t for ds in val_sets for t in ds.targets))
    index = model.index_targets(union)
    per_task = {}
    for ds in val_sets:
        scores = model.score_index(ds.queries, index.subset(ds.targets))  # (n_q, n_t)
        per_task[ds.name] = float(ranking_metrics(scores, ds.positives, metrics=("map",))["map"])
    return macro_average(per_task), per_task
