"""Readers of the raw WorkBench source files (one small function per source).

Every reader takes the path of one raw file (as laid out by the fetch stage under ``raw_dir``,
see :data:`RAW_FILES`) and returns a pandas DataFrame with stripped string columns and
normalised column names, through the checked format readers of :mod:`uwe.data.readers`: bad
input is a ValueError naming the file, member, row and column.

Nothing here decides what a task is: that is :mod:`uwe.data.curation`.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from uwe.data.readers import (
    LabelIndex,
    check_not_empty,
    location,
    read_csv_file,
    read_xlsx_sheet,
    read_zip_csv,
    require_nonempty,
    resolve_labels,
    split_alt_labels,
)

#: Raw files, relative to ``raw_dir`` (the mirror's / fetch stage's layout).
RAW_FILES: dict[str, str] = {
    "esco_120_en": "esco_v1.2.0_en/ESCO dataset - v1.2.0 - classification - en - csv.zip",
    "esco_110_en": "esco_v1.1.0_en/ESCO dataset - v1.1.0 - classification - en - csv.zip",
    "jobbert_val": "jobbert_eval/titles.csv",
    "jobbert_test": "jobbert_eval/titles.test.csv",
    "house_val": "skill_extraction_decorte/house_validation_annotations.csv",
    "house_test": "skill_extraction_decorte/house_test_annotations.csv",
    "tech_val": "skill_extraction_decorte/tech_validation_annotations.csv",
    "tech_test": "skill_extraction_decorte/tech_test_annotations.csv",
    "techwolf_test": "skill_extraction_decorte/techwolf_test_annotations.csv",
    "skillskape_train": "skillskape/train.csv",
    "skillskape_dev": "skillskape/dev.csv",
    "skillskape_test": "skillskape/test.csv",
    "onet_occupations": "onet_29.2/xlsx/Occupation Data.xlsx",
    "onet_technology_skills": "onet_29.2/xlsx/Technology Skills.xlsx",
    "onet_skills": "onet_29.2/xlsx/Skills.xlsx",
    "onet_knowledge": "onet_29.2/xlsx/Knowledge.xlsx",
    "skillsfuture_unique": "skillsfuture/jobsandskills-skillsfuture-unique-skills-list.xlsx",
    "skillsfuture_tsc": "skillsfuture/jobsandskills-skillsfuture-tsc-to-unique-skills-mapping.xlsx",
}

ESCO_SKILLS = "skills_en.csv"
ESCO_OCCUPATIONS = "occupations_en.csv"
ESCO_120_OCC_SKILL = "occupationSkillRelations_en.csv"
ESCO_120_SKILL_SKILL = "skillSkillRelations_en.csv"
DECORTE_NON_LABELS = frozenset({"LABEL NOT PRESENT", "UNDERSPECIFIED"})
SKILLSKAPE_NON_LABELS = frozenset({"UNK"})
SKILLSFUTURE_UNIQUE_SHEET = "Unique Skills List"
SKILLSFUTURE_TSC_SHEET = "TSC to Unique Skill Mapping"


def raw_path(raw_dir: str | Path, key: str) -> Path:
    """Absolute path of raw file ``key`` (see :data:`RAW_FILES`) under ``raw_dir``."""
    if key not in RAW_FILES:
        raise ValueError(f"unknown raw file key {key!r}; known: {', '.join(RAW_FILES)}")
    return Path(raw_dir) / RAW_FILES[key]


# --------------------------------------------------------------------------------------------
# Generic helpers
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# ESCO
# --------------------------------------------------------------------------------------------


def _read_esco_concepts(zip_path: str | Path, member: str, extra: str, name: str) -> pd.DataFrame:
    """An ESCO concept table (skills or occupations): ``uri, label, alt_labels (list[str], file
    order), <name> (the file's column ``extra``), description`` ('' where the file has none);
    URIs unique."""
    where = location(zip_path, member)
    df = read_zip_csv(zip_path, member, ["conceptUri", "preferredLabel", "altLabels", extra],
                      optional=["description"])
    require_nonempty(df, ["conceptUri", "preferredLabel"], where)
    dup = df.index[df["conceptUri"].duplicated()]
    if len(dup):
        raise ValueError(f"{where}: data row {dup[0] + 1}, column 'conceptUri': duplicate URI "
                         f"{df.at[dup[0], 'conceptUri']!r}")
    out = pd.DataFrame({
        "uri": df["conceptUri"], "label": df["preferredLabel"],
        "alt_labels": [split_alt_labels(a) for a in df["altLabels"]],
        name: df[extra], "description": df["description"],
    })
    return check_not_empty(out, where)


def read_esco_skills(zip_path: str | Path, member: str = ESCO_SKILLS) -> pd.DataFrame:
    """ESCO skills: ``uri, label, alt_labels (list[str], file order), skill_type, description``
    (description '' where the file has none)."""
    return _read_esco_concepts(zip_path, member, "skillType", "skill_type")


def read_esco_occupations(zip_path: str | Path, member: str = ESCO_OCCUPATIONS) -> pd.DataFrame:
    """ESCO occupations: ``uri, label, alt_labels (list[str]), isco_group, description``
    (description '' where the file has none)."""
    return _read_esco_concepts(zip_path, member, "iscoGroup", "isco_group")


def read_esco_occupation_skill_relations(zip_path: str | Path, occupation_uris: Iterable[str],
                                         skill_uris: Iterable[str],
                                         member: str = ESCO_120_OCC_SKILL) -> pd.DataFrame:
    """Occupation-skill relations: ``occupation_uri, skill_uri, relation_type`` (every URI must
    resolve to a known occupation / skill; relationType must be essential or optional)."""
    where = location(zip_path, member)
    df = read_zip_csv(zip_path, member, ["occupationUri", "relationType", "skillUri"])
    require_nonempty(df, ["occupationUri", "relationType", "skillUri"], where)
    resolve_labels(df["occupationUri"], set(occupation_uris), where, "occupationUri")
    resolve_labels(df["skillUri"], set(skill_uris), where, "skillUri")
    resolve_labels(df["relationType"], {"essential", "optional"}, where, "relationType")
    out = pd.DataFrame({"occupation_uri": df["occupationUri"], "skill_uri": df["skillUri"],
                        "relation_type": df["relationType"]})
    return check_not_empty(out, where)


def read_esco_skill_skill_relations(zip_path: str | Path, skill_uris: Iterable[str],
                                    member: str = ESCO_120_SKILL_SKILL) -> pd.DataFrame:
    """Skill-skill relations: ``skill_uri`` (originalSkillUri), ``related_uri``,
    ``relation_type``."""
    where = location(zip_path, member)
    df = read_zip_csv(zip_path, member, ["originalSkillUri", "relationType", "relatedSkillUri"])
    require_nonempty(df, ["originalSkillUri", "relatedSkillUri"], where)
    known = set(skill_uris)
    resolve_labels(df["originalSkillUri"], known, where, "originalSkillUri")
    resolve_labels(df["relatedSkillUri"], known, where, "relatedSkillUri")
    out = pd.DataFrame({"skill_uri": df["originalSkillUri"], "related_uri": df["relatedSkillUri"],
                        "relation_type": df["relationType"]})
    return check_not_empty(out, where)


# --------------------------------------------------------------------------------------------
# Evaluation sets
# --------------------------------------------------------------------------------------------


def read_jobbert_titles(path: str | Path, occupation_uris: Iterable[str],
                        max_unresolved_fraction: float = 0.01) -> tuple[pd.DataFrame, dict]:
    """JobBERT evaluation titles: ``title, occupation_uri`` and ``{n_rows_raw,
    n_dropped_unresolved, unresolved: [[data_row, title, uri], ...]}``.

    The labels are ESCO v1.0.5 URIs; rows whose URI is not a known occupation are dropped and
    counted (one such row in titles.test.csv vs ESCO v1.1.0); more than one row and more than
    ``max_unresolved_fraction`` of the rows unresolved raises ValueError.
    """
    where = str(path)
    df = read_csv_file(path, ["vacancyTitle", "conceptUri"])
    require_nonempty(df, ["vacancyTitle", "conceptUri"], where)
    known = set(occupation_uris)
    ok = df["conceptUri"].isin(known)
    bad = df.index[~ok]
    info = {"n_rows_raw": int(len(df)), "n_dropped_unresolved": int(len(bad)),
            "unresolved": [[int(i) + 1, df.at[i, "vacancyTitle"], df.at[i, "conceptUri"]]
                           for i in bad]}
    if len(bad) > max(1.0, max_unresolved_fraction * len(df)):
        raise ValueError(f"{where}: {len(bad)} of {len(df)} rows have a conceptUri that resolves "
                         f"to no occupation (first: data row {bad[0] + 1}, column 'conceptUri', "
                         f"{df.at[bad[0], 'conceptUri']!r})")
    out = pd.DataFrame({"title": df.loc[ok, "vacancyTitle"],
                        "occupation_uri": df.loc[ok, "conceptUri"]}).reset_index(drop=True)
    return check_not_empty(out, where), info


def read_decorte_annotations(path: str | Path, skill_labels: LabelIndex) -> tuple[pd.DataFrame,
                                                                                   dict]:
    """HOUSE / TECH / TECHWOLF annotations: ``sentence, label`` for ESCO-labelled rows.

    ``label`` is resolved to the canonical ESCO preferred label via ``skill_labels``;
    "LABEL NOT PRESENT" / "UNDERSPECIFIED" rows are dropped (counted in the info dict);
    any other unresolvable label raises.
    """
    where = str(path)
    df = read_csv_file(path, ["sentence", "label"])
    require_nonempty(df, ["sentence", "label"], where)
    keep = ~df["label"].isin(DECORTE_NON_LABELS)
    lab = df.loc[keep]
    resolved = resolve_labels(lab["label"], skill_labels, where, "label")
    info = {"n_rows_raw": int(len(df)), "n_sentences_raw": int(df["sentence"].nunique()),
            "n_rows_non_label": int((~keep).sum())}
    out = pd.DataFrame({"sentence": lab["sentence"].tolist(), "label": resolved})
    return check_not_empty(out, where), info


def read_skillskape(path: str | Path, skill_labels: LabelIndex) -> tuple[pd.DataFrame, dict]:
    """SkillSkape split: ``sentence, labels (list[str] of canonical ESCO labels)`` for the
    sentences with >= 1 skill; the ``skills`` cell is a Python-list string ('UNK' = no skill)."""
    where = str(path)
    df = read_csv_file(path, ["sentence", "skills"])
    require_nonempty(df, ["sentence", "skills"], where)
    sentences: list[str] = []
    labels: list[list[str]] = []
    for i, (sent, cell) in enumerate(zip(df["sentence"], df["skills"], strict=True)):
        try:
            parsed = ast.literal_eval(cell)
        except (ValueError, SyntaxError) as exc:
            raise ValueError(f"{where}: data row {i + 1}, column 'skills': not a Python list "
                             f"literal: {cell[:80]!r} ({exc})") from None
        if not isinstance(parsed, list) or not all(isinstance(x, str) for x in parsed):
            raise ValueError(f"{where}: data row {i + 1}, column 'skills': expected a list of "
                             f"strings, got {cell[:80]!r}")
        row: list[str] = []
        for x in parsed:
            x = x.strip()
            if not x or x in SKILLSKAPE_NON_LABELS:
                continue
            got = skill_labels.get(x)
            if got is None:
                raise ValueError(f"{where}: data row {i + 1}, column 'skills': {x!r} resolves "
                                 f"to no known skill")
            if got not in row:
                row.append(got)
        if row:
            sentences.append(sent)
            labels.append(row)
    info = {"n_rows_raw": int(len(df)), "n_rows_without_skill": int(len(df) - len(sentences))}
    out = pd.DataFrame({"sentence": sentences, "labels": labels})
    return check_not_empty(out, where), info


# --------------------------------------------------------------------------------------------
# O*NET 29.2 (xlsx)
# --------------------------------------------------------------------------------------------


def read_onet_occupations(path: str | Path) -> pd.DataFrame:
    """O*NET Occupation Data: ``code, title``."""
    df = read_xlsx_sheet(path, ["O*NET-SOC Code", "Title"])
    where = f"{path}"
    require_nonempty(df, ["O*NET-SOC Code", "Title"], where, "row")
    dup = df.index[df["O*NET-SOC Code"].duplicated()]
    if len(dup):
        raise ValueError(f"{where}: row {dup[0]}, column 'O*NET-SOC Code': duplicate code")
    out = pd.DataFrame({"code": df["O*NET-SOC Code"], "title": df["Title"]})
    return check_not_empty(out.reset_index(drop=True), where)


def read_onet_ratings(path: str | Path, occupation_codes: Iterable[str]) -> pd.DataFrame:
    """O*NET Skills / Knowledge ratings: ``code, element_id, element_name, scale_id, value,
    recommend_suppress, not_relevant`` (codes must be known occupations)."""
    cols = ["O*NET-SOC Code", "Element ID", "Element Name", "Scale ID", "Data Value",
            "Recommend Suppress", "Not Relevant"]
    df = read_xlsx_sheet(path, cols, numeric=["Data Value"])
    where = f"{path}"
    require_nonempty(df, ["O*NET-SOC Code", "Element ID", "Element Name", "Scale ID"], where,
                      "row")
    resolve_labels(df["O*NET-SOC Code"], set(occupation_codes), where, "O*NET-SOC Code", "row")
    out = pd.DataFrame({
        "code": df["O*NET-SOC Code"], "element_id": df["Element ID"],
        "element_name": df["Element Name"], "scale_id": df["Scale ID"],
        "value": df["Data Value"], "recommend_suppress": df["Recommend Suppress"],
        "not_relevant": df["Not Relevant"],
    })
    return check_not_empty(out.reset_index(drop=True), where)


def read_onet_technology_skills(path: str | Path, occupation_codes: Iterable[str]) -> pd.DataFrame:
    """O*NET Technology Skills: ``code, example, commodity_title, hot_technology, in_demand``."""
    cols = ["O*NET-SOC Code", "Example", "Commodity Title", "Hot Technology", "In Demand"]
    df = read_xlsx_sheet(path, cols)
    where = f"{path}"
    require_nonempty(df, ["O*NET-SOC Code", "Example"], where, "row")
    resolve_labels(df["O*NET-SOC Code"], set(occupation_codes), where, "O*NET-SOC Code", "row")
    out = pd.DataFrame({
        "code": df["O*NET-SOC Code"], "example": df["Example"],
        "commodity_title": df["Commodity Title"], "hot_technology": df["Hot Technology"],
        "in_demand": df["In Demand"],
    })
    return check_not_empty(out.reset_index(drop=True), where)


# --------------------------------------------------------------------------------------------
# SkillsFuture (xlsx)
# --------------------------------------------------------------------------------------------


def read_skillsfuture_unique_skills(path: str | Path,
                                    sheet: str = SKILLSFUTURE_UNIQUE_SHEET) -> pd.DataFrame:
    """SkillsFuture unique skills list: ``title, skill_type`` (file order, duplicates kept)."""
    df = read_xlsx_sheet(path, ["skill_title", "skill_type"], sheet=sheet)
    where = f"{path} (sheet {sheet!r})"
    require_nonempty(df, ["skill_title"], where, "row")
    out = pd.DataFrame({"title": df["skill_title"], "skill_type": df["skill_type"]})
    return check_not_empty(out.reset_index(drop=True), where)


def read_skillsfuture_tsc_mapping(path: str | Path, unique_titles: LabelIndex,
                                  sheet: str = SKILLSFUTURE_TSC_SHEET) -> pd.DataFrame:
    """TSC -> unique skill map: ``tsc_title, unique_title`` (canonical unique-list title),
    ``sector``. Every skill_2k_title must resolve to the unique skills list."""
    df = read_xlsx_sheet(path, ["sector_title", "skill_11k_title", "skill_2k_title"], sheet=sheet)
    where = f"{path} (sheet {sheet!r})"
    require_nonempty(df, ["skill_11k_title", "skill_2k_title"], where, "row")
    resolved = resolve_labels(df["skill_2k_title"], unique_titles, where, "skill_2k_title", "row")
    out = pd.DataFrame({"tsc_title": df["skill_11k_title"].tolist(), "unique_title": resolved,
                        "sector": df["sector_title"].tolist()})
    return check_not_empty(out, where)
