"""Latency and size (stage ``latency``, notebook ``07_latency``; the paper's Sec. on efficiency).

For each model the target space of one task is indexed once (cached, as in deployment), then:

* latency: ``warmup`` single queries untimed, then ``repeats`` single queries (batch 1) timed
  one by one with ``time.perf_counter`` around ``score_index([query], index)`` (query encoding
  + scoring against every target, scores back on the CPU); median, p10, p90, mean in ms. A
  model of the ``onnx`` engine (:mod:`uwe.infer.ort`) is timed around its two halves,
  ``encode_queries`` and ``score_encoded``: ``encode_ms`` and ``score_ms`` beside the total;
* throughput: one untimed batch, then ``throughput_batches`` batches of ``throughput_batch``
  queries; queries per second;
* parameters: the number of distinct parameters of the model's torch modules (None for the
  lexical baselines).

Queries cycle through the task's queries (warm-up queries first), so every model sees the
same texts. The SLI / mean-pooling ratio divides a UWE model's median latency by that of its
own backbone mean-pooled (the measured model named like the backbone).
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from uwe.infer.token_matrix import DEFAULT_LAYOUT
from uwe.model.registry import ModelRef, model_slug, resolve

logger = logging.getLogger(__name__)


def parameter_count(model: Any) -> int | None:
    """Distinct parameters of the torch modules a scoring model holds (None if it has none)."""
    import torch

    candidates = [model, getattr(model, "encoder", None),
                  getattr(getattr(model, "encoder", None), "model", None)]
    seen: dict[int, int] = {}
    for obj in candidates:
        if isinstance(obj, torch.nn.Module):
            for p in obj.parameters():
                seen[id(p)] = p.numel()
    return sum(seen.values()) if seen else None


def query_stream(queries: Sequence[str], n: int, start: int = 0) -> list[str]:
    """``n`` queries cycling through ``queries`` from position ``start``."""
    if not queries:
        raise ValueError("no queries to time")
    k = start % len(queries)
    return list(itertools.islice(itertools.cycle([*queries[k:], *queries[:k]]), n))


def time_single_queries(model: Any, index: Any, queries: Sequence[str]) -> np.ndarray:
    """Milliseconds of ``score_index([q], index)`` for each query, one at a time."""
    out = np.empty(len(queries), dtype=np.float64)
    for i, q in enumerate(queries):
        t0 = time.perf_counter()
        np.asarray(model.score_index([q], index))
        out[i] = 1000.0 * (time.perf_counter() - t0)
    return out


def time_split_queries(model: Any, index: Any, queries: Sequence[str]) -> np.ndarray:
    """``(n, 2)`` milliseconds of encoding and of scoring each query, one at a time, for a
    model that does them apart (:meth:`uwe.infer.ort.OrtModel.encode_queries` /
    ``score_encoded``); their sum is the query's latency."""
    out = np.empty((len(queries), 2), dtype=np.float64)
    for i, q in enumerate(queries):
        t0 = time.perf_counter()
        encoded = model.encode_queries([q])
        t1 = time.perf_counter()
        np.asarray(model.score_encoded(encoded, 1, index))
        out[i] = 1000.0 * (t1 - t0), 1000.0 * (time.perf_counter() - t1)
    return out


def _summary(ms: np.ndarray) -> dict[str, float]:
    return {"median": float(np.median(ms)), "p10": float(np.percentile(ms, 10)),
            "p90": float(np.percentile(ms, 90)), "mean": float(ms.mean())}


def measure(model: Any, targets: Sequence[str], queries: Sequence[str], warmup: int = 10,
            repeats: int = 100, throughput_batch: int = 64, throughput_batches: int = 5) -> dict:
    """Index ``targets`` once, then latency and throughput as in the module doc."""
    return measure_together({"model": model}, targets, queries, warmup, repeats,
                            throughput_batch, throughput_batches)["model"]


