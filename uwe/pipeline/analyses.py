"""Analysis runs (notebook ``04_variant``): cross-task transfer and ablations of the main model.

A run is the main training config (``params.yaml: train``, profile applied) with the run's
overrides (:class:`uwe.config.RunParams`: kept graphs, scorer, loss, attention temperature)
under its group's budget (:class:`uwe.config.BudgetParams`: steps, wall-clock cap, validation,
test-query cap, seeds). It is trained once per seed into ``models/<group>/<run>/seed<k>/`` and
evaluated on the ``heldout`` test sets of the six WorkBench task groups (:func:`macro_tasks`),
each capped at ``budget.max_queries`` queries: a seeded subsample (:data:`EVAL_SAMPLE_SEED`)
that is the same for every run and model, so rows of one group compare like with like; and on
every ``zeroshot`` task, uncapped (small), for the seed spread of the zero-shot claim.

A run with ``model`` set trains nothing: ``"untuned"`` evaluates the backbone with the main
scorer (the "untuned backbone" row of the transfer matrix), a folder (``models/uwe``)
evaluates that trained model under the same cap.

``metrics/<group>/<run>.json``: ``group``, ``run``, ``profile``, ``overrides`` (the non-null
run keys), ``budget``, ``train`` (the resolved training config, null without training),
``model``, ``tasks`` and ``seeds``: one entry per seed with ``seed``, ``training`` (the
:func:`uwe.train.loop.train` summary, null without training), ``evaluation`` (the heldout
:func:`uwe.bench.evaluation.evaluate` result, fractions) and ``zeroshot`` (the zero-shot one).
:mod:`uwe.pipeline.results` aggregates the files.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from uwe.config import ANALYSIS_GROUPS, BudgetParams, Params, RunParams, TrainParams
from uwe.model.registry import UNTUNED, kind_of

logger = logging.getLogger(__name__)

EVAL_SAMPLE_SEED = 0  # the test-query subsample of every run and model
# training summary keys not worth keeping in the metrics file
_DROP_SUMMARY = ("out_dir", "rank", "world_size", "resumed_from")


@dataclass(frozen=True)
class RunSpec:
    """One resolved run: ``train`` is the training config, None when nothing is trained."""

    group: str
    name: str
    run: RunParams
    budget: BudgetParams
    train: TrainParams | None
    publish: str | None = None  # budget curves: the result name seed 0 is scored under

    @property
    def trains(self) -> bool:
        return self.train is not None

    @property
    def seeds(self) -> tuple[int | None, ...]:
        """Seeds trained (and evaluated); ``(None,)`` for a run without training."""
        if not self.trains:
            return (None,)
        return tuple(self.budget.seeds if self.run.seeds is None else self.run.seeds)

    @property
    def validates(self) -> bool:
        return self.budget.val_max_queries != 0

    @property
    def overrides(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self.run).items() if v is not None}

    def run_dir(self, root: str | Path) -> Path:
        return Path(root) / "models" / self.group / self.name

    def model_dir(self, root: str | Path, seed: int) -> Path:
        return self.run_dir(root) / f"seed{seed}"

    def metrics_path(self, root: str | Path) -> Path:
        return Path(root) / "metrics" / self.group / f"{self.name}.json"


def variant_train_params(base: TrainParams, run: RunParams, budget: BudgetParams,
                         out_dir: str = "models/variant") -> TrainParams:
    """``base`` with the run's overrides and the group's budget (see the module doc)."""
    from uwe.core.losses import VARIANTS
    from uwe.core.scoring import get_scorer

    if run.model is not None:
        raise ValueError(f"run with model={run.model!r} trains nothing")
    cap = budget.max_minutes if run.max_minutes is None else run.max_minutes
    changes: dict[str, Any] = {"steps": budget.steps, "max_minutes": cap,
                               "eval_every": budget.eval_every, "out_dir": out_dir,
                               "checkpoint_dir": f"{out_dir}/seed<k>.ckpt"}
    if budget.val_max_queries != 0:
        changes["val_max_queries"] = budget.val_max_queries
    graphs = dict(base.graphs)
    if budget.batch_size is not None:  # the batch of every graph (per-graph sizes dropped)
        changes["batch_size"] = budget.batch_size
        graphs = {g: dataclasses.replace(p, batch_size=None) for g, p in graphs.items()}
    if run.graphs is not None:
        unknown = [g for g in run.graphs if g not in base.graphs]
        if unknown or not run.graphs:
            raise ValueError(f"run graphs {list(run.graphs)}: unknown or empty; "
                             f"train.graphs has {list(base.graphs)}")
        graphs = {g: graphs[g] for g in run.graphs}
    if graphs != base.graphs:
        changes["graphs"] = graphs
    if base.hard_negative_graphs is not None:  # mined only on graphs the run trains
        kept = tuple(g for g in base.hard_negative_graphs if g in graphs)
        changes["hard_negative_graphs"] = kept
        if not kept:
            changes["hard_negatives"] = 0
    if run.scorer is not None:
        get_scorer(run.scorer)  # ValueError naming the valid scorers
        changes["scorer"] = run.scorer
    if run.loss is not None:
        if run.loss not in VARIANTS:
            raise ValueError(f"unknown loss {run.loss!r}; valid: {list(VARIANTS)}")
        changes["loss"] = run.loss
        if run.loss == "symmetric":  # a square score matrix: no extra mined candidates
            changes["hard_negatives"] = 0
    if run.attention_temperature is not None:
        changes["attention_temperature"] = run.attention_temperature
    return dataclasses.replace(base, **changes)


def run_spec(params: Params, group: str, name: str) -> RunSpec:
    """Resolve run ``name`` of ``group`` (``transfer`` / ``ablations``) from ``params``."""
    if group not in ANALYSIS_GROUPS:
        raise ValueError(f"unknown analysis group {group!r}; choose one of {ANALYSIS_GROUPS}")
    section = getattr(params, group)
    if name not in section.runs:
        raise ValueError(f"unknown {group} run {name!r}; params.yaml {group}.runs has "
                         f"{list(section.runs)}")
    run = section.runs[name]
    if run.model is not None:
        extra = [k for k in ("graphs", "loss", "seeds") if getattr(run, k) is not None]
        if run.model != UNTUNED:
            extra += [k for k in ("scorer", "attention_temperature") if getattr(run, k) is not None]
        if extra:
            raise ValueError(f"{group}.runs.{name}: model={run.model!r} cannot be combined with "
                             f"{extra}")
        return RunSpec(group, name, run, section.budget, None)
    train = variant_train_params(params.train, run, section.budget, f"models/{group}/{name}")
    return RunSpec(group, name, run, section.budget, train)


def budget_spec(params: Params, run: str, point: str) -> RunSpec:
    """Run ``run`` of ``ablations.runs`` at point ``point`` of ``budgets.points`` (stage
    ``budgets@<run>-<point>``, :class:`uwe.config.BudgetsParams`): the run's overrides under the
    point's budget (the run's own seeds and cap are the ablations' and do not apply here),
    saved to ``models/budgets/<run>-<point>/`` and written to
    ``metrics/budgets/<run>-<point>.json``.
    ``publish`` is the result name of a run in ``budgets.publish`` at the point with
    ``train.steps`` steps (the main model's budget), else None."""
    section = params.budgets
    if run not in section.runs:
        raise ValueError(f"unknown budgets run {run!r}; params.yaml budgets.runs has "
                         f"{list(section.runs)}")
    if run not in params.ablations.runs:
        raise ValueError(f"budgets.runs names {run!r}, which ablations.runs does not define "
                         f"(it has {list(params.ablations.runs)})")
    if point not in section.points:
        raise ValueError(f"unknown budgets point {point!r}; params.yaml budgets.points has "
                         f"{list(section.points)}")
    overrides = params.ablations.runs[run]
    if overrides.model is not None:
        raise ValueError(f"budgets.runs names {run!r}, which trains nothing "
                         f"(model={overrides.model!r})")
    unknown = sorted(r for r in section.publish.values() if r not in section.runs)
    if unknown:
        raise ValueError(f"budgets.publish names run(s) {unknown} not in budgets.runs "
                         f"{list(section.runs)}")
    run_params = dataclasses.replace(overrides, seeds=None, max_minutes=None)
    budget = section.points[point]
    name = f"{run}-{point}"
    train = variant_train_params(params.train, run_params, budget, f"models/budgets/{name}")
    publish = next((result for result, r in section.publish.items() if r == run), None)
    if budget.steps != params.train.steps:
        publish = None
    return RunSpec("budgets", name, run_params, budget, train, publish)


def macro_tasks(data_root: str | Path, family: str = "heldout", split: str = "test") -> list[str]:
    """Tasks of the six WorkBench groups on disk, in group order."""
    from uwe.data import tasks as task_lib

    on_disk = set(task_lib.list_tasks(family, root=data_root, split=split))
    names = [t for members in task_lib.TASK_GROUPS.values() for t in members if t in on_disk]
    if not names:
        raise ValueError(f"no {family}/{split} task of a WorkBench group under {data_root}")
    return names


def zeroshot_tasks(data_root: str | Path) -> list[str]:
    """Zero-shot tasks on disk (every one, uncapped: they are small); [] when none."""
    from uwe.data import tasks as task_lib

    return task_lib.list_tasks("zeroshot", root=data_root, split="test")


def train_run(spec: RunSpec, root: str | Path, data_root: str | Path,
              progress: bool = True) -> dict[int, dict]:
    """Train ``spec`` once per seed (nothing for a run with ``model``) -> ``{seed: summary}``.

    The checkpoint folder (``seed<k>.ckpt``) is removed after each run: the stage's outputs are
    the published models only.
    """
    from uwe.io import write_json
    from uwe.train.loop import train

    run_dir = spec.run_dir(root)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "run.json", {"group": spec.group, "run": spec.name,
                                      "overrides": spec.overrides, "trained": spec.trains})
    summaries: dict[int, dict] = {}
    if not spec.trains:
        return summaries
    for seed in spec.seeds:
        out = spec.model_dir(root, seed)
        ckpt = out.with_name(f"{out.name}.ckpt")
        summary = train(spec.train, seed=seed, data_root=data_root, out_dir=out,
                        checkpoint_dir=ckpt, log_path=None, resume=False, progress=progress,
                        val_tasks=None if spec.validates else [])
        if summary["stopped"] == "signal":
            raise KeyboardInterrupt(f"{spec.group}/{spec.name} seed {seed} stopped by a signal")
        shutil.rmtree(ckpt, ignore_errors=True)
        summaries[seed] = {k: v for k, v in summary.items() if k not in _DROP_SUMMARY}
    return summaries


