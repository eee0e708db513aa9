"""Query-target scorers over token embeddings (UWE, arXiv 2511.07969, Sec. "Soft late interaction").

Conventions shared by every scorer:

* Inputs are the encoder's **raw** token embeddings ``(n, L, d)`` with a padding mask ``(n, L)``
  (bool or 0/1 int). Padded positions are replaced by zero vectors first (``torch.where``), so
  their values -- even ``inf``/``nan`` -- never reach a score or a gradient.
* Soft late interaction (SLI): ``A = softmax_j(<q_i, t_j> / tau_a)`` on raw dot products over the
  unpadded target tokens, ``C_ij = cos(q_i, t_j)``, ``s(q, t) = 1/|q| * sum_i sum_j A_ij C_ij``
  (averaged over unpadded query tokens).
* Hard MaxSim (ColBERT): ``1/|q| * sum_i max_j cos(q_i, t_j)``. ``SLI(tau_a -> 0)`` equals the
  cosine at the arg-max *raw dot product*, which is MaxSim exactly when the token embeddings are
  L2-normalised (then raw dot == cosine).
* A fully padded query or target gives a score of exactly 0 (no error, no NaN, no host sync).

Every all-pairs scorer has the signature
``fn(q_emb, q_mask, t_emb, t_mask, attention_temperature=0.1, target_chunk=None) -> (n_q, n_t)``
and every pairwise scorer ``fn(q_emb, q_mask, t_emb, t_mask, attention_temperature=0.1) -> (n,)``
(row ``i`` vs row ``i``); scorers without an attention ignore ``attention_temperature``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F

from uwe.constants import EPS, EXP_FLOOR, POOLED_TARGET_SCORERS, SCORER_NAMES


def _clean(emb: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Bool mask and embeddings with padded positions set to exactly zero."""
    mask = mask.bool()  # (n, L)
    emb = torch.where(mask[..., None], emb, torch.zeros((), dtype=emb.dtype, device=emb.device))
    return emb, mask  # (n, L, d), (n, L)


def _inv_norm(emb: torch.Tensor) -> torch.Tensor:
    """1 / ||x|| per token (clamped), zero-vector tokens get a finite value."""
    return emb.norm(dim=-1).clamp_min(EPS).reciprocal()  # (..., L)


def _token_mean(tok: torch.Tensor, q_mask: torch.Tensor) -> torch.Tensor:
    """Masked mean over the last (query-token) axis; 0 for a fully padded query."""
    m = q_mask.to(tok.dtype)  # (..., Lq)
    return (tok * m).sum(-1) / m.sum(-1).clamp_min(1.0)  # (...)


def _sli_core(raw, q_inv, t_inv, q_mask, t_mask, tau: float) -> torch.Tensor:
    """SLI from raw dot products; all arguments broadcast over leading axes.

    raw (..., Lq, Lt); q_inv, q_mask (..., Lq); t_inv, t_mask (..., Lt) -> (...)
    """
    fill = torch.finfo(raw.dtype).min
    logits = (raw / tau).masked_fill(~t_mask[..., None, :], fill)  # (..., Lq, Lt)
    attn = logits.softmax(dim=-1)  # (..., Lq, Lt)
    cos = raw * q_inv[..., :, None] * t_inv[..., None, :]  # (..., Lq, Lt)
    tok = (attn * cos).sum(-1)  # (..., Lq)
    return _token_mean(tok, q_mask)  # (...)


def _chunked(fn: Callable, q_emb, q_mask, t_emb, t_mask, target_chunk: int | None, **kw):
    """Apply an all-pairs ``fn`` over target chunks and concatenate along targets."""
    n_t = t_emb.shape[0]
    if target_chunk is None or target_chunk >= n_t:
        return fn(q_emb, q_mask, t_emb, t_mask, **kw)  # (n_q, n_t)
    if target_chunk <= 0:
        raise ValueError(f"target_chunk must be positive, got {target_chunk}")
    parts = [
        fn(q_emb, q_mask, t_emb[s : s + target_chunk], t_mask[s : s + target_chunk], **kw)
        for s in range(0, n_t, target_chunk)
    ]
    return torch.cat(parts, dim=1)  # (n_q, n_t)


