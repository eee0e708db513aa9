"""Tests for uwe.core.losses: many-to-many InfoNCE against references and edge cases."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from uwe.core.losses import (
    VARIANTS,
    MultiGraphInfoNCE,
    contrastive_loss,
    info_nce_many_to_many,
    info_nce_one_to_one,
)

torch.set_num_threads(2)


def _scores(b_q: int, b_y: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b_q, b_y, generator=g, dtype=torch.float64) * scale  # (B_q, B_y)


def _mask(b_q: int, b_y: int, seed: int, p: float = 0.3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed + 100)
    m = torch.rand(b_q, b_y, generator=g) < p  # (B_q, B_y)
    m[0] = False  # a row without positives (skipped)
    m[1, :] = True  # a row where every candidate is positive (no negatives)
    return m


def _reference_direction(scores: torch.Tensor, mask: torch.Tensor, tau: float) -> float:
    """Slow double loop: for each anchor, each positive vs itself + the non-positives."""
    terms = []
    for i in range(scores.shape[0]):
        pos = [j for j in range(scores.shape[1]) if mask[i, j]]
        neg = [j for j in range(scores.shape[1]) if not mask[i, j]]
        if not pos:
            continue
        row = 0.0
        for j in pos:
            denom = math.exp(scores[i, j].item() / tau)
            denom += sum(math.exp(scores[i, k].item() / tau) for k in neg)
            row += -math.log(math.exp(scores[i, j].item() / tau) / denom)
        terms.append(row / len(pos))
    return sum(terms) / len(terms) if terms else 0.0


@pytest.mark.parametrize("shape", [(6, 6), (5, 8), (8, 5)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_many_to_many_matches_reference_loop(shape, seed):
    s, m = _scores(*shape, seed), _mask(*shape, seed)
    tau = 0.5
    fwd = _reference_direction(s, m, tau)
    bwd = _reference_direction(s.T, m.T, tau)
    one = info_nce_many_to_many(s, m, tau, bidirectional=False)
    both = info_nce_many_to_many(s, m, tau, bidirectional=True)
    assert one.item() == pytest.approx(fwd, rel=1e-6)
    assert both.item() == pytest.approx(fwd + bwd, rel=1e-6)


@pytest.mark.parametrize("tau", [0.05, 1.0])
def test_identity_mask_equals_cross_entropy(tau):
    s = _scores(7, 7, seed=3)
    eye = torch.eye(7, dtype=torch.bool)
    labels = torch.arange(7)
    ce_fwd = F.cross_entropy(s.float() / tau, labels)
    ce_bwd = F.cross_entropy(s.float().T / tau, labels)
    torch.testing.assert_close(info_nce_many_to_many(s, eye, tau, bidirectional=False), ce_fwd)
    torch.testing.assert_close(info_nce_many_to_many(s, eye, tau), ce_fwd + ce_bwd)
    torch.testing.assert_close(info_nce_one_to_one(s, tau), ce_fwd)
    torch.testing.assert_close(info_nce_one_to_one(s, tau, symmetric=True), ce_fwd + ce_bwd)


def test_graph_neighbour_is_never_a_negative():
    """Row 0 has positives {0, 3}. If y_3 were a negative of positive 0's term, raising s[0, 3]
    would raise that term; instead only y_3's own term depends on s[0, 3], so the loss gradient
    is exactly that of -log p_3 / |P| with p_3 a softmax over {y_3} u non-positives."""
    tau = 0.1
    s = _scores(4, 5, seed=4).requires_grad_()
    m = torch.zeros(4, 5, dtype=torch.bool)
    m[0, 0] = m[0, 3] = True
    info_nce_many_to_many(s, m, tau, bidirectional=False).backward()  # only row 0 contributes
    idx = torch.tensor([3, 1, 2, 4])  # y_3 and the non-positives
    p3 = (s.detach()[0, idx].float() / tau).softmax(0)[0]
    assert s.grad[0, 3].item() == pytest.approx(-(1 - p3.item()) / (2 * tau), rel=1e-5)
    s2 = s.detach().clone()
    s2[0, 3] += 10.0  # a neighbour scoring much higher only lowers the loss
    before = info_nce_many_to_many(s.detach(), m, tau, bidirectional=False)
    assert info_nce_many_to_many(s2, m, tau, bidirectional=False) < before


def test_one_to_one_treats_linked_items_as_negatives():
    s = _scores(4, 4, seed=5)
    m = torch.eye(4, dtype=torch.bool)
    m[0, 1] = True
    s2 = s.clone()
    s2[0, 1] += 5.0
    for variant, worse in (("one_to_one", True), ("many_to_many", False)):
        changed = contrastive_loss(s2, m, 0.1, variant) > contrastive_loss(s, m, 0.1, variant)
        assert changed == worse, variant


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("tau,scale", [(1e-4, 1.0), (0.05, 1e4), (1e-6, 50.0)])
def test_gradients_finite(variant, tau, scale):
    s = _scores(6, 6, seed=6, scale=scale).float().requires_grad_()
    m = _mask(6, 6, seed=6) | torch.eye(6, dtype=torch.bool)
    loss = contrastive_loss(s, m, tau, variant)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(s.grad).all()


def test_no_positive_rows_are_skipped_and_empty_mask_gives_zero():
    s = _scores(3, 3, seed=7).requires_grad_()
    empty = torch.zeros(3, 3, dtype=torch.bool)
    loss = info_nce_many_to_many(s, empty, 0.1)
    assert loss.item() == 0.0
    loss.backward()
    assert (s.grad == 0).all()


def test_contrastive_loss_dispatch_and_errors():
    s, m = _scores(4, 4, seed=8), _mask(4, 4, seed=8) | torch.eye(4, dtype=torch.bool)
    assert contrastive_loss(s, m, 0.1, "many_to_many_one_direction") == info_nce_many_to_many(
        s, m, 0.1, bidirectional=False)
    assert contrastive_loss(s, None, 0.1, "symmetric") == info_nce_one_to_one(s, 0.1, True)
    with pytest.raises(ValueError, match="many_to_many"):
        contrastive_loss(s, m, 0.1, "triplet")
    with pytest.raises(ValueError):
        contrastive_loss(s, None, 0.1, "many_to_many")
    with pytest.raises(ValueError):
        info_nce_many_to_many(s, m, 0.0)
    with pytest.raises(ValueError):
        info_nce_one_to_one(_scores(3, 4, seed=9), 0.1, symmetric=True)
    with pytest.raises(ValueError):
        MultiGraphInfoNCE({"g": {}}, variant="nope")


def test_multigraph_weighted_sum_and_config():
    graphs = {
        "a": {"weight": 2.0, "temperature": 0.1},
        "b": SimpleNamespace(weight=0.5, temperature=0.2),  # e.g. uwe.config.GraphParams
    }
    crit = MultiGraphInfoNCE(graphs, variant="many_to_many")
    sa = _scores(4, 4, seed=10).requires_grad_()
    sb = _scores(5, 3, seed=11).requires_grad_()
    ma, mb = torch.eye(4, dtype=torch.bool), _mask(5, 3, seed=11)
    total, parts = crit({"a": (sa, ma), "b": (sb, mb)})
    la, lb = info_nce_many_to_many(sa, ma, 0.1), info_nce_many_to_many(sb, mb, 0.2)
    torch.testing.assert_close(total, 2.0 * la + 0.5 * lb)
    assert parts == pytest.approx({"a": la.item(), "b": lb.item()})
    assert all(isinstance(v, float) for v in parts.values())
    total.backward()
    assert sa.grad is not None and sb.grad is not None
    total_a, parts_a = crit({"a": (sa, ma)})  # absent graphs are skipped
    assert set(parts_a) == {"a"}
    with pytest.raises(KeyError):
        crit({"c": (sa, ma)})
    assert crit.get_config_dict() == {
        "variant": "many_to_many",
        "graphs": {"a": {"weight": 2.0, "temperature": 0.1},
                   "b": {"weight": 0.5, "temperature": 0.2}},
    }
