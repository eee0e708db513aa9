"""NumPy inference of a trained UWE model's query side, for ``uwe rank``'s warm path.

Ranking a few queries against a cached target index needs one small encoder forward per query
and one SLI pass over the cached target tokens. Importing torch + transformers alone takes
several seconds of CPU, far more than that work, so ``uwe rank`` runs it here with NumPy and
the Rust ``tokenizers`` package only (both import in a fraction of a second):

* :func:`mmap_safetensors` -- zero-copy, copy-on-write NumPy views of a ``.safetensors`` file
  (the model weights, and the target index of :mod:`uwe.infer.index_cache`).
* :class:`NumpyUWE` -- the backbone (BERT family: ``model_type`` ``bert``, absolute positions,
  exact GELU, e.g. all-MiniLM-L6-v2) re-implemented as in ``transformers.BertModel``
  (``last_hidden_state``, no pooler), the tokenizer from ``tokenizer.json`` with the model's
  ``max_length`` truncation, texts grouped by exact token length (no padding, as
  :meth:`uwe.model.uwe_model.UWEModel._encode_buckets`), and dense SLI
  (:func:`uwe.infer.dense.sli_dense`) against a :class:`NumpyIndex`.

Scores equal the torch path's up to float32 rounding (a few 1e-6, the same size as the torch
path's own dependence on batch composition). :func:`unsupported_reason` says why a model folder
cannot run here (another architecture, another scorer); the CLI then uses torch.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from uwe.constants import EPS, EXP_FLOOR
from uwe.core.lengths import length_groups
from uwe.infer import kernels
from uwe.model.folder import read_json_object

FUSED_MIN_PAIRS = 500_000_000  # token pairs from which score_index uses the Numba kernel
SCORE_BUDGET = 2**22  # max elements of one (queries, Lq, targets, Lt) block, as on CPU in torch
_SCIPY_ERF_MIN = 1 << 19  # from this many GELU inputs on, scipy's erf beats a Python loop

_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}


def mmap_safetensors(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """``({name: array}, metadata)`` of a ``.safetensors`` file without reading its data.

    The arrays are copy-on-write views of a memory map (writable; writes stay private), so
    only the pages a computation touches are read. Raises ValueError on a malformed or
    truncated file (a header that does not match the file size).
    """
    from uwe.model.folder import safetensors_header

    path = Path(path)
    header, meta, base = safetensors_header(path)
    data_len = path.stat().st_size - base
    mm = np.memmap(path, dtype=np.uint8, mode="c") if data_len > 0 else np.zeros(0, np.uint8)
    out = {}
    for name, info in header.items():
        try:
            dtype = np.dtype(_DTYPES[info["dtype"]])
            shape = [int(s) for s in info["shape"]]
            start, end = (int(x) for x in info["data_offsets"])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path}: bad entry {name!r} in the header: {err}") from err
        count = math.prod(shape)
        if not 0 <= start <= end <= data_len or end - start != count * dtype.itemsize:
            raise ValueError(f"{path}: tensor {name!r} does not fit the file (truncated?)")
        raw = mm[base + start : base + end]
        out[name] = np.asarray(raw.view(dtype).reshape(shape)) if count else np.zeros(shape, dtype)
    return out, meta


# -- model ----------------------------------------------------------------------------------
_LAYER_WEIGHTS = (
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
)
_LAYER_NORMS = ("attention.output.LayerNorm", "output.LayerNorm")
_EMBEDDINGS = (
    "embeddings.word_embeddings.weight",
    "embeddings.position_embeddings.weight",
    "embeddings.token_type_embeddings.weight",
    "embeddings.LayerNorm.weight",
    "embeddings.LayerNorm.bias",
)


def _weight_names(n_layers: int) -> list[str]:
    names = list(_EMBEDDINGS)
    for i in range(n_layers):
        for m in _LAYER_WEIGHTS + _LAYER_NORMS:
            names += [f"encoder.layer.{i}.{m}.weight", f"encoder.layer.{i}.{m}.bias"]
    return names


#: buffers older BERT checkpoints saved beside the weights (transformers ignores them)
BERT_BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")


def bert_shapes(cfg: dict) -> dict[str, tuple[int, ...]]:
    """name -> shape of every tensor of the BERT backbone ``config.json`` describes (the
    ``transformers.BertModel`` state dict without the pooler)."""
    h, inter = int(cfg["hidden_size"]), int(cfg["intermediate_size"])
    shapes = {"embeddings.word_embeddings.weight": (int(cfg["vocab_size"]), h),
              "embeddings.position_embeddings.weight": (int(cfg["max_position_embeddings"]), h),
              "embeddings.token_type_embeddings.weight": (int(cfg.get("type_vocab_size", 2)), h),
              "embeddings.LayerNorm.weight": (h,), "embeddings.LayerNorm.bias": (h,)}
    out_dims = {"intermediate.dense": (inter, h), "output.dense": (h, inter)}
    for i in range(int(cfg["num_hidden_layers"])):
        for m in _LAYER_WEIGHTS:
            w = out_dims.get(m, (h, h))
            shapes[f"encoder.layer.{i}.{m}.weight"] = w
            shapes[f"encoder.layer.{i}.{m}.bias"] = (w[0],)
        for m in _LAYER_NORMS:
            shapes[f"encoder.layer.{i}.{m}.weight"] = shapes[f"encoder.layer.{i}.{m}.bias"] = (h,)
    return shapes


def unsupported_reason(folder: str | Path) -> str | None:
    """None if :class:`NumpyUWE` can run the UWE folder ``folder``, else why not (cheap: reads
    the JSON configs and the weights' header only); InputError when ``uwe_config.json`` holds
    a value no engine can run (:func:`uwe.model.folder.check_uwe_config`)."""
    from uwe.model.folder import read_uwe_config

    folder = Path(folder)
    ucfg = read_uwe_config(folder)  # a value no engine can run: InputError, not a reason
    try:
        cfg = read_json_object(folder / "config.json")
    except (OSError, ValueError) as err:
        return f"cannot read the model configs: {err}"
    if ucfg.get("scorer") != "sli":
        return f"scorer {ucfg.get('scorer')!r} (only 'sli' runs on NumPy)"
    checks = {
        "model_type": (cfg.get("model_type"), ("bert",)),
        "hidden_act": (cfg.get("hidden_act"), ("gelu",)),
        "position_embedding_type": (cfg.get("position_embedding_type", "absolute"), ("absolute",)),
        "is_decoder": (bool(cfg.get("is_decoder", False)), (False,)),
    }
    for key, (value, allowed) in checks.items():
        if value not in allowed:
            return f"backbone {key} {value!r} (NumPy runs {allowed})"
    if not (folder / "tokenizer.json").is_file():
        return "no tokenizer.json"
    try:
        weights, _ = mmap_safetensors(folder / "model.safetensors")
    except (OSError, ValueError) as err:
        return f"cannot read model.safetensors: {err}"
    names = [k for k in _weight_names(int(cfg.get("num_hidden_layers", 0))) if k in weights]
    bad = [k for k in names if weights[k].dtype != np.float32]
    if bad:
        return f"weights not float32, e.g. {bad[0]!r}"
    return None


def _erf(x: np.ndarray) -> np.ndarray:
    """erf of a float64 array, accurate to double precision."""
    if x.size >= _SCIPY_ERF_MIN or "scipy.special" in sys.modules:
        from scipy.special import erf

        return erf(x)
    return np.fromiter(map(math.erf, x.ravel().tolist()), np.float64, x.size).reshape(x.shape)


def gelu(x: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU, computed in float64 and rounded to float32."""
    x64 = x.astype(np.float64)
    return (0.5 * x64 * (1.0 + _erf(x64 * (1.0 / math.sqrt(2.0))))).astype(np.float32)


def layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    xc = x - mean
    var = (xc * xc).mean(-1, keepdims=True)
    return xc / np.sqrt(var + np.float32(eps)) * w + b


@dataclass
class NumpyIndex:
    """Target tokens per exact-length bucket: ``(index (b,), emb (b, L, d), norm (b, L))``."""

    n_targets: int
    buckets: list[tuple[np.ndarray, np.ndarray, np.ndarray]]

    def __len__(self) -> int:
        return self.n_targets

    @classmethod
    def from_pooled(cls, pooled: np.ndarray) -> NumpyIndex:
        """An index of unit mean-pooled target vectors only ``(n_t, d)`` (a pooled cache
        entry), for the pooled scorers (:func:`uwe.infer.ort.pooled_targets` reads it)."""
        index = cls(int(pooled.shape[0]), [])
        columns = np.ascontiguousarray(pooled.T, dtype=np.float32)  # what scoring reads
        index._pooled = (columns.T, columns)  # type: ignore[attr-defined]  # rows: a view
        return index

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], n_targets: int) -> NumpyIndex:
        """From :mod:`uwe.infer.index_cache`'s UWE entry arrays (``b{i}.index/.emb/.mask/.norm``);
        ValueError if a bucket is padded (the dense kernel needs equal-length targets) or the
        buckets do not cover ``n_targets`` targets exactly once."""
        n = len({k.split(".")[0] for k in arrays})
        buckets, seen = [], 0
        for i in range(n):
            p = f"b{i:06d}"
            idx, emb, mask, norm = (arrays[f"{p}.{s}"] for s in ("index", "emb", "mask", "norm"))
            if emb.ndim != 3 or mask.shape != emb.shape[:2] or norm.shape != emb.shape[:2]:
                raise ValueError(f"bucket {i}: inconsistent shapes")
            if idx.shape != emb.shape[:1]:
                raise ValueError(f"bucket {i}: index does not match the embeddings")
            if not mask.all():
                raise ValueError(f"bucket {i} is padded")
            buckets.append((idx, emb, norm))
            seen += idx.shape[0]
        if seen != n_targets:
            raise ValueError(f"the buckets hold {seen} targets, expected {n_targets}")
        return cls(n_targets, buckets)


