"""Baselines obey the scoring contract and match reference implementations."""

from __future__ import annotations

import bm25s
import numpy as np
import pytest
import torch
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics.pairwise import cosine_similarity

from uwe.model.baselines import (
    BM25Baseline,
    EmbeddingBaseline,
    TfidfCharBaseline,
    make_model,
    word_tokenize,
)
from uwe.model.registry import model_slug

TARGETS = [
    "manage software development projects",
    "use Python programming language",
    "bake bread and pastry",
    "develop software in Java",
    "",  # a target without any token
    "operate forklift",
]
QUERIES = ["Python software developer", "baker bread bread", "zzz unknown", "forklift driver"]


def test_word_tokenize():
    assert word_tokenize("C++ / Python-3, SQL!") == ["c", "python", "3", "sql"]


def test_bm25_matches_bm25s_get_scores():
    model = BM25Baseline()
    scores = model.score(QUERIES, TARGETS)
    assert scores.shape == (len(QUERIES), len(TARGETS)) and scores.dtype == np.float32
    ref = bm25s.BM25(k1=1.5, b=0.75)
    ref.index([word_tokenize(t) for t in TARGETS], show_progress=False)
    for i, q in enumerate(QUERIES):
        ids = ref.get_tokens_ids(word_tokenize(q))
        expected = ref.get_scores_from_ids(ids) if ids else np.zeros(len(TARGETS))
        np.testing.assert_allclose(scores[i], expected, rtol=1e-5, atol=1e-6)
    assert scores[1].argmax() == 2 and scores[3].argmax() == 5
    assert not scores[2].any()  # no known token -> all zeros


def test_bm25_index_reuse_equals_score():
    model = BM25Baseline(k1=1.2, b=0.5)
    index = model.index_targets(TARGETS)
    np.testing.assert_array_equal(
        np.vstack([model.score_index([q], index) for q in QUERIES]), model.score(QUERIES, TARGETS)
    )


def test_tfidf_char_matches_sklearn_cosine():
    model = TfidfCharBaseline()
    scores = model.score(QUERIES, TARGETS)
    vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True).fit(TARGETS)
    expected = cosine_similarity(vec.transform(QUERIES), vec.transform(TARGETS))
    assert scores.shape == expected.shape and scores.dtype == np.float32
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    self_scores = model.score(TARGETS[:4], TARGETS)
    assert (self_scores.argmax(1) == np.arange(4)).all()


class _FakeEncoder:
    """Deterministic 'embeddings': normalised bag of letters."""

    def encode(self, texts):
        out = np.zeros((len(texts), 26), dtype=np.float32)
        for i, t in enumerate(texts):
            for ch in t.lower():
                if "a" <= ch <= "z":
                    out[i, ord(ch) - 97] += 1
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def test_embedding_baseline_is_cosine_of_encodings():
    model = EmbeddingBaseline.__new__(EmbeddingBaseline)
    model.name, model.encoder = "fake", _FakeEncoder()
    index = model.index_targets(TARGETS)
    assert index.shape == (len(TARGETS), 26)
    scores = model.score_index(QUERIES, index)
    enc = _FakeEncoder()
    np.testing.assert_allclose(scores, enc.encode(QUERIES) @ enc.encode(TARGETS).T, atol=1e-6)
    np.testing.assert_array_equal(scores, model.score(QUERIES, TARGETS))


def test_make_model_real_minilm_ranks_sensibly():
    torch.set_num_threads(2)
    model = make_model("sentence-transformers/all-MiniLM-L6-v2", device="cpu", progress=False)
    scores = model.score(["bread baker", "forklift operator"], TARGETS)
    assert scores.shape == (2, len(TARGETS)) and scores.dtype == np.float32
    assert scores[0].argmax() == 2 and scores[1].argmax() == 5
    assert np.all(scores <= 1.0 + 1e-5)


def test_make_model_lexical_and_errors():
    assert isinstance(make_model("bm25"), BM25Baseline)
    assert isinstance(make_model("tfidf_char"), TfidfCharBaseline)
    with pytest.raises(ValueError, match="uwe-test/not-a-model"):
        make_model("uwe-test/not-a-model", device="cpu", progress=False)
    with pytest.raises(ValueError, match="non-empty"):
        make_model("  ")


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2"),
        ("Qwen/Qwen3-Embedding-0.6B", "Qwen3-Embedding-0.6B"),
        ("bm25", "bm25"),
        ("/models/uwe/", "uwe"),
        ("my model:v2", "my_model_v2"),
    ],
)
def test_model_slug(name, slug):
    assert model_slug(name) == slug
