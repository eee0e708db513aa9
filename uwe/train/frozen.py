"""Frozen-bottom caching for UWE training (``train.frozen_layers: K``).

With ``K > 0`` the backbone's embeddings and its bottom ``K`` transformer layers are frozen
(never updated) and run in eval mode; their output depends on the text alone, so it is
computed **once** for every distinct text of the training graphs (:class:`BottomCache`) and
each training step runs only the top ``n_layers - K`` layers over cached hidden states
(:class:`CachedTopEncoder`). The result is exact: the cached forward equals the full forward
of the same weights in eval mode up to the storage dtype's rounding (``float32`` storage:
float tolerance; the default ``float16`` halves the memory, ~1e-3 relative).

* The cache is built length-bucketed (texts of one token length per batch, so no padding,
  and :func:`uwe.core.lengths.length_groups` orders the work), stored as one flat
  ``(n_tokens, d)`` tensor with per-text offsets and lengths, with a progress bar and a size
  report (``BottomCache.describe``).
* **Texts the cache lacks** go through the frozen bottom at step time, without gradient. The
  S-V graph's sentence pairs (``"<sentence> <other sentence>"``, :mod:`uwe.core.batching`) are such
  texts: a pair is one input to the encoder, whose bottom layers attend across both sentences,
  so the pair's bottom states are not the two sentences' cached states side by side; computing
  them at step time keeps the forward exact (about 100 pairs per step at batch 128, a forward
  of K layers each, no backward).
* The cache can be kept on disk (``train.frozen_cache_dir``, default ``$UWE_CACHE_DIR/frozen``
  else ``~/.cache/uwe/frozen``; ``""`` = memory only) so that runs of the same backbone and
  texts (the recipe search, the analyses, a resumed run) build it once: a safetensors file of
  the three tensors, keyed by :func:`cache_key` (format, sha256 of the backbone's weights
  file and tokenizer config, ``K``, dtype, ``max_length``, torch and transformers versions,
  sha256 of the text list). A file that does not load or does not match its key is a miss
  (rebuilt and overwritten); it is written atomically (temp file + rename).
* The top layers see the cached states padded per chunk (:func:`uwe.train.step.encode_sides`
  sorts a step's texts by length, so padding is small) with the backbone's own attention-mask
  construction (``transformers.masking_utils.create_bidirectional_mask``), so attention
  implementation (eager / sdpa) and dtype handling are the model's.

Supported backbones: encoders with ``embeddings`` and ``encoder.layer`` (BERT, MiniLM, RoBERTa,
MPNet -- the last one's relative position bias is recomputed by ``encoder.compute_position_bias``
for the top layers as its own encoder does).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from uwe.constants import CACHE_DTYPES
from uwe.core.lengths import length_groups

if TYPE_CHECKING:  # annotations only
    from uwe.core.batching import MultiGraphBatcher

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
assert tuple(DTYPES) == CACHE_DTYPES, "uwe.constants.CACHE_DTYPES: the config checks these"


def _layers(backbone: nn.Module) -> nn.ModuleList:
    layers = getattr(getattr(backbone, "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList) or not hasattr(backbone, "embeddings"):
        raise ValueError(f"frozen_layers needs a BERT-like encoder (embeddings + encoder.layer); "
                         f"got {type(backbone).__name__}")
    return layers


def n_layers(backbone: nn.Module) -> int:
    return len(_layers(backbone))


def check_frozen_layers(backbone: nn.Module, k: int) -> None:
    n = n_layers(backbone)
    if not 0 <= k < n:
        raise ValueError(f"train.frozen_layers must be in [0, {n - 1}] for this backbone "
                         f"({n} layers: at least one must train), got {k}")


def freeze_bottom(backbone: nn.Module, k: int) -> None:
    """``requires_grad=False`` on the embeddings and layers ``[0, k)`` (``k=0``: nothing)."""
    check_frozen_layers(backbone, k)
    if k == 0:
        return
    for p in backbone.embeddings.parameters():
        p.requires_grad_(False)
    for layer in _layers(backbone)[:k]:
        for p in layer.parameters():
            p.requires_grad_(False)


def _mask4d(backbone: nn.Module, h: torch.Tensor, mask: torch.Tensor):
    """The backbone's own attention mask for hidden states ``h`` (b, L, d) and ``mask`` (b, L)."""
    from transformers.masking_utils import create_bidirectional_mask

    return create_bidirectional_mask(config=backbone.config, inputs_embeds=h,
                                     attention_mask=mask.long())