class NumpyUWE:
    """The query side of a UWE model folder on NumPy (see the module doc).

    ``score_index(queries, index) -> (n_q, n_t)`` float32, as
    :meth:`uwe.model.uwe_model.UWEModel.score_index` up to float rounding.
    """

    def __init__(self, folder: str | Path):
        from tokenizers import Tokenizer

        from uwe.errors import InputError
        from uwe.model.folder import (
            OPTIONAL_TENSORS,
            check_model_folder,
            check_tensors,
            check_tokenizer_size,
        )

        folder = Path(folder)
        check_model_folder(folder, tokenizer_size=False)
        reason = unsupported_reason(folder)
        if reason is not None:
            raise ValueError(f"{folder}: cannot run on NumPy: {reason}")
        self.folder = folder
        self.config = read_json_object(folder / "config.json")
        self.uwe_config = read_json_object(folder / "uwe_config.json")
        self.weights, _ = mmap_safetensors(folder / "model.safetensors")
        try:  # strict, as every engine: one line naming a missing, extra or misshapen tensor
            expected = bert_shapes(self.config)
        except (KeyError, TypeError, ValueError) as err:
            raise InputError(f"{folder / 'config.json'}: bad or missing {err} for a BERT "
                             f"backbone") from None
        check_tensors(folder / "model.safetensors",
                      {k: tuple(v.shape) for k, v in self.weights.items()}, expected,
                      folder / "config.json", optional=(*OPTIONAL_TENSORS, *BERT_BUFFERS))
        self.attention_temperature = float(self.uwe_config["attention_temperature"])
        self.max_length = int(self.uwe_config["max_length"])
        self.name = folder.name
        tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        check_tokenizer_size(tok.get_vocab_size(with_added_tokens=True),
                             int(self.config["vocab_size"]), folder)
        tok.no_padding()  # texts of one length are batched together: nothing to pad
        tok.enable_truncation(max_length=self.max_length)
        self.tokenizer = tok

    # -- encoder ---------------------------------------------------------------------------
    def token_ids(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text, special tokens included, truncated to ``max_length``."""
        return [e.ids for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=True)]

    def _linear(self, x: np.ndarray, name: str) -> np.ndarray:
        return x @ self.weights[f"{name}.weight"].T + self.weights[f"{name}.bias"]

    def forward(self, ids: np.ndarray) -> np.ndarray:
        """``last_hidden_state`` ``(n, L, d)`` float32 of unpadded token ids ``(n, L)``."""
        w, cfg = self.weights, self.config
        eps = float(cfg.get("layer_norm_eps", 1e-12))
        n, length = ids.shape
        x = w["embeddings.word_embeddings.weight"][ids]  # (n, L, d)
        x = x + w["embeddings.token_type_embeddings.weight"][0]
        x = x + w["embeddings.position_embeddings.weight"][:length]
        x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
        heads = int(cfg["num_attention_heads"])
        dh = int(cfg["hidden_size"]) // heads
        scale = np.float32(1.0 / math.sqrt(dh))
        for i in range(int(cfg["num_hidden_layers"])):
            p = f"encoder.layer.{i}."

            def split(t: np.ndarray) -> np.ndarray:  # (n, L, d) -> (n, h, L, dh)
                return t.reshape(n, length, heads, dh).transpose(0, 2, 1, 3)

            q = split(self._linear(x, p + "attention.self.query"))
            k = split(self._linear(x, p + "attention.self.key"))
            v = split(self._linear(x, p + "attention.self.value"))
            att = (q @ k.transpose(0, 1, 3, 2)) * scale  # (n, h, L, L)
            att -= att.max(-1, keepdims=True)
            np.exp(att, out=att)
            att /= att.sum(-1, keepdims=True)
            ctx = (att @ v).transpose(0, 2, 1, 3).reshape(n, length, heads * dh)  # (n, L, d)
            a = self._linear(ctx, p + "attention.output.dense") + x
            a = layer_norm(
                a,
                w[p + "attention.output.LayerNorm.weight"],
                w[p + "attention.output.LayerNorm.bias"],
                eps,
            )
            h = gelu(self._linear(a, p + "intermediate.dense"))  # (n, L, d_ff)
            x = layer_norm(
                self._linear(h, p + "output.dense") + a,
                w[p + "output.LayerNorm.weight"],
                w[p + "output.LayerNorm.bias"],
                eps,
            )
        return x

    def encode_buckets(self, texts: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """``[(positions (b,), emb (b, L, d))]``, one bucket per exact token length, longest
        first (so no text is padded)."""
        ids = self.token_ids(texts)
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        out = []
        for pos in length_groups(lengths):
            out.append((pos, self.forward(np.array([ids[j] for j in pos], dtype=np.int64))))
        return out

    # -- scoring ---------------------------------------------------------------------------
    def index_targets(self, targets: list[str]) -> NumpyIndex:
        """Token-level index of ``targets`` encoded on NumPy (``uwe rank`` builds it with torch
        and caches it; both give the same tokens up to float rounding)."""
        buckets = [(pos.astype(np.int64), emb, np.sqrt(np.einsum("bld,bld->bl", emb, emb)))
                   for pos, emb in self.encode_buckets(list(targets))]
        return NumpyIndex(len(targets), buckets)

    def score(self, queries: list[str], targets: list[str]) -> np.ndarray:
        return self.score_index(queries, self.index_targets(targets))

    def score_index(self, queries: list[str], index: NumpyIndex) -> np.ndarray:
        """``(n_q, n_t)`` float32 SLI scores of ``queries`` against ``index``."""
        queries = list(queries)
        out = np.zeros((len(queries), len(index)), dtype=np.float32)
        if not queries or len(index) == 0:
            return out
        q_buckets = self.encode_buckets(queries)
        pairs = sum(q.shape[0] * q.shape[1] for _, q in q_buckets) * sum(
            e.shape[0] * e.shape[1] for _, e, _ in index.buckets)  # token pairs to score
        # Numba costs ~1 s to import and load; worth it only for large jobs (uwe.infer.kernels)
        fused = pairs >= FUSED_MIN_PAIRS and kernels.available()
        for pos, q in q_buckets:
            block = np.zeros((len(pos), len(index)), dtype=np.float32)
            for t_idx, t_emb, t_norm in index.buckets:
                block[:, t_idx] = sli_dense(q, t_emb, t_norm, self.attention_temperature,
                                            fused=fused)
            out[pos] = block
        return out


def sli_dense(
    q: np.ndarray, t_emb: np.ndarray, t_norm: np.ndarray, tau: float, budget: int = SCORE_BUDGET,
    fused: bool = False,
) -> np.ndarray:
    """SLI of equal-length queries ``q`` ``(a, Lq, d)`` vs equal-length targets ``t_emb``
    ``(b, Lt, d)`` with token norms ``t_norm`` ``(b, Lt)`` -> ``(a, b)`` float32.

    As :func:`uwe.infer.dense.sli_dense`: cosines ``C``, attention logits
    ``C * |q_i| * |t_j| / tau`` (the raw dot products), softmax over target tokens with the
    shifted logits clamped at -80, ``mean_i sum_j A_ij C_ij``. ``fused``: the elementwise part
    in the one-pass Numba kernel (:func:`uwe.infer.kernels.sli_from_cos`) instead of array passes.
    """
    a, lq, d = q.shape
    b, lt, _ = t_emb.shape
    q_norm = np.sqrt(np.einsum("ail,ail->ai", q, q))  # (a, Lq)
    q_unit = (q / np.maximum(q_norm, np.float32(EPS))[..., None]).reshape(a * lq, d)
    t_den = np.maximum(t_norm, np.float32(EPS))  # (b, Lt)
    q_scale = (q_norm / np.float32(tau)).reshape(a, lq, 1, 1)
    chunk = max(1, budget // max(1, a * lq * lt))
    out = np.empty((a, b), dtype=np.float32)
    for j in range(0, b, chunk):
        te = t_emb[j : j + chunk]
        bb = te.shape[0]
        raw = (q_unit @ te.reshape(bb * lt, d).T).reshape(a, lq, bb, lt)  # |t_j| C_ij
        cos = raw / t_den[j : j + chunk]  # (a, Lq, bb, Lt)
        if fused:  # one pass over the cosines (uwe.infer.kernels) instead of the array passes below
            out[:, j : j + bb] = kernels.sli_from_cos(
                np.ascontiguousarray(cos.transpose(0, 1, 3, 2)).reshape(a * lq, lt * bb),
                q_scale.reshape(-1), np.ascontiguousarray(t_norm[j : j + chunk].T).reshape(-1),
                a, lq, bb, lt)
            continue
        logits = np.multiply(raw, q_scale, out=raw)  # |q_i| |t_j| C_ij / tau
        logits -= logits.max(-1, keepdims=True)
        np.maximum(logits, np.float32(EXP_FLOOR), out=logits)
        np.exp(logits, out=logits)
        denom = logits.sum(-1)  # (a, Lq, bb)
        numer = np.multiply(logits, cos, out=logits).sum(-1)  # (a, Lq, bb)
        out[:, j : j + bb] = (numer / denom).mean(1)
    return out
