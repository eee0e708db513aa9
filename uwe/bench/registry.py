"""One entry point that turns a model spec into an object with the scoring contract.

A spec is a trained UWE folder (it holds ``uwe_config.json``), a sentence-transformers folder
(``modules.json``), a lexical baseline name (``bm25``, ``tfidf_char``) or an embedder name /
Hugging Face id (``all-MiniLM-L6-v2``, ...).
Every returned object implements ``score(queries, targets)`` and
``index_targets(targets)`` + ``score_index(queries, index)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from uwe.bench.baselines import model_slug

from uwe.infer.folder import UWE_CONFIG, find_st_folder, find_uwe_folder

__all__ = ["find_uwe_folder", "load_model", "model_slug"]



def __getattr__(name: str) -> Any:
    """``model_slug`` is :func:`uwe.bench.baselines.model_slug`, imported on first use (the
    baselines import scipy, which ``uwe rank`` on a UWE folder does not need)."""
    if name == "model_slug":
        from uwe.bench.baselines import model_slug

        return model_slug
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_model(spec: str, root: str | Path = ".", device: str = "auto", batch_size: int = 128,
               text_cache_mb: float = 0, engine: str = "torch"):
    """Load the model that ``spec`` names (see module docstring). ``text_cache_mb`` > 0 gives
    an encoder model a text -> embedding cache of that size (:mod:`uwe.infer.textcache`): for
    evaluating frozen weights on many tasks that share texts. ``engine`` (``torch``, ``onnx``,
    ``auto``: :class:`uwe.pretrained.SentenceEncoder`) runs a sentence-embedding baseline; a UWE
    folder is always loaded in torch."""
    folder = find_uwe_folder(spec, root)
    if folder is not None:
        from uwe.infer.model import load

        return load(folder, device=device, batch_size=batch_size, text_cache_mb=text_cache_mb)
    st_folder = find_st_folder(spec, root)
    if st_folder is not None:
        from uwe.infer.st_folder import read_st_folder

        if read_st_folder(st_folder).scorer != "mean":  # a token-level (MultiVectorEncoder) one
            from uwe.infer.model import load_st_folder

            return load_st_folder(st_folder, device=device, batch_size=batch_size,
                                  text_cache_mb=text_cache_mb)
        spec = str(st_folder)  # a sentence-embedding model: the embedders' engines below
    looks_like_path = spec.startswith((".", "/")) or spec.startswith("models/")
    if looks_like_path and st_folder is None:
        raise FileNotFoundError(
            f"model folder {spec!r} not found or has neither {UWE_CONFIG} nor modules.json "
            f"(looked in {Path(spec).resolve()} and {(Path(root) / spec).resolve()})"
        )
    from uwe.bench.baselines import make_model

    return make_model(spec, device=device, batch_size=batch_size, text_cache_mb=text_cache_mb,
                      engine=engine)
