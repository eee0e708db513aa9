"""Two-stage ranking for large target spaces: an approximate first stage, then exact SLI.

Stage 1 (recall): every target is one vector, the L2-normalised mean of its UWE token
embeddings (:func:`uwe.core.scoring.mean_pool`, from the same encoder as stage 2); a query is
embedded the same way and the ``n_candidates`` targets with the highest inner product (=
cosine) are retrieved with FAISS.
Stage 2 (precision): those candidates are re-scored with the model's own scorer (SLI for UWE)
on the full token embeddings, exactly as :meth:`uwe.model.uwe_model.UWEModel.score_index`
would score them.

First-stage indexes (``first_stage``), measured by ``scripts/bench_ann.py`` (untuned MiniLM UWE,
131k ESCO/O*NET texts, 1 thread on a loaded 2-core CPU, batch-1 latency incl. query encoding;
exhaustive SLI: 1.8 s/query):

* ``"flat"`` (default) -- ``faiss.IndexFlatIP``: exact inner product, deterministic, no FAISS
  build (packing the token embeddings takes ~8 s). n_candidates=200: recall@10 0.998 vs
  exhaustive SLI at ~59 ms/query (~30x faster). The only approximation is "the mean-pooled
  cosine top-``n_candidates`` holds the SLI top-k".
* ``"hnsw"`` -- ``faiss.IndexHNSWFlat`` (inner product, ``M`` = ``hnsw_m``,
  ``efConstruction`` = ``ef_construction``, ``efSearch`` = max(``ef_search``, n_candidates)):
  n_candidates=200: recall@10 0.993 at ~43 ms/query, but an 82 s build and a second
  approximation; worth it for millions of targets or when query encoding is fast (GPU).

Contracts:

* ``search(queries, top_k) -> (indices (n_q, k) int64, scores (n_q, k) float32)``, best first,
  ties broken by the lower target index (as :meth:`uwe.model.uwe_model.UWEModel.rank`);
  ``k = min(top_k, n_targets)``.
* ``score_matrix(queries) -> (n_q, n_t) float32``: the exact scores of each query's candidates,
  ``-inf`` everywhere else. :mod:`uwe.core.metrics` ranks ``-inf`` last and breaks ties by the
  lower
  target index, so a positive outside the candidates is ranked after every candidate, in target
  order (a pessimistic, deterministic convention for MAP).
* :class:`TwoStageModel` wraps a UWE model with the harness contract
  (``index_targets`` / ``score_index``), so :func:`uwe.bench.evaluation.evaluate` scores it
  directly.
* With ``n_candidates >= n_targets`` both stages see every target and the result equals
  exhaustive scoring (up to float rounding: pairwise vs all-pairs kernels).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from uwe.core.scoring import get_scorer, mean_pool

logger = logging.getLogger(__name__)

FIRST_STAGES = ("flat", "hnsw")
RERANK_PAIRS = 8192  # (query, candidate) pairs per re-ranking batch


@dataclass
class PackedTokens:
    """Target token embeddings without padding, in target order (target ``j`` owns rows
    ``offsets[j]:offsets[j + 1]`` of ``tokens``)."""

    tokens: torch.Tensor  # (N, d)
    offsets: torch.Tensor  # (n_t + 1,) long

    @property
    def lengths(self) -> torch.Tensor:
        return self.offsets[1:] - self.offsets[:-1]  # (n_t,)

    def gather(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded token embeddings of targets ``ids`` (m,): ``(emb (m, L, d), mask (m, L))``."""
        lengths = self.lengths[ids]  # (m,)
        width = max(int(lengths.max()) if len(ids) else 1, 1)
        steps = torch.arange(width, device=ids.device)  # (L,)
        mask = steps[None] < lengths[:, None]  # (m, L)
        pos = (self.offsets[ids][:, None] + steps[None]).clamp_max(len(self.tokens) - 1)
        return self.tokens[pos], mask  # (m, L, d), (m, L); padded rows masked by the scorer


