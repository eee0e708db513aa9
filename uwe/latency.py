"""Latency and size (stage ``latency``, notebook ``07_latency``; the paper's Sec. on efficiency).

For each model the target space of one task is indexed once (cached, as in deployment), then:

* latency: ``warmup`` single queries untimed, then ``repeats`` single queries (batch 1) timed
  one by one with ``time.perf_counter`` around ``score_index([query], index)`` (query encoding
  + scoring against every target, scores back on the CPU); median, p10, p90, mean in ms;
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


def measure(model: Any, targets: Sequence[str], queries: Sequence[str], warmup: int = 10,
            repeats: int = 100, throughput_batch: int = 64, throughput_batches: int = 5) -> dict:
    """Index ``targets`` once, then latency and throughput as in the module doc."""
    if repeats < 1 or throughput_batch < 1 or throughput_batches < 1 or warmup < 0:
        raise ValueError("repeats, throughput_batch and throughput_batches must be >= 1, "
                         f"warmup >= 0 (got {repeats}, {throughput_batch}, "
                         f"{throughput_batches}, {warmup})")
    t0 = time.perf_counter()
    index = model.index_targets(list(targets))
    index_seconds = time.perf_counter() - t0
    time_single_queries(model, index, query_stream(queries, warmup))
    ms = time_single_queries(model, index, query_stream(queries, repeats, warmup))
    batches = [query_stream(queries, throughput_batch, k * throughput_batch)
               for k in range(throughput_batches + 1)]
    np.asarray(model.score_index(batches[0], index))  # warm-up batch
    t0 = time.perf_counter()
    for batch in batches[1:]:
        np.asarray(model.score_index(batch, index))
    seconds = time.perf_counter() - t0
    return {
        "latency_ms": {"median": float(np.median(ms)), "p10": float(np.percentile(ms, 10)),
                       "p90": float(np.percentile(ms, 90)), "mean": float(ms.mean())},
        "throughput_qps": throughput_batch * throughput_batches / seconds,
        "index_seconds": index_seconds, "n_targets": len(targets), "parameters":
        parameter_count(model),
    }


UNTUNED_PREFIX = "untuned:"


def load_for_latency(spec: str, root: str | Path, device: str = "auto", batch_size: int = 128,
                     backbone: str | None = None, max_length: int = 64):
    """A UWE folder (``uwe.model.load``), ``"untuned:<scorer>"`` (UWE's architecture on the
    untuned ``backbone`` with that scorer: the same arithmetic per query as a trained model
    with it, e.g. SLI when the main model is mean-pooled) or a baseline
    (``uwe.baselines.make_model``, no progress bars: a bar per query would be timed too)."""
    from uwe.baselines import make_model
    from uwe.registry import find_uwe_folder

    if spec.startswith(UNTUNED_PREFIX):
        from uwe.model import UWEModel

        if backbone is None:
            raise ValueError(f"latency model {spec!r} needs the backbone (train.backbone)")
        return UWEModel.from_backbone(backbone, spec[len(UNTUNED_PREFIX):],
                                      max_length=max_length, device=device,
                                      batch_size=batch_size)

    folder = find_uwe_folder(spec, root)
    if folder is not None:
        from uwe.model import load

        return load(folder, device=device, batch_size=batch_size)
    return make_model(spec, device=device, batch_size=batch_size, progress=False)


def describe(model: Any, spec: str) -> dict[str, Any]:
    """Kind, scorer and backbone of a model (what the ratio needs)."""
    scorer = getattr(model, "scorer_name", None)
    if scorer is not None:
        return {"spec": spec, "kind": "uwe", "scorer": scorer,
                "backbone": model.encoder.backbone_name}
    if hasattr(model, "encoder"):
        return {"spec": spec, "kind": "embedding", "scorer": "mean", "backbone": spec}
    return {"spec": spec, "kind": "lexical", "scorer": None, "backbone": None}


def sli_mean_ratios(models: Mapping[str, Mapping]) -> dict[str, dict]:
    """For each UWE entry: its median latency over that of the entry named like its backbone
    (``uwe.baselines.model_slug`` of either the name or the spec); None if none was timed."""
    from uwe.baselines import model_slug

    out = {}
    for name, entry in models.items():
        if entry.get("kind") != "uwe":
            continue
        want = model_slug(entry["backbone"])
        match = next((n for n, e in models.items() if e.get("kind") == "embedding"
                      and want in (model_slug(n), model_slug(e["spec"]))), None)
        ratio = None if match is None else (entry["latency_ms"]["median"]
                                            / models[match]["latency_ms"]["median"])
        if match is None:
            logger.warning("no mean-pooled %s timed: no SLI / mean ratio for %s", want, name)
        out[name] = {"mean_pooled": match, "latency_ratio": ratio}
    return out


def latency_report(specs: Mapping[str, str], targets: Sequence[str], queries: Sequence[str],
                   root: str | Path = ".", device: str = "auto", batch_size: int = 128,
                   backbone: str | None = None, max_length: int = 64, **timing: int) -> dict:
    """Measure every model of ``specs`` (name -> spec); ``timing`` goes to :func:`measure`."""
    import torch

    from uwe.encoders import resolve_device

    models = {}
    for name, spec in specs.items():
        model = load_for_latency(spec, root, device, batch_size, backbone, max_length)
        models[name] = {**describe(model, spec), **measure(model, targets, queries, **timing)}
        logger.info("%s: median %.1f ms / query, %.0f queries/s", name,
                    models[name]["latency_ms"]["median"], models[name]["throughput_qps"])
        del model
    ratios = sli_mean_ratios(models)
    sli = [r for n, r in ratios.items() if models[n].get("scorer") == "sli"]
    first = (sli or list(ratios.values()) or [{}])[0]
    return {"models": models, "ratios": ratios, "sli_over_mean": first.get("latency_ratio"),
            "n_targets": len(targets), "threads": torch.get_num_threads(),
            "device": str(resolve_device(device)), "batch_size_latency": 1, **timing}


def latency_frame(report: Mapping, results: Sequence[Mapping] = ()) -> pd.DataFrame:
    """One row per model: parameters (M), median / p90 ms, queries/s, and the heldout macro
    MAP (%) from ``results`` (evaluation result dicts) when the model is among them."""
    maps = {r["model"]: (r.get("macro") or {}).get("map") for r in results}
    rows = []
    for name, e in report["models"].items():
        params = e.get("parameters")
        rows.append({"model": name, "scorer": e.get("scorer"),
                     "params (M)": None if params is None else round(params / 1e6, 1),
                     "median ms": round(e["latency_ms"]["median"], 2),
                     "p90 ms": round(e["latency_ms"]["p90"], 2),
                     "queries/s (batch)": round(e["throughput_qps"], 1),
                     "macro MAP": None if maps.get(name) is None else round(100 * maps[name], 1)})
    return pd.DataFrame(rows)
