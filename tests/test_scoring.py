"""Tests for uwe.core.scoring (the reference scorers: consistency, padding invariance, limits) and
for the faster SLI paths of uwe.infer.dense, each against the reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from uwe.core import scoring
from uwe.core.scoring import (
    SCORERS,
    get_scorer,
    maxsim_scores,
    mean_cosine_scores,
    mean_pool,
    sli_mean_target_scores,
    sli_pairwise,
    sli_scores,
)

torch.set_num_threads(2)
D = 8


def _batch(n: int, length: int, seed: int, dtype=torch.float32):
    """Random embeddings (n, L, D) and a mask (n, L) with 1..L valid leading tokens."""
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(n, length, D, generator=g, dtype=dtype)  # (n, L, D)
    lengths = torch.randint(1, length + 1, (n,), generator=g)  # (n,)
    mask = torch.arange(length)[None] < lengths[:, None]  # (n, L)
    return emb, mask


def _pad(emb, mask, k: int, value: float):
    """Append k padded columns holding ``value``; the mask becomes an int tensor."""
    emb = torch.cat([emb, torch.full((emb.shape[0], k, D), value)], 1)  # (n, L+k, D)
    mask = torch.cat([mask, torch.zeros(mask.shape[0], k, dtype=torch.bool)], 1)  # (n, L+k)
    return emb, mask.int()


@pytest.fixture
def data():
    q, qm = _batch(5, 6, seed=0)
    t, tm = _batch(7, 9, seed=1)
    return q, qm, t, tm


def _sli_reference(q, qm, t, tm, tau):
    """Literal per-pair loop of the paper's formula on unpadded slices."""
    out = torch.zeros(q.shape[0], t.shape[0], dtype=q.dtype)
    for a in range(q.shape[0]):
        for b in range(t.shape[0]):
            qa, tb = q[a][qm[a]], t[b][tm[b]]  # (m, D), (n, D)
            attn = (qa @ tb.T / tau).softmax(-1)  # (m, n)
            cos = F.normalize(qa, dim=-1) @ F.normalize(tb, dim=-1).T  # (m, n)
            out[a, b] = (attn * cos).sum(-1).mean()
    return out


def test_sli_matches_reference_loop(data):
    q, qm, t, tm = data
    got = sli_scores(q, qm, t, tm, attention_temperature=0.3)
    torch.testing.assert_close(got, _sli_reference(q, qm, t, tm, 0.3), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(SCORERS))
def test_pairwise_is_diagonal_of_all_pairs(name, data):
    q, qm, _, _ = data
    t, tm = _batch(5, 9, seed=2)
    all_pairs, pairwise = get_scorer(name)
    full = all_pairs(q, qm, t, tm, attention_temperature=0.2)  # (5, 5)
    torch.testing.assert_close(pairwise(q, qm, t, tm, attention_temperature=0.2), full.diagonal())


@pytest.mark.parametrize("name", sorted(SCORERS))
@pytest.mark.parametrize("chunk", [1, 3, 100])
def test_chunking_does_not_change_scores(name, chunk, data):
    q, qm, t, tm = data
    all_pairs = get_scorer(name).all_pairs
    ref = all_pairs(q, qm, t, tm, attention_temperature=0.1)
    got = all_pairs(q, qm, t, tm, attention_temperature=0.1, target_chunk=chunk)
    torch.testing.assert_close(got, ref)


@pytest.mark.parametrize("name", sorted(SCORERS))
@pytest.mark.parametrize("garbage", [1e6, float("nan"), float("inf")])
def test_padding_never_changes_a_score(name, garbage, data):
    q, qm, t, tm = data
    all_pairs, pairwise = get_scorer(name)
    ref = all_pairs(q, qm, t, tm)
    # garbage in padded positions
    q2 = q.masked_fill(~qm[..., None], garbage)
    t2 = t.masked_fill(~tm[..., None], garbage)
    torch.testing.assert_close(all_pairs(q2, qm, t2, tm), ref)
    # extra padding columns (int masks too), also filled with garbage
    q3, qm3 = _pad(q2, qm, 3, garbage)
    t3, tm3 = _pad(t2, tm, 4, garbage)
    torch.testing.assert_close(all_pairs(q3, qm3, t3, tm3), ref)
    torch.testing.assert_close(pairwise(q3, qm3, q3, qm3), pairwise(q, qm, q, qm))


