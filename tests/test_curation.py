"""End-to-end curation on a tiny fake raw folder (the mirror's layout) under tmp_path."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from pathlib import Path

import openpyxl
import pyarrow.parquet as pq
import pytest

from uwe.data import audit as audit_lib
from uwe.data import curation
from uwe.data import sources as src
from uwe.data import tasks as T
from uwe.data.splits import cap_dataset, sample_keys, split_entities

N_SKILLS = 40
N_OCCS = 30
SKILLS = [(f"http://e/skill/{i:03d}", f"skill {i}") for i in range(N_SKILLS)]
OCCS = [(f"http://e/occ/{i:03d}", f"occupation {i}", f"{1 + i % 3}{i % 10}11") for i in
        range(N_OCCS)]


def _csv(header, rows) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def _zip(path: Path, members: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in members.items():
            zf.writestr(name, text)


def _xlsx(path: Path, sheets: dict[str, list[list]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for name, rows in sheets.items():
        ws = wb.create_sheet(name)
        for r in rows:
            ws.append(r)
    wb.save(path)


def _skills_csv(skills) -> str:
    rows = []
    for i, (uri, label) in enumerate(skills):
        alts = [f"alias {i} a", f"alias {i} b"]
        if i in (1, 2):
            alts.append("shared alias")  # one alias for two skills
        rows.append(["KnowledgeSkillCompetence", uri, "knowledge" if i % 2 else "skill/competence",
                     "", label, "\n".join(alts), "", "released", "", "", "", "", "desc"])
    return _csv(["conceptType", "conceptUri", "skillType", "reuseLevel", "preferredLabel",
                 "altLabels", "hiddenLabels", "status", "modifiedDate", "scopeNote", "definition",
                 "inScheme", "description"], rows)


def _occs_csv(occs) -> str:
    rows = [["Occupation", uri, isco, label, f"{label} alt\n{label} other name", "", "released",
             "", "", "", "", "", "desc", isco + ".1"] for uri, label, isco in occs]
    return _csv(["conceptType", "conceptUri", "iscoGroup", "preferredLabel", "altLabels",
                 "hiddenLabels", "status", "modifiedDate", "regulatedProfessionNote",
                 "scopeNote", "definition", "inScheme", "description", "code"], rows)


def make_raw(root: Path) -> Path:
    """A complete raw folder with the mirror's relative paths and the real column layouts."""
    rel = []
    for j, (ouri, olabel, _) in enumerate(OCCS):
        for k in range(6):
            s = SKILLS[(3 * j + k) % N_SKILLS]
            rel.append([ouri, olabel, "essential" if k < 3 else "optional", "knowledge", s[0],
                        s[1]])
    rel.append(rel[0])  # a duplicate relation row
    ssr = [[SKILLS[i][0], "knowledge", "optional", "knowledge", SKILLS[i + 20][0]]
           for i in range(20)]
    ssr.append([SKILLS[0][0], "knowledge", "essential", "knowledge", SKILLS[25][0]])
    _zip(root / src.RAW_FILES["esco_120_en"], {
        "skills_en.csv": _skills_csv(SKILLS),
        "occupations_en.csv": _occs_csv(OCCS),
        "occupationSkillRelations_en.csv": _csv(
            ["occupationUri", "occupationLabel", "relationType", "skillType", "skillUri",
             "skillLabel"], rel),
        "skillSkillRelations_en.csv": _csv(
            ["originalSkillUri", "originalSkillType", "relationType", "relatedSkillType",
             "relatedSkillUri"], ssr),
        "ISCOGroups_en.csv": "conceptUri\n",
    })
    # v1.1.0: one skill fewer, one occupation fewer; a stray-space preferred label
    skills11 = SKILLS[:-1]
    occs11 = OCCS[:-1]
    _zip(root / src.RAW_FILES["esco_110_en"], {
        "skills_en.csv": _skills_csv([(u, (" " + lab) if i == 3 else lab)
                                      for i, (u, lab) in enumerate(skills11)]),
        "occupations_en.csv": _occs_csv(occs11),
    })
    jb_header = ["", "vacancyTitle", "conceptUri"]
    test_rows = [[str(i), f"Job Title {i}", OCCS[i % 10][0]] for i in range(25)]
    test_rows += [["25", "Job Title 0", OCCS[11][0]],  # duplicate title, second occupation
                  ["26", "Gone Title", "http://e/occ/removed"],  # unresolvable
                  ["27", "occupation 4", OCCS[4][0]], ["28", "Occupation 7 ALT", OCCS[7][0]]]
    # titles equal to an alt label of every occupation: train occupations lose those edges
    test_rows += [[str(29 + j), f"{lab} Other Name", uri]
                  for j, (uri, lab, _) in enumerate(OCCS[:-1])]
    _write(root / src.RAW_FILES["jobbert_test"], _csv(jb_header, test_rows))
    _write(root / src.RAW_FILES["jobbert_val"], _csv(
        jb_header, [[str(i), f"Val Title {i}", OCCS[i % 12][0]] for i in range(15)]))
    dec_header = ["sentence", "span", "sub_span", "label"]
    for key, n in (("house_val", 3), ("house_test", 5), ("tech_val", 3), ("tech_test", 6)):
        rows = []
        for i in range(n):
            sent = f"{key} sentence {i} ."
            rows.append([sent, "x", "", SKILLS[(i * 5) % 30][1]])
            rows.append([sent, "y", "", "LABEL NOT PRESENT"])
            if i % 2:
                rows.append([sent, "z", "", SKILLS[(i * 7) % 30][1]])
        rows.append([f"{key} unlabelled .", "q", "", "UNDERSPECIFIED"])
        _write(root / src.RAW_FILES[key], _csv(dec_header, rows))
    _write(root / src.RAW_FILES["techwolf_test"], _csv(
        ["sentence", "label"], [[f"techwolf {i}", SKILLS[i][1]] for i in range(4)]))
    sk_header = ["", "sentence", "skills"]
    for key, n in (("skillskape_train", 12), ("skillskape_dev", 4), ("skillskape_test", 5)):
        rows = [[str(i), f"{key} line {i}.", repr([SKILLS[(i * 3) % 30][1],
                                                   SKILLS[(i * 3 + 1) % 30][1]])]
                for i in range(n)]
        rows.append([str(n), f"{key} nothing.", "['UNK']"])
        _write(root / src.RAW_FILES[key], _csv(sk_header, rows))
    # O*NET
    codes = [(f"11-10{i:02d}.00", f"Onet Occupation {i}") for i in range(6)]
    _xlsx(root / src.RAW_FILES["onet_occupations"], {"Occupation Data": [
        ["O*NET-SOC Code", "Title", "Description"], *[[c, t, "d"] for c, t in codes]]})
    rating_header = ["O*NET-SOC Code", "Title", "Element ID", "Element Name", "Scale ID",
                     "Scale Name", "Data Value", "N", "Standard Error", "Lower CI Bound",
                     "Upper CI Bound", "Recommend Suppress", "Not Relevant", "Date",
                     "Domain Source"]
    for key, names in (("onet_skills", ["Reading", "Mathematics", "Writing"]),
                       ("onet_knowledge", ["Mathematics", "Biology"])):
        rows = [rating_header]
        for k, (c, t) in enumerate(codes[:5]):
            for e, name in enumerate(names):
                value = 2.0 + ((k + e) % 3)  # 2, 3, 4
                rows.append([c, t, f"2.X.{e}", name, "IM", "Importance", value, 8, 0.1, 1, 5,
                             "Y" if (k, e) == (0, 1) else "N", None, "08/2023", "Analyst"])
                rows.append([c, t, f"2.X.{e}", name, "LV", "Level", 6.0, 8, 0.1, 1, 7, "N", "N",
                             "08/2023", "Analyst"])
        _xlsx(root / src.RAW_FILES[key], {"Sheet1": rows})
    tech = [["O*NET-SOC Code", "Title", "Example", "Commodity Code", "Commodity Title",
             "Hot Technology", "In Demand"]]
    for k, (c, t) in enumerate(codes):
        tech.append([c, t, "Microsoft Excel", 1, "Spreadsheet software", "Y", "N"])
        tech.append([c, t, f"Obscure Tool {k}", 2, "Other software", "N", "N"])
    _xlsx(root / src.RAW_FILES["onet_technology_skills"], {"Sheet1": tech})
    # SkillsFuture
    uniq = [["skill_title", "skill_description", "skill_type", "Emerging Skills"]]
    uniq += [[f"Unique Skill {i}", "d", "tsc", False] for i in range(8)]
    uniq.append(["Unique Skill 0", "d", "ccs", False])  # duplicate row
    _xlsx(root / src.RAW_FILES["skillsfuture_unique"], {
        "Legend": [[None, "Unique Skills List tab"]], "Unique Skills List": uniq})
    tsc = [["sector_title", "skill_11k_title", "proficiency_level", "tsc_code", "skill_type",
            "Emerging Skills", "skill_2k_title"]]
    for i in range(8):
        tsc.append(["S", f"Unique Skill {i}", 2, f"T{i}", "tsc", False, f"Unique Skill {i}"])
        tsc.append(["S", f"Sector Variant {i}", 3, f"V{i}", "tsc", False, f"unique skill {i}"])
    _xlsx(root / src.RAW_FILES["skillsfuture_tsc"], {
        "Legend": [["x"]], "TSC to Unique Skill Mapping": tsc})
    return root


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*.parquet"))}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("cur")
    raw = make_raw(base / "raw")
    out = base / "curated"
    report = curation.curate(raw, out)
    return raw, out, report


