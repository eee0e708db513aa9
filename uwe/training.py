"""UWE training loop (arXiv 2511.07969, Sec. "Training"): one shared encoder, all-pairs scores
per graph, many-to-many InfoNCE summed over graphs (``uwe.losses.MultiGraphInfoNCE``).

One step: every graph of ``cfg.graphs`` contributes a batch (:mod:`uwe.batching`); all texts of
the step are encoded in length-sorted chunks (little padding), each graph's two sides are
scored all-pairs with ``cfg.scorer`` (in float32, outside autocast: the loss temperatures
0.02-0.05 magnify bf16 rounding), and the weighted losses are summed. AdamW (no weight decay
on biases / norms), learning rate linear warm-up over ``warmup * steps`` steps then linear decay
towards 0, gradient-norm clipping.

Validation (rank 0): MAP on the ``heldout`` val splits of the macro tasks, each capped at
``val_max_queries`` queries (a subsample fixed by ``VAL_SEED``, identical for every run and
seed), macro-averaged with ``uwe.tasks.macro_average``; every ``eval_every`` steps and at the
end. The best model by val macro MAP is kept in ``{checkpoint_dir}/best`` and published to
``out_dir`` at the end.

Checkpoints (``{checkpoint_dir}/last``, rewritten atomically at every validation and when a
SIGTERM/SIGINT stops the run at a step boundary): ``model.safetensors``, ``trainer_state.pt``
(optimizer, scheduler, RNG and sampler generator states per rank; read with
``weights_only=True``), ``checkpoint.json`` and ``log.csv`` (the per-step log up to the
checkpoint). ``resume=True`` continues from it and ends with the weights, and the log, an
uninterrupted run would have; the log file itself may be gone (``dvc repro`` deletes a stage's
outputs before running it). A checkpoint belongs to one run: the same training config (but the
``RESUME_FREE`` fields), seed and world size, and the same :func:`run_fingerprint` (source of the
``uwe`` package, torch version, bytes of the graph files), so that a change of code or data
trains again instead of continuing, or re-publishing, an old run. ``max_minutes`` is a safety
cap only: a run it stops ends early at a wall-clock-dependent step and is not reproducible step
for step.

Distributed (``torchrun``, ``WORLD_SIZE > 1``): gloo on CPU / nccl on CUDA, the encoder wrapped
in DistributedDataParallel, sampler seed ``seed + rank``; token embeddings are all-gathered
with gradient so each graph's in-batch negatives span the global batch, and the positive mask
is rebuilt from the full graph for the gathered node ids. Only rank 0 validates and writes.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime
import hashlib
import io
import json
import logging
import math
import os
import shutil
import signal
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_model, save_model

from uwe.batching import GraphBatch, MultiGraphBatcher
from uwe.config import TrainParams
from uwe.frozen import BottomCache, CachedTopEncoder, freeze_bottom
from uwe.io import file_sha256, make_temp_dir
from uwe.losses import MultiGraphInfoNCE
from uwe.model import UWEModel, replace_dir, save
from uwe.runtime import PACKAGE, import_closure, seed_everything

logger = logging.getLogger(__name__)

VAL_SEED = 0
# TrainParams fields that may change between a checkpoint and its resumption.
RESUME_FREE = ("max_minutes", "device", "precision", "out_dir", "checkpoint_dir", "eval_every",
               "val_max_queries", "frozen_cache_dir")


# ----------------------------------------------------------------------------- distributed
@dataclasses.dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    created: bool = False  # this call created the process group (and destroys it)

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> tuple[DistInfo, torch.device]:
    """Join the ``torchrun`` process group when ``WORLD_SIZE > 1``; CUDA -> ``cuda:LOCAL_RANK``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(), device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    created = not dist.is_initialized()
    if created:
        # rank 0 validates while the others wait in a collective: allow long validations
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(hours=2))
    return DistInfo(dist.get_rank(), dist.get_world_size(), created), device


