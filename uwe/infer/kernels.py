"""Fused CPU kernel for exact soft late interaction at inference (Numba).

:func:`uwe.infer.dense.sli_dense` computes the cosines of every query token against every target
token with one matrix product; the rest -- attention logits, a softmax over each target's
tokens and the attention-weighted cosine sum -- is elementwise. Done with tensor operations
that is about ten passes over a ``(queries, Lq, targets, Lt)`` array; on a CPU those passes
cost more than the matrix product. :func:`sli_from_cos` does them in one sweep over the
cosines, a tile of 256 targets at a time with every intermediate in L1 cache, and a vectorised
``exp``, so that the elementwise part costs a fraction of the matrix product
(``scripts/bench_sli.py`` measures both paths). It is exact SLI: the same formula in float32,
the same ``exp`` floor; scores agree with the tensor path to ~1e-7.

The tiles run on Numba's thread pool, or (``threads=1``) one after another in the calling
thread with the GIL released: :func:`uwe.infer.dense.sli_dense_blocks` runs several blocks, each
its matrix product and this kernel, side by side on its own threads, so that one pool of
threads does all the work.

Numba is imported lazily; :func:`available` says whether the kernel can be used, and
``uwe.infer.dense.sli_dense`` falls back to the tensor path when it cannot (or on GPU).
"""

from __future__ import annotations

import os
from functools import cache

import numpy as np

from uwe.constants import EXP_FLOOR

TILE = 256  # targets per parallel work item
_CACHE = os.environ.get("UWE_NUMBA_CACHE", "1") != "0"  # on-disk cache of the compiled kernel


# expf as in Cephes: exp(z) = 2^n * p(r), n = round(z / ln 2), r = z - n ln 2 (Cody-Waite split
# of ln 2), p a degree-7 polynomial with ~1 ulp relative error on |r| <= ln(2) / 2. Written
# out so that LLVM vectorises it (Numba's `math.exp` is a scalar libm call without SVML).
_LOG2E = 1.44269504088896341
_LN2_HI = 0.693359375
_LN2_LO = -2.12194440e-4
_P = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1,
      5.0000001201e-1)


@cache
def _kernel():
    import numba as nb

    f32, i32 = np.float32, np.int32
    log2e, ln2_hi, ln2_lo = f32(_LOG2E), f32(_LN2_HI), f32(_LN2_LO)
    p0, p1, p2, p3, p4, p5 = (f32(c) for c in _P)
    one, half = f32(1.0), f32(0.5)
    # no 'reassoc': it could fold the Cody-Waite split; every loop below vectorises without it
    flags = {"nnan", "ninf", "nsz", "contract"}

    @nb.njit(fastmath=flags, cache=_CACHE, nogil=True)
    def tile(out, cos, q_scale, t_norm, p, k0, n, lq, b, lt, floor):  # pragma: no cover - jitted
        # scores of query p vs targets k0..k0+n-1 into out[p, k0:k0+n]
        mx = np.empty(n, f32)
        den = np.empty(n, f32)
        num = np.empty(n, f32)
        logit = np.empty(lt * n, f32)
        poly = np.empty(n, f32)
        bits = np.empty(n, i32)
        scale = bits.view(f32)
        inv_lq = one / f32(lq)
        for i in range(lq):
            r = p * lq + i
            s = q_scale[r]
            row = cos[r]
            for k in range(n):
                mx[k] = -np.inf
                den[k] = 0.0
                num[k] = 0.0
            for j in range(lt):  # logits |q_i| |t_j| cos / tau and their max per target
                o = j * b + k0
                for k in range(n):
                    x = s * (row[o + k] * t_norm[o + k])
                    logit[j * n + k] = x
                    mx[k] = x if x > mx[k] else mx[k]
            for j in range(lt):
                o = j * b + k0
                for k in range(n):  # exp(logit - max), floored
                    z = logit[j * n + k] - mx[k]
                    z = z if z > floor else floor
                    e = np.floor(z * log2e + half)
                    x = z - e * ln2_hi
                    x = x - e * ln2_lo
                    q = ((((p0 * x + p1) * x + p2) * x + p3) * x + p4) * x + p5
                    poly[k] = q * x * x + x + one
                    bits[k] = (i32(e) + i32(127)) << i32(23)
                for k in range(n):
                    ex = poly[k] * scale[k]
                    den[k] += ex
                    num[k] += ex * row[o + k]
            for k in range(n):
                out[p, k0 + k] += num[k] / den[k] * inv_lq

    # Two drivers over the same (query, tile of targets) work items: Numba's thread pool, or
    # the calling thread (so that callers can run several blocks in their own threads).
    @nb.njit(parallel=True, fastmath=flags, cache=_CACHE, nogil=True)
    def parallel(cos, q_scale, t_norm, a, lq, b, lt, tile_w, floor):  # pragma: no cover
        # cos (a*lq, lt*b): row p*lq+i = query p token i, column j*b+k = target k token j
        out = np.zeros((a, b), f32)
        n_tiles = (b + tile_w - 1) // tile_w
        for w in nb.prange(a * n_tiles):
            k0 = (w % n_tiles) * tile_w
            tile(out, cos, q_scale, t_norm, w // n_tiles, k0, min(k0 + tile_w, b) - k0, lq, b,
                 lt, floor)
        return out

    @nb.njit(fastmath=flags, cache=_CACHE, nogil=True)
    def serial(cos, q_scale, t_norm, a, lq, b, lt, tile_w, floor):  # pragma: no cover
        out = np.zeros((a, b), f32)
        for p in range(a):
            for k0 in range(0, b, tile_w):
                tile(out, cos, q_scale, t_norm, p, k0, min(k0 + tile_w, b) - k0, lq, b, lt,
                     floor)
        return out

    return parallel, serial