@pytest.mark.parametrize("name", sorted(SCORERS))
def test_padding_gets_no_gradient_and_grads_finite(name, data):
    q, qm, t, tm = data
    q = q.masked_fill(~qm[..., None], float("nan")).requires_grad_()
    get_scorer(name).all_pairs(q, qm, t, tm, attention_temperature=1e-3).sum().backward()
    assert torch.isfinite(q.grad).all()
    assert (q.grad[~qm] == 0).all()


@pytest.mark.parametrize("name", sorted(SCORERS))
def test_fully_padded_sequence_scores_zero(name, data):
    q, qm, t, tm = data
    qm, tm = qm.clone(), tm.clone()
    qm[0] = False
    tm[2] = False
    all_pairs, pairwise = get_scorer(name)
    s = all_pairs(q, qm, t, tm)
    assert torch.isfinite(s).all()
    assert (s[0] == 0).all() and (s[:, 2] == 0).all()
    assert pairwise(q, qm, q, qm)[0] == 0


def test_sli_tends_to_maxsim_on_normalised_tokens(data):
    q, qm, t, tm = (x.double() if x.is_floating_point() else x for x in data)
    q, t = F.normalize(q, dim=-1), F.normalize(t, dim=-1)  # raw dot == cosine
    hard = maxsim_scores(q, qm, t, tm)
    errs = [(sli_scores(q, qm, t, tm, tau) - hard).abs().max().item() for tau in (1e-1, 1e-2)]
    assert errs[1] < errs[0]
    torch.testing.assert_close(sli_scores(q, qm, t, tm, 1e-6), hard, rtol=0, atol=1e-10)


def test_sli_general_limit_is_cosine_at_argmax_raw_dot(data):
    q, qm, t, tm = (x.double() if x.is_floating_point() else x for x in data)
    t = t * torch.linspace(0.5, 3.0, t.shape[1], dtype=t.dtype)[None, :, None]  # uneven norms
    ref = torch.zeros(q.shape[0], t.shape[0], dtype=q.dtype)
    for a in range(q.shape[0]):
        for b in range(t.shape[0]):
            qa, tb = q[a][qm[a]], t[b][tm[b]]
            best = tb[(qa @ tb.T).argmax(-1)]  # (m, D) target token with max raw dot
            ref[a, b] = F.cosine_similarity(qa, best, dim=-1).mean()
    torch.testing.assert_close(sli_scores(q, qm, t, tm, 1e-6), ref, rtol=0, atol=1e-10)
    assert not torch.allclose(ref, maxsim_scores(q, qm, t, tm))  # differs from MaxSim here


def test_high_temperature_is_uniform_attention(data):
    q, qm, t, tm = data
    ref = torch.zeros(q.shape[0], t.shape[0])
    for a in range(q.shape[0]):
        for b in range(t.shape[0]):
            qa, tb = F.normalize(q[a][qm[a]], dim=-1), F.normalize(t[b][tm[b]], dim=-1)
            ref[a, b] = (qa @ tb.T).mean()
    torch.testing.assert_close(sli_scores(q, qm, t, tm, 1e8), ref, rtol=1e-5, atol=1e-6)


def test_mean_and_mean_target_scorers(data):
    q, qm, t, tm = data
    pooled = torch.stack([t[b][tm[b]].mean(0) for b in range(t.shape[0])])  # (n_t, D)
    torch.testing.assert_close(mean_pool(t, tm), pooled)
    qp = torch.stack([q[a][qm[a]].mean(0) for a in range(q.shape[0])])  # (n_q, D)
    ref = F.cosine_similarity(qp[:, None], pooled[None], dim=-1)  # (n_q, n_t)
    torch.testing.assert_close(mean_cosine_scores(q, qm, t, tm), ref)
    ref2 = torch.stack([
        F.cosine_similarity(q[a][qm[a]][:, None], pooled[None], dim=-1).mean(0)
        for a in range(q.shape[0])
    ])  # (n_q, n_t)
    torch.testing.assert_close(sli_mean_target_scores(q, qm, t, tm), ref2)


