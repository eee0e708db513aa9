"""Curation stage: raw files -> WorkBench task files, entity splits, training graphs, audit.

Entry point: :func:`curate`. Layout written under ``out_dir`` (see :mod:`uwe.data.tasks`)::

    tasks/{full,heldout,zeroshot}/{task}/{val,test}/{queries,targets}.parquet
    graphs/{sj,sv,sa,jj,ss}.parquet          left (skill side) / right, one row per edge
    splits/{occupations,skills,skill_pairs}.parquet

Decisions (also returned in the report under ``"decisions"``; :data:`DECISIONS`):

* Texts are stripped, case kept. Duplicate query strings (exact, after stripping) are one query
  with the union of positives; normalised forms (casefold + whitespace) are used only to
  resolve labels, dedup graph edges and in the leakage audit.
* Target spaces are whole vocabularies sorted by (text, id): ESCO v1.2.0 skills (13,939) for
  job2skill / skill_norm / skill_sim_esco, ESCO v1.2.0 occupations (3,039) for skill2job, ESCO
  v1.1.0 occupations (3,008) for job_norm, ESCO v1.1.0 skills (13,891) for skill extraction.
  Queries are sorted by text.
* job2skill positives = essential + optional relations (duplicate relation rows collapse);
  skill2job queries = skills with >= 1 relation.
* job_norm: JobBERT rows whose v1.0.5 URI is not a v1.1.0 occupation are dropped and counted;
  duplicate titles merge (exact string), so n_queries < n_rows_raw (both reported).
* skill_norm (full): WorkRB's class-uniform split -- aliases visited in file order (skills in
  file order, each skill's alt labels in order, an alias shared by several skills is one query
  with all of them as positives); an alias goes to val if one of its skills has no alias in
  val yet, else to test.
* skill_extraction: one query per distinct sentence with >= 1 ESCO label; "LABEL NOT PRESENT" /
  "UNDERSPECIFIED" (and SkillSkape's 'UNK') are not labels. SkillSkape val = dev.csv, and its
  train.csv feeds the S-V graph.
* skill_sim_esco (proxy for SkillMatch-1K): directed like WorkRB's skill_a -> skill_b: query =
  originalSkillUri, positives = its relatedSkillUris (the reverse direction is NOT added: the
  ESCO relation is directed and is almost never stored both ways -- 1 of 5,818 pairs), target
  space = all skills. full: query skills split val/test 10/90 (WorkRB's SkillMatch-1K split
  fraction), hash-seeded.
* heldout splits are hash-seeded (sha256 of seed|salt|id, :mod:`uwe.data.splits`): occupations by
  ``occupation_split`` stratified by ISCO major group (first digit of iscoGroup); skills by
  ``skill_split`` stratified by skillType; skill_sim query skills by ``skill_pair_split``.
  heldout job2skill = split occupations -> all skills; skill2job = skills with >= 1 relation to a
  split occupation -> the split's occupations; skill_norm = every alias of a split skill -> all
  skills (positives = every skill with that alias, whatever its split); skill_sim_esco = the
  split's query skills; job_norm and skill_extraction_* = the full sets.
* Training graphs use train entities only: sj = skill preferred label <-> train occupation
  preferred + alt labels; sv = skill <-> SkillSkape train sentence (labels as annotated, ESCO
  v1.1.0 preferred labels); sa = train skill preferred <-> alt label; jj = train occupation
  preferred <-> alt label; ss = skill <-> related skill for pairs with neither end a val/test
  skill_sim query skill. Edges are deduplicated on normalised (left, right); self-edges
  (left == right once normalised) are dropped.
* Leakage: every graph edge whose text equals (normalised) a heldout val/test held-out text
  (queries; skill2job: target occupations; ss only: skill_sim query skills) or that is a heldout
  val/test (query, positive) pair is dropped before writing; the audit is then recomputed from
  the written files and curation fails if a heldout count is not 0.
* zeroshot onet_*: O*NET 29.2 occupation titles (Occupation Data) <-> a skill-like vocabulary =
  Skills and Knowledge element names linked where importance (Scale ID "IM") >=
  ``onet_importance_min`` (rows flagged Recommend Suppress / Not Relevant = "Y" excluded) +
  Technology Skills examples flagged Hot Technology = "Y" (named technologies frequent in job
  postings; the ~8.6k other examples are mostly one-occupation product names). The same text in
  two sources (e.g. "Mathematics" as Skill and Knowledge) is one target. onet_job2skill queries
  = occupations with >= 1 link; onet_skill2job queries = vocabulary items, targets = all 1,016
  occupations.
* zeroshot skillsfuture_norm: TSC titles (skill_11k_title) -> unique skills (skill_2k_title),
  target space = the distinct titles of the Unique Skills List. TSC titles identical (normalised)
  to their unique skill are excluded (~92% of the map is identity, which any lexical matcher
  solves); their count is reported.
* max_queries / max_targets (smoke profile): hash-seeded subsets per task split, applied after
  the graphs are built (graphs are never capped), targets keep every positive of the kept
  queries.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from uwe.data import audit as audit_lib
from uwe.data import sources as src
from uwe.data.builders import SKILL_SIM_FULL_SPLIT, GraphBuilders, TaskBuilders
from uwe.data.dataset import RankingDataset
from uwe.data.splits import cap_dataset, check_fractions, split_entities
from uwe.data.tasks import GRAPHS
from uwe.io import file_sha256, make_temp_dir, replace_dir

logger = logging.getLogger(__name__)


class LeakageError(RuntimeError):
    """A heldout set shares texts or pairs with a training graph."""


DECISIONS: tuple[str, ...] = tuple(
    " ".join(block.split())
    for block in (__doc__ or "").split("Decisions (also returned", 1)[1].split("\n* ")[1:]
)

Key = tuple[str, str, str]  # (family, task, split)


# --------------------------------------------------------------------------------------------
# Small builders
# --------------------------------------------------------------------------------------------


def _write_parquet(path: Path, columns: Mapping[str, pa.Array]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(dict(columns)), path, compression="zstd")


def write_dataset(root: Path, ds: RankingDataset) -> None:
    d = root / "tasks" / ds.family / ds.name / ds.split
    _write_parquet(d / "queries.parquet", {
        "query": pa.array(ds.queries, pa.string()),
        "positives": pa.array(ds.positives, pa.list_(pa.int32())),
    })
    tcols = {"target": pa.array(ds.targets, pa.string())}
    if ds.target_ids is not None:
        tcols["target_id"] = pa.array(ds.target_ids, pa.string())
    _write_parquet(d / "targets.parquet", tcols)


# --------------------------------------------------------------------------------------------
# Task families
# --------------------------------------------------------------------------------------------


class _Curation(GraphBuilders, TaskBuilders):
    """Holds the parsed sources and everything built from them."""

    def __init__(self, raw_dir: Path, seed: int, onet_importance_min: float):
        self.raw = raw_dir
        self.seed = seed
        self.onet_min = onet_importance_min
        self.datasets: dict[Key, RankingDataset] = {}
        self.extras: dict[Key, dict] = defaultdict(dict)
        self.report: dict = {}
        self.timings: dict[str, float] = {}

    def add(self, ds: RankingDataset, **extra) -> None:
        key = (ds.family, ds.name, ds.split)
        if key in self.datasets:
            raise ValueError(f"dataset {key} built twice")
        self.datasets[key] = ds
        self.extras[key].update(extra)

    def copy_as(self, family: str, key: Key) -> None:
        ds = self.datasets[key]
        self.add(RankingDataset(ds.name, family, ds.split, ds.queries, ds.targets, ds.positives,
                                ds.target_ids), **self.extras[key])

    # ---------------------------------------------------------------- ESCO sources
    def load_esco(self) -> None:
        p12 = src.raw_path(self.raw, "esco_120_en")
        self.skills = src.read_esco_skills(p12)
        self.occs = src.read_esco_occupations(p12)
        rel = src.read_esco_occupation_skill_relations(p12, self.occs["uri"], self.skills["uri"])
        self.n_relation_rows = len(rel)
        self.rel = rel.drop_duplicates(["occupation_uri", "skill_uri"]).reset_index(drop=True)
        self.ssr = src.read_esco_skill_skill_relations(p12, self.skills["uri"])
        p11 = src.raw_path(self.raw, "esco_110_en")
        self.skills11 = src.read_esco_skills(p11)
        self.occs11 = src.read_esco_occupations(p11)
        self.skill_label = dict(zip(self.skills["uri"], self.skills["label"], strict=True))
        self.occ_label = dict(zip(self.occs["uri"], self.occs["label"], strict=True))
        self.skill_targets = list(zip(self.skills["label"], self.skills["uri"], strict=True))
        self.occ_targets = list(zip(self.occs["label"], self.occs["uri"], strict=True))
        self.skill11_targets = list(zip(self.skills11["label"], self.skills11["uri"],
                                        strict=True))
        self.skill11_index = src.LabelIndex(self.skills11["label"])
        self.skill11_uri = dict(zip(self.skills11["label"], self.skills11["uri"], strict=True))

    # ---------------------------------------------------------------- splits
    def make_splits(self, occupation_split, skill_split, skill_pair_split) -> None:
        isco = {u: (g[:1] if g else "unknown")
                for u, g in zip(self.occs["uri"], self.occs["isco_group"], strict=True)}
        self.occ_split = split_entities(self.occs["uri"], occupation_split, self.seed,
                                        "occupations", strata=isco)
        self.isco_major = isco
        stype = {u: (t or "none")
                 for u, t in zip(self.skills["uri"], self.skills["skill_type"], strict=True)}
        self.skill_type = stype
        self.skill_split = split_entities(self.skills["uri"], skill_split, self.seed, "skills",
                                          strata=stype)
        qskills = sorted(set(self.ssr["skill_uri"]))
        self.pair_split = split_entities(qskills, skill_pair_split, self.seed, "skill_pairs")
        self.pair_split_full = split_entities(qskills, SKILL_SIM_FULL_SPLIT, self.seed,
                                              "skill_sim_full")


    # ---------------------------------------------------------------- split tables
    def split_tables(self) -> dict[str, dict[str, pa.Array]]:
        occ = self.occs.sort_values("uri")
        skills = self.skills.sort_values("uri")
        ss = self.ssr.drop_duplicates(["skill_uri", "related_uri"]).sort_values(
            ["skill_uri", "related_uri"])
        in_graph = set(self.ss_pairs_train)
        return {
            "occupations": {
                "id": pa.array(occ["uri"], pa.string()),
                "label": pa.array(occ["label"], pa.string()),
                "split": pa.array([self.occ_split[u] for u in occ["uri"]], pa.string()),
                "isco_major": pa.array([self.isco_major[u] for u in occ["uri"]], pa.string()),
            },
            "skills": {
                "id": pa.array(skills["uri"], pa.string()),
                "label": pa.array(skills["label"], pa.string()),
                "split": pa.array([self.skill_split[u] for u in skills["uri"]], pa.string()),
                "skill_type": pa.array([self.skill_type[u] for u in skills["uri"]], pa.string()),
            },
            "skill_pairs": {
                "id": pa.array(ss["skill_uri"], pa.string()),
                "label": pa.array([self.skill_label[u] for u in ss["skill_uri"]], pa.string()),
                "split": pa.array([self.pair_split[u] for u in ss["skill_uri"]], pa.string()),
                "related_id": pa.array(ss["related_uri"], pa.string()),
                "related_label": pa.array([self.skill_label[u] for u in ss["related_uri"]],
                                          pa.string()),
                "full_split": pa.array([self.pair_split_full[u] for u in ss["skill_uri"]],
                                       pa.string()),
                "in_ss_graph": pa.array([(a, b) in in_graph for a, b in
                                         zip(ss["skill_uri"], ss["related_uri"], strict=True)],
                                        pa.bool_()),
            },
        }

    def split_report(self) -> dict:
        def counts(assign: Mapping[str, str]) -> dict[str, int]:
            c = {"train": 0, "val": 0, "test": 0}
            for v in assign.values():
                c[v] += 1
            return c

        by_major: dict[str, dict[str, int]] = defaultdict(lambda: {"train": 0, "val": 0,
                                                                   "test": 0})
        for u, s in self.occ_split.items():
            by_major[self.isco_major[u]][s] += 1
        pair_counts = {"train": 0, "val": 0, "test": 0}
        for a in self.ssr["skill_uri"]:
            pair_counts[self.pair_split[a]] += 1
        return {
            "seed": self.seed,
            "method": "sha256(seed|salt|id) ranking inside each stratum",
            "occupations": {**counts(self.occ_split), "stratified_by": "ISCO major group",
                            "by_isco_major": dict(sorted(by_major.items()))},
            "skills": {**counts(self.skill_split), "stratified_by": "skillType"},
            "skill_pairs": {"query_skills": counts(self.pair_split), "pairs": pair_counts,
                            "pairs_in_ss_graph": len(self.ss_pairs_train),
                            "full_query_skills": {k: v for k, v in
                                                  counts(self.pair_split_full).items()
                                                  if k != "train"}},
        }


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def curate(raw_dir: str | Path, out_dir: str | Path = "data/curated", *,
           occupation_split=(0.6, 0.1, 0.3), skill_split=(0.6, 0.1, 0.3),
           skill_pair_split=(0.6, 0.1, 0.3), split_seed: int = 20251111,
           onet_importance_min: float = 3.0, max_queries: int | None = None,
           max_targets: int | None = None) -> dict:
    """Build every WorkBench file under ``out_dir`` atomically and return the curation report.

    Everything is built in a temp folder beside ``out_dir`` and renamed into place at the end;
    on any failure (including :class:`LeakageError` when a heldout leakage count is not 0) the
    temp folder is removed and a previous ``out_dir`` is left untouched.
    """
    t_start = time.perf_counter()
    raw = Path(raw_dir)
    out = Path(out_dir)
    if not raw.is_dir():
        raise FileNotFoundError(f"raw_dir not found: {raw} (run the fetch stage)")
    occupation_split = check_fractions(occupation_split, "occupation_split")
    skill_split = check_fractions(skill_split, "skill_split")
    skill_pair_split = check_fractions(skill_pair_split, "skill_pair_split")
    for name, v in (("max_queries", max_queries), ("max_targets", max_targets)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"{name} must be None or an integer >= 1, got {v!r}")

    c = _Curation(raw, int(split_seed), float(onet_importance_min))

    def tick(label: str, t0: float) -> float:
        now = time.perf_counter()
        c.timings[label] = round(now - t0, 2)
        logger.info("curate: %s %.1fs", label, now - t0)
        return now

    t = time.perf_counter()
    c.load_esco()
    t = tick("read_esco", t)
    c.make_splits(occupation_split, skill_split, skill_pair_split)
    c.esco_tasks()
    t = tick("esco_tasks", t)
    c.job_norm()
    c.skill_extraction()
    t = tick("jobbert_and_skill_extraction", t)
    c.onet()
    t = tick("onet", t)
    c.skillsfuture()
    t = tick("skillsfuture", t)
    graphs = c.graphs()
    t = tick("graphs", t)

    datasets = dict(c.datasets)
    if max_queries is not None or max_targets is not None:
        datasets = {k: cap_dataset(ds, max_queries, max_targets, c.seed)
                    for k, ds in datasets.items()}

    tmp = make_temp_dir(out)
    try:
        for ds in datasets.values():
            write_dataset(tmp, ds)
        for name in GRAPHS:
            g = graphs[name]
            _write_parquet(tmp / "graphs" / f"{name}.parquet", {
                "left": pa.array([a for a, _ in g], pa.string()),
                "right": pa.array([b for _, b in g], pa.string())})
        for name, cols in c.split_tables().items():
            _write_parquet(tmp / "splits" / f"{name}.parquet", cols)
        t = tick("write", t)
        leakage = audit_lib.audit_files(tmp)
        t = tick("audit", t)
        bad = audit_lib.heldout_violations(leakage)
        if bad:
            raise LeakageError("heldout leakage audit is not 0:\n  " + "\n  ".join(bad))
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    tasks_report: dict = {}
    for (family, name, split), ds in sorted(datasets.items()):
        full_ds = c.datasets[(family, name, split)]
        entry = {**ds.summary(), **c.extras[(family, name, split)]}
        if ds is not full_ds:
            entry["uncapped"] = full_ds.summary()
        tasks_report.setdefault(family, {}).setdefault(name, {})[split] = entry
    inputs = {}
    for key, rel in src.RAW_FILES.items():
        p = raw / rel
        inputs[key] = {"path": rel, "bytes": p.stat().st_size, "sha256": file_sha256(p)}
    c.timings["total"] = round(time.perf_counter() - t_start, 2)
    # Timings are logged, not reported: the report is a metrics file and must be deterministic.
    logger.info("curation timings (s): %s", c.timings)
    return {
        "params": {"occupation_split": list(occupation_split), "skill_split": list(skill_split),
                   "skill_pair_split": list(skill_pair_split), "split_seed": c.seed,
                   "onet_importance_min": c.onet_min, "max_queries": max_queries,
                   "max_targets": max_targets},
        "inputs": inputs,
        "splits": c.split_report(),
        "tasks": tasks_report,
        "graphs": c.report["graphs"],
        "leakage_filter": c.report["leakage_filter"],
        "leakage": leakage,
        "zeroshot_vocabulary": c.report.get("zeroshot_vocabulary", {}),
        "decisions": list(DECISIONS),
    }


def report_tables(report: Mapping) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(sizes, leakage, graphs) tables of a :func:`curate` report, for notebooks."""
    size_rows = []
    for family, tasks_ in report["tasks"].items():
        for task, splits in tasks_.items():
            for split, v in splits.items():
                size_rows.append({"family": family, "task": task, "split": split,
                                  "n_queries": v["n_queries"], "n_targets": v["n_targets"],
                                  "n_positives": v["n_positives"]})
    leak_rows = []
    for family, tasks_ in report["leakage"].items():
        if not isinstance(tasks_, dict):
            continue  # heldout_total / heldout_ok
        for task, splits in tasks_.items():
            for split, v in splits.items():
                leak_rows.append({"family": family, "task": task, "split": split,
                                  "checked": v["checked"],
                                  "n_checked_texts": v["n_checked_texts"],
                                  "query_text_overlap": v["query_text_overlap"],
                                  "n_pairs": v["n_pairs"], "pair_overlap": v["pair_overlap"]})
    graph_rows = [{"graph": g, **{k: v for k, v in stats.items() if k != "source"},
                   "source": stats.get("source", "")} for g, stats in report["graphs"].items()]
    return pd.DataFrame(size_rows), pd.DataFrame(leak_rows), pd.DataFrame(graph_rows)
