"""One WorkBench ranking set: queries, a target space and each query's positive targets.

:class:`RankingDataset` is what the curation stage writes (:mod:`uwe.data.curation`), what
:func:`uwe.data.tasks.load_task` reads back and what the harness (:mod:`uwe.bench.evaluation`)
scores; it validates itself on construction, so a malformed set is one error naming it.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class RankingDataset:
    """Queries x target space with positive target indices per query.

    ``__post_init__`` validates (ValueError naming ``family/name/split``): non-empty target space,
    one positive list per query, every index an int in range (the error names the query row),
    unique non-empty query and target strings, sorted duplicate-free positives. Use
    :meth:`from_rows` to build one from raw rows: it strips texts, merges duplicate query
    strings (positives unioned) and collapses duplicate targets (indices remapped).
    Queries with no positives are allowed (metrics skip them); see ``n_without_positives``.
    """

    name: str
    family: str
    split: str
    queries: list[str]
    targets: list[str]
    positives: list[list[int]]
    target_ids: list[str] | None = None

    def __post_init__(self) -> None:
        where = f"{self.family}/{self.name}/{self.split}"
        if len(self.targets) == 0:
            raise ValueError(f"{where}: empty target space")
        if len(self.positives) != len(self.queries):
            raise ValueError(
                f"{where}: {len(self.queries)} queries but {len(self.positives)} positive lists"
            )
        if self.target_ids is not None and len(self.target_ids) != len(self.targets):
            raise ValueError(
                f"{where}: {len(self.targets)} targets but {len(self.target_ids)} target_ids"
            )
        _check_unique_texts(self.queries, "query", where)
        _check_unique_texts(self.targets, "target", where)
        n = len(self.targets)
        for row, pos in enumerate(self.positives):
            prev = -1
            for idx in pos:
                if isinstance(idx, bool) or not isinstance(idx, int):
                    raise ValueError(f"{where}: query row {row} ({self.queries[row]!r}): positive "
                                     f"index {idx!r} is not an int")
                if idx < 0 or idx >= n:
                    raise ValueError(f"{where}: query row {row} ({self.queries[row]!r}): positive "
                                     f"index {idx} out of range [0, {n})")
                if idx <= prev:
                    raise ValueError(f"{where}: query row {row} ({self.queries[row]!r}): "
                                     f"positives must be sorted and unique, got {list(pos)}")
                prev = idx

    @classmethod
    def from_rows(cls, name: str, family: str, split: str, queries: Iterable[str],
                  positives: Iterable[Iterable[int]], targets: Iterable[str],
                  target_ids: Iterable[str] | None = None) -> RankingDataset:
        """Build from raw rows: strip, merge duplicate queries, collapse duplicate targets.

        ``positives[i]`` indexes the raw ``targets`` list. Query order = first occurrence; the
        target order = first occurrence (a collapsed duplicate keeps the first target_id).
        """
        where = f"{family}/{name}/{split}"
        raw_targets = [_clean(t, "target", i, where) for i, t in enumerate(targets)]
        raw_ids = None if target_ids is None else [str(x) for x in target_ids]
        if raw_ids is not None and len(raw_ids) != len(raw_targets):
            raise ValueError(f"{where}: {len(raw_targets)} targets but {len(raw_ids)} target_ids")
        if not raw_targets:
            raise ValueError(f"{where}: empty target space")
        t_index: dict[str, int] = {}
        remap: list[int] = []
        out_targets: list[str] = []
        out_ids: list[str] | None = None if raw_ids is None else []
        for i, t in enumerate(raw_targets):
            j = t_index.get(t)
            if j is None:
                j = t_index[t] = len(out_targets)
                out_targets.append(t)
                if out_ids is not None:
                    out_ids.append(raw_ids[i])
            remap.append(j)
        q_index: dict[str, int] = {}
        out_queries: list[str] = []
        out_pos: list[set[int]] = []
        queries = list(queries)
        positives = list(positives)
        if len(queries) != len(positives):
            raise ValueError(f"{where}: {len(queries)} queries but {len(positives)} positive lists")
        for row, (q, pos) in enumerate(zip(queries, positives, strict=True)):
            q = _clean(q, "query", row, where)
            mapped = set()
            for idx in pos:
                try:
                    if isinstance(idx, bool):
                        raise TypeError
                    k = operator.index(idx)
                except TypeError:
                    raise ValueError(f"{where}: query row {row} ({q!r}): positive index {idx!r} "
                                     f"is not an int") from None
                if k < 0 or k >= len(raw_targets):
                    raise ValueError(f"{where}: query row {row} ({q!r}): positive index {k} out "
                                     f"of range [0, {len(raw_targets)})")
                mapped.add(remap[k])
            j = q_index.get(q)
            if j is None:
                q_index[q] = len(out_queries)
                out_queries.append(q)
                out_pos.append(mapped)
            else:
                out_pos[j] |= mapped
        return cls(name=name, family=family, split=split, queries=out_queries,
                   targets=out_targets, positives=[sorted(p) for p in out_pos],
                   target_ids=out_ids)

    @property
    def n_queries(self) -> int:
        return len(self.queries)

    @property
    def n_targets(self) -> int:
        return len(self.targets)

    @property
    def n_positives(self) -> int:
        """Number of (query, positive) pairs."""
        return sum(len(p) for p in self.positives)

    @property
    def n_without_positives(self) -> int:
        return sum(1 for p in self.positives if not p)

    def summary(self) -> dict[str, int]:
        return {"n_queries": self.n_queries, "n_targets": self.n_targets,
                "n_positives": self.n_positives,
                "n_queries_without_positives": self.n_without_positives}


def _clean(text: object, kind: str, row: int, where: str) -> str:
    if not isinstance(text, str):
        raise ValueError(f"{where}: {kind} row {row} is not a string: {text!r}")
    text = text.strip()
    if not text:
        raise ValueError(f"{where}: {kind} row {row} is empty")
    return text


def _check_unique_texts(texts: Sequence[str], kind: str, where: str) -> None:
    seen: dict[str, int] = {}
    for i, t in enumerate(texts):
        if not isinstance(t, str) or not t.strip():
            raise ValueError(f"{where}: {kind} row {i} is empty or not a string: {t!r}")
        if t in seen:
            raise ValueError(f"{where}: duplicate {kind} {t!r} at rows {seen[t]} and {i} "
                             f"(build with RankingDataset.from_rows to merge duplicates)")
        seen[t] = i