def run_layers(backbone: nn.Module, layers: Iterable[nn.Module], h: torch.Tensor,
               mask: torch.Tensor) -> torch.Tensor:
    """Apply ``layers`` of ``backbone`` to hidden states ``h`` (b, L, d) with padding ``mask``
    (b, L) bool, as the backbone's encoder does (mask construction, MPNet position bias)."""
    ext = _mask4d(backbone, h, mask)
    encoder = backbone.encoder
    bias = (encoder.compute_position_bias(h) if hasattr(encoder, "compute_position_bias")
            else None)
    for layer in layers:
        out = layer(h, ext) if bias is None else layer(h, ext, bias)
        h = out[0] if isinstance(out, tuple) else out
    return h


class _EvalMode:
    """Put modules in eval mode for a block (the frozen bottom never uses dropout)."""

    def __init__(self, modules: list[nn.Module]):
        self.modules = modules

    def __enter__(self):
        self.flags = [m.training for m in self.modules]
        for m in self.modules:
            m.eval()

    def __exit__(self, *exc):
        for m, f in zip(self.modules, self.flags, strict=True):
            m.train(f)


def bottom_forward(backbone: nn.Module, k: int, input_ids: torch.Tensor,
                   attention_mask: torch.Tensor) -> torch.Tensor:
    """Embeddings + layers ``[0, k)`` in eval mode, no gradient -> ``(b, L, d)``."""
    layers = _layers(backbone)
    with torch.no_grad(), _EvalMode([backbone.embeddings, *layers[:k]]):
        h = backbone.embeddings(input_ids=input_ids)
        return run_layers(backbone, layers[:k], h, attention_mask.bool())


def default_cache_dir() -> Path:
    """``frozen`` under the project's cache root (:func:`uwe.io.cache_root`)."""
    from uwe.io import cache_root

    return cache_root() / "frozen"


def cache_key(encoder, k: int, texts: list[str], dtype: str) -> str:
    """sha256 naming what a cache's contents depend on (module docstring)."""
    import transformers

    from uwe.io import file_sha256
    from uwe.model.pretrained import resolve_model

    h = hashlib.sha256()
    meta = {"format": FORMAT_VERSION, "k": int(k), "dtype": dtype,
            "max_length": int(encoder.max_length), "torch": torch.__version__,
            "transformers": transformers.__version__}
    folder = Path(resolve_model(encoder.backbone_name)) if encoder.backbone_name else None
    if folder is not None and folder.is_dir():
        from uwe.model.encoder import transformer_folder

        folder = transformer_folder(folder)
        for name in ("model.safetensors", "tokenizer.json", "tokenizer_config.json",
                     "config.json"):
            if (folder / name).is_file():
                meta[name] = file_sha256(folder / name)
    else:  # no weights file to name: hash the bottom's weights themselves
        for name, p in encoder.backbone.state_dict().items():
            h.update(name.encode() + p.detach().cpu().contiguous().view(torch.uint8)
                     .numpy().tobytes())
    h.update(json.dumps(meta, sort_keys=True).encode())
    h.update(json.dumps(list(texts), ensure_ascii=False).encode())
    return h.hexdigest()


