"""Readers of the raw files, on tiny files written under tmp_path (no mirror, no network)."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import openpyxl
import pytest

from uwe.data import sources as src

SKILL_COLS = ["conceptType", "conceptUri", "skillType", "reuseLevel", "preferredLabel",
              "altLabels", "description"]


def _csv_text(header: list[str], rows: list[list[str]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def write_zip(path: Path, members: dict[str, str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in members.items():
            zf.writestr(name, text)
    return path


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_csv_text(header, rows), encoding="utf-8")
    return path


def write_xlsx(path: Path, sheets: dict[str, list[list[object]]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for name, rows in sheets.items():
        ws = wb.create_sheet(name)
        for row in rows:
            ws.append(row)
    wb.save(path)
    return path


def _skills_zip(tmp_path: Path, extra_members: dict[str, str] | None = None,
                skill_rows: list[list[str]] | None = None) -> Path:
    rows = skill_rows or [
        ["KSC", "u:s1", "knowledge", "", " python ", "py\n  py3 \n\npy", "d"],
        ["KSC", "u:s2", "skill/competence", "", "manage staff", "", "d"],
    ]
    members = {"skills_en.csv": _csv_text(SKILL_COLS, rows), **(extra_members or {})}
    return write_zip(tmp_path / "esco.zip", members)


def test_read_esco_skills_strips_and_splits_alt_labels(tmp_path):
    df = src.read_esco_skills(_skills_zip(tmp_path))
    assert df["uri"].tolist() == ["u:s1", "u:s2"]
    assert df["label"].tolist() == ["python", "manage staff"]
    assert df.loc[0, "alt_labels"] == ["py", "py3"]
    assert df.loc[1, "alt_labels"] == []


def test_missing_member_and_column_are_named(tmp_path):
    path = _skills_zip(tmp_path)
    with pytest.raises(ValueError, match="occupations_en.csv"):
        src.read_esco_occupations(path)
    bad = write_zip(tmp_path / "bad.zip", {"skills_en.csv": _csv_text(
        ["conceptUri", "preferredLabel", "skillType"], [["u:1", "x", "knowledge"]])})
    with pytest.raises(ValueError, match=r"bad\.zip.*skills_en\.csv.*altLabels"):
        src.read_esco_skills(bad)


def test_duplicate_uri_and_empty_label_name_the_row(tmp_path):
    path = _skills_zip(tmp_path, skill_rows=[["K", "u:1", "k", "", "a", "", ""],
                                             ["K", "u:1", "k", "", "b", "", ""]])
    with pytest.raises(ValueError, match=r"data row 2.*conceptUri"):
        src.read_esco_skills(path)
    path = _skills_zip(tmp_path, skill_rows=[["K", "u:1", "k", "", "a", "", ""],
                                             ["K", "u:2", "k", "", " ", "", ""]])
    with pytest.raises(ValueError, match=r"data row 2, column 'preferredLabel'"):
        src.read_esco_skills(path)


def test_empty_result_raises(tmp_path):
    path = write_zip(tmp_path / "e.zip", {"skills_en.csv": _csv_text(SKILL_COLS, [])})
    with pytest.raises(ValueError, match="empty result"):
        src.read_esco_skills(path)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="fetch"):
        src.read_esco_skills(tmp_path / "nope.zip")


def test_relations_with_unknown_uri_name_member_row_column(tmp_path):
    rel = _csv_text(["occupationUri", "relationType", "skillType", "skillUri"],
                    [["u:o1", "essential", "knowledge", "u:s1"],
                     ["u:o1", "optional", "knowledge", "u:s9"]])
    path = write_zip(tmp_path / "r.zip", {src.ESCO_120_OCC_SKILL: rel})
    with pytest.raises(ValueError, match=r"occupationSkillRelations_en\.csv.*data row 2.*"
                                         r"skillUri.*u:s9"):
        src.read_esco_occupation_skill_relations(path, ["u:o1"], ["u:s1"])
    ok = src.read_esco_occupation_skill_relations(path, ["u:o1"], ["u:s1", "u:s9"])
    assert ok["relation_type"].tolist() == ["essential", "optional"]
    bad_type = _csv_text(["occupationUri", "relationType", "skillUri"],
                         [["u:o1", "sometimes", "u:s1"]])
    path = write_zip(tmp_path / "r2.zip", {src.ESCO_120_OCC_SKILL: bad_type})
    with pytest.raises(ValueError, match="relationType"):
        src.read_esco_occupation_skill_relations(path, ["u:o1"], ["u:s1"])


def test_skill_skill_relations(tmp_path):
    rel = _csv_text(["originalSkillUri", "originalSkillType", "relationType", "relatedSkillType",
                     "relatedSkillUri"], [["u:a", "k", "optional", "k", "u:b"]])
    path = write_zip(tmp_path / "s.zip", {src.ESCO_120_SKILL_SKILL: rel})
    df = src.read_esco_skill_skill_relations(path, ["u:a", "u:b"])
    assert df[["skill_uri", "related_uri"]].values.tolist() == [["u:a", "u:b"]]
    with pytest.raises(ValueError, match="relatedSkillUri"):
        src.read_esco_skill_skill_relations(path, ["u:a"])


def test_jobbert_drops_and_counts_unresolved(tmp_path):
    rows = [[str(i), f"title {i}", "u:o1"] for i in range(200)] + [["200", "odd", "u:gone"]]
    path = write_csv(tmp_path / "titles.csv", ["", "vacancyTitle", "conceptUri"], rows)
    df, info = src.read_jobbert_titles(path, ["u:o1"])
    assert len(df) == 200 and info["n_rows_raw"] == 201
    assert info["n_dropped_unresolved"] == 1
    assert info["unresolved"] == [[201, "odd", "u:gone"]]
    rows += [["201", "odd 2", "u:gone"], ["202", "odd 3", "u:gone"], ["203", "odd 4", "u:x"]]
    path = write_csv(tmp_path / "titles2.csv", ["", "vacancyTitle", "conceptUri"], rows)
    with pytest.raises(ValueError, match=r"titles2\.csv: 4 of 204 rows.*data row 201.*conceptUri"):
        src.read_jobbert_titles(path, ["u:o1"])


def test_decorte_labels_resolve_and_non_labels_are_dropped(tmp_path):
    header = ["sentence", "span", "sub_span", "label"]
    rows = [["We code.", "code", "", "Python  "],
            ["We code.", "we", "", "LABEL NOT PRESENT"],
            ["Lead people.", "lead", "", "UNDERSPECIFIED"],
            ["Lead people.", "lead", "", "manage   STAFF"]]
    path = write_csv(tmp_path / "house_test_annotations.csv", header, rows)
    index = src.LabelIndex(["python", "manage staff"])
    df, info = src.read_decorte_annotations(path, index)
    assert df.values.tolist() == [["We code.", "python"], ["Lead people.", "manage staff"]]
    assert info == {"n_rows_raw": 4, "n_sentences_raw": 2, "n_rows_non_label": 2}
    rows.append(["Other.", "x", "", "astrophysics"])
    path = write_csv(tmp_path / "bad.csv", header, rows)
    with pytest.raises(ValueError, match=r"bad\.csv: data row 5, column 'label'.*astrophysics"):
        src.read_decorte_annotations(path, index)


def test_label_index_exact_then_normalised_unambiguous():
    index = src.LabelIndex(["SQL", "sql ", "Java"])
    assert index.get("SQL") == "SQL"
    assert index.get("java") == "Java"
    assert index.get("Sql") is None  # two labels share the normalised form
    assert "JAVA" in index and "c++" not in index


def test_skillskape_parses_python_lists(tmp_path):
    rows = [["0", "A sentence.", "['python', 'UNK', 'python']"],
            ["1", "Nothing here.", "['UNK']"],
            ["2", "Two skills.", "[\"manage staff\", 'Python']"]]
    path = write_csv(tmp_path / "test.csv", ["", "sentence", "skills"], rows)
    df, info = src.read_skillskape(path, src.LabelIndex(["python", "manage staff"]))
    assert df["sentence"].tolist() == ["A sentence.", "Two skills."]
    assert df["labels"].tolist() == [["python"], ["manage staff", "python"]]
    assert info == {"n_rows_raw": 3, "n_rows_without_skill": 1}
    bad = write_csv(tmp_path / "bad.csv", ["", "sentence", "skills"], [["0", "s", "[python"]])
    with pytest.raises(ValueError, match=r"bad\.csv: data row 1, column 'skills'"):
        src.read_skillskape(bad, src.LabelIndex(["python"]))
    bad = write_csv(tmp_path / "bad2.csv", ["", "sentence", "skills"], [["0", "s", "{'a': 1}"]])
    with pytest.raises(ValueError, match="list of strings"):
        src.read_skillskape(bad, src.LabelIndex(["python"]))
    bad = write_csv(tmp_path / "bad3.csv", ["", "sentence", "skills"], [["0", "s", "['zzz']"]])
    with pytest.raises(ValueError, match="zzz"):
        src.read_skillskape(bad, src.LabelIndex(["python"]))


ONET_RATING_HEADER = ["O*NET-SOC Code", "Title", "Element ID", "Element Name", "Scale ID",
                      "Scale Name", "Data Value", "N", "Standard Error", "Lower CI Bound",
                      "Upper CI Bound", "Recommend Suppress", "Not Relevant", "Date",
                      "Domain Source"]


def test_onet_readers(tmp_path):
    occ = write_xlsx(tmp_path / "Occupation Data.xlsx", {"Sheet1": [
        ["O*NET-SOC Code", "Title", "Description"],
        ["11-1011.00", "Chief Executives ", "x"],
        [None, None, None],
        ["15-1252.00", "Software Developers", "y"]]})
    df = src.read_onet_occupations(occ)
    assert df.values.tolist() == [["11-1011.00", "Chief Executives"],
                                  ["15-1252.00", "Software Developers"]]
    ratings = write_xlsx(tmp_path / "Skills.xlsx", {"Skills": [
        ONET_RATING_HEADER,
        ["11-1011.00", "CE", "2.A.1.a", "Reading Comprehension", "IM", "Importance", 4.12,
         8, 0.1, 3.8, 4.3, "N", None, "08/2023", "Analyst"],
        ["15-1252.00", "SD", "2.A.1.a", "Reading Comprehension", "LV", "Level", 3,
         8, 0.1, 3.8, 4.3, "N", "N", "08/2023", "Analyst"]]})
    df = src.read_onet_ratings(ratings, {"11-1011.00", "15-1252.00"})
    assert df["value"].tolist() == [4.12, 3.0]
    assert df["not_relevant"].tolist() == ["", "N"]
    with pytest.raises(ValueError, match=r"row 3, column 'O\*NET-SOC Code'"):
        src.read_onet_ratings(ratings, {"11-1011.00"})
    bad = write_xlsx(tmp_path / "Knowledge.xlsx", {"K": [
        ONET_RATING_HEADER,
        ["11-1011.00", "CE", "2.C.1.a", "Admin", "IM", "Importance", "n/a",
         8, 0.1, 3.8, 4.3, "N", None, "08/2023", "Analyst"]]})
    with pytest.raises(ValueError, match=r"row 2, column 'Data Value': not a number"):
        src.read_onet_ratings(bad, {"11-1011.00"})
    tech = write_xlsx(tmp_path / "Technology Skills.xlsx", {"T": [
        ["O*NET-SOC Code", "Title", "Example", "Commodity Code", "Commodity Title",
         "Hot Technology", "In Demand"],
        ["15-1252.00", "SD", "Python", 43232701, "Development software", "Y", "Y"]]})
    df = src.read_onet_technology_skills(tech, {"15-1252.00"})
    assert df.iloc[0].to_dict() == {"code": "15-1252.00", "example": "Python",
                                    "commodity_title": "Development software",
                                    "hot_technology": "Y", "in_demand": "Y"}
    nocol = write_xlsx(tmp_path / "x.xlsx", {"T": [["O*NET-SOC Code", "Title"], ["a", "b"]]})
    with pytest.raises(ValueError, match=r"x\.xlsx.*missing column.*Example"):
        src.read_onet_technology_skills(nocol, {"a"})


def test_skillsfuture_readers(tmp_path):
    uniq = write_xlsx(tmp_path / "u.xlsx", {
        "Legend": [[None, "Unique Skills List tab"]],
        "Unique Skills List": [["skill_title", "skill_description", "skill_type",
                                "Emerging Skills"],
                               ["2D Animation", "d", "tsc", False],
                               ["Budgeting", "d", "tsc", False],
                               ["Budgeting", "d", "ccs", False]]})
    df = src.read_skillsfuture_unique_skills(uniq)
    assert df["title"].tolist() == ["2D Animation", "Budgeting", "Budgeting"]
    mp = write_xlsx(tmp_path / "m.xlsx", {
        "Legend": [["x"]],
        "TSC to Unique Skill Mapping": [
            ["sector_title", "skill_11k_title", "proficiency_level", "tsc_code", "skill_type",
             "Emerging Skills", "skill_2k_title"],
            ["Media", "Animation in 2D", 3, "MED-1", "tsc", True, "2d animation"],
            ["Finance", "Budget Planning", 2, "FIN-1", "tsc", False, "Budgeting"]]})
    index = src.LabelIndex(df["title"])
    out = src.read_skillsfuture_tsc_mapping(mp, index)
    assert out[["tsc_title", "unique_title"]].values.tolist() == [
        ["Animation in 2D", "2D Animation"], ["Budget Planning", "Budgeting"]]
    with pytest.raises(ValueError, match=r"m\.xlsx.*row 3, column 'skill_2k_title'"):
        src.read_skillsfuture_tsc_mapping(mp, src.LabelIndex(["2D Animation"]))
    with pytest.raises(ValueError, match="no sheet 'Nope'"):
        src.read_skillsfuture_unique_skills(uniq, sheet="Nope")


def test_raw_path_layout(tmp_path):
    p = src.raw_path(tmp_path, "esco_120_en")
    name = "ESCO dataset - v1.2.0 - classification - en - csv.zip"
    assert p == tmp_path / "esco_v1.2.0_en" / name
    with pytest.raises(ValueError, match="unknown raw file key"):
        src.raw_path(tmp_path, "nope")
