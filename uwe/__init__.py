"""uwe: Unified Work Embeddings — WorkBench curation, metrics, baselines and the UWE ranker.

The public API, imported on first use (``import uwe`` itself loads neither torch nor data):

* :func:`load` (``uwe.infer.loader.load``): a trained UWE model folder -> :class:`UWEModel`;
* :class:`UWEModel`: ``score(queries, targets)``, ``index_targets`` / ``score_index``, ``rank``;
* :func:`train` (``uwe.train.loop.train``): train a model from a ``TrainParams`` config;
* :func:`evaluate` (``uwe.bench.evaluation.evaluate``): WorkBench metrics of any model on a family;
* :func:`sli_similarity` (``uwe.core.scoring.sli_similarity``): UWE's SLI score from token
  embeddings, e.g. those ``sentence_transformers.MultiVectorEncoder`` returns for a UWE folder.

Nothing happens on import: no device probing, no seeding, no logging configuration.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_API = {"load": "uwe.infer.loader", "UWEModel": "uwe.model.uwe_model", "train": "uwe.train.loop",
        "evaluate": "uwe.bench.evaluation", "sli_similarity": "uwe.core.scoring"}
__all__ = ["UWEModel", "__version__", "evaluate", "load", "sli_similarity", "train"]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'uwe' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