def test_all_task_files_exist_and_load(built):
    _, out, report = built
    (out.parent / "plain").mkdir(exist_ok=True)
    assert out.stat().st_mode == (out.parent / "plain").stat().st_mode  # not tempfile's 0700
    for spec in T.TASKS:
        for family, splits in spec.splits:
            for split in splits:
                ds = T.load_task(spec.name, family, split, root=out)
                assert ds.n_queries > 0, (family, spec.name, split)
                assert report["tasks"][family][spec.name][split]["n_queries"] == ds.n_queries
    for g in T.GRAPHS:
        assert len(T.load_graph(g, root=out)) > 0
    for name in ("occupations", "skills", "skill_pairs"):
        assert pq.read_table(out / "splits" / f"{name}.parquet").num_rows > 0
    json.dumps(report)  # JSON-serialisable


def test_full_counts(built):
    _, out, report = built
    j2s = T.load_task("job2skill", "full", "test", root=out)
    assert (j2s.n_queries, j2s.n_targets) == (N_OCCS, N_SKILLS)
    assert j2s.n_positives == N_OCCS * 6  # the duplicate relation row collapses
    s2j = T.load_task("skill2job", "full", "test", root=out)
    assert s2j.n_targets == N_OCCS and s2j.n_positives == N_OCCS * 6
    jn = report["tasks"]["full"]["job_norm"]["test"]
    assert jn["n_rows_raw"] == 28 + N_OCCS and jn["n_dropped_unresolved"] == 1
    assert jn["n_targets"] == N_OCCS - 1  # v1.1.0 occupations
    ds = T.load_task("job_norm", "full", "test", root=out)
    q = ds.queries.index("Job Title 0")
    assert len(ds.positives[q]) == 2  # duplicate title merged, positives unioned
    assert "Gone Title" not in ds.queries
    house = T.load_task("skill_extraction_house", "full", "test", root=out)
    assert house.n_queries == 5 and house.n_targets == N_SKILLS - 1
    assert "skill 3" in house.targets  # stray whitespace stripped
    sk = T.load_task("skill_extraction_skillskape", "full", "test", root=out)
    assert sk.n_queries == 5 and all(len(p) == 2 for p in sk.positives)


