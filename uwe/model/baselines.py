"""Lexical and embedding baselines for WorkBench.

Scoring contract shared by every model (and by the evaluation harness):

* ``score(queries, targets) -> (n_q, n_t) float32``; ``scores[i, j]`` = query ``i`` vs target
  ``j``, higher = better.
* Target caching: ``index = index_targets(targets)`` once per task, then
  ``score_index(queries, index) -> (n_q, n_t)`` for any chunk of queries;
  ``score(q, t) == score_index(q, index_targets(t))``.

Models: ``BM25Baseline`` (bm25s), ``TfidfCharBaseline`` (scikit-learn char n-grams) and
``EmbeddingBaseline`` (a sentence encoder, cosine of normalised embeddings).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from uwe.constants import LEXICAL_MODELS
from uwe.model.pretrained import SentenceEncoder

logger = logging.getLogger(__name__)

_WORD = re.compile(r"\w+")
LEXICAL = LEXICAL_MODELS
_ENCODER_KW = frozenset({"device", "batch_size", "max_length", "progress", "text_cache_mb",
                         "backend"})


def word_tokenize(text: str) -> list[str]:
    """Lower-cased ``\\w+`` tokens (unicode-aware, no stemming, no stop-word removal)."""
    return _WORD.findall(text.lower())


class _Scorer:
    """``score`` in terms of ``index_targets`` + ``score_index``; ``kind`` as the registry
    names it (:data:`uwe.model.registry.MODEL_KINDS`)."""

    name: str
    kind = "lexical"

    def index_targets(self, targets: list[str]) -> Any:
        raise NotImplementedError

    def score_index(self, queries: list[str], index: Any) -> np.ndarray:
        raise NotImplementedError

    def score(self, queries: list[str], targets: list[str]) -> np.ndarray:
        """``(n_q, n_t)`` float32 scores of every query against every target."""
        return self.score_index(queries, self.index_targets(targets))


@dataclass(frozen=True)
class BM25Index:
    """Per-token BM25 weights of the targets: ``weights`` (vocab, n_t) CSR, ``vocab`` token->id."""

    weights: sp.csr_matrix
    vocab: dict[str, int]


class BM25Baseline(_Scorer):
    """Okapi BM25 (bm25s, Lucene variant) with targets as documents.

    k1 = 1.5 and b = 0.75 (bm25s / Lucene defaults); tokens from :func:`word_tokenize`.
    The score of a query is the sum of its tokens' BM25 weights, counting a repeated query token
    once per occurrence, which is what ``bm25s.BM25.get_scores`` computes; here it is done for a
    whole chunk of queries at once as one sparse product ``counts (n_q, V) @ weights (V, n_t)``.
    A query with no token in the target vocabulary scores 0 everywhere.
    """

    def __init__(self, k1: float = 1.5, b: float = 0.75, method: str = "lucene"):
        self.k1, self.b, self.method = k1, b, method
        self.name = "bm25"

    def index_targets(self, targets: list[str]) -> BM25Index:
        import bm25s

        retriever = bm25s.BM25(k1=self.k1, b=self.b, method=self.method)
        retriever.index([word_tokenize(t) for t in targets], show_progress=False)
        s = retriever.scores  # CSC of (n_t, V): column = token, rows = documents
        weights = sp.csc_matrix(
            (s["data"], s["indices"], s["indptr"]),
            shape=(s["num_docs"], len(s["indptr"]) - 1),
        ).T.tocsr()  # (V, n_t)
        return BM25Index(weights=weights.astype(np.float32), vocab=dict(retriever.vocab_dict))

    def score_index(self, queries: list[str], index: BM25Index) -> np.ndarray:
        rows, cols = [], []
        for i, q in enumerate(queries):
            ids = [index.vocab[t] for t in word_tokenize(q) if t in index.vocab]
            rows.extend([i] * len(ids))
            cols.extend(ids)
        counts = sp.csr_matrix(
            (np.ones(len(rows), dtype=np.float32), (rows, cols)),
            shape=(len(queries), index.weights.shape[0]),
        )  # duplicates are summed: (n_q, V) token counts
        return np.asarray((counts @ index.weights).toarray(), dtype=np.float32)  # (n_q, n_t)


@dataclass(frozen=True)
class TfidfIndex:
    """A vectorizer fitted on the targets and their L2-normalised TF-IDF rows (n_t, F)."""

    vectorizer: Any
    matrix: sp.csr_matrix


class TfidfCharBaseline(_Scorer):
    """Character n-gram TF-IDF cosine.

    ``TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True)``, lower-cased,
    fitted on the target space of each task (so IDF comes from the targets only; queries are
    only transformed). Rows are L2-normalised, so the sparse dot product is the cosine.
    """

    def __init__(self, ngram_range: tuple[int, int] = (3, 5)):
        self.ngram_range = tuple(ngram_range)
        self.name = "tfidf_char"

    def index_targets(self, targets: list[str]) -> TfidfIndex:
        from sklearn.feature_extraction.text import TfidfVectorizer

        vec = TfidfVectorizer(
            analyzer="char_wb", ngram_range=self.ngram_range, sublinear_tf=True, lowercase=True
        )
        matrix = vec.fit_transform(list(targets)).astype(np.float32).tocsr()  # (n_t, F)
        return TfidfIndex(vectorizer=vec, matrix=matrix)

    def score_index(self, queries: list[str], index: TfidfIndex) -> np.ndarray:
        if not queries:  # scikit-learn refuses to transform an empty list
            return np.zeros((0, index.matrix.shape[0]), dtype=np.float32)
        q = index.vectorizer.transform(list(queries)).astype(np.float32)  # (n_q, F)
        return np.asarray((q @ index.matrix.T).toarray(), dtype=np.float32)  # (n_q, n_t)


ENGINES = ("auto", "torch", "onnx")


def resolve_engine(engine: str, device: str = "auto") -> str:
    """``torch`` or ``onnx`` for :class:`EmbeddingBaseline` (see there); ValueError for an
    unknown engine or ``onnx`` on a CUDA device."""
    from uwe.model.pretrained import resolve_device

    if engine not in ENGINES:
        from uwe.errors import unknown

        raise unknown("engine", engine, ENGINES)
    on_cpu = str(resolve_device(device)).startswith("cpu")
    if engine == "onnx" and not on_cpu:
        raise ValueError(f"the onnx engine runs on the CPU, not on device {device!r}")
    if engine == "auto":
        import importlib.util

        return "onnx" if on_cpu and importlib.util.find_spec("onnxruntime") else "torch"
    return engine


class EmbeddingBaseline(_Scorer):
    """Cosine of L2-normalised sentence embeddings; the index is the target matrix (n_t, d).

    ``backend``: None runs the ``SentenceTransformer`` in torch; serving passes the same
    transformer in ONNX Runtime (:func:`uwe.infer.loader.load_model` with ``engine`` ``onnx``, or
    ``auto``: :func:`resolve_engine`; mean pooling over unpadded groups of one token length,
    then unit rows; mean-pooling models only, CPU only). The two give the same embeddings up to
    float rounding (``tests/test_ort.py``); on 2 CPU cores ONNX Runtime evaluates
    all-mpnet-base-v2 on the three families in 21 min against 30 through torch.
    """

    kind = "embedding"

    def __init__(
        self,
        name: str,
        device: str = "auto",
        batch_size: int = 128,
        max_length: int | None = None,
        progress: bool = True,
        text_cache_mb: float = 0,
        backend: Any = None,
    ):
        self.name = str(name)
        self.encoder = SentenceEncoder(
            name, device=device, batch_size=batch_size, max_length=max_length, progress=progress,
            text_cache_mb=text_cache_mb, backend=backend,
        )

    def index_targets(self, targets: list[str]) -> np.ndarray:
        return self.encoder.encode(list(targets))  # (n_t, d)

    def score_index(self, queries: list[str], index: np.ndarray) -> np.ndarray:
        q = self.encoder.encode(list(queries))  # (n_q, d)
        return np.asarray(q @ index.T, dtype=np.float32)  # (n_q, n_t)


def make_model(name: str, **kw) -> _Scorer:
    """``"bm25"``, ``"tfidf_char"`` or an embedding model name / folder / hub id.

    ``kw`` goes to the model's constructor; the encoder options (``device``, ``batch_size``,
    ``max_length``, ``progress``, ``text_cache_mb``, ``backend``) are accepted and ignored by the
    lexical models.
    A name that cannot be loaded raises ValueError naming it.
    """
    if not isinstance(name, str | Path) or not str(name).strip():
        raise ValueError(f"model name must be a non-empty string, got {name!r}")
    if name in LEXICAL:
        lexical_kw = {k: v for k, v in kw.items() if k not in _ENCODER_KW}
        return (BM25Baseline if name == "bm25" else TfidfCharBaseline)(**lexical_kw)
    return EmbeddingBaseline(str(name), **kw)
