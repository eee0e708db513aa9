"""The query side through ONNX Runtime: fast batch-1 encoding for ranking and latency.

A query is a handful of tokens; with torch, the framework's per-call overhead dominates its
encoding on a CPU (all-MiniLM-L6-v2: ~16 ms per 4-token query on 2 cores against ~3.5 ms in
ONNX Runtime, measured by ``scripts/bench_rank.py --engines``). This module runs the backbone
in ONNX Runtime and scores with NumPy:

* :func:`export_onnx` writes a backbone (``transformers.AutoModel``, ``last_hidden_state``,
  dynamic batch and length) to ONNX once per model version, into
  ``{cache}/onnx/{slug}-{key}/encoder.onnx`` (``{cache}``: ``$UWE_CACHE_DIR`` or
  ``~/.cache/uwe``; ``key`` hashes the folder's path, its ``config.json`` and its weights' size
  and mtime, so retraining into the same folder exports again), atomically. Exporting needs
  torch and ``onnx`` (torch's TorchScript exporter serialises through it); running needs only
  ``onnxruntime``, ``tokenizers`` and NumPy.
* :class:`OrtModel` encodes texts with the backbone's own ``tokenizer.json`` (truncated to the
  model's max length), in groups of one exact token length (no padding, as
  :meth:`uwe.model.UWEModel._encode_buckets`), and scores as :class:`uwe.model.UWEModel`:
  ``sli`` against the token-level :class:`uwe.npinfer.NumpyIndex` (:func:`uwe.npinfer.sli_dense`),
  ``mean`` (and a sentence-transformers model's mean pooling) and ``sli_mean_target`` against
  the unit mean-pooled targets. It has the harness contract (``index_targets``,
  ``score_index``) plus :meth:`OrtModel.encode_queries` / :meth:`OrtModel.score_encoded`, so
  that the latency stage times encoding and scoring apart.

Token embeddings equal the torch backbone's up to float rounding (``tests/test_ort.py`` states
the maximum difference on real texts).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from uwe.errors import InputError
from uwe.npinfer import EPS, NumpyIndex, length_groups, sli_dense

logger = logging.getLogger(__name__)

ONNX_FILE = "encoder.onnx"
OPSET = 17
SCORERS = ("sli", "mean", "sli_mean_target")
POOLED = ("mean", "sli_mean_target")
EXPORT_VERSION = "uwe-onnx-export-v1"  # bump when export_onnx writes a different graph


def onnx_cache_dir() -> Path:
    from uwe.encoders import cache_root

    return cache_root() / "onnx"


def backbone_key(folder: Path) -> str:
    """What the exported graph depends on: the folder, its config and its weights' version."""
    folder = folder.resolve()
    h = hashlib.sha256(f"{EXPORT_VERSION}\0{folder}\0".encode())
    h.update((folder / "config.json").read_bytes())
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            st = (folder / name).stat()
            h.update(f"\0{name}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return h.hexdigest()


def onnx_path_for(folder: Path, cache_dir: Path | None = None) -> Path:
    from uwe.index_cache import entry_slug

    key = backbone_key(folder)
    return (cache_dir or onnx_cache_dir()) / f"{entry_slug(folder.name)}-{key[:16]}" / ONNX_FILE


def export_onnx(folder: str | Path, path: str | Path) -> Path:
    """Export the backbone in ``folder`` (``last_hidden_state`` of ``AutoModel``) to ``path``
    (temp file + rename, so a reader never sees half a graph)."""
    import tempfile
    import warnings

    import torch

    from uwe.model import load_backbone

    folder, path = Path(folder), Path(path)
    ucfg = folder / "uwe_config.json"
    pooler = not ucfg.is_file() or json.loads(ucfg.read_text(encoding="utf-8")).get("pooler",
                                                                                      True)
    backbone = load_backbone(folder, pooler=pooler).eval()

    class Hidden(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask):
            return self.m(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    ids = torch.tensor([[101, 2000, 2001, 102], [101, 2002, 2003, 102]], dtype=torch.long)
    axes = {0: "batch", 1: "tokens"}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
            torch.onnx.export(Hidden(backbone), (ids, torch.ones_like(ids)), tmp,
                              input_names=["input_ids", "attention_mask"],
                              output_names=["last_hidden_state"],
                              dynamic_axes={"input_ids": axes, "attention_mask": axes,
                                            "last_hidden_state": axes},
                              opset_version=OPSET, dynamo=False)
        from uwe.io import set_default_mode

        set_default_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    logger.info("exported %s to %s", folder, path)
    return path


def session(path: Path, threads: int | None = None):
    """An ONNX Runtime CPU session of ``path`` with ``threads`` intra-op threads."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads or os.cpu_count() or 1)
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    # no busy-waiting between runs: spinning threads take the cores from the NumPy scoring
    # that follows each query (and from torch in the same process)
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


class OrtModel:
    """A backbone in ONNX Runtime with one of :data:`SCORERS` (see the module doc).

    ``backbone_dir``: a folder with ``config.json``, ``model.safetensors`` and
    ``tokenizer.json`` (a UWE folder, or a sentence-transformers model's transformer folder).
    """

    def __init__(self, backbone_dir: str | Path, scorer: str = "sli",
                 attention_temperature: float = 0.1, max_length: int = 64,
                 threads: int | None = None, name: str | None = None,
                 cache_dir: str | Path | None = None):
        from tokenizers import Tokenizer

        from uwe.folder import check_tokenizer_size, read_json_object

        if scorer not in SCORERS:
            raise InputError(f"the ONNX engine runs the scorers {', '.join(SCORERS)}, not "
                             f"{scorer!r}")
        folder = Path(backbone_dir)
        if not (folder / "tokenizer.json").is_file():
            raise FileNotFoundError(f"{folder}: no tokenizer.json (the ONNX engine needs a fast "
                                    f"tokenizer)")
        self.folder, self.scorer_name = folder, scorer
        self.attention_temperature, self.max_length = float(attention_temperature), max_length
        self.name = name or folder.name
        config = read_json_object(folder / "config.json")
        tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        if isinstance(config.get("vocab_size"), int):
            check_tokenizer_size(tok.get_vocab_size(with_added_tokens=True),
                                 config["vocab_size"], folder)
        tok.no_padding()
        tok.enable_truncation(max_length=int(max_length))
        self.tokenizer = tok
        path = onnx_path_for(folder, Path(cache_dir) if cache_dir else None)
        self.onnx_path = path if path.is_file() else export_onnx(folder, path)
        try:
            self.session = session(self.onnx_path, threads)
        except Exception as err:  # a damaged cached graph: export it again, once
            logger.warning("ONNX graph %s does not load (%s): exporting it again",
                           self.onnx_path, err)
            self.session = session(export_onnx(folder, self.onnx_path), threads)

    # -- construction from the project's model specs ----------------------------------------
    @classmethod
    def from_uwe_folder(cls, folder: str | Path, **kw) -> OrtModel:
        """A trained UWE folder with its own scorer, temperature and max length."""
        from uwe.folder import check_model_folder

        config = check_model_folder(folder, tokenizer_size=False)
        kw.setdefault("name", Path(folder).name)
        return cls(folder, config["scorer"], float(config["attention_temperature"]),
                   int(config["max_length"]), **kw)

    @classmethod
    def from_sentence_transformer(cls, name: str, **kw) -> OrtModel:
        """A mean-pooling sentence-transformers model (all-MiniLM-L6-v2, all-mpnet-base-v2, a
        folder) as its ``SentenceTransformer`` encodes: mean over the tokens, unit length; its
        ``max_seq_length`` from ``sentence_bert_config.json``."""
        from uwe.encoders import resolve_model

        root = Path(resolve_model(name))
        modules = root / "modules.json"
        sub, pooling = root, "mean"
        if modules.is_file():
            for m in json.loads(modules.read_text(encoding="utf-8")):
                if m.get("type", "").endswith("Transformer"):
                    sub = root / m.get("path", "")
                if m.get("type", "").endswith("Pooling"):
                    pcfg = root / m.get("path", "") / "config.json"
                    if pcfg.is_file():
                        p = json.loads(pcfg.read_text(encoding="utf-8"))
                        pooling = "mean" if p.get("pooling_mode_mean_tokens") else "other"
        if pooling != "mean":
            raise InputError(f"{name}: the ONNX engine runs mean-pooling models only")
        st_cfg = sub / "sentence_bert_config.json"
        max_len = (json.loads(st_cfg.read_text(encoding="utf-8")).get("max_seq_length", 256)
                   if st_cfg.is_file() else 256)
        kw.setdefault("name", name)
        return cls(sub, "mean", max_length=int(max_len), **kw)

    # -- encoder ---------------------------------------------------------------------------
    def token_ids(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=True)]

    def forward(self, ids: np.ndarray) -> np.ndarray:
        """``last_hidden_state`` ``(n, L, d)`` float32 of unpadded token ids ``(n, L)``."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        return self.session.run(None, {"input_ids": ids,
                                       "attention_mask": np.ones_like(ids)})[0]

    def encode_buckets(self, texts: list[str], batch_size: int = 128
                       ) -> list[tuple[np.ndarray, np.ndarray]]:
        """``[(positions (b,), emb (b, L, d))]``, one group per exact token length."""
        ids = self.token_ids(texts)
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        return [(pos, self.forward(np.array([ids[j] for j in pos], dtype=np.int64)))
                for pos in length_groups(lengths, batch_size)]

    # -- the harness contract --------------------------------------------------------------
    def index_targets(self, targets: list[str]) -> NumpyIndex:
        """Token-level index of ``targets`` (and, for a pooled scorer, their unit mean
        vectors, computed once: :func:`pooled_targets`)."""
        buckets = [(pos.astype(np.int64), emb, np.sqrt(np.einsum("bld,bld->bl", emb, emb)))
                   for pos, emb in self.encode_buckets(list(targets))]
        index = NumpyIndex(len(targets), buckets)
        if self.scorer_name in POOLED:
            pooled_targets(index)
        return index

    def encode_queries(self, queries: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """The encoding half of :meth:`score_index` (timed apart by the latency stage)."""
        return self.encode_buckets(list(queries))

    def score_encoded(self, encoded: list[tuple[np.ndarray, np.ndarray]], n_queries: int,
                      index: NumpyIndex) -> np.ndarray:
        """The scoring half: ``(n_queries, n_t)`` float32."""
        out = np.zeros((n_queries, len(index)), dtype=np.float32)
        if self.scorer_name in POOLED:
            t_cols = pooled_targets(index, columns=True)  # (d, n_t), contiguous: 3x faster
            for pos, q in encoded:
                if self.scorer_name == "mean":
                    v = q.mean(1)
                    out[pos] = (v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True),
                                               EPS)) @ t_cols
                else:  # sli_mean_target: mean over query tokens of cos(q_i, mean(t))
                    qn = q / np.maximum(np.linalg.norm(q, axis=2, keepdims=True), EPS)
                    out[pos] = (qn @ t_cols).mean(1)
            return out
        for pos, q in encoded:
            block = np.zeros((len(pos), len(index)), dtype=np.float32)
            for t_idx, t_emb, t_norm in index.buckets:
                block[:, t_idx] = sli_dense(q, t_emb, t_norm, self.attention_temperature)
            out[pos] = block
        return out

    def score_index(self, queries: list[str], index: NumpyIndex) -> np.ndarray:
        queries = list(queries)
        if not queries or len(index) == 0:
            return np.zeros((len(queries), len(index)), dtype=np.float32)
        return self.score_encoded(self.encode_queries(queries), len(queries), index)

    def score(self, queries: list[str], targets: list[str]) -> np.ndarray:
        return self.score_index(queries, self.index_targets(targets))


