"""On-disk cache of target indexes, so ranking against a fixed target space is fast the 2nd time.

Key = (model fingerprint, sha256 of the target list):

* a UWE folder (it holds ``uwe_config.json``) -> its resolved path, the sha256 of
  ``uwe_config.json`` and the size + mtime (ns) of ``model.safetensors``: retraining into the
  same folder changes the key;
* any other spec (``bm25``, ``tfidf_char``, an embedder name) -> the spec itself, plus the
  resolved path and ``config.json`` mtime when it names a local folder;
* targets -> sha256 of the JSON-encoded list (order matters: ``scores[:, j]`` is target ``j``).

What is stored, per model kind:

* :class:`uwe.model.TargetIndex` -> its buckets' tensors (``b{i}.index`` (b,) int64,
  ``b{i}.emb`` (b, L, d) float32, ``b{i}.mask`` (b, L) bool), bit-exact, so a cached index gives
  the same scores as a fresh one;
* an embedding baseline -> its ``(n_t, d)`` float32 target matrix (``embeddings``);
* lexical baselines (BM25, TF-IDF) -> nothing: their index is a fitted vocabulary, cheap to
  rebuild (well under a second for 14k targets) and not a tensor; they are rebuilt every time.

Layout: ``{cache_dir}/{model_slug}-{model_key[:12]}/{targets_sha[:20]}.safetensors`` (tensors,
safetensors: no pickle) next to ``.json`` (metadata: format, fingerprint, targets sha, count and
a nonce shared with the tensors file). Both are written atomically (temp file + rename), tensors
first; a pair whose nonces differ (a concurrent writer) or that does not load counts as a miss.
Default ``cache_dir``: ``$UWE_CACHE_DIR/index``, else ``~/.cache/uwe/index``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from uwe.baselines import model_slug
from uwe.io import write_json

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
UWE_CONFIG = "uwe_config.json"
WEIGHTS = "model.safetensors"


def default_cache_dir() -> Path:
    """``$UWE_CACHE_DIR/index`` if the variable is set, else ``~/.cache/uwe/index``."""
    base = os.environ.get("UWE_CACHE_DIR")
    return (Path(base) if base else Path.home() / ".cache" / "uwe") / "index"


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def targets_sha256(targets: list[str]) -> str:
    """sha256 of the ordered target list (JSON-encoded, so no separator can collide)."""
    return _sha256_bytes(json.dumps(list(targets), ensure_ascii=False).encode("utf-8"))


def model_fingerprint(spec: str, root: str | Path = ".") -> dict[str, Any]:
    """What identifies the model ``spec`` names (see module doc); JSON-serialisable."""
    from uwe.registry import find_uwe_folder

    folder = find_uwe_folder(str(spec), root)
    if folder is not None:
        folder = folder.resolve()
        weights = (folder / WEIGHTS).stat()
        return {
            "kind": "uwe",
            "spec": str(spec),
            "path": str(folder),
            "config_sha256": _sha256_bytes((folder / UWE_CONFIG).read_bytes()),
            "weights_size": weights.st_size,
            "weights_mtime_ns": weights.st_mtime_ns,
        }
    fp: dict[str, Any] = {"kind": "baseline", "spec": str(spec)}
    local = Path(str(spec)).expanduser()
    if local.is_dir():
        fp["path"] = str(local.resolve())
        config = local / "config.json"
        fp["config_mtime_ns"] = config.stat().st_mtime_ns if config.is_file() else None
    return fp


def fingerprint_key(fingerprint: dict[str, Any]) -> str:
    return _sha256_bytes(json.dumps(fingerprint, sort_keys=True).encode("utf-8"))


def index_kind(model: Any) -> str | None:
    """``"uwe"``, ``"embeddings"`` or None (not cached: lexical or unknown model types)."""
    from uwe.baselines import EmbeddingBaseline

    if isinstance(model, EmbeddingBaseline):
        return "embeddings"
    if type(model).__name__ == "UWEModel":  # avoid importing torch-heavy uwe.model eagerly
        return "uwe"
    return None


@dataclass(frozen=True)
class CacheResult:
    """How an index was obtained: ``status`` in {"hit", "miss", "disabled", "not-cached"}."""

    status: str
    path: Path | None


class IndexCache:
    """Target-index cache under ``cache_dir`` (default :func:`default_cache_dir`)."""

    def __init__(self, cache_dir: str | Path | None = None):
        self.dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()

    def paths(self, fingerprint: dict[str, Any], targets_sha: str) -> tuple[Path, Path]:
        """``(tensors .safetensors, metadata .json)`` of one entry."""
        sub = f"{model_slug(fingerprint['spec'])}-{fingerprint_key(fingerprint)[:12]}"
        stem = self.dir / sub / targets_sha[:20]
        return stem.with_suffix(".safetensors"), stem.with_suffix(".json")

    # -- read / write ----------------------------------------------------------------------
    def load(self, model: Any, fingerprint: dict[str, Any], targets: list[str]) -> Any | None:
        """The cached index of ``targets`` for ``model``, or None on a miss."""
        kind = index_kind(model)
        sha = targets_sha256(targets)
        tensors_path, meta_path = self.paths(fingerprint, sha)
        if kind is None or not (tensors_path.is_file() and meta_path.is_file()):
            return None
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            tensors, header = _read_tensors(tensors_path, _device_of(model))
        except Exception as err:  # a corrupt or truncated entry is only a miss
            logger.warning("ignoring unreadable index cache entry %s: %s", tensors_path, err)
            return None
        expected = {
            "format_version": FORMAT_VERSION,
            "kind": kind,
            "targets_sha256": sha,
            "n_targets": len(targets),
            "fingerprint": fingerprint,
        }
        if any(meta.get(k) != v for k, v in expected.items()) or header.get("nonce") != meta.get(
            "nonce"
        ):
            logger.info("index cache entry %s does not match; rebuilding", tensors_path)
            return None
        try:
            return _from_tensors(kind, tensors, targets)
        except (KeyError, ValueError) as err:
            logger.warning("ignoring malformed index cache entry %s: %s", tensors_path, err)
            return None

    def save(
        self, model: Any, fingerprint: dict[str, Any], targets: list[str], index: Any
    ) -> Path | None:
        """Store ``index``; returns the tensors path, or None for a model kind not cached."""
        kind = index_kind(model)
        if kind is None:
            return None
        sha = targets_sha256(targets)
        tensors_path, meta_path = self.paths(fingerprint, sha)
        nonce = uuid.uuid4().hex
        _write_tensors(tensors_path, _to_tensors(kind, index), {"nonce": nonce})
        write_json(
            meta_path,
            {
                "format_version": FORMAT_VERSION,
                "kind": kind,
                "targets_sha256": sha,
                "n_targets": len(targets),
                "fingerprint": fingerprint,
                "nonce": nonce,
            },
        )
        return tensors_path

    def get_or_build(
        self,
        model: Any,
        fingerprint: dict[str, Any],
        targets: list[str],
        use_cache: bool = True,
        rebuild: bool = False,
    ) -> tuple[Any, CacheResult]:
        """``model.index_targets(targets)`` through the cache (see :class:`CacheResult`)."""
        targets = list(targets)
        if index_kind(model) is None:
            return model.index_targets(targets), CacheResult("not-cached", None)
        if not use_cache:
            return model.index_targets(targets), CacheResult("disabled", None)
        path = self.paths(fingerprint, targets_sha256(targets))[0]
        if not rebuild:
            index = self.load(model, fingerprint, targets)
            if index is not None:
                logger.info("index cache hit: %s", path)
                return index, CacheResult("hit", path)
        index = model.index_targets(targets)
        try:
            path = self.save(model, fingerprint, targets, index)
        except OSError as err:  # a read-only or full disk must not fail the ranking
            logger.warning("could not write index cache %s: %s", path, err)
            return index, CacheResult("miss", None)
        logger.info("index cache miss: built and saved %s", path)
        return index, CacheResult("miss", path)


class CachedIndexModel:
    """Wraps a model so that ``index_targets`` goes through an :class:`IndexCache` (for
    :func:`uwe.evaluation.evaluate`); scoring is delegated unchanged."""

    def __init__(self, model: Any, fingerprint: dict[str, Any], cache: IndexCache | None = None):
        self.model, self.fingerprint = model, fingerprint
        self.cache = cache or IndexCache()
        self.name = getattr(model, "name", fingerprint["spec"])

    def index_targets(self, targets: list[str]) -> Any:
        return self.cache.get_or_build(self.model, self.fingerprint, targets)[0]

    def score_index(self, queries: list[str], index: Any) -> np.ndarray:
        return self.model.score_index(queries, index)


# -- tensors <-> index objects ---------------------------------------------------------------
def _device_of(model: Any) -> str:
    return str(getattr(model, "device", "cpu")) if index_kind(model) == "uwe" else "cpu"


def _to_tensors(kind: str, index: Any) -> dict:
    import torch

    if kind == "embeddings":
        return {"embeddings": torch.from_numpy(np.ascontiguousarray(index, dtype=np.float32))}
    out = {}
    for i, b in enumerate(index.buckets):
        out[f"b{i:06d}.index"] = b.index.detach().to("cpu", torch.int64).contiguous()
        out[f"b{i:06d}.emb"] = b.emb.detach().to("cpu", torch.float32).contiguous()
        out[f"b{i:06d}.mask"] = b.mask.detach().to("cpu", torch.bool).contiguous()
    return out


def _from_tensors(kind: str, tensors: dict, targets: list[str]) -> Any:
    if kind == "embeddings":
        emb = tensors["embeddings"].numpy()
        if emb.shape[0] != len(targets):
            raise ValueError(f"cached embeddings have {emb.shape[0]} rows for {len(targets)}")
        return emb
    from uwe.model import Bucket, TargetIndex

    n = len({k.split(".")[0] for k in tensors})
    buckets = [
        Bucket(tensors[f"b{i:06d}.index"], tensors[f"b{i:06d}.emb"], tensors[f"b{i:06d}.mask"])
        for i in range(n)
    ]
    return TargetIndex(list(targets), buckets)


def _write_tensors(path: Path, tensors: dict, metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_tensors(path: Path, device: str) -> tuple[dict, dict]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device=device) as f:
        header = f.metadata() or {}
        return {k: f.get_tensor(k) for k in f.keys()}, header
