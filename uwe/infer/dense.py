"""Exact SLI at inference on the torch side: equal-length token groups, unit vectors, fast.

:func:`sli_dense` scores unit query tokens against one group of equal-length targets with one
matrix product for the cosines and (CPU, float32) the fused Numba kernel
:func:`uwe.infer.kernels.sli_from_cos` for the softmax part, or tensor operations elsewhere
(the GPU path); :func:`sli_dense_blocks` runs several groups side by side on threads.
Both compute :func:`uwe.core.scoring.sli_scores`' formula -- the reference -- and are tested
against it (``tests/test_scoring.py``). :class:`uwe.model.uwe_model.UWEModel` scores through them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cache

import numpy as np
import torch

from uwe.core.scoring import sli_unpadded


def _fused_default(q_unit: torch.Tensor) -> bool:
    """The Numba kernel's cases: CPU float32 tensors, Numba available (``uwe.infer.kernels``)."""
    from uwe.infer.kernels import available

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
    part as the one-pass kernel :func:`uwe.infer.kernels.sli_from_cos`, the targets split into one
    block per thread (:func:`sli_dense_blocks`); ``False`` forces the tensor path (GPU, other
    dtypes). Both give the same scores up to float rounding. Inference only: the tensor path
    works in place, so training scores with :func:`sli_scores`.
    """
    b = t_unit.shape[0]
    if fused is None:
        fused = _fused_default(q_unit)
    if fused and b:
        step = -(-b // min(torch.get_num_threads(), b))  # one block per thread
        return torch.cat(sli_dense_blocks(q_unit, q_norm, [
            (t_unit[j : j + step], t_norm[j : j + step]) for j in range(0, b, step)],
            attention_temperature, fused=True), dim=1)
    return sli_unpadded(q_unit, q_norm, t_unit, t_norm, attention_temperature)


def sli_dense_blocks(q_unit: torch.Tensor, q_norm: torch.Tensor,
                     targets: Sequence[tuple[torch.Tensor, torch.Tensor]],
                     attention_temperature: float = 0.1, fused: bool | None = None,
                     workers: int | None = None) -> list[torch.Tensor]:
    """:func:`sli_dense` of one query group against several target groups ``[(t_unit,
    t_norm)]`` (each unpadded and of one length) -> ``[(a, b_i)]`` in the same order.

    The fused CPU path runs each block -- its cosine product through NumPy's BLAS limited to
    one thread, then the one-pass kernel in the same thread (:func:`uwe.infer.kernels.sli_from_cos`
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
    from uwe.infer.kernels import sli_from_cos

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