def pooled_targets(index: NumpyIndex, columns: bool = False) -> np.ndarray:
    """Unit mean-pooled target vectors of a token-level index in target order: ``(n_t, d)``
    float32, or with ``columns`` the same as a contiguous ``(d, n_t)`` matrix (a query-vector
    product reads it in order: 0.4 against 1.2 ms for 13,939 targets of 384 dimensions).
    Computed once and kept on the index."""
    cached = getattr(index, "_pooled", None)
    if cached is None:
        d = index.buckets[0][1].shape[-1] if index.buckets else 1
        rows = np.zeros((len(index), d), dtype=np.float32)
        for t_idx, t_emb, _ in index.buckets:
            v = t_emb.astype(np.float32).mean(1)
            rows[t_idx] = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), EPS)
        cached = index._pooled = (rows, np.ascontiguousarray(rows.T))  # type: ignore[attr-defined]
    return cached[1] if columns else cached[0]


def ort_model_for(spec: str, root: str | Path = ".", backbone: str | None = None,
                  max_length: int = 64, **kw: Any) -> OrtModel:
    """The ONNX-engine model of a latency / ranking spec: a UWE folder, ``untuned:<scorer>``
    (UWE's architecture on ``backbone``) or a mean-pooling sentence-transformers model."""
    from uwe.latency import UNTUNED_PREFIX
    from uwe.registry import find_uwe_folder

    if spec.startswith(UNTUNED_PREFIX):
        from uwe.encoders import resolve_model

        if backbone is None:
            raise ValueError(f"{spec!r} needs the backbone (train.backbone)")
        model_dir = Path(resolve_model(backbone))
        return OrtModel(model_dir, spec[len(UNTUNED_PREFIX):], max_length=max_length,
                        name=spec, **kw)
    folder = find_uwe_folder(spec, root)
    if folder is not None:
        return OrtModel.from_uwe_folder(folder, **kw)
    return OrtModel.from_sentence_transformer(spec, **kw)