def load_run_model(spec: RunSpec, params: Params, root: str | Path, seed: int | None):
    """The model to evaluate for ``seed`` (the trained one, the untuned backbone or a folder)."""
    from uwe.infer.loader import load, load_model

    dev, bs = params.evaluate.device, params.evaluate.batch_size
    mb = params.evaluate.text_cache_mb
    if spec.trains:
        return load(spec.model_dir(root, seed), device=dev, batch_size=bs, text_cache_mb=mb)
    t = params.train
    return load_model(spec.run.model, root=root, device=dev, batch_size=bs, text_cache_mb=mb,
                      backbone=t.backbone, scorer=spec.run.scorer or t.scorer,
                      attention_temperature=spec.run.attention_temperature
                      or t.attention_temperature, max_length=t.max_length,
                      name=UNTUNED if spec.run.model == UNTUNED else None)


def frozen_layers_of(model: Any) -> int:
    """``frozen_layers`` a UWE model was trained with (its saved training config), else 0."""
    if kind_of(model) != "uwe":
        return 0
    train = (model.config or {}).get("train") or {}
    return int(train.get("frozen_layers") or 0)


def evaluation_texts(data_root: str | Path, tasks: list[str], zeroshot: list[str],
                     max_queries: int | None) -> list[str]:
    """Every query and target text :func:`evaluate_run` scores (the same subsample)."""
    from uwe.bench.evaluation import subsample_queries
    from uwe.data.tasks import load_task

    texts: list[str] = []
    for family, names, cap in (("heldout", tasks, max_queries), ("zeroshot", zeroshot, None)):
        for name in names:
            ds = subsample_queries(load_task(name, family=family, split="test", root=data_root),
                                   cap, EVAL_SAMPLE_SEED)
            texts += [*ds.queries, *ds.targets]
    return list(dict.fromkeys(texts))


