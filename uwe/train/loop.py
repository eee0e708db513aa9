"""UWE training loop (arXiv 2511.07969, Sec. "Training"): one shared encoder, all-pairs scores
per graph, many-to-many InfoNCE summed over graphs (``uwe.core.losses.MultiGraphInfoNCE``).

One step (:mod:`uwe.train.step`): every graph contributes a batch, all texts of the step are
encoded together, each graph's sides are scored all-pairs in float32 and the weighted losses are
summed; AdamW (no weight decay on biases / norms), linear warm-up then linear decay, gradient-
norm clipping.

Validation (rank 0): MAP on the ``heldout`` val splits of the macro tasks, each capped at
``val_max_queries`` queries (a subsample fixed by ``VAL_SEED``, identical for every run and
seed), macro-averaged with ``uwe.data.tasks.macro_average``; every ``eval_every`` steps and at the
end. The best model by val macro MAP is kept in ``{checkpoint_dir}/best`` and published to
``out_dir`` at the end.

Checkpoints (``{checkpoint_dir}/last``; resuming, the run fingerprint):
:mod:`uwe.train.checkpoint`. Distributed runs (``torchrun``): :mod:`uwe.train.distributed`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from safetensors import safe_open
from safetensors.torch import load_model, save_model

from uwe.config import TrainParams
from uwe.core.batching import MultiGraphBatcher
from uwe.core.losses import MultiGraphInfoNCE
from uwe.io import make_temp_dir, replace_dir, set_default_mode
from uwe.model.uwe_model import UWEModel, save
from uwe.precision import autocast, cpu_isa, isa_line, native_bf16, resolve_precision
from uwe.precision import describe as describe_precision
from uwe.runtime import seed_everything
from uwe.train.checkpoint import (
    CsvLog,
    _jsonable,
    rng_state,
    run_fingerprint,
    set_rng_state,
    stop_on_signals,
)
from uwe.train.distributed import DistInfo, init_distributed
from uwe.train.frozen import BottomCache, CachedTopEncoder, cache_texts, freeze_bottom
from uwe.train.step import make_optimizer, step_scores
from uwe.train.validation import load_val_sets, validate

logger = logging.getLogger(__name__)

# TrainParams fields that may change between a checkpoint and its resumption.
RESUME_FREE = ("max_minutes", "device", "precision", "out_dir", "checkpoint_dir", "eval_every",
               "val_max_queries", "frozen_cache_dir")


# ----------------------------------------------------------------------------- distributed


# ----------------------------------------------------------------------------- optimisation


# ----------------------------------------------------------------------------- validation


# ----------------------------------------------------------------------------- files


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
        # the arithmetic of the run (uwe.precision): recorded in train.json and the model card
        self.precision = resolve_precision(cfg.precision, device)
        self.arith = describe_precision(self.precision, device)
        if self.precision == "bf16" and device.type == "cpu" and not native_bf16(cpu_isa()):
            logger.warning("precision bf16 on a CPU without AMX / AVX512-BF16 (%s): emulated, "
                           "likely slower than fp32", isa_line())
        self.autocast = autocast(self.precision, device)
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
        from uwe.train.negatives import mine_graphs

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
            for f in tmp.iterdir():  # safetensors writes 0600; a checkpoint's files as its peers
                set_default_mode(f)
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
                "val": val, "arithmetic": self.arith}

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
            tmp = make_temp_dir(self.out_dir)
            try:
                shutil.copytree(best, tmp, dirs_exist_ok=True)
                replace_dir(tmp, self.out_dir)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
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
                logger.warning("max_minutes=%s stopped the run at step %d of %d: its model and "
                               "metrics depend on this machine's speed (raise the cap or set it "
                               "to null for a reproducible run)", cfg.max_minutes, self.step,
                               cfg.steps)
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
                "hard_negatives": self.hard_info, **self.arith,
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
    from uwe.model.pretrained import resolve_device

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


class TrainingStopped(RuntimeError):
    """A run stopped by SIGTERM / SIGINT before its last step: checkpointed (the same command
    resumes it), no model published, ``metrics/train.json`` left as it was."""


def train_main_model(params: Any, root: str | Path, resume: bool | str = "auto",
                     progress: bool = True) -> dict:
    """The ``train`` stage: :func:`train` on ``params.train`` with the paths of ``params`` under
    ``root`` (model ``train.out_dir``, checkpoints ``train.checkpoint_dir``, the step log
    ``metrics/train_log.csv``); rank 0 then writes ``metrics/train.json``. The one entry of
    ``notebooks/02_train.ipynb`` and ``scripts/train.py`` (one GPU or ``torchrun``), so both
    resume alike (``"auto"``: continue a checkpoint of this configuration, discard any other)
    and stop alike: a run stopped by a signal raises :class:`TrainingStopped`."""
    from uwe.io import write_json

    root = Path(root)
    summary = train(params.train, seed=params.seed, data_root=root / params.curate.out_dir,
                    out_dir=root / params.train.out_dir,
                    checkpoint_dir=root / params.train.checkpoint_dir,
                    log_path=root / "metrics" / "train_log.csv", resume=resume,
                    progress=progress)
    if summary["stopped"] == "signal":  # checkpointed, nothing published: not a success
        raise TrainingStopped(
            f"stopped by a signal at step {summary['steps_done']} of {summary['steps']}: no "
            f"model written, metrics/train.json left as it was; the checkpoint in "
            f"{root / params.train.checkpoint_dir} resumes it: run the same command again")
    if int(os.environ.get("RANK", "0")) == 0:
        write_json(root / "metrics" / "train.json",
                   {k: v for k, v in summary.items() if k != "out_dir"})
    return summary
