"""Fetch every raw file the pipeline reads, verified against a checksum manifest.

``data/manifest.csv`` lists one row per file: ``path`` (relative to ``data/raw``, the same
relative path as in a mirror folder), ``url`` (upstream address pinned to a commit, or empty when
no direct upstream file exists), ``sha256`` and ``license``.

For each file, :func:`fetch` copies it from a mirror folder when one is found, else downloads the
upstream URL with :mod:`pooch`; either way the sha256 is verified. All files are first
assembled in a staging folder next to ``raw_dir``; only when every file is present and verified
is the staging folder swapped in for ``raw_dir``. A wrong checksum, a missing mirror file or an
unreachable URL raises :class:`FetchError` naming the file and what to do, and leaves ``raw_dir``
exactly as it was.

Mirror resolution (:func:`resolve_mirror`): an explicit ``mirror`` argument, else the
``UWE_DATA_MIRROR`` environment variable, else ``../shared/data`` beside the repository when that
folder exists, else none (download).
"""

from __future__ import annotations

import csv
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pooch

from uwe.io import file_sha256, make_temp_dir, replace_dir

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = ("path", "url", "sha256", "license")
MIRROR_ENV = "UWE_DATA_MIRROR"


class FetchError(RuntimeError):
    """A raw file could not be obtained or failed verification."""


@dataclass(frozen=True)
class ManifestEntry:
    path: str
    url: str
    sha256: str
    license: str


def read_manifest(path: str | Path) -> list[ManifestEntry]:
    """Read and validate the manifest; errors name the file and the row."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in MANIFEST_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; expected {MANIFEST_COLUMNS}")
        entries, seen = [], set()
        for row_no, row in enumerate(reader, start=2):  # row 1 is the header
            entry = ManifestEntry(**{c: (row[c] or "").strip() for c in MANIFEST_COLUMNS})
            where = f"{path}, row {row_no} ({entry.path!r})"
            if not entry.path or Path(entry.path).is_absolute() or ".." in Path(entry.path).parts:
                raise ValueError(f"{where}: path must be a relative path inside data/raw")
            if len(entry.sha256) != 64 or any(c not in "0123456789abcdef" for c in entry.sha256):
                raise ValueError(f"{where}: sha256 must be 64 lowercase hex digits")
            if entry.path in seen:
                raise ValueError(f"{where}: duplicate path")
            seen.add(entry.path)
            entries.append(entry)
    if not entries:
        raise ValueError(f"{path}: the manifest lists no files")
    return entries


def resolve_mirror(mirror: str | Path | None, repo_root: str | Path = ".") -> Path | None:
    """The mirror folder to try first, or None (see module docstring for the order)."""
    if mirror:
        folder = Path(mirror)
        if not folder.is_dir():
            raise FetchError(f"mirror folder does not exist: {folder}")
        return folder
    env = os.environ.get(MIRROR_ENV)
    if env:
        folder = Path(env)
        if not folder.is_dir():
            raise FetchError(f"{MIRROR_ENV}={env} is not a folder")
        return folder
    beside = Path(repo_root).resolve().parent / "shared" / "data"
    return beside if beside.is_dir() else None


def _fetch_one(entry: ManifestEntry, dest: Path, mirror: Path | None, existing: Path) -> str:
    """Place one verified file at ``dest``; return where it came from."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if existing.is_file() and file_sha256(existing) == entry.sha256:
        shutil.copy2(existing, dest)
        return "cached"
    if mirror is not None and (mirror / entry.path).is_file():
        src = mirror / entry.path
        got = file_sha256(src)
        if got != entry.sha256:
            raise FetchError(
                f"checksum mismatch for {entry.path} in mirror {mirror}: expected sha256 "
                f"{entry.sha256}, got {got}. The mirror copy is corrupt or a different version: "
                f"replace it with the upstream file ({entry.url or 'see the manifest'}) "
                f"or unset the mirror to download it."
            )
        shutil.copy2(src, dest)
        return "mirror"
    # a mirror that lacks this one file: say so first, not only that a download failed
    lacking = (f"{entry.path} is missing from the mirror {mirror} (expected at "
               f"{mirror / entry.path})" if mirror is not None else None)
    if not entry.url:
        raise FetchError(
            f"{lacking or f'{entry.path}: no mirror folder (set {MIRROR_ENV})'} and the file has "
            f"no direct upstream URL. Put the file in the mirror folder."
        )
    try:
        pooch.retrieve(
            entry.url,
            known_hash=f"sha256:{entry.sha256}",
            fname=dest.name,
            path=str(dest.parent),
            progressbar=False,
        )
    except ValueError as err:  # pooch: hash mismatch
        raise FetchError(
            f"checksum mismatch for {entry.path} downloaded from {entry.url}: {err}"
        ) from err
    except Exception as err:  # network errors of any kind
        if lacking:
            raise FetchError(
                f"{lacking}, and downloading it from {entry.url} failed "
                f"({' '.join(str(err).split())[:200]}). Restore the file in the mirror, or "
                f"check the network."
            ) from err
        raise FetchError(
            f"could not download {entry.path} from {entry.url}: {err}. Check the network, "
            f"or provide a mirror folder with {MIRROR_ENV}."
        ) from err
    return "upstream"


def fetch(
    manifest: str | Path = "data/manifest.csv",
    raw_dir: str | Path = "data/raw",
    mirror: str | Path | None = None,
    repo_root: str | Path = ".",
) -> dict[str, str]:
    """Fetch and verify every manifest file into ``raw_dir``; return {path: source}.

    ``raw_dir`` is replaced only after every file is verified; on any error it is untouched.
    """
    entries = read_manifest(manifest)
    raw_dir = Path(raw_dir)
    mirror_dir = resolve_mirror(mirror, repo_root)
    log.info("fetching %d files into %s (mirror: %s)", len(entries), raw_dir, mirror_dir)
    staging = make_temp_dir(raw_dir, "staging")
    sources = {}
    try:
        for entry in entries:
            sources[entry.path] = _fetch_one(
                entry, staging / entry.path, mirror_dir, raw_dir / entry.path
            )
            log.info("%-8s %s", sources[entry.path], entry.path)
        replace_dir(staging, raw_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return sources


def verify(manifest: str | Path, raw_dir: str | Path) -> list[str]:
    """Paths of manifest files that are missing from ``raw_dir`` or fail their checksum."""
    bad = []
    for entry in read_manifest(manifest):
        path = Path(raw_dir) / entry.path
        if not path.is_file() or file_sha256(path) != entry.sha256:
            bad.append(entry.path)
    return bad