class _AllGatherWithGrad(torch.autograd.Function):
    """``x`` of every rank stacked ``(world, *x.shape)``; the backward sums the incoming
    gradients over ranks and returns this rank's slice (what
    ``torch.distributed.nn.functional.all_gather`` does; that API is deprecated in torch 2.13)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        out = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(out, x.contiguous())
        return torch.stack(out)  # (world, *x.shape)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)  # sum of every rank's gradient w.r.t. every rank's slice
        return grad[dist.get_rank()]


def gather_tokens(emb: torch.Tensor, mask: torch.Tensor, counts: list[int]
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """All-gather ``(n_r, L_r, d)`` token embeddings (with gradient) and masks of every rank;
    rows/tokens are padded to the global max for the collective and the row padding removed.
    -> ``(sum_r n_r, L, d)``, ``(sum_r n_r, L)``."""
    length = torch.tensor([emb.shape[1]], device=emb.device)
    dist.all_reduce(length, op=dist.ReduceOp.MAX)
    pad_l, pad_n = int(length) - emb.shape[1], max(counts) - emb.shape[0]
    emb = F.pad(emb, (0, 0, 0, pad_l, 0, pad_n))  # (n_max, L, d)
    mask = F.pad(mask.to(torch.uint8), (0, pad_l, 0, pad_n))  # (n_max, L)
    embs = _AllGatherWithGrad.apply(emb)  # (world, n_max, L, d), differentiable
    masks = [torch.empty_like(mask) for _ in counts]
    dist.all_gather(masks, mask)
    emb = torch.cat([e[:n] for e, n in zip(embs, counts, strict=True)])
    mask = torch.cat([m[:n] for m, n in zip(masks, counts, strict=True)]).bool()
    return emb, mask


def global_batches(batcher: MultiGraphBatcher, batches: dict[str, GraphBatch]):
    """Node ids of every rank's batches -> per graph (left counts, right counts, global mask)."""
    ids = {name: (b.left_ids, b.right_ids) for name, b in batches.items()}
    everyone: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, ids)
    out = {}
    for name in batches:
        lefts = [r[name][0] for r in everyone]
        rights = [r[name][1] for r in everyone]
        mask = batcher.samplers[name].positive_mask(
            [i for x in lefts for i in x], [i for x in rights for i in x])
        out[name] = ([len(x) for x in lefts], [len(x) for x in rights], mask)
    return out


# ----------------------------------------------------------------------------- optimisation
def linear_schedule(steps: int, warmup: float):
    """LR multiplier after ``k`` optimizer steps: ``(k+1)/W`` during the ``W = round(warmup *
    steps)`` warm-up steps, then ``(steps - k) / (steps - W)`` (reaches 0 at ``steps``)."""
    warm = int(round(warmup * steps))

    def factor(k: int) -> float:
        if k < warm:
            return (k + 1) / warm
        return max(0.0, (steps - k) / max(1, steps - warm))

    return factor


def make_optimizer(module: torch.nn.Module, cfg: TrainParams):
    """AdamW with weight decay on matrices only (not on biases / LayerNorm), + the schedule."""
    params = [p for p in module.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, linear_schedule(cfg.steps, cfg.warmup))
    return opt, sched


