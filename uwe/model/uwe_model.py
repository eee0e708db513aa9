"""The UWE model: one shared token encoder + a late-interaction scorer (arXiv 2511.07969).

* :class:`uwe.model.encoder.TokenEncoder` -- the backbone and its tokenizer (the method's
  encoder, in this model floor).
* :class:`UWEModel` -- encoder + scorer name (:mod:`uwe.core.scoring`) + ``attention_temperature``,
  with the harness contract ``index = index_targets(targets)``,
  ``score_index(queries, index) -> (n_q, n_t) float32`` (``scores[i, j]`` = query ``i`` vs
  target ``j``), ``score(queries, targets)`` and ``rank(queries, index, top_k)``.
* :func:`save` / :func:`load` -- a folder with ``model.safetensors`` + ``config.json`` (the
  backbone, loadable by ``AutoModel``), the tokenizer files and ``uwe_config.json``.

Inference sorts texts by token length and encodes them in batches, so each batch is padded only
to its own longest text; the batches of one length are joined into one bucket -- targets kept
on the model's device, queries of one ``score_index`` call likewise, so that each length is one
score block -- and every query bucket is scored against every target bucket in target chunks
sized so that one ``(queries, targets, Lq, Lt)`` intermediate holds at most ``score_budget``
elements. Scores do not depend on batch sizes or padding (beyond float rounding).

The model floor scores in torch alone (:func:`uwe.core.scoring.sli_unpadded_blocks`, what
training validates with). Serving swaps in a faster block scorer of the same signature
(``sli_blocks``: :func:`uwe.infer.dense.sli_dense_blocks`, the fused Numba kernel with the chunks
side by side on CPU threads); the scores agree up to float rounding.
"""

from __future__ import annotations

import json
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from uwe import __version__
from uwe.constants import EPS
from uwe.core.lengths import length_groups
from uwe.core.scoring import (
    ATTENTION_UNIT,
    POOLED_TARGET_SCORERS,
    get_scorer,
    mean_pool,
    pooled_target_scores,
    sli_unpadded_blocks,
    unit_and_norm,
)
from uwe.io import make_temp_dir, replace_dir, set_default_mode
from uwe.model.encoder import TokenEncoder, drop_pooler, load_backbone
from uwe.model.folder import MODEL_FILES, UWE_CONFIG, check_model_folder, check_tokenizer_size
from uwe.model.model_card import CARD_FILE, model_card
from uwe.model.st_folder import write_st_files
from uwe.model.textcache import TextCache

REQUIRED_FILES = MODEL_FILES  # and a tokenizer file: uwe.model.folder.check_model_folder
FORMAT_VERSION = 1


