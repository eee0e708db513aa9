"""In-batch sampling over bipartite training graphs (UWE, arXiv 2511.07969, Sec. "Training").

A graph is a table of edges ``(left, right)`` with skills on the left (workbench.md §3). One
batch of graph ``g``:

1. ``B`` distinct left nodes drawn uniformly without replacement (all of them when the graph
   has fewer than ``B``);
2. one neighbour per left node, drawn uniformly among its edges;
3. optionally (``pair_prob > 0``, the S-V graph) the right text becomes the concatenation
   ``"<right> <other right>"`` with a uniformly drawn other right node of the graph, with
   probability ``pair_prob``; its linked lefts are the union of both parts' neighbours. Given
   ``token_length`` (texts -> token counts) and ``pair_max_tokens`` (the encoder's
   ``max_length``), the partner is drawn among the right nodes that keep the pair within
   ``pair_max_tokens`` tokens (no pair when none fits): a truncated partner would otherwise
   bring positives whose text the encoder never sees;
4. optionally (``set_hard_negatives``, :mod:`uwe.train.negatives`) ``h`` extra right items per left
   node, drawn uniformly from its pool of mined hard negatives (a node pool of ``-1`` only adds
   nothing);
5. right items that occur twice are kept once (``dedup_right=True``);
6. ``positive_mask[i, j]`` = left ``i`` is linked in the FULL graph to (a part of) right ``j``,
   so a graph neighbour that lands in the batch is a positive, never a negative.

Every draw comes from the sampler's own ``torch.Generator`` (CPU), so a batch sequence is a
pure function of the seed, and ``state_dict()/load_state_dict()`` resume it exactly.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

PAIR_GRAPHS: tuple[str, ...] = ("sv",)  # graphs whose right texts get sentence-pair augmentation
PAIR_SEPARATOR = " "


@dataclass(frozen=True)
class GraphBatch:
    """One sampled batch. ``right_ids[j]`` = the right node ids whose texts form right ``j``."""

    left_texts: list[str]
    right_texts: list[str]
    positive_mask: torch.Tensor  # (B_l, B_r) bool
    left_ids: list[int]
    right_ids: list[tuple[int, ...]]


class GraphSampler:
    """Sampler for one graph (see module docstring).

    ``edges``: DataFrame with string columns ``left`` and ``right`` (duplicate edges are
    ignored); ``generator``: a CPU ``torch.Generator`` owned by this sampler.
    """

    def __init__(self, edges: pd.DataFrame, batch_size: int, generator: torch.Generator,
                 pair_prob: float = 0.0, dedup_right: bool = True, name: str = "graph",
                 token_length: Callable[[list[str]], np.ndarray] | None = None,
                 pair_max_tokens: int | None = None):
        if batch_size < 1:
            raise ValueError(f"{name}: batch_size must be >= 1, got {batch_size}")
        if not 0.0 <= pair_prob <= 1.0:
            raise ValueError(f"{name}: pair_prob must be in [0, 1], got {pair_prob}")
        for col in ("left", "right"):
            if col not in edges.columns:
                raise ValueError(f"{name}: edges need a {col!r} column, got {list(edges.columns)}")
        if len(edges) == 0:
            raise ValueError(f"{name}: graph has no edges")
        self.name, self.batch_size, self.generator = name, batch_size, generator
        self.pair_prob, self.dedup_right = float(pair_prob), dedup_right
        left_codes, self.left_texts = pd.factorize(edges["left"].astype(str), sort=True)
        right_codes, self.right_texts = pd.factorize(edges["right"].astype(str), sort=True)
        self.left_texts, self.right_texts = list(self.left_texts), list(self.right_texts)
        keys = np.unique(left_codes.astype(np.int64) * len(self.right_texts) + right_codes)
        self._edge_keys = keys  # sorted unique (left * n_right + right)
        lefts, rights = np.divmod(keys, len(self.right_texts))
        self._neighbours = rights  # CSR: neighbours of left k = _neighbours[_offsets[k]:...+1]
        self._offsets = np.searchsorted(lefts, np.arange(len(self.left_texts) + 1))
        self._pair_partners(token_length, pair_max_tokens)
        self._hard: np.ndarray | None = None
        self.hard_count = 0

    def set_hard_negatives(self, pool: np.ndarray, count: int) -> None:
        """Mined pools ``(n_left, P)`` of right ids (``-1`` = none) and how many to add per
        left node of a batch (``count >= 1``)."""
        pool = np.asarray(pool, dtype=np.int64)
        if pool.ndim != 2 or pool.shape[0] != self.n_left:
            raise ValueError(f"{self.name}: hard-negative pool must be (n_left={self.n_left}, P), "
                             f"got {pool.shape}")
        if count < 1:
            raise ValueError(f"{self.name}: hard negatives per left must be >= 1, got {count}")
        if pool.size and (pool.max() >= self.n_right or pool.min() < -1):
            raise ValueError(f"{self.name}: hard-negative pool holds ids outside the graph")
        self._hard, self.hard_count = pool, int(count)

    def _pair_partners(self, token_length, max_tokens: int | None) -> None:
        """Right nodes sorted by token length, so the partners that keep a pair within
        ``max_tokens`` (no part of it truncated away) are a prefix ``_by_length[:k]``."""
        self._by_length = np.arange(self.n_right)
        self._room = None
        if self.pair_prob == 0 or token_length is None or max_tokens is None:
            return
        n_special = int(token_length([""])[0])  # [CLS] + [SEP] once per text
        lengths = np.asarray(token_length(self.right_texts), np.int64) - n_special
        self._by_length = np.argsort(lengths, kind="stable")
        self._sorted_lengths = lengths[self._by_length]
        self._room = max_tokens - n_special - lengths  # tokens left for a partner, per right

    @property
    def n_edges(self) -> int:
        return len(self._edge_keys)

    @property
    def n_left(self) -> int:
        return len(self.left_texts)

    @property
    def edge_keys(self) -> np.ndarray:
        """The graph's edges as sorted unique keys ``left * n_right + right`` (read-only)."""
        view = self._edge_keys.view()
        view.flags.writeable = False
        return view

    def adjacency(self) -> tuple[np.ndarray, np.ndarray]:
        """``(offsets, neighbours)``, CSR: the rights of left ``k`` are
        ``neighbours[offsets[k]:offsets[k + 1]]`` (read-only views)."""
        out = []
        for arr in (self._offsets, self._neighbours):
            view = arr.view()
            view.flags.writeable = False
            out.append(view)
        return out[0], out[1]

    @property
    def n_right(self) -> int:
        return len(self.right_texts)

    def is_edge(self, left_ids: np.ndarray, right_ids: np.ndarray) -> np.ndarray:
        """Elementwise edge membership of broadcast ``left_ids`` x ``right_ids`` (bool)."""
        keys = np.asarray(left_ids, np.int64) * self.n_right + np.asarray(right_ids, np.int64)
        pos = np.searchsorted(self._edge_keys, keys).clip(max=len(self._edge_keys) - 1)
        return self._edge_keys[pos] == keys

    def positive_mask(self, left_ids: Iterable[int], right_ids: Iterable[tuple[int, ...]]
                      ) -> torch.Tensor:
        """``(B_l, B_r)`` bool: left ``i`` is linked to any part of right item ``j``."""
        left = np.asarray(list(left_ids), np.int64)[:, None]  # (B_l, 1)
        parts = list(right_ids)
        width = max((len(p) for p in parts), default=1)
        grid = np.full((len(parts), width), -1, np.int64)  # (B_r, P), -1 = no part
        for j, p in enumerate(parts):
            grid[j, : len(p)] = p
        mask = np.zeros((left.shape[0], len(parts)), dtype=bool)  # (B_l, B_r)
        for k in range(width):
            col = grid[:, k][None, :]  # (1, B_r)
            mask |= (col >= 0) & self.is_edge(left, np.maximum(col, 0))
        return torch.from_numpy(mask)

    def sample(self) -> GraphBatch:
        """Draw one batch (module docstring); advances this sampler's generator."""
        g = self.generator
        b = min(self.batch_size, self.n_left)
        left = torch.randperm(self.n_left, generator=g)[:b].numpy()  # (B,)
        degree = self._offsets[left + 1] - self._offsets[left]  # (B,)
        u = torch.rand(b, generator=g, dtype=torch.float64).numpy()  # (B,)
        pick = np.minimum((u * degree).astype(np.int64), degree - 1)  # (B,)
        right = self._neighbours[self._offsets[left] + pick]  # (B,)
        items: list[tuple[int, ...]] = [(int(r),) for r in right]
        if self.pair_prob > 0:
            pair = torch.rand(b, generator=g, dtype=torch.float64).numpy() < self.pair_prob
            v = torch.rand(b, generator=g, dtype=torch.float64).numpy()  # (B,)
            n_fit = np.full(b, self.n_right) if self._room is None else np.searchsorted(
                self._sorted_lengths, self._room[right], side="right")  # (B,) partners that fit
            other = self._by_length[np.minimum((v * n_fit).astype(np.int64),
                                               np.maximum(n_fit - 1, 0))]  # (B,)
            items = [(int(r), int(o)) if p and k > 0 and o != r else (int(r),)
                     for r, o, p, k in zip(right, other, pair, n_fit, strict=True)]
        if self._hard is not None:
            pool = self._hard[left]  # (B, P)
            n = (pool >= 0).sum(1)  # (B,) pools are filled from the front
            u = torch.rand(b, self.hard_count, generator=g, dtype=torch.float64).numpy()
            pick = np.minimum((u * n[:, None]).astype(np.int64), np.maximum(n - 1, 0)[:, None])
            hard = np.take_along_axis(pool, pick, 1)  # (B, h), -1 where the pool is empty
            items += [(int(x),) for x in hard.reshape(-1) if x >= 0]
        if self.dedup_right:
            items = list(dict.fromkeys(items))
        texts = [PAIR_SEPARATOR.join(self.right_texts[k] for k in it) for it in items]
        return GraphBatch(
            left_texts=[self.left_texts[k] for k in left],
            right_texts=texts,
            positive_mask=self.positive_mask(left, items),
            left_ids=[int(k) for k in left],
            right_ids=items,
        )


