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

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

EPS = 1e-12
EXP_FLOOR = -80.0  # see sli_dense


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


# ----------------------------------------------------------------------------- registry
class Scorer(NamedTuple):
    all_pairs: Callable[..., torch.Tensor]
    pairwise: Callable[..., torch.Tensor]


SCORERS: dict[str, Scorer] = {
    "sli": Scorer(sli_scores, sli_pairwise),
    "mean": Scorer(mean_cosine_scores, mean_cosine_pairwise),
    "maxsim": Scorer(maxsim_scores, maxsim_pairwise),
    "sli_mean_target": Scorer(sli_mean_target_scores, sli_mean_target_pairwise),
}


def get_scorer(name: str) -> Scorer:
    """Look up ``(all_pairs, pairwise)`` by name; unknown names raise ``ValueError``."""
    try:
        return SCORERS[name]
    except KeyError:
        raise ValueError(f"unknown scorer {name!r}; valid: {sorted(SCORERS)}") from None


# ----------------------------------------------------------------------------- packed inference
@dataclass
class PackedTargets:
    """Unpadded target tokens of ``n_targets`` sequences, concatenated."""

    tokens: torch.Tensor  # (N, d) raw token embeddings
    normed: torch.Tensor  # (N, d) L2-normalised copies
    segment_ids: torch.Tensor  # (N,) long, target index of each token
    offsets: torch.Tensor  # (n_targets + 1,) long, tokens of target k: offsets[k]:offsets[k+1]
    n_targets: int

    def to(self, device) -> PackedTargets:
        return PackedTargets(self.tokens.to(device), self.normed.to(device),
                             self.segment_ids.to(device), self.offsets.to(device), self.n_targets)


def pack_targets(t_emb: torch.Tensor, t_mask: torch.Tensor) -> PackedTargets:
    """Drop padding from ``t_emb`` ``(n_t, Lt, d)`` and flatten to ``(N, d)``."""
    t, tm = _clean(t_emb, t_mask)  # (n_t, Lt, d), (n_t, Lt)
    tokens = t[tm]  # (N, d), row-major so tokens of a target are contiguous
    seg = torch.arange(t.shape[0], device=t.device)[:, None].expand_as(tm)[tm]  # (N,)
    lengths = tm.sum(1)  # (n_t,)
    offsets = torch.cat([lengths.new_zeros(1), lengths.cumsum(0)])  # (n_t + 1,)
    normed = F.normalize(tokens, dim=-1, eps=EPS)  # (N, d)
    return PackedTargets(tokens, normed, seg, offsets, int(t.shape[0]))


def _sli_packed_block(q: torch.Tensor, qm: torch.Tensor, p: PackedTargets, tau: float):
    """q (a, Lq, d) cleaned, qm (a, Lq) -> (a, n_targets)."""
    a, lq, _ = q.shape
    raw = q.reshape(a * lq, -1) @ p.tokens.T  # (a*Lq, N)
    cos = F.normalize(q, dim=-1, eps=EPS).reshape(a * lq, -1) @ p.normed.T  # (a*Lq, N)
    logits = raw / tau  # (a*Lq, N)
    seg = p.segment_ids[None].expand_as(logits)  # (a*Lq, N)
    seg_max = logits.new_zeros(a * lq, p.n_targets).scatter_reduce(
        1, seg, logits, reduce="amax", include_self=False)  # (a*Lq, n_t)
    e = (logits - seg_max.gather(1, seg)).exp()  # (a*Lq, N)
    denom = logits.new_zeros(a * lq, p.n_targets).index_add_(1, p.segment_ids, e)  # (a*Lq, n_t)
    numer = logits.new_zeros(a * lq, p.n_targets).index_add_(1, p.segment_ids, e * cos)
    tok = (numer / denom.clamp_min(torch.finfo(denom.dtype).tiny)).reshape(a, lq, -1)
    return _token_mean(tok.transpose(1, 2), qm[:, None])  # (a, n_t)


def sli_scores_packed(q_emb, q_mask, packed: PackedTargets, attention_temperature=0.1,
                      query_chunk: int | None = None) -> torch.Tensor:
    """SLI against packed targets with one matmul per query block and a segment-wise softmax
    (per-segment max via ``scatter_reduce('amax')``, sums via ``index_add_``); equals
    :func:`sli_scores` up to float rounding. Returns ``(n_q, n_targets)``."""
    q, qm = _clean(q_emb, q_mask)  # (n_q, Lq, d), (n_q, Lq)
    step = query_chunk or max(q.shape[0], 1)
    parts = [_sli_packed_block(q[s : s + step], qm[s : s + step], packed, attention_temperature)
             for s in range(0, q.shape[0], step)]
    if not parts:
        return q.new_zeros(0, packed.n_targets)
    return torch.cat(parts, dim=0)  # (n_q, n_targets)