def measure_together(models: Mapping[str, Any], targets: Sequence[str],
                     queries: Sequence[str], warmup: int = 10, repeats: int = 100,
                     throughput_batch: int = 64, throughput_batches: int = 5
                     ) -> dict[str, dict]:
    """:func:`measure` for several models at once, their single queries interleaved: each
    timed query runs through every model, in a seeded random order drawn anew for every query,
    so that a drift in the machine's speed (other load, clock) and what the previous model left
    in the caches (a model's weights or target tokens streamed through the L3 cache) fall on
    every model alike and their ratios compare like with like. Each model's index is built,
    and its throughput measured, on its own."""
    if repeats < 1 or throughput_batch < 1 or throughput_batches < 1 or warmup < 0:
        raise ValueError("repeats, throughput_batch and throughput_batches must be >= 1, "
                         f"warmup >= 0 (got {repeats}, {throughput_batch}, "
                         f"{throughput_batches}, {warmup})")
    names = list(models)
    indexes, index_seconds, split = {}, {}, {}
    for name, model in models.items():
        t0 = time.perf_counter()
        indexes[name] = model.index_targets(list(targets))
        index_seconds[name] = time.perf_counter() - t0
        split[name] = hasattr(model, "encode_queries") and hasattr(model, "score_encoded")

    def timer(name: str, stream: Sequence[str]) -> np.ndarray:
        fn = time_split_queries if split[name] else time_single_queries
        return fn(models[name], indexes[name], stream)

    for name in names:
        timer(name, query_stream(queries, warmup))
    stream = query_stream(queries, repeats, warmup)
    ms: dict[str, list] = {name: [] for name in names}
    rng = np.random.default_rng(0)
    for q in stream:
        for k in rng.permutation(len(names)):
            ms[names[k]].append(timer(names[k], [q])[0])
    out = {}
    for name, model in models.items():
        times = np.asarray(ms[name])
        parts = {}
        if split[name]:
            parts = {"encode_ms": _summary(times[:, 0]), "score_ms": _summary(times[:, 1])}
            times = times.sum(1)
        batches = [query_stream(queries, throughput_batch, k * throughput_batch)
                   for k in range(throughput_batches + 1)]
        index = indexes[name]
        np.asarray(model.score_index(batches[0], index))  # warm-up batch
        t0 = time.perf_counter()
        for batch in batches[1:]:
            np.asarray(model.score_index(batch, index))
        seconds = time.perf_counter() - t0
        out[name] = {
            "latency_ms": _summary(times), **parts,
            "throughput_qps": throughput_batch * throughput_batches / seconds,
            "index_seconds": index_seconds[name], "index_mb": index_mb(index),
            "n_targets": len(targets), "parameters": parameter_count(model),
        }
    return out


def index_mb(index: Any) -> float | None:
    """MiB of a NumPy-side target index (a :class:`uwe.infer.token_matrix.TokenMatrix`, a
    :class:`uwe.infer.numpy_engine.NumpyIndex` with its pooled rows if computed, an embedding
    matrix); None for a torch or lexical index."""
    if isinstance(index, np.ndarray):
        return index.nbytes / 2**20
    if hasattr(index, "nbytes"):
        return int(index.nbytes) / 2**20
    buckets = getattr(index, "buckets", None)
    if not isinstance(buckets, list) or not all(  # torch buckets are Bucket objects
            isinstance(b, tuple) and all(isinstance(a, np.ndarray) for a in b) for b in buckets):
        return None
    pooled = getattr(index, "_pooled", None)
    extra = pooled[0].nbytes if pooled is not None else 0
    return (sum(a.nbytes for b in buckets for a in b) + extra) / 2**20