def graph_seed(seed: int, name: str) -> int:
    """Seed of graph ``name``'s generator: stable across runs, graph sets and orderings."""
    return int(np.random.SeedSequence([int(seed), zlib.crc32(name.encode())]).generate_state(1)[0])


class MultiGraphBatcher:
    """One :class:`GraphSampler` per graph, each with its own generator seeded by
    :func:`graph_seed`; ``sample()`` -> ``{name: GraphBatch}`` in the graphs' order.
    ``batch_size``: one size for every graph, or a mapping graph -> size.

    ``dedup_right=False`` keeps batch pairs aligned (right ``i`` is left ``i``'s sample), which
    the one-to-one loss variants need.
    """

    def __init__(self, edges: Mapping[str, pd.DataFrame], batch_size: int | Mapping[str, int],
                 seed: int,
                 sentence_pair_prob: float = 0.0, pair_graphs: Iterable[str] = PAIR_GRAPHS,
                 dedup_right: bool = True,
                 token_length: Callable[[list[str]], np.ndarray] | None = None,
                 pair_max_tokens: int | None = None):
        if not edges:
            raise ValueError("MultiGraphBatcher needs at least one graph")
        pair_graphs = set(pair_graphs)
        self.seed = int(seed)
        self.samplers: dict[str, GraphSampler] = {}
        for name, df in edges.items():
            gen = torch.Generator().manual_seed(graph_seed(seed, name))
            prob = sentence_pair_prob if name in pair_graphs else 0.0
            size = batch_size.get(name) if isinstance(batch_size, Mapping) else batch_size
            if size is None:
                raise ValueError(f"no batch size given for graph {name!r}")
            self.samplers[name] = GraphSampler(df, size, gen, pair_prob=prob,
                                               dedup_right=dedup_right, name=name,
                                               token_length=token_length,
                                               pair_max_tokens=pair_max_tokens)

    @classmethod
    def from_root(cls, names: Iterable[str], root: str | Path, batch_size: int | Mapping[str, int],
                  seed: int,
                  **kwargs) -> MultiGraphBatcher:
        """Read ``{root}/graphs/{name}.parquet`` for each name; a missing or empty file raises
        (FileNotFoundError / ValueError naming the file)."""
        from uwe.data.tasks import load_graph

        edges = {}
        for name in names:
            path = Path(root) / "graphs" / f"{name}.parquet"
            if not path.is_file():
                raise FileNotFoundError(f"training graph {name!r} not found: {path} (run the "
                                        f"curate stage, or drop {name!r} from train.graphs)")
            edges[name] = load_graph(name, root)
        return cls(edges, batch_size, seed, **kwargs)

    def sample(self) -> dict[str, GraphBatch]:
        return {name: s.sample() for name, s in self.samplers.items()}

    def edge_counts(self) -> dict[str, int]:
        return {name: s.n_edges for name, s in self.samplers.items()}

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Generator states (uint8 tensors), enough to resume the batch sequence exactly."""
        return {name: s.generator.get_state() for name, s in self.samplers.items()}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        missing = sorted(set(self.samplers) - set(state))
        extra = sorted(set(state) - set(self.samplers))
        if missing or extra:
            raise ValueError(f"sampler state mismatch: missing {missing}, unexpected {extra}")
        for name, s in self.samplers.items():
            s.generator.set_state(state[name])