class BottomCache:
    """Bottom-``k`` hidden states of a fixed set of texts: one flat ``(n_tokens, d)`` tensor in
    ``dtype`` (``tokens``), per-text ``start`` / ``length`` (int64) and ``row`` (text -> id)."""

    def __init__(self, texts: list[str], tokens: torch.Tensor, start: torch.Tensor,
                 length: torch.Tensor, key: str | None = None):
        self.key = key  # cache_key of the contents, when known
        self.texts = list(texts)
        self.row = {t: i for i, t in enumerate(self.texts)}
        self.tokens, self.start, self.length = tokens, start, length

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def nbytes(self) -> int:
        return (self.tokens.numel() * self.tokens.element_size()
                + 8 * (self.start.numel() + self.length.numel()))

    def describe(self) -> str:
        return (f"{len(self):,} texts, {self.tokens.shape[0]:,} tokens x {self.tokens.shape[1]} "
                f"({str(self.tokens.dtype).removeprefix('torch.')}): "
                f"{self.nbytes / 2**20:,.0f} MiB")

    @classmethod
    def build(cls, encoder, k: int, texts: Iterable[str], dtype: str = "float16",
              batch_size: int = 256, progress: bool = False) -> BottomCache:
        """Run the frozen bottom of ``encoder`` (a :class:`uwe.model.encoder.TokenEncoder`) over
        each distinct text once, in unpadded equal-length batches of ``batch_size``."""
        from tqdm.auto import tqdm

        if dtype not in DTYPES:
            raise ValueError(f"frozen cache dtype must be one of {list(DTYPES)}, got {dtype!r}")
        texts = list(dict.fromkeys(texts))
        t0 = time.perf_counter()
        lengths = encoder.token_lengths(texts)  # (n,)
        start = np.zeros(len(texts), dtype=np.int64)
        start[1:] = np.cumsum(lengths)[:-1]
        tokens = torch.empty(int(lengths.sum()), encoder.dim, dtype=DTYPES[dtype])
        groups = length_groups(lengths, batch_size)  # equal-length batches, longest first
        bar = tqdm(total=len(texts), disable=not progress, desc=f"cache bottom {k} layers",
                   unit="text")
        for idx in groups:
            batch = encoder.tokenize([texts[i] for i in idx])
            h = bottom_forward(encoder.backbone, k, batch["input_ids"], batch["attention_mask"])
            n = h.shape[1]
            dest = (torch.from_numpy(start[idx])[:, None] + torch.arange(n)[None]).reshape(-1)
            tokens[dest] = h.reshape(-1, h.shape[-1]).to("cpu", DTYPES[dtype])
            bar.update(len(idx))
        bar.close()
        cache = cls(texts, tokens, torch.from_numpy(start), torch.from_numpy(lengths))
        logger.info("frozen bottom cache: %s in %.0f s", cache.describe(),
                    time.perf_counter() - t0)
        return cache

    @classmethod
    def load_or_build(cls, encoder, k: int, texts: Iterable[str], dtype: str = "float16",
                      cache_dir: str | Path | None = None, progress: bool = False
                      ) -> tuple[BottomCache, bool]:
        """The cache of ``texts`` from ``cache_dir`` (None: :func:`default_cache_dir`; ``""``:
        memory only) when a matching file is there, else built (and stored). -> (cache, hit)."""
        from safetensors.torch import load_file, save_file

        texts = list(dict.fromkeys(texts))
        key = cache_key(encoder, k, texts, dtype)
        if cache_dir == "":
            cache = cls.build(encoder, k, texts, dtype, progress=progress)
            cache.key = key
            return cache, False
        folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        path = folder / f"bottom{k}-{key[:24]}.safetensors"
        if path.is_file():
            try:
                t = load_file(str(path))
                ok = (t["key"].numpy().tobytes() == key.encode()
                      and t["start"].numel() == len(texts) and t["tokens"].dtype == DTYPES[dtype]
                      and int(t["length"].sum()) == t["tokens"].shape[0])
                if ok:
                    logger.info("frozen bottom cache read from %s", path)
                    return cls(texts, t["tokens"], t["start"], t["length"], key), True
                logger.warning("frozen bottom cache %s does not match its key: rebuilt", path)
            except Exception as err:  # a damaged file is a miss
                logger.warning("frozen bottom cache %s unreadable (%s): rebuilt", path, err)
        cache = cls.build(encoder, k, texts, dtype, progress=progress)
        cache.key = key
        from uwe.io import atomic_path

        try:  # a killed build's temp file (the cache's full size) is swept by the next write
            with atomic_path(path) as tmp:
                save_file({"tokens": cache.tokens.contiguous(), "start": cache.start,
                           "length": cache.length,
                           "key": torch.frombuffer(bytearray(key.encode()), dtype=torch.uint8)},
                          str(tmp))
        except OSError as err:
            logger.warning("frozen bottom cache not stored in %s: %s", folder, err)
        return cache, False

    def gather(self, rows: torch.Tensor, device: torch.device | str = "cpu"
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Cached states of text ids ``rows`` (n,) padded to their longest:
        ``(n, L, d)`` float32 (zeros at padding), ``(n, L)`` bool."""
        lens = self.length[rows]  # (n,)
        span = torch.arange(int(lens.max()) if len(rows) else 1)  # (L,)
        mask = span[None] < lens[:, None]  # (n, L)
        idx = torch.where(mask, self.start[rows][:, None] + span[None], 0)  # (n, L)
        h = self.tokens[idx].to(device=device, dtype=torch.float32)  # (n, L, d)
        mask = mask.to(device)
        return h * mask[..., None], mask


class CachedTopEncoder(nn.Module):
    """Training forward of a :class:`uwe.model.encoder.TokenEncoder` whose bottom ``k`` layers are
    frozen: ``forward(texts) -> (emb (n, L, d), mask (n, L) bool)`` like the encoder's,
    cached bottom states (texts the cache lacks through the bottom at once) then the top
    layers with gradient. ``token_lengths`` answers from the cache where it can."""

    def __init__(self, encoder, k: int, cache: BottomCache):
        super().__init__()
        check_frozen_layers(encoder.backbone, k)
        if k < 1:
            raise ValueError("CachedTopEncoder needs frozen_layers >= 1")
        self.encoder, self.k, self.cache = encoder, int(k), cache
        self.misses = 0  # texts computed at step time (S-V pairs), for the benchmark

    def token_lengths(self, texts: list[str]) -> np.ndarray:
        row = self.cache.row
        out = np.empty(len(texts), dtype=np.int64)
        missing = [i for i, t in enumerate(texts) if t not in row]
        hit = [i for i in range(len(texts)) if texts[i] in row] if missing else range(len(texts))
        if len(hit):
            ids = torch.tensor([row[texts[i]] for i in hit], dtype=torch.long)
            out[list(hit)] = self.cache.length[ids].numpy()
        if missing:
            out[missing] = self.encoder.token_lengths([texts[i] for i in missing])
        return out

    def bottom(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Bottom states ``(n, L, d)`` float32 and mask of ``texts`` (cache, else computed)."""
        device = self.encoder.device
        row = self.cache.row
        missing = [i for i, t in enumerate(texts) if t not in row]
        if not missing:
            ids = torch.tensor([row[t] for t in texts], dtype=torch.long)
            return self.cache.gather(ids, device)
        self.misses += len(missing)
        lens = self.token_lengths(texts)
        width = int(lens.max())
        h = torch.zeros(len(texts), width, self.encoder.dim, device=device)
        mask = torch.arange(width, device=device)[None] < torch.from_numpy(lens).to(device)[:, None]
        hit = [i for i, t in enumerate(texts) if t in row]
        if hit:
            hh, hm = self.cache.gather(torch.tensor([row[texts[i]] for i in hit]), device)
            h[torch.tensor(hit, device=device), : hh.shape[1]] = hh
        batch = self.encoder.tokenize([texts[i] for i in missing])
        hm = bottom_forward(self.encoder.backbone, self.k, batch["input_ids"],
                            batch["attention_mask"])
        hm = hm * batch["attention_mask"][..., None].to(hm.dtype)
        h[torch.tensor(missing, device=device), : hm.shape[1]] = hm.float()
        return h, mask

    # what uwe.model.uwe_model.UWEModel asks of its encoder besides forward / token_lengths
    @property
    def device(self) -> torch.device:
        return self.encoder.device

    @property
    def dim(self) -> int:
        return self.encoder.dim

    @property
    def backbone_name(self) -> str | None:
        return self.encoder.backbone_name

    @property
    def max_length(self) -> int:
        return self.encoder.max_length

    def forward(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        if len(texts) == 0:
            return self.encoder(texts)
        h, mask = self.bottom(list(texts))
        top = _layers(self.encoder.backbone)[self.k :]
        return run_layers(self.encoder.backbone, top, h, mask), mask


def same_bottom(a: nn.Module, b: nn.Module, k: int) -> bool:
    """Whether backbones ``a`` and ``b`` have bit-identical embeddings and layers ``[0, k)``."""
    pairs = [(a.embeddings, b.embeddings), *zip(_layers(a)[:k], _layers(b)[:k], strict=True)]
    for ma, mb in pairs:
        sa, sb = ma.state_dict(), mb.state_dict()
        if sa.keys() != sb.keys() or any(not torch.equal(sa[n], sb[n]) for n in sa):
            return False
    return True


def use_cached_bottom(model, cache: BottomCache, k: int, reference: nn.Module) -> bool:
    """Evaluate ``model`` (a :class:`uwe.model.uwe_model.UWEModel` trained with
    ``frozen_layers: k``) through ``cache``: its encoder becomes a :class:`CachedTopEncoder`, so
    inference runs only the top layers over cached bottom states of the texts the cache holds
    (others go through the bottom at once). Done only if the model's bottom equals
    ``reference`` (the backbone the cache was built with) weight for weight, so scores stay those
    of the full forward (float32 cache: float tolerance). -> whether it was done."""
    encoder = model.encoder
    if k < 1 or isinstance(encoder, CachedTopEncoder) or not same_bottom(
            encoder.backbone, reference, k):
        return False
    model.encoder = CachedTopEncoder(encoder, k, cache)
    return True


def cache_texts(batcher: MultiGraphBatcher, data_root: str | Path) -> list[str]:
    """Texts the frozen-bottom cache holds: every text of every known training graph on disk
    (``uwe.data.tasks.GRAPHS`` under ``{data_root}/graphs``), not only of the graphs this run
    trains on, so that runs on subsets of the graphs (transfer, ablations) share one cache;
    then any text of the batcher's graphs not among them.

    A graph contributes its texts in the order its ``GraphSampler`` holds them (sorted unique
    left texts, then right texts) whether or not this run trains on it, so every subset of the
    graphs gives the same list, hence the same cache key and one shared cache."""
    import pandas as pd

    from uwe.data.tasks import GRAPHS, load_graph

    texts: list[str] = []
    for name in GRAPHS:
        if name in batcher.samplers:
            s = batcher.samplers[name]
            texts += [*s.left_texts, *s.right_texts]
        elif (Path(data_root) / "graphs" / f"{name}.parquet").is_file():
            g = load_graph(name, data_root)
            for col in ("left", "right"):
                texts += list(pd.factorize(g[col].astype(str), sort=True)[1])
    for s in batcher.samplers.values():
        texts += [*s.left_texts, *s.right_texts]
    return list(dict.fromkeys(texts))