def evaluation_bottom(model: Any, k: int, texts: list[str], cache_dir: str | None):
    """Bottom-``k`` states of ``texts`` under ``model``'s untuned backbone, float32, from the
    frozen-bottom disk cache (built once, shared by every run and seed of both groups: the
    same subsample) -> (cache, reference backbone). A trained run's bottom is the backbone's
    (frozen), so its evaluation runs only the top layers (:func:`uwe.train.frozen.use_cached_bottom`
    checks the weights)."""
    from uwe.model.encoder import TokenEncoder
    from uwe.train.frozen import BottomCache

    reference = TokenEncoder.from_pretrained(model.config.get("backbone") or
                                             model.encoder.backbone_name,
                                             max_length=model.encoder.max_length).eval()
    cache, _ = BottomCache.load_or_build(reference, k, texts, dtype="float32",
                                         cache_dir=cache_dir)
    return cache, reference.backbone


def _model_info(spec: RunSpec, model: Any) -> dict[str, Any]:
    """What was evaluated: scorer, backbone, graphs (from a UWE model's config; None for the
    other kinds)."""
    uwe = kind_of(model) == "uwe"
    config = (model.config or {}) if uwe else {}
    graphs = list(config["graphs"]) if "graphs" in config else (
        list(spec.train.graphs) if spec.trains else [])
    return {"scorer": model.scorer_name if uwe else None,
            "attention_temperature": model.attention_temperature if uwe else None,
            "backbone": model.encoder.backbone_name if uwe else None,
            "graphs": graphs, "trained_steps": config.get("step")}


