"""How soft a model's SLI attention is on real query-target pairs (the scorer's fair test).

:func:`uwe.core.softness.attention_softness` measures one batch of pairs; this module picks the
pairs and a model's token embeddings. The pairs are every (query, positive target) of the
``heldout`` **val** splits (:func:`uwe.train.validation.load_val_sets`: the same seeded query
subsample the training validates on), capped at ``max_pairs`` per task (a seeded sample,
:data:`PAIR_SEED`), so the figure describes the pairs a ranking must get right and never touches
a test split. Each task gets the mean largest attention weight, the mean entropy and the mean
entropy fraction; the report's totals are macro means over the tasks (as MAP is).

``attention`` chooses the unit of the logits: ``raw`` (the paper's ``<q_i, t_j> / tau_a``, whose
scale is the backbone's token norms) or ``cosine`` (``cos(q_i, t_j) / tau_a``, the declared
deviation ``sli_cos``: a unit every backbone shares).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

PAIR_SEED = 0
ATTENTION_UNITS = ("raw", "cosine")


def val_pairs(val_sets: Sequence, max_pairs: int | None = 500) -> dict[str, list[tuple[str, str]]]:
    """``{task: [(query, positive target), ...]}``, at most ``max_pairs`` per task (seeded)."""
    out: dict[str, list[tuple[str, str]]] = {}
    for ds in val_sets:
        pairs = [(q, ds.targets[j]) for q, pos in zip(ds.queries, ds.positives, strict=True)
                 for j in pos]
        if max_pairs is not None and len(pairs) > max_pairs:
            rng = np.random.default_rng([PAIR_SEED, zlib.crc32(ds.name.encode())])
            pairs = [pairs[i] for i in np.sort(rng.choice(len(pairs), max_pairs, replace=False))]
        if pairs:
            out[ds.name] = pairs
    return out


def _encode(encoder, texts: list[str], batch_size: int) -> dict[str, torch.Tensor]:
    """Unpadded token embeddings ``(L, d)`` float32 of each distinct text."""
    rows: dict[str, torch.Tensor] = {}
    uniq = list(dict.fromkeys(texts))
    with torch.inference_mode():
        for s in range(0, len(uniq), batch_size):
            chunk = uniq[s : s + batch_size]
            emb, mask = encoder(chunk)  # (b, L, d), (b, L)
            for text, e, m in zip(chunk, emb.float(), mask, strict=True):
                rows[text] = e[m].cpu()
    return rows


def softness_report(encoder, val_sets: Sequence, temperatures: Sequence[float],
                    attention: str = "raw", max_pairs: int | None = 500,
                    batch_size: int = 64) -> dict[str, Any]:
    """Softness of SLI's attention under ``encoder`` at each of ``temperatures``.

    -> ``{"attention", "pairs", "by_temperature": [{"temperature", "max_weight", "entropy",
    "entropy_fraction", "tasks": {task: {...}}}]}``: macro means over the tasks of the
    per-pair means (the entropy fraction over the pairs whose target has 2 or more tokens)."""
    from uwe.core.scoring import pad_tokens
    from uwe.core.softness import attention_softness

    if attention not in ATTENTION_UNITS:
        raise ValueError(f"unknown attention unit {attention!r}; valid: {list(ATTENTION_UNITS)}")
    pairs = val_pairs(val_sets, max_pairs)
    if not pairs:
        raise ValueError("softness: no (query, positive) pair in the val sets")
    was_training = encoder.training
    encoder.eval()
    try:
        rows = _encode(encoder, [t for ps in pairs.values() for p in ps for t in p], batch_size)
    finally:
        encoder.train(was_training)
    if attention == "cosine":
        rows = {k: torch.nn.functional.normalize(v, dim=-1) for k, v in rows.items()}
    padded = {task: (pad_tokens([rows[q] for q, _ in ps]),
                     pad_tokens([rows[t] for _, t in ps]))
              for task, ps in pairs.items()}
    by_temp = []
    for tau in temperatures:
        tasks = {}
        for task, ((q, qm), (t, tm)) in padded.items():
            s = attention_softness(q, qm, t, tm, attention_temperature=float(tau))
            frac = s.entropy_fraction[~torch.isnan(s.entropy_fraction)]
            tasks[task] = {"max_weight": float(s.max_weight.mean()),
                           "entropy": float(s.entropy.mean()),
                           "entropy_fraction": float(frac.mean()) if len(frac) else math.nan,
                           "pairs": len(pairs[task])}

        def macro(key: str, tasks: dict = tasks) -> float:
            vals = [v[key] for v in tasks.values() if not math.isnan(v[key])]
            return sum(vals) / len(vals) if vals else math.nan

        by_temp.append({"temperature": float(tau), "max_weight": macro("max_weight"),
                        "entropy": macro("entropy"), "entropy_fraction": macro("entropy_fraction"),
                        "tasks": tasks})
    return {"attention": attention, "pairs": sum(len(p) for p in pairs.values()),
            "max_pairs_per_task": max_pairs, "by_temperature": by_temp}


def softness_text(entry: dict | None) -> str:
    """``"max w 0.97, H/log Lt 0.04"``: the two figures a table row shows ("–" without)."""
    if not entry:
        return "–"
    return f"max w {entry['max_weight']:.2f}, H/log Lt {entry['entropy_fraction']:.2f}"


def attention_unit(scorer: str) -> str | None:
    """The unit of a scorer's attention logits: ``raw`` (``sli``), ``cosine`` (``sli_cos``),
    None for a scorer without token attention (mean, MaxSim, a mean-pooled target)."""
    from uwe.core.scoring import ATTENTION_UNIT

    return ATTENTION_UNIT.get(scorer)