def encode_sides(encode, token_lengths, sides: list[list[str]], chunk: int = 64
                 ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Encode the texts of several batch sides together: sorted by token length, ``chunk``
    texts per forward (little padding), then re-assembled per side.

    -> per side ``(emb (n_s, L_s, d), mask (n_s, L_s))`` with ``L_s`` the side's longest text.
    """
    texts = [t for side in sides for t in side]
    lengths = np.asarray(token_lengths(texts), dtype=np.int64)  # (n,)
    order = np.argsort(-lengths, kind="stable")
    packed = []
    for s in range(0, len(texts), chunk):
        emb, mask = encode([texts[i] for i in order[s : s + chunk]])  # (c, L, d), (c, L)
        assert mask.sum(1).tolist() == lengths[order[s : s + chunk]].tolist()
        packed.append(emb[mask])  # (tokens, d): real tokens, text after text
    tokens = torch.cat(packed)  # (N, d) in `order`
    start = np.zeros(len(texts), dtype=np.int64)
    start[order] = np.concatenate([[0], np.cumsum(lengths[order])[:-1]])  # first token per text
    out, first = [], 0
    for side in sides:
        n = len(side)
        lens = torch.from_numpy(lengths[first : first + n])  # (n_s,)
        span = torch.arange(int(lens.max()) if n else 1)  # (L_s,)
        mask = span[None] < lens[:, None]  # (n_s, L_s)
        idx = torch.from_numpy(start[first : first + n])[:, None] + span[None]  # (n_s, L_s)
        idx = torch.where(mask, idx, torch.zeros_like(idx)).to(tokens.device)
        out.append((tokens[idx], mask.to(tokens.device)))  # (n_s, L_s, d), (n_s, L_s)
        first += n
    return out


def step_scores(encode, model: UWEModel, batcher: MultiGraphBatcher,
                batches: dict[str, GraphBatch], info: DistInfo, autocast,
                token_lengths=None, chunk: int = 64
                ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Encode every graph's batch (:func:`encode_sides`, ``chunk`` texts per forward) ->
    ``{graph: (scores, mask)}``; scores ``(B_l, B_r)`` float32 (global batch when distributed).
    ``token_lengths`` defaults to the model's tokenizer (a frozen-bottom encoder answers from
    its cache)."""
    glob = global_batches(batcher, batches) if info.world > 1 else None
    sides = [x for b in batches.values() for x in (b.left_texts, b.right_texts)]
    with autocast:
        encoded = encode_sides(encode, token_lengths or model.encoder.token_lengths, sides,
                               chunk=chunk)
    out = {}
    for k, (name, b) in enumerate(batches.items()):
        (l_emb, l_mask), (r_emb, r_mask) = encoded[2 * k], encoded[2 * k + 1]
        l_emb, r_emb, mask = l_emb.float(), r_emb.float(), b.positive_mask
        if glob is not None:
            n_left, n_right, mask = glob[name]
            l_emb, l_mask = gather_tokens(l_emb, l_mask, n_left)
            r_emb, r_mask = gather_tokens(r_emb, r_mask, n_right)
        scores = model.scorer.all_pairs(l_emb, l_mask, r_emb, r_mask,
                                        attention_temperature=model.attention_temperature)
        out[name] = (scores, mask.to(scores.device))  # (B_l, B_r) each
    return out


# ----------------------------------------------------------------------------- validation
def load_val_sets(root: str | Path, tasks: list[str] | None, max_queries: int | None) -> list:
    """Heldout val splits (default: every macro task with a val split on disk), each subsampled
    to ``max_queries`` queries with positives (``VAL_SEED``; same subsample in every run)."""
    from uwe import tasks as task_lib

    if tasks is None:
        on_disk = set(task_lib.list_tasks("heldout", root))
        members = [t for g in task_lib.TASK_GROUPS.values() for t in g]
        tasks = [t for t in members
                 if t in on_disk and "val" in task_lib.list_splits(t, "heldout", root)]
    sets = []
    for name in tasks:
        ds = task_lib.load_task(name, "heldout", "val", root)
        keep = np.array([i for i, p in enumerate(ds.positives) if p], dtype=np.int64)
        if max_queries is not None and len(keep) > max_queries:
            rng = np.random.default_rng([VAL_SEED, zlib.crc32(name.encode())])
            keep = np.sort(rng.choice(keep, size=max_queries, replace=False))
        sets.append(dataclasses.replace(ds, queries=[ds.queries[i] for i in keep],
                                        positives=[ds.positives[i] for i in keep]))
    return sets


def validate(model: UWEModel, val_sets: list) -> tuple[float, dict[str, float]]:
    """``(macro MAP, {task: MAP})``. Every distinct target text of all tasks is encoded once
    (the ESCO skill spaces of several tasks overlap almost entirely)."""
    from uwe.metrics import ranking_metrics
    from uwe.tasks import macro_average

    union = list(dict.fromkeys(t for ds in val_sets for t in ds.targets))
    index = model.index_targets(union)
    per_task = {}
    for ds in val_sets:
        scores = model.score_index(ds.queries, index.subset(ds.targets))  # (n_q, n_t)
        per_task[ds.name] = float(ranking_metrics(scores, ds.positives, metrics=("map",))["map"])
    return macro_average(per_task), per_task


# ----------------------------------------------------------------------------- files
class CsvLog:
    """Per-step rows, kept in memory and appended to a CSV as they come (``path=None``: memory
    only). A checkpoint stores the rows up to its step (:meth:`save`), and a resumed run starts
    from those (:meth:`read`), so the continued file has every step once, even when the file
    was deleted in between."""

    def __init__(self, columns: list[str]):
        self.columns, self.path, self.rows = columns, None, []

    def _text(self) -> str:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, self.columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        return buf.getvalue()

    def open(self, path: str | Path | None) -> None:
        """Write the rows so far to ``path`` (atomically) and append later rows to it."""
        from uwe.io import write_text_atomic

        self.path = Path(path) if path else None
        if self.path is not None:
            write_text_atomic(self.path, self._text())

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self._text(), encoding="utf-8")

    @staticmethod
    def read(path: str | Path) -> list[dict]:
        with Path(path).open(newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))

    def append(self, row: dict) -> None:
        row = {c: row.get(c, "") for c in self.columns}
        self.rows.append(row)
        if self.path is not None:
            with self.path.open("a", newline="", encoding="utf-8") as fh:
                csv.DictWriter(fh, self.columns, lineterminator="\n").writerow(row)


