"""Seeded, stable entity splits and the seeded sub-sampling used by the smoke profile.

Every random choice here is a *hash ranking*: an entity's rank is
``sha256(f"{seed}|{salt}|{key}")``, so a split depends only on the seed, a salt naming the
purpose, and the entity's own id -- not on the input order, the Python / numpy version, or
which other entities exist (adding an entity never moves another one across splits, except at
the cut points of its stratum).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence

from uwe.data.dataset import RankingDataset

SPLIT_NAMES: tuple[str, str, str] = ("train", "val", "test")


def hash_key(key: str, seed: int, salt: str) -> str:
    """Stable pseudo-random sort key of ``key`` for (``seed``, ``salt``)."""
    return hashlib.sha256(f"{seed}|{salt}|{key}".encode()).hexdigest()


def check_fractions(fractions: Sequence[float], what: str) -> tuple[float, float, float]:
    """Validate (train, val, test) fractions: three numbers >= 0 summing to 1, val and test > 0."""
    fr = tuple(float(x) for x in fractions)
    if len(fr) != 3:
        raise ValueError(f"{what}: expected 3 fractions (train, val, test), got {fractions!r}")
    if any(x < 0 for x in fr) or abs(sum(fr) - 1.0) > 1e-6:
        raise ValueError(f"{what}: fractions must be >= 0 and sum to 1, got {fractions!r}")
    if fr[1] <= 0 or fr[2] <= 0:
        raise ValueError(f"{what}: val and test fractions must be > 0, got {fractions!r}")
    return fr  # type: ignore[return-value]


def split_entities(ids: Iterable[str], fractions: Sequence[float], seed: int, salt: str,
                   strata: Mapping[str, Hashable] | None = None) -> dict[str, str]:
    """Assign each id to train / val / test, stratified by ``strata[id]`` (if given).

    Inside each stratum the ids are sorted by :func:`hash_key`; the first
    ``round(n * f_train)`` go to train, up to ``round(n * (f_train + f_val))`` to val, the rest
    to test.
    """
    fr = check_fractions(fractions, salt)
    groups: dict[Hashable, list[str]] = defaultdict(list)
    for i in ids:
        groups[strata[i] if strata is not None else None].append(i)
    out: dict[str, str] = {}
    for members in groups.values():
        ranked = sorted(set(members), key=lambda x: hash_key(x, seed, salt))
        n = len(ranked)
        cut1 = round(n * fr[0])
        cut2 = round(n * (fr[0] + fr[1]))
        for k, x in enumerate(ranked):
            out[x] = "train" if k < cut1 else ("val" if k < cut2 else "test")
    return out


def sample_keys(keys: Sequence[str], k: int, seed: int, salt: str) -> list[int]:
    """Indices of the ``k`` keys with the smallest hash rank, in increasing index order."""
    if k >= len(keys):
        return list(range(len(keys)))
    ranked = sorted(range(len(keys)), key=lambda i: (hash_key(keys[i], seed, salt), i))
    return sorted(ranked[:k])


def cap_dataset(ds: RankingDataset, max_queries: int | None, max_targets: int | None,
                seed: int) -> RankingDataset:
    """Seeded subset for the smoke profile.

    Keeps ``max_queries`` queries (hash-ranked sample) and a target space made of every positive
    of the kept queries, filled up to ``max_targets`` with a hash-ranked sample of the other
    targets (more than ``max_targets`` when the positives alone exceed it). Query and target
    order are preserved; positive indices are remapped.
    """
    salt = f"{ds.family}/{ds.name}/{ds.split}"
    q_idx = list(range(ds.n_queries))
    if max_queries is not None:
        if max_queries < 1:
            raise ValueError(f"max_queries must be >= 1, got {max_queries}")
        q_idx = sample_keys(ds.queries, max_queries, seed, "q:" + salt)
    positives = [ds.positives[i] for i in q_idx]
    t_keep = set(range(ds.n_targets))
    if max_targets is not None:
        if max_targets < 1:
            raise ValueError(f"max_targets must be >= 1, got {max_targets}")
        t_keep = {t for p in positives for t in p}
        room = max_targets - len(t_keep)
        if room > 0:
            others = [t for t in range(ds.n_targets) if t not in t_keep]
            pick = sample_keys([ds.targets[t] for t in others], room, seed, "t:" + salt)
            t_keep |= {others[j] for j in pick}
    t_order = sorted(t_keep)
    remap = {t: j for j, t in enumerate(t_order)}
    return RankingDataset(
        name=ds.name, family=ds.family, split=ds.split,
        queries=[ds.queries[i] for i in q_idx],
        targets=[ds.targets[t] for t in t_order],
        positives=[[remap[t] for t in p] for p in positives],
        target_ids=None if ds.target_ids is None else [ds.target_ids[t] for t in t_order],
    )
