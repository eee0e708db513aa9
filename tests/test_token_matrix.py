"""uwe.infer.token_matrix: SLI over one target-token matrix grouped by length (a matrix product
in ONNX Runtime plus the segmented softmax of uwe.infer.kernels.grouped_sli) against the padded
torch reference of uwe.core.scoring, per layout within its stated error bound."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from uwe.core.scoring import sli_cos_scores, sli_scores
from uwe.infer import kernels
from uwe.infer.token_matrix import LAYOUTS, TokenMatrix

pytestmark = pytest.mark.skipif(not kernels.available(), reason="numba not available")


def _targets(rng, n, d=48, lengths=(1, 2, 3, 5, 9), scale=3.0):
    """Targets of mixed lengths as exact-length buckets, and the same as a padded batch."""
    lens = rng.choice(lengths, size=n)
    toks = [rng.normal(size=(L, d)).astype(np.float32) * scale for L in lens]
    toks[0][0, :4] *= 20  # an outlier dimension, as BERT's tokens have
    buckets = []
    for L in sorted(set(lens)):
        idx = np.flatnonzero(lens == L)
        emb = np.stack([toks[i] for i in idx])
        buckets.append((idx, emb, np.linalg.norm(emb, axis=-1).astype(np.float32)))
    width = max(lens)
    padded = np.zeros((n, width, d), np.float32)
    mask = np.zeros((n, width), bool)
    for i, t in enumerate(toks):
        padded[i, :len(t)], mask[i, :len(t)] = t, True
    return buckets, torch.from_numpy(padded), torch.from_numpy(mask)


def _reference(q, t_emb, t_mask, tau, attention):
    fn = sli_scores if attention == "raw" else sli_cos_scores
    qt = torch.from_numpy(q)
    return fn(qt, torch.ones(qt.shape[:2], dtype=torch.bool), t_emb, t_mask,
              attention_temperature=tau).numpy()


@pytest.mark.parametrize("attention,tau", [("raw", 0.1), ("raw", 100.0), ("cosine", 0.05)])
def test_the_float32_layout_is_the_reference_formula(attention, tau):
    rng = np.random.default_rng(0)
    buckets, t_emb, t_mask = _targets(rng, 700)
    m = TokenMatrix.from_buckets(700, buckets, "float32")
    q = rng.normal(size=(3, 4, 48)).astype(np.float32) * 3
    want = _reference(q, t_emb, t_mask, tau, attention)
    # small blocks: a block boundary inside the targets, several chunks of the kernel
    for block in (1 << 20, 4 * 50):
        got = m.score(q, tau, attention, block_elements=block)
        np.testing.assert_allclose(got, want, atol=2e-6, rtol=0)
    assert np.all(m.error_bound(q, tau, attention) == 0)


@pytest.mark.parametrize("layout", [x for x in LAYOUTS if x != "float32"])
@pytest.mark.parametrize("attention,tau", [("raw", 0.1), ("raw", 100.0), ("cosine", 0.05)])
def test_a_lossy_layout_stays_within_its_stated_bound(layout, attention, tau):
    rng = np.random.default_rng(1)
    buckets, t_emb, t_mask = _targets(rng, 600)
    exact = TokenMatrix.from_buckets(600, buckets, "float32")
    lossy = TokenMatrix.from_buckets(600, buckets, layout)
    assert lossy.nbytes < exact.nbytes
    q = rng.normal(size=(5, 3, 48)).astype(np.float32) * 3
    err = np.abs(lossy.score(q, tau, attention) - exact.score(q, tau, attention)).max(1)
    bound = lossy.error_bound(q, tau, attention)
    assert np.all(err <= bound + 1e-6), (err, bound)
    assert np.all(err > 0)  # the layout does round (else the bound tests nothing)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_batches_of_queries_and_empty_inputs(layout):
    rng = np.random.default_rng(2)
    buckets, _, _ = _targets(rng, 50)
    m = TokenMatrix.from_buckets(50, buckets, layout)
    q = rng.normal(size=(64, 2, 48)).astype(np.float32)
    one_by_one = np.concatenate([m.score(q[i:i + 1], 1.0) for i in range(64)])
    np.testing.assert_allclose(m.score(q, 1.0), one_by_one, atol=1e-6, rtol=0)
    # small blocks: several product calls (or target blocks) per batch
    np.testing.assert_allclose(m.score(q, 1.0, block_elements=300), one_by_one, atol=1e-6,
                               rtol=0)
    assert m.score(q[:0], 1.0).shape == (0, 50)
    empty = TokenMatrix.from_buckets(0, [], layout)
    assert empty.score(q, 1.0).shape == (64, 0) and len(empty) == 0


def test_int8_block_products_are_the_stated_arithmetic_within_the_stated_bound():
    """ONNX Runtime's MatMulNBits (8 bits, accuracy level 4) computes what the layout's doc
    says -- query and tokens quantised per block of QUANT_BLOCK values, int8 products -- and
    every product lies within the per-pair bound that error_bound builds on."""
    from uwe.infer.token_matrix import QUANT_BLOCK, quantize_blocks

    rng = np.random.default_rng(4)
    d = 3 * QUANT_BLOCK + 5  # a last block zero-padded
    t = rng.normal(size=(300, d)).astype(np.float32) * 3
    t[:, 7] *= 20  # an outlier dimension
    q = rng.normal(size=(6, d)).astype(np.float32) * 3
    q[:, 2] *= 15
    offsets = np.arange(301, dtype=np.int64)
    m = TokenMatrix.from_offsets(t, np.linalg.norm(t, axis=1), offsets, "int8_block")
    assert np.array_equal(m.order, np.arange(300))  # one token each: stored in target order
    got = m.products(q).astype(np.float64)
    q8, sq = quantize_blocks(q)
    t8, st = quantize_blocks(t)
    emulated = np.einsum("rkb,nkb,rk,nk->rn", q8.astype(np.float64), t8.astype(np.float64),
                         sq, st)
    np.testing.assert_allclose(got, emulated, atol=1e-2, rtol=2e-4)  # float32 sums
    err = np.abs(got - q.astype(np.float64) @ t.T.astype(np.float64))
    bound = m._block_product_error(q.astype(np.float64), 1.01 * d * 2.0 ** -24)
    assert np.all(err <= bound) and err.max() > 0
    # worst case (every rounding aligned), so looser than the errors seen, but not vacuous
    assert bound.max() < 40 * err.max(), (bound.max(), err.max())


def test_bad_inputs_say_what_is_wrong():
    rng = np.random.default_rng(3)
    buckets, _, _ = _targets(rng, 10)
    with pytest.raises(ValueError, match="miss 1 of 11 targets"):
        TokenMatrix.from_buckets(11, buckets)
    with pytest.raises(ValueError, match="out of range or repeated"):
        TokenMatrix.from_buckets(10, [*buckets, buckets[0]])
    with pytest.raises(ValueError, match="token layout must be one of"):
        TokenMatrix.from_buckets(10, buckets, "float8")
    with pytest.raises(ValueError, match="offsets"):
        TokenMatrix.from_offsets(np.zeros((4, 48), np.float32), np.ones(4, np.float32),
                                 np.array([0, 3, 2, 4]))
    m = TokenMatrix.from_buckets(10, buckets)
    with pytest.raises(ValueError, match="dimension 48"):
        m.score(np.zeros((1, 2, 32), np.float32), 1.0)
    with pytest.raises(ValueError, match="attention must be one of"):
        m.score(np.zeros((1, 2, 48), np.float32), 1.0, attention="hard")


def test_target_major_tokens_give_the_same_scores_as_buckets():
    rng = np.random.default_rng(5)
    buckets, t_emb, t_mask = _targets(rng, 40)
    lengths = t_mask.sum(1).numpy()
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    tokens = np.concatenate([t_emb[k, :lengths[k]].numpy() for k in range(40)])
    m = TokenMatrix.from_offsets(tokens, np.linalg.norm(tokens, axis=1), offsets, "float32")
    q = rng.normal(size=(2, 3, 48)).astype(np.float32)
    want = TokenMatrix.from_buckets(40, buckets, "float32").score(q, 0.5)
    np.testing.assert_allclose(m.score(q, 0.5), want, atol=1e-6, rtol=0)


@pytest.mark.parametrize("chunk", [3, kernels.SEGMENT_CHUNK])
def test_the_grouped_kernel_in_parallel_equals_it_serial(chunk):
    """grouped_sli's work items (several per group when chunk is small) on Numba's pool give
    the serial result, and a target of no tokens scores 0."""
    rng = np.random.default_rng(6)
    lengths, counts = np.array([0, 2, 5]), np.array([3, 7, 11])
    items = kernels.work_items(lengths, counts, chunk)
    n_tok = int((lengths * counts).sum())
    raw = rng.normal(size=(6, n_tok)).astype(np.float32) * 4
    att_t = rng.uniform(0.5, 2, n_tok).astype(np.float32)
    cos_t = rng.uniform(0.1, 1, n_tok).astype(np.float32)
    att_q, cos_q = np.full(6, 0.7, np.float32), rng.uniform(0.1, 1, 6).astype(np.float32)
    outs = []
    for parallel in (False, True):
        out = np.zeros((2, int(counts.sum())), np.float32)
        kernels.grouped_sli(raw, att_q, att_t, cos_q, cos_t, items, 3, out, parallel)
        outs.append(out)
    np.testing.assert_array_equal(outs[0], outs[1])
    assert np.all(outs[0][:, :3] == 0) and np.all(outs[0][:, 3:] != 0)
    # the formula, by hand, for the second group's first target (tokens j*7 + 0 after the
    # first group's none): query 0's rows 0..2
    cols = 0 + np.arange(2) * 7
    want = 0.0
    for r in range(3):
        logit = raw[r, cols] * att_q[r] * att_t[cols]
        w = np.exp(logit - logit.max())
        want += (w / w.sum() * raw[r, cols] * cos_q[r] * cos_t[cols]).sum() / 3
    np.testing.assert_allclose(outs[0][0, 3], want, rtol=1e-5)
    with pytest.raises(ValueError, match="grouped_sli: shapes"):
        kernels.grouped_sli(raw[:, :5], att_q, att_t, cos_q, cos_t, items, 3, out)
