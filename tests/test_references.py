"""Every ``docs/*.md`` a docstring, comment, notebook or the README cites exists: the project's
own pages under ``docs/``, the specification beside the repository under ``../shared/docs/``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CITE = re.compile(r"(?<![\w/.])((?:\.\./shared/)?docs/[A-Za-z0-9_./-]+\.md)")
SOURCES = sorted([*REPO.glob("uwe/**/*.py"), *REPO.glob("scripts/*.py"),
                  *REPO.glob("notebooks/*.ipynb"), *REPO.glob("docs/*.md"), REPO / "README.md",
                  REPO / "dvc.yaml", REPO / "params.yaml", REPO / "Makefile"])


def citations(text: str) -> set[str]:
    return set(CITE.findall(text))


def test_the_pattern_finds_both_kinds_of_citation():
    text = "see docs/architecture.md, ``../shared/docs/paper.md`` and notdocs/x.md or a/docs/y.md"
    assert citations(text) == {"docs/architecture.md", "../shared/docs/paper.md"}


@pytest.mark.parametrize("path", SOURCES, ids=[str(p.relative_to(REPO)) for p in SOURCES])
def test_every_cited_page_exists(path):
    missing = []
    for cited in sorted(citations(path.read_text(encoding="utf-8"))):
        if cited.startswith("../shared/") and not (REPO.parent / "shared").is_dir():
            continue  # the specification is beside the repository in CI, not in every copy
        if not (REPO / cited).resolve().is_file():
            missing.append(cited)
    assert not missing, f"{path.relative_to(REPO)} cites pages that do not exist: {missing}"