def load_for_latency(ref: ModelRef, root: str | Path, device: str = "auto",
                     batch_size: int = 128, max_length: int = 64):
    """The model ``ref`` names, loaded for serving (:func:`uwe.infer.loader.load_model`), with no
    progress bars (a bar per query would be timed too). An ``untuned:<scorer>`` spec is UWE's
    architecture on the untuned backbone with that scorer: the same arithmetic per query as a
    trained model with it."""
    from uwe.infer.loader import load_model

    return load_model(ref, root, device=device, batch_size=batch_size, progress=False,
                      max_length=max_length)


def describe(ref: ModelRef) -> dict[str, Any]:
    """Kind, scorer and backbone of the model ``ref`` names (what the ratio needs): an untuned
    UWE model is a ``uwe`` one."""
    kind = "uwe" if ref.kind == "untuned" else ref.kind
    backbone = {"uwe": ref.backbone, "embedding": ref.spec}.get(kind)
    return {"spec": ref.spec, "kind": kind, "scorer": ref.scorer, "backbone": backbone}


ENGINES = ("torch", "onnx")  # torch: the model's own path; onnx: uwe.infer.ort (encoder in ORT)


def entry_name(name: str, engine: str) -> str:
    """``latency.json`` key of a model timed through ``engine`` (torch keeps the name)."""
    return name if engine == "torch" else f"{name}@{engine}"


def sli_mean_ratios(models: Mapping[str, Mapping]) -> dict[str, dict]:
    """For each UWE entry: its median latency over that of a mean-pooled model of the same
    backbone timed through the same engine -- its own mean-pooled twin (``twin_of``, the same
    encoder) where one was timed, else the entry named like its backbone
    (``uwe.model.registry.model_slug`` of either the name or the spec; a twin itself is
    compared with that one); None if none was timed."""
    out = {}
    for name, entry in models.items():
        if entry.get("kind") != "uwe":
            continue
        want, engine = model_slug(entry["backbone"]), entry.get("engine", "torch")
        base = name.split("@")[0]
        match = next((n for n, e in models.items() if e.get("twin_of") == base
                      and e.get("engine", "torch") == engine), None)
        match = match or next((n for n, e in models.items() if e.get("kind") == "embedding"
                               and e.get("engine", "torch") == engine
                               and want in (model_slug(n.split("@")[0]), model_slug(e["spec"]))),
                              None)
        ratio = None if match is None else (entry["latency_ms"]["median"]
                                            / models[match]["latency_ms"]["median"])
        if match is None:
            logger.warning("no mean-pooled %s timed: no SLI / mean ratio for %s", want, name)
        out[name] = {"mean_pooled": match, "latency_ratio": ratio}
    return out


