"""uwe.core.batching: in-batch positives = graph adjacency, seeded determinism, exact resume."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from uwe.core.batching import GraphSampler, MultiGraphBatcher, graph_seed


def random_graph(n_left=30, n_right=40, n_edges=150, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    left = rng.integers(0, n_left, n_edges)
    right = rng.integers(0, n_right, n_edges)
    return pd.DataFrame({"left": [f"skill {i}" for i in left],
                         "right": [f"title {j}" for j in right]})


def edge_set(df: pd.DataFrame) -> set[tuple[str, str]]:
    return set(zip(df["left"], df["right"], strict=True))


def sampler(df, batch_size=16, seed=0, **kw) -> GraphSampler:
    return GraphSampler(df, batch_size, torch.Generator().manual_seed(seed), **kw)


def batches_equal(a, b) -> bool:
    return (a.left_texts == b.left_texts and a.right_texts == b.right_texts
            and torch.equal(a.positive_mask, b.positive_mask))


def test_positive_mask_is_the_full_graph_adjacency():
    df = random_graph()
    edges = edge_set(df)
    s = sampler(df, batch_size=16)
    n_extra_positives = 0
    for _ in range(20):
        b = s.sample()
        assert b.positive_mask.dtype == torch.bool
        assert b.positive_mask.shape == (len(b.left_texts), len(b.right_texts))
        expected = torch.tensor([[(lt, rt) in edges for rt in b.right_texts]
                                 for lt in b.left_texts])
        assert torch.equal(b.positive_mask, expected)
        assert len(set(b.left_texts)) == len(b.left_texts) == 16  # distinct lefts
        assert len(set(b.right_texts)) == len(b.right_texts)  # rights deduplicated
        assert b.positive_mask.any(1).all()  # every left has its sampled neighbour
        n_extra_positives += int(b.positive_mask.sum()) - len(b.left_texts)
    assert n_extra_positives > 0  # in-batch graph neighbours occurred and were marked positive


def test_shared_right_text_appears_once():
    df = pd.DataFrame({"left": [f"s{i}" for i in range(8)], "right": ["same job"] * 8})
    b = sampler(df, batch_size=8).sample()
    assert b.right_texts == ["same job"]
    assert b.positive_mask.shape == (8, 1) and b.positive_mask.all()


def test_without_dedup_pairs_stay_aligned():
    df = pd.DataFrame({"left": [f"s{i}" for i in range(8)], "right": ["same job"] * 8})
    b = sampler(df, batch_size=5, dedup_right=False).sample()
    assert len(b.right_texts) == 5
    assert b.positive_mask.diagonal().all()


def test_batch_larger_than_graph_takes_every_left_once():
    df = random_graph(n_left=5, n_right=6, n_edges=20)
    b = sampler(df, batch_size=64).sample()
    assert sorted(b.left_texts) == sorted(df["left"].unique())


def test_neighbour_is_drawn_among_the_left_nodes_edges():
    df = random_graph(seed=3)
    edges = edge_set(df)
    s = sampler(df, batch_size=8, dedup_right=False)
    for _ in range(10):
        b = s.sample()
        assert all((lt, rt) in edges for lt, rt in zip(b.left_texts, b.right_texts, strict=True))


def test_same_seed_same_batches_other_seed_other_batches():
    df = random_graph()
    a = MultiGraphBatcher({"sj": df, "sa": df}, batch_size=8, seed=1)
    b = MultiGraphBatcher({"sa": df, "sj": df}, batch_size=8, seed=1)  # order does not matter
    c = MultiGraphBatcher({"sj": df, "sa": df}, batch_size=8, seed=2)
    for _ in range(5):
        ba, bb, bc = a.sample(), b.sample(), c.sample()
        assert all(batches_equal(ba[g], bb[g]) for g in ("sj", "sa"))
    assert not batches_equal(ba["sj"], bc["sj"])
    assert not batches_equal(ba["sj"], ba["sa"])  # each graph has its own stream
    assert graph_seed(1, "sj") != graph_seed(1, "sa")


def test_state_dict_round_trip_resumes_the_sequence():
    df = random_graph()
    batcher = MultiGraphBatcher({"sj": df, "sv": df}, batch_size=8, seed=0,
                                sentence_pair_prob=0.5)
    for _ in range(2):
        batcher.sample()
    state = {k: v.clone() for k, v in batcher.state_dict().items()}
    after = [batcher.sample() for _ in range(3)]
    fresh = MultiGraphBatcher({"sj": df, "sv": df}, batch_size=8, seed=123,
                              sentence_pair_prob=0.5)
    fresh.load_state_dict(state)
    again = [fresh.sample() for _ in range(3)]
    for x, y in zip(after, again, strict=True):
        assert all(batches_equal(x[g], y[g]) for g in ("sj", "sv"))
    with pytest.raises(ValueError, match="sampler state mismatch"):
        fresh.load_state_dict({"sj": state["sj"]})


def test_sentence_pairs_union_their_positives():
    df = pd.DataFrame({"left": ["python", "sql", "java", "sql", "excel", "go"],
                       "right": ["s one", "s one", "s two", "s two", "s three", "s four"]})
    edges = edge_set(df)
    s = sampler(df, batch_size=5, pair_prob=1.0, seed=0)
    n_pairs = 0
    for _ in range(10):
        b = s.sample()
        for j, (ids, text) in enumerate(zip(b.right_ids, b.right_texts, strict=True)):
            parts = [s.right_texts[k] for k in ids]
            assert text == " ".join(parts)
            n_pairs += len(parts) == 2
            for i, lt in enumerate(b.left_texts):
                assert bool(b.positive_mask[i, j]) == any((lt, p) in edges for p in parts)
    assert n_pairs > 0


def test_only_the_sv_graph_gets_sentence_pairs():
    df = random_graph()
    batcher = MultiGraphBatcher({"sj": df, "sv": df}, batch_size=16, seed=0,
                                sentence_pair_prob=1.0)
    b = batcher.sample()
    assert all(len(ids) == 1 for ids in b["sj"].right_ids)
    assert any(len(ids) == 2 for ids in b["sv"].right_ids)


def test_missing_or_empty_graph_file_names_the_file(tmp_path):
    (tmp_path / "graphs").mkdir()
    with pytest.raises(FileNotFoundError, match="sj.parquet"):
        MultiGraphBatcher.from_root(["sj"], tmp_path, batch_size=4, seed=0)
    pd.DataFrame({"left": pd.Series([], dtype=str), "right": pd.Series([], dtype=str)}
                 ).to_parquet(tmp_path / "graphs" / "sa.parquet")
    with pytest.raises(ValueError, match="sa.parquet"):
        MultiGraphBatcher.from_root(["sa"], tmp_path, batch_size=4, seed=0)


def test_edge_counts_ignore_duplicate_edges():
    df = pd.DataFrame({"left": ["a", "a", "b"], "right": ["x", "x", "y"]})
    assert MultiGraphBatcher({"sj": df}, batch_size=2, seed=0).edge_counts() == {"sj": 2}


def word_count(texts) -> np.ndarray:
    """A stand-in tokenizer: one token per word + [CLS] and [SEP]."""
    return np.array([len(t.split()) + 2 for t in texts])


def test_sentence_pairs_only_with_partners_that_fit_max_tokens():
    sentences = [" ".join(["w"] * n) + f" s{n}" for n in range(1, 12)]  # 2..12 words
    df = pd.DataFrame({"left": [f"skill {i}" for i in range(11)], "right": sentences})
    s = sampler(df, batch_size=11, pair_prob=1.0, token_length=word_count, pair_max_tokens=10)
    n_pairs = 0
    for _ in range(20):
        b = s.sample()
        for ids, text in zip(b.right_ids, b.right_texts, strict=True):
            if len(ids) == 2:
                n_pairs += 1
                assert len(text.split()) + 2 <= 10  # nothing truncated away
    assert n_pairs > 20
    long_only = sampler(df.iloc[-1:], batch_size=1, pair_prob=1.0, token_length=word_count,
                        pair_max_tokens=10)
    assert long_only.sample().right_ids == [(0,)]  # no partner fits: left alone


def test_adjacency_and_edge_keys_are_the_graph_read_only():
    """What the hard-negative miner reads instead of the sampler's private fields."""
    df = random_graph()
    s = sampler(df)
    offsets, neighbours = s.adjacency()
    got = {(s.left_texts[k], s.right_texts[j]) for k in range(s.n_left)
           for j in neighbours[offsets[k]:offsets[k + 1]]}
    assert got == edge_set(df) and len(s.edge_keys) == s.n_edges == len(got)
    assert np.all(np.diff(s.edge_keys) > 0)
    for arr in (offsets, neighbours, s.edge_keys):
        with pytest.raises(ValueError, match="read-only"):
            arr[0] = 0
