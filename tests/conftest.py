"""Shared fixtures. Tests never touch the network and write only under tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from uwe.data.fetch import resolve_mirror

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


def make_tiny_backbone(folder: Path, layers: int = 1) -> str:
    """A ``layers``-layer, 32-d random BERT with the all-MiniLM-L6-v2 tokenizer, saved to
    ``folder`` (seeded: the same weights every time). Tests take it through the fixtures below,
    never a copy of their own."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from uwe.model.pretrained import resolve_model

    tok = AutoTokenizer.from_pretrained(resolve_model("all-MiniLM-L6-v2"))
    torch.manual_seed(0)
    cfg = BertConfig(hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
                     intermediate_size=64, vocab_size=len(tok), max_position_embeddings=128)
    BertModel(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory) -> str:
    """Folder of :func:`make_tiny_backbone`, built once per test session."""
    return make_tiny_backbone(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(scope="session")
def backbone_factory(tmp_path_factory):
    """``make(layers) -> folder`` of :func:`make_tiny_backbone`, one folder per depth per test
    session (for the frozen-bottom tests, which need more than one layer)."""
    made: dict[int, str] = {}

    def make(layers: int = 1) -> str:
        if layers not in made:
            made[layers] = make_tiny_backbone(tmp_path_factory.mktemp(f"tiny_bert_{layers}"),
                                              layers)
        return made[layers]

    return make
