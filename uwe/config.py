"""Typed, frozen view of ``params.yaml``.

``load_params(path, profile=None)`` reads the file, deep-merges ``profiles[profile]`` over the
base values (``profile`` defaults to the file's own ``profile:`` key) and returns a frozen
:class:`Params`. Unknown keys are rejected with the dotted path of the offending key, so a typo
in ``params.yaml`` fails loudly instead of being silently ignored.

A profile's ``transfer.runs`` / ``ablations.runs`` entries modify runs of the base section and
never add one: the pipeline's stages are one per run of the base section (``dvc.yaml``
``foreach``), so an override of a run the base does not define (a run the user removed) is
dropped with a warning naming it.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import types
import typing
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from uwe.constants import CACHE_DTYPES, LOSS_NAMES, SCORER_NAMES
from uwe.precision import PRECISIONS

PROFILES = ("smoke", "cpu", "paper")
ANALYSIS_GROUPS = ("transfer", "ablations")


@dataclass(frozen=True)
class FetchParams:
    manifest: str = "data/manifest.csv"
    raw_dir: str = "data/raw"
    mirror: str | None = None


@dataclass(frozen=True)
class CurateParams:
    raw_dir: str = "data/raw"
    out_dir: str = "data/curated"
    occupation_split: tuple[float, float, float] = (0.6, 0.1, 0.3)
    skill_split: tuple[float, float, float] = (0.6, 0.1, 0.3)
    skill_pair_split: tuple[float, float, float] = (0.6, 0.1, 0.3)
    split_seed: int = 20251111
    onet_importance_min: float = 3.0
    max_queries: int | None = None
    max_targets: int | None = None


@dataclass(frozen=True)
class BaselinesParams:
    # result name (file name under metrics/workbench/<family>/) -> model spec
    models: dict[str, str] = field(default_factory=lambda: {"bm25": "bm25"})


@dataclass(frozen=True)
class GraphParams:
    weight: float = 1.0
    temperature: float = 0.05
    batch_size: int | None = None  # left nodes per batch of this graph; None = train.batch_size


@dataclass(frozen=True)
class TrainParams:
    backbone: str = "all-MiniLM-L6-v2"
    max_length: int = 64
    scorer: str = "sli"
    attention_temperature: float = 0.1
    loss: str = "many_to_many"
    graphs: dict[str, GraphParams] = field(default_factory=dict)
    batch_size: int = 32
    steps: int = 1000
    max_minutes: float | None = None
    lr: float = 8e-5
    warmup: float = 0.1
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    eval_every: int = 200
    val_max_queries: int | None = 500
    sentence_pair_prob: float = 0.8
    # embeddings + bottom K layers frozen, their outputs cached once per text (uwe.train.frozen)
    frozen_layers: int = 0
    frozen_cache_dtype: str = "float16"
    frozen_cache_dir: str | None = None  # None: $UWE_CACHE_DIR/frozen or ~/.cache/uwe/frozen
    # mined hard negatives (uwe.train.negatives): extra right items per left node of a batch, drawn
    # from a pool of the `hard_negative_pool` most similar non-neighbours under the untuned
    # model; `hard_negative_graphs` null = every graph
    hard_negatives: int = 0
    hard_negative_pool: int = 20
    hard_negative_graphs: tuple[str, ...] | None = None
    encode_chunk: int = 64  # texts per encoder forward in a training step
    device: str = "auto"
    precision: str = "auto"
    out_dir: str = "models/uwe"
    checkpoint_dir: str = "models/uwe_ckpt"


@dataclass(frozen=True)
class EvaluateParams:
    families: tuple[str, ...] = ("full", "heldout")
    batch_size: int = 128
    query_chunk: int = 1024
    device: str = "auto"
    # MiB of text -> embedding cache per evaluated model (uwe.model.textcache); 0 = none
    text_cache_mb: float = 0
    # engine of the sentence-embedding baselines (uwe.model.pretrained.SentenceEncoder): torch, onnx
    # (ONNX Runtime, CPU) or auto (onnx on the CPU, torch on a GPU); UWE folders run in torch
    engine: str = "torch"


@dataclass(frozen=True)
class BudgetParams:
    """Budget of every run of one analysis group (``transfer`` / ``ablations``).

    ``steps``, ``max_minutes``, ``eval_every`` replace the training values of the main model;
    ``val_max_queries`` caps the validation queries per task (``None`` = all, ``0`` = no
    validation: the last step's model is kept); ``batch_size`` ``None`` keeps ``train``'s;
    ``max_queries`` caps the test queries per task (a seeded subsample, the same for every
    run; ``None`` = all); every trained run is repeated for each of ``seeds``.
    """

    steps: int = 100
    max_minutes: float | None = None
    eval_every: int = 0
    val_max_queries: int | None = 0
    batch_size: int | None = None
    max_queries: int | None = 500
    seeds: tuple[int, ...] = (0,)


@dataclass(frozen=True)
class RunParams:
    """Overrides of one analysis run, relative to ``train`` (``None`` = keep the main value).

    ``model`` evaluates an existing model instead of training one: ``"untuned"`` (the backbone
    with ``train.scorer``, no training) or a UWE model folder such as ``models/uwe``.
    ``graphs`` keeps only these training graphs (their weights and temperatures unchanged).
    ``max_minutes`` replaces the group's cap for this run (a run much slower than the others
    gets its own cap, so that every cap stays well above its run's time); ``seeds`` the
    group's seeds (a run whose claim needs more seeds, or one the budget allows fewer).
    """

    model: str | None = None
    graphs: tuple[str, ...] | None = None
    scorer: str | None = None
    loss: str | None = None
    attention_temperature: float | None = None
    max_minutes: float | None = None
    seeds: tuple[int, ...] | None = None


@dataclass(frozen=True)
class AnalysisParams:
    budget: BudgetParams = field(default_factory=BudgetParams)
    runs: dict[str, RunParams] = field(default_factory=dict)


@dataclass(frozen=True)
class BudgetsParams:
    """Budget curves (stage ``budgets``, ``make budgets``): runs of ``ablations.runs`` trained
    again at more budgets than the ablations' one, to see where a claim's gap goes with compute.

    ``runs`` names ablation runs (their overrides; their own ``seeds`` / ``max_minutes`` do not
    apply here); ``points`` maps a point name to its :class:`BudgetParams` (steps, cap, seeds,
    test-query cap), one stage instance per (run, point). The ablations' budget is the curves'
    first point. ``publish`` maps a result name (a row of the results table, e.g. ``uwe-mean``)
    to a run whose seed-0 model at the point with ``train.steps`` steps is scored on every
    WorkBench family, uncapped, like the main model.
    """

    runs: tuple[str, ...] = ()
    points: dict[str, BudgetParams] = field(default_factory=dict)
    publish: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LatencyParams:
    """Per-query latency at batch 1 against a cached target space (stage ``latency``)."""

    # result name (as under metrics/workbench/) -> model spec (uwe.model.registry.load_model)
    models: dict[str, str] = field(default_factory=lambda: {"uwe": "models/uwe"})
    task: str = "job2skill"  # whose target space is cached and whose queries are timed
    family: str = "heldout"
    warmup: int = 10
    repeats: int = 100
    throughput_batch: int = 64
    throughput_batches: int = 5
    device: str = "auto"
    # torch: each model's own path; onnx: the query side in ONNX Runtime (uwe.infer.ort), for the
    # UWE and embedding models, entries "<name>@onnx" with the encode / score split
    engines: list[str] = field(default_factory=lambda: ["torch"])
    # how the onnx engine stores an SLI model's cached target tokens (uwe.infer.ort.LAYOUTS)
    target_layout: str = "int8_block"


@dataclass(frozen=True)
class Params:
    profile: str = "cpu"
    seed: int = 0
    fetch: FetchParams = field(default_factory=FetchParams)
    curate: CurateParams = field(default_factory=CurateParams)
    baselines: BaselinesParams = field(default_factory=BaselinesParams)
    train: TrainParams = field(default_factory=TrainParams)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)
    transfer: AnalysisParams = field(default_factory=AnalysisParams)
    ablations: AnalysisParams = field(default_factory=AnalysisParams)
    budgets: BudgetsParams = field(default_factory=BudgetsParams)
    latency: LatencyParams = field(default_factory=LatencyParams)


def deep_merge(base: dict, override: dict) -> dict:
    """Return ``base`` with ``override`` merged in recursively (dicts merge, the rest replaces)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _existing_runs_only(raw: dict, override: dict, profile: str, path: Path) -> dict:
    """``override`` without run overrides of runs that ``raw`` (the base values) does not define."""
    override = copy.deepcopy(override)
    # (group, key): the stage instances come from the base section's keys (dvc.yaml foreach /
    # matrix), so a profile may modify them but never add one
    for group, key in [*((g, "runs") for g in ANALYSIS_GROUPS), ("budgets", "points")]:
        section = override.get(group)
        runs = section.get(key) if isinstance(section, dict) else None
        if not isinstance(runs, dict):
            continue
        base = raw.get(group)
        base = base.get(key) if isinstance(base, dict) else None
        base = base if isinstance(base, dict) else {}
        for name in [n for n in runs if n not in base]:
            warnings.warn(
                f"params: profiles.{profile}.{group}.{key}.{name} in {path} overrides an entry "
                f"that {group}.{key} does not define; ignored (a profile modifies them, never "
                f"adds one)",
                stacklevel=3,
            )
            del runs[name]
    return override


def _convert(tp: Any, value: Any, where: str) -> Any:
    """Convert a YAML value to the annotated type ``tp``; raise naming ``where`` on mismatch."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, where)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ValueError(f"params: {where} must be a mapping, got {value!r}")
        return build(tp, value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"params: {where} must be a list, got {value!r}")
        item_tp = args[0]
        if len(args) != 2 or args[1] is not Ellipsis:
            if len(value) != len(args):
                raise ValueError(f"params: {where} must have {len(args)} items, got {value!r}")
        return tuple(_convert(item_tp, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"params: {where} must be a mapping, got {value!r}")
        return {str(k): _convert(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"params: {where} must be a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"params: {where} must be an integer, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"params: {where} must be a string, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(f"params: {where} must be true/false, got {value!r}")
        return value
    return value


def _rule(test: Callable[[Any], bool], want: str) -> tuple[Callable[[Any], bool], str]:
    return test, want


def _positive(v: Any) -> bool:
    return v > 0


def _nonnegative(v: Any) -> bool:
    return v >= 0


def _one_of(*names: str) -> tuple[Callable[[Any], bool], str]:
    return _rule(lambda v: v in names, f"one of {', '.join(names)}")


POSITIVE, NONNEGATIVE = _rule(_positive, "> 0"), _rule(_nonnegative, ">= 0")
FRACTION = _rule(lambda v: 0 <= v <= 1, "from 0 to 1")
#: the range of each numeric or named value (None always passes: "keep" / "none"); a value out
#: of range is refused when params.yaml is read, not found wrong hours into a run
_SCORER, _LOSS = _one_of(*SCORER_NAMES), _one_of(*LOSS_NAMES)
RANGES: dict[type, dict[str, tuple[Callable[[Any], bool], str]]] = {
    GraphParams: {"weight": NONNEGATIVE, "temperature": POSITIVE, "batch_size": POSITIVE},
    TrainParams: {
        "max_length": _rule(lambda v: v >= 2, ">= 2"), "scorer": _SCORER,
        "attention_temperature": POSITIVE, "loss": _LOSS, "batch_size": POSITIVE,
        "steps": POSITIVE, "max_minutes": POSITIVE, "lr": POSITIVE, "warmup": FRACTION,
        "weight_decay": NONNEGATIVE, "grad_clip": NONNEGATIVE, "eval_every": NONNEGATIVE,
        "val_max_queries": NONNEGATIVE, "sentence_pair_prob": FRACTION,
        "frozen_layers": NONNEGATIVE, "frozen_cache_dtype": _one_of(*CACHE_DTYPES),
        "hard_negatives": NONNEGATIVE, "hard_negative_pool": POSITIVE, "encode_chunk": POSITIVE,
        "precision": _one_of(*PRECISIONS)},
    BudgetParams: {"steps": POSITIVE, "max_minutes": POSITIVE, "eval_every": NONNEGATIVE,
                   "val_max_queries": NONNEGATIVE, "batch_size": POSITIVE,
                   "max_queries": POSITIVE},
    RunParams: {"scorer": _SCORER, "loss": _LOSS, "attention_temperature": POSITIVE,
                "max_minutes": POSITIVE},
}


def check_ranges(obj: Any, where: str) -> None:
    """ValueError naming the key, the value and its range unless every value of the params
    dataclass ``obj`` lies in its :data:`RANGES` (numbers also finite)."""
    for name, (test, want) in RANGES.get(type(obj), {}).items():
        value = getattr(obj, name)
        if value is None:
            continue
        finite = not isinstance(value, float) or math.isfinite(value)
        if not (finite and test(value)):
            raise ValueError(f"params: {where}.{name} must be {want}, got {value!r}")


def build(cls: type, data: dict, where: str = "params") -> Any:
    """Build the frozen dataclass ``cls`` from ``data``, rejecting unknown keys and values out
    of their range (:func:`check_ranges`)."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(
            f"params: unknown key(s) {', '.join(f'{where}.{k}' for k in unknown)}; "
            f"known keys of {where}: {', '.join(sorted(names))}"
        )
    kwargs = {k: _convert(hints[k], v, f"{where}.{k}") for k, v in data.items()}
    obj = cls(**kwargs)
    check_ranges(obj, where)
    return obj


def load_params(path: str | Path = "params.yaml", profile: str | None = None) -> Params:
    """Read ``params.yaml`` and apply ``profile`` (default: the file's ``profile`` key)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"params file not found: {path}")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"params: {path} must hold a mapping at the top level")
    profiles = raw.pop("profiles", {}) or {}
    profile = profile or raw.get("profile", "cpu")
    if profile not in PROFILES:
        raise ValueError(f"params: unknown profile {profile!r} in {path}; choose one of {PROFILES}")
    unknown_profiles = sorted(set(profiles) - set(PROFILES))
    if unknown_profiles:
        raise ValueError(f"params: unknown profile(s) {unknown_profiles} under profiles: in {path}")
    override = profiles.get(profile) or {}
    if not isinstance(override, dict):
        raise ValueError(f"params: profiles.{profile} in {path} must be a mapping")
    merged = deep_merge(raw, _existing_runs_only(raw, override, profile, path))
    merged["profile"] = profile
    return build(Params, merged)


def as_dict(params: Any) -> dict:
    """Plain-dict view (for logging and for writing next to results)."""
    return dataclasses.asdict(params)
