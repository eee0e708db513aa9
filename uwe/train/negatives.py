"""Hard negatives mined once from the untuned model (``train.hard_negatives``).

The paper lists their absence as a limitation; sentence-transformers' ``mine_hard_negatives``
is the field's usual tool, but it mines per (anchor, positive) pair over a flat corpus, while
UWE's graphs are many-to-many and the loss already reads positives from the whole graph, so
mining here is per left node over the graph's right nodes:

* every left and right text of a graph is embedded once by the model *before training* (the
  pretrained backbone, mean-pooled and L2-normalised; with ``frozen_layers`` through the
  cached bottom, the same numbers), cosine similarities are computed in left chunks, the
  left node's graph neighbours are excluded, and its ``pool`` most similar right nodes are
  kept (``-1`` pads a left node with fewer candidates);
* at each step :class:`uwe.core.batching.GraphSampler` adds, for every left node of the batch,
  ``hard_negatives`` right nodes drawn uniformly from its pool as extra right items of the
  batch. A mined node that is linked to another left node of the batch is a positive there
  (the positive mask is always read from the full graph), never a false negative of a linked
  pair.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

logger = logging.getLogger(__name__)


def embed_mean(encode: Callable, token_lengths: Callable, texts: list[str],
               batch_size: int = 256) -> np.ndarray:
    """Mean-pooled, L2-normalised embeddings ``(n, d)`` float32 of ``texts`` through the
    ``encode(texts) -> (emb, mask)`` forward, in equal-length batches (no padding)."""
    from uwe.core.lengths import length_groups
    from uwe.core.scoring import mean_pool

    out = None
    with torch.no_grad():
        for idx in length_groups(token_lengths(texts), batch_size):
            emb, mask = encode([texts[i] for i in idx])
            v = torch.nn.functional.normalize(mean_pool(emb.float(), mask), dim=-1)
            if out is None:
                out = np.zeros((len(texts), v.shape[1]), dtype=np.float32)
            out[idx] = v.cpu().numpy()
    return out if out is not None else np.zeros((0, 1), dtype=np.float32)


def mine_pool(left: np.ndarray, right: np.ndarray, offsets: np.ndarray, neighbours: np.ndarray,
              pool: int, chunk: int = 1024) -> np.ndarray:
    """For each left row of ``left`` ``(n_l, d)``, the ``pool`` right rows of ``right``
    ``(n_r, d)`` with the highest cosine that are not its neighbours (CSR ``offsets`` /
    ``neighbours``), best first -> ``(n_l, pool)`` int64, ``-1`` where fewer exist."""
    n_l, n_r = left.shape[0], right.shape[0]
    k = min(pool, n_r)
    out = np.full((n_l, pool), -1, dtype=np.int64)
    if k == 0:
        return out
    for s in range(0, n_l, chunk):
        e = min(n_l, s + chunk)
        sims = left[s:e] @ right.T  # (c, n_r)
        rows = np.repeat(np.arange(e - s), np.diff(offsets[s : e + 1]))
        sims[rows, neighbours[offsets[s] : offsets[e]]] = -np.inf  # positives are no negatives
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]  # (c, k)
        order = np.argsort(-np.take_along_axis(sims, top, 1), axis=1, kind="stable")
        top = np.take_along_axis(top, order, 1)
        ok = np.isfinite(np.take_along_axis(sims, top, 1))
        out[s:e, :k] = np.where(ok, top, -1)
    return out


def mine_graphs(samplers: dict, encode: Callable, token_lengths: Callable, pool: int,
                model_key: str | None = None, cache_dir: str | Path | None = None
                ) -> dict[str, np.ndarray]:
    """``{graph: (n_left, pool) int64}`` for every sampler (:class:`GraphSampler`); read from
    / stored in ``cache_dir`` when ``model_key`` names the model (``""`` dir: memory only)."""
    t0 = time.perf_counter()
    out, hits = {}, []
    for name, s in samplers.items():
        path = None
        if model_key is not None and cache_dir != "":
            from uwe.train.frozen import default_cache_dir

            h = hashlib.sha256(f"hardneg-v1|{model_key}|{pool}|".encode())
            h.update(s.edge_keys.tobytes())
            h.update("\0".join(s.left_texts).encode() + b"\1" + "\0".join(s.right_texts).encode())
            folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
            path = folder / f"hardneg-{name}-{h.hexdigest()[:24]}.npy"
            if path.is_file():
                try:
                    arr = np.load(path, allow_pickle=False)
                    if arr.shape == (s.n_left, pool) and arr.dtype == np.int64:
                        out[name] = arr
                        hits.append(name)
                        continue
                except (OSError, ValueError) as err:
                    logger.warning("hard-negative pool %s unreadable (%s): mined again", path, err)
        left = embed_mean(encode, token_lengths, s.left_texts)
        right = embed_mean(encode, token_lengths, s.right_texts)
        out[name] = mine_pool(left, right, *s.adjacency(), pool)
        if path is not None:
            try:
                from uwe.io import atomic_path

                with atomic_path(path) as tmp, open(tmp, "wb") as fh:
                    np.save(fh, out[name], allow_pickle=False)
            except OSError as err:
                logger.warning("hard-negative pool not stored in %s: %s", path.parent, err)
    logger.info("hard negatives: pools of %d for %s (%s from disk) in %.0f s", pool, list(out),
                hits or "none", time.perf_counter() - t0)
    return out