def test_sli_gradients_finite_small_temperature():
    q, qm = _batch(3, 5, seed=4)
    t, tm = _batch(4, 6, seed=5)
    q = (q * 100).requires_grad_()
    t = (t * 100).requires_grad_()
    sli_scores(q, qm, t, tm, attention_temperature=1e-4).sum().backward()
    assert torch.isfinite(q.grad).all() and torch.isfinite(t.grad).all()


def test_unknown_scorer_raises():
    with pytest.raises(ValueError, match="sli_mean_target"):
        get_scorer("colbert")
    assert set(SCORERS) == {"sli", "mean", "maxsim", "sli_mean_target", "sli_cos"}
    with pytest.raises(ValueError):
        scoring.sli_scores(*_batch(2, 3, 0), *_batch(4, 3, 1), target_chunk=0)


def test_pairwise_sli_matches_reference(data):
    q, qm, _, _ = data
    t, tm = _batch(5, 4, seed=7)
    ref = _sli_reference(q, qm, t, tm, 0.1).diagonal()
    torch.testing.assert_close(sli_pairwise(q, qm, t, tm, 0.1), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("tau", [0.02, 0.1, 0.5])
def test_sli_dense_equals_masked_sli_on_unpadded_groups(tau, fused):
    from uwe.core.scoring import unit_and_norm
    from uwe.infer.dense import sli_dense
    from uwe.infer.kernels import available

    if fused and not available():
        pytest.skip("numba kernel unavailable")
    g = torch.Generator().manual_seed(3)
    q = torch.randn(5, 4, 16, generator=g) * 3  # raw token embeddings, norms ~12
    t = torch.randn(7, 6, 16, generator=g) * 3
    ref = sli_scores(q, torch.ones(5, 4), t, torch.ones(7, 6), attention_temperature=tau)
    got = sli_dense(*unit_and_norm(q), *unit_and_norm(t), attention_temperature=tau, fused=fused)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("path", ["numpy", "numpy fused"])
@pytest.mark.parametrize("tau", [0.02, 0.1, 0.5])
def test_every_numpy_sli_path_equals_the_reference(path, tau):
    """The NumPy-side SLI of the NumPy engine (uwe.infer.numpy_engine.sli_dense, its NumPy
    passes and the fused Numba kernel) against the reference formula, core.scoring.sli_scores
    (the ONNX engine's token matrix: tests/test_token_matrix.py)."""
    from uwe.infer import kernels
    from uwe.infer.numpy_engine import sli_dense as np_sli_dense

    if path != "numpy" and not kernels.available():
        pytest.skip("numba kernel unavailable")
    g = torch.Generator().manual_seed(4)
    q = torch.randn(5, 4, 16, generator=g) * 3
    t = torch.randn(300, 6, 16, generator=g) * 3
    ref = sli_scores(q, torch.ones(5, 4), t, torch.ones(300, 6), attention_temperature=tau)
    qn, tn = q.numpy(), t.numpy()
    t_norm = np.linalg.norm(tn, axis=2).astype(np.float32)
    got = np_sli_dense(qn, tn, t_norm, tau, fused=path.endswith("fused"))
    torch.testing.assert_close(torch.from_numpy(np.asarray(got)), ref, atol=1e-5, rtol=1e-5)


def test_fused_kernel_equals_tensor_path_across_tiles():
    """More targets than one parallel tile, several query tokens, a single query (batch 1)."""
    from uwe.core.scoring import unit_and_norm
    from uwe.infer.dense import sli_dense
    from uwe.infer.kernels import TILE, available

    if not available():
        pytest.skip("numba kernel unavailable")
    g = torch.Generator().manual_seed(5)
    t = torch.randn(2 * TILE + 37, 3, 24, generator=g) * 4
    for n_q in (1, 6):
        q = torch.randn(n_q, 5, 24, generator=g) * 4
        (qu, qn), (tu, tn) = unit_and_norm(q), unit_and_norm(t)
        torch.testing.assert_close(sli_dense(qu, qn, tu, tn, 0.1, fused=True),
                                   sli_dense(qu, qn, tu, tn, 0.1, fused=False),
                                   atol=1e-6, rtol=1e-5)


def test_serial_kernel_equals_parallel_kernel():
    """threads=1 (the calling thread, for sli_dense_blocks' workers) and Numba's pool compute
    every score with the same float operations: bit-identical."""
    from uwe.infer.kernels import TILE, available, sli_from_cos

    if not available():
        pytest.skip("numba kernel unavailable")
    rng = np.random.default_rng(0)
    a, lq, b, lt = 3, 4, TILE + 19, 5
    cos = rng.uniform(-1, 1, (a * lq, lt * b)).astype(np.float32)
    q_scale = rng.uniform(50, 120, a * lq).astype(np.float32)
    t_norm = rng.uniform(6, 12, lt * b).astype(np.float32)
    np.testing.assert_array_equal(sli_from_cos(cos, q_scale, t_norm, a, lq, b, lt, threads=1),
                                  sli_from_cos(cos, q_scale, t_norm, a, lq, b, lt, threads=2))


@pytest.mark.parametrize("fused", [False, True])
def test_sli_dense_blocks_equal_one_sli_dense_per_block(fused):
    """Blocks of several lengths and sizes (one empty) against one query group: each block's
    scores equal sli_dense on it, in order, and do not depend on the number of workers."""
    from uwe.core.scoring import unit_and_norm
    from uwe.infer.dense import sli_dense, sli_dense_blocks
    from uwe.infer.kernels import TILE, available

    if fused and not available():
        pytest.skip("numba kernel unavailable")
    g = torch.Generator().manual_seed(8)
    qu, qn = unit_and_norm(torch.randn(4, 3, 16, generator=g) * 3)
    blocks = [unit_and_norm(torch.randn(n, lt, 16, generator=g) * 3)
              for n, lt in ((TILE + 5, 2), (9, 7), (0, 4), (1, 1), (40, 3))]
    one = sli_dense_blocks(qu, qn, blocks, 0.2, fused=fused, workers=1)
    two = sli_dense_blocks(qu, qn, blocks, 0.2, fused=fused, workers=2)
    assert [s.shape for s in one] == [(4, tu.shape[0]) for tu, _ in blocks]
    for s1, s2, (tu, tn) in zip(one, two, blocks, strict=True):
        torch.testing.assert_close(s1, s2, rtol=0, atol=0)
        torch.testing.assert_close(s1, sli_dense(qu, qn, tu, tn, 0.2, fused=False),
                                   atol=1e-6, rtol=1e-5)
    assert sli_dense_blocks(qu, qn, [], 0.2, fused=fused) == []


def test_sli_dense_blocks_leave_numpy_blas_threads_as_they_were():
    from threadpoolctl import threadpool_info

    from uwe.core.scoring import unit_and_norm
    from uwe.infer.dense import sli_dense_blocks
    from uwe.infer.kernels import available

    if not available():
        pytest.skip("numba kernel unavailable")

    def blas_threads():
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    before = blas_threads()
    qu, qn = unit_and_norm(torch.randn(2, 3, 8))
    sli_dense_blocks(qu, qn, [unit_and_norm(torch.randn(5, 2, 8))] * 3, fused=True, workers=2)
    assert blas_threads() == before


def test_fused_kernel_exp_is_float32_accurate():
    """The kernel's vectorised exp over the whole clamped range [-80, 0]: one query token and one
    target token per target makes each score exp(z) / exp(z) * cos, so probe exp through two
    tokens: weights exp(0) and exp(z) give score (c0 + e^z c1) / (1 + e^z)."""
    import numpy as np

    from uwe.core.scoring import EXP_FLOOR as SCORING_FLOOR
    from uwe.infer.kernels import EXP_FLOOR, available, sli_from_cos

    assert EXP_FLOOR == SCORING_FLOOR
    if not available():
        pytest.skip("numba kernel unavailable")
    z = np.linspace(-30.0, 0.0, 3001, dtype=np.float32)  # logit gaps, in units of q_scale
    b = len(z)
    # target k: token 0 has cos 1 (logit 0 after the shift), token 1 has cos 0 and logit z_k
    cos = np.zeros((1, 2 * b), np.float32)
    cos[0, :b] = 1.0
    t_norm = np.ones(2 * b, np.float32)
    # logit_j = q_scale * cos_j * t_norm_j: token 0 -> q_scale, token 1 -> 0; gap = -q_scale.
    # Give each target its own gap through token 0's norm: t_norm_0 = -z (q_scale 1).
    t_norm[:b] = -z
    got = sli_from_cos(cos, np.ones(1, np.float32), t_norm, 1, 1, b, 2)[0]
    want = 1.0 / (1.0 + np.exp(z.astype(np.float64)))  # weight of token 0, whose cos is 1
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-7)