# ----------------------------------------------------------------------------- SLI
def _sli_all(q_emb, q_mask, t_emb, t_mask, attention_temperature: float) -> torch.Tensor:
    q, qm = _clean(q_emb, q_mask)  # (a, Lq, d), (a, Lq)
    t, tm = _clean(t_emb, t_mask)  # (b, Lt, d), (b, Lt)
    raw = torch.einsum("aid,bjd->abij", q, t)  # (a, b, Lq, Lt)
    q_inv = _inv_norm(q)[:, None]  # (a, 1, Lq)
    t_inv = _inv_norm(t)[None]  # (1, b, Lt)
    return _sli_core(raw, q_inv, t_inv, qm[:, None], tm[None], attention_temperature)  # (a, b)


def sli_scores(q_emb, q_mask, t_emb, t_mask, attention_temperature=0.1, target_chunk=None):
    """All-pairs SLI scores ``(n_q, n_t)``; ``target_chunk`` bounds memory to
    ``n_q * target_chunk * Lq * Lt`` without changing the result."""
    return _chunked(_sli_all, q_emb, q_mask, t_emb, t_mask, target_chunk,
                    attention_temperature=attention_temperature)


def sli_pairwise(q_emb, q_mask, t_emb, t_mask, attention_temperature=0.1) -> torch.Tensor:
    """SLI of query ``i`` vs target ``i``: ``(n,)``."""
    q, qm = _clean(q_emb, q_mask)  # (n, Lq, d)
    t, tm = _clean(t_emb, t_mask)  # (n, Lt, d)
    raw = torch.bmm(q, t.transpose(1, 2))  # (n, Lq, Lt)
    return _sli_core(raw, _inv_norm(q), _inv_norm(t), qm, tm, attention_temperature)  # (n,)