def run_fingerprint(graphs, data_root: str | Path) -> dict[str, str]:
    """What a checkpoint's weights depend on besides the config and seed: sha256 of the source
    of the ``uwe`` modules training runs (this module and every module it imports, directly or
    through others: :func:`uwe.runtime.import_closure`; by name and bytes), the torch version
    and sha256 of each training graph file (``{data_root}/graphs/{name}.parquet``; a missing
    file is skipped, the batcher names it). A change to any other module (plotting,
    evaluation, the CLI) keeps the checkpoint."""
    code = hashlib.sha256()
    for path in training_sources():
        code.update(path.relative_to(PACKAGE).as_posix().encode() + b"\0" + path.read_bytes())
    out = {"code": code.hexdigest(), "torch": torch.__version__}
    for name in sorted(graphs):
        path = Path(data_root) / "graphs" / f"{name}.parquet"
        if path.is_file():
            out[f"graph {name}"] = file_sha256(path)
    return out


def training_sources() -> list[Path]:
    """The ``uwe`` source files a training run executes (this module's import closure)."""
    return [PACKAGE / "training.py", *(p for p in import_closure("import uwe.training")
                                       if p.name != "training.py")]


def cache_texts(batcher: MultiGraphBatcher, data_root: str | Path) -> list[str]:
    """Texts the frozen-bottom cache holds: every text of every known training graph on disk
    (``uwe.tasks.GRAPHS`` under ``{data_root}/graphs``), not only of the graphs this run
    trains on, so that runs on subsets of the graphs (transfer, ablations) share one cache;
    then any text of the batcher's graphs not among them.

    A graph contributes its texts in the order its ``GraphSampler`` holds them (sorted unique
    left texts, then right texts) whether or not this run trains on it, so every subset of the
    graphs gives the same list, hence the same cache key and one shared cache."""
    from uwe.tasks import GRAPHS, load_graph

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


def rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


