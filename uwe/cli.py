"""The ``uwe`` command line: rank, index, evaluate, info.

    uwe rank --model models/uwe --task job2skill "data scientist"
    printf 'nurse\\nwelder\\n' | uwe rank --model bm25 --targets skills.txt --format csv
    uwe index --model models/uwe --targets skills.csv
    uwe evaluate --model models/uwe --task all --family heldout --out metrics/cli.json
    uwe info models/uwe

Target indexes are cached on disk (:mod:`uwe.index_cache`), so a second ``rank`` against the
same model and target list skips encoding the targets. Expected failures (a bad option value,
an unknown task, family, split or model name, a missing, damaged or unreadable model, task or
targets file, an empty target list) print one line ``uwe: error: ...`` on stderr, naming the
file, row or value and what to do, and exit with status 2; unknown names get a did-you-mean.
``--verbose`` shows the traceback and INFO logs instead.

The warm ``rank`` path is kept lean: heavy modules are imported only where they are used, the
target list of a task (or a .csv/.tsv/.parquet targets file) comes from the cache's target-list
sidecar (no pandas, no parquet), and for a UWE folder with a BERT-family backbone and the SLI
scorer (``--engine auto`` on the CPU) queries are encoded and scored with NumPy
(:mod:`uwe.npinfer`) against the memory-mapped cached index, so neither torch nor transformers
is imported unless the index has to be built; a UWE folder with another backbone or the mean
scorer runs its encoder in ONNX Runtime (:mod:`uwe.ort`, exported once per model version).
``--engine torch`` runs the torch model instead (same scores up to float32 rounding).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from uwe.errors import InputError, unknown

EXIT_USAGE = 2
TABLE_FORMATS = ("table", "json", "csv")
ENGINES = ("auto", "numpy", "onnx", "torch")
# the ONNX engine's SLI target layouts (uwe.ort.LAYOUTS; not imported: uwe.ort loads numpy)
LAYOUTS = ("float32", "fused32", "float16", "int8")
DEFAULT_LAYOUT = "float16"
TASK_FAMILIES = ("full", "heldout", "zeroshot")  # uwe.tasks.FAMILIES (that module imports pandas)
TASK_SPLITS = ("val", "test")  # uwe.tasks.SPLITS
LIST_SUFFIXES = (".csv", ".tsv", ".parquet")  # targets files whose list the cache keeps

logger = logging.getLogger("uwe.cli")


class CLIError(InputError):
    """An expected user error: reported as one line, exit status 2."""


# -- inputs ----------------------------------------------------------------------------------
def read_text_file(path: Path) -> str:
    """The text of ``path``: UTF-8 (a leading byte-order mark dropped) or UTF-16 with its BOM;
    anything else (another encoding, a binary file) is a :class:`CLIError` naming the file and
    the offset of the first bad byte."""
    data = path.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        encoding = "utf-16"
    else:
        encoding = "utf-8-sig"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as err:
        raise CLIError(
            f"{path} is not {encoding.split('-sig')[0].upper()} text (byte 0x{data[err.start]:02x}"
            f" at offset {err.start}): save it as UTF-8, one target per line"
        ) from None
    if "\x00" in text:
        zeros = max(data[0::2].count(0), data[1::2].count(0))
        utf16 = zeros >= 0.9 * (len(data) // 2)  # ASCII text in UTF-16: every other byte 0
        raise CLIError(
            f"{path} looks binary (a NUL character at offset {text.index(chr(0))}"
            + ("; UTF-16 without a byte-order mark?" if utf16 else "")
            + "): targets files are UTF-8 text (.txt, .csv, .tsv) or .parquet"
        )
    return text


def read_targets_file(path: str | Path) -> list[str]:
    """Targets from ``.txt`` (one per line), ``.csv``/``.tsv`` or ``.parquet`` (the column
    ``target``, or the only column); stripped, empty rows dropped, duplicates dropped (first
    occurrence kept, so target ``j`` is the ``j``-th distinct text). Text files are UTF-8
    (a BOM is dropped) or UTF-16 with a BOM; a table with several columns and none named
    ``target`` is refused rather than guessed."""
    p = Path(path)
    if not p.is_file():
        raise CLIError(f"target file not found: {p}")
    suffix = p.suffix.lower()
    if suffix in LIST_SUFFIXES:
        import io

        import pandas as pd

        try:
            df = (
                pd.read_parquet(p)
                if suffix == ".parquet"
                else pd.read_csv(
                    io.StringIO(read_text_file(p)),
                    sep="\t" if suffix == ".tsv" else ",",
                    dtype=str,
                    keep_default_na=False,
                )
            )
        except (ValueError, OSError, pd.errors.ParserError) as err:
            if isinstance(err, CLIError):
                raise
            msg = " ".join(str(err).split())
            raise CLIError(f"cannot read target file {p}: {msg}") from err
        if df.shape[1] == 0:
            raise CLIError(f"target file {p} has no columns")
        if "target" not in df.columns and df.shape[1] > 1:
            raise CLIError(
                f"target file {p} has {df.shape[1]} columns ({', '.join(map(str, df.columns))})"
                f" and none named 'target': name the column to rank 'target'"
            )
        raw = df["target" if "target" in df.columns else df.columns[0]].tolist()
    else:
        raw = read_text_file(p).splitlines()
    targets = list(dict.fromkeys(str(t).strip() for t in raw if t is not None))
    targets = [t for t in targets if t]
    if not targets:
        raise CLIError(f"target file {p} contains no targets")
    return targets


def task_targets(args: argparse.Namespace) -> list[str]:
    return load_checked_task(args.task, args.family, args.split, args.root).targets


def resolve_targets(args: argparse.Namespace) -> tuple[list[str], str]:
    """``(targets, targets_sha256)`` of ``--task`` or ``--targets``.

    A task's list (and a .csv/.tsv/.parquet file's) is kept in the cache's target-list sidecar
    keyed by the sha256 of the source files' bytes (:func:`uwe.index_cache.task_source_key`):
    a hit skips pandas and the parquet reader, a changed file is a miss. ``--no-cache``
    neither reads nor writes it.
    """
    from uwe.index_cache import IndexCache, file_source_key, targets_sha256, task_source_key

    key, origin = None, ""
    if not getattr(args, "no_cache", False):
        if args.task:
            if args.family in TASK_FAMILIES:
                key = task_source_key(args.root, args.family, args.task, args.split)
                origin = f"task {args.family}/{args.task}/{args.split} under {args.root}"
        elif Path(args.targets).suffix.lower() in LIST_SUFFIXES and Path(args.targets).is_file():
            key, origin = file_source_key(args.targets), f"file {args.targets}"
    cache = IndexCache(args.cache_dir)
    if key is not None:
        hit = cache.target_list(key)
        if hit is not None:
            return hit
    targets = task_targets(args) if args.task else read_targets_file(args.targets)
    if key is not None:
        try:
            cache.save_target_list(key, targets, origin)
        except OSError as err:  # a read-only cache must not fail the ranking
            logger.warning("could not write the target list cache: %s", err)
    return targets, targets_sha256(targets)


def check_family_split(family: str, split: str) -> None:
    if family not in TASK_FAMILIES:
        raise unknown("--family", family, TASK_FAMILIES)
    if split not in TASK_SPLITS:
        raise unknown("--split", split, TASK_SPLITS)


def load_checked_task(name: str, family: str, split: str, root: str):
    from uwe import tasks

    check_family_split(family, split)
    if not name:
        raise CLIError("--task is empty: give a task name, several separated by commas, or 'all'")
    on_disk = tasks.list_tasks(family, root=root, split=split)
    if not on_disk:
        raise CLIError(
            f"no curated {family} tasks with a {split!r} split under {Path(root) / 'tasks'}: "
            f"run `dvc repro curate`, or pass --root"
        )
    if name not in on_disk:
        raise unknown("task", name, on_disk, hint=f"looked in {Path(root) / 'tasks' / family}, "
                      f"split {split!r}")
    return tasks.load_task(name, family=family, split=split, root=root)


def read_queries(args: argparse.Namespace) -> list[str]:
    """Queries from the command line, else one per line from stdin."""
    if args.queries:
        queries = [q.strip() for q in args.queries]
    elif sys.stdin is None or sys.stdin.isatty():
        raise CLIError("no queries: pass them as arguments or pipe them on stdin, one per line")
    else:
        queries = [line.strip() for line in sys.stdin.read().splitlines()]
    queries = [q for q in queries if q]
    if not queries:
        raise CLIError("no queries given (all empty)")
    return queries


def load(args: argparse.Namespace):
    """``(model, fingerprint)`` of ``--model`` (see :mod:`uwe.registry`)."""
    from uwe.index_cache import model_fingerprint
    from uwe.registry import load_model

    threads = getattr(args, "threads", None)
    if threads:
        import torch

        torch.set_num_threads(threads)
    check_device(args.device)
    model = load_model(args.model, device=args.device, batch_size=args.batch_size)
    encoder = getattr(model, "encoder", None)
    if hasattr(encoder, "progress"):  # an embedding baseline: no progress bars in the CLI
        encoder.progress = False
    return model, model_fingerprint(args.model)


def check_device(device: str) -> None:
    """``--device``: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` of a GPU this torch build sees."""
    import re

    if device in ("auto", "cpu"):
        return
    if not re.fullmatch(r"cuda(:\d+)?", device):
        raise unknown("--device", device, ("auto", "cpu", "cuda", "cuda:0"))
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(device.partition(":")[2] or 0)
    if index >= count:
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise CLIError(
            f"--device {device}: this torch ({torch.__version__}, {build}) sees "
            f"{count} GPU{'s' if count != 1 else ''}; use --device cpu or auto"
        )


def indexed(
    args: argparse.Namespace,
    model: Any,
    fingerprint: dict,
    targets: list[str],
    rebuild: bool = False,
):
    from uwe.index_cache import IndexCache

    cache = IndexCache(args.cache_dir)
    return cache.get_or_build(
        model, fingerprint, targets, use_cache=not getattr(args, "no_cache", False), rebuild=rebuild
    )


def fast_engine(args: argparse.Namespace) -> tuple[str, Path] | None:
    """``(engine, UWE folder)`` to rank with without torch, or None for the torch path.

    ``numpy``: :class:`uwe.npinfer.NumpyUWE` (a BERT-family backbone with the SLI scorer;
    nothing but NumPy and ``tokenizers``); ``onnx``: :class:`uwe.ort.OrtModel` (the encoder in
    ONNX Runtime; the SLI, mean and SLI-with-mean-target scorers, any backbone). ``--engine
    auto``: numpy where it runs, else onnx where it runs, else torch, with ``--device`` auto or
    cpu (ranking a few queries against a cached index is faster on the CPU than starting
    CUDA). ``--engine numpy`` / ``onnx`` require theirs; ``torch`` never takes either.
    """
    engine = getattr(args, "engine", "auto")
    if engine == "torch":
        return None
    from uwe.registry import find_uwe_folder

    folder = find_uwe_folder(args.model)
    if folder is None:
        if engine != "auto":
            raise CLIError(f"--engine {engine} needs a UWE model folder, not {args.model!r}")
        return None
    if args.device not in ("auto", "cpu"):
        if engine != "auto":
            raise CLIError(f"--engine {engine} runs on the CPU, not --device {args.device}")
        return None
    if engine in ("auto", "numpy"):
        from uwe.npinfer import unsupported_reason

        reason = unsupported_reason(folder)
        if reason is None:
            return "numpy", folder
        if engine == "numpy":
            raise CLIError(f"--engine numpy cannot run {folder}: {reason}")
        logger.info("not the NumPy engine: %s", reason)
    import importlib.util

    from uwe.folder import read_uwe_config
    from uwe.ort import SCORERS

    scorer = read_uwe_config(folder)["scorer"]
    reason = (f"scorer {scorer!r}" if scorer not in SCORERS else
              "onnxruntime is not installed" if importlib.util.find_spec("onnxruntime") is None
              else None)
    if reason is None:
        return "onnx", folder
    if engine == "onnx":
        raise CLIError(f"--engine onnx cannot run {folder}: {reason}")
    logger.info("ranking with torch: %s", reason)
    return None


def rank_fast(
    args: argparse.Namespace, engine_name: str, folder: Path, queries: list[str],
    targets: list[str], sha: str, k: int
) -> list:
    """:func:`top_k` of the NumPy or ONNX engine against the cached index. On a miss the
    index is built (ONNX engine: by it; NumPy: by torch) and saved; with ``--no-cache`` built
    and not saved."""
    from uwe.index_cache import IndexCache, index_arrays, model_fingerprint, numpy_index_arrays
    from uwe.npinfer import NumpyIndex, NumpyUWE

    if engine_name == "onnx":
        from uwe.ort import OrtModel

        engine = OrtModel.from_uwe_folder(folder, threads=args.threads,
                                          target_layout=args.target_layout)
    else:
        engine = NumpyUWE(folder)
    cache = IndexCache(args.cache_dir)
    arrays, fingerprint = None, model_fingerprint(args.model)
    if not args.no_cache:
        arrays = cache.read_entry(fingerprint, sha, len(targets), "uwe")
        if arrays is not None:
            logger.info("target index: hit %s", cache.paths(fingerprint, sha)[0])
    if arrays is None and engine_name == "onnx":
        index = engine.token_index(targets)
        if not args.no_cache:
            try:
                path = cache.write_entry(fingerprint, sha, len(targets), "uwe",
                                         numpy_index_arrays(index))
                logger.info("target index: miss, built and saved %s", path)
            except OSError as err:  # a read-only cache must not fail the ranking
                logger.warning("could not write index cache: %s", err)
        return top_k(engine, queries, engine.prepare(index), k)
    if arrays is None:
        model, fingerprint = load(args)
        index, cached = indexed(args, model, fingerprint, targets)
        logger.info("target index: %s %s", cached.status, cached.path or "")
        arrays = index_arrays("uwe", index)
    index = NumpyIndex.from_arrays(arrays, len(targets))
    return top_k(engine, queries, engine.prepare(index) if engine_name == "onnx" else index, k)


def top_k(model: Any, queries: list[str], index: Any, k: int, chunk: int = 256):
    """``[(ids (k,), scores (k,)) per query]``; ties -> lower target index."""
    import numpy as np

    out = []
    for s in range(0, len(queries), chunk):
        scores = np.asarray(model.score_index(queries[s : s + chunk], index))  # (c, n_t)
        bad = ~np.isfinite(scores)
        if bad.any():  # a NaN would sort anywhere: never rank with it
            r, j = (int(x) for x in np.argwhere(bad)[0])
            raise CLIError(
                f"score of query {queries[s + r]!r} against target {j} is {scores[r, j]}: the "
                f"model or its cached target index is damaged; rebuild the index with "
                f"`uwe index --rebuild` (same --model and targets) or check the model folder"
            )
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]  # (c, k)
        out += [(ids, row[ids]) for row, ids in zip(scores, order, strict=True)]
    return out


# -- outputs ---------------------------------------------------------------------------------
def print_rankings(queries: list[str], ranked: list, targets: list[str], fmt: str) -> None:
    out = sys.stdout
    if fmt == "json":
        rows = [
            {
                "query": q,
                "results": [
                    {"rank": r + 1, "score": round(float(s), 6), "target": targets[j]}
                    for r, (j, s) in enumerate(zip(ids, sc, strict=True))
                ],
            }
            for q, (ids, sc) in zip(queries, ranked, strict=True)
        ]
        out.write(json.dumps(rows, ensure_ascii=False, indent=2) + "\n")
    elif fmt == "csv":
        w = csv.writer(out, lineterminator="\n")
        w.writerow(["query", "rank", "score", "target"])
        for q, (ids, sc) in zip(queries, ranked, strict=True):
            w.writerows(
                [q, r + 1, f"{float(s):.6f}", targets[j]]
                for r, (j, s) in enumerate(zip(ids, sc, strict=True))
            )
    else:
        blocks = []
        for q, (ids, sc) in zip(queries, ranked, strict=True):
            lines = [f"query: {q}", f"{'rank':>4}  {'score':>8}  target"]
            lines += [
                f"{r + 1:>4}  {float(s):>8.4f}  {targets[j]}"
                for r, (j, s) in enumerate(zip(ids, sc, strict=True))
            ]
            blocks.append("\n".join(lines))
        out.write("\n\n".join(blocks) + "\n")


def print_results(res: dict) -> None:
    """Per-task MAP / RP@10 in %, then the groups' macro average."""
    head = f"{'task':<30} {'queries':>8} {'targets':>8} {'MAP':>7} {'RP@10':>7}"
    lines = [head, "-" * len(head)]
    for name, r in res["tasks"].items():
        lines.append(
            f"{name:<30} {r['n_queries']:>8} {r['n_targets']:>8} "
            f"{100 * r['map']:>7.2f} {100 * r['rp@10']:>7.2f}"
        )
    macro = res["macro"]
    if macro.get("map") is not None:
        lines.append("-" * len(head))
        label = f"macro ({macro['n_groups']} groups)"
        lines.append(f"{label:<48} {100 * macro['map']:>7.2f} {100 * macro['rp@10']:>7.2f}")
    print("\n".join(lines))


# -- commands --------------------------------------------------------------------------------
def cmd_rank(args: argparse.Namespace) -> int:
    targets, sha = resolve_targets(args)
    queries = read_queries(args)
    if args.top_k < 1:
        raise CLIError(f"--top-k must be >= 1, got {args.top_k}")
    k = min(args.top_k, len(targets))
    fast = fast_engine(args)
    if fast is not None:
        ranked = rank_fast(args, *fast, queries, targets, sha, k)
    else:
        model, fingerprint = load(args)
        index, cached = indexed(args, model, fingerprint, targets)
        logger.info("target index: %s %s", cached.status, cached.path or "")
        ranked = top_k(model, queries, index, k)
    print_rankings(queries, ranked, targets, args.format)
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    targets, sha = resolve_targets(args)
    if not args.rebuild:  # a cached UWE index: report it without loading the model
        from uwe.index_cache import IndexCache, model_fingerprint
        from uwe.registry import find_uwe_folder

        if find_uwe_folder(args.model) is not None:
            cache, fingerprint = IndexCache(args.cache_dir), model_fingerprint(args.model)
            if cache.read_entry(fingerprint, sha, len(targets), "uwe") is not None:
                print(f"{cache.paths(fingerprint, sha)[0]} ({len(targets)} targets, hit)")
                return 0
    model, fingerprint = load(args)
    _, cached = indexed(args, model, fingerprint, targets, rebuild=args.rebuild)
    if cached.path is None:
        print(
            f"{args.model}: lexical index, not cached (rebuilt in well under a second per "
            f"call); {len(targets)} targets"
        )
    else:
        print(f"{cached.path} ({len(targets)} targets, {cached.status})")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from uwe.evaluation import evaluate, write_results
    from uwe.index_cache import CachedIndexModel, IndexCache

    names = None
    check_family_split(args.family, args.split)
    if args.task != "all":
        names = [t.strip() for t in args.task.split(",") if t.strip()]
        if not names:
            raise CLIError(
                f"--task {args.task!r} names no task: give a task name, several separated by "
                f"commas, or 'all'"
            )
        for name in names:  # fail before loading the model
            load_checked_task(name, args.family, args.split, args.root)
    if args.engine == "onnx":  # the query side in ONNX Runtime; indexes are not cached
        from uwe.ort import ort_model_for

        check_device(args.device)
        scored = ort_model_for(args.model, threads=args.threads,
                               target_layout=args.target_layout)
    else:
        model, fingerprint = load(args)
        scored = (
            model
            if args.no_cache
            else CachedIndexModel(model, fingerprint, IndexCache(args.cache_dir))
        )
    res = evaluate(
        scored,
        args.family,
        tasks=names,
        split=args.split,
        root=args.root,
        query_chunk=args.query_chunk,
        progress=sys.stderr.isatty(),
        model_name=args.model,
    )
    print_results(res)
    if args.out:
        print(f"wrote {write_results(res, args.out)}")
    return 0


def count_params(weights: Path) -> int:
    """Number of parameters in a safetensors file, from its header (no tensor is read)."""
    import numpy as np
    from safetensors import safe_open

    try:
        with safe_open(str(weights), framework="np") as f:
            n = int(sum(np.prod(f.get_slice(k).get_shape(), dtype=np.int64) for k in f.keys()))
    except Exception as err:  # safetensors raises its own SafetensorError (not an OSError)
        raise CLIError(
            f"{weights}: not a readable safetensors file ({' '.join(str(err).split())}): the "
            f"weights are truncated or damaged; copy or train the model again"
        ) from err
    return n


def _fmt(d: Any, keys: tuple[str, ...] | None = None) -> str:
    if not isinstance(d, dict):
        return str(d)
    items = [(k, d[k]) for k in (keys or tuple(d)) if k in d and not isinstance(d[k], dict)]
    return ", ".join(f"{k} {v}" for k, v in items) or "-"


def describe_model(path: str | Path) -> dict[str, Any]:
    """``{"summary": {label: text}, "config": uwe_config, "params": n}`` of a UWE folder."""
    folder = Path(path)
    config_path = folder / "uwe_config.json"
    if not config_path.is_file():
        raise CLIError(f"not a UWE model folder (no uwe_config.json): {folder}")
    from uwe.folder import read_json_object

    cfg = read_json_object(config_path)
    weights = folder / "model.safetensors"
    n_params = count_params(weights) if weights.is_file() else None
    train = cfg.get("train") or {}
    data = cfg.get("data") or {}
    graphs = cfg.get("graphs") or train.get("graphs") or {}
    summary = {
        "model": str(folder.resolve()),
        "backbone": cfg.get("backbone", "?"),
        "scorer": cfg.get("scorer", "?"),
        "attention temperature": cfg.get("attention_temperature", "?"),
        "max length": f"{cfg.get('max_length', '?')} tokens",
        "params": (
            f"{n_params:,} ({n_params / 1e6:.1f}M)"
            if n_params is not None
            else "? (model.safetensors missing)"
        ),
        "uwe version": f"{cfg.get('uwe_version', '?')} (format {cfg.get('format_version', '?')})",
    }
    if train:
        summary["training"] = _fmt(
            train,
            (
                "loss",
                "steps",
                "batch_size",
                "lr",
                "warmup",
                "weight_decay",
                "max_minutes",
                "precision",
            ),
        )
        summary["trained"] = _fmt(cfg, ("step", "seed", "world_size"))
        summary["graphs"] = ", ".join(f"{g} ({_fmt(p)})" for g, p in graphs.items()) or "-"
    else:
        summary["training"] = "none recorded (an untuned backbone?)"
    if data:
        edges = data.get("graph_edges") or {}
        summary["training data"] = f"{data.get('root', '?')}; edges: " + (
            ", ".join(f"{g} {n:,}" for g, n in edges.items()) or "-"
        )
    val = cfg.get("val")
    if isinstance(val, dict) and val.get("macro_map") is not None:
        summary["validation"] = f"macro MAP {100 * float(val['macro_map']):.2f} (best checkpoint)"
    return {"summary": summary, "config": cfg, "params": n_params}


def cmd_info(args: argparse.Namespace) -> int:
    info = describe_model(args.path)
    if args.format == "json":
        print(json.dumps(info, indent=2, sort_keys=True, default=str))
    else:
        print("\n".join(f"{k + ':':<24}{v}" for k, v in info["summary"].items()))
    return 0


# -- parser ----------------------------------------------------------------------------------
class Parser(argparse.ArgumentParser):
    """argparse with the project's error style: one line on stderr, exit status 2 (argparse's
    own prints the usage block first)."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"uwe: error: {message} (see `{self.prog} --help`)\n")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        required=True,
        metavar="PATH|NAME",
        help="a UWE model folder (with uwe_config.json), bm25, tfidf_char or an "
        "embedder (all-MiniLM-L6-v2, all-mpnet-base-v2, a local folder)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    p.add_argument("--batch-size", type=positive_int, default=128,
                   help="texts per encoder batch")
    p.add_argument(
        "--cache-dir",
        default=None,
        help="target-index cache (default: $UWE_CACHE_DIR/index or ~/.cache/uwe/index)",
    )


def _task_args(p: argparse.ArgumentParser, targets_file: bool = True) -> None:
    if targets_file:
        src = p.add_mutually_exclusive_group(required=True)
        src.add_argument("--task", help="rank against this curated task's target space")
        src.add_argument(
            "--targets",
            metavar="FILE",
            help="targets: .txt (one per line), .csv/.tsv/.parquet (column "
            "'target', else the first column)",
        )
    p.add_argument("--family", default="heldout", help="task family: full, heldout, zeroshot")
    p.add_argument("--split", default="test", help="task split: val or test (default: test)")
    p.add_argument("--root", default="data/curated", help="curated data folder")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="uwe",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Unified Work Embeddings: rank skills and occupations, evaluate models on "
        "WorkBench, inspect trained models.",
        epilog="examples:\n"
        + "\n".join(
            "  " + line.strip()
            for line in __doc__.splitlines()
            if line.startswith(("    uwe ", "    printf "))
        ),
    )
    parser.add_argument(
        "--verbose", "-v", action="store_true", help="INFO logs and full tracebacks on errors"
    )
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="CPU threads of torch and NumPy's BLAS (default: $UWE_THREADS, else the cores "
        "the load average leaves free; `rank` then uses 1 BLAS thread)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "rank",
        help="top-k targets for each query",
        description="Rank a target space for each query (arguments, or stdin "
        "one per line). The target index is cached on disk.",
    )
    _model_args(p)
    _task_args(p)
    p.add_argument("--top-k", type=positive_int, default=10, help="results per query (default: 10)")
    p.add_argument("--format", choices=TABLE_FORMATS, default="table", help="output format")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    p.add_argument(
        "--engine",
        choices=ENGINES,
        default="auto",
        help="query encoder + scorer: numpy (UWE folders with a BERT-family backbone and the "
        "SLI scorer, on the CPU; no torch import on a cache hit), onnx (the encoder in ONNX "
        "Runtime: UWE folders with the sli, mean or sli_mean_target scorer), torch, or auto "
        "(numpy, else onnx where it can run and --device is auto or cpu, else torch)",
    )
    p.add_argument(
        "--target-layout",
        choices=LAYOUTS,
        default=DEFAULT_LAYOUT,
        help="--engine onnx, SLI scorer: how the cached target tokens are stored and scored: "
        "float32 (NumPy passes, the reference), fused32, float16 or int8 (one fused pass per "
        f"query; scripts/bench_layouts.py measures each). Default: {DEFAULT_LAYOUT}",
    )
    p.add_argument("queries", nargs="*", metavar="QUERY", help="query texts (default: stdin)")
    p.set_defaults(func=cmd_rank)

    p = sub.add_parser(
        "index",
        help="build and cache a target index",
        description="Encode a target space once and store it in the cache.",
    )
    _model_args(p)
    _task_args(p)
    p.add_argument("--rebuild", action="store_true", help="rebuild even if cached")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser(
        "evaluate",
        help="WorkBench metrics of a model",
        description="MAP and RP@10 per task and the macro average, computed by "
        "uwe.evaluation (the pipeline's numbers).",
    )
    _model_args(p)
    p.add_argument(
        "--task", required=True, help="a task name, several separated by commas, or 'all'"
    )
    _task_args(p, targets_file=False)
    p.add_argument("--query-chunk", type=positive_int, default=1024, help="queries scored at once")
    p.add_argument(
        "--engine",
        choices=("torch", "onnx"),
        default="torch",
        help="torch (the pipeline's numbers) or onnx: the encoder in ONNX Runtime (uwe.ort; "
        "UWE folders and mean-pooling embedders, on the CPU)",
    )
    p.add_argument(
        "--target-layout",
        choices=LAYOUTS,
        default=DEFAULT_LAYOUT,
        help="--engine onnx, SLI scorer: how the cached target tokens are stored and scored: "
        "float32 (NumPy passes, the reference), fused32, float16 or int8 (one fused pass per "
        f"query; scripts/bench_layouts.py measures each). Default: {DEFAULT_LAYOUT}",
    )
    p.add_argument("--no-cache", action="store_true", help="do not use the index cache")
    p.add_argument("--out", metavar="FILE", help="write the results JSON here")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "info",
        help="describe a trained UWE model folder",
        description="Backbone, scorer, temperature, max length, parameter "
        "count, training params and data from uwe_config.json.",
    )
    p.add_argument("path", metavar="PATH", help="a UWE model folder")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=cmd_info)
    return parser


def configure_logging(level: int) -> None:
    """One stderr handler on the root logger at ``level`` (libraries such as bm25s set their
    own loggers to DEBUG, so the level is put on the handler); idempotent across calls."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "_uwe_cli", False)), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler._uwe_cli = True  # type: ignore[attr-defined]
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    handler.setLevel(level)
    root.setLevel(min(root.level or logging.WARNING, level))


def default_threads() -> int:
    """CPU threads for torch when neither ``--threads`` nor ``$UWE_THREADS`` says: the cores
    that the 1-minute load average leaves free, at least 1. Oversubscribed threads wait for
    each other: beside a 2-thread training run on 2 cores, building job2skill's index took 5x
    longer with 2 torch threads than with 1."""
    cpus = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0]
    except (AttributeError, OSError):  # not available on this platform
        return cpus
    return max(1, min(cpus, cpus - int(busy + 0.5)))


def configure_threads(args: argparse.Namespace) -> None:
    """``args.threads`` = ``--threads``, else ``$UWE_THREADS``, else :func:`default_threads`
    (torch applies it when the model is loaded: importing torch here would cost seconds on the
    NumPy path). NumPy's BLAS reads its thread count when NumPy is first imported, so it is set
    here, before that: to ``--threads`` / ``$UWE_THREADS`` when given, else (unless
    ``OPENBLAS_NUM_THREADS`` is set) to 1 for ``rank``, whose per-bucket products are too small
    to gain from threads (measured: 300 queries beside a training run took 10 s with 1 BLAS
    thread and 190 s with 2), and to the torch count for the other commands."""
    explicit = args.threads
    env = os.environ.get("UWE_THREADS", "").strip()
    if not explicit and env:
        try:
            explicit = int(env)
        except ValueError:
            explicit = 0
        if explicit < 1:
            raise CLIError(f"UWE_THREADS must be a whole number >= 1, got {env!r}")
    args.threads = explicit or default_threads()
    if "numpy" in sys.modules:  # imported by the caller: too late to set BLAS threads
        return
    if explicit:
        os.environ["OPENBLAS_NUM_THREADS"] = str(explicit)
    else:
        os.environ.setdefault(
            "OPENBLAS_NUM_THREADS", "1" if args.command == "rank" else str(args.threads)
        )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help (0) or a usage error (2): argparse printed it
        return int(exit_.code or 0)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not args.verbose:  # read by huggingface_hub / transformers at import: no weight bars
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    configure_logging(logging.INFO if args.verbose else logging.WARNING)
    try:
        configure_threads(args)
        return args.func(args)
    except (ValueError, OSError, ImportError) as err:  # InputError / CLIError are ValueErrors
        if args.verbose:
            raise
        msg = " ".join(str(err).split()) or type(err).__name__
        print(f"uwe: error: {msg}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
