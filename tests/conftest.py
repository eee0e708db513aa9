"""Shared fixtures. Tests never touch the network and write only under tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from uwe.fetch import resolve_mirror

REPO = Path(__file__).resolve().parents[1]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def repo_root() -> Path:
    return REPO


@pytest.fixture
def mirror() -> Path:
    found = resolve_mirror(None, REPO)
    if found is None:
        pytest.skip("no data mirror (set UWE_DATA_MIRROR or place shared/data beside the repo)")
    return found
