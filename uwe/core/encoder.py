"""The token encoder: one shared transformer for queries and targets (arXiv 2511.07969).

:class:`TokenEncoder` -- a Hugging Face backbone (``transformers.AutoModel``) and its tokenizer;
``forward(texts) -> (emb (n, L, d), mask (n, L) bool)`` = ``last_hidden_state`` and the attention
mask (special tokens [CLS]/[SEP] included, as in sentence-transformers' mean pooling), texts
truncated to ``max_length`` tokens. :func:`load_backbone` loads the float32 backbone of a saved
folder (the model folder and the ONNX export share it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from uwe.errors import InputError

WEIGHTS = "model.safetensors"


def transformer_folder(path: str | Path) -> Path:
    """The folder holding the backbone's ``config.json``: ``path`` itself, or the Transformer
    module's sub-folder of a sentence-transformers folder (``modules.json``)."""
    p = Path(path)
    if (p / "config.json").is_file():
        return p
    modules = p / "modules.json"
    if modules.is_file():
        for module in json.loads(modules.read_text(encoding="utf-8")):
            sub = p / module.get("path", "")
            if module.get("type", "").endswith("Transformer") and (sub / "config.json").is_file():
                return sub
    raise FileNotFoundError(f"no transformer config.json found in model folder {p}")


def drop_pooler(backbone: nn.Module) -> bool:
    """Remove a [CLS] pooler head (BERT, MPNet): UWE uses ``last_hidden_state`` only, and a
    parameter without gradient would break DistributedDataParallel. True if one was removed."""
    if getattr(backbone, "pooler", None) is None:
        return False
    backbone.pooler = None
    return True


class TokenEncoder(nn.Module):
    """Shared backbone + tokenizer; ``forward(texts) -> (emb (n, L, d), mask (n, L) bool)``."""

    def __init__(self, backbone: nn.Module, tokenizer: Any, max_length: int = 64,
                 backbone_name: str = ""):
        super().__init__()
        if max_length < 2:
            raise ValueError(f"max_length must be >= 2, got {max_length}")
        self.backbone, self.tokenizer = backbone, tokenizer
        self.max_length, self.backbone_name = int(max_length), backbone_name

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, max_length: int = 64) -> TokenEncoder:
        """Load a backbone by name (``uwe.pretrained.resolve_model``) or from a local folder."""
        from transformers import AutoModel, AutoTokenizer

        from uwe.pretrained import resolve_model

        resolved = resolve_model(name_or_path)
        folder = transformer_folder(resolved) if Path(resolved).is_dir() else resolved
        backbone = AutoModel.from_pretrained(folder, dtype=torch.float32)
        drop_pooler(backbone)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        return cls(backbone, tokenizer, max_length, backbone_name=str(name_or_path))

    @property
    def device(self) -> torch.device:
        return next(self.backbone.parameters()).device

    @property
    def dim(self) -> int:
        return int(self.backbone.config.hidden_size)

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        batch = self.tokenizer(list(texts), padding=True, truncation=True,
                               max_length=self.max_length, return_tensors="pt")
        return {k: v.to(self.device) for k, v in batch.items()}

    def token_lengths(self, texts: list[str]) -> np.ndarray:
        """Number of tokens of each text after truncation (special tokens included)."""
        ids = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]
        return np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(texts))

    def forward(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        if len(texts) == 0:
            empty = torch.zeros(0, 1, self.dim, device=self.device)
            return empty, torch.zeros(0, 1, dtype=torch.bool, device=self.device)
        batch = self.tokenize(texts)
        emb = self.backbone(**batch).last_hidden_state  # (n, L, d)
        return emb, batch["attention_mask"].bool()  # (n, L, d), (n, L)


def load_backbone(path: str | Path, pooler: bool = True):
    """The float32 ``AutoModel`` saved in ``path`` (safetensors only); weights that do not load
    are one :class:`uwe.errors.InputError` naming the file."""
    from transformers import AutoModel

    extra = {} if pooler else {"add_pooling_layer": False}
    try:
        return AutoModel.from_pretrained(path, dtype=torch.float32, use_safetensors=True,
                                         **extra)
    except Exception as err:  # safetensors / transformers raise their own error types
        raise InputError(f"{Path(path) / WEIGHTS}: the weights do not load "
                         f"({' '.join(str(err).split())[:300]}): the file is truncated or "
                         f"damaged; copy or train the model again") from err
