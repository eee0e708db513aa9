"""Contrastive losses for UWE (arXiv 2511.07969, Sec. "Training objective").

Many-to-many InfoNCE for one graph, anchors ``q_1..q_Bq`` vs candidates ``y_1..y_By`` with a
positive mask ``M`` (``M[i, j]``: ``y_j`` is linked to ``q_i`` in the graph)::

    L(Y|Q) = mean_{q: |P(q)| > 0} 1/|P(q)| sum_{y+ in P(q)}
             -log( exp(s(q,y+)/tau) / (exp(s(q,y+)/tau) + sum_{y in N(q)} exp(s(q,y)/tau)) )

with ``N(q)`` the candidates that are *not* positives of ``q``: graph neighbours in the batch
count as positives and are never negatives, i.e. the other positives of ``q`` are excluded from
the denominator of each positive's term. The bidirectional loss is ``L(Y|Q) + L(Q|Y)`` (the
latter uses ``scores.T`` and ``M.T``); rows/columns without positives are skipped. With an
identity mask this reduces exactly to cross-entropy InfoNCE. All losses are computed in float32.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from uwe.constants import LOSS_NAMES

VARIANTS = LOSS_NAMES  # uwe.constants: the config checks them without importing torch


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def _many_to_many_direction(logits: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """One direction of many-to-many InfoNCE. logits (B_q, B_y) float32, pos bool (B_q, B_y)."""
    fill = torch.finfo(logits.dtype).min
    lse_neg = logits.masked_fill(pos, fill).logsumexp(-1, keepdim=True)  # (B_q, 1)
    per_pair = torch.logaddexp(logits, lse_neg) - logits  # (B_q, B_y): -log p(y+ | {y+} u N)
    per_pair = torch.where(pos, per_pair, torch.zeros_like(per_pair))  # (B_q, B_y)
    n_pos = pos.sum(-1).to(logits.dtype)  # (B_q,)
    row = per_pair.sum(-1) / n_pos.clamp_min(1.0)  # (B_q,)
    has = (n_pos > 0).to(logits.dtype)  # (B_q,)
    return (row * has).sum() / has.sum().clamp_min(1.0)  # ()


def info_nce_many_to_many(scores: torch.Tensor, positive_mask: torch.Tensor, temperature: float,
                          bidirectional: bool = True) -> torch.Tensor:
    """Many-to-many InfoNCE (module docstring); ``L(Y|Q) [+ L(Q|Y)]`` as a scalar.

    scores (B_q, B_y); positive_mask bool (B_q, B_y).
    """
    _check_temperature(temperature)
    if positive_mask.shape != scores.shape:
        raise ValueError(f"mask shape {tuple(positive_mask.shape)} != {tuple(scores.shape)}")
    logits = scores.float() / temperature  # (B_q, B_y)
    pos = positive_mask.to(device=scores.device, dtype=torch.bool)  # (B_q, B_y)
    loss = _many_to_many_direction(logits, pos)  # ()
    if bidirectional:
        loss = loss + _many_to_many_direction(logits.T, pos.T)  # ()
    return loss


def info_nce_one_to_one(scores: torch.Tensor, temperature: float,
                        symmetric: bool = False) -> torch.Tensor:
    """Standard InfoNCE: ``y_i`` is the only positive of ``q_i``; every other in-batch candidate
    is a negative (even if linked). ``CE(S/tau, arange) [+ CE(S^T/tau, arange)]``.

    scores (B_q, B_y) with ``B_y >= B_q`` (square when ``symmetric``).
    """
    _check_temperature(temperature)
    b_q, b_y = scores.shape
    if b_y < b_q or (symmetric and b_q != b_y):
        raise ValueError(f"one-to-one InfoNCE needs B_y >= B_q (square if symmetric): {b_q}x{b_y}")
    logits = scores.float() / temperature  # (B_q, B_y)
    labels = torch.arange(b_q, device=scores.device)  # (B_q,)
    loss = F.cross_entropy(logits, labels)  # ()
    if symmetric:
        loss = loss + F.cross_entropy(logits.T, labels)  # ()
    return loss


def contrastive_loss(scores: torch.Tensor, positive_mask: torch.Tensor | None, temperature: float,
                     variant: str = "many_to_many") -> torch.Tensor:
    """Dispatch on ``variant`` in :data:`VARIANTS`; ``positive_mask`` is ignored by the
    one-to-one variants. scores (B_q, B_y); positive_mask bool (B_q, B_y) or None."""
    if variant == "one_to_one":
        return info_nce_one_to_one(scores, temperature, symmetric=False)
    if variant == "symmetric":
        return info_nce_one_to_one(scores, temperature, symmetric=True)
    if variant in ("many_to_many", "many_to_many_one_direction"):
        if positive_mask is None:
            raise ValueError(f"variant {variant!r} needs a positive_mask")
        return info_nce_many_to_many(scores, positive_mask, temperature,
                                     bidirectional=variant == "many_to_many")
    raise ValueError(f"unknown loss variant {variant!r}; valid: {list(VARIANTS)}")


def _graph_cfg(cfg: Any) -> dict[str, float]:
    """Accept a mapping or an object with ``weight``/``temperature`` (e.g. config.GraphParams)."""
    get = cfg.get if isinstance(cfg, Mapping) else lambda k, d: getattr(cfg, k, d)
    out = {"weight": float(get("weight", 1.0)), "temperature": float(get("temperature", 0.05))}
    _check_temperature(out["temperature"])
    return out


class MultiGraphInfoNCE(nn.Module):
    """Weighted sum over graphs of the contrastive loss: ``L = sum_g w_g * L_g(tau_g)``.

    ``graphs``: name -> {weight, temperature} (mapping or object with those attributes).
    ``forward(batches)`` takes name -> ``(scores (B_q, B_y), positive_mask (B_q, B_y) | None)``
    for the graphs present in this step and returns ``(total_loss, {name: float loss})``.
    """

    def __init__(self, graphs: Mapping[str, Any], variant: str = "many_to_many"):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown loss variant {variant!r}; valid: {list(VARIANTS)}")
        if not graphs:
            raise ValueError("MultiGraphInfoNCE needs at least one graph")
        self.variant = variant
        self.graphs = {name: _graph_cfg(cfg) for name, cfg in graphs.items()}

    def forward(self, batches: Mapping[str, tuple[torch.Tensor, torch.Tensor | None]]
                ) -> tuple[torch.Tensor, dict[str, float]]:
        unknown = sorted(set(batches) - set(self.graphs))
        if unknown:
            raise KeyError(f"unknown graph(s) {unknown}; configured: {sorted(self.graphs)}")
        if not batches:
            raise ValueError("forward() needs at least one graph batch")
        total: torch.Tensor | None = None
        parts: dict[str, float] = {}
        for name, (scores, mask) in batches.items():
            cfg = self.graphs[name]
            loss = contrastive_loss(scores, mask, cfg["temperature"], self.variant)  # ()
            parts[name] = float(loss.detach())
            total = cfg["weight"] * loss if total is None else total + cfg["weight"] * loss
        return total, parts

    def get_config_dict(self) -> dict[str, Any]:
        return {"variant": self.variant, "graphs": {k: dict(v) for k, v in self.graphs.items()}}
