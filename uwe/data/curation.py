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
import os
import shutil
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from uwe.data import audit as audit_lib
from uwe.data import sources as src
from uwe.data.splits import cap_dataset, check_fractions, split_entities
from uwe.data.tasks import GRAPHS, RankingDataset, normalize_text
from uwe.io import file_sha256, make_temp_dir

logger = logging.getLogger(__name__)

SKILL_SIM_FULL_SPLIT = (0.0, 0.1, 0.9)  # full skill_sim_esco query skills: val 10% / test 90%
SKILLSFUTURE_DROP_IDENTITY = True
HELD = ("val", "test")


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


def build_dataset(name: str, family: str, split: str, q2t: Mapping[str, Iterable[str]],
                  targets: Iterable[tuple[str, str]]) -> RankingDataset:
    """Dataset from query -> target ids and (target text, target id) pairs.

    Targets sorted by (text, id), queries by text.
    """
    tlist = sorted(set(targets))
    index: dict[str, int] = {}
    for i, (_, tid) in enumerate(tlist):
        if tid in index:
            raise ValueError(f"{family}/{name}/{split}: target id {tid!r} appears twice")
        index[tid] = i
    queries = sorted(q for q in q2t if q2t[q])
    positives = []
    for q in queries:
        try:
            positives.append(sorted({index[t] for t in q2t[q]}))
        except KeyError as exc:
            raise ValueError(f"{family}/{name}/{split}: query {q!r}: positive {exc} is not in "
                             f"the target space") from None
    return RankingDataset.from_rows(name, family, split, queries, positives,
                                    [t for t, _ in tlist], [i for _, i in tlist])


def build_edges(pairs: Iterable[tuple[str, str]]) -> tuple[list[tuple[str, str]], int]:
    """Edges (left, right), sorted, deduplicated on normalised texts, no self-edges.

    Among edges equal once normalised the smallest (left, right) is kept. Returns the edges and
    the number of raw pairs dropped as duplicates / self-edges / empty.
    """
    norm: dict[str, str] = {}
    best: dict[tuple[str, str], tuple[str, str]] = {}
    n_raw = 0
    for left, right in pairs:
        n_raw += 1
        left, right = left.strip(), right.strip()
        nl = norm.get(left)
        if nl is None:
            nl = norm[left] = normalize_text(left)
        nr = norm.get(right)
        if nr is None:
            nr = norm[right] = normalize_text(right)
        if not nl or not nr or nl == nr:
            continue
        cur = best.get((nl, nr))
        if cur is None or (left, right) < cur:
            best[(nl, nr)] = (left, right)
    edges = sorted(best.values())
    return edges, n_raw - len(edges)


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