@cache
def available() -> bool:
    """True when Numba imports and the kernel is not disabled (``UWE_NO_NUMBA=1``)."""
    if os.environ.get("UWE_NO_NUMBA", "") not in ("", "0"):
        return False
    try:
        _kernel()
    except ImportError:
        return False
    return True


def sli_from_cos(cos: np.ndarray, q_scale: np.ndarray, t_norm: np.ndarray, a: int, lq: int,
                 b: int, lt: int, threads: int | None = None) -> np.ndarray:
    """SLI scores ``(a, b)`` from the cosine matrix of ``a`` queries x ``lq`` tokens against
    ``b`` targets x ``lt`` tokens.

    ``cos``: ``(a*lq, lt*b)`` float32, row ``p*lq+i`` = query ``p`` token ``i``, column
    ``j*b+k`` = target ``k`` token ``j`` (token-major, so that the kernel runs along contiguous
    targets); ``q_scale``: ``(a*lq,)`` = ``|q_i| / tau_a``; ``t_norm``: ``(lt*b,)`` = ``|t_j|``
    in the same column order. Logit ``= q_scale * cos * t_norm`` (the raw dot product
    over tau_a); each target's softmax is shifted by its max and floored at ``EXP_FLOOR``.

    ``threads``: Numba's thread pool with that many threads (default: its current setting);
    ``threads=1`` runs in the calling thread with the GIL released, so that several calls can
    run side by side in the caller's own threads (:func:`uwe.infer.dense.sli_dense_blocks`).
    """
    if cos.shape != (a * lq, lt * b) or q_scale.shape != (a * lq,) or t_norm.shape != (lt * b,):
        raise ValueError(f"sli_from_cos: shapes {cos.shape}, {q_scale.shape}, {t_norm.shape} "
                         f"do not match a={a}, lq={lq}, b={b}, lt={lt}")
    parallel, serial = _kernel()
    if threads == 1:
        fn = serial
    else:
        import numba as nb

        if threads:
            nb.set_num_threads(max(1, min(threads, nb.config.NUMBA_NUM_THREADS)))
        fn = parallel
    f32 = np.float32
    return fn(np.ascontiguousarray(cos, dtype=f32), np.ascontiguousarray(q_scale, dtype=f32),
              np.ascontiguousarray(t_norm, dtype=f32), a, lq, b, lt, TILE, f32(EXP_FLOOR))



# -- SLI from the raw products with every target token, targets of any length -------------------
#
# uwe.infer.token_matrix multiplies the query tokens with all cached target tokens at once (one
# BLAS / oneDNN product over a token-major matrix, the tokens of target k at rows
# offsets[k]:offsets[k+1]); what is left is a softmax over each target's own tokens and the
# attention-weighted cosine sum. This kernel does it in one sweep per (query token, chunk of
# targets) with every intermediate in L1: the segment maxima, then one vectorised exp over the
# chunk's contiguous tokens (each token's logit less its target's max), then the segment sums.
SEGMENT_CHUNK = 512  # targets per parallel work item


