"""uwe.model.textcache: a bounded text -> embedding cache, and the encoders that use it."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch
from test_model import QUERIES, TARGETS

from uwe.model.textcache import TextCache
from uwe.model.uwe_model import UWEModel


def test_missing_deduplicates_and_counts():
    cache = TextCache(1)
    assert cache.missing(["a", "b", "a"]) == ["a", "b"] and cache.misses == 2
    assert cache.put("a", np.zeros(4, np.float32))
    assert cache.missing(["a", "b", "c", "b"]) == ["b", "c"]
    assert (cache.hits, cache.misses) == (1, 4)
    assert "a" in cache and "b" not in cache and len(cache) == 1 and bool(TextCache(1))


def test_the_size_cap_holds_and_first_come_stays():
    cache = TextCache(max_mb=1024 / 2**20)  # 1 KiB
    assert cache.put("a", np.zeros(200, np.float32))  # 800 B
    assert not cache.put("b", torch.zeros(100))  # 400 B more would pass 1 KiB: not kept
    assert cache.put("c", torch.zeros(50))  # 200 B fits
    assert cache.nbytes == 1000 and "b" not in cache and cache.get("a").shape == (200,)
    assert cache.put("a", np.ones(1000, np.float32))  # already there: the first value stays
    assert cache.get("a").sum() == 0 and cache.nbytes == 1000


def test_lookup_encodes_each_missing_text_once_and_keeps_the_order():
    calls: list[list[str]] = []

    def encode(texts):
        calls.append(list(texts))
        return [np.full(2, ord(t), np.float32) for t in texts]

    cache = TextCache(max_mb=8 / 2**20)  # room for one 8-byte row
    rows = cache.lookup(["b", "a", "b"], encode)
    assert calls == [["b", "a"]] and [r[0] for r in rows] == [ord("b"), ord("a"), ord("b")]
    assert "b" in cache and "a" not in cache  # first come stays, the rest is not kept
    rows = cache.lookup(["a", "b"], encode)
    assert calls[-1] == ["a"] and [r[0] for r in rows] == [ord("a"), ord("b")]
    assert cache.lookup(["b"], encode)[0][0] == ord("b") and len(calls) == 2  # a pure hit
    with pytest.raises(ValueError):  # an encoder that drops a text is an error, not a gap
        TextCache(1).lookup(["x", "y"], lambda texts: encode(texts)[:1])


@pytest.mark.parametrize("size", [0, -1])
def test_a_zero_or_negative_size_is_rejected(size):
    with pytest.raises(ValueError, match="text cache size"):
        TextCache(size)


@pytest.fixture(scope="module")
def backbone(tiny_backbone) -> str:
    torch.set_num_threads(1)
    return tiny_backbone


class _Counting:
    """Wraps a TokenEncoder's forward to count the texts it encodes."""

    def __init__(self, model: UWEModel):
        self.texts: list[str] = []
        forward = model.encoder.forward

        def counted(texts):
            self.texts += list(texts)
            return forward(texts)

        model.encoder.forward = counted


@pytest.mark.parametrize("scorer", ["sli", "mean", "maxsim"])
def test_uwe_text_cache_gives_the_same_scores_and_encodes_each_text_once(backbone, scorer):
    plain = UWEModel.from_backbone(backbone, scorer=scorer, device="cpu", batch_size=3)
    cached = UWEModel.from_backbone(backbone, scorer=scorer, device="cpu", batch_size=3,
                                    text_cache_mb=16)
    count = _Counting(cached)
    # targets of one task are queries of the next; duplicates inside one list too
    queries = QUERIES + QUERIES[:2]
    expected = plain.score(queries, TARGETS)
    np.testing.assert_allclose(cached.score(queries, TARGETS), expected, atol=1e-5)
    assert sorted(count.texts) == sorted(set(QUERIES) | set(TARGETS))
    np.testing.assert_allclose(cached.score(TARGETS, queries), plain.score(TARGETS, queries),
                               atol=1e-5)
    np.testing.assert_allclose(cached.score(queries, TARGETS), expected, atol=1e-5)
    assert sorted(count.texts) == sorted(set(QUERIES) | set(TARGETS))  # nothing new encoded
    assert cached.text_cache.hits > 0 and len(cached.text_cache) == len(count.texts)


def test_uwe_full_cache_still_scores_every_text(backbone):
    plain = UWEModel.from_backbone(backbone, device="cpu", batch_size=4)
    tiny = UWEModel.from_backbone(backbone, device="cpu", batch_size=4,
                                  text_cache_mb=2 * 32 * 4 / 2**20)  # room for ~2 tokens only
    np.testing.assert_allclose(tiny.score(QUERIES, TARGETS), plain.score(QUERIES, TARGETS),
                               atol=1e-5)
    assert len(tiny.text_cache) == 0  # every text has >= 3 tokens ([CLS] x [SEP])


def test_the_cache_is_off_by_default(backbone):
    assert UWEModel.from_backbone(backbone, device="cpu").text_cache is None


class _FakeST:
    """Stands in for a SentenceTransformer: a fixed random embedding per text."""

    def __init__(self):
        self.calls: list[list[str]] = []

    def encode(self, texts, **kw):
        self.calls.append(list(texts))
        rows = [np.random.default_rng(zlib.crc32(t.encode())).normal(size=8) for t in texts]
        emb = np.array(rows, dtype=np.float32)
        return emb / np.linalg.norm(emb, axis=1, keepdims=True)

    def get_embedding_dimension(self):
        return 8


def test_sentence_encoder_cache_encodes_each_distinct_text_once(monkeypatch):
    from uwe.model import pretrained as encoders

    fake = _FakeST()
    monkeypatch.setattr(encoders, "load_sentence_transformer", lambda *a, **k: fake)
    plain = encoders.SentenceEncoder("fake", progress=False)
    cached = encoders.SentenceEncoder("fake", progress=False, text_cache_mb=1)
    texts = ["b", "a", "b", "c"]
    np.testing.assert_array_equal(cached.encode(texts), plain.encode(texts))
    np.testing.assert_array_equal(cached.encode(["c", "d", "a"]), plain.encode(["c", "d", "a"]))
    assert fake.calls[0] == ["b", "a", "c"] and fake.calls[2] == ["d"]  # [1], [3]: plain
    assert cached.encode([]).shape == (0, 8) and plain.cache is None
