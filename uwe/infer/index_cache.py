"""On-disk cache of target indexes, so ranking against a fixed target space is fast the 2nd time.

Key = (model fingerprint, sha256 of the target list):

* a UWE folder (it holds ``uwe_config.json``) -> its resolved path, the sha256 of
  ``uwe_config.json`` and the size + mtime (ns) of ``model.safetensors``: retraining into the
  same folder changes the key;
* any other spec (``bm25``, ``tfidf_char``, an embedder name) -> the spec itself, plus, when it
  names a local (sentence-transformers) folder, its resolved path and the size + mtime (ns) of
  its configs and weights (:func:`uwe.model.folder.model_files_stamp`), so that replacing
  ``model.safetensors`` is a miss;
* targets -> sha256 of the JSON-encoded list (order matters: ``scores[:, j]`` is target ``j``).

What is stored, per model kind:

* :class:`uwe.model.uwe_model.TargetIndex` -> its buckets' tensors (``b{i}.index`` (b,) int64,
  ``b{i}.emb`` (b, L, d) float32, ``b{i}.mask`` (b, L) bool), bit-exact, so a cached index gives
  the same scores as a fresh one, plus the token norms ``b{i}.norm`` (b, L) float32 of
  :meth:`uwe.model.uwe_model.Bucket.unit_norm`: a loaded index does not recompute them, and the unit
  vectors are ``emb / norm`` (the same division, so the same bits);
* an embedding baseline -> its ``(n_t, d)`` float32 target matrix (``embeddings``);
* lexical baselines (BM25, TF-IDF) -> nothing: their index is a fitted vocabulary, cheap to
  rebuild (well under a second for 14k targets) and not a tensor; they are rebuilt every time.

Layout: ``{cache_dir}/{model_slug}-{model_key[:12]}/{targets_sha[:20]}.safetensors`` (tensors,
safetensors: no pickle) next to ``.json`` (metadata: format, fingerprint, targets sha, count,
the sha256 of each array's bytes and a nonce shared with the tensors file). Both are written
atomically (temp file + rename), tensors first; a pair whose nonces differ (a concurrent
writer) or that does not load counts as a miss. Entries are read through a memory map
(:func:`uwe.infer.numpy_engine.mmap_safetensors`): nothing is copied.

Integrity: a read checks every array against its sha256 (~1.4 GB/s, about 0.1 s for job2skill's
13,939 SLI targets), so bytes damaged on disk are a miss, with a warning naming the file, and
the entry is rebuilt, never a silently wrong ranking. A check that passed is remembered in
``{stem}.verified.json`` with the tensors file's size, inode, mtime and ctime (a write or a
rename changes the ctime, which no user call can set back), so a warm ``uwe rank`` hashes an
entry once per change of the file and otherwise only ``stat``s it.

Target lists: ``{cache_dir}/targets/{source_key[:32]}.json`` keeps the target list read from a
curated task (:func:`task_source_key`: sha256 of the task's ``queries.parquet`` and
``targets.parquet`` bytes) or from a ``.csv``/``.tsv``/``.parquet`` targets file
(:func:`file_source_key`: sha256 of its bytes), so a warm ``uwe rank`` neither imports pandas
nor parses parquet; a changed file has another key, a stale or damaged list is a miss.

Default ``cache_dir``: ``$UWE_CACHE_DIR/index``, else ``~/.cache/uwe/index``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from uwe.constants import POOLED_TARGET_SCORERS
from uwe.infer.index_arrays import check_arrays, index_arrays, index_from_arrays, write_arrays
from uwe.io import file_sha256, write_json
from uwe.model.folder import UWE_CONFIG
from uwe.model.registry import model_slug

logger = logging.getLogger(__name__)

# 2: + b{i}.norm; 3: + the arrays' sha256. Older entries are misses (rebuilt and overwritten).
FORMAT_VERSION = 3
TARGETS_FORMAT = 1
# Bump when uwe.data.tasks.load_task / uwe.infer.ranker.read_targets_file change how targets
# are read.
TASK_TARGETS_VERSION = b"uwe-task-targets-v1"
FILE_TARGETS_VERSION = b"uwe-target-file-v2"  # v2: one rule per extension (ranker)
WEIGHTS = "model.safetensors"


def default_cache_dir() -> Path:
    """``index`` under the project's cache root (:func:`uwe.io.cache_root`)."""
    from uwe.io import cache_root

    return cache_root() / "index"


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def array_sha256(array: np.ndarray) -> str:
    """sha256 of an array's bytes (C order), without a copy when it is contiguous."""
    return hashlib.sha256(np.ascontiguousarray(array).reshape(-1).view(np.uint8)).hexdigest()