def evaluate_run(spec: RunSpec, params: Params, root: str | Path,
                 summaries: dict[int, dict] | None = None, progress: bool = True) -> dict:
    """Evaluate every seed's model of ``spec`` and write ``metrics/<group>/<run>.json``."""
    from uwe.bench.evaluation import TargetIndexes, evaluate, write_results
    from uwe.train.frozen import use_cached_bottom

    root = Path(root)
    data_root = root / params.curate.out_dir
    tasks = macro_tasks(data_root)
    zeroshot = zeroshot_tasks(data_root)
    summaries = summaries or {}
    entries, info, published = [], {}, None
    bottom: tuple | None = None  # (k, cache, reference backbone), built for the first model
    for seed in spec.seeds:
        model = load_run_model(spec, params, root, seed)
        info = _model_info(spec, model)
        k = frozen_layers_of(model)
        if k and (bottom is None or bottom[0] != k):
            texts = evaluation_texts(data_root, tasks, zeroshot, spec.budget.max_queries)
            bottom = (k, *evaluation_bottom(model, k, texts, params.train.frozen_cache_dir))
        cached = bool(k) and use_cached_bottom(model, bottom[1], k, bottom[2])
        cache = TargetIndexes()  # target spaces shared by the two families are indexed once
        res = evaluate(model, "heldout", tasks=tasks, root=data_root,
                       query_chunk=params.evaluate.query_chunk,
                       max_queries=spec.budget.max_queries, sample_seed=EVAL_SAMPLE_SEED,
                       progress=progress, model_name=f"{spec.group}/{spec.name}",
                       index_cache=cache)
        entry = {"seed": seed, "training": summaries.get(seed), "evaluation": res,
                 "cached_bottom": cached, "softness": model_softness(model, data_root)}
        if zeroshot:
            entry["zeroshot"] = evaluate(model, "zeroshot", tasks=zeroshot, root=data_root,
                                         query_chunk=params.evaluate.query_chunk,
                                         progress=progress, index_cache=cache,
                                         model_name=f"{spec.group}/{spec.name}")
        if spec.publish is not None and seed == spec.seeds[0]:
            published = publish_model(model, spec.publish, params, data_root, progress)
        entries.append(entry)
        del model
    result = {
        "group": spec.group, "run": spec.name, "profile": params.profile,
        "overrides": spec.overrides, "budget": dataclasses.asdict(spec.budget),
        "train": dataclasses.asdict(spec.train) if spec.trains else None,
        "model": spec.run.model or f"models/{spec.group}/{spec.name}", "model_info": info,
        "tasks": tasks, "seeds": entries,
    }
    if spec.group == "budgets":
        result["point"] = spec.name.rsplit("-", 1)[1]
        result["pairs_per_graph"] = {g: spec.budget.steps * n for g, n in
                                     _batch_sizes(spec.train).items()}
    if published is not None:
        result["published"] = published
    write_results(result, spec.metrics_path(root))
    return result