def test_fused_kernel_rejects_bad_shapes():
    import numpy as np

    from uwe.infer.kernels import available, sli_from_cos

    if not available():
        pytest.skip("numba kernel unavailable")
    with pytest.raises(ValueError, match="do not match"):
        sli_from_cos(np.zeros((2, 6), np.float32), np.ones(2, np.float32),
                     np.ones(6, np.float32), 1, 2, 2, 2)


def test_length_groups_never_mix_lengths_and_respect_batch_size():
    import numpy as np

    from uwe.core.lengths import length_groups

    lengths = np.array([3, 5, 3, 5, 5, 2, 3, 5, 5])
    groups = length_groups(lengths, batch_size=2)
    assert [lengths[g].tolist() for g in groups] == [[5, 5], [5, 5], [5], [3, 3], [3], [2]]
    assert sorted(np.concatenate(groups).tolist()) == list(range(len(lengths)))
    assert [g.tolist() for g in length_groups(lengths)] == [[1, 3, 4, 7, 8], [0, 2, 6], [5]]
    assert length_groups(np.array([], dtype=int)) == []


def test_numpy_inference_fused_equals_array_path():
    import numpy as np

    from uwe.infer.kernels import available
    from uwe.infer.numpy_engine import sli_dense as np_sli_dense

    if not available():
        pytest.skip("numba kernel unavailable")
    rng = np.random.default_rng(0)
    q = rng.normal(size=(3, 4, 16)).astype(np.float32) * 3
    t = rng.normal(size=(300, 5, 16)).astype(np.float32) * 3
    t_norm = np.linalg.norm(t, axis=-1)
    np.testing.assert_allclose(np_sli_dense(q, t, t_norm, 0.1, fused=True),
                               np_sli_dense(q, t, t_norm, 0.1, fused=False), atol=1e-6, rtol=1e-5)