def _stat_stamp(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "ino": st.st_ino, "mtime_ns": st.st_mtime_ns,
            "ctime_ns": st.st_ctime_ns}


def targets_sha256(targets: list[str]) -> str:
    """sha256 of the ordered target list (JSON-encoded, so no separator can collide)."""
    return _sha256_bytes(json.dumps(list(targets), ensure_ascii=False).encode("utf-8"))


def model_fingerprint(spec: str, root: str | Path = ".") -> dict[str, Any]:
    """What identifies the model ``spec`` names (:func:`uwe.model.registry.resolve`; see module
    doc); JSON-serialisable."""
    from uwe.model.registry import resolve

    try:
        ref = resolve(str(spec), root)
    except (OSError, ValueError):  # nothing the registry loads: keyed by its name and files
        ref = None
    if ref is not None and ref.kind == "uwe" and not ref.st_folder:
        folder = ref.path.resolve()
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
        from uwe.model.folder import model_files_stamp

        fp["path"] = str(local.resolve())
        fp.update(model_files_stamp(local))  # replaced weights or configs: another key
    return fp


def fingerprint_key(fingerprint: dict[str, Any]) -> str:
    return _sha256_bytes(json.dumps(fingerprint, sort_keys=True).encode("utf-8"))


def uwe_kind(scorer: str) -> str:
    """The entry kind of a UWE model of ``scorer``: ``pooled`` or ``uwe`` (tokens)."""
    return "pooled" if scorer in POOLED_TARGET_SCORERS else "uwe"


def index_kind(model: Any) -> str | None:
    """``"uwe"``, ``"pooled"``, ``"embeddings"`` or None (not cached: lexical or unknown)."""
    kind = getattr(model, "kind", None)  # uwe.model.registry.MODEL_KINDS
    if kind == "uwe":
        return uwe_kind(model.scorer_name)
    return "embeddings" if kind == "embedding" else None


# -- where target lists come from ------------------------------------------------------------
def _file_digest(path: Path) -> bytes:
    return bytes.fromhex(file_sha256(path))


def task_source_key(root: str | Path, family: str, name: str, split: str) -> str | None:
    """Key of a curated task's target list: sha256 over its ``queries.parquet`` and
    ``targets.parquet`` bytes (the queries too, so that any change re-runs the loader's
    validation); None if either file is missing."""
    d = Path(root) / "tasks" / family / name / split
    files = (d / "queries.parquet", d / "targets.parquet")
    if not all(f.is_file() for f in files):
        return None
    h = hashlib.sha256(TASK_TARGETS_VERSION + b"\0")
    for f in files:
        h.update(_file_digest(f))
    return h.hexdigest()


