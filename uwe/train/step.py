"""One training step's scores, from the graphs' batches to the loss' inputs (arXiv 2511.07969,
Sec. "Training").

Every graph contributes a batch (:mod:`uwe.core.batching`); all texts of the step are encoded
together in length-sorted chunks (:func:`encode_sides`: little padding), and each graph's two
sides are scored all-pairs with the model's scorer (:mod:`uwe.core.scoring`) in float32
(:func:`step_scores`); :class:`uwe.core.losses.MultiGraphInfoNCE` turns the scores into the
loss. Across processes, token embeddings are all-gathered with their gradient
(:func:`gather_tokens`), so that each graph's in-batch negatives span the global batch, and the
positive mask is rebuilt from the full graph for the gathered node ids
(:func:`global_batches`). The update: AdamW without weight decay on biases and norms, a
linear warm-up then linear decay (:func:`make_optimizer`, :func:`linear_schedule`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from uwe.config import TrainParams
from uwe.core.batching import GraphBatch, MultiGraphBatcher

if TYPE_CHECKING:  # annotations only
    from uwe.model.uwe_model import UWEModel
    from uwe.train.distributed import DistInfo


class _AllGatherWithGrad(torch.autograd.Function):
    """``x`` of every rank stacked ``(world, *x.shape)``; the backward sums the incoming
    gradients over ranks and returns this rank's slice (what
    ``torch.distributed.nn.functional.all_gather`` does; that API is deprecated in torch 2.13)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        out = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(out, x.contiguous())
        return torch.stack(out)  # (world, *x.shape)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)  # sum of every rank's gradient w.r.t. every rank's slice
        return grad[dist.get_rank()]


def gather_tokens(emb: torch.Tensor, mask: torch.Tensor, counts: list[int]
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """All-gather ``(n_r, L_r, d)`` token embeddings (with gradient) and masks of every rank;
    rows/tokens are padded to the global max for the collective and the row padding removed.
    -> ``(sum_r n_r, L, d)``, ``(sum_r n_r, L)``."""
    length = torch.tensor([emb.shape[1]], device=emb.device)
    dist.all_reduce(length, op=dist.ReduceOp.MAX)
    pad_l, pad_n = int(length) - emb.shape[1], max(counts) - emb.shape[0]
    emb = F.pad(emb, (0, 0, 0, pad_l, 0, pad_n))  # (n_max, L, d)
    mask = F.pad(mask.to(torch.uint8), (0, pad_l, 0, pad_n))  # (n_max, L)
    embs = _AllGatherWithGrad.apply(emb)  # (world, n_max, L, d), differentiable
    masks = [torch.empty_like(mask) for _ in counts]
    dist.all_gather(masks, mask)
    emb = torch.cat([e[:n] for e, n in zip(embs, counts, strict=True)])
    mask = torch.cat([m[:n] for m, n in zip(masks, counts, strict=True)]).bool()
    return emb, mask


def global_batches(batcher: MultiGraphBatcher, batches: dict[str, GraphBatch]):
    """Node ids of every rank's batches -> per graph (left counts, right counts, global mask)."""
    ids = {name: (b.left_ids, b.right_ids) for name, b in batches.items()}
    everyone: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, ids)
    out = {}
    for name in batches:
        lefts = [r[name][0] for r in everyone]
        rights = [r[name][1] for r in everyone]
        mask = batcher.samplers[name].positive_mask(
            [i for x in lefts for i in x], [i for x in rights for i in x])
        out[name] = ([len(x) for x in lefts], [len(x) for x in rights], mask)
    return out


def encode_sides(encode, token_lengths, sides: list[list[str]], chunk: int = 64
                 ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Encode the texts of several batch sides together: sorted by token length, ``chunk``
    texts per forward (little padding), then re-assembled per side.

    -> per side ``(emb (n_s, L_s, d), mask (n_s, L_s))`` with ``L_s`` the side's longest text.
    """
    texts = [t for side in sides for t in side]
    lengths = np.asarray(token_lengths(texts), dtype=np.int64)  # (n,)
    order = np.argsort(-lengths, kind="stable")
    packed = []
    for s in range(0, len(texts), chunk):
        emb, mask = encode([texts[i] for i in order[s : s + chunk]])  # (c, L, d), (c, L)
        assert mask.sum(1).tolist() == lengths[order[s : s + chunk]].tolist()
        packed.append(emb[mask])  # (tokens, d): real tokens, text after text
    tokens = torch.cat(packed)  # (N, d) in `order`
    start = np.zeros(len(texts), dtype=np.int64)
    start[order] = np.concatenate([[0], np.cumsum(lengths[order])[:-1]])  # first token per text
    out, first = [], 0
    for side in sides:
        n = len(side)
        lens = torch.from_numpy(lengths[first : first + n])  # (n_s,)
        span = torch.arange(int(lens.max()) if n else 1)  # (L_s,)
        mask = span[None] < lens[:, None]  # (n_s, L_s)
        idx = torch.from_numpy(start[first : first + n])[:, None] + span[None]  # (n_s, L_s)
        idx = torch.where(mask, idx, torch.zeros_like(idx)).to(tokens.device)
        out.append((tokens[idx], mask.to(tokens.device)))  # (n_s, L_s, d), (n_s, L_s)
        first += n
    return out


def step_scores(encode, model: UWEModel, batcher: MultiGraphBatcher,
                batches: dict[str, GraphBatch], info: DistInfo, autocast,
                token_lengths=None, chunk: int = 64
                ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Encode every graph's batch (:func:`encode_sides`, ``chunk`` texts per forward) ->
    ``{graph: (scores, mask)}``; scores ``(B_l, B_r)`` float32 (global batch when distributed).
    ``token_lengths`` defaults to the model's tokenizer (a frozen-bottom encoder answers from
    its cache)."""
    glob = global_batches(batcher, batches) if info.world > 1 else None
    sides = [x for b in batches.values() for x in (b.left_texts, b.right_texts)]
    with autocast:
        encoded = encode_sides(encode, token_lengths or model.encoder.token_lengths, sides,
                               chunk=chunk)
    out = {}
    for k, (name, b) in enumerate(batches.items()):
        (l_emb, l_mask), (r_emb, r_mask) = encoded[2 * k], encoded[2 * k + 1]
        l_emb, r_emb, mask = l_emb.float(), r_emb.float(), b.positive_mask
        if glob is not None:
            n_left, n_right, mask = glob[name]
            l_emb, l_mask = gather_tokens(l_emb, l_mask, n_left)
            r_emb, r_mask = gather_tokens(r_emb, r_mask, n_right)
        scores = model.scorer.all_pairs(l_emb, l_mask, r_emb, r_mask,
                                        attention_temperature=model.attention_temperature)
        out[name] = (scores, mask.to(scores.device))  # (B_l, B_r) each
    return out


def linear_schedule(steps: int, warmup: float):
    """LR multiplier after ``k`` optimizer steps: ``(k+1)/W`` during the ``W = round(warmup *
    steps)`` warm-up steps, then ``(steps - k) / (steps - W)`` (reaches 0 at ``steps``)."""
    warm = int(round(warmup * steps))

    def factor(k: int) -> float:
        if k < warm:
            return (k + 1) / warm
        return max(0.0, (steps - k) / max(1, steps - warm))

    return factor


def make_optimizer(module: torch.nn.Module, cfg: TrainParams):
    """AdamW with weight decay on matrices only (not on biases / LayerNorm), + the schedule."""
    params = [p for p in module.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, linear_schedule(cfg.steps, cfg.warmup))
    return opt, sched