@cache
def _segmented_kernel():
    import numba as nb

    f32 = np.float32
    i32 = np.int32
    log2e, ln2_hi, ln2_lo = f32(_LOG2E), f32(_LN2_HI), f32(_LN2_LO)
    p0, p1, p2, p3, p4, p5 = (f32(c) for c in _P)
    one, half, zero = f32(1.0), f32(0.5), f32(0.0)
    flags = {"nnan", "ninf", "nsz", "contract"}

    @nb.njit(parallel=True, fastmath=flags, cache=_CACHE, nogil=True)
    def run(raw, att_q, att_t, cos_q, cos_t, offsets, k_lo, k_hi, lq, chunk, floor,
            out):  # pragma: no cover - jitted
        rows = raw.shape[0]
        tok0 = offsets[k_lo]
        n_chunks = (k_hi - k_lo + chunk - 1) // chunk
        inv_lq = one / f32(lq)
        for c in nb.prange(n_chunks):
            k0 = k_lo + c * chunk
            k1 = min(k0 + chunk, k_hi)
            j0 = offsets[k0] - tok0  # the chunk's columns of raw
            m = offsets[k1] - offsets[k0]
            logit = np.empty(m, f32)
            shift = np.empty(m, f32)
            w = np.empty(m, f32)
            poly = np.empty(m, f32)
            bits = np.empty(m, i32)
            scale = bits.view(f32)
            for r in range(rows):
                p = r // lq
                aq = att_q[r]
                for j in range(m):
                    logit[j] = raw[r, j0 + j] * aq * att_t[tok0 + j0 + j]
                for k in range(k0, k1):  # each target's max, written beside its tokens
                    s = offsets[k] - offsets[k0]
                    e = offsets[k + 1] - offsets[k0]
                    mx = f32(-np.inf)
                    for j in range(s, e):
                        mx = logit[j] if logit[j] > mx else mx
                    for j in range(s, e):
                        shift[j] = mx
                for j in range(m):  # exp(logit - max), floored (Cephes, vectorised)
                    z = logit[j] - shift[j]
                    z = z if z > floor else floor
                    n = np.floor(z * log2e + half)
                    x = z - n * ln2_hi
                    x = x - n * ln2_lo
                    q = ((((p0 * x + p1) * x + p2) * x + p3) * x + p4) * x + p5
                    poly[j] = q * x * x + x + one
                    bits[j] = (i32(n) + i32(127)) << i32(23)
                for j in range(m):
                    w[j] = poly[j] * scale[j]
                cq = cos_q[r] * inv_lq
                for k in range(k0, k1):
                    s = offsets[k] - offsets[k0]
                    e = offsets[k + 1] - offsets[k0]
                    den = zero
                    num = zero
                    for j in range(s, e):
                        den += w[j]
                        num += w[j] * (raw[r, j0 + j] * cos_t[tok0 + j0 + j])
                    if e > s:
                        out[p, k] += cq * (num / den)

    return run