# ----------------------------------------------------------------------------- dense inference
def unit_and_norm(emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(emb / ||emb||, ||emb||)`` per token: ``(..., d)`` unit vectors and ``(...)`` norms."""
    norm = emb.norm(dim=-1)  # (...)
    return emb / norm.clamp_min(EPS)[..., None], norm


def _fused_default(q_unit: torch.Tensor) -> bool:
    """The Numba kernel's cases: CPU float32 tensors, Numba available (``uwe.kernels``)."""
    from uwe.kernels import available

    return q_unit.device.type == "cpu" and q_unit.dtype == torch.float32 and available()


_POOLS: dict[int, ThreadPoolExecutor] = {}
if hasattr(os, "register_at_fork"):  # a forked child has none of the parent's pool threads
    os.register_at_fork(after_in_child=_POOLS.clear)


def _pool(workers: int) -> ThreadPoolExecutor:
    if workers not in _POOLS:
        _POOLS[workers] = ThreadPoolExecutor(workers, thread_name_prefix="uwe-sli")
    return _POOLS[workers]


@cache
def _blas():
    """threadpoolctl's handle on the BLAS libraries loaded (NumPy's OpenBLAS; not torch's)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def sli_dense(q_unit: torch.Tensor, q_norm: torch.Tensor, t_unit: torch.Tensor,
              t_norm: torch.Tensor, attention_temperature: float = 0.1,
              fused: bool | None = None) -> torch.Tensor:
    """SLI of unpadded, equal-length queries ``(a, Lq, d)`` vs equal-length targets
    ``(b, Lt, d)``, given as unit vectors and norms (:func:`unit_and_norm`) -> ``(a, b)``.

    The inference hot path: one matrix product gives the cosines ``C``; the raw dot products
    are ``C * |q_i| * |t_j|``, so the attention logits cost one broadcast multiply instead of
    a second product. Without padding no masking is needed. Equals :func:`sli_scores` on the
    same texts up to float rounding.

    ``fused`` (default: on CPU float32 tensors when Numba is available) runs the elementwise
    part as the one-pass kernel :func:`uwe.kernels.sli_from_cos`, the targets split into one
    block per thread (:func:`sli_dense_blocks`); ``False`` forces the tensor path (GPU, other
    dtypes). Both give the same scores up to float rounding. Inference only: the tensor path
    works in place, so training scores with :func:`sli_scores`.
    """
    a, lq, d = q_unit.shape
    b, lt, _ = t_unit.shape
    if fused is None:
        fused = _fused_default(q_unit)
    if fused and b:
        step = -(-b // min(torch.get_num_threads(), b))  # one block per thread
        return torch.cat(sli_dense_blocks(q_unit, q_norm, [
            (t_unit[j : j + step], t_norm[j : j + step]) for j in range(0, b, step)],
            attention_temperature, fused=True), dim=1)
    cos = (q_unit.reshape(a * lq, d) @ t_unit.reshape(b * lt, d).T).view(a, lq, b, lt)
    logits = cos * t_norm.view(1, 1, b, lt)  # (a, Lq, b, Lt)
    logits.mul_((q_norm / attention_temperature).view(a, lq, 1, 1))
    # Shifted logits are <= 0; clamping them at -80 keeps exp() out of the subnormal range,
    # whose slow path halves the speed on x86. A clamped term weighs < e^-80 relative to the
    # row's largest term (e^0 = 1), far below float32 rounding, so scores do not change.
    logits.sub_(logits.amax(-1, keepdim=True)).clamp_(min=EXP_FLOOR).exp_()
    denom = logits.sum(-1)  # (a, Lq, b)
    numer = logits.mul_(cos).sum(-1)  # (a, Lq, b)
    return numer.div_(denom).mean(1)  # (a, b)


def sli_dense_blocks(q_unit: torch.Tensor, q_norm: torch.Tensor,
                     targets: Sequence[tuple[torch.Tensor, torch.Tensor]],
                     attention_temperature: float = 0.1, fused: bool | None = None,
                     workers: int | None = None) -> list[torch.Tensor]:
    """:func:`sli_dense` of one query group against several target groups ``[(t_unit,
    t_norm)]`` (each unpadded and of one length) -> ``[(a, b_i)]`` in the same order.

    The fused CPU path runs each block -- its cosine product through NumPy's BLAS limited to
    one thread, then the one-pass kernel in the same thread (:func:`uwe.kernels.sli_from_cos`
    with ``threads=1``, GIL released) -- as one work item on ``workers`` threads (default:
    ``torch.get_num_threads()``). One pool of threads thus does all the work: a BLAS pool, an
    OpenMP pool and Numba's pool would each spin on the cores while the others work, and
    NumPy's OpenBLAS runs these products ~1.5x faster than torch's BLAS on some CPUs
    (``scripts/bench_sli.py``). Scores equal the tensor path's up to float rounding and do not
    depend on ``workers``. Otherwise each block goes through :func:`sli_dense`.
    """
    if fused is None:
        fused = _fused_default(q_unit)
    if not fused:
        return [sli_dense(q_unit, q_norm, tu, tn, attention_temperature, fused=False)
                for tu, tn in targets]
    from uwe.kernels import sli_from_cos

    a, lq, d = q_unit.shape
    q2 = q_unit.detach().reshape(a * lq, d).contiguous().numpy()
    q_scale = (q_norm.detach().reshape(-1) / attention_temperature).contiguous().numpy()

    def block(item: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        t_unit, t_norm = item
        b, lt, _ = t_unit.shape
        # token-major targets: column j*b+k = target k, token j (the kernel's layout)
        t_major = np.ascontiguousarray(t_unit.detach().numpy().transpose(1, 0, 2))
        cos = q2 @ t_major.reshape(lt * b, d).T  # (a*Lq, Lt*b)
        t_scale = np.ascontiguousarray(t_norm.detach().numpy().T).reshape(-1)  # (Lt*b,)
        return torch.from_numpy(sli_from_cos(cos, q_scale, t_scale, a, lq, b, lt, threads=1))

    workers = max(1, workers or torch.get_num_threads())
    with _blas().limit(limits=1, user_api="blas"):
        if workers == 1 or len(targets) <= 1:
            return [block(t) for t in targets]
        return list(_pool(workers).map(block, targets))
