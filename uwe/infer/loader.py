"""Serving's model loader: the registry's model (:mod:`uwe.model.registry`, which decides what a
spec names) with serving's fast parts put in.

* a UWE model (trained, token-level sentence-transformers folder, or untuned) scores SLI with
  :func:`uwe.infer.dense.sli_dense_blocks` (the fused Numba kernel, blocks side by side on the
  CPU threads) instead of the model floor's torch path; the scores agree up to float rounding;
* a sentence-embedding model runs in ONNX Runtime (:class:`uwe.infer.ort.OrtModel`) when
  ``engine`` is ``onnx``, or ``auto`` on a CPU with ``onnxruntime`` installed
  (:func:`uwe.model.baselines.resolve_engine`).

Evaluation, latency, the CLI, the WorkRB adapter and :func:`uwe.load` load through here;
training loads through the model floor alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from uwe.model.registry import ModelRef, resolve
from uwe.model.registry import load as registry_load


def load_model(spec: str | ModelRef, root: str | Path = ".", device: str = "auto",
               batch_size: int = 128, text_cache_mb: float = 0, engine: str = "torch",
               progress: bool = True, backbone: str | None = None, scorer: str | None = None,
               attention_temperature: float = 0.1, max_length: int = 64,
               name: str | None = None) -> Any:
    """The model ``spec`` names (:func:`uwe.model.registry.resolve`), loaded for serving.
    ``engine`` (``torch``, ``onnx``, ``auto``) applies to a sentence-embedding model; a UWE
    model is always torch here (the NumPy and ONNX engines of ``uwe rank`` are
    :mod:`uwe.infer.numpy_engine` and :mod:`uwe.infer.ort`)."""
    from uwe.infer.dense import sli_dense_blocks

    ref = spec if isinstance(spec, ModelRef) else resolve(spec, root, backbone, scorer)
    backend = None
    if ref.kind == "embedding":
        from uwe.model.baselines import resolve_engine

        if resolve_engine(engine, device) == "onnx":
            from uwe.infer.ort import OrtModel

            backend = OrtModel.from_sentence_transformer(ref.name)
    return registry_load(ref, root, device=device, batch_size=batch_size,
                         text_cache_mb=text_cache_mb, progress=progress,
                         attention_temperature=attention_temperature, max_length=max_length,
                         sli_blocks=sli_dense_blocks, embedding_backend=backend, name=name)


def load(path: str | Path, device: str = "auto", **kwargs: Any):
    """``uwe.load``: a UWE folder (or a sentence-transformers folder of UWE's kind) as a
    :class:`uwe.model.uwe_model.UWEModel` that scores with serving's fused SLI kernel;
    ``kwargs`` go to the model (``batch_size``, ``text_cache_mb``, ``progress``, ``name``, ...).
    One line naming what is wrong for a folder that is neither, or damaged."""
    from uwe.infer.dense import sli_dense_blocks
    from uwe.model import uwe_model

    kwargs.setdefault("sli_blocks", sli_dense_blocks)
    return uwe_model.load(path, device=device, **kwargs)