def segmented_sli(raw: np.ndarray, att_q: np.ndarray, att_t: np.ndarray, cos_q: np.ndarray,
                  cos_t: np.ndarray, offsets: np.ndarray, k_lo: int, k_hi: int, lq: int,
                  out: np.ndarray, threads: int | None = None) -> None:
    """Add the SLI scores of targets ``k_lo:k_hi`` to ``out`` ``(a, n_t)`` float32, from the raw
    products ``raw`` ``(a*lq, offsets[k_hi] - offsets[k_lo])`` of ``a`` queries x ``lq`` tokens
    (row ``p*lq+i``) with those targets' tokens (column ``j`` = token ``offsets[k_lo] + j``).

    Attention logit ``= raw * att_q[row] * att_t[token]``, a softmax over each target's tokens
    shifted by its max and floored at ``EXP_FLOOR``; cosine ``= raw * cos_q[row] *
    cos_t[token]``; score ``= mean_i sum_j A_ij cos_ij``. (The paper's SLI: ``att_q = 1/tau``,
    ``att_t = 1``; attention over cosines: ``att_q = 1/(tau |q_i|)``, ``att_t = 1/|t_j|``;
    ``cos_q = 1/|q_i|``, ``cos_t = 1/|t_j|``.) ``att_t``, ``cos_t``: ``(N,)`` over all tokens;
    ``offsets`` ``(n_t + 1,)`` int64. A target without tokens scores 0. Targets run in
    parallel on Numba's pool (``threads`` of it when given)."""
    rows = att_q.shape[0]
    width = int(offsets[k_hi] - offsets[k_lo])
    if (raw.shape != (rows, width) or rows % lq or cos_q.shape != (rows,)
            or att_t.shape != cos_t.shape or out.shape[0] != rows // lq
            or not 0 <= k_lo <= k_hi <= out.shape[1] or offsets.shape[0] != out.shape[1] + 1):
        raise ValueError(f"segmented_sli: shapes raw {raw.shape}, att_q {att_q.shape}, cos_q "
                         f"{cos_q.shape}, att_t {att_t.shape}, cos_t {cos_t.shape}, offsets "
                         f"{offsets.shape}, out {out.shape} do not match lq={lq}, targets "
                         f"{k_lo}:{k_hi}")
    if out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError("segmented_sli: out must be C-contiguous float32")
    if threads:
        import numba as nb

        nb.set_num_threads(max(1, min(threads, nb.config.NUMBA_NUM_THREADS)))
    f32 = np.float32
    _segmented_kernel()(np.ascontiguousarray(raw, f32), np.ascontiguousarray(att_q, f32),
                        np.ascontiguousarray(att_t, f32), np.ascontiguousarray(cos_q, f32),
                        np.ascontiguousarray(cos_t, f32), np.ascontiguousarray(offsets, np.int64),
                        int(k_lo), int(k_hi), int(lq), SEGMENT_CHUNK, f32(EXP_FLOOR), out)


# -- SLI of one query against compact target tokens (the ONNX engine's index) -------------------
#
# One pass over the cached target tokens per query: each token row is loaded once, widened to
# float32 (from int8 with its per-token scale, or from float16 bits) into an L1-resident row,
# and dotted with every query token; the per-target softmax follows at once. This is what makes
# batch-1 SLI cheap: the NumPy path (uwe.infer.numpy_engine.sli_dense) spends most of its time in
# passes over (Lq, b, Lt) arrays and a skinny matrix product that OpenBLAS runs at a third of the
# machine's memory bandwidth. Widening is done once per row, not once per query token: that
# halves the int8 kernel's time.
COMPACT_DTYPES = {"float32": np.float32, "float16": np.uint16, "int8": np.int8}


@cache
def _compact_kernel(mode: str):
    import numba as nb

    f32, u32 = np.float32, np.uint32

    if mode == "float16":  # IEEE half bits -> float32; subnormal halves (< 6.1e-5) flush to 0
        @nb.njit(inline="always", fastmath=True, cache=_CACHE, nogil=True)
        def load(src, bits, row):  # pragma: no cover - jitted
            for k in range(src.shape[0]):
                h = u32(src[k])
                e = (h >> u32(10)) & u32(0x1F)
                sign = (h & u32(0x8000)) << u32(16)
                full = sign | ((e + u32(112)) << u32(23)) | ((h & u32(0x3FF)) << u32(13))
                bits[k] = full if e != u32(0) else sign
    else:
        @nb.njit(inline="always", fastmath=True, cache=_CACHE, nogil=True)
        def load(src, bits, row):  # pragma: no cover - jitted
            for k in range(src.shape[0]):
                row[k] = f32(src[k])

    # fastmath: the dot products' reductions vectorise only when they may be reassociated
    @nb.njit(parallel=True, fastmath=True, cache=_CACHE, nogil=True)
    def sli_rows(q_unit, q_scale, tokens, t_scale, t_norm, floor, eps, out):  # pragma: no cover
        a, lq, d = q_unit.shape
        b, lt, _ = tokens.shape
        for n in nb.prange(b):
            raw = np.empty((a, lq, lt), f32)
            bits = np.empty(d, u32)
            row = bits.view(f32)
            for j in range(lt):  # each target token is read and widened once for all queries
                load(tokens[n, j], bits, row)
                s = t_scale[n, j]
                for p in range(a):
                    for i in range(lq):
                        acc = f32(0.0)
                        for k in range(d):
                            acc += q_unit[p, i, k] * row[k]
                        raw[p, i, j] = acc * s  # ~ q_unit . t_j = |t_j| cos_ij
            for p in range(a):
                total = f32(0.0)
                for i in range(lq):
                    m = f32(-3.0e38)
                    for j in range(lt):
                        m = max(m, raw[p, i, j] * q_scale[p, i])
                    den = f32(0.0)
                    num = f32(0.0)
                    for j in range(lt):
                        e = np.exp(max(raw[p, i, j] * q_scale[p, i] - m, floor))
                        den += e
                        num += e * (raw[p, i, j] / max(t_norm[n, j], eps))
                    total += num / den
                out[p, n] = total / lq

    return sli_rows


