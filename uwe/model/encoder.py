"""The token encoder: one shared transformer for queries and targets (arXiv 2511.07969).

:class:`TokenEncoder` -- a Hugging Face backbone (``transformers.AutoModel``) and its tokenizer;
``forward(texts) -> (emb (n, L, d), mask (n, L) bool)`` = ``last_hidden_state`` and the attention
mask (special tokens [CLS]/[SEP] included, as in sentence-transformers' mean pooling), texts
truncated to ``max_length`` tokens. :func:`load_backbone` loads the float32 backbone of a saved
folder (the model folder and the ONNX export share it).
"""

from __future__ import annotations

import json
import re
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
        """Load a backbone by name (``uwe.model.pretrained.resolve_model``) or from a local
        folder."""
        from transformers import AutoModel, AutoTokenizer

        from uwe.model.pretrained import resolve_model

        resolved = resolve_model(name_or_path)
        if Path(resolved).is_dir():
            folder = transformer_folder(resolved)
            backbone = load_backbone(folder)  # strict: one line naming a bad tensor
        else:  # a hub id in the local cache (or a download the user allowed)
            folder = resolved
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


def load_backbone(path: str | Path, pooler: bool | None = None):
    """The float32 ``AutoModel`` saved in ``path`` (safetensors only), loaded strictly: its
    tensors must be exactly those ``config.json`` describes, shapes included
    (:func:`uwe.model.folder.check_tensors`), else one :class:`uwe.errors.InputError` naming
    the tensor; the library's load table is not printed. ``pooler`` None = build the [CLS]
    pooler head when the weights have one (UWE never runs it)."""
    import transformers
    from transformers import AutoConfig, AutoModel

    from uwe.model.folder import OPTIONAL_TENSORS, check_tensors, tensor_shapes

    path = Path(path)
    try:
        shapes = tensor_shapes(path / WEIGHTS)
    except (OSError, ValueError) as err:
        raise InputError(f"{path / WEIGHTS}: the weights do not load ({err}): the file is "
                         f"truncated or damaged; copy or train the model again") from None
    try:
        config = AutoConfig.from_pretrained(path)
    except Exception as err:  # transformers raises OSError / ValueError / KeyError kinds
        raise InputError(f"{path / 'config.json'}: not a backbone config "
                         f"({' '.join(str(err).split())[:200]})") from None
    if pooler is None:
        pooler = any(k.startswith("pooler.") for k in shapes)
    extra = {} if pooler else {"add_pooling_layer": False}
    with torch.device("meta"):
        skeleton = AutoModel.from_config(config, **extra)
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    prefix = f"{skeleton.base_model_prefix}."
    if not set(expected) & set(shapes) and any(k.startswith(prefix) for k in shapes):
        shapes = {k.removeprefix(prefix): v for k, v in shapes.items()}  # saved with its head
    # what the library itself leaves out on purpose: buffers older checkpoints saved (BERT's
    # embeddings.position_ids) and the class's own ignore patterns
    ignored = [re.compile(p) for p in
               getattr(skeleton, "_keys_to_ignore_on_load_unexpected", None) or []]
    shapes = {k: v for k, v in shapes.items() if not any(p.search(k) for p in ignored)}
    buffers = tuple(name for name, _ in skeleton.named_buffers())
    check_tensors(path / WEIGHTS, shapes, expected, path / "config.json",
                  optional=(*OPTIONAL_TENSORS, *buffers))
    verbosity = transformers.logging.get_verbosity()
    progress = transformers.utils.logging.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()  # the load table: checked above, in one line
    transformers.utils.logging.disable_progress_bar()
    try:
        return AutoModel.from_pretrained(path, dtype=torch.float32, use_safetensors=True,
                                         **extra)
    except Exception as err:  # safetensors / transformers raise their own error types
        raise InputError(f"{path / WEIGHTS}: the weights do not load "
                         f"({' '.join(str(err).split())[:300]}): the file is truncated or "
                         f"damaged; copy or train the model again") from err
    finally:
        transformers.logging.set_verbosity(verbosity)
        if progress:
            transformers.utils.logging.enable_progress_bar()