# ----------------------------------------------------------------------------- SLI over cosines
def _unit_tokens(emb: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Token embeddings L2-normalised, padded positions zero (cleaned first: no NaN reaches
    a gradient)."""
    e, _ = _clean(emb, mask)
    return F.normalize(e, dim=-1, eps=EPS)  # (n, L, d)


def sli_cos_scores(q_emb, q_mask, t_emb, t_mask, attention_temperature=0.1, target_chunk=None):
    """Declared deviation ``sli_cos``: SLI whose attention is ``softmax_j(cos(q_i, t_j) / tau_a)``
    -- SLI over L2-normalised tokens, so ``tau_a`` is in a unit every backbone shares (the
    paper's ``sli`` divides raw dot products, whose scale is the backbone's token norms).
    All pairs ``(n_q, n_t)``."""
    return sli_scores(_unit_tokens(q_emb, q_mask), q_mask, _unit_tokens(t_emb, t_mask), t_mask,
                      attention_temperature, target_chunk)


def sli_cos_pairwise(q_emb, q_mask, t_emb, t_mask, attention_temperature=0.1) -> torch.Tensor:
    """:func:`sli_cos_scores` of row ``i`` vs row ``i``: ``(n,)``."""
    return sli_pairwise(_unit_tokens(q_emb, q_mask), q_mask, _unit_tokens(t_emb, t_mask),
                        t_mask, attention_temperature)


# ----------------------------------------------------------------------------- mean pooling
def mean_pool(emb: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked mean of token embeddings ``(n, d)``; zero vector for a fully padded row."""
    e, m = _clean(emb, mask)  # (n, L, d), (n, L)
    return e.sum(1) / m.sum(1, keepdim=True).clamp_min(1).to(e.dtype)  # (n, d)


def mean_cosine_scores(q_emb, q_mask, t_emb, t_mask, attention_temperature=0.1,
                       target_chunk=None) -> torch.Tensor:
    """Cosine of mean-pooled embeddings, all pairs ``(n_q, n_t)`` (temperature/chunk unused)."""
    q = F.normalize(mean_pool(q_emb, q_mask), dim=-1, eps=EPS)  # (n_q, d)
    t = F.normalize(mean_pool(t_emb, t_mask), dim=-1, eps=EPS)  # (n_t, d)
    return q @ t.T  # (n_q, n_t)


def mean_cosine_pairwise(q_emb, q_mask, t_emb, t_mask, attention_temperature=0.1):
    """Cosine of mean-pooled embeddings, row ``i`` vs row ``i``: ``(n,)``."""
    q = F.normalize(mean_pool(q_emb, q_mask), dim=-1, eps=EPS)  # (n, d)
    t = F.normalize(mean_pool(t_emb, t_mask), dim=-1, eps=EPS)  # (n, d)
    return (q * t).sum(-1)  # (n,)


# ----------------------------------------------------------------------------- hard MaxSim
def _maxsim_core(cos: torch.Tensor, q_mask, t_mask) -> torch.Tensor:
    """cos (..., Lq, Lt); q_mask (..., Lq); t_mask (..., Lt) -> (...)."""
    fill = torch.finfo(cos.dtype).min
    best = cos.masked_fill(~t_mask[..., None, :], fill).amax(-1)  # (..., Lq)
    best = torch.where(t_mask.any(-1, keepdim=True), best, torch.zeros_like(best))  # (..., Lq)
    return _token_mean(best, q_mask)  # (...)


def _maxsim_all(q_emb, q_mask, t_emb, t_mask) -> torch.Tensor:
    q, qm = _clean(q_emb, q_mask)
    t, tm = _clean(t_emb, t_mask)
    qn, tn = F.normalize(q, dim=-1, eps=EPS), F.normalize(t, dim=-1, eps=EPS)  # (a|b, L, d)
    cos = torch.einsum("aid,bjd->abij", qn, tn)  # (a, b, Lq, Lt)
    return _maxsim_core(cos, qm[:, None], tm[None])  # (a, b)


def maxsim_scores(q_emb, q_mask, t_emb, t_mask, attention_temperature=0.1, target_chunk=None):
    """ColBERT MaxSim ``1/|q| sum_i max_j cos(q_i, t_j)``, all pairs ``(n_q, n_t)``."""
    return _chunked(_maxsim_all, q_emb, q_mask, t_emb, t_mask, target_chunk)


def maxsim_pairwise(q_emb, q_mask, t_emb, t_mask, attention_temperature=0.1) -> torch.Tensor:
    """ColBERT MaxSim, row ``i`` vs row ``i``: ``(n,)``."""
    q, qm = _clean(q_emb, q_mask)
    t, tm = _clean(t_emb, t_mask)
    qn, tn = F.normalize(q, dim=-1, eps=EPS), F.normalize(t, dim=-1, eps=EPS)
    cos = torch.bmm(qn, tn.transpose(1, 2))  # (n, Lq, Lt)
    return _maxsim_core(cos, qm, tm)  # (n,)


# ----------------------------------------------------------------------------- soft, mean target
def _token_cos_to_vec(q_emb, q_mask):
    q, qm = _clean(q_emb, q_mask)
    return F.normalize(q, dim=-1, eps=EPS), qm  # (n, Lq, d), (n, Lq)


def sli_mean_target_scores(q_emb, q_mask, t_emb, t_mask, attention_temperature=0.1,
                           target_chunk=None) -> torch.Tensor:
    """Ablation "soft with mean-pooled target": the target is one vector, so ``A == 1`` and
    ``s = 1/|q| sum_i cos(q_i, mean(t))``; all pairs ``(n_q, n_t)`` (temperature/chunk unused)."""
    qn, qm = _token_cos_to_vec(q_emb, q_mask)  # (a, Lq, d), (a, Lq)
    t = F.normalize(mean_pool(t_emb, t_mask), dim=-1, eps=EPS)  # (b, d)
    tok = torch.einsum("aid,bd->abi", qn, t)  # (a, b, Lq)
    return _token_mean(tok, qm[:, None])  # (a, b)


def sli_mean_target_pairwise(q_emb, q_mask, t_emb, t_mask, attention_temperature=0.1):
    """Soft with mean-pooled target, row ``i`` vs row ``i``: ``(n,)``."""
    qn, qm = _token_cos_to_vec(q_emb, q_mask)  # (n, Lq, d), (n, Lq)
    t = F.normalize(mean_pool(t_emb, t_mask), dim=-1, eps=EPS)  # (n, d)
    tok = (qn * t[:, None]).sum(-1)  # (n, Lq)
    return _token_mean(tok, qm)  # (n,)


def pooled_target_scores(scorer: str, q_emb: torch.Tensor, q_mask: torch.Tensor,
                         t_pooled: torch.Tensor) -> torch.Tensor:
    """All pairs ``(n_q, n_t)`` of a scorer of :data:`POOLED_TARGET_SCORERS` against targets
    given as unit mean-pooled vectors ``t_pooled`` ``(n_t, d)`` (an index caches them once):
    ``mean`` = cosine of the pooled query; ``sli_mean_target`` = ``1/|q| sum_i cos(q_i, t)``.
    The same values as :func:`mean_cosine_scores` / :func:`sli_mean_target_scores` on the
    targets' tokens, up to float rounding."""
    if scorer == "mean":
        return F.normalize(mean_pool(q_emb, q_mask), dim=-1, eps=EPS) @ t_pooled.T
    if scorer != "sli_mean_target":
        raise ValueError(f"scorer {scorer!r} does not score pooled targets; "
                         f"those that do: {POOLED_TARGET_SCORERS}")
    b_q, l_q = q_mask.shape
    qe = q_emb.masked_fill(~q_mask.bool()[..., None], 0)  # padded tokens exactly zero
    qn = F.normalize(qe, dim=-1, eps=EPS)  # (b_q, Lq, d)
    tok = qn.reshape(-1, qn.shape[-1]) @ t_pooled.T  # (b_q * Lq, n_t)
    denom = q_mask.sum(1, keepdim=True).clamp_min(1).to(tok.dtype)  # (b_q, 1)
    return tok.reshape(b_q, l_q, -1).sum(1) / denom  # (b_q, n_t)


# ----------------------------------------------------------------------------- token lists
def unit_and_norm(emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(emb / ||emb||, ||emb||)`` per token: ``(..., d)`` unit vectors and ``(...)`` norms."""
    norm = emb.norm(dim=-1)  # (...)
    return emb / norm.clamp_min(EPS)[..., None], norm


def sli_unpadded(q_unit: torch.Tensor, q_norm: torch.Tensor, t_unit: torch.Tensor,
                 t_norm: torch.Tensor, attention_temperature: float = 0.1) -> torch.Tensor:
    """SLI of unpadded, equal-length queries ``(a, Lq, d)`` vs equal-length targets
    ``(b, Lt, d)``, given as unit vectors and norms (:func:`unit_and_norm`) -> ``(a, b)``:
    :func:`sli_scores`' formula without masks, for inference on length groups.

    One matrix product gives the cosines ``C``; the raw dot products are
    ``C * |q_i| * |t_j|``, so the attention logits cost one broadcast multiply instead of a
    second product. Without padding no masking is needed. Equals :func:`sli_scores` on the same
    texts up to float rounding. It works in place on its intermediates (no autograd: training
    scores with :func:`sli_scores`). The torch path of :class:`uwe.model.uwe_model.UWEModel`;
    serving swaps in the fused CPU kernel of :mod:`uwe.infer.dense`.
    """
    a, lq, d = q_unit.shape
    b, lt, _ = t_unit.shape
    cos = (q_unit.reshape(a * lq, d) @ t_unit.reshape(b * lt, d).T).view(a, lq, b, lt)
    logits = cos * t_norm.view(1, 1, b, lt)  # (a, Lq, b, Lt)
    logits.mul_((q_norm / attention_temperature).view(a, lq, 1, 1))
    # Shifted logits are <= 0; clamping them at EXP_FLOOR keeps exp() out of the subnormal
    # range, whose slow path halves the speed on x86 (uwe.constants.EXP_FLOOR).
    logits.sub_(logits.amax(-1, keepdim=True)).clamp_(min=EXP_FLOOR).exp_()
    denom = logits.sum(-1)  # (a, Lq, b)
    numer = logits.mul_(cos).sum(-1)  # (a, Lq, b)
    return numer.div_(denom).mean(1)  # (a, b)


def sli_unpadded_blocks(q_unit: torch.Tensor, q_norm: torch.Tensor, targets,
                        attention_temperature: float = 0.1) -> list[torch.Tensor]:
    """:func:`sli_unpadded` of one query group against target groups ``[(t_unit, t_norm)]``
    -> ``[(a, b_i)]`` in order: the block scorer of :class:`uwe.model.uwe_model.UWEModel`
    (``uwe.infer.dense.sli_dense_blocks`` has the same signature and runs them side by side)."""
    return [sli_unpadded(q_unit, q_norm, tu, tn, attention_temperature) for tu, tn in targets]


def pad_tokens(tokens) -> tuple[torch.Tensor, torch.Tensor]:
    """A list of ``(L_i, d)`` token tensors (or one ``(L, d)``) -> ``(n, L, d)`` and a mask."""
    rows = [tokens] if isinstance(tokens, torch.Tensor) and tokens.dim() == 2 else list(tokens)
    if not rows:
        raise ValueError("no token embeddings given")
    dim = rows[0].shape[-1]
    length = max(int(r.shape[0]) for r in rows)
    emb = rows[0].new_zeros(len(rows), length, dim, dtype=torch.float32)
    mask = torch.zeros(len(rows), length, dtype=torch.bool, device=emb.device)
    for i, r in enumerate(rows):
        if r.dim() != 2 or r.shape[-1] != dim:
            raise ValueError(f"token embeddings {i}: shape {tuple(r.shape)}, expected (L, {dim})")
        emb[i, : r.shape[0]] = r.float()
        mask[i, : r.shape[0]] = True
    return emb, mask


def sli_similarity(query_tokens, target_tokens, attention_temperature: float,
                   attention: str = "raw") -> torch.Tensor:
    """UWE's SLI score of every query against every target from per-text token embeddings, as
    ``sentence_transformers.MultiVectorEncoder.encode`` returns them for a UWE folder (a list
    of ``(L_i, d)`` tensors, or one ``(L, d)`` tensor) -> ``(n_q, n_t)`` float32.
    ``attention``: ``"raw"`` for ``scorer: sli``, ``"cosine"`` for ``sli_cos``; take
    ``attention_temperature`` from the folder's ``uwe_config.json``."""
    fns = {"raw": sli_scores, "cosine": sli_cos_scores}
    if attention not in fns:
        raise ValueError(f"attention must be one of {sorted(fns)}, got {attention!r}")
    q, qm = pad_tokens(query_tokens)
    t, tm = pad_tokens(target_tokens)
    return fns[attention](q, qm, t, tm, attention_temperature)


# ----------------------------------------------------------------------------- registry
class Scorer(NamedTuple):
    all_pairs: Callable[..., torch.Tensor]
    pairwise: Callable[..., torch.Tensor]


SCORERS: dict[str, Scorer] = {
    "sli": Scorer(sli_scores, sli_pairwise),
    "mean": Scorer(mean_cosine_scores, mean_cosine_pairwise),
    "maxsim": Scorer(maxsim_scores, maxsim_pairwise),
    "sli_mean_target": Scorer(sli_mean_target_scores, sli_mean_target_pairwise),
    "sli_cos": Scorer(sli_cos_scores, sli_cos_pairwise),
}
if tuple(SCORERS) != SCORER_NAMES:  # the torch-free engines validate folders by these names
    raise ImportError(f"uwe.constants.SCORER_NAMES {SCORER_NAMES} != SCORERS {tuple(SCORERS)}")
#: scorers with a token attention, and the unit of its logits (``uwe.core.softness``)
ATTENTION_UNIT: dict[str, str] = {"sli": "raw", "sli_cos": "cosine"}


def get_scorer(name: str) -> Scorer:
    """Look up ``(all_pairs, pairwise)`` by name; unknown names raise ``ValueError``."""
    try:
        return SCORERS[name]
    except KeyError:
        raise ValueError(f"unknown scorer {name!r}; valid: {sorted(SCORERS)}") from None
