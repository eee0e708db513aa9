"""A target index as named arrays, the form :mod:`uwe.infer.index_cache` stores on disk.

Per model kind: a :class:`uwe.model.uwe_model.TargetIndex` (or the NumPy engine's
:class:`uwe.infer.numpy_engine.NumpyIndex`) -> ``b{i}.index`` (b,) int64, ``b{i}.emb``
(b, L, d) float32, ``b{i}.mask`` (b, L) bool and ``b{i}.norm`` (b, L) float32 per bucket; a
UWE model whose scorer reads one mean-pooled vector per target (``mean``, ``sli_mean_target``)
-> ``pooled`` (n_t, d) float32, its unit vectors only (the tokens would be ~5x the bytes, never
read); an embedding baseline -> ``embeddings`` (n_t, d) float32. :func:`index_arrays` /
:func:`numpy_index_arrays` write that form, :func:`check_arrays` checks a loaded one and
:func:`index_from_arrays` rebuilds the index, bit-exact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from uwe.io import atomic_path


def n_buckets(arrays: dict[str, np.ndarray]) -> int:
    return len({k.split(".")[0] for k in arrays})


#: what a model kind stores when it is one matrix (``(n_t, d)`` float32, target order)
MATRIX_KINDS = {"embeddings": "embeddings", "pooled": "pooled"}


def check_arrays(kind: str, arrays: dict[str, np.ndarray], n_targets: int) -> None:
    """KeyError / ValueError unless ``arrays`` is a well-formed entry of ``n_targets``."""
    if kind in MATRIX_KINDS:
        emb = arrays[MATRIX_KINDS[kind]]
        if emb.ndim != 2 or emb.shape[0] != n_targets or emb.dtype != np.float32:
            raise ValueError(f"cached {kind} {emb.shape} {emb.dtype} for {n_targets} targets")
        return
    seen = 0
    for i in range(n_buckets(arrays)):
        p = f"b{i:06d}"
        idx, emb, mask, norm = (arrays[f"{p}.{s}"] for s in ("index", "emb", "mask", "norm"))
        if (
            emb.ndim != 3
            or idx.shape != emb.shape[:1]
            or not (mask.shape == norm.shape == emb.shape[:2])
        ):
            raise ValueError(f"bucket {i}: inconsistent shapes")
        dtypes = (idx.dtype, emb.dtype, mask.dtype, norm.dtype)
        if dtypes != (np.int64, np.float32, np.bool_, np.float32):
            raise ValueError(f"bucket {i}: unexpected dtypes {dtypes}")
        seen += idx.shape[0]
    if seen != n_targets:
        raise ValueError(f"the buckets hold {seen} targets, expected {n_targets}")


def index_arrays(kind: str, index: Any) -> dict[str, np.ndarray]:
    """What the cache stores of ``index`` (see the module doc), as NumPy arrays."""
    if kind == "embeddings":
        return {"embeddings": np.ascontiguousarray(index, dtype=np.float32)}
    import torch

    if kind == "pooled":  # a mean-scoring model reads its unit mean-pooled targets only
        return {"pooled": np.ascontiguousarray(index.pooled().detach().to("cpu", torch.float32)
                                               .numpy())}

    def host(t, dtype):
        return np.ascontiguousarray(t.detach().to("cpu", dtype).numpy())

    out = {}
    with torch.no_grad():
        for i, b in enumerate(index.buckets):
            out[f"b{i:06d}.index"] = host(b.index, torch.int64)
            out[f"b{i:06d}.emb"] = host(b.emb, torch.float32)
            out[f"b{i:06d}.mask"] = host(b.mask, torch.bool)
            out[f"b{i:06d}.norm"] = host(b.unit_norm()[1], torch.float32)
    return out


def numpy_index_arrays(index: Any) -> dict[str, np.ndarray]:
    """What the cache stores of a :class:`uwe.infer.numpy_engine.NumpyIndex` (unpadded buckets), in
    the UWE entry layout, so that every engine reads what any engine built."""
    out = {}
    for i, (idx, emb, norm) in enumerate(index.buckets):
        out[f"b{i:06d}.index"] = np.ascontiguousarray(idx, dtype=np.int64)
        out[f"b{i:06d}.emb"] = np.ascontiguousarray(emb, dtype=np.float32)
        out[f"b{i:06d}.mask"] = np.ones(emb.shape[:2], dtype=np.bool_)
        out[f"b{i:06d}.norm"] = np.ascontiguousarray(norm, dtype=np.float32)
    return out


def index_from_arrays(
    kind: str, arrays: dict[str, np.ndarray], targets: list[str], model: Any = None
) -> Any:
    """The index object of ``model`` from an entry's arrays: the embeddings matrix, or a
    :class:`uwe.model.uwe_model.TargetIndex` on the model's device whose buckets already hold their
    unit vectors and norms (for SLI, whose dense kernel uses them)."""
    if kind == "embeddings":
        return arrays["embeddings"]
    if kind == "pooled":
        import torch

        from uwe.model.uwe_model import TargetIndex

        device = str(getattr(model, "device", "cpu"))
        return TargetIndex(list(targets), [],
                           _pooled=torch.from_numpy(arrays["pooled"]).to(device))
    import torch

    from uwe.core.scoring import ATTENTION_UNIT, EPS
    from uwe.model.uwe_model import Bucket, TargetIndex

    device = str(getattr(model, "device", "cpu"))
    with_unit = getattr(model, "scorer_name", "sli") in ATTENTION_UNIT

    def dev(name):
        return torch.from_numpy(arrays[name]).to(device)

    buckets = []
    for i in range(n_buckets(arrays)):
        p = f"b{i:06d}"
        emb, norm = dev(f"{p}.emb"), dev(f"{p}.norm")
        unit_norm = (emb / norm.clamp_min(EPS)[..., None], norm) if with_unit else None
        buckets.append(Bucket(dev(f"{p}.index"), emb, dev(f"{p}.mask"), _unit_norm=unit_norm))
    return TargetIndex(list(targets), buckets)


def write_arrays(path: Path, arrays: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    from safetensors.numpy import save_file

    with atomic_path(path) as tmp:  # a killed writer's temp file is swept by the next write
        save_file(arrays, str(tmp), metadata=metadata)