def _batch_sizes(train: TrainParams) -> dict[str, int]:
    """Pairs per step of each training graph (its own batch size, else ``train.batch_size``)."""
    return {g: p.batch_size or train.batch_size for g, p in train.graphs.items()}


def model_softness(model: Any, data_root: str | Path,
                   max_queries: int | None = 200) -> dict | None:
    """Softness of ``model``'s attention at its own temperature over the (query, positive)
    pairs of the heldout val splits (:mod:`uwe.bench.softness`); None for a scorer without
    token attention."""
    from uwe.bench.softness import attention_unit, softness_report
    from uwe.train.validation import load_val_sets

    unit = attention_unit(model.scorer_name) if kind_of(model) == "uwe" else None
    if unit is None:
        return None
    report = softness_report(model.encoder, load_val_sets(data_root, None, max_queries),
                             [model.attention_temperature], attention=unit)
    entry = report["by_temperature"][0]
    return {"attention": unit, "pairs": report["pairs"],
            **{k: entry[k] for k in ("temperature", "max_weight", "entropy", "entropy_fraction")}}


def publish_model(model: Any, name: str, params: Params, data_root: str | Path,
                  progress: bool = True) -> dict:
    """``model`` scored as result ``name`` on every family of ``evaluate.families``, uncapped,
    as the ``evaluate`` stage scores the main model -> ``{"name", "families": {family:
    result}}`` (the results table's row, :func:`uwe.pipeline.reporting.load_results`)."""
    from uwe.bench.evaluation import QueryMemo, TargetIndexes, evaluate

    shared, memo = TargetIndexes(), QueryMemo()
    families = {family: evaluate(model, family, root=data_root,
                                 query_chunk=params.evaluate.query_chunk, model_name=name,
                                 index_cache=shared, memo=memo, progress=progress)
                for family in params.evaluate.families}
    return {"name": name, "families": families}


def prune_models(spec: RunSpec, root: str | Path) -> list[Path]:
    """Remove a budget run's model folders once it is scored (the curves keep numbers, not
    ~90 MB per seed), except the published seed's -> the folders removed."""
    removed = []
    for seed in spec.seeds:
        if spec.publish is not None and seed == spec.seeds[0]:
            continue
        folder = spec.model_dir(root, seed)
        if folder.exists():
            shutil.rmtree(folder)
            removed.append(folder)
    return removed


def run_frame(result: dict) -> pd.DataFrame:
    """One row per seed: MAP and RP@10 (%) per task group and macro, and the step validation
    kept (the seconds stay in the metrics file: an executed notebook displays results, not
    timings)."""
    rows = []
    for entry in result["seeds"]:
        ev = entry["evaluation"]
        row: dict[str, Any] = {"seed": entry["seed"]}
        for unit, values in [*ev["groups"].items(), ("macro", ev["macro"])]:
            for metric, label in (("map", "MAP"), ("rp@10", "RP@10")):
                v = values.get(metric)
                row[f"{unit} {label}"] = None if v is None else round(100 * v, 1)
        row["best step"] = (entry["training"] or {}).get("best_step")
        rows.append(row)
    return pd.DataFrame(rows)