@contextlib.contextmanager
def stop_on_signals():
    """SIGTERM / SIGINT set ``flag['signal']`` (the loop stops at the next step boundary with a
    checkpoint); a second signal raises KeyboardInterrupt at once. No-op off the main thread."""
    flag: dict[str, Any] = {"signal": None}

    def handler(signum, frame):
        if flag["signal"] is not None:
            raise KeyboardInterrupt
        flag["signal"] = signal.Signals(signum).name
        logger.warning("%s received: stopping after this step", flag["signal"])

    old = {}
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            old[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread
        pass
    try:
        yield flag
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


# ----------------------------------------------------------------------------- the run
class Trainer:
    """State of one training run; use :func:`train`."""

    def __init__(self, cfg: TrainParams, seed: int, data_root: str | Path, out_dir: Path,
                 ckpt_dir: Path, info: DistInfo, device: torch.device, val_tasks, progress):
        self.cfg, self.seed, self.info, self.device = cfg, seed, info, device
        self.data_root, self.out_dir, self.ckpt_dir = data_root, out_dir, ckpt_dir
        self.progress = progress
        seed_everything(seed + info.rank)
        t_init = time.perf_counter()
        self.cache_info: dict | None = None
        self.model = UWEModel.from_backbone(cfg.backbone, cfg.scorer, cfg.attention_temperature,
                                            cfg.max_length, device=str(device))
        freeze_bottom(self.model.encoder.backbone, cfg.frozen_layers)
        self.batcher = MultiGraphBatcher.from_root(
            list(cfg.graphs), data_root,
            {g: p.batch_size or cfg.batch_size for g, p in cfg.graphs.items()}, seed + info.rank,
            sentence_pair_prob=cfg.sentence_pair_prob,
            dedup_right=cfg.loss not in ("one_to_one", "symmetric"),
            token_length=self.model.encoder.token_lengths, pair_max_tokens=cfg.max_length)
        self.loss_fn = MultiGraphInfoNCE(cfg.graphs, cfg.loss)
        self.opt, self.sched = make_optimizer(self.model.encoder, cfg)
        bf16 = device.type == "cuda" and cfg.precision in ("auto", "bf16")
        if cfg.precision == "bf16" and not bf16:
            logger.warning("precision bf16 requested on %s: training in fp32", device)
        self.autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if bf16
                         else contextlib.nullcontext())
        self.val_sets = (load_val_sets(data_root, val_tasks, cfg.val_max_queries)
                         if info.main else [])
        self.step, self.elapsed, self.best_map, self.best_step = 0, 0.0, -math.inf, None
        self.history: list[dict] = []
        self.resumed_from: int | None = None
        self.last_shapes: dict[str, list[int]] = {}
        self.last_loss: float | None = None
        self.encode: torch.nn.Module = self.model.encoder
        self.top: CachedTopEncoder | None = None
        self.model_key: str | None = None  # names the untuned model for the mined-pool cache
        if cfg.frozen_layers:
            texts = cache_texts(self.batcher, data_root)
            cache, hit = BottomCache.load_or_build(
                self.model.encoder, cfg.frozen_layers, texts, dtype=cfg.frozen_cache_dtype,
                cache_dir=cfg.frozen_cache_dir, progress=progress and info.main)
            self.cache_info = {"texts": len(cache), "tokens": int(cache.tokens.shape[0]),
                               "mib": round(cache.nbytes / 2**20, 1), "from_disk": hit,
                               "seconds": round(time.perf_counter() - t_init, 1)}
            self.encode = self.top = CachedTopEncoder(self.model.encoder, cfg.frozen_layers, cache)
            self.model_key = cache.key
        self.hard_info: dict | None = None
        if cfg.hard_negatives:
            self._mine(cfg)
        self.fingerprint = run_fingerprint(cfg.graphs, data_root)
        self.log = CsvLog(["step", "loss", *[f"loss_{g}" for g in cfg.graphs], "lr", "seconds",
                           "val_map"])

    def _mine(self, cfg: TrainParams) -> None:
        """Hard-negative pools from the model as loaded (untuned), set on the samplers."""
        from uwe.negatives import mine_graphs

        if cfg.loss == "symmetric":
            raise ValueError("train.hard_negatives needs a loss that accepts extra candidates "
                             "(not 'symmetric', whose score matrix must be square)")
        names = list(cfg.hard_negative_graphs or cfg.graphs)
        unknown = sorted(set(names) - set(self.batcher.samplers))
        if unknown:
            raise ValueError(f"train.hard_negative_graphs names graphs not trained: {unknown}")
        t0 = time.perf_counter()
        was = self.encode.training
        self.encode.eval()
        try:
            pools = mine_graphs({n: self.batcher.samplers[n] for n in names}, self.encode,
                                self.token_lengths, cfg.hard_negative_pool,
                                model_key=self.model_key, cache_dir=cfg.frozen_cache_dir)
        finally:
            self.encode.train(was)
        for name, pool in pools.items():
            self.batcher.samplers[name].set_hard_negatives(pool, cfg.hard_negatives)
        self.hard_info = {"graphs": names, "pool": cfg.hard_negative_pool,
                          "per_left": cfg.hard_negatives,
                          "seconds": round(time.perf_counter() - t0, 1)}

    # -- checkpoints -----------------------------------------------------------------------
    def meta(self) -> dict:
        return {"step": self.step, "seed": self.seed, "world_size": self.info.world,
                "train": _jsonable(dataclasses.asdict(self.cfg)), "elapsed": self.elapsed,
                "best_map": None if self.best_step is None else self.best_map,
                "best_step": self.best_step, "val_history": self.history,
                "last_loss": self.last_loss, "global_batch": self.last_shapes,
                "fingerprint": self.fingerprint}

    def save_checkpoint(self) -> None:
        """Rewrite ``{ckpt}/last`` atomically (all ranks call: sampler/RNG states are gathered)."""
        local = {"rng": rng_state(self.device), "samplers": self.batcher.state_dict()}
        ranks: list[Any] = [local]
        if self.info.world > 1:
            ranks = [None] * self.info.world
            dist.all_gather_object(ranks, local)
        if not self.info.main:
            return
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        tmp = make_temp_dir(self.ckpt_dir / "last")
        try:
            save_model(self.model.encoder.backbone, str(tmp / "model.safetensors"))
            torch.save({"optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
                        "ranks": ranks}, tmp / "trainer_state.pt")
            (tmp / "checkpoint.json").write_text(json.dumps(self.meta(), indent=2) + "\n")
            self.log.save(tmp / "log.csv")
            replace_dir(tmp, self.ckpt_dir / "last")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def resume(self, strict: bool = True) -> None:
        """Restore ``{ckpt}/last`` if present. A checkpoint of another run (config, seed, world
        size or :func:`run_fingerprint` differ, module docstring) raises ValueError when
        ``strict``, else it is discarded (a warning) and training starts from scratch."""
        last = self.ckpt_dir / "last"
        if not (last / "trainer_state.pt").is_file():
            return
        try:  # everything is read before anything is restored
            meta = json.loads((last / "checkpoint.json").read_text(encoding="utf-8"))
            if not isinstance(meta, dict):
                raise ValueError("checkpoint.json is not a JSON object")
            state = torch.load(last / "trainer_state.pt", map_location="cpu", weights_only=True)
            with safe_open(str(last / "model.safetensors"), framework="pt"):
                pass  # the header and the file's length agree (a truncated file fails here)
        except Exception as err:  # torch / safetensors raise their own error types
            why = f"{' '.join(str(err).split())[:200]} ({type(err).__name__})"
            if not strict:
                logger.warning("checkpoint %s is unreadable: %s; discarded, training from "
                               "scratch", last, why)
                self._discard_checkpoint()
                return
            raise ValueError(f"checkpoint {last} is unreadable: {why}; train from scratch "
                             f"(resume=False, scripts/train.py --no-resume) or delete it") from err
        new = _jsonable(dataclasses.asdict(self.cfg))
        diff = [f"train.{k}" for k in sorted(new)
                if k not in RESUME_FREE and meta["train"].get(k) != new[k]]
        run = {"seed": self.seed, "world_size": self.info.world}
        diff += [k for k, v in run.items() if meta[k] != v]
        old_print = meta.get("fingerprint") or {}
        diff += [f"{k} ({'changed' if k in old_print else 'unrecorded'})"
                 for k, v in self.fingerprint.items() if old_print.get(k) != v]
        if not (last / "log.csv").is_file():
            diff.append("log.csv (missing)")
        if diff:
            if not strict:
                logger.warning("checkpoint %s belongs to another run (differs in %s): "
                               "discarded, training from scratch", last, ", ".join(diff))
                self._discard_checkpoint()
                return
            raise ValueError(
                f"checkpoint {last} was written by another run (it differs in "
                f"{', '.join(diff)}); train from scratch (resume=False, scripts/train.py "
                f"--no-resume) or pick another checkpoint_dir")
        load_model(self.model.encoder.backbone, str(last / "model.safetensors"),
                   device=str(self.device))
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        mine = state["ranks"][self.info.rank]
        self.batcher.load_state_dict(mine["samplers"])
        set_rng_state(mine["rng"], self.device)
        self.step = self.resumed_from = int(meta["step"])
        self.elapsed, self.history = float(meta["elapsed"]), list(meta["val_history"])
        self.best_step = meta["best_step"]
        self.best_map = -math.inf if meta["best_map"] is None else float(meta["best_map"])
        self.last_loss, self.last_shapes = meta["last_loss"], dict(meta["global_batch"])
        self.log.rows = CsvLog.read(last / "log.csv")
        logger.info("resumed from %s at step %d", last, self.step)

    def _discard_checkpoint(self) -> None:
        if self.info.main:
            for sub in ("last", "best"):
                shutil.rmtree(self.ckpt_dir / sub, ignore_errors=True)
        if self.info.world > 1:
            dist.barrier()

    def extra_config(self, val: dict | None) -> dict:
        cfg = self.cfg
        return {"train": _jsonable(dataclasses.asdict(cfg)), "seed": self.seed,
                "step": self.step, "world_size": self.info.world,
                "graphs": {g: {k: v for k, v in dataclasses.asdict(p).items() if v is not None}
                           for g, p in cfg.graphs.items()},
                # relative to the model folder, so the config names no machine's paths
                "data": {"root": os.path.relpath(self.data_root, self.out_dir),
                         "graph_edges": self.batcher.edge_counts()},
                "val": val}

    # -- steps -------------------------------------------------------------------------------
    @property
    def token_lengths(self):
        return (self.top or self.model.encoder).token_lengths

    def train_step(self) -> tuple[float, dict[str, float], float]:
        """One optimizer step; returns (loss, per-graph losses, lr used)."""
        batches = self.batcher.sample()
        lr = float(self.opt.param_groups[0]["lr"])
        scored = step_scores(self.encode, self.model, self.batcher, batches, self.info,
                             self.autocast, token_lengths=self.token_lengths,
                             chunk=self.cfg.encode_chunk)
        loss, parts = self.loss_fn(scored)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss {float(loss)} at step {self.step + 1} "
                                     f"(per graph: {parts})")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip and self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.encoder.parameters(), self.cfg.grad_clip)
        self.opt.step()
        self.sched.step()
        self.last_shapes = {n: list(s.shape) for n, (s, _) in scored.items()}
        self.last_loss = float(loss.detach())
        return self.last_loss, parts, lr

    def validate(self) -> float | None:
        """Rank 0: val macro MAP, history, best model to ``{ckpt}/best``. None without val."""
        if not self.val_sets:
            return None
        t0 = time.perf_counter()
        macro, per_task = validate(self.model, self.val_sets)
        self.history.append({"step": self.step, "val_map": macro, "tasks": per_task})
        logger.info("step %d: val macro MAP %.2f (%.0f s) %s", self.step, 100 * macro,
                    time.perf_counter() - t0, {k: round(100 * v, 2) for k, v in per_task.items()})
        if macro > self.best_map:
            self.best_map, self.best_step = macro, self.step
            save(self.model, self.ckpt_dir / "best",
                 self.extra_config({"macro_map": macro, "tasks": per_task,
                                    "max_queries": self.cfg.val_max_queries}))
        return macro

    def publish(self) -> None:
        """Rank 0: the best model (or the last one without validation) -> ``out_dir``."""
        best = self.ckpt_dir / "best"
        if self.best_step is not None and best.is_dir():
            tmp = self.out_dir.parent / f".{self.out_dir.name}.tmp-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            self.out_dir.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(best, tmp)
            replace_dir(tmp, self.out_dir)
        else:
            save(self.model, self.out_dir, self.extra_config(None))
        logger.info("model written to %s (best step %s)", self.out_dir, self.best_step)

    # -- loop --------------------------------------------------------------------------------
    def should_stop(self, flag: dict, start: float) -> str | None:
        """"signal" / "max_minutes" / None, agreed across ranks."""
        late = (self.cfg.max_minutes is not None
                and self.elapsed_since(start) > 60 * self.cfg.max_minutes)
        codes = torch.tensor([float(flag["signal"] is not None), float(late)], device=self.device)
        if self.info.world > 1:
            dist.all_reduce(codes, op=dist.ReduceOp.MAX)
        return "signal" if codes[0] > 0 else "max_minutes" if codes[1] > 0 else None

    def elapsed_since(self, start: float) -> float:
        return self._base_elapsed + time.perf_counter() - start

    def run(self, log_path: str | Path | None) -> dict:
        from tqdm.auto import tqdm

        cfg, main = self.cfg, self.info.main
        self.log.open(log_path if main else None)
        if self.info.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            # no buffer broadcast: BERT-like buffers are constants, and ranks may run different
            # numbers of forwards per step (encode_sides chunks a rank's own texts)
            self.encode = DistributedDataParallel(self.top or self.model.encoder,
                                                  device_ids=ids, broadcast_buffers=False)
        self.model.encoder.train()
        self._base_elapsed, start = self.elapsed, time.perf_counter()
        stopped, due = None, False
        with stop_on_signals() as flag, tqdm(total=cfg.steps, initial=self.step, desc="train",
                                             disable=not (self.progress and main)) as bar:
            while self.step < cfg.steps:
                loss, parts, lr = self.train_step()
                self.step += 1
                due = self.step == cfg.steps or bool(cfg.eval_every
                                                     and self.step % cfg.eval_every == 0)
                val = self.validate() if due else None
                self.elapsed = self.elapsed_since(start)
                self.log.append({"step": self.step, "loss": loss, "lr": lr, "val_map": val,
                                 "seconds": round(self.elapsed, 3),
                                 **{f"loss_{g}": v for g, v in parts.items()}})
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}")
                if main and not self.progress and self.step % 25 == 0:
                    logger.info("step %d/%d loss %.4f (%.0f s)", self.step, cfg.steps, loss,
                                self.elapsed)
                if due:
                    self.save_checkpoint()
                stopped = self.should_stop(flag, start)
                if stopped:
                    break
        if stopped is not None and not due:
            if stopped == "max_minutes":
                self.validate()
            self.save_checkpoint()
        if stopped != "signal" and main:
            self.publish()
        return self.summary(stopped)

    def summary(self, stopped: str | None) -> dict:
        return {"steps_done": self.step, "steps": self.cfg.steps, "best_step": self.best_step,
                "best_val_map": None if self.best_step is None else self.best_map,
                "seconds": round(self.elapsed, 2), "graph_edges": self.batcher.edge_counts(),
                "stopped": stopped, "resumed_from": self.resumed_from,
                "val_history": self.history, "global_batch": self.last_shapes,
                "last_loss": self.last_loss, "frozen_cache": self.cache_info,
                "hard_negatives": self.hard_info,
                "world_size": self.info.world, "rank": self.info.rank,
                "out_dir": str(self.out_dir) if stopped != "signal" and self.info.main else None}