def pack_index(index: Any) -> tuple[PackedTokens, np.ndarray]:
    """A :class:`uwe.model.uwe_model.TargetIndex` -> (packed tokens, L2-normalised mean vectors
    (n_t, d))."""
    n_t = len(index)
    dim = index.buckets[0].emb.shape[-1] if index.buckets else 1
    device = index.buckets[0].emb.device if index.buckets else torch.device("cpu")
    lengths = torch.zeros(n_t, dtype=torch.long, device=device)
    vectors = torch.zeros(n_t, dim, dtype=torch.float32, device=device)
    for b in index.buckets:
        lengths[b.index] = b.mask.sum(1)
        vectors[b.index] = F.normalize(mean_pool(b.emb, b.mask).float(), dim=-1)
    offsets = torch.cat([lengths.new_zeros(1), lengths.cumsum(0)])  # (n_t + 1,)
    tokens = torch.zeros(int(offsets[-1]), dim, dtype=torch.float32, device=device)
    for b in index.buckets:
        rank = b.mask.long().cumsum(1) - 1  # (b, L) position among the unpadded tokens
        pos = offsets[b.index][:, None] + rank  # (b, L)
        tokens[pos[b.mask]] = b.emb[b.mask].float()
    return PackedTokens(tokens, offsets), vectors.cpu().numpy()


def build_first_stage(
    vectors: np.ndarray, kind: str = "flat", hnsw_m: int = 32, ef_construction: int = 80
):
    """A FAISS inner-product index over ``vectors`` (n, d) float32 (see module doc)."""
    import faiss

    if kind not in FIRST_STAGES:
        raise ValueError(f"unknown first stage {kind!r}; valid: {FIRST_STAGES}")
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    dim = vectors.shape[1]
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    else:
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
    index.add(vectors)
    return index