def test_attention_softness_on_hand_made_attention():
    """One-hot attention gives max weight 1 and entropy 0; equal logits give 1/Lt and log Lt
    (fraction 1); padded target tokens take no weight (issue: the scorer's fair test)."""
    import math

    from uwe.core.softness import attention_softness

    d = 4
    q = torch.zeros(3, 2, d)
    q[:, :, 0] = 1.0  # every query token points along axis 0
    t = torch.zeros(3, 5, d)
    t_mask = torch.ones(3, 5, dtype=torch.bool)
    # pair 0: one target token along axis 0, the others orthogonal: tau -> one-hot
    t[0, 0, 0] = 1.0
    t[0, 1:, 1] = 1.0
    # pair 1: four identical target tokens, the fifth padded (with a value that would win)
    t[1, :, 0] = 1.0
    t[1, 4, 0] = 100.0
    t_mask[1, 4] = False
    # pair 2: a single unpadded target token
    t[2, 0, 0] = 1.0
    t_mask[2, 1:] = False
    q_mask = torch.tensor([[1, 1], [1, 0], [1, 1]], dtype=torch.bool)
    soft = attention_softness(q, q_mask, t, t_mask, attention_temperature=1e-3)
    assert soft.max_weight[0] == pytest.approx(1.0) and soft.entropy[0] == pytest.approx(0.0)
    assert soft.entropy_fraction[0] == pytest.approx(0.0)
    assert soft.max_weight[1] == pytest.approx(0.25)
    assert soft.entropy[1] == pytest.approx(math.log(4))
    assert soft.entropy_fraction[1] == pytest.approx(1.0)
    assert soft.max_weight[2] == pytest.approx(1.0) and torch.isnan(soft.entropy_fraction[2])
    # a high temperature softens pair 0 toward uniform over its 5 tokens
    warm = attention_softness(q, q_mask, t, t_mask, attention_temperature=1e3)
    assert warm.max_weight[0] == pytest.approx(0.2, abs=1e-3)
    assert warm.entropy_fraction[0] == pytest.approx(1.0, abs=1e-3)


