"""Which model does a spec name? One answer, for every caller (evaluation, latency, the CLI,
the WorkRB adapter, the analysis runs, the ONNX engine, the index cache).

:func:`resolve` turns a spec into a :class:`ModelRef` with an explicit ``kind``, reading no more
than a folder's config files:

========================  ===========  ======================================================
spec                      kind         model (:func:`load`)
========================  ===========  ======================================================
a UWE folder              ``uwe``      :func:`uwe.model.uwe_model.load` (``uwe_config.json``)
a sentence-transformers   ``uwe``      a token-level one (``MultiVectorEncoder``):
folder (``modules.json``)              :func:`uwe.model.uwe_model.load_st_folder`
                          ``embedding``  a mean-pooling one: the embedder below
``untuned`` /             ``untuned``  UWE's architecture on the untuned ``backbone``
``untuned:<scorer>``                   (:meth:`UWEModel.from_backbone`)
``bm25``, ``tfidf_char``  ``lexical``  :mod:`uwe.model.baselines`
any other name / hub id   ``embedding``  :class:`uwe.model.baselines.EmbeddingBaseline`
========================  ===========  ======================================================

Every model :func:`load` returns has ``kind`` (:data:`MODEL_KINDS`: ``uwe`` for the two UWE rows,
the untuned one included) and the scoring contract ``index_targets`` / ``score_index`` /
``score``. The model floor loads in torch; serving (:func:`uwe.infer.loader.load_model`) passes
its faster parts in: ``sli_blocks`` (the fused SLI kernel) and ``embedding_backend`` (ONNX
Runtime for an embedder).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from uwe.constants import LEXICAL_MODELS, SCORER_NAMES
from uwe.model.folder import UWE_CONFIG, find_st_folder, find_uwe_folder

UNTUNED = "untuned"
UNTUNED_PREFIX = f"{UNTUNED}:"
LEXICAL = LEXICAL_MODELS
#: what :func:`resolve` says a spec names
REF_KINDS = ("uwe", "untuned", "embedding", "lexical")
#: the ``kind`` of a loaded model (an untuned UWE model is a ``uwe`` model)
MODEL_KINDS = ("uwe", "embedding", "lexical")

__all__ = ["LEXICAL", "MODEL_KINDS", "REF_KINDS", "UNTUNED", "UNTUNED_PREFIX", "ModelRef",
           "find_st_folder", "find_uwe_folder", "kind_of", "load", "model_slug", "resolve"]


@dataclass(frozen=True)
class ModelRef:
    """What a spec names: ``kind`` (:data:`REF_KINDS`), the folder it lives in (UWE and
    sentence-transformers folders), the scorer (UWE kinds; ``mean`` for an embedder), the
    backbone (``untuned``) and the ``name`` an embedder or lexical model is built from."""

    spec: str
    kind: str
    name: str
    path: Path | None = None
    scorer: str | None = None
    backbone: str | None = None
    st_folder: bool = False  # a sentence-transformers folder (not a UWE one)


def resolve(spec: str | Path, root: str | Path = ".", backbone: str | None = None,
            scorer: str | None = None) -> ModelRef:
    """The :class:`ModelRef` of ``spec`` (a folder is looked for as given and under ``root``).
    ``backbone`` is the backbone of an ``untuned`` spec; ``scorer`` its scorer when the spec
    does not name one (``untuned`` alone). ValueError / FileNotFoundError naming the spec when it
    names nothing loadable."""
    if not isinstance(spec, str | Path) or not str(spec).strip():
        raise ValueError(f"model spec must be a non-empty string, got {spec!r}")
    spec = str(spec)
    if spec == UNTUNED or spec.startswith(UNTUNED_PREFIX):
        named = spec[len(UNTUNED_PREFIX):] if spec.startswith(UNTUNED_PREFIX) else None
        chosen = named or scorer
        if chosen not in SCORER_NAMES:
            from uwe.errors import unknown

            raise unknown(f"scorer of model {spec!r}", chosen, SCORER_NAMES)
        if not backbone:
            raise ValueError(f"model {spec!r} needs the backbone it runs on (train.backbone)")
        return ModelRef(spec, "untuned", spec, scorer=chosen, backbone=str(backbone))
    folder = find_uwe_folder(spec, root)
    if folder is not None:
        from uwe.model.folder import read_json_object

        config = read_json_object(folder / UWE_CONFIG)
        return ModelRef(spec, "uwe", folder.name, path=folder, scorer=config.get("scorer"),
                        backbone=config.get("backbone"))
    st = find_st_folder(spec, root)
    if st is not None:
        from uwe.model.st_folder import read_st_folder

        scorer_st = read_st_folder(st).scorer
        if scorer_st != "mean":  # token level (MultiVectorEncoder): a UWE model
            return ModelRef(spec, "uwe", st.name, path=st, scorer=scorer_st, st_folder=True)
        return ModelRef(spec, "embedding", str(st), path=st, scorer="mean", st_folder=True)
    if spec.startswith((".", "/")) or spec.startswith("models/"):
        raise FileNotFoundError(
            f"model folder {spec!r} not found or has neither {UWE_CONFIG} nor modules.json "
            f"(looked in {Path(spec).resolve()} and {(Path(root) / spec).resolve()})")
    if spec in LEXICAL:
        return ModelRef(spec, "lexical", spec)
    return ModelRef(spec, "embedding", spec, scorer="mean")


def load(ref: ModelRef | str, root: str | Path = ".", device: str = "auto",
         batch_size: int = 128, text_cache_mb: float = 0, progress: bool = True,
         backbone: str | None = None, scorer: str | None = None,
         attention_temperature: float = 0.1, max_length: int = 64,
         sli_blocks: Any = None, embedding_backend: Any = None, name: str | None = None):
    """The model ``ref`` names (a :class:`ModelRef` or a spec for :func:`resolve`).

    ``text_cache_mb`` > 0 gives an encoder model a text -> embedding cache of that size
    (:mod:`uwe.model.textcache`: for evaluating frozen weights on many tasks that share texts).
    ``attention_temperature`` and ``max_length`` are those of an ``untuned`` model (a folder
    has its own). ``sli_blocks`` goes to a UWE model (:class:`uwe.model.uwe_model.UWEModel`),
    ``embedding_backend`` to an embedder (:class:`uwe.model.pretrained.SentenceEncoder`'s
    ``backend``); lexical models take neither."""
    if not isinstance(ref, ModelRef):
        ref = resolve(ref, root, backbone, scorer)
    uwe_kw = {"batch_size": batch_size, "text_cache_mb": text_cache_mb, "progress": False,
              "sli_blocks": sli_blocks}
    if name is not None:
        uwe_kw["name"] = name
    if ref.kind == "untuned":
        from uwe.model.uwe_model import UWEModel

        return UWEModel.from_backbone(ref.backbone, ref.scorer, attention_temperature,
                                      max_length, device=device, **uwe_kw)
    if ref.kind == "uwe":
        from uwe.model import uwe_model

        loader = uwe_model.load_st_folder if ref.st_folder else uwe_model.load
        return loader(ref.path, device=device, **uwe_kw)
    from uwe.model.baselines import make_model

    return make_model(ref.name, device=device, batch_size=batch_size, progress=progress,
                      text_cache_mb=text_cache_mb, backend=embedding_backend)


def kind_of(model: Any) -> str:
    """The ``kind`` a loaded model declares (:data:`MODEL_KINDS`); ValueError for an object
    that declares none (not a model of this registry)."""
    kind = getattr(model, "kind", None)
    if kind not in MODEL_KINDS:
        raise ValueError(f"{type(model).__name__} declares no model kind (one of "
                         f"{MODEL_KINDS}); models come from uwe.model.registry.load")
    return kind


def model_slug(name: str) -> str:
    """File-name-safe short name: the last path part, other characters than ``[A-Za-z0-9._-]``
    replaced by ``_``; e.g. ``sentence-transformers/all-MiniLM-L6-v2`` -> ``all-MiniLM-L6-v2``.
    """
    last = str(name).rstrip("/\\").replace("\\", "/").split("/")[-1]
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", last).strip("._")
    if not slug:
        raise ValueError(f"cannot make a file name from model name {name!r}")
    return slug
