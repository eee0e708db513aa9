"""Numba kernels for exact soft late interaction at inference.

:func:`sli_from_cos` -- for the torch model and the NumPy engine. :func:`uwe.infer.dense.sli_dense`
computes the cosines of every query token against every target token of one group of
equal-length targets with one matrix product; the rest -- attention logits, a softmax over each
target's tokens and the attention-weighted cosine sum -- is elementwise. Done with tensor
operations that is about ten passes over a ``(queries, Lq, targets, Lt)`` array; on a CPU those
passes cost more than the matrix product. :func:`sli_from_cos` does them in one sweep over the
cosines, a tile of 256 targets at a time with every intermediate in L1 cache, and a vectorised
``exp``, so that the elementwise part costs a fraction of the matrix product
(``scripts/bench_sli.py`` measures both paths). It is exact SLI: the same formula in float32,
the same ``exp`` floor; scores agree with the tensor path to ~1e-7. The tiles run on Numba's
thread pool, or (``threads=1``) one after another in the calling thread with the GIL released:
:func:`uwe.infer.dense.sli_dense_blocks` runs several blocks, each its matrix product and this
kernel, side by side on its own threads, so that one pool of threads does all the work.

:func:`grouped_sli` -- for the ONNX engine's :class:`uwe.infer.token_matrix.TokenMatrix`: the
same softmax and sum from the raw products of the query tokens with every cached target token
at once, the targets grouped by length (see the section below).

Numba is imported lazily; :func:`available` says whether the kernels can be used, and
``uwe.infer.dense.sli_dense`` falls back to the tensor path when they cannot (or on GPU).
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
def _exp_parts():
    """The Cephes ``exp`` above as a Numba function inlined into the kernels' loops:
    ``(p(r), (n + 127) << 23)`` of ``max(z, floor)``; ``exp`` is ``p(r)`` times the second read
    as float32 bits (a view of an int32 array), so that the loops vectorise."""
    import numba as nb

    f32, i32 = np.float32, np.int32
    log2e, ln2_hi, ln2_lo = f32(_LOG2E), f32(_LN2_HI), f32(_LN2_LO)
    p0, p1, p2, p3, p4, p5 = (f32(c) for c in _P)
    one, half = f32(1.0), f32(0.5)

    @nb.njit(inline="always", fastmath={"nnan", "ninf", "nsz", "contract"}, cache=_CACHE)
    def parts(z, floor):  # pragma: no cover - jitted
        z = z if z > floor else floor
        n = np.floor(z * log2e + half)
        x = z - n * ln2_hi
        x = x - n * ln2_lo
        q = ((((p0 * x + p1) * x + p2) * x + p3) * x + p4) * x + p5
        return q * x * x + x + one, (i32(n) + i32(127)) << i32(23)

    return parts


@cache
def _kernel():
    import numba as nb

    f32, i32 = np.float32, np.int32
    exp_parts = _exp_parts()
    one = f32(1.0)
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
                    poly[k], bits[k] = exp_parts(logit[j * n + k] - mx[k], floor)
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



# -- SLI from the raw products with every cached target token ---------------------------------
#
# uwe.infer.token_matrix multiplies the query tokens with all cached target tokens at once (one
# matrix product in ONNX Runtime); what is left is a softmax over each target's own tokens and
# the attention-weighted cosine sum. Targets are short (a handful of tokens), so a loop over each
# target's tokens has trip counts too short to vectorise, and that kernel cost 2.3 ms a query on
# job2skill. The token matrix therefore stores the targets in groups of one token length L,
# position-major: token j of the group's k-th target is row ``tok0 + j * b + k`` (b targets in
# the group). Each softmax reduction then runs over j with the b targets side by side in
# contiguous memory, and every inner loop -- the segment maxima, the exp, the sums -- is a
# vectorised loop over targets (0.3-0.5 ms a query; the same float32 result bit for bit).
SEGMENT_CHUNK = 1024  # targets per work item: its six float32 rows of this length stay in L1
PARALLEL_ROWS = 32  # query-token rows from which the work items run on Numba's pool


@cache
def _grouped_kernel(parallel: bool):
    import numba as nb

    f32, i32 = np.float32, np.int32
    exp_parts = _exp_parts()
    one, zero = f32(1.0), f32(0.0)
    flags = {"nnan", "ninf", "nsz", "contract"}

    @nb.njit(parallel=parallel, fastmath=flags, cache=_CACHE, nogil=True)
    def run(raw, att_q, att_t, cos_q, cos_t, items, lq, floor, out):  # pragma: no cover
        rows = raw.shape[0]
        inv_lq = one / f32(lq)
        for it in nb.prange(items.shape[0]):
            tok0, length, b = items[it, 0], items[it, 1], items[it, 2]
            k0, t0, cnt = items[it, 3], items[it, 4], items[it, 5]
            mx = np.empty(cnt, f32)
            den = np.empty(cnt, f32)
            num = np.empty(cnt, f32)
            poly = np.empty(cnt, f32)
            bits = np.empty(cnt, i32)
            scale = bits.view(f32)
            for r in range(rows):
                aq = att_q[r]
                for k in range(cnt):
                    mx[k] = f32(-np.inf)
                    den[k] = zero
                    num[k] = zero
                for j in range(length):  # each target's max logit
                    s = tok0 + j * b + t0
                    x = raw[r, s:s + cnt]
                    at = att_t[s:s + cnt]
                    for k in range(cnt):
                        mx[k] = max(x[k] * aq * at[k], mx[k])
                for j in range(length):  # exp(logit - max), floored (Cephes), and the sums
                    s = tok0 + j * b + t0
                    x = raw[r, s:s + cnt]
                    at = att_t[s:s + cnt]
                    ct = cos_t[s:s + cnt]
                    for k in range(cnt):
                        poly[k], bits[k] = exp_parts(x[k] * aq * at[k] - mx[k], floor)
                    for k in range(cnt):
                        w = poly[k] * scale[k]
                        den[k] += w
                        num[k] += w * (x[k] * ct[k])
                if length > 0:
                    cq = cos_q[r] * inv_lq
                    p = r // lq
                    for k in range(cnt):
                        out[p, k0 + t0 + k] += cq * (num[k] / den[k])

    return run


def work_items(lengths: np.ndarray, counts: np.ndarray, chunk: int = SEGMENT_CHUNK
               ) -> np.ndarray:
    """The work items of :func:`grouped_sli` for groups of ``counts[g]`` targets of
    ``lengths[g]`` tokens each, stored one group after the other (position-major within a
    group): ``(n_items, 6)`` int64 rows ``(first token of the group, L, b, first target of the
    group, first target of the item within the group, targets in the item)``, at most
    ``chunk`` targets an item."""
    rows, tok, first = [], 0, 0
    for length, b in zip(np.asarray(lengths).tolist(), np.asarray(counts).tolist(),
                         strict=True):
        for t0 in range(0, b, chunk):
            rows.append((tok, length, b, first, t0, min(chunk, b - t0)))
        tok += length * b
        first += b
    return np.array(rows, dtype=np.int64).reshape(-1, 6)


def grouped_sli(raw: np.ndarray, att_q: np.ndarray, att_t: np.ndarray, cos_q: np.ndarray,
                cos_t: np.ndarray, items: np.ndarray, lq: int, out: np.ndarray,
                parallel: bool | None = None) -> None:
    """Add SLI scores to ``out`` ``(a, n_t)`` float32 from the raw products ``raw``
    ``(a*lq, N)`` of ``a`` queries x ``lq`` tokens (row ``p*lq+i``) with all ``N`` stored target
    tokens, grouped by length as :func:`work_items` describes (targets and tokens in stored
    order).

    Attention logit ``= raw * att_q[row] * att_t[token]``, a softmax over each target's tokens
    shifted by its max and floored at ``EXP_FLOOR``; cosine ``= raw * cos_q[row] *
    cos_t[token]``; score ``= mean_i sum_j A_ij cos_ij``. (The paper's SLI: ``att_q = 1/tau``,
    ``att_t = 1``; attention over cosines: ``att_q = 1/(tau |q_i|)``, ``att_t = 1/|t_j|``;
    ``cos_q = 1/|q_i|``, ``cos_t = 1/|t_j|``.) A target without tokens scores 0. The work items
    run on Numba's pool when ``parallel`` (default: from :data:`PARALLEL_ROWS` rows on; one
    query's few rows finish sooner in the calling thread than a pool wakes up)."""
    rows = att_q.shape[0]
    n_tok = int((items[:, 1] * items[:, 2])[items[:, 4] == 0].sum()) if len(items) else 0
    if (raw.ndim != 2 or raw.shape[0] != rows or raw.shape[1] < n_tok or lq <= 0
            or rows % lq or cos_q.shape != (rows,) or att_t.shape != cos_t.shape
            or att_t.shape[0] < n_tok or out.ndim != 2 or out.shape[0] != rows // lq
            or items.ndim != 2 or items.shape[1] != 6):
        raise ValueError(f"grouped_sli: shapes raw {raw.shape}, att_q {att_q.shape}, cos_q "
                         f"{cos_q.shape}, att_t {att_t.shape}, cos_t {cos_t.shape}, items "
                         f"{items.shape}, out {out.shape} do not match lq={lq} and {n_tok} tokens")
    if len(items) and int((items[:, 3] + items[:, 4] + items[:, 5]).max()) > out.shape[1]:
        raise ValueError(f"grouped_sli: the work items reach past the {out.shape[1]} targets "
                         f"of out")
    if out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError("grouped_sli: out must be C-contiguous float32")
    if parallel is None:
        parallel = rows >= PARALLEL_ROWS
    f32 = np.float32
    _grouped_kernel(bool(parallel))(
        np.ascontiguousarray(raw, f32), np.ascontiguousarray(att_q, f32),
        np.ascontiguousarray(att_t, f32), np.ascontiguousarray(cos_q, f32),
        np.ascontiguousarray(cos_t, f32), np.ascontiguousarray(items, np.int64), int(lq),
        f32(EXP_FLOOR), out)


__all__ = ["EXP_FLOOR", "PARALLEL_ROWS", "SEGMENT_CHUNK", "TILE", "available", "grouped_sli",
           "sli_from_cos", "work_items"]
