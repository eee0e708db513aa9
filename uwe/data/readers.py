"""Checked readers of the raw file formats (CSV inside a zip, CSV, xlsx sheets) and the label
resolution every source reader shares (:mod:`uwe.data.sources`).

Malformed input raises ValueError naming the file (and the member inside a zip) and the row /
column: a missing member, sheet or column, an empty or unparsable required cell, a label or
URI that resolves to no known entity, or an empty result. Row numbers in messages: ``data row
N`` = N-th record after the header (CSV); ``row N`` = the spreadsheet row (xlsx, header = row 1).
"""

from __future__ import annotations

import warnings
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import pandas as pd

from uwe.data.tasks import normalize_text


def location(path: str | Path, member: str | None = None) -> str:
    return f"{path}" + (f" (member {member!r})" if member else "")


def check_columns(df: pd.DataFrame, columns: Sequence[str], where: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{where}: missing column(s) {missing}; columns: {list(df.columns)}")


def check_file(path: Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"raw file not found: {path} (run the fetch stage)")


def read_zip_csv(path: str | Path, member: str, columns: Sequence[str],
                 optional: Sequence[str] = ()) -> pd.DataFrame:
    """One CSV member of a zip, all cells as stripped strings ('' for empty); ``optional``
    columns are read when present and '' otherwise."""
    path = Path(path)
    check_file(path)
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise ValueError(f"{path}: not a zip file ({exc})") from exc
    with zf:
        if member not in zf.namelist():
            raise ValueError(f"{path}: no member {member!r}; members: {sorted(zf.namelist())}")
        with zf.open(member) as fh:
            df = pd.read_csv(fh, dtype=str, keep_default_na=False)
    where = location(path, member)
    check_columns(df, columns, where)
    for col in optional:
        if col not in df.columns:
            df[col] = ""
    return df[[*columns, *optional]].apply(lambda s: s.str.strip())


def read_csv_file(path: str | Path, columns: Sequence[str]) -> pd.DataFrame:
    """A CSV file, the named columns as stripped strings ('' for empty)."""
    path = Path(path)
    check_file(path)
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    check_columns(df, columns, str(path))
    return df[list(columns)].apply(lambda s: s.str.strip())


def cell_str(value: object) -> str:
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
    check_file(path)
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
        names = [cell_str(h) for h in header]
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
            out[col] = [cell_str(v) for v in raw]
    return pd.DataFrame(out, index=excel_rows, columns=list(columns))


def require_nonempty(df: pd.DataFrame, columns: Iterable[str], where: str,
                      row_label: str = "data row") -> None:
    for col in columns:
        bad = df.index[df[col] == ""]
        if len(bad):
            raise ValueError(f"{where}: {row_label} {row_number(bad[0], row_label)}, "
                             f"column {col!r}: empty value")


def row_number(label: object, row_label: str) -> int:
    # CSV frames keep a RangeIndex (0-based record number); xlsx frames are indexed by sheet row.
    return int(label) + 1 if row_label == "data row" else int(label)


def check_not_empty(df: pd.DataFrame, where: str) -> pd.DataFrame:
    if len(df) == 0:
        raise ValueError(f"{where}: no usable rows (empty result)")
    return df


def resolve_labels(values: pd.Series, known: Mapping[str, str] | set[str] | frozenset[str],
                   where: str, column: str, row_label: str = "data row") -> list[str]:
    """Map every value to a known entity; ValueError naming the first unresolvable row."""
    out = []
    for label, v in values.items():
        got = (v if v in known else None) if isinstance(known, (set, frozenset)) else known.get(v)
        if got is None:
            raise ValueError(f"{where}: {row_label} {row_number(label, row_label)}, "
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


def split_alt_labels(text: str) -> list[str]:
    out: list[str] = []
    for part in text.split("\n"):
        part = part.strip()
        if part and part not in out:
            out.append(part)
    return out
