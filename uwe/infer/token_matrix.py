"""SLI over cached target tokens as one matrix product at the memory limit plus a segmented
softmax.

Scoring a query against cached targets with soft late interaction (the paper's Eq. for SLI,
``../shared/docs/paper.md``) is, per query token ``i`` and target token ``j``, a dot product
``q_i . t_j``; the rest -- a softmax over each target's own tokens and the attention-weighted
cosine sum -- touches one number per (query token, target token). So the work is one product
of the query's ``Lq`` tokens with every cached target token, and a query is as fast as reading
the target tokens once from memory.

:class:`TokenMatrix` stores every target token once in one ``(N, d)`` matrix, the targets in
groups of one token length and each group position-major (:func:`uwe.infer.kernels.work_items`:
the softmax that follows then vectorises over targets), in one of :data:`LAYOUTS`:

* ``float32`` -- the exact reference (4 bytes a value), the product in ONNX Runtime's float32
  ``MatMul`` (MLAS);
* ``int8_block`` (the default, :data:`DEFAULT_LAYOUT`) -- 1 byte a value with one float32 scale
  per :data:`QUANT_BLOCK` values of a token (symmetric, ``scale = max|block| / 127``), the
  product in ONNX Runtime's ``MatMulNBits`` (8 bits, ``accuracy_level`` 4: the query is
  quantised the same way per block and the dot products run in int8, VNNI where the CPU has
  it).

The exact float32 norms ``|t_j|`` are kept beside (the cosines divide by them), so only the
products carry the layout's rounding. :meth:`TokenMatrix.score` runs the product for as many
queries at a time as keep the products within ``8 * block_elements`` numbers, then
:func:`uwe.infer.kernels.grouped_sli`. :meth:`TokenMatrix.error_bound` bounds the score error of
``int8_block`` against the exact layout (see its doc); ``tests/test_token_matrix.py`` checks the
bound, and the exact layout against the padded torch reference (:mod:`uwe.core.scoring`).
``scripts/bench_layouts.py`` measures both layouts (and the ones tried and dropped are in
``docs/analyses.md``, "Latency").

No torch: a warm ``uwe rank`` scores with ONNX Runtime, NumPy and Numba alone.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np

from uwe.constants import EPS

LAYOUTS = ("float32", "int8_block")
DEFAULT_LAYOUT = "int8_block"
QUANT_BLOCK = 128  # values of a token (and of a query token) per int8 scale in "int8_block"
BLOCK_ELEMENTS = 1 << 20  # products per block: 8 blocks (32 MiB of float32) per product call
ATTENTION = ("raw", "cosine")  # the paper's logits (raw dot / tau), or cosines / tau


class TokenMatrix:
    """All target tokens of an index in one matrix, grouped by length (module doc).

    ``groups``: ``(index (b,), emb (b, L, d), norm (b, L))`` exact-length buckets covering
    targets ``0 .. n_targets-1`` once each (a :class:`uwe.infer.numpy_engine.NumpyIndex`'s
    ``buckets``; :meth:`from_buckets` checks them, :meth:`from_offsets` builds them from
    target-major tokens)."""

    def __init__(self, n_targets: int,
                 groups: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]],
                 layout: str = DEFAULT_LAYOUT, threads: int | None = None,
                 quant_block: int = QUANT_BLOCK):
        from uwe.infer.kernels import work_items

        if layout not in LAYOUTS:
            raise ValueError(f"token layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
        by_length: dict[int, list] = {}
        for idx, emb, norm in groups:
            by_length.setdefault(int(emb.shape[1]), []).append((idx, emb, norm))
        lengths = sorted(by_length)
        dim = next((int(g[0][1].shape[2]) for g in by_length.values()), 1)
        order, tokens, norms, counts = [], [], [], []
        for length in lengths:
            idx, emb, norm = (np.concatenate([g[k] for g in by_length[length]])
                              for k in range(3))
            order.append(idx.astype(np.int64))
            counts.append(len(idx))
            tokens.append(np.asarray(emb, np.float32).transpose(1, 0, 2).reshape(-1, dim))
            norms.append(np.asarray(norm, np.float32).T.reshape(-1))
        self.layout, self.n_targets, self.dim = layout, int(n_targets), dim
        self.quant_block = int(quant_block)  # int8_block: values per scale
        # stored target s is target order[s]; scores come back in target order
        self.order = np.concatenate(order) if order else np.zeros(0, np.int64)
        self.items = work_items(np.array(lengths, np.int64), np.array(counts, np.int64))
        flat = (np.concatenate(tokens) if tokens else np.zeros((0, dim), np.float32))
        self.n_tokens = flat.shape[0]
        self.norms = np.concatenate(norms) if norms else np.zeros(0, np.float32)
        self.inv_norms = (np.float32(1.0) / np.maximum(self.norms, np.float32(EPS))).astype(
            np.float32)
        self._ones = np.ones(self.n_tokens, dtype=np.float32)
        self.block_scale: np.ndarray | None = None
        if layout == "int8_block":
            q8, self.block_scale = quantize_blocks(flat, self.quant_block)
            self.tokens = (q8.astype(np.int16) + 128).astype(np.uint8)  # MatMulNBits' storage
        else:
            self.tokens = np.ascontiguousarray(flat)
        self._session = (_product_session(self.tokens, self.block_scale, dim, threads,
                                          self.quant_block) if self.n_tokens else None)

    @classmethod
    def from_buckets(cls, n_targets: int,
                     buckets: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]],
                     layout: str = DEFAULT_LAYOUT, threads: int | None = None,
                     quant_block: int = QUANT_BLOCK) -> TokenMatrix:
        """From exact-length buckets ``(index (b,), emb (b, L, d), norm (b, L))`` covering
        targets ``0 .. n_targets-1`` once each; ValueError otherwise."""
        buckets = list(buckets)
        seen = np.zeros(n_targets, dtype=bool)
        for idx, emb, norm in buckets:
            if emb.ndim != 3 or norm.shape != emb.shape[:2] or idx.shape != emb.shape[:1]:
                raise ValueError(f"TokenMatrix: a bucket of shapes {idx.shape}, {emb.shape}, "
                                 f"{norm.shape}")
            if (np.any(idx < 0) or np.any(idx >= n_targets) or np.any(seen[idx])
                    or len(np.unique(idx)) != len(idx)):
                raise ValueError("TokenMatrix: bucket indexes out of range or repeated")
            seen[idx] = True
        if not np.all(seen):
            raise ValueError(f"TokenMatrix: the buckets miss {int((~seen).sum())} of "
                             f"{n_targets} targets")
        return cls(n_targets, buckets, layout, threads, quant_block)

    @classmethod
    def from_offsets(cls, tokens: np.ndarray, norms: np.ndarray, offsets: np.ndarray,
                     layout: str = DEFAULT_LAYOUT, threads: int | None = None) -> TokenMatrix:
        """From target-major tokens ``(N, d)``: target ``k``'s tokens are rows
        ``offsets[k]:offsets[k+1]``, ``norms`` ``(N,)`` their norms."""
        tokens = np.asarray(tokens, dtype=np.float32)
        offsets = np.asarray(offsets, dtype=np.int64)
        if (tokens.ndim != 2 or norms.shape != tokens.shape[:1] or offsets.ndim != 1
                or offsets.shape[0] < 1 or offsets[0] != 0 or offsets[-1] != tokens.shape[0]
                or np.any(np.diff(offsets) < 0)):
            raise ValueError(f"TokenMatrix: tokens {tokens.shape}, norms {norms.shape} and "
                             f"offsets {offsets.shape} (0 .. N, non-decreasing) do not match")
        lengths = np.diff(offsets)
        groups = []
        for length in np.unique(lengths):
            idx = np.flatnonzero(lengths == length)
            rows = offsets[idx][:, None] + np.arange(length)
            groups.append((idx, tokens[rows], np.asarray(norms, np.float32)[rows]))
        return cls(len(lengths), groups, layout, threads)

    def __len__(self) -> int:
        return self.n_targets

    @property
    def nbytes(self) -> int:
        """Bytes of the stored tokens, their block scales (int8_block), norms and order."""
        scale = 0 if self.block_scale is None else self.block_scale.nbytes
        return self.tokens.nbytes + scale + self.norms.nbytes + self.order.nbytes

    def _block_product_error(self, q: np.ndarray, g: float) -> np.ndarray:
        """``int8_block``: the bound ``(R, N)`` on ``|q_i . t_j - stored product|`` for float64
        query rows ``q`` ``(R, d)`` (:meth:`error_bound`), tokens in stored order. The exact
        tokens are gone, so their block norms come from the stored ones:
        ``|t_jb|_1 <= |t^_jb|_1 + B ht_jb``."""
        block = self.quant_block
        _, hq_scale = quantize_blocks(q.astype(np.float32), block)
        hq = hq_scale.astype(np.float64) / 2  # (R, kb)
        ht = self.block_scale.astype(np.float64) / 2  # (N, kb)
        stored = (self.tokens.astype(np.int16) - 128).astype(np.float64)  # (N, kb, B)
        t1 = np.abs(stored).sum(-1) * self.block_scale + block * ht  # (N, kb)
        q1 = _block_l1(q, block)  # (R, kb)
        e = hq @ t1.T + q1 @ ht.T + block * (hq @ ht.T)
        qn = np.sqrt((q * q).sum(-1)) + np.sqrt(block * (hq * hq).sum(-1))
        tn = (self.norms.astype(np.float64) + np.sqrt(block * (ht * ht).sum(-1)))
        return e + g * qn[:, None] * tn[None, :]

    def products(self, q: np.ndarray) -> np.ndarray:
        """``q (R, d) @ tokens.T`` as ``(R, N)`` float32 in the layout's arithmetic, tokens in
        stored order."""
        return self._session.run(None, {"q": np.ascontiguousarray(q, np.float32)})[0]

    def softmax_sums(self, raw: np.ndarray, q: np.ndarray, tau: float, attention: str,
                     out: np.ndarray) -> None:
        """The second half of :meth:`score`: add the SLI scores of queries ``q`` ``(a, Lq, d)``
        to ``out`` ``(a, n_t)`` (targets in stored order) from their products ``raw``
        ``(a*Lq, N)`` (:meth:`products`), with :func:`uwe.infer.kernels.grouped_sli`."""
        from uwe.infer.kernels import grouped_sli

        a, lq, _ = q.shape
        flat = q.reshape(a * lq, self.dim)
        inv_q = (np.float32(1.0) / np.maximum(np.sqrt(np.einsum("rd,rd->r", flat, flat)),
                                              np.float32(EPS))).astype(np.float32)
        if attention == "raw":
            att_q = np.full(a * lq, np.float32(1.0 / tau), dtype=np.float32)
            att_t = self._ones
        else:
            att_q, att_t = (inv_q / np.float32(tau)).astype(np.float32), self.inv_norms
        grouped_sli(raw, att_q, att_t, inv_q, self.inv_norms, self.items, lq, out)

    # -- scoring --------------------------------------------------------------------------
    def score(self, q: np.ndarray, tau: float, attention: str = "raw",
              block_elements: int = BLOCK_ELEMENTS, threads: int | None = None) -> np.ndarray:
        """SLI of equal-length queries ``q`` ``(a, Lq, d)`` float32 against every target ->
        ``(a, n_t)`` float32: logits ``q_i . t_j / tau`` (``attention="raw"``, the paper's) or
        ``cos_ij / tau`` (``"cosine"``), a softmax over each target's tokens, ``mean_i sum_j
        A_ij cos_ij``. ``threads``: not used (the product runs on the session's threads, the
        softmax on Numba's pool for large batches); kept for the engines' common call."""
        if attention not in ATTENTION:
            raise ValueError(f"attention must be one of {ATTENTION}, got {attention!r}")
        q = np.ascontiguousarray(q, dtype=np.float32)
        if q.ndim != 3 or (q.shape[2] != self.dim and len(self)):
            raise ValueError(f"queries {q.shape} do not match tokens of dimension {self.dim}")
        a, lq, _ = q.shape
        if a == 0 or len(self) == 0 or lq == 0 or self.n_tokens == 0:
            return np.zeros((a, len(self)), dtype=np.float32)
        stored = np.zeros((a, len(self)), dtype=np.float32)
        per_call = max(1, (8 * block_elements) // max(1, self.n_tokens * lq))
        for p in range(0, a, per_call):
            part = q[p:p + per_call]
            raw = self.products(part.reshape(-1, self.dim))
            self.softmax_sums(raw, part, tau, attention, stored[p:p + per_call])
        out = np.empty_like(stored)
        out[:, self.order] = stored
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
        The score is the mean over ``i``. ``int8_block`` rounds each token value and each
        query value by at most half its block's scale (``ht``, ``hq``): per block ``b``,
        ``e_ij <= sum_b hq_ib |t_jb|_1 + |q_ib|_1 ht_jb + B hq_ib ht_jb`` (B values a block),
        plus the float32 sum ``g (|q_i| + |hq_i|)(|t_j| + |ht_j|)`` (``g = 1.01 d 2^-24``),
        computed for every pair. float32: 0."""
        q = np.asarray(q, dtype=np.float32)
        a, lq, _ = q.shape
        if self.layout == "float32" or a == 0 or lq == 0 or len(self) == 0:
            return np.zeros(a, dtype=np.float64)
        q64 = q.astype(np.float64)
        qn = np.maximum(np.sqrt((q64 * q64).sum(-1)), EPS)  # (a, Lq)
        tn = np.maximum(self.norms.astype(np.float64), EPS)
        e = self._block_product_error(q64.reshape(a * lq, -1),
                                      1.01 * self.dim * 2.0 ** -24).reshape(a, lq, -1)
        cos_err = (e / qn[..., None] / tn).max(-1)
        raw_err = e.max(-1)
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


def _product_session(tokens: np.ndarray, block_scale: np.ndarray | None, dim: int,
                     threads: int | None, block: int = QUANT_BLOCK):
    """An ONNX Runtime session of the one-node graph ``q (R, d) -> q @ tokens.T (R, N)``:
    ``MatMulNBits`` over ``tokens`` stored as :func:`quantize_blocks`' ``q8 + 128`` (the
    default zero point 128) with ``block_scale`` ``(N, kb)``, 8 bits, ``accuracy_level`` 4
    (int8 arithmetic); ``MatMul`` over float32 ``tokens`` ``(N, d)`` when ``block_scale`` is
    None. Its threads sleep between runs (no spinning beside the encoder's session)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    n = tokens.shape[0]
    if block_scale is None:
        node = helper.make_node("MatMul", ["q", "tokens"], ["raw"])
        inits = [numpy_helper.from_array(np.ascontiguousarray(tokens.T), "tokens")]
    else:
        node = helper.make_node("MatMulNBits", ["q", "tokens", "scales"], ["raw"],
                                domain="com.microsoft", K=dim, N=n, bits=8,
                                block_size=block, accuracy_level=4)
        inits = [numpy_helper.from_array(tokens, "tokens"),
                 numpy_helper.from_array(block_scale.reshape(-1), "scales")]
    graph = helper.make_graph(
        [node], "token_products",
        [helper.make_tensor_value_info("q", TensorProto.FLOAT, ["rows", dim])],
        [helper.make_tensor_value_info("raw", TensorProto.FLOAT, ["rows", n])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.microsoft", 1)])
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads or os.cpu_count() or 1)
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])


__all__ = ["ATTENTION", "BLOCK_ELEMENTS", "DEFAULT_LAYOUT", "LAYOUTS", "QUANT_BLOCK",
           "TokenMatrix", "quantize_blocks"]