def train(cfg: TrainParams, *, seed: int, data_root: str | Path = "data/curated",
          out_dir: str | Path | None = None, checkpoint_dir: str | Path | None = None,
          log_path: str | Path | None = None, resume: bool | str = True, progress: bool = True,
          val_tasks: list[str] | None = None) -> dict:
    """Train UWE (module docstring) and return a summary: ``steps_done``, ``best_step``,
    ``best_val_map``, ``seconds``, ``graph_edges``, ``stopped`` (None / "max_minutes" /
    "signal"), ``resumed_from``, ``val_history``, ``global_batch`` (last step's loss-matrix
    shape per graph), ``out_dir``.

    ``out_dir`` / ``checkpoint_dir`` default to ``cfg.out_dir`` / ``cfg.checkpoint_dir``;
    ``log_path`` (CSV, one row per step) is optional; ``val_tasks`` defaults to every macro task
    with a heldout val split under ``data_root``; ``resume=False`` discards an old checkpoint,
    ``True`` continues it (ValueError if it belongs to another config), ``"auto"`` continues a
    matching one and discards any other (what a pipeline stage re-run after a change needs).
    """
    from uwe.encoders import resolve_device

    if resume not in (True, False, "auto"):
        raise ValueError(f"resume must be True, False or 'auto', got {resume!r}")
    if not cfg.graphs:
        raise ValueError("train.graphs is empty: nothing to train on")
    if cfg.steps < 1:
        raise ValueError(f"train.steps must be >= 1, got {cfg.steps}")
    out = Path(out_dir if out_dir is not None else cfg.out_dir)
    ckpt = Path(checkpoint_dir if checkpoint_dir is not None else cfg.checkpoint_dir)
    info, device = init_distributed(resolve_device(cfg.device))
    try:
        if not resume and info.main:
            for sub in ("last", "best"):
                shutil.rmtree(ckpt / sub, ignore_errors=True)
        if info.world > 1:
            dist.barrier()
        trainer = Trainer(cfg, seed, data_root, out, ckpt, info, device, val_tasks, progress)
        if resume:
            trainer.resume(strict=resume is True)
        return trainer.run(log_path)
    finally:
        if info.created:
            dist.destroy_process_group()
