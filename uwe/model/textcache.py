"""A bounded text -> embedding cache for evaluating a frozen model.

The 21 WorkBench test sets of the three families hold ~372k query and target texts but only
~113k distinct ones: ESCO skill labels are the targets of job2skill, skill_norm, skill_sim and
the extraction tasks and the queries of skill2job; job titles are queries of job2skill and
targets of skill2job. A model that keeps the embedding of each text it has encoded encodes each
distinct text once per evaluation run.

The cache is filled in first-come order and never evicts: once ``max_mb`` is reached new texts
are encoded but not kept, so what is cached (and so every score) depends only on the order of
the calls, not on timing. Only for frozen weights: a model that is still training must not use
one (stale embeddings), which is why every model leaves it off by default.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any


class TextCache:
    """``text -> value`` (a NumPy row or a torch tensor), at most ``max_mb`` MiB of values."""

    def __init__(self, max_mb: float = 2048):
        if not max_mb > 0:
            raise ValueError(f"text cache size must be > 0 MiB, got {max_mb}")
        self.max_bytes = int(max_mb * 2**20)
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self._items: dict[str, Any] = {}

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:  # an empty cache is still a cache
        return True

    def __contains__(self, text: str) -> bool:
        return text in self._items

    @staticmethod
    def _size(value: Any) -> int:
        if hasattr(value, "nbytes"):  # numpy
            return int(value.nbytes)
        return int(value.numel() * value.element_size())  # torch

    def missing(self, texts: list[str]) -> list[str]:
        """Distinct texts of ``texts`` not in the cache, in first-seen order (counts hits and
        misses per distinct text)."""
        distinct = list(dict.fromkeys(texts))
        out = [t for t in distinct if t not in self._items]
        self.misses += len(out)
        self.hits += len(distinct) - len(out)
        return out

    def get(self, text: str) -> Any:
        return self._items[text]

    def lookup(self, texts: list[str], encode: Callable[[list[str]], Iterable[Any]]) -> list[Any]:
        """One value per text of ``texts``, in order. The distinct texts the cache lacks go
        once through ``encode`` (``missing -> values`` in the same order) and are kept while
        the cache has room; the others come from the cache."""
        missing = self.missing(texts)
        fresh = dict(zip(missing, encode(missing), strict=True)) if missing else {}
        for text, value in fresh.items():
            self.put(text, value)
        return [fresh[t] if t in fresh else self._items[t] for t in texts]

    def put(self, text: str, value: Any) -> bool:
        """Keep ``value`` for ``text`` unless the cache is full; True when kept."""
        if text in self._items:
            return True
        size = self._size(value)
        if self.nbytes + size > self.max_bytes:
            return False
        self._items[text] = value
        self.nbytes += size
        return True

    def stats(self) -> dict[str, float]:
        return {"texts": len(self), "mb": round(self.nbytes / 2**20, 1), "hits": self.hits,
                "misses": self.misses}

    def __repr__(self) -> str:
        s = self.stats()
        return (f"TextCache({s['texts']} texts, {s['mb']} of {self.max_bytes / 2**20:.0f} MiB, "
                f"{s['hits']} hits, {s['misses']} misses)")