def test_skill_norm_full_is_workrb_class_uniform(built):
    _, out, _ = built
    val = T.load_task("skill_norm", "full", "val", root=out)
    test = T.load_task("skill_norm", "full", "test", root=out)
    assert set(val.queries).isdisjoint(test.queries)
    # aliases are visited in file order: skill 1 = "alias 1 a", "alias 1 b", "shared alias";
    # "shared alias" (skills 1 and 2) goes to val because skill 2 has no val alias yet, so
    # skill 2's own first alias goes to test.
    assert {f"alias {i} a" for i in range(N_SKILLS) if i != 2} <= set(val.queries)
    assert {f"alias {i} b" for i in range(N_SKILLS)} | {"alias 2 a"} <= set(test.queries)
    shared = val.queries.index("shared alias")
    assert [val.targets[i] for i in val.positives[shared]] == ["skill 1", "skill 2"]
    assert val.n_positives + test.n_positives == 2 * N_SKILLS + 2


def test_heldout_splits_are_entity_disjoint(built):
    _, out, report = built
    occ = pq.read_table(out / "splits" / "occupations.parquet").to_pandas()
    assert len(occ) == N_OCCS and set(occ["split"]) == {"train", "val", "test"}
    test_occ = set(occ.loc[occ["split"] == "test", "label"])
    j2s = T.load_task("job2skill", "heldout", "test", root=out)
    assert set(j2s.queries) == test_occ and j2s.n_targets == N_SKILLS
    s2j = T.load_task("skill2job", "heldout", "test", root=out)
    assert set(s2j.targets) == test_occ
    sj_texts = {T.normalize_text(t) for t in T.load_graph("sj", root=out)["right"]}
    assert not {T.normalize_text(t) for t in test_occ} & sj_texts
    skills = pq.read_table(out / "splits" / "skills.parquet").to_pandas()
    train_skills = set(skills.loc[skills["split"] == "train", "label"])
    assert set(T.load_graph("sa", root=out)["left"]) <= train_skills
    pairs = pq.read_table(out / "splits" / "skill_pairs.parquet").to_pandas()
    held = set(pairs.loc[pairs["split"] != "train", "label"])
    ss = T.load_graph("ss", root=out)
    assert not (set(ss["left"]) | set(ss["right"])) & held
    sim = T.load_task("skill_sim_esco", "heldout", "test", root=out)
    assert set(sim.queries) == set(pairs.loc[pairs["split"] == "test", "label"])
    assert report["splits"]["occupations"]["train"] + report["splits"]["occupations"]["val"] \
        + report["splits"]["occupations"]["test"] == N_OCCS