def test_sli_cos_is_sli_on_unit_tokens_and_blind_to_token_norms(data):
    """The declared deviation sli_cos attends over cosines: equal to sli on L2-normalised tokens,
    unchanged when every token is rescaled, and unlike sli on raw tokens."""
    q, qm, t, tm = data
    unit = (F.normalize(q, dim=-1), F.normalize(t, dim=-1))
    cos = scoring.sli_cos_scores(q, qm, t, tm, attention_temperature=0.2)
    torch.testing.assert_close(cos, sli_scores(unit[0], qm, unit[1], tm, 0.2))
    g = torch.Generator().manual_seed(3)
    scale_q = torch.rand(q.shape[:2], generator=g)[..., None] * 20 + 0.1  # per-token scales
    scale_t = torch.rand(t.shape[:2], generator=g)[..., None] * 20 + 0.1
    torch.testing.assert_close(scoring.sli_cos_scores(q * scale_q, qm, t * scale_t, tm, 0.2), cos)
    assert not torch.allclose(sli_scores(q * scale_q, qm, t * scale_t, tm, 0.2), cos, atol=1e-3)
    assert scoring.ATTENTION_UNIT == {"sli": "raw", "sli_cos": "cosine"}


def test_softness_report_on_val_pairs_of_a_tiny_model(tmp_path):
    """uwe.bench.softness: (query, positive) pairs only, capped per task (seeded), softness
    falls as the temperature rises, and the cosine unit is blind to token norms."""
    from types import SimpleNamespace

    from uwe.bench.softness import softness_report, val_pairs

    ds = SimpleNamespace(name="t", queries=["ab", "c", "def"], targets=["xyz", "w", "vu"],
                         positives=[[0, 2], [], [1]])  # distinct characters: no tied tokens
    assert val_pairs([ds], None) == {"t": [("ab", "xyz"), ("ab", "vu"), ("def", "w")]}
    capped = val_pairs([ds], 2)["t"]
    assert len(capped) == 2 and capped == val_pairs([ds], 2)["t"]

    class Enc(torch.nn.Module):  # one token per character, a fixed random vector each
        def forward(self, texts):
            g = torch.Generator().manual_seed(0)
            table = torch.randn(128, D, generator=g) * 5
            length = max(len(x) for x in texts)
            emb = torch.zeros(len(texts), length, D)
            mask = torch.zeros(len(texts), length, dtype=torch.bool)
            for i, x in enumerate(texts):
                emb[i, : len(x)] = table[[ord(c) for c in x]]
                mask[i, : len(x)] = True
            return emb, mask

    rep = softness_report(Enc(), [ds], [0.01, 30.0, 1e5], attention="raw", max_pairs=None)
    by = rep["by_temperature"]
    assert rep["pairs"] == 3 and [e["temperature"] for e in by] == [0.01, 30.0, 1e5]
    assert by[0]["max_weight"] > by[1]["max_weight"] > by[2]["max_weight"]
    assert by[0]["entropy_fraction"] < 0.05 and by[2]["entropy_fraction"] > 0.99
    with pytest.raises(ValueError, match="attention unit"):
        softness_report(Enc(), [ds], [1.0], attention="dot")
