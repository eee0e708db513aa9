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
  (``aten._weight_int8pack_mm``: float32 query, int8 tokens, float32 products);
* ``int8_block`` -- 1 byte a value with one float32 scale per :data:`QUANT_BLOCK` values of a
  token (symmetric, ``scale = max|block| / 127``: finer than one scale per token), the product
  in ONNX Runtime's ``MatMulNBits`` (8 bits, ``accuracy_level`` 4: the query is quantised the
  same way per block and the dot products run in int8, VNNI where the CPU has it).

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
import os
from collections.abc import Iterable

import numpy as np

from uwe.constants import EPS

LAYOUTS = ("float32", "bfloat16", "int8", "int8_block")
ROWS_BLOCK_FACTOR = 8  # int8_block: query rows per product call, up to 8 blocks of products
QUANT_BLOCK = 32  # values of a token (and of a query token) per int8 scale in "int8_block"
BLOCK_ELEMENTS = 1 << 20  # products (query token x target token) per block: 4 MiB of float32
ATTENTION = ("raw", "cosine")  # the paper's logits (raw dot / tau), or cosines / tau


class TokenMatrix:
    """All target tokens of an index in one token-major matrix (module doc).

    Build it with :meth:`from_buckets` from exact-length buckets ``(index (b,), emb (b, L, d),
    norm (b, L))`` (a :class:`uwe.infer.numpy_engine.NumpyIndex`'s ``buckets``)."""

    def __init__(self, tokens: np.ndarray, norms: np.ndarray, offsets: np.ndarray,
                 layout: str = "float32", threads: int | None = None):
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
        self.block_scale: np.ndarray | None = None
        if layout == "int8":
            from uwe.infer.kernels import quantize_rows

            q8, scale = quantize_rows(tokens)
            self.tokens = torch.from_numpy(q8)
            self.scale = torch.from_numpy(scale)
            # what the stored tokens lose, per token: |t - scale*q8|_inf <= scale / 2
            self._half_step = (scale / np.float32(2.0)).astype(np.float32)
        elif layout == "bfloat16":
            self.tokens = torch.from_numpy(tokens).to(torch.bfloat16)
        elif layout == "int8_block":
            self.tokens, self.block_scale, self._session = (
                _matmul_nbits(tokens, threads) if self.n_tokens else
                (np.zeros((0, 1, QUANT_BLOCK), np.uint8), np.zeros((0, 1), np.float32), None))
        else:
            self.tokens = torch.from_numpy(tokens)
        self._ones = np.ones(self.n_tokens, dtype=np.float32)

    @classmethod
    def from_buckets(cls, n_targets: int,
                     buckets: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]],
                     layout: str = "float32", threads: int | None = None) -> TokenMatrix:
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
        return cls(tokens, norms, offsets, layout, threads)

    def __len__(self) -> int:
        return int(self.offsets.shape[0] - 1)

    @property
    def nbytes(self) -> int:
        """Bytes of the stored tokens, their scales (int8), norms and offsets."""
        if self.layout == "int8_block":
            return (self.tokens.nbytes + self.block_scale.nbytes + self.norms.nbytes
                    + self.offsets.nbytes)
        scale = 0 if self.scale is None else self.scale.numel() * 4
        return (self.tokens.numel() * self.tokens.element_size() + scale + self.norms.nbytes
                + self.offsets.nbytes)

    def _block_product_error(self, q: np.ndarray, g: float) -> np.ndarray:
        """``int8_block``: the bound ``(R, N)`` on ``|q_i . t_j - stored product|`` for float64
        query rows ``q`` ``(R, d)`` (:meth:`error_bound`). The exact tokens are gone, so their
        block norms come from the stored ones: ``|t_jb|_1 <= |t^_jb|_1 + B ht_jb``."""
        _, hq_scale = quantize_blocks(q.astype(np.float32))
        hq = hq_scale.astype(np.float64) / 2  # (R, kb)
        ht = self.block_scale.astype(np.float64) / 2  # (N, kb)
        stored = (self.tokens.astype(np.int16) - 128).astype(np.float64)  # (N, kb, B)
        t1 = np.abs(stored).sum(-1) * self.block_scale + QUANT_BLOCK * ht  # (N, kb)
        q1 = _block_l1(q)  # (R, kb)
        e = hq @ t1.T + q1 @ ht.T + QUANT_BLOCK * (hq @ ht.T)
        qn = np.sqrt((q * q).sum(-1)) + np.sqrt(QUANT_BLOCK * (hq * hq).sum(-1))
        tn = (self.norms.astype(np.float64) + np.sqrt(QUANT_BLOCK * (ht * ht).sum(-1)))
        return e + g * qn[:, None] * tn[None, :]

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
        if a == 0 or len(self) == 0 or lq == 0 or self.n_tokens == 0:
            return out
        flat = q.reshape(a * lq, self.dim)
        inv_q = (np.float32(1.0) / np.maximum(np.sqrt(np.einsum("rd,rd->r", flat, flat)),
                                              np.float32(EPS))).astype(np.float32)
        if attention == "raw":
            att_q = np.full(a * lq, np.float32(1.0 / tau), dtype=np.float32)
            att_t = self._ones
        else:
            att_q, att_t = (inv_q / np.float32(tau)).astype(np.float32), self.inv_norms
        if self.layout == "int8_block":  # one ONNX Runtime product over all tokens per call
            per_call = max(1, (ROWS_BLOCK_FACTOR * block_elements) // max(1, self.n_tokens * lq))
            for p in range(0, a, per_call):
                rows = slice(p * lq, min(a, p + per_call) * lq)
                raw = self._session.run(None, {"q": flat[rows]})[0]
                segmented_sli(raw, att_q[rows], att_t, inv_q[rows], self.inv_norms, self.offsets,
                              0, len(self), lq, out[p:p + per_call], threads)
            return out
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
        int8_block rounds each token value and each query value by at most half its block's
        scale (``ht``, ``hq``): per block ``b``, ``e_ij <= sum_b hq_ib |t_jb|_1 + |q_ib|_1 ht_jb
        + B hq_ib ht_jb`` (B values a block) plus the float32 sum ``g (|q_i| + |hq_i|)(|t_j| +
        |ht_j|)``, computed for every pair;
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
        if self.layout == "int8_block":
            e = self._block_product_error(q64.reshape(a * lq, -1), g).reshape(a, lq, -1)
            cos_err = (e / qn[..., None] / tn).max(-1)
            raw_err = e.max(-1)
        elif self.layout == "int8":
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


def _block_l1(x: np.ndarray, block: int = QUANT_BLOCK) -> np.ndarray:
    """``|x_b|_1`` per block of ``block`` values of each row of ``x`` ``(n, d)`` -> ``(n, kb)``."""
    n, d = x.shape
    kb = -(-d // block)
    padded = np.zeros((n, kb * block))
    padded[:, :d] = np.abs(x)
    return padded.reshape(n, kb, block).sum(-1)


def quantize_blocks(x: np.ndarray, block: int = QUANT_BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 of ``x`` ``(n, d)`` per ``block`` consecutive values of a row (the last
    block zero-padded): ``(q8 (n, kb, block), scale (n, kb))`` with ``x ~ scale * q8``,
    ``scale = max|block| / 127`` (1 for an all-zero block), ``kb = ceil(d / block)``."""
    x = np.asarray(x, dtype=np.float32)
    n, d = x.shape
    kb = -(-d // block)
    padded = np.zeros((n, kb * block), dtype=np.float32)
    padded[:, :d] = x
    padded = padded.reshape(n, kb, block)
    scale = np.abs(padded).max(-1) / np.float32(127.0)
    scale = np.where(scale > 0, scale, np.float32(1.0)).astype(np.float32)
    q8 = np.clip(np.rint(padded / scale[..., None]), -127, 127).astype(np.int8)
    return q8, scale


def _matmul_nbits(tokens: np.ndarray, threads: int | None):
    """``tokens`` ``(N, d)`` as ONNX Runtime's ``MatMulNBits`` operand (8 bits, symmetric per
    :data:`QUANT_BLOCK` values: stored as ``q8 + 128`` with the default zero point 128) and a
    session of the one-node graph ``q (R, d) -> q @ tokens.T (R, N)`` with ``accuracy_level``
    4 (int8 arithmetic). Returns ``(stored bytes (N, kb, block) uint8, scales (N, kb), session)``.
    """
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    n, d = tokens.shape
    q8, scale = quantize_blocks(tokens)
    stored = (q8.astype(np.int16) + 128).astype(np.uint8)
    node = helper.make_node("MatMulNBits", ["q", "tokens", "scales"], ["raw"],
                            domain="com.microsoft", K=d, N=n, bits=8, block_size=QUANT_BLOCK,
                            accuracy_level=4)
    graph = helper.make_graph(
        [node], "token_products", [helper.make_tensor_value_info("q", TensorProto.FLOAT,
                                                                 ["rows", d])],
        [helper.make_tensor_value_info("raw", TensorProto.FLOAT, ["rows", n])],
        [numpy_helper.from_array(stored, "tokens"),
         numpy_helper.from_array(scale.reshape(-1), "scales")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.microsoft", 1)])
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads or os.cpu_count() or 1)
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(model.SerializeToString(), so,
                                   providers=["CPUExecutionProvider"])
    return stored, scale, session


__all__ = ["ATTENTION", "BLOCK_ELEMENTS", "LAYOUTS", "QUANT_BLOCK", "TokenMatrix",
           "quantize_blocks"]
