"""What curation builds from the parsed sources: the WorkBench task sets and the training graphs.

:class:`TaskBuilders` (ESCO job2skill / skill2job / skill_norm / skill_sim, job_norm, skill
extraction, the zero-shot O*NET and SkillsFuture sets) and :class:`GraphBuilders` (the sj, sv,
sa, jj, ss training graphs, train entities only) are the halves of
:class:`uwe.data.curation._Curation`; every decision they implement is listed in
:mod:`uwe.data.curation`'s docstring.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping

from uwe.data import audit as audit_lib
from uwe.data import sources as src
from uwe.data.dataset import RankingDataset
from uwe.data.tasks import normalize_text

logger = logging.getLogger(__name__)


SKILL_SIM_FULL_SPLIT = (0.0, 0.1, 0.9)  # full skill_sim_esco query skills: val 10% / test 90%


SKILLSFUTURE_DROP_IDENTITY = True


HELD = ("val", "test")


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


class TaskBuilders:
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


class GraphBuilders:
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