def test_leakage_zero_for_heldout_and_edges_dropped(built):
    _, out, report = built
    leak = report["leakage"]
    assert leak["heldout_ok"] and leak["heldout_total"] == 0
    for task, splits in leak["heldout"].items():
        for split, v in splits.items():
            assert v["query_text_overlap"] == 0 and v["pair_overlap"] == 0, (task, split)
    assert leak["heldout"]["skill2job"]["test"]["checked"] == "targets"
    assert leak["heldout"]["skill_sim_esco"]["test"]["graphs_checked"] == ["ss"]
    # "... Other Name" alt labels are JobBERT test titles: their edges were dropped
    assert report["graphs"]["jj"]["edges_dropped_for_leakage"] > 0
    assert report["graphs"]["sj"]["edges_dropped_for_leakage"] > 0
    texts = {T.normalize_text(t) for g in T.GRAPHS for col in ("left", "right")
             for t in T.load_graph(g, root=out)[col]}
    assert "occupation 4" not in texts and "occupation 7 alt" not in texts
    assert not any(t.endswith("other name") for t in texts - {"occupation 29 other name"})
    # full sets are reported as they are: job2skill queries are in the S-J graph
    assert leak["full"]["job2skill"]["test"]["query_text_overlap"] > 0
    # the audit recomputed from the files agrees with the report
    again = audit_lib.audit_files(out)
    assert again["heldout"] == leak["heldout"] and again["full"] == leak["full"]


def test_zeroshot_sets(built):
    _, out, report = built
    j2s = T.load_task("onet_job2skill", "zeroshot", "test", root=out)
    # Reading / Mathematics / Writing / Biology above the threshold + hot "Microsoft Excel"
    assert set(j2s.targets) == {"Reading", "Mathematics", "Writing", "Biology",
                                "Microsoft Excel"}
    math_id = j2s.target_ids[j2s.targets.index("Mathematics")]
    assert "onet-skill:" in math_id and "onet-knowledge:" in math_id
    assert "Onet Occupation 5" in j2s.queries  # linked only through a hot technology
    s2j = T.load_task("onet_skill2job", "zeroshot", "test", root=out)
    assert s2j.n_targets == 6
    sf = T.load_task("skillsfuture_norm", "zeroshot", "test", root=out)
    assert sf.n_targets == 8
    assert sorted(sf.queries) == sorted(f"Sector Variant {i}" for i in range(8))
    assert report["tasks"]["zeroshot"]["skillsfuture_norm"]["test"][
        "n_identity_queries_excluded"] == 8
    assert report["zeroshot_vocabulary"]["onet"]["onet_importance_min"] == 3.0


def test_onet_threshold_changes_vocabulary(tmp_path, built):
    raw, _, _ = built
    rep = curation.curate(raw, tmp_path / "c", onet_importance_min=4.0)
    base = T.load_task("onet_job2skill", "zeroshot", "test", root=tmp_path / "c")
    assert rep["tasks"]["zeroshot"]["onet_job2skill"]["test"]["n_positives"] == base.n_positives
    full = built[2]["tasks"]["zeroshot"]["onet_job2skill"]["test"]["n_positives"]
    assert base.n_positives < full