class TwoStageIndex:
    """FAISS first stage + exact re-ranking with ``model``'s scorer (see module doc)."""

    def __init__(
        self,
        model: Any,
        targets: list[str],
        packed: PackedTokens,
        first_stage: Any,
        n_candidates: int,
        kind: str = "flat",
        ef_search: int = 256,
    ):
        if n_candidates < 1:
            raise ValueError(f"n_candidates must be >= 1, got {n_candidates}")
        self.model, self.targets, self.packed = model, list(targets), packed
        self.first_stage, self.kind = first_stage, kind
        self.n_candidates, self.ef_search = int(n_candidates), int(ef_search)
        self.scorer = get_scorer(model.scorer_name).pairwise

    @classmethod
    def build(
        cls,
        model: Any,
        targets: list[str],
        n_candidates: int = 200,
        first_stage: str = "flat",
        hnsw_m: int = 32,
        ef_construction: int = 80,
        ef_search: int = 256,
        index: Any = None,
    ) -> TwoStageIndex:
        """Index ``targets`` (or reuse ``index``, a :class:`uwe.model.uwe_model.TargetIndex` of
        them)."""
        targets = list(targets)
        if index is None:
            index = model.index_targets(targets)
        if list(index.targets) != targets:
            raise ValueError("index was built for a different target list")
        packed, vectors = pack_index(index)
        faiss_index = build_first_stage(vectors, first_stage, hnsw_m, ef_construction)
        return cls(model, targets, packed, faiss_index, n_candidates, first_stage, ef_search)

    def __len__(self) -> int:
        return len(self.targets)

    # -- stages ----------------------------------------------------------------------------
    def _encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token embeddings of one batch of queries: ``(emb (b, Lq, d), mask (b, Lq))``."""
        enc = self.model.encoder
        was_training = enc.training
        enc.eval()
        try:
            with torch.inference_mode():
                emb, mask = enc(texts)
        finally:
            enc.train(was_training)
        return emb.float(), mask

    def candidates(self, q_vectors: np.ndarray, n: int) -> np.ndarray:
        """First stage: ``(b, n)`` int64 target ids by descending cosine (-1 = none found)."""
        if self.kind == "hnsw":
            self.first_stage.hnsw.efSearch = max(self.ef_search, n)
        _, ids = self.first_stage.search(np.ascontiguousarray(q_vectors, dtype=np.float32), n)
        return ids

    def rerank(
        self, emb: torch.Tensor, mask: torch.Tensor, cand: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact scores of candidates ``cand`` (b, n) -> ``(ids, scores)`` (b, n), sorted by
        descending score, ties -> lower target index; missing candidates (-1) score -inf."""
        b, n = cand.shape
        ids = np.sort(cand, axis=1)  # lower index first, so a stable sort breaks ties by index
        scores = np.full((b, n), -np.inf, dtype=np.float32)
        step = max(1, RERANK_PAIRS // max(n, 1))
        for s in range(0, b, step):
            blk = torch.from_numpy(ids[s : s + step]).to(self.packed.tokens.device)  # (c, n)
            c = blk.shape[0]
            flat = blk.reshape(-1).clamp_min(0)  # (c*n,)
            t_emb, t_mask = self.packed.gather(flat)  # (c*n, Lt, d), (c*n, Lt)
            q_emb = emb[s : s + c, None].expand(-1, n, -1, -1).reshape(c * n, *emb.shape[1:])
            q_mask = mask[s : s + c, None].expand(-1, n, -1).reshape(c * n, -1)
            with torch.inference_mode():
                out = self.scorer(
                    q_emb,
                    q_mask,
                    t_emb,
                    t_mask,
                    attention_temperature=self.model.attention_temperature,
                )
            scores[s : s + c] = out.float().reshape(c, n).cpu().numpy()
        scores[ids < 0] = -np.inf
        order = np.argsort(-scores, axis=1, kind="stable")
        return np.take_along_axis(ids, order, 1), np.take_along_axis(scores, order, 1)

    def _ranked(self, queries: list[str], n: int):
        """Yield ``(rows, ids (b, n), scores (b, n))`` per query batch."""
        order = np.argsort(-self.model.encoder.token_lengths(queries), kind="stable")
        bs = self.model.batch_size
        for start in range(0, len(queries), bs):  # longest queries first: little padding
            rows = order[start : start + bs]
            emb, mask = self._encode([queries[i] for i in rows])  # (b, Lq, d), (b, Lq)
            q_vec = F.normalize(mean_pool(emb, mask), dim=-1).cpu().numpy()  # (b, d)
            ids, scores = self.rerank(emb, mask, self.candidates(q_vec, n))
            yield rows, ids, scores

    # -- public API ------------------------------------------------------------------------
    def search(self, queries: list[str], top_k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Top-``top_k`` ``(indices (n_q, k) int64, scores (n_q, k) float32)``, best first."""
        queries = list(queries)
        k = min(top_k, len(self))
        n = min(max(self.n_candidates, k), len(self))
        out_ids = np.full((len(queries), k), -1, dtype=np.int64)
        out_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        for rows, ids, scores in self._ranked(queries, n):
            out_ids[rows], out_scores[rows] = ids[:, :k], scores[:, :k]
        return out_ids, out_scores

    def score_matrix(self, queries: list[str]) -> np.ndarray:
        """``(n_q, n_t)`` float32: exact scores of the candidates, ``-inf`` elsewhere."""
        queries = list(queries)
        n = min(self.n_candidates, len(self))
        out = np.full((len(queries), len(self)), -np.inf, dtype=np.float32)
        if not queries:  # the tokenizer refuses an empty batch
            return out
        for rows, ids, scores in self._ranked(queries, n):
            valid = ids >= 0
            r = np.broadcast_to(np.asarray(rows)[:, None], ids.shape)
            out[r[valid], ids[valid]] = scores[valid]
        return out


class TwoStageModel:
    """A UWE model with two-stage scoring, in the harness contract of
    :mod:`uwe.bench.evaluation`."""

    def __init__(
        self,
        model: Any,
        n_candidates: int = 200,
        first_stage: str = "flat",
        index_fn: Callable[[list[str]], Any] | None = None,
        **kw,
    ):
        """``index_fn(targets)`` supplies the exact :class:`uwe.model.uwe_model.TargetIndex` (e.g.
        from :class:`uwe.infer.index_cache.IndexCache`; default ``model.index_targets``); ``kw``
        go to :meth:`TwoStageIndex.build`."""
        self.model, self.n_candidates, self.first_stage = model, n_candidates, first_stage
        self.index_fn, self.kw = index_fn or model.index_targets, kw
        self.name = f"{getattr(model, 'name', 'uwe')}+{first_stage}{n_candidates}"

    def index_targets(self, targets: list[str]) -> TwoStageIndex:
        return TwoStageIndex.build(
            self.model,
            targets,
            self.n_candidates,
            self.first_stage,
            index=self.index_fn(list(targets)),
            **self.kw,
        )

    def score_index(self, queries: list[str], index: TwoStageIndex) -> np.ndarray:
        return index.score_matrix(queries)

    def score(self, queries: list[str], targets: list[str]) -> np.ndarray:
        return self.score_index(queries, self.index_targets(targets))
