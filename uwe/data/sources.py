"""Readers of the raw WorkBench source files (one small function per source).

Every reader takes the path of one raw file (as laid out by the fetch stage under ``raw_dir``,
see :data:`RAW_FILES`) and returns a pandas DataFrame with stripped string columns and
normalised column names. Malformed input raises ValueError naming the file (and the member
inside a zip) and the row / column: a missing member, sheet or column, an empty or unparsable
required cell, a label or URI in a relation file that resolves to no known entity, or an
empty result. Row numbers in messages: ``data row N`` = N-th record after the header (CSV);
``row N`` = the spreadsheet row (xlsx, header = row 1).

Nothing here decides what a task is: that is :mod:`uwe.data.curation`.
"""

from __future__ import annotations

import ast
import warnings
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import pandas as pd

from uwe.data.tasks import normalize_text

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


def _where(path: str | Path, member: str | None = None) -> str:
    return f"{path}" + (f" (member {member!r})" if member else "")


def _check_columns(df: pd.DataFrame, columns: Sequence[str], where: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{where}: missing column(s) {missing}; columns: {list(df.columns)}")


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"raw file not found: {path} (run the fetch stage)")


def read_zip_csv(path: str | Path, member: str, columns: Sequence[str],
                 optional: Sequence[str] = ()) -> pd.DataFrame:
    """One CSV member of a zip, all cells as stripped strings ('' for empty); ``optional``
    columns are read when present and '' otherwise."""
    path = Path(path)
    _check_file(path)
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise ValueError(f"{path}: not a zip file ({exc})") from exc
    with zf:
        if member not in zf.namelist():
            raise ValueError(f"{path}: no member {member!r}; members: {sorted(zf.namelist())}")
        with zf.open(member) as fh:
            df = pd.read_csv(fh, dtype=str, keep_default_na=False)
    where = _where(path, member)
    _check_columns(df, columns, where)
    for col in optional:
        if col not in df.columns:
            df[col] = ""
    return df[[*columns, *optional]].apply(lambda s: s.str.strip())


def read_csv_file(path: str | Path, columns: Sequence[str]) -> pd.DataFrame:
    """A CSV file, the named columns as stripped strings ('' for empty)."""
    path = Path(path)
    _check_file(path)
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    _check_columns(df, columns, str(path))
    return df[list(columns)].apply(lambda s: s.str.strip())