def latency_report(specs: Mapping[str, str], targets: Sequence[str], queries: Sequence[str],
                   root: str | Path = ".", device: str = "auto", batch_size: int = 128,
                   backbone: str | None = None, max_length: int = 64,
                   engines: Sequence[str] = ("torch",), target_layout: str = DEFAULT_LAYOUT,
                   mean_twins: bool = True, **timing: int) -> dict:
    """Measure every model of ``specs`` (name -> spec) through each of ``engines``
    (:data:`ENGINES`; ``onnx`` for the UWE and embedding models:
    :func:`uwe.infer.ort.ort_model_for`,
    entries ``<name>@onnx`` with the encode / score split, SLI models scoring cached target
    tokens stored in ``target_layout``: :data:`uwe.infer.ort.LAYOUTS`); with ``mean_twins``
    a UWE folder of another scorer is also timed mean-pooled through the ONNX engine
    (``<name>:mean@onnx``: the same encoder, only the scorer differs). The ONNX engine's models
    are timed together, their single queries interleaved (:func:`measure_together`); each
    torch model on its own. ``isa`` records the CPU
    and its instruction-set features (the int8 and bf16 kernels follow them); ``timing`` goes
    to :func:`measure`."""
    import torch

    from uwe.infer.kernels import PARALLEL_ROWS
    from uwe.model.pretrained import resolve_device
    from uwe.precision import cpu_isa

    unknown_engines = [e for e in engines if e not in ENGINES]
    if unknown_engines or not engines:
        raise ValueError(f"latency engines must be some of {ENGINES}, got {list(engines)}")
    models, fast, fast_info = {}, {}, {}
    for name, spec in specs.items():
        ref = resolve(spec, root, backbone)
        info = describe(ref)
        model = load_for_latency(ref, root, device, batch_size, max_length)
        params = parameter_count(model)
        if "torch" in engines:
            models[name] = {**info, "engine": "torch",
                            **measure(model, targets, queries, **timing)}
        del model
        if "onnx" in engines and info["kind"] in ("uwe", "embedding"):
            from uwe.infer.ort import ort_model_for

            key = entry_name(name, "onnx")
            fast[key] = ort_model_for(ref, root, max_length=max_length,
                                      threads=torch.get_num_threads(),
                                      target_layout=target_layout)
            layout = target_layout if info["scorer"] == "sli" else None
            fast_info[key] = {**info, "engine": "onnx", "parameters": params,
                              "target_layout": layout}
            if mean_twins and info["kind"] == "uwe" and info["scorer"] != "mean" and ref.path:
                # the same encoder, mean-pooled: the SLI / mean ratio with nothing else changed
                key = entry_name(f"{name}:mean", "onnx")
                fast[key] = ort_model_for(ref, root, max_length=max_length, scorer="mean",
                                          threads=torch.get_num_threads())
                fast_info[key] = {**info, "scorer": "mean", "engine": "onnx", "twin_of": name,
                                  "parameters": params, "target_layout": None}
    if fast:  # the ONNX engine's models timed together, their queries interleaved
        for key, entry in measure_together(fast, targets, queries, **timing).items():
            models[key] = {**fast_info[key], **entry, "parameters": fast_info[key]["parameters"]}
        fast.clear()
    for key, entry in models.items():
        logger.info("%s: median %.1f ms / query, %.0f queries/s", key,
                    entry["latency_ms"]["median"], entry["throughput_qps"])
    ratios = sli_mean_ratios(models)
    sli = [n for n in ratios if models[n].get("scorer") == "sli"]
    sli.sort(key=lambda n: models[n].get("engine") != "onnx")  # the fast engine first
    first = ratios[(sli or list(ratios) or [None])[0]] if ratios else {}
    return {"models": models, "ratios": ratios, "sli_over_mean": first.get("latency_ratio"),
            "engines": list(engines), "target_layout": target_layout, "n_targets": len(targets),
            "isa": cpu_isa(), "segmented_softmax_parallel_rows": PARALLEL_ROWS,
            "threads": torch.get_num_threads(), "device": str(resolve_device(device)),
            "batch_size_latency": 1, **timing}


def latency_frame(report: Mapping, results: Sequence[Mapping] = ()) -> pd.DataFrame:
    """One row per model: parameters (M), median / p90 ms, queries/s, and the heldout macro
    MAP (%) from ``results`` (evaluation result dicts) when the model is among them."""
    maps = {r["model"]: (r.get("macro") or {}).get("map") for r in results}
    rows = []
    for name, e in report["models"].items():
        params = e.get("parameters")
        rows.append({"model": name, "engine": e.get("engine", "torch"), "scorer": e.get("scorer"),
                     "params (M)": None if params is None else round(params / 1e6, 1),
                     "median ms": round(e["latency_ms"]["median"], 2),
                     "p90 ms": round(e["latency_ms"]["p90"], 2),
                     "encode ms": (round(e["encode_ms"]["median"], 2) if "encode_ms" in e
                                   else None),
                     "score ms": round(e["score_ms"]["median"], 2) if "score_ms" in e else None,
                     "queries/s (batch)": round(e["throughput_qps"], 1),
                     "macro MAP": (None if maps.get(name.split("@")[0]) is None
                                   else round(100 * maps[name.split("@")[0]], 1))})
    return pd.DataFrame(rows)
