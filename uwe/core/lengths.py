"""Texts grouped by token length, so that a batch of them needs no padding (NumPy only: the
serving engines that run without torch use it too)."""

from __future__ import annotations

import numpy as np


def length_groups(lengths: np.ndarray, batch_size: int | None = None) -> list[np.ndarray]:
    """Indices grouped by exact length, longest first (stable within a length), each group
    split into runs of at most ``batch_size`` (``None``: one group per length). Encoding a
    group needs no padding. Every encoder path groups its texts with it: the model floor's
    :class:`uwe.model.uwe_model.UWEModel`, the frozen-bottom cache and the hard-negative miner of
    training, the NumPy and ONNX engines of serving."""
    lengths = np.asarray(lengths)
    order = np.argsort(-lengths, kind="stable")
    groups, s = [], 0
    while s < len(order):
        e = s + int(np.count_nonzero(lengths[order[s:]] == lengths[order[s]]))
        step = batch_size or (e - s)
        groups += [order[i : min(i + step, e)] for i in range(s, e, step)]
        s = e
    return groups