class _Curation:
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

    # ---------------------------------------------------------------- ESCO tasks
    def esco_tasks(self) -> None:
        rel = self.rel
        occ2skills: dict[str, set[str]] = defaultdict(set)
        skill2occs: dict[str, set[str]] = defaultdict(set)
        for o, s in zip(rel["occupation_uri"], rel["skill_uri"], strict=True):
            occ2skills[o].add(s)
            skill2occs[s].add(o)
        # full job2skill / skill2job (test only: WorkRB's val sets use unobtainable vacancy data)
        self.add(build_dataset("job2skill", "full", "test",
                               {self.occ_label[o]: s for o, s in occ2skills.items()},
                               self.skill_targets),
                 n_relation_rows_raw=self.n_relation_rows, n_relations=len(rel))
        self.add(build_dataset("skill2job", "full", "test",
                               {self.skill_label[s]: o for s, o in skill2occs.items()},
                               self.occ_targets),
                 n_relations=len(rel))
        # heldout job2skill / skill2job
        for split in HELD:
            occs = {o for o, sp in self.occ_split.items() if sp == split}
            self.add(build_dataset("job2skill", "heldout", split,
                                   {self.occ_label[o]: occ2skills[o] for o in occs
                                    if occ2skills.get(o)},
                                   self.skill_targets),
                     n_split_occupations=len(occs))
            s2o: dict[str, set[str]] = defaultdict(set)
            for s, os_ in skill2occs.items():
                inter = os_ & occs
                if inter:
                    s2o[self.skill_label[s]] |= inter
            self.add(build_dataset("skill2job", "heldout", split, s2o,
                                   [(self.occ_label[o], o) for o in occs]),
                     n_split_occupations=len(occs))

        # skill_norm: alias -> skills (file order, exact stripped alias)
        alt2skills: dict[str, list[str]] = {}
        for uri, alts in zip(self.skills["uri"], self.skills["alt_labels"], strict=True):
            for a in alts:
                lst = alt2skills.setdefault(a, [])
                if uri not in lst:
                    lst.append(uri)
        n_alt = int(sum(len(a) for a in self.skills["alt_labels"]))
        count: dict[str, int] = defaultdict(int)
        full_q: dict[str, dict[str, list[str]]] = {"val": {}, "test": {}}
        for alt, uris in alt2skills.items():
            split = "val" if any(count[u] == 0 for u in uris) else "test"
            full_q[split][alt] = uris
            for u in uris:
                count[u] += 1
        for split in HELD:
            self.add(build_dataset("skill_norm", "full", split, full_q[split],
                                   self.skill_targets),
                     n_alt_labels=n_alt, n_distinct_aliases=len(alt2skills),
                     split_rule="WorkRB class-uniform (first alias of each skill -> val)")
        for split in HELD:
            q = {alt: uris for alt, uris in alt2skills.items()
                 if any(self.skill_split[u] == split for u in uris)}
            self.add(build_dataset("skill_norm", "heldout", split, q, self.skill_targets),
                     n_split_skills=sum(1 for v in self.skill_split.values() if v == split))

        # skill_sim_esco (directed: original -> related)
        q2r: dict[str, set[str]] = defaultdict(set)
        for a, b in zip(self.ssr["skill_uri"], self.ssr["related_uri"], strict=True):
            q2r[a].add(b)
        for family, assign in (("full", self.pair_split_full), ("heldout", self.pair_split)):
            for split in HELD:
                q = {self.skill_label[a]: rel_ for a, rel_ in q2r.items() if assign[a] == split}
                self.add(build_dataset("skill_sim_esco", family, split, q, self.skill_targets),
                         n_pairs_raw=len(self.ssr), direction="originalSkillUri -> relatedSkillUri")

    # ---------------------------------------------------------------- JobBERT
    def job_norm(self) -> None:
        occ11 = list(zip(self.occs11["label"], self.occs11["uri"], strict=True))
        for split, key in (("val", "jobbert_val"), ("test", "jobbert_test")):
            df, info = src.read_jobbert_titles(src.raw_path(self.raw, key), self.occs11["uri"])
            q: dict[str, set[str]] = defaultdict(set)
            for t, u in zip(df["title"], df["occupation_uri"], strict=True):
                q[t].add(u)
            ds = build_dataset("job_norm", "full", split, q, occ11)
            self.add(ds, n_rows_raw=info["n_rows_raw"],
                     n_dropped_unresolved=info["n_dropped_unresolved"],
                     dropped_unresolved=info["unresolved"],
                     n_rows_kept=len(df),
                     n_queries_normalised_distinct=len({normalize_text(t) for t in q}),
                     n_queries_multi_positive=sum(1 for p in ds.positives if len(p) > 1))
            self.copy_as("heldout", ("full", "job_norm", split))

    # ---------------------------------------------------------------- skill extraction
    def skill_extraction(self) -> None:
        files = {
            "skill_extraction_house": (("val", "house_val"), ("test", "house_test")),
            "skill_extraction_tech": (("val", "tech_val"), ("test", "tech_test")),
            "skill_extraction_techwolf": (("test", "techwolf_test"),),
        }
        for task, splits in files.items():
            for split, key in splits:
                df, info = src.read_decorte_annotations(src.raw_path(self.raw, key),
                                                        self.skill11_index)
                q: dict[str, set[str]] = defaultdict(set)
                for s, lab in zip(df["sentence"], df["label"], strict=True):
                    q[s].add(self.skill11_uri[lab])
                self.add(build_dataset(task, "full", split, q, self.skill11_targets), **info)
                self.copy_as("heldout", ("full", task, split))
        for split, key in (("val", "skillskape_dev"), ("test", "skillskape_test")):
            df, info = src.read_skillskape(src.raw_path(self.raw, key), self.skill11_index)
            q = defaultdict(set)
            for s, labs in zip(df["sentence"], df["labels"], strict=True):
                q[s] |= {self.skill11_uri[lab] for lab in labs}
            self.add(build_dataset("skill_extraction_skillskape", "full", split, q,
                                   self.skill11_targets), **info)
            self.copy_as("heldout", ("full", "skill_extraction_skillskape", split))
        self.skillskape_train, self.skillskape_train_info = src.read_skillskape(
            src.raw_path(self.raw, "skillskape_train"), self.skill11_index)

    # ---------------------------------------------------------------- zero-shot
    def onet(self) -> None:
        occ = src.read_onet_occupations(src.raw_path(self.raw, "onet_occupations"))
        codes = set(occ["code"])
        items: dict[str, set[str]] = defaultdict(set)
        links: set[tuple[str, str]] = set()
        per_source: dict[str, dict] = {}
        for kind, key in (("skill", "onet_skills"), ("knowledge", "onet_knowledge")):
            df = src.read_onet_ratings(src.raw_path(self.raw, key), codes)
            sel = df[(df["scale_id"] == "IM") & (df["value"] >= self.onet_min)
                     & (df["recommend_suppress"] != "Y") & (df["not_relevant"] != "Y")]
            for c, eid, name in zip(sel["code"], sel["element_id"], sel["element_name"],
                                    strict=True):
                items[name].add(f"onet-{kind}:{eid}")
                links.add((c, name))
            per_source[kind] = {"n_rows_im": int((df["scale_id"] == "IM").sum()),
                                "n_links": int(len(sel)),
                                "n_items": int(sel["element_name"].nunique())}
        tech = src.read_onet_technology_skills(src.raw_path(self.raw, "onet_technology_skills"),
                                               codes)
        hot = tech[tech["hot_technology"] == "Y"]
        for c, ex in zip(hot["code"], hot["example"], strict=True):
            items[ex].add(f"onet-technology:{ex}")
            links.add((c, ex))
        per_source["technology_hot"] = {"n_rows": int(len(tech)), "n_links": int(len(hot)),
                                        "n_items": int(hot["example"].nunique())}
        item_id = {name: "|".join(sorted(ids)) for name, ids in items.items()}
        title = dict(zip(occ["code"], occ["title"], strict=True))
        j2s: dict[str, set[str]] = defaultdict(set)
        s2j: dict[str, set[str]] = defaultdict(set)
        for c, name in links:
            j2s[title[c]].add(item_id[name])
            s2j[name].add(c)
        vocab = [(name, i) for name, i in item_id.items()]
        self.add(build_dataset("onet_job2skill", "zeroshot", "test", j2s, vocab),
                 n_links=len(links))
        self.add(build_dataset("onet_skill2job", "zeroshot", "test", s2j,
                               list(zip(occ["title"], occ["code"], strict=True))),
                 n_links=len(links))
        self.report["zeroshot_vocabulary"] = {
            "onet": {
                "version": "O*NET 29.2",
                "queries_job2skill": "Occupation Data titles with >= 1 link",
                "targets_skill2job": f"all {len(occ)} Occupation Data titles",
                "vocabulary": "Skills + Knowledge element names with importance (IM) >= "
                              f"{self.onet_min} (Recommend Suppress / Not Relevant = Y "
                              "excluded) + Technology Skills examples with Hot Technology = Y",
                "onet_importance_min": self.onet_min,
                "per_source": per_source,
                "n_items": len(items),
                "n_items_in_two_sources": sum(1 for v in items.values() if len(v) > 1),
                "n_links": len(links),
            }
        }

    def skillsfuture(self) -> None:
        upath = src.raw_path(self.raw, "skillsfuture_unique")
        uniq = src.read_skillsfuture_unique_skills(upath)
        titles = list(dict.fromkeys(uniq["title"]))
        index = src.LabelIndex(titles)
        mp = src.read_skillsfuture_tsc_mapping(src.raw_path(self.raw, "skillsfuture_tsc"), index)
        pairs = set(zip(mp["tsc_title"], mp["unique_title"], strict=True))
        q: dict[str, set[str]] = defaultdict(set)
        identity_queries = set()
        for tsc, u in pairs:
            if SKILLSFUTURE_DROP_IDENTITY and normalize_text(tsc) == normalize_text(u):
                identity_queries.add(tsc)
                continue
            q[tsc].add(u)
        n_identity = len(identity_queries)
        for tsc in identity_queries:  # a title identical to one of its skills is dropped whole
            q.pop(tsc, None)
        self.add(build_dataset("skillsfuture_norm", "zeroshot", "test", q,
                               [(t, t) for t in titles]),
                 n_rows_raw=len(mp), n_unique_list_rows=len(uniq),
                 n_unique_list_distinct=len(titles),
                 n_distinct_tsc_titles=len({t for t, _ in pairs}),
                 n_identity_queries_excluded=n_identity)
        self.report.setdefault("zeroshot_vocabulary", {})["skillsfuture"] = {
            "queries": "TSC titles (skill_11k_title) whose unique skill (skill_2k_title) differs "
                       "after normalisation" if SKILLSFUTURE_DROP_IDENTITY else
                       "all TSC titles (skill_11k_title)",
            "targets": f"{len(titles)} distinct titles of the Unique Skills List "
                       f"({len(uniq)} rows)",
            "n_identity_queries_excluded": n_identity,
        }

    # ---------------------------------------------------------------- graphs
    def graphs(self) -> dict[str, list[tuple[str, str]]]:
        train_occ = {o for o, s in self.occ_split.items() if s == "train"}
        train_skill = {u for u, s in self.skill_split.items() if s == "train"}
        occ_texts = {u: [lab, *alts] for u, lab, alts in
                     zip(self.occs["uri"], self.occs["label"], self.occs["alt_labels"],
                         strict=True)}
        sj = ((self.skill_label[s], t)
              for o, s in zip(self.rel["occupation_uri"], self.rel["skill_uri"], strict=True)
              if o in train_occ for t in occ_texts[o])
        sv = ((lab, sent) for sent, labs in zip(self.skillskape_train["sentence"],
                                                 self.skillskape_train["labels"], strict=True)
              for lab in labs)
        sa = ((lab, a) for u, lab, alts in zip(self.skills["uri"], self.skills["label"],
                                               self.skills["alt_labels"], strict=True)
              if u in train_skill for a in alts)
        jj = ((lab, a) for u, lab, alts in zip(self.occs["uri"], self.occs["label"],
                                               self.occs["alt_labels"], strict=True)
              if u in train_occ for a in alts)
        sd = ((lab, d) for u, lab, d in zip(self.skills["uri"], self.skills["label"],
                                            self.skills["description"], strict=True)
              if u in train_skill and d)
        jd = ((lab, d) for u, lab, d in zip(self.occs["uri"], self.occs["label"],
                                            self.occs["description"], strict=True)
              if u in train_occ and d)
        held_q = {u for u, s in self.pair_split.items() if s in HELD}
        self.ss_pairs_train = [(a, b) for a, b in zip(self.ssr["skill_uri"],
                                                      self.ssr["related_uri"], strict=True)
                               if a not in held_q and b not in held_q]
        ss = ((self.skill_label[a], self.skill_label[b]) for a, b in self.ss_pairs_train)
        sources = {
            "sj": "ESCO v1.2.0 skill <-> train occupation preferred + alt labels",
            "sv": "SkillSkape train.csv sentence <-> its ESCO v1.1.0 skill labels",
            "sa": "ESCO v1.2.0 train skill preferred label <-> alt label",
            "jj": "ESCO v1.2.0 train occupation preferred label <-> alt label",
            "ss": "ESCO v1.2.0 skillSkillRelations, pairs with no val/test query skill",
            "sd": "ESCO v1.2.0 train skill preferred label <-> its description",
            "jd": "ESCO v1.2.0 train occupation preferred label <-> its description",
        }
        heldout = [ds for (fam, _, split), ds in self.datasets.items()
                   if fam == "heldout" and split in HELD]
        texts, pairs = audit_lib.leak_keys(heldout)
        out = {}
        stats = {}
        for name, gen in (("sj", sj), ("sv", sv), ("sa", sa), ("jj", jj), ("ss", ss),
                          ("sd", sd), ("jd", jd)):
            edges, n_dup = build_edges(gen)
            n_before = len(edges)
            edges, n_drop = audit_lib.drop_leaking_edges(name, edges, texts, pairs)
            if len(edges) == 0:
                raise ValueError(f"graph {name} has no edges left after the leakage filter")
            out[name] = edges
            stats[name] = {"n_edges": len(edges), "n_left": len({a for a, _ in edges}),
                           "n_right": len({b for _, b in edges}),
                           "n_edges_before_leakage_drop": n_before,
                           "edges_dropped_for_leakage": n_drop,
                           "n_duplicate_or_self_pairs_dropped": n_dup,
                           "source": sources[name]}
        self.report["graphs"] = stats
        banned = texts[None]
        self.report["leakage_filter"] = {
            "n_heldout_texts": len(banned),
            "n_heldout_texts_ss_only": len(texts.get("ss", set()) - banned),
            "n_heldout_pairs": len(pairs) // 2,
            "train_occupation_preferred_labels_hit": sum(
                1 for o in train_occ if normalize_text(self.occ_label[o]) in banned),
            "skill_preferred_labels_hit": sum(
                1 for lab in self.skills["label"] if normalize_text(lab) in banned),
            "note": "edges with a held-out text are dropped; a hit preferred label loses every "
                    "edge it is an end of (a hit skill label leaves the skill side of all graphs)",
        }
        return out

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
        _swap_into_place(tmp, out)
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


def _swap_into_place(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` to ``out``; an existing ``out`` is moved aside first and removed after."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}-{time.time_ns()}")
        os.rename(out, old)
    try:
        os.rename(tmp, out)
    except BaseException:
        if old is not None:
            os.rename(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
