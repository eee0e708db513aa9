"""Leakage audit between benchmark sets and training graphs (workbench.md section 4).

Two counts per (family, task, split), on normalised texts (:func:`uwe.data.tasks.normalize_text`):

* ``query_text_overlap`` -- held-out texts that occur as a text (either side) of a training
  graph. The held-out side (``checked``) is the queries, except for ``skill2job`` where the
  held-out entities are the targets (the test occupations). For ``skill_sim_esco`` the query
  texts (skills) are checked against the ``ss`` graph only: skills are the shared target side of
  every graph, what is held out there is the related-skill pairs.
* ``pair_overlap`` -- (query, positive) pairs that occur as an edge of any training graph, in
  either orientation.

:func:`drop_leaking_edges` removes, before anything is written, every graph edge that has a text
equal to a ``heldout`` val/test held-out text (``ss`` also: the skill_sim query skills) or that
is a ``heldout`` val/test pair; :func:`audit_files` then recomputes both counts from the written
parquet files, independently of the in-memory sets. ``heldout`` counts must be 0; ``full`` and
``zeroshot`` counts are reported as they are (zeroshot: for information).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from uwe.data import tasks as task_lib
from uwe.data.dataset import RankingDataset
from uwe.data.tasks import GRAPHS, normalize_text

#: task -> (held-out side checked, graphs the texts are checked against; None = all graphs)
_SIDE: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "skill2job": ("targets", None),
    "skill_sim_esco": ("queries", ("ss",)),
}


def checked_side(task: str) -> tuple[str, tuple[str, ...] | None]:
    """(``"queries"`` | ``"targets"``, graphs checked or None for all) of a task."""
    return _SIDE.get(task, ("queries", None))


def held_out_texts(ds: RankingDataset) -> list[str]:
    side, _ = checked_side(ds.name)
    return list(ds.targets) if side == "targets" else list(ds.queries)


def positive_pairs(ds: RankingDataset) -> Iterable[tuple[str, str]]:
    for q, pos in zip(ds.queries, ds.positives, strict=True):
        for p in pos:
            yield q, ds.targets[p]


Edges = list[tuple[str, str]]


class _Normalizer(dict):
    """Memoised :func:`normalize_text` (texts repeat a lot across edges and pairs)."""

    def __missing__(self, text: str) -> str:
        value = self[text] = normalize_text(text)
        return value


def leak_keys(datasets: Iterable[RankingDataset]) -> tuple[dict[str | None, set[str]],
                                                           set[tuple[str, str]]]:
    """Normalised held-out texts (key None = checked against every graph, key g = graph g only)
    and held-out (query, positive) pairs (both orientations) of ``datasets``."""
    norm = _Normalizer()
    texts: dict[str | None, set[str]] = {None: set()}
    pairs: set[tuple[str, str]] = set()
    for ds in datasets:
        _, graphs = checked_side(ds.name)
        for g in graphs or (None,):
            texts.setdefault(g, set()).update(norm[t] for t in held_out_texts(ds))
        for q, p in positive_pairs(ds):
            nq, np_ = norm[q], norm[p]
            pairs.add((nq, np_))
            pairs.add((np_, nq))
    return texts, pairs


def drop_leaking_edges(name: str, edges: Edges, texts: Mapping[str | None, set[str]],
                       pairs: set[tuple[str, str]]) -> tuple[Edges, int]:
    """``edges`` minus every edge with a held-out text or that is a held-out pair."""
    banned = set(texts.get(None, set())) | set(texts.get(name, set()))
    norm = _Normalizer()
    kept = []
    for left, right in edges:
        nl, nr = norm[left], norm[right]
        if nl in banned or nr in banned or (nl, nr) in pairs:
            continue
        kept.append((left, right))
    return kept, len(edges) - len(kept)


class _GraphIndex:
    """Normalised texts and edges (both orientations) of training graphs, as integer ids."""

    def __init__(self, graphs: Mapping[str, Edges]):
        self.norm = _Normalizer()
        self.vocab: dict[str, int] = {}
        self.texts: dict[str, set[int]] = {}
        chunks = []
        for name, edges in graphs.items():
            ids = {}
            for t in {t for e in edges for t in e}:
                ids[t] = self.vocab.setdefault(self.norm[t], len(self.vocab))
            left = np.fromiter((ids[a] for a, _ in edges), np.int64, len(edges))
            right = np.fromiter((ids[b] for _, b in edges), np.int64, len(edges))
            self.texts[name] = set(ids.values())
            chunks.append((left, right))
        self.m = len(self.vocab) + 1
        keys = [a * self.m + b for a, b in chunks] + [b * self.m + a for a, b in chunks]
        edges_sorted = np.sort(np.concatenate(keys)) if keys else np.zeros(0, np.int64)
        if len(edges_sorted):
            keep = np.ones(len(edges_sorted), bool)
            keep[1:] = edges_sorted[1:] != edges_sorted[:-1]
            edges_sorted = edges_sorted[keep]
        self.edges = edges_sorted

    def _ids(self, texts: Iterable[str]) -> set[int]:
        ids = {self.vocab.get(self.norm[t], -1) for t in texts}
        ids.discard(-1)
        return ids

    def text_overlap(self, texts: Iterable[str], graphs: Iterable[str]) -> dict[str, int]:
        ids = self._ids(texts)
        return {g: len(ids & self.texts[g]) for g in graphs if g in self.texts}

    def n_texts_in(self, texts: Iterable[str], graphs: Iterable[str]) -> int:
        ids = self._ids(texts)
        return sum(1 for i in ids if any(i in self.texts.get(g, ()) for g in graphs))

    def pair_overlap(self, ds: RankingDataset) -> int:
        qid = np.array([self.vocab.get(self.norm[q], -1) for q in ds.queries], np.int64)
        tid = np.array([self.vocab.get(self.norm[t], -1) for t in ds.targets], np.int64)
        counts = np.fromiter((len(p) for p in ds.positives), np.int64, len(ds.positives))
        if counts.sum() == 0 or len(self.edges) == 0:
            return 0
        flat = np.fromiter((i for p in ds.positives for i in p), np.int64, int(counts.sum()))
        a = np.repeat(qid, counts)
        b = tid[flat]
        ok = (a >= 0) & (b >= 0)
        keys = a[ok] * self.m + b[ok]
        pos = np.searchsorted(self.edges, keys)
        pos = np.minimum(pos, len(self.edges) - 1)
        return int((self.edges[pos] == keys).sum())


def audit_datasets(datasets: Iterable[RankingDataset], graphs: Mapping[str, Edges]) -> dict:
    """Leakage counts of ``datasets`` against ``graphs``: {family: {task: {split: {...}}}}."""
    index = _GraphIndex(graphs)
    out: dict = {}
    for ds in datasets:
        side, only = checked_side(ds.name)
        checked_graphs = list(only) if only else [g for g in GRAPHS if g in graphs]
        texts = held_out_texts(ds)
        out.setdefault(ds.family, {}).setdefault(ds.name, {})[ds.split] = {
            "checked": side,
            "graphs_checked": checked_graphs,
            "n_checked_texts": len({index.norm[t] for t in texts}),
            "query_text_overlap": index.n_texts_in(texts, checked_graphs),
            "query_text_overlap_by_graph": index.text_overlap(texts, checked_graphs),
            "n_pairs": ds.n_positives,
            "pair_overlap": index.pair_overlap(ds),
        }
    return out


def read_graph_edges(path: str | Path) -> Edges:
    """Edges of one graph parquet file as a list of (left, right) tuples."""
    table = pq.read_table(path, columns=["left", "right"])
    return list(zip(table.column("left").to_pylist(), table.column("right").to_pylist(),
                    strict=True))


def audit_files(root: str | Path, families: Iterable[str] = task_lib.FAMILIES) -> dict:
    """Recompute the leakage audit from the files written under ``root`` (tasks + graphs)."""
    root = Path(root)
    graphs = {}
    for g in GRAPHS:
        path = root / "graphs" / f"{g}.parquet"
        if path.is_file():
            graphs[g] = read_graph_edges(path)
    datasets = []
    for family in families:
        for name in task_lib.list_tasks(family, root=root):
            for split in task_lib.list_splits(name, family, root):
                datasets.append(task_lib.load_task(name, family, split, root))
    result = audit_datasets(datasets, graphs)
    held = result.get("heldout", {})
    total = sum(v["query_text_overlap"] + v["pair_overlap"]
                for splits in held.values() for v in splits.values())
    result["heldout_total"] = int(total)
    result["heldout_ok"] = total == 0
    return result


def heldout_violations(audit: Mapping) -> list[str]:
    """``family/task/split: ...`` lines for every non-zero heldout count."""
    bad = []
    for task, splits in audit.get("heldout", {}).items():
        for split, v in splits.items():
            if v["query_text_overlap"] or v["pair_overlap"]:
                bad.append(f"heldout/{task}/{split}: query_text_overlap="
                           f"{v['query_text_overlap']} ({v['checked']}), "
                           f"pair_overlap={v['pair_overlap']}")
    return bad