def _cell_str(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def read_xlsx_sheet(path: str | Path, columns: Sequence[str], sheet: str | None = None,
                    numeric: Sequence[str] = ()) -> pd.DataFrame:
    """The named columns of one sheet (default: the first) of an xlsx file.

    Header = first row. Text columns become stripped strings ('' for empty); ``numeric``
    columns become floats (ValueError naming the row on a non-number).
    """
    import openpyxl  # heavy import, only needed here

    path = Path(path)
    _check_file(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Workbook contains no default style"
        try:
            wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
        except Exception as exc:  # zipfile / xml errors from a corrupt file
            raise ValueError(f"{path}: cannot open as xlsx ({exc})") from exc
    try:
        if sheet is None:
            ws = wb.worksheets[0]
        elif sheet in wb.sheetnames:
            ws = wb[sheet]
        else:
            raise ValueError(f"{path}: no sheet {sheet!r}; sheets: {wb.sheetnames}")
        where = f"{path} (sheet {ws.title!r})"
        rows = ws.iter_rows(values_only=True)
        header = next(rows, None)
        if header is None:
            raise ValueError(f"{where}: empty sheet")
        names = [_cell_str(h) for h in header]
        missing = [c for c in columns if c not in names]
        if missing:
            raise ValueError(f"{where}: missing column(s) {missing}; columns: "
                             f"{[n for n in names if n]}")
        idx = [names.index(c) for c in columns]
        data: list[tuple] = []
        excel_rows: list[int] = []
        for r, row in enumerate(rows, start=2):
            if row is None or all(v is None for v in row):
                continue
            data.append(tuple(row[i] if i < len(row) else None for i in idx))
            excel_rows.append(r)
    finally:
        wb.close()
    out: dict[str, list] = {}
    for k, col in enumerate(columns):
        raw = [row[k] for row in data]
        if col in numeric:
            vals = []
            for r, v in zip(excel_rows, raw, strict=True):
                try:
                    vals.append(float(v))
                except (TypeError, ValueError):
                    raise ValueError(f"{where}: row {r}, column {col!r}: not a number: {v!r}"
                                     ) from None
            out[col] = vals
        else:
            out[col] = [_cell_str(v) for v in raw]
    return pd.DataFrame(out, index=excel_rows, columns=list(columns))


def _require_nonempty(df: pd.DataFrame, columns: Iterable[str], where: str,
                      row_label: str = "data row") -> None:
    for col in columns:
        bad = df.index[df[col] == ""]
        if len(bad):
            raise ValueError(f"{where}: {row_label} {_row(bad[0], row_label)}, column {col!r}: "
                             f"empty value")


def _row(label: object, row_label: str) -> int:
    # CSV frames keep a RangeIndex (0-based record number); xlsx frames are indexed by sheet row.
    return int(label) + 1 if row_label == "data row" else int(label)


def _check_not_empty(df: pd.DataFrame, where: str) -> pd.DataFrame:
    if len(df) == 0:
        raise ValueError(f"{where}: no usable rows (empty result)")
    return df


def _resolve(values: pd.Series, known: Mapping[str, str] | set[str] | frozenset[str], where: str,
             column: str, row_label: str = "data row") -> list[str]:
    """Map every value to a known entity; ValueError naming the first unresolvable row."""
    out = []
    for label, v in values.items():
        got = (v if v in known else None) if isinstance(known, (set, frozenset)) else known.get(v)
        if got is None:
            raise ValueError(f"{where}: {row_label} {_row(label, row_label)}, "
                             f"column {column!r}: {v!r} resolves to no known entity")
        out.append(got)
    return out


class LabelIndex(Mapping[str, str]):
    """Resolve a label to the canonical label of a vocabulary: exact match first, then the
    normalised form (casefold + collapsed whitespace) when it is unambiguous."""

    def __init__(self, labels: Iterable[str]):
        self._exact: dict[str, str] = {}
        norm: dict[str, str | None] = {}
        for lab in labels:
            self._exact[lab] = lab
            key = normalize_text(lab)
            norm[key] = lab if key not in norm or norm[key] == lab else None
        self._norm = norm

    def get(self, label: str, default: str | None = None) -> str | None:  # type: ignore[override]
        label = label.strip()
        if label in self._exact:
            return label
        got = self._norm.get(normalize_text(label))
        return got if got is not None else default

    def __getitem__(self, label: str) -> str:
        got = self.get(label)
        if got is None:
            raise KeyError(label)
        return got

    def __contains__(self, label: object) -> bool:
        return isinstance(label, str) and self.get(label) is not None

    def __iter__(self):
        return iter(self._exact)

    def __len__(self) -> int:
        return len(self._exact)


def _split_alt_labels(text: str) -> list[str]:
    out: list[str] = []
    for part in text.split("\n"):
        part = part.strip()
        if part and part not in out:
            out.append(part)
    return out


# --------------------------------------------------------------------------------------------
# ESCO
# --------------------------------------------------------------------------------------------


def read_esco_skills(zip_path: str | Path, member: str = ESCO_SKILLS) -> pd.DataFrame:
    """ESCO skills: ``uri, label, alt_labels (list[str], file order), skill_type, description``
    (description '' where the file has none)."""
    where = _where(zip_path, member)
    df = read_zip_csv(zip_path, member, ["conceptUri", "preferredLabel", "altLabels", "skillType"],
                      optional=["description"])
    _require_nonempty(df, ["conceptUri", "preferredLabel"], where)
    dup = df.index[df["conceptUri"].duplicated()]
    if len(dup):
        raise ValueError(f"{where}: data row {dup[0] + 1}, column 'conceptUri': duplicate URI "
                         f"{df.at[dup[0], 'conceptUri']!r}")
    out = pd.DataFrame({
        "uri": df["conceptUri"], "label": df["preferredLabel"],
        "alt_labels": [_split_alt_labels(a) for a in df["altLabels"]],
        "skill_type": df["skillType"], "description": df["description"],
    })
    return _check_not_empty(out, where)


def read_esco_occupations(zip_path: str | Path, member: str = ESCO_OCCUPATIONS) -> pd.DataFrame:
    """ESCO occupations: ``uri, label, alt_labels (list[str]), isco_group, description``
    (description '' where the file has none)."""
    where = _where(zip_path, member)
    df = read_zip_csv(zip_path, member, ["conceptUri", "preferredLabel", "altLabels", "iscoGroup"],
                      optional=["description"])
    _require_nonempty(df, ["conceptUri", "preferredLabel"], where)
    dup = df.index[df["conceptUri"].duplicated()]
    if len(dup):
        raise ValueError(f"{where}: data row {dup[0] + 1}, column 'conceptUri': duplicate URI "
                         f"{df.at[dup[0], 'conceptUri']!r}")
    out = pd.DataFrame({
        "uri": df["conceptUri"], "label": df["preferredLabel"],
        "alt_labels": [_split_alt_labels(a) for a in df["altLabels"]],
        "isco_group": df["iscoGroup"], "description": df["description"],
    })
    return _check_not_empty(out, where)


def read_esco_occupation_skill_relations(zip_path: str | Path, occupation_uris: Iterable[str],
                                         skill_uris: Iterable[str],
                                         member: str = ESCO_120_OCC_SKILL) -> pd.DataFrame:
    """Occupation-skill relations: ``occupation_uri, skill_uri, relation_type`` (every URI must
    resolve to a known occupation / skill; relationType must be essential or optional)."""
    where = _where(zip_path, member)
    df = read_zip_csv(zip_path, member, ["occupationUri", "relationType", "skillUri"])
    _require_nonempty(df, ["occupationUri", "relationType", "skillUri"], where)
    _resolve(df["occupationUri"], set(occupation_uris), where, "occupationUri")
    _resolve(df["skillUri"], set(skill_uris), where, "skillUri")
    _resolve(df["relationType"], {"essential", "optional"}, where, "relationType")
    out = pd.DataFrame({"occupation_uri": df["occupationUri"], "skill_uri": df["skillUri"],
                        "relation_type": df["relationType"]})
    return _check_not_empty(out, where)


def read_esco_skill_skill_relations(zip_path: str | Path, skill_uris: Iterable[str],
                                    member: str = ESCO_120_SKILL_SKILL) -> pd.DataFrame:
    """Skill-skill relations: ``skill_uri`` (originalSkillUri), ``related_uri``,
    ``relation_type``."""
    where = _where(zip_path, member)
    df = read_zip_csv(zip_path, member, ["originalSkillUri", "relationType", "relatedSkillUri"])
    _require_nonempty(df, ["originalSkillUri", "relatedSkillUri"], where)
    known = set(skill_uris)
    _resolve(df["originalSkillUri"], known, where, "originalSkillUri")
    _resolve(df["relatedSkillUri"], known, where, "relatedSkillUri")
    out = pd.DataFrame({"skill_uri": df["originalSkillUri"], "related_uri": df["relatedSkillUri"],
                        "relation_type": df["relationType"]})
    return _check_not_empty(out, where)


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
    _require_nonempty(df, ["vacancyTitle", "conceptUri"], where)
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
    return _check_not_empty(out, where), info


def read_decorte_annotations(path: str | Path, skill_labels: LabelIndex) -> tuple[pd.DataFrame,
                                                                                   dict]:
    """HOUSE / TECH / TECHWOLF annotations: ``sentence, label`` for ESCO-labelled rows.

    ``label`` is resolved to the canonical ESCO preferred label via ``skill_labels``;
    "LABEL NOT PRESENT" / "UNDERSPECIFIED" rows are dropped (counted in the info dict);
    any other unresolvable label raises.
    """
    where = str(path)
    df = read_csv_file(path, ["sentence", "label"])
    _require_nonempty(df, ["sentence", "label"], where)
    keep = ~df["label"].isin(DECORTE_NON_LABELS)
    lab = df.loc[keep]
    resolved = _resolve(lab["label"], skill_labels, where, "label")
    info = {"n_rows_raw": int(len(df)), "n_sentences_raw": int(df["sentence"].nunique()),
            "n_rows_non_label": int((~keep).sum())}
    out = pd.DataFrame({"sentence": lab["sentence"].tolist(), "label": resolved})
    return _check_not_empty(out, where), info


def read_skillskape(path: str | Path, skill_labels: LabelIndex) -> tuple[pd.DataFrame, dict]:
    """SkillSkape split: ``sentence, labels (list[str] of canonical ESCO labels)`` for the
    sentences with >= 1 skill; the ``skills`` cell is a Python-list string ('UNK' = no skill)."""
    where = str(path)
    df = read_csv_file(path, ["sentence", "skills"])
    _require_nonempty(df, ["sentence", "skills"], where)
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
    return _check_not_empty(out, where), info


# --------------------------------------------------------------------------------------------
# O*NET 29.2 (xlsx)
# --------------------------------------------------------------------------------------------


def read_onet_occupations(path: str | Path) -> pd.DataFrame:
    """O*NET Occupation Data: ``code, title``."""
    df = read_xlsx_sheet(path, ["O*NET-SOC Code", "Title"])
    where = f"{path}"
    _require_nonempty(df, ["O*NET-SOC Code", "Title"], where, "row")
    dup = df.index[df["O*NET-SOC Code"].duplicated()]
    if len(dup):
        raise ValueError(f"{where}: row {dup[0]}, column 'O*NET-SOC Code': duplicate code")
    out = pd.DataFrame({"code": df["O*NET-SOC Code"], "title": df["Title"]})
    return _check_not_empty(out.reset_index(drop=True), where)


def read_onet_ratings(path: str | Path, occupation_codes: Iterable[str]) -> pd.DataFrame:
    """O*NET Skills / Knowledge ratings: ``code, element_id, element_name, scale_id, value,
    recommend_suppress, not_relevant`` (codes must be known occupations)."""
    cols = ["O*NET-SOC Code", "Element ID", "Element Name", "Scale ID", "Data Value",
            "Recommend Suppress", "Not Relevant"]
    df = read_xlsx_sheet(path, cols, numeric=["Data Value"])
    where = f"{path}"
    _require_nonempty(df, ["O*NET-SOC Code", "Element ID", "Element Name", "Scale ID"], where,
                      "row")
    _resolve(df["O*NET-SOC Code"], set(occupation_codes), where, "O*NET-SOC Code", "row")
    out = pd.DataFrame({
        "code": df["O*NET-SOC Code"], "element_id": df["Element ID"],
        "element_name": df["Element Name"], "scale_id": df["Scale ID"],
        "value": df["Data Value"], "recommend_suppress": df["Recommend Suppress"],
        "not_relevant": df["Not Relevant"],
    })
    return _check_not_empty(out.reset_index(drop=True), where)


def read_onet_technology_skills(path: str | Path, occupation_codes: Iterable[str]) -> pd.DataFrame:
    """O*NET Technology Skills: ``code, example, commodity_title, hot_technology, in_demand``."""
    cols = ["O*NET-SOC Code", "Example", "Commodity Title", "Hot Technology", "In Demand"]
    df = read_xlsx_sheet(path, cols)
    where = f"{path}"
    _require_nonempty(df, ["O*NET-SOC Code", "Example"], where, "row")
    _resolve(df["O*NET-SOC Code"], set(occupation_codes), where, "O*NET-SOC Code", "row")
    out = pd.DataFrame({
        "code": df["O*NET-SOC Code"], "example": df["Example"],
        "commodity_title": df["Commodity Title"], "hot_technology": df["Hot Technology"],
        "in_demand": df["In Demand"],
    })
    return _check_not_empty(out.reset_index(drop=True), where)


# --------------------------------------------------------------------------------------------
# SkillsFuture (xlsx)
# --------------------------------------------------------------------------------------------


def read_skillsfuture_unique_skills(path: str | Path,
                                    sheet: str = SKILLSFUTURE_UNIQUE_SHEET) -> pd.DataFrame:
    """SkillsFuture unique skills list: ``title, skill_type`` (file order, duplicates kept)."""
    df = read_xlsx_sheet(path, ["skill_title", "skill_type"], sheet=sheet)
    where = f"{path} (sheet {sheet!r})"
    _require_nonempty(df, ["skill_title"], where, "row")
    out = pd.DataFrame({"title": df["skill_title"], "skill_type": df["skill_type"]})
    return _check_not_empty(out.reset_index(drop=True), where)


def read_skillsfuture_tsc_mapping(path: str | Path, unique_titles: LabelIndex,
                                  sheet: str = SKILLSFUTURE_TSC_SHEET) -> pd.DataFrame:
    """TSC -> unique skill map: ``tsc_title, unique_title`` (canonical unique-list title),
    ``sector``. Every skill_2k_title must resolve to the unique skills list."""
    df = read_xlsx_sheet(path, ["sector_title", "skill_11k_title", "skill_2k_title"], sheet=sheet)
    where = f"{path} (sheet {sheet!r})"
    _require_nonempty(df, ["skill_11k_title", "skill_2k_title"], where, "row")
    resolved = _resolve(df["skill_2k_title"], unique_titles, where, "skill_2k_title", "row")
    out = pd.DataFrame({"tsc_title": df["skill_11k_title"].tolist(), "unique_title": resolved,
                        "sector": df["sector_title"].tolist()})
    return _check_not_empty(out, where)