@dataclass
class Bucket:
    """Texts of one token length: their positions in the input list and their tokens.

    Buckets built by :class:`UWEModel` hold texts of exactly equal length (``mask`` all true,
    no padding); the general scorers also accept padded buckets.
    """

    index: torch.Tensor  # (b,) long, positions in the original list
    emb: torch.Tensor  # (b, L, d)
    mask: torch.Tensor  # (b, L) bool
    _unit_norm: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, repr=False)

    @property
    def unpadded(self) -> bool:
        return bool(self.mask.all())

    def unit_norm(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Unit token vectors ``(b, L, d)`` and norms ``(b, L)`` (computed once)."""
        if self._unit_norm is None:
            self._unit_norm = unit_and_norm(self.emb)
        return self._unit_norm


@dataclass
class TargetIndex:
    """Cached target token embeddings (:meth:`UWEModel.index_targets`)."""

    targets: list[str]
    buckets: list[Bucket]
    _pooled: torch.Tensor | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.targets)

    def pooled(self) -> torch.Tensor:
        """Unit mean-pooled target vectors ``(n_t, d)`` in target order (computed once): the
        whole target side of the ``mean`` and ``sli_mean_target`` scorers."""
        if self._pooled is None:
            b0 = self.buckets[0].emb if self.buckets else torch.zeros(0, 1)
            out = b0.new_zeros(len(self.targets), b0.shape[-1])  # (n_t, d)
            for b in self.buckets:
                out.index_copy_(0, b.index, F.normalize(mean_pool(b.emb, b.mask), dim=-1,
                                                         eps=EPS))
            self._pooled = out
        return self._pooled

    def subset(self, targets: list[str]) -> TargetIndex:
        """Index of ``targets`` (each must be in this index) without re-encoding anything."""
        pos = {t: i for i, t in enumerate(self.targets)}
        missing = [t for t in targets if t not in pos]
        if missing:
            raise ValueError(f"{len(missing)} target(s) not in the index, e.g. {missing[0]!r}")
        if not self.buckets and self._pooled is not None:  # a pooled-only (cached) index
            rows = torch.tensor([pos[t] for t in targets], dtype=torch.long,
                                device=self._pooled.device)
            return TargetIndex(list(targets), [], _pooled=self._pooled[rows])
        device = self.buckets[0].index.device if self.buckets else torch.device("cpu")
        new_pos = torch.full((len(self.targets),), -1, dtype=torch.long, device=device)
        new_pos[torch.tensor([pos[t] for t in targets], dtype=torch.long, device=device)] = (
            torch.arange(len(targets), device=device))
        buckets = []
        for b in self.buckets:
            mapped = new_pos[b.index]  # (b,) position in the subset, -1 = not in it
            keep = mapped >= 0
            if keep.any():
                buckets.append(Bucket(mapped[keep], b.emb[keep], b.mask[keep]))
        return TargetIndex(list(targets), buckets)


class UWEModel:
    """Encoder + scorer. ``batch_size``: texts per encoder forward at inference;
    ``score_budget``: max elements of one ``(queries, targets, Lq, Lt)`` scoring intermediate
    (None: 2**21 on CPU, where small cache-friendly blocks measured fastest, 2**26 on GPU).
    ``text_cache_mb`` > 0 keeps each encoded text's token embeddings (:mod:`uwe.model.textcache`),
    so a text met again (a skill label as a target of one task and a query of the next) is
    not encoded again; only for frozen weights (off by default; training never sets it).
    ``sli_blocks`` scores one unpadded query bucket against unpadded target chunks
    (``fn(q_unit, q_norm, [(t_unit, t_norm)], attention_temperature) -> [(b_q, b_t)]``); None
    is the torch path :func:`uwe.core.scoring.sli_unpadded_blocks`. ``kind`` is ``"uwe"``: the
    registry's name for a model of this class (:mod:`uwe.model.registry`)."""

    kind = "uwe"

    def __init__(self, encoder: TokenEncoder, scorer: str = "sli",
                 attention_temperature: float = 0.1, batch_size: int = 128,
                 score_budget: int | None = None, name: str | None = None,
                 config: dict | None = None, progress: bool = False,
                 text_cache_mb: float = 0, sli_blocks=None):
        self.scorer = get_scorer(scorer)  # ValueError for an unknown name
        if not attention_temperature > 0:
            raise ValueError(f"attention_temperature must be > 0, got {attention_temperature}")
        self.encoder, self.scorer_name = encoder, scorer
        self.attention_temperature = float(attention_temperature)
        self.batch_size, self.score_budget, self.progress = batch_size, score_budget, progress
        self.name = name or encoder.backbone_name or "uwe"
        self.config = dict(config or {})
        self.text_cache = TextCache(text_cache_mb) if text_cache_mb else None
        self.sli_blocks = sli_blocks or sli_unpadded_blocks

    @classmethod
    def from_backbone(cls, name_or_path: str | Path, scorer: str = "sli",
                      attention_temperature: float = 0.1, max_length: int = 64,
                      device: str = "auto", **kwargs) -> UWEModel:
        """An untuned UWE model on a pretrained backbone (the "untuned backbone" row)."""
        from uwe.model.pretrained import resolve_device

        get_scorer(scorer)
        encoder = TokenEncoder.from_pretrained(name_or_path, max_length=max_length)
        encoder.to(resolve_device(device)).eval()
        return cls(encoder, scorer, attention_temperature, **kwargs)

    @property
    def device(self) -> torch.device:
        return self.encoder.device

    @contextmanager
    def _inference(self):
        was_training = self.encoder.training
        self.encoder.eval()
        try:
            with torch.inference_mode():
                yield
        finally:
            self.encoder.train(was_training)

    def _encode_buckets(self, texts: list[str], batch_size: int | None = None) -> list[Bucket]:
        """Encode ``texts`` grouped by exact token length (longest first), ``batch_size`` at a
        time, so no batch is padded (call in inference mode), into one bucket per length
        (scored in large blocks). With a text cache only the texts it lacks go through the
        encoder; the buckets are the same."""
        bs = batch_size or self.batch_size
        cache = self.text_cache
        if cache is None:
            return self._bucket_batches(texts, bs, merge=True)

        def encode(missing: list[str]) -> list[torch.Tensor]:  # one (L, d) row per text
            out: list[torch.Tensor] = [None] * len(missing)  # type: ignore[list-item]
            for b in self._bucket_batches(missing, bs, merge=False):
                for row, i in enumerate(b.index.tolist()):
                    out[i] = b.emb[row]
            return out

        rows = cache.lookup(texts, encode)
        lengths = np.fromiter((r.shape[0] for r in rows), dtype=np.int64, count=len(rows))
        buckets: list[Bucket] = []
        for idx in length_groups(lengths):
            emb = torch.stack([rows[i] for i in idx])  # (b, L, d), a new tensor
            mask = torch.ones(emb.shape[:2], dtype=torch.bool, device=emb.device)
            buckets.append(Bucket(torch.from_numpy(idx).to(emb.device), emb, mask))
        return buckets

    def _bucket_batches(self, texts: list[str], bs: int, merge: bool) -> list[Bucket]:
        """Run the encoder over ``texts`` in unpadded equal-length batches (no cache); with
        ``merge`` the batches of one length are concatenated into one bucket."""
        from tqdm.auto import tqdm

        if not texts:
            return []
        batches = length_groups(self.encoder.token_lengths(texts), bs)  # no padding in a batch
        runs: list[list[Bucket]] = []  # consecutive batches of one length (longest first)
        for idx in tqdm(batches, disable=not self.progress, leave=False, desc="encode"):
            emb, mask = self.encoder([texts[i] for i in idx])  # (b, L, d), (b, L)
            b = Bucket(torch.from_numpy(idx).to(emb.device), emb.float(), mask)
            if merge and runs and runs[-1][0].emb.shape[1] == emb.shape[1]:
                runs[-1].append(b)
            else:
                runs.append([b])
        return [run[0] if len(run) == 1 else
                Bucket(torch.cat([b.index for b in run]), torch.cat([b.emb for b in run]),
                       torch.cat([b.mask for b in run])) for run in runs]

    def index_targets(self, targets: list[str], batch_size: int | None = None) -> TargetIndex:
        """Token embeddings of ``targets``, computed once, kept on the model's device."""
        targets = list(targets)
        with self._inference():
            return TargetIndex(targets, self._encode_buckets(targets, batch_size))

    def _score_block(self, q: Bucket, index: TargetIndex) -> torch.Tensor:
        """Scores of one query bucket vs every target: ``(b_q, n_t)`` in target order.

        SLI on unpadded buckets takes the block scorer ``sli_blocks`` (all target chunks in one
        call); ``mean`` and ``sli_mean_target`` one product with the
        pooled targets (:meth:`TargetIndex.pooled`); other scorers, or padded buckets, the
        general masked all-pairs scorer."""
        b_q, l_q = q.mask.shape
        if self.scorer_name in POOLED_TARGET_SCORERS and len(index):
            return pooled_target_scores(self.scorer_name, q.emb, q.mask, index.pooled())
        budget = self.score_budget or (2**26 if q.emb.device.type == "cuda" else 2**22)
        out = q.emb.new_zeros(b_q, len(index))  # (b_q, n_t)
        # sli_cos = SLI over unit tokens: the dense kernel with every norm 1 (raw dot = cosine)
        dense = self.scorer_name in ATTENTION_UNIT and q.unpadded
        unit = ATTENTION_UNIT.get(self.scorer_name) == "cosine"
        blocks, where = [], []  # dense (target chunk) blocks, scored together at the end
        for t in index.buckets:
            chunk = max(1, budget // max(1, b_q * l_q * t.mask.shape[1]))
            if dense and t.unpadded:
                tu, tn = t.unit_norm()
                tn = torch.ones_like(tn) if unit else tn
                for j in range(0, tu.shape[0], chunk):
                    blocks.append((tu[j : j + chunk], tn[j : j + chunk]))
                    where.append(t.index[j : j + chunk])
                continue
            s = self.scorer.all_pairs(q.emb, q.mask, t.emb, t.mask,
                                      attention_temperature=self.attention_temperature,
                                      target_chunk=chunk)  # (b_q, b_t)
            out.index_copy_(1, t.index, s.float())
        if blocks:  # serving's sli_blocks runs them side by side, one per CPU thread
            qu, qn = q.unit_norm()
            qn = torch.ones_like(qn) if unit else qn
            for idx, s in zip(where, self.sli_blocks(qu, qn, blocks, self.attention_temperature),
                              strict=True):
                out.index_copy_(1, idx, s.float())
        return out

    def score_index(self, queries: list[str], index: TargetIndex) -> np.ndarray:
        """``(n_q, n_t)`` float32 scores of ``queries`` against an indexed target space."""
        queries = list(queries)
        out = np.zeros((len(queries), len(index)), dtype=np.float32)
        if not queries or len(index) == 0:
            return out
        with self._inference():  # one query bucket per length: fewer, larger score blocks
            for q in self._encode_buckets(queries):
                out[q.index.cpu().numpy()] = self._score_block(q, index).cpu().numpy()
        return out

    def score(self, queries: list[str], targets: list[str]) -> np.ndarray:
        """``(n_q, n_t)`` float32; equals ``score_index(queries, index_targets(targets))``."""
        return self.score_index(queries, self.index_targets(targets))

    def rank(self, queries: list[str], index: TargetIndex, top_k: int = 10,
             query_chunk: int = 1024) -> list[list[tuple[str, float]]]:
        """Top-``top_k`` ``(target, score)`` per query, best first; ties -> lower target index."""
        k = min(top_k, len(index))
        out = []
        for s in range(0, len(queries), query_chunk):
            scores = self.score_index(list(queries[s : s + query_chunk]), index)  # (c, n_t)
            top = np.argsort(-scores, axis=1, kind="stable")[:, :k]  # (c, k)
            out += [[(index.targets[j], float(row[j])) for j in ids]
                    for row, ids in zip(scores, top, strict=True)]
        return out


def save(model: UWEModel, path: str | Path, extra_config: dict | None = None) -> Path:
    """Write ``model`` to the folder ``path`` atomically (temp folder + rename).

    ``uwe_config.json`` = the core keys (uwe version, backbone, scorer, attention temperature,
    max length) plus ``extra_config`` (training params, graphs, data, ...; core keys win);
    ``README.md`` = the model card made from it (:mod:`uwe.model.model_card`); and the
    sentence-transformers files that make the folder load exactly in that library
    (:mod:`uwe.model.st_folder`).
    """
    path = Path(path)
    tmp = make_temp_dir(path)
    try:
        enc = model.encoder
        enc.backbone.save_pretrained(tmp)
        enc.tokenizer.save_pretrained(tmp)
        config = {**dict(extra_config or {}), "uwe_version": __version__,
                  "format_version": FORMAT_VERSION, "backbone": enc.backbone_name,
                  "scorer": model.scorer_name,
                  "attention_temperature": model.attention_temperature,
                  "max_length": enc.max_length,
                  "pooler": getattr(enc.backbone, "pooler", None) is not None}
        (tmp / UWE_CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True, default=str)
                                      + "\n", encoding="utf-8")
        (tmp / CARD_FILE).write_text(model_card(json.loads(json.dumps(config, default=str)),
                                                name=path.name), encoding="utf-8")
        write_st_files(tmp, model.scorer_name, enc.max_length, enc.dim, config["pooler"])
        pickles = [p.name for p in tmp.iterdir() if p.suffix in (".bin", ".pt", ".pkl", ".pth")]
        assert not pickles, f"pickle files written: {pickles}"
        for f in tmp.iterdir():  # safetensors writes 0600; the folder's files as any output
            set_default_mode(f)
        replace_dir(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def load(path: str | Path, device: str = "auto", **kwargs) -> UWEModel:
    """Load a UWE folder written by :func:`save` (by this or an older version of the project),
    or a sentence-transformers folder (:func:`load_st_folder`); ``kwargs`` go to
    :class:`UWEModel`. A folder that is neither, or damaged, is one line naming what is wrong."""
    from transformers import AutoTokenizer

    from uwe.model.pretrained import resolve_device

    path = Path(path)
    if not (path / UWE_CONFIG).is_file() and (path / "modules.json").is_file():
        return load_st_folder(path, device=device, **kwargs)
    config = check_model_folder(path, tokenizer_size=False)  # files, configs: one line if not
    backbone = load_backbone(path)  # strict; the pooler as the weights have it (older folders)
    drop_pooler(backbone)
    tokenizer = AutoTokenizer.from_pretrained(path)
    check_tokenizer_size(len(tokenizer), int(backbone.config.vocab_size), path)
    encoder = TokenEncoder(backbone, tokenizer, max_length=int(config["max_length"]),
                           backbone_name=str(config.get("backbone", "")))
    encoder.to(resolve_device(device)).eval()
    kwargs.setdefault("name", path.name)
    return UWEModel(encoder, config["scorer"], float(config["attention_temperature"]),
                    config=config, **kwargs)


def load_st_folder(path: str | Path, device: str = "auto", **kwargs) -> UWEModel:
    """A sentence-transformers folder as the UWE model that ranks as the library does
    (:func:`uwe.model.st_folder.read_st_folder`: a mean-pooling ``SentenceTransformer`` ->
    scorer ``mean``; a ``MultiVectorEncoder`` of normalised tokens -> ``maxsim``), at its
    ``max_seq_length``; one line naming the file and module when it computes anything else."""
    from transformers import AutoTokenizer

    from uwe.model.folder import check_uwe_config, read_json_object
    from uwe.model.pretrained import resolve_device
    from uwe.model.st_folder import read_st_folder

    path = Path(path)
    st = read_st_folder(path)
    config = {"scorer": st.scorer, "attention_temperature": 0.1, "max_length": st.max_length,
              "backbone": path.name, "source": f"sentence-transformers {st.model_type}"}
    check_uwe_config(config, st.transformer / "sentence_bert_config.json",
                     read_json_object(st.transformer / "config.json"))
    backbone = load_backbone(st.transformer)
    drop_pooler(backbone)
    tokenizer = AutoTokenizer.from_pretrained(st.transformer)
    check_tokenizer_size(len(tokenizer), int(backbone.config.vocab_size), st.transformer)
    encoder = TokenEncoder(backbone, tokenizer, max_length=st.max_length, backbone_name=path.name)
    encoder.to(resolve_device(device)).eval()
    kwargs.setdefault("name", path.name)
    return UWEModel(encoder, st.scorer, config=config, **kwargs)
