"""Shared fixtures. Tests never touch the network and write only under tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def data_mirror() -> Path | None:
    """The read-only data mirror: $UWE_DATA_MIRROR, else ../shared/data beside the repo."""
    env = os.environ.get("UWE_DATA_MIRROR")
    if env and Path(env).is_dir():
        return Path(env)
    beside = REPO.parent / "shared" / "data"
    return beside if beside.is_dir() else None


@pytest.fixture
def repo_root() -> Path:
    return REPO


@pytest.fixture
def mirror() -> Path:
    found = data_mirror()
    if found is None:
        pytest.skip("no data mirror (set UWE_DATA_MIRROR or place shared/data beside the repo)")
    return found
