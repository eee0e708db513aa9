"""WorkBench task registry and loader API.

Every benchmark set is a :class:`uwe.data.dataset.RankingDataset`: a list of query texts, a
target space (list of texts) and, per query, the indices of its positive targets. The curation stage
(:mod:`uwe.data.curation`) writes them as parquet files::

    {root}/tasks/{family}/{task}/{split}/queries.parquet   query: str, positives: list<int32>
    {root}/tasks/{family}/{task}/{split}/targets.parquet   target: str (+ optional target_id: str)
    {root}/graphs/{name}.parquet                           left: str, right: str

Families (see ../shared/docs/workbench.md, the spec beside the repository):

* ``full``     -- WorkRB definitions, comparable with the paper (transductive for UWE);
* ``heldout``  -- entity-disjoint splits, what UWE is judged on (leakage audit = 0);
* ``zeroshot`` -- unseen target spaces (O*NET 29.2, SkillsFuture), never used in training.

Macro average (:func:`macro_average`): task -> group mean (plain mean of the group's tasks that
are present) -> overall plain mean over the groups present. Only the six WorkBench groups of
:data:`TASK_GROUPS` enter it; the other tasks (TECHWOLF, SkillSkape, zero-shot) are reported per
task.

Texts: stored texts are stripped of surrounding whitespace and keep their case;
:func:`normalize_text` (casefold + collapsed whitespace) is used only for matching, dedup of
graph edges and the leakage audit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from uwe.data.dataset import RankingDataset
from uwe.errors import InputError, did_you_mean, unknown

FAMILIES: tuple[str, ...] = ("full", "heldout", "zeroshot")
SPLITS: tuple[str, ...] = ("val", "test")
GRAPHS: tuple[str, ...] = ("sj", "sv", "sa", "jj", "ss", "sd", "jd")
DEFAULT_ROOT = "data/curated"
_CURATE_HINT = ("re-run the curate stage (`dvc repro curate`, or "
                "uwe.data.curation.curate(raw_dir, out_dir))")


def normalize_text(text: str) -> str:
    """Matching key of a text: casefold + collapse every whitespace run to one space + strip."""
    return " ".join(str(text).split()).casefold()


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskSpec:
    """One benchmark task. ``splits`` = ((family, (split, ...)), ...) that curation writes."""

    name: str
    group: str | None  # WorkBench group of the six-group macro, None = reported per task only
    query_kind: str
    target_kind: str
    source: str
    in_macro: bool
    splits: tuple[tuple[str, tuple[str, ...]], ...]

    @property
    def families(self) -> tuple[str, ...]:
        return tuple(f for f, _ in self.splits)

    def splits_for(self, family: str) -> tuple[str, ...]:
        for fam, sp in self.splits:
            if fam == family:
                return sp
        return ()


_VT = ("val", "test")
_T = ("test",)

TASKS: tuple[TaskSpec, ...] = (
    TaskSpec("job2skill", "job2skill", "occupation title", "skill",
             "ESCO v1.2.0 occupation-skill relations (essential + optional)", True,
             (("full", _T), ("heldout", _VT))),
    TaskSpec("skill2job", "skill2job", "skill", "occupation title",
             "ESCO v1.2.0 occupation-skill relations, inverted", True,
             (("full", _T), ("heldout", _VT))),
    TaskSpec("job_norm", "job_norm", "vacancy title", "occupation title",
             "JobBERT evaluation set -> ESCO v1.1.0 occupations", True,
             (("full", _VT), ("heldout", _VT))),
    TaskSpec("skill_norm", "skill_norm", "skill alias", "skill",
             "ESCO v1.2.0 skill alt labels -> preferred labels", True,
             (("full", _VT), ("heldout", _VT))),
    TaskSpec("skill_extraction_house", "skill_extraction", "job-ad sentence", "skill",
             "Decorte et al. 2022 HOUSE -> ESCO v1.1.0 skills", True,
             (("full", _VT), ("heldout", _VT))),
    TaskSpec("skill_extraction_tech", "skill_extraction", "job-ad sentence", "skill",
             "Decorte et al. 2022 TECH -> ESCO v1.1.0 skills", True,
             (("full", _VT), ("heldout", _VT))),
    TaskSpec("skill_extraction_techwolf", None, "job-ad sentence", "skill",
             "Decorte et al. 2023 TECHWOLF -> ESCO v1.1.0 skills", False,
             (("full", _T), ("heldout", _T))),
    TaskSpec("skill_extraction_skillskape", None, "job-ad sentence", "skill",
             "SkillSkape (JobSkape) test / dev -> ESCO v1.1.0 skills", False,
             (("full", _VT), ("heldout", _VT))),
    TaskSpec("skill_sim_esco", "skill_sim", "skill", "skill",
             "ESCO v1.2.0 skillSkillRelations (proxy for SkillMatch-1K)", True,
             (("full", _VT), ("heldout", _VT))),
    TaskSpec("onet_job2skill", None, "occupation title", "O*NET skill / knowledge / technology",
             "O*NET 29.2 Skills + Knowledge (importance) + hot Technology Skills", False,
             (("zeroshot", _T),)),
    TaskSpec("onet_skill2job", None, "O*NET skill / knowledge / technology", "occupation title",
             "O*NET 29.2 Skills + Knowledge (importance) + hot Technology Skills, inverted", False,
             (("zeroshot", _T),)),
    TaskSpec("skillsfuture_norm", None, "TSC title", "SkillsFuture unique skill",
             "SkillsFuture TSC -> unique-skill mapping", False,
             (("zeroshot", _T),)),
)

TASKS_BY_NAME: dict[str, TaskSpec] = {t.name: t for t in TASKS}

#: The six WorkBench groups of the macro average and the tasks averaged inside each.
TASK_GROUPS: dict[str, tuple[str, ...]] = {
    "job2skill": ("job2skill",),
    "skill2job": ("skill2job",),
    "job_norm": ("job_norm",),
    "skill_norm": ("skill_norm",),
    "skill_extraction": ("skill_extraction_house", "skill_extraction_tech"),
    "skill_sim": ("skill_sim_esco",),
}


def registered_tasks(family: str) -> list[str]:
    """Task names the registry defines for ``family`` (registry order)."""
    _check_family(family)
    return [t.name for t in TASKS if family in t.families]


def macro_average(per_task: Mapping[str, float], groups: Mapping[str, Sequence[str]] | None = None
                  ) -> float:
    """Task -> group (plain mean of the group's tasks present) -> plain mean over groups present.

    Tasks outside every group are ignored. Raises ValueError when no group is present (e.g. a
    dict of zero-shot tasks only) or a value is not finite.
    """
    groups = TASK_GROUPS if groups is None else groups
    group_means = []
    for members in groups.values():
        vals = [float(per_task[t]) for t in members if t in per_task]
        for v in vals:
            if not math.isfinite(v):
                raise ValueError(f"macro_average: non-finite value in {dict(per_task)}")
        if vals:
            group_means.append(sum(vals) / len(vals))
    if not group_means:
        raise ValueError(
            f"macro_average: none of the tasks {sorted(per_task)} belongs to a WorkBench group "
            f"({', '.join(f'{g}={list(m)}' for g, m in groups.items())})"
        )
    return sum(group_means) / len(group_means)


# --------------------------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def _check_family(family: str) -> None:
    if family not in FAMILIES:
        raise unknown("task family", family, FAMILIES)


def task_dir(name: str, family: str, split: str, root: str | Path = DEFAULT_ROOT) -> Path:
    return Path(root) / "tasks" / family / name / split


def list_tasks(family: str, root: str | Path = DEFAULT_ROOT, split: str | None = None
               ) -> list[str]:
    """Tasks of ``family`` on disk under ``root`` (with ``split`` if given), registry order.

    A task counts when at least one of its split folders holds ``queries.parquet``. Folders
    that are not registry tasks are listed after the registered ones, sorted.
    """
    _check_family(family)
    base = Path(root) / "tasks" / family
    if not base.is_dir():
        return []
    found = []
    for d in sorted(p for p in base.iterdir() if p.is_dir()):
        splits = [split] if split else [s.name for s in d.iterdir() if s.is_dir()]
        if any((d / s / "queries.parquet").is_file() for s in splits):
            found.append(d.name)
    order = {n: i for i, n in enumerate(TASKS_BY_NAME)}
    return sorted(found, key=lambda n: (order.get(n, len(order)), n))


def list_splits(name: str, family: str = "heldout", root: str | Path = DEFAULT_ROOT) -> list[str]:
    """Splits of one task on disk."""
    d = Path(root) / "tasks" / family / name
    if not d.is_dir():
        return []
    return sorted(s.name for s in d.iterdir() if (s / "queries.parquet").is_file())


def _read_parquet(path: Path, columns: Sequence[str]) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; {_CURATE_HINT}")
    try:
        names = pq.read_schema(path).names
        for col in columns:
            if col not in names:
                raise InputError(f"{path}: missing column {col!r} (columns: {names}); "
                                 f"{_CURATE_HINT}")
        return pq.read_table(path).to_pandas()
    except (pa.ArrowException, OSError) as err:  # truncated, not parquet, unreadable
        raise InputError(f"{path}: not a readable parquet file ({' '.join(str(err).split())});"
                         f" {_CURATE_HINT}") from None


def load_task(name: str, family: str = "heldout", split: str = "test",
              root: str | Path = DEFAULT_ROOT) -> RankingDataset:
    """Load one curated task split as a validated :class:`RankingDataset`.

    Unknown family / task / split -> ValueError listing what exists (registry and disk);
    missing files -> FileNotFoundError naming the path; missing column -> ValueError naming
    file and column.
    """
    _check_family(family)
    spec = TASKS_BY_NAME.get(name)
    on_disk = list_tasks(family, root)
    if (spec is None or family not in spec.families) and name not in on_disk:
        raise InputError(
            f"unknown task {name!r} for family {family!r}"
            f"{did_you_mean(name, [*registered_tasks(family), *on_disk])}; registered: "
            f"{', '.join(registered_tasks(family))}; on disk under {root}: "
            f"{', '.join(on_disk) or '(none)'}"
        )
    allowed = spec.splits_for(family) if spec is not None else ()
    disk_splits = list_splits(name, family, root)
    if split not in allowed and split not in disk_splits:
        raise ValueError(
            f"unknown split {split!r} for {family}/{name}; registered: "
            f"{', '.join(allowed) or '(none)'}; on disk: {', '.join(disk_splits) or '(none)'}"
        )
    d = task_dir(name, family, split, root)
    qpath, tpath = d / "queries.parquet", d / "targets.parquet"
    qdf = _read_parquet(qpath, ("query", "positives"))
    tdf = _read_parquet(tpath, ("target",))
    if len(tdf) == 0:
        raise ValueError(f"{tpath}: empty target space ({family}/{name}/{split})")
    positives = [[int(i) for i in p] if p is not None else [] for p in qdf["positives"]]
    target_ids = tdf["target_id"].astype(str).tolist() if "target_id" in tdf.columns else None
    try:
        ds = RankingDataset.from_rows(name, family, split, qdf["query"].tolist(), positives,
                                      tdf["target"].tolist(), target_ids)
    except ValueError as exc:
        raise InputError(f"{qpath}: {exc}") from exc
    if ds.n_queries == 0 or ds.n_without_positives == ds.n_queries:
        what = "no query rows" if ds.n_queries == 0 else (
            f"none of its {ds.n_queries} queries has a positive target")
        raise InputError(f"{qpath}: {what} ({family}/{name}/{split}), so no metric can be "
                         f"computed; {_CURATE_HINT}")
    return ds


def load_graph(name: str, root: str | Path = DEFAULT_ROOT) -> pd.DataFrame:
    """A training graph as a DataFrame with string columns ``left`` (skill side) and ``right``."""
    if name not in GRAPHS:
        path = Path(root) / "graphs"
        disk = sorted(p.stem for p in path.glob("*.parquet")) if path.is_dir() else []
        if name not in disk:
            raise ValueError(f"unknown graph {name!r}; graphs: {', '.join(GRAPHS)}; on disk: "
                             f"{', '.join(disk) or '(none)'}")
    path = Path(root) / "graphs" / f"{name}.parquet"
    df = _read_parquet(path, ("left", "right"))
    if len(df) == 0:
        raise ValueError(f"{path}: graph {name!r} has no edges")
    for col in ("left", "right"):
        bad = df[col].isna() | (df[col].astype(str).str.strip() == "")
        if bad.any():
            raise ValueError(f"{path}: column {col!r} has an empty value at row "
                             f"{int(bad.to_numpy().nonzero()[0][0])}")
    return df[["left", "right"]].astype(str).reset_index(drop=True)
