"""How soft soft late interaction's attention is (the scorer's fair test: which SLI runs were
hard MaxSim in disguise).

SLI attends with ``A = softmax_j(<q_i, t_j> / tau_a)`` over raw dot products
(:mod:`uwe.core.scoring`). On a backbone whose token norms are large (all-MiniLM-L6-v2: ~10,
raw dot products up to ~87) a small ``tau_a`` puts all the weight on one target token, which
makes SLI hard MaxSim; :func:`attention_softness` measures it over real query-target pairs.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from uwe.core.scoring import _clean, _token_mean


class Softness(NamedTuple):
    """How soft SLI's attention is, per query-target pair (``(n,)`` each): the largest
    attention weight and the attention entropy (nats) of each query token, averaged over the
    unpadded query tokens, and that entropy as a fraction of ``log Lt`` (``Lt`` = the target's
    unpadded tokens; NaN where ``Lt < 2``, whose attention cannot be anything but one-hot).
    One-hot attention (hard MaxSim) gives 1 / 0 / 0, uniform attention 1/Lt / log Lt / 1."""

    max_weight: torch.Tensor
    entropy: torch.Tensor
    entropy_fraction: torch.Tensor


def attention_softness(q_emb, q_mask, t_emb, t_mask, attention_temperature=0.1) -> Softness:
    """:class:`Softness` of SLI's attention ``softmax_j(<q_i, t_j> / tau_a)`` for query ``i``
    vs target ``i`` (the pairwise layout of :func:`sli_pairwise`); inputs ``(n, L, d)`` raw
    token embeddings and masks."""
    q, qm = _clean(q_emb, q_mask)  # (n, Lq, d)
    t, tm = _clean(t_emb, t_mask)  # (n, Lt, d)
    raw = torch.bmm(q, t.transpose(1, 2))  # (n, Lq, Lt)
    fill = torch.finfo(raw.dtype).min
    logp = (raw / attention_temperature).masked_fill(~tm[:, None, :], fill).log_softmax(-1)
    p = logp.exp()  # (n, Lq, Lt), 0 on padded target tokens
    plogp = torch.where(tm[:, None, :], p * logp, torch.zeros((), dtype=p.dtype))
    entropy = _token_mean(-plogp.sum(-1), qm)  # (n,)
    max_weight = _token_mean(p.max(-1).values, qm)  # (n,)
    lt = tm.sum(-1).to(raw.dtype)  # (n,)
    fraction = torch.where(lt >= 2, entropy / lt.clamp_min(2).log(),
                           torch.full_like(entropy, float("nan")))
    return Softness(max_weight, entropy, fraction)
