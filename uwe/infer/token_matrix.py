"""SLI over cached target tokens as one matrix product at the memory limit plus a segmented
softmax.

Scoring a query against cached targets with soft late interaction (the paper's Eq. for SLI,
``../shared/docs/paper.md``) is, per query token ``i`` and target token ``j``, a dot product
``q_i . t_j``; the rest -- a softmax over each target's own tokens and the attention-weighted
cosine sum -- touches one number per (query token, target token). So the work is one product
of the query's ``Lq`` tokens with every cached target token, and a query is as fast as reading
the target tokens once from memory.

:class:`TokenMatrix` stores every target token once, token-major: one ``(N, d)`` matrix whose
rows ``offsets[k]:offsets[k+1]`` are target ``k``'s tokens (targets of any length, no padding,
in target order), in one of :data:`LAYOUTS`:

* ``float32`` -- the exact reference (4 bytes a value);
* ``bfloat16`` -- 2 bytes a value, the product in oneDNN's bf16 kernel (native on CPUs with
  AVX512-BF16 or AMX; float32 accumulation, the products rounded to bf16);
* ``int8`` -- 1 byte a value with one float32 scale per token (``t ~ scale * q8``,
  ``scale = max|t| / 127``), the product in torch's weight-only int8 kernel
  (``aten._weight_int8pack_mm``: float32 query, int8 tokens, float32 products).

The exact float32 norms ``|t_j|`` are kept beside (the cosines divide by them), so only the
products carry the layout's rounding. :meth:`TokenMatrix.score` multiplies in blocks of
targets (``block_elements`` products at most per block, so that a batch of 64 queries
streams the matrix once with its products in cache) and hands each block to
:func:`uwe.infer.kernels.segmented_sli`. :meth:`TokenMatrix.error_bound` bounds the score
error of a lossy layout against the exact one (see its doc); ``tests/test_token_matrix.py``
checks the bound and the exact layout against the reference formula
(:func:`uwe.infer.numpy_engine.sli_dense`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from uwe.constants import EPS

LAYOUTS = ("float32", "bfloat16", "int8")
BLOCK_ELEMENTS = 1 << 20  # products (query token x target token) per block: 4 MiB of float32
ATTENTION = ("raw", "cosine")  # the paper's logits (raw dot / tau), or cosines / tau


class TokenMatrix:
    """All target tokens of an index in one token-major matrix (module doc).

    Build it with :meth:`from_buckets` from exact-length buckets ``(index (b,), emb (b, L, d),
    norm (b, L))`` (a :class:`uwe.infer.numpy_engine.NumpyIndex`'s ``buckets``)."""

    def __init__(self, tokens: np.ndarray, norms: np.ndarray, offsets: np.ndarray,
                 layout: str = "float32"):
        import torch

        if layout not in LAYOUTS:
            raise ValueError(f"token layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
        tokens = np.ascontiguousarray(tokens, dtype=np.float32)
        offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        if (tokens.ndim != 2 or norms.shape != tokens.shape[:1] or offsets.ndim != 1
                or offsets.shape[0] < 1 or offsets[0] != 0 or offsets[-1] != tokens.shape[0]
                or np.any(np.diff(offsets) < 0)):
            raise ValueError(f"TokenMatrix: tokens {tokens.shape}, norms {norms.shape} and "
                             f"offsets {offsets.shape} (0 .. N, non-decreasing) do not match")
        self.layout, self.offsets = layout, offsets
        self.n_tokens, self.dim = tokens.shape
        self.norms = np.ascontiguousarray(norms, dtype=np.float32)
        self.inv_norms = (np.float32(1.0) / np.maximum(self.norms, np.float32(EPS))).astype(
            np.float32)
        self.scale: torch.Tensor | None = None
        if layout == "int8":
            from uwe.infer.kernels import quantize_rows

            q8, scale = quantize_rows(tokens)
            self.tokens = torch.from_numpy(q8)
            self.scale = torch.from_numpy(scale)
            # what the stored tokens lose, per token: |t - scale*q8|_inf <= scale / 2
            self._half_step = (scale / np.float32(2.0)).astype(np.float32)
        elif layout == "bfloat16":
            self.tokens = torch.from_numpy(tokens).to(torch.bfloat16)
        else:
            self.tokens = torch.from_numpy(tokens)
        self._ones = np.ones(self.n_tokens, dtype=np.float32)

    @classmethod
    def from_buckets(cls, n_targets: int,
                     buckets: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]],
                     layout: str = "float32") -> TokenMatrix:
        """From exact-length buckets ``(index (b,), emb (b, L, d), norm (b, L))`` covering
        targets ``0 .. n_targets-1`` once each; ValueError otherwise."""
        buckets = list(buckets)
        lengths = np.full(n_targets, -1, dtype=np.int64)
        for idx, emb, norm in buckets:
            if emb.ndim != 3 or norm.shape != emb.shape[:2] or idx.shape != emb.shape[:1]:
                raise ValueError(f"TokenMatrix: a bucket of shapes {idx.shape}, {emb.shape}, "
                                 f"{norm.shape}")
            if np.any(idx < 0) or np.any(idx >= n_targets) or np.any(lengths[idx] >= 0):
                raise ValueError("TokenMatrix: bucket indexes out of range or repeated")
            lengths[idx] = emb.shape[1]
        if np.any(lengths < 0):
            raise ValueError(f"TokenMatrix: the buckets miss {int((lengths < 0).sum())} of "
                             f"{n_targets} targets")
        offsets = np.zeros(n_targets + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        dim = buckets[0][1].shape[2] if buckets else 1
        tokens = np.empty((int(offsets[-1]), dim), dtype=np.float32)
        norms = np.empty(int(offsets[-1]), dtype=np.float32)
        for idx, emb, norm in buckets:
            rows = (offsets[idx][:, None] + np.arange(emb.shape[1])).reshape(-1)
            tokens[rows] = emb.reshape(-1, dim)
            norms[rows] = norm.reshape(-1)
        return cls(tokens, norms, offsets, layout)

    def __len__(self) -> int:
        return int(self.offsets.shape[0] - 1)

    @property
    def nbytes(self) -> int:
        """Bytes of the stored tokens, their scales (int8), norms and offsets."""
        scale = 0 if self.scale is None else self.scale.numel() * 4
        return (self.tokens.numel() * self.tokens.element_size() + scale + self.norms.nbytes
                + self.offsets.nbytes)

    # -- the product ----------------------------------------------------------------------
    def products(self, q, lo: int, hi: int) -> np.ndarray:
        """``q (R, d) @ tokens[lo:hi].T`` as ``(R, hi - lo)`` float32 (``q``: a float32 torch
        tensor), in the layout's arithmetic."""
        import torch

        if self.layout == "int8":
            return torch.ops.aten._weight_int8pack_mm(q, self.tokens[lo:hi],
                                                      self.scale[lo:hi]).numpy()
        if self.layout == "bfloat16":
            return torch.mm(q.to(torch.bfloat16), self.tokens[lo:hi].T).float().numpy()
        return torch.mm(q, self.tokens[lo:hi].T).numpy()

    def blocks(self, rows: int, block_elements: int = BLOCK_ELEMENTS) -> list[tuple[int, int]]:
        """Target ranges ``(k_lo, k_hi)`` whose products with ``rows`` query tokens stay within
        ``block_elements`` (one target at least per block)."""
        n = len(self)
        per_block = max(1, block_elements // max(1, rows))
        out, k = [], 0
        while k < n:
            end = int(np.searchsorted(self.offsets, self.offsets[k] + per_block, side="right")) - 1
            end = min(n, max(k + 1, end))
            out.append((k, end))
            k = end
        return out

    # -- scoring --------------------------------------------------------------------------
    def score(self, q: np.ndarray, tau: float, attention: str = "raw",
              block_elements: int = BLOCK_ELEMENTS, threads: int | None = None) -> np.ndarray:
        """SLI of equal-length queries ``q`` ``(a, Lq, d)`` float32 against every target ->
        ``(a, n_t)`` float32: logits ``q_i . t_j / tau`` (``attention="raw"``, the paper's) or
        ``cos_ij / tau`` (``"cosine"``), a softmax over each target's tokens, ``mean_i sum_j
        A_ij cos_ij``."""
        import torch

        from uwe.infer.kernels import segmented_sli

        if attention not in ATTENTION:
            raise ValueError(f"attention must be one of {ATTENTION}, got {attention!r}")
        q = np.ascontiguousarray(q, dtype=np.float32)
        if q.ndim != 3 or (q.shape[2] != self.dim and len(self)):
            raise ValueError(f"queries {q.shape} do not match tokens of dimension {self.dim}")
        a, lq, _ = q.shape
        out = np.zeros((a, len(self)), dtype=np.float32)
        if a == 0 or len(self) == 0 or lq == 0:
            return out
        flat = q.reshape(a * lq, self.dim)
        inv_q = (np.float32(1.0) / np.maximum(np.sqrt(np.einsum("rd,rd->r", flat, flat)),
                                              np.float32(EPS))).astype(np.float32)
        if attention == "raw":
            att_q = np.full(a * lq, np.float32(1.0 / tau), dtype=np.float32)
            att_t = self._ones
        else:
            att_q, att_t = (inv_q / np.float32(tau)).astype(np.float32), self.inv_norms
        qt = torch.from_numpy(flat)
        for k_lo, k_hi in self.blocks(a * lq, block_elements):
            lo, hi = int(self.offsets[k_lo]), int(self.offsets[k_hi])
            raw = self.products(qt, lo, hi)
            segmented_sli(raw, att_q, att_t, inv_q, self.inv_norms, self.offsets, k_lo, k_hi,
                          lq, out, threads)
        return out

    def error_bound(self, q: np.ndarray, tau: float, attention: str = "raw") -> np.ndarray:
        """An upper bound ``(a,)`` of ``|score - exact score|`` over all targets for each query
        of ``q`` ``(a, Lq, d)``, where the exact score is the float32 layout's (float32
        rounding aside).

        A product error ``|d_ij| <= e_ij`` moves a cosine by at most ``c_ij = e_ij / (|q_i||t_j|)``
        and a logit by at most ``h_ij`` (``e_ij / tau`` for raw attention, ``c_ij / tau`` for
        cosine attention); a softmax whose logits move by at most ``h`` changes its weights by
        a factor within ``exp(+-2h)``, so ``sum_j A_ij cos_ij`` moves by at most
        ``max_j c_ij + (exp(2 max_j h_ij) - 1)`` (the weights' change sums to zero, and the
        cosines lie within an interval of width 2 about its midpoint: ``sum |dA| * 1``).
        The score is the mean over ``i``. Per layout (``g = 1.01 d 2^-24``: float32 summation
        of ``d`` terms, ``u = 2^-9``: bf16 rounding): int8 rounds each stored value by at most
        half its token's scale ``h_j``: ``e_ij <= ||q_i||_1 h_j + g |q_i| (|t_j| + sqrt(d) h_j)``;
        bfloat16 rounds the query and token values and the product:
        ``e_ij <= (3u + 3u^2 + u^3 + g) |q_i| |t_j|`` (Cauchy-Schwarz on ``sum |q_ik t_jk|``);
        float32: 0."""
        q = np.asarray(q, dtype=np.float32)
        a, lq, _ = q.shape
        if self.layout == "float32" or a == 0 or lq == 0 or len(self) == 0:
            return np.zeros(a, dtype=np.float64)
        q64 = q.astype(np.float64)
        qn = np.maximum(np.sqrt((q64 * q64).sum(-1)), EPS)  # (a, Lq)
        tn = np.maximum(self.norms.astype(np.float64), EPS)
        g = 1.01 * self.dim * 2.0 ** -24
        if self.layout == "int8":
            l1 = np.abs(q64).sum(-1)  # (a, Lq)
            half = self._half_step.astype(np.float64)
            t_hat = tn + math.sqrt(self.dim) * half  # |stored token| <= this
            # e_ij / (|q_i| |t_j|) <= l1/qn * max(half/tn) + g * max(t_hat/tn)
            cos_err = l1 / qn * np.max(half / tn) + g * np.max(t_hat / tn)
            raw_err = l1 * np.max(half) + g * qn * np.max(t_hat)  # e_ij itself
        else:  # bfloat16
            u = 2.0 ** -9
            rel = 3 * u + 3 * u * u + u ** 3 + g
            cos_err = np.full((a, lq), rel)
            raw_err = rel * qn * np.max(tn)
        logit_err = raw_err / tau if attention == "raw" else cos_err / tau
        per_token = cos_err + np.expm1(np.minimum(2 * logit_err, 10.0))
        return np.minimum(per_token.mean(1), 2.0)  # scores lie in [-1, 1]


__all__ = ["ATTENTION", "BLOCK_ELEMENTS", "LAYOUTS", "TokenMatrix"]