def file_source_key(path: str | Path) -> str:
    """Key of a targets file's list: sha256 over its suffix and bytes."""
    p = Path(path)
    h = hashlib.sha256(FILE_TARGETS_VERSION + b"\0" + p.suffix.lower().encode() + b"\0")
    h.update(_file_digest(p))
    return h.hexdigest()


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

    # -- entries as arrays ---------------------------------------------------------------------
    def read_entry(
        self, fingerprint: dict[str, Any], targets_sha: str, n_targets: int, kind: str
    ) -> dict[str, np.ndarray] | None:
        """The arrays of a valid entry (memory-mapped, copy-on-write), or None on a miss."""
        from uwe.infer.numpy_engine import mmap_safetensors

        tensors_path, meta_path = self.paths(fingerprint, targets_sha)
        if not (tensors_path.is_file() and meta_path.is_file()):
            return None
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            arrays, header = mmap_safetensors(tensors_path)
        except Exception as err:  # a corrupt or truncated entry is only a miss
            logger.warning("ignoring unreadable index cache entry %s: %s", tensors_path, err)
            return None
        expected = {
            "format_version": FORMAT_VERSION,
            "kind": kind,
            "targets_sha256": targets_sha,
            "n_targets": n_targets,
            "fingerprint": fingerprint,
        }
        if (
            not isinstance(meta, dict)
            or any(meta.get(k) != v for k, v in expected.items())
            or header.get("nonce") != meta.get("nonce")
        ):
            logger.info("index cache entry %s does not match; rebuilding", tensors_path)
            return None
        try:
            check_arrays(kind, arrays, n_targets)
        except (KeyError, ValueError) as err:
            logger.warning("ignoring malformed index cache entry %s: %s", tensors_path, err)
            return None
        damaged = self._damaged(tensors_path, arrays, meta.get("digests"), meta["nonce"])
        if damaged:
            logger.warning("index cache entry %s is damaged (%s): rebuilding it", tensors_path,
                           damaged)
            return None
        return arrays

    @staticmethod
    def _damaged(tensors_path: Path, arrays: dict[str, np.ndarray], digests: Any,
                 nonce: str) -> str | None:
        """Why the arrays do not match their recorded sha256 digests, or None if they do (or
        a check of this very file, unchanged since, passed: ``{stem}.verified.json``)."""
        stamp_path = tensors_path.with_suffix(".verified.json")
        stamp = {"nonce": nonce, **_stat_stamp(tensors_path)}
        try:
            if json.loads(stamp_path.read_text(encoding="utf-8")) == stamp:
                return None
        except (OSError, ValueError):
            pass
        if not isinstance(digests, dict) or sorted(digests) != sorted(arrays):
            return "no digest for each array"
        for name, array in arrays.items():
            if array_sha256(array) != digests[name]:
                return f"array {name!r} differs from its sha256"
        try:
            write_json(stamp_path, stamp)
        except OSError:  # a read-only cache: check again next time
            pass
        return None

    def write_entry(
        self,
        fingerprint: dict[str, Any],
        targets_sha: str,
        n_targets: int,
        kind: str,
        arrays: dict[str, np.ndarray],
    ) -> Path:
        """Store ``arrays`` (see the module doc); returns the tensors path."""
        tensors_path, meta_path = self.paths(fingerprint, targets_sha)
        nonce = uuid.uuid4().hex
        digests = {name: array_sha256(np.ascontiguousarray(a)) for name, a in arrays.items()}
        write_arrays(tensors_path, arrays, {"nonce": nonce})
        write_json(
            meta_path,
            {
                "format_version": FORMAT_VERSION,
                "kind": kind,
                "targets_sha256": targets_sha,
                "n_targets": n_targets,
                "fingerprint": fingerprint,
                "digests": digests,
                "nonce": nonce,
            },
        )
        return tensors_path

    # -- entries as index objects ----------------------------------------------------------
    def load(self, model: Any, fingerprint: dict[str, Any], targets: list[str]) -> Any | None:
        """The cached index of ``targets`` for ``model``, or None on a miss."""
        kind = index_kind(model)
        if kind is None:
            return None
        arrays = self.read_entry(fingerprint, targets_sha256(targets), len(targets), kind)
        if arrays is None:
            return None
        return index_from_arrays(kind, arrays, targets, model)

    def save(
        self, model: Any, fingerprint: dict[str, Any], targets: list[str], index: Any
    ) -> Path | None:
        """Store ``index``; returns the tensors path, or None for a model kind not cached."""
        kind = index_kind(model)
        if kind is None:
            return None
        return self.write_entry(
            fingerprint, targets_sha256(targets), len(targets), kind, index_arrays(kind, index)
        )

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

    # -- target lists ----------------------------------------------------------------------
    def target_list_path(self, source_key: str) -> Path:
        return self.dir / "targets" / f"{source_key[:32]}.json"

    def target_list(self, source_key: str) -> tuple[list[str], str] | None:
        """``(targets, targets_sha256)`` stored for ``source_key``, or None on a miss."""
        path = self.target_list_path(source_key)
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            targets = data["targets"]
            ok = (
                data.get("format") == TARGETS_FORMAT
                and data.get("source_key") == source_key
                and isinstance(targets, list)
                and all(isinstance(t, str) for t in targets)
                and data.get("targets_sha256") == targets_sha256(targets)
            )
        except (OSError, ValueError, KeyError, TypeError) as err:
            logger.warning("ignoring unreadable target list %s: %s", path, err)
            return None
        if not ok:
            logger.info("target list %s does not match; reading the source again", path)
            return None
        return targets, data["targets_sha256"]

    def save_target_list(self, source_key: str, targets: list[str], origin: str = "") -> Path:
        """Store the target list read from the source ``source_key`` (``origin``: a note)."""
        targets = list(targets)
        return write_json(
            self.target_list_path(source_key),
            {
                "format": TARGETS_FORMAT,
                "source_key": source_key,
                "origin": origin,
                "n_targets": len(targets),
                "targets_sha256": targets_sha256(targets),
                "targets": targets,
            },
        )


class CachedIndexModel:
    """Wraps a model so that ``index_targets`` goes through an :class:`IndexCache` (for
    :func:`uwe.bench.evaluation.evaluate`); scoring is delegated unchanged."""

    def __init__(self, model: Any, fingerprint: dict[str, Any], cache: IndexCache | None = None):
        self.model, self.fingerprint = model, fingerprint
        self.cache = cache or IndexCache()
        self.name = getattr(model, "name", fingerprint["spec"])

    def index_targets(self, targets: list[str]) -> Any:
        return self.cache.get_or_build(self.model, self.fingerprint, targets)[0]

    def score_index(self, queries: list[str], index: Any) -> np.ndarray:
        return self.model.score_index(queries, index)


# -- arrays <-> index objects ----------------------------------------------------------------