def sli_compact(q_unit: np.ndarray, q_scale: np.ndarray, tokens: np.ndarray,
                t_scale: np.ndarray, t_norm: np.ndarray, eps: float = 1e-12,
                threads: int | None = None) -> np.ndarray:
    """SLI of equal-length queries against equal-length targets in a compact layout ->
    ``(a, b)`` float32.

    ``q_unit`` ``(a, Lq, d)``: the queries' unit tokens; ``q_scale`` ``(a, Lq)`` =
    ``|q_i| / tau``; ``tokens`` ``(b, Lt, d)``: the targets' tokens as float32, as float16
    bits (``uint16``, the ``.view(np.uint16)`` of a float16 array) or as int8 with
    ``t ~ t_scale[..., None] * tokens``; ``t_scale`` ``(b, Lt)`` (ones for float32 / float16);
    ``t_norm`` ``(b, Lt)``: the exact token norms |t_j|. Logit ``= q_scale_i * (q_unit_i .
    t_j)``, the softmax over each target's tokens shifted by its max and floored at
    ``EXP_FLOOR``, then ``mean_i sum_j A_ij cos_ij`` with ``cos_ij = q_unit_i . t_j / |t_j|``:
    :func:`uwe.infer.numpy_engine.sli_dense`'s formula on the stored tokens. Targets run in
    parallel on
    Numba's pool (``threads`` of it when given); each target token is read once per call, so
    a batch of queries shares the pass over the targets."""
    modes = {np.dtype(v): k for k, v in COMPACT_DTYPES.items()}
    mode = modes.get(np.dtype(tokens.dtype))
    if mode is None:
        raise ValueError(f"compact tokens must be float32, uint16 (float16 bits) or int8, got "
                         f"{tokens.dtype}")
    if (tokens.ndim != 3 or t_scale.shape != tokens.shape[:2] or t_norm.shape != tokens.shape[:2]
            or q_unit.ndim != 3 or q_scale.shape != q_unit.shape[:2]
            or q_unit.shape[2] != tokens.shape[2]):
        raise ValueError(f"sli_compact: shapes q {q_unit.shape}, q_scale {q_scale.shape}, "
                         f"tokens {tokens.shape}, t_scale {t_scale.shape}, t_norm {t_norm.shape}")
    if threads:
        import numba as nb

        nb.set_num_threads(max(1, min(threads, nb.config.NUMBA_NUM_THREADS)))
    out = np.empty((q_unit.shape[0], tokens.shape[0]), dtype=np.float32)
    _compact_kernel(mode)(np.ascontiguousarray(q_unit, np.float32),
                          np.ascontiguousarray(q_scale, np.float32), tokens,
                          np.ascontiguousarray(t_scale, np.float32),
                          np.ascontiguousarray(t_norm, np.float32), np.float32(EXP_FLOOR),
                          np.float32(eps), out)
    return out


def quantize_rows(emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int8 rows with one scale per row (the last axis): ``(q, scale)`` with
    ``emb ~ scale[..., None] * q``, ``scale = max|row| / 127`` (1 for an all-zero row)."""
    emb = np.asarray(emb, dtype=np.float32)
    scale = np.abs(emb).max(axis=-1) / np.float32(127.0)
    scale = np.where(scale > 0, scale, np.float32(1.0)).astype(np.float32)
    q = np.clip(np.rint(emb / scale[..., None]), -127, 127).astype(np.int8)
    return q, scale


__all__ = ["COMPACT_DTYPES", "EXP_FLOOR", "SEGMENT_CHUNK", "TILE", "available", "quantize_rows",
           "segmented_sli", "sli_compact", "sli_from_cos"]