def test_deterministic_bytes(tmp_path, built):
    raw, out, _ = built
    curation.curate(raw, tmp_path / "again")
    assert _digest(out) == _digest(tmp_path / "again")


def test_smoke_caps(tmp_path, built):
    raw, out, _ = built
    rep = curation.curate(raw, tmp_path / "smoke", max_queries=3, max_targets=5)
    for family in T.FAMILIES:
        for name in T.list_tasks(family, root=tmp_path / "smoke"):
            for split in T.list_splits(name, family, tmp_path / "smoke"):
                small = T.load_task(name, family, split, root=tmp_path / "smoke")
                big = T.load_task(name, family, split, root=out)
                assert small.n_queries <= 3
                n_pos_targets = len({t for p in small.positives for t in p})
                assert small.n_targets == max(5, n_pos_targets) or small.n_targets == \
                    big.n_targets
                for q, pos in zip(small.queries, small.positives, strict=True):
                    ref = big.positives[big.queries.index(q)]
                    assert [small.targets[i] for i in pos] == [big.targets[i] for i in ref]
    assert rep["tasks"]["full"]["job2skill"]["test"]["uncapped"]["n_queries"] == N_OCCS
    assert rep["leakage"]["heldout_ok"]


def test_failure_leaves_previous_output_untouched(tmp_path, built, monkeypatch):
    raw, out, _ = built
    target = tmp_path / "cur"
    curation.curate(raw, target)
    before = _digest(target)
    monkeypatch.setattr(audit_lib, "drop_leaking_edges",
                        lambda name, edges, texts, pairs: (edges, 0))
    with pytest.raises(curation.LeakageError, match="heldout/"):
        curation.curate(raw, target)
    assert _digest(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cur"]  # no temp folder left


def test_malformed_raw_file_fails_before_writing(tmp_path, built):
    raw, _, _ = built
    bad = tmp_path / "raw"
    make_raw(bad)
    path = bad / src.RAW_FILES["house_test"]
    path.write_text(path.read_text() + "Extra sentence .,x,,no such skill\n")
    with pytest.raises(ValueError, match=r"house_test_annotations\.csv: data row \d+, "
                                         r"column 'label'"):
        curation.curate(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="occupation_split"):
        curation.curate(raw, tmp_path / "out", occupation_split=(0.5, 0.5, 0.5))
    with pytest.raises(FileNotFoundError):
        curation.curate(tmp_path / "missing", tmp_path / "out")


def test_split_helpers():
    ids = [f"id{i}" for i in range(100)]
    strata = {i: int(i[2:]) % 2 for i in ids}
    a = split_entities(ids, (0.6, 0.1, 0.3), 7, "x", strata)
    assert a == split_entities(list(reversed(ids)), (0.6, 0.1, 0.3), 7, "x", strata)
    assert sum(v == "train" for v in a.values()) == 60
    assert sum(v == "val" for v in a.values()) == 10
    assert a != split_entities(ids, (0.6, 0.1, 0.3), 8, "x", strata)
    assert sample_keys(["c", "a", "b"], 5, 0, "s") == [0, 1, 2]
    assert len(sample_keys(ids, 7, 0, "s")) == 7


def test_cap_dataset_keeps_positives():
    ds = T.RankingDataset("t", "full", "test", ["q1", "q2", "q3"], list("abcdefgh"),
                          [[0, 7], [3], [5, 6]])
    small = cap_dataset(ds, 1, 3, seed=0)
    assert small.n_queries == 1 and small.n_targets == 3
    (q,) = small.queries
    want = [ds.targets[i] for i in ds.positives[ds.queries.index(q)]]
    assert [small.targets[i] for i in small.positives[0]] == want
    assert cap_dataset(ds, None, 1, seed=0).n_targets == 5  # all positives are kept


def test_report_tables(built):
    _, _, report = built
    sizes, leakage, graphs = curation.report_tables(report)
    assert {"family", "task", "split", "n_queries", "n_targets"} <= set(sizes.columns)
    assert len(sizes) == sum(len(s) for t in report["tasks"].values() for s in t.values())
    assert (leakage.loc[leakage["family"] == "heldout", ["query_text_overlap",
                                                         "pair_overlap"]] == 0).all().all()
    assert sorted(graphs["graph"]) == sorted(T.GRAPHS)


def test_decisions_documented():
    assert len(curation.DECISIONS) >= 10
    assert any("skill_sim_esco" in d for d in curation.DECISIONS)
