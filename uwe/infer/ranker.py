"""The ranker behind ``uwe rank`` / ``uwe index`` / ``uwe evaluate``: where the targets come
from, which engine scores them, the cached target index, and the top-k.

* Targets: a curated task's target space or a targets file (text, CSV/TSV, parquet;
  :func:`read_targets_file`), their list kept in the cache's target-list sidecar
  (:func:`resolve_targets`), so a warm ``rank`` neither imports pandas nor reads parquet.
* Engine (:func:`fast_engine`): NumPy (:mod:`uwe.infer.numpy_engine`) or ONNX Runtime
  (:mod:`uwe.infer.ort`) for a UWE folder on the CPU, else the torch model
  (:func:`load`, :func:`indexed`); :func:`rank_fast` runs the first two against the cached
  index.
* :func:`top_k`: the ranking, ties to the lower target index, never with a NaN score.

Every bad input is a :class:`uwe.errors.CLIError` (one line, exit status 2 in ``uwe``).
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
from pathlib import Path
from typing import Any

from uwe.errors import CLIError, unknown

ENGINES = ("auto", "numpy", "onnx", "torch")
TASK_FAMILIES = ("full", "heldout", "zeroshot")  # uwe.data.tasks.FAMILIES (imports pandas)
TASK_SPLITS = ("val", "test")  # uwe.data.tasks.SPLITS
LIST_SUFFIXES = (".csv", ".tsv", ".parquet")  # targets files whose list the cache keeps

logger = logging.getLogger("uwe.cli")


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


#: the one rule per extension of a targets table (README "Ranking your own targets")
TABLE_RULE = ("a .csv is comma-separated with \"...\" quoting, a .tsv tab-separated without "
              "quoting; the first row is a header only when one of its fields is 'target'; "
              "one column = one target per row, several need the 'target' column")
OTHER_DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}


def _table_rows(path: Path, text: str, delimiter: str) -> list[tuple[int, list[str]]]:
    """(line number, fields) of every non-blank row of a .csv / .tsv text (:data:`TABLE_RULE`)."""
    import csv

    if delimiter == "\t":
        reader = csv.reader(text.splitlines(), delimiter="\t", quoting=csv.QUOTE_NONE)
    else:
        reader = csv.reader(text.splitlines(keepends=True), delimiter=",", strict=True)
    rows = []
    try:
        for fields in reader:
            if any(f.strip() for f in fields):
                rows.append((reader.line_num, fields))
    except csv.Error as err:
        raise CLIError(f"{path}: row {reader.line_num}: {err} ({TABLE_RULE})") from None
    return rows


def read_table_targets(path: Path, text: str) -> list[str]:
    """The targets of a .csv / .tsv file by :data:`TABLE_RULE`; a row whose field count differs
    from the first row's, or a file written with another delimiter, is refused in one line
    naming the row (never a target lost to a guessed header or split at a comma)."""
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    rows = _table_rows(path, text, delimiter)
    if not rows:
        raise CLIError(f"target file {path} contains no targets")
    first = [f.strip() for f in rows[0][1]]
    header = "target" in first
    if not header:
        for other, name in OTHER_DELIMITERS.items():
            if other == delimiter:
                continue
            split_header = "target" in [f.strip() for f in rows[0][1][0].split(other)]
            if len(first) == 1 and (split_header or (
                    len(rows) > 1 and all(other in r[1][0] for r in rows))):
                raise CLIError(f"{path} looks {name}-separated (every row, or the header, "
                               f"splits at {other!r}); {TABLE_RULE}")
    width = len(rows[0][1])
    for line, fields in rows[1:]:
        if len(fields) != width:
            hint = (" (an unquoted ',' inside a target? quote it: \"a, b\")"
                    if delimiter == "," else " (a stray tab inside a target?)")
            raise CLIError(f"{path}: row {line} has {len(fields)} fields, row {rows[0][0]} has "
                           f"{width}{hint}")
    if header:
        column = first.index("target")
        return [fields[column] for _, fields in rows[1:]]
    if width > 1:
        raise CLIError(f"target file {path} has {width} columns and no header row naming a "
                       f"'target' column; {TABLE_RULE}")
    return [fields[0] for _, fields in rows]


def read_targets_file(path: str | Path) -> list[str]:
    """Targets from ``.txt`` (one per line), ``.csv``/``.tsv`` (:data:`TABLE_RULE`:
    :func:`read_table_targets`) or ``.parquet`` (the column ``target``, or the only column);
    stripped, empty rows dropped, duplicates dropped (first occurrence kept, so target ``j`` is
    the ``j``-th distinct text). Text files are UTF-8 (a BOM is dropped) or UTF-16 with its BOM."""
    p = Path(path)
    if not p.exists():
        raise CLIError(f"target file not found: {p}")
    if p.is_dir():
        raise CLIError(f"--targets {p} is a folder: give a .txt, .csv, .tsv or .parquet file")
    suffix = p.suffix.lower()  # a pipe (a FIFO, <(...)) is read as a stream of its bytes
    if suffix == ".parquet":
        import pandas as pd

        try:
            df = pd.read_parquet(p)
        except (ValueError, OSError) as err:
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
    elif suffix in (".csv", ".tsv"):
        raw = read_table_targets(p, read_text_file(p))
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
    keyed by the sha256 of the source files' bytes (:func:`uwe.infer.index_cache.task_source_key`):
    a hit skips pandas and the parquet reader, a changed file is a miss. ``--no-cache``
    neither reads nor writes it.
    """
    from uwe.infer.index_cache import IndexCache, file_source_key, targets_sha256, task_source_key

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
    from uwe.data import tasks

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


def load(args: argparse.Namespace):
    """``(model, fingerprint)`` of ``--model`` (see :mod:`uwe.model.registry`)."""
    from uwe.infer.index_cache import model_fingerprint
    from uwe.infer.loader import load_model

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
    from uwe.infer.index_cache import IndexCache

    cache = IndexCache(args.cache_dir)
    return cache.get_or_build(
        model, fingerprint, targets, use_cache=not getattr(args, "no_cache", False), rebuild=rebuild
    )


def fast_engine(args: argparse.Namespace) -> tuple[str, Path] | None:
    """``(engine, UWE folder)`` to rank with without torch, or None for the torch path.

    ``numpy``: :class:`uwe.infer.numpy_engine.NumpyUWE` (a BERT-family backbone with the SLI scorer;
    nothing but NumPy and ``tokenizers``); ``onnx``: :class:`uwe.infer.ort.OrtModel` (the encoder in
    ONNX Runtime; the SLI, mean and SLI-with-mean-target scorers, any backbone). ``--engine
    auto``: numpy where it runs, else onnx where it runs, else torch, with ``--device`` auto or
    cpu (ranking a few queries against a cached index is faster on the CPU than starting
    CUDA). ``--engine numpy`` / ``onnx`` require theirs; ``torch`` never takes either.
    """
    engine = getattr(args, "engine", "auto")
    if engine == "torch":
        return None
    from uwe.model.folder import find_uwe_folder

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
        from uwe.infer.numpy_engine import unsupported_reason

        reason = unsupported_reason(folder)
        if reason is None:
            return "numpy", folder
        if engine == "numpy":
            raise CLIError(f"--engine numpy cannot run {folder}: {reason}")
        logger.info("not the NumPy engine: %s", reason)

    from uwe.infer.ort import SCORERS
    from uwe.model.folder import read_uwe_config

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
    from uwe.infer.index_arrays import index_arrays, numpy_index_arrays
    from uwe.infer.index_cache import IndexCache, model_fingerprint, uwe_kind
    from uwe.infer.numpy_engine import NumpyIndex, NumpyUWE
    from uwe.infer.ort import pooled_targets

    if engine_name == "onnx":
        from uwe.infer.ort import OrtModel

        engine = OrtModel.from_uwe_folder(folder, threads=args.threads,
                                          target_layout=args.target_layout)
    else:
        engine = NumpyUWE(folder)
    cache = IndexCache(args.cache_dir)
    kind = uwe_kind(getattr(engine, "scorer_name", "sli"))  # pooled: the unit mean vectors only
    arrays, fingerprint = None, model_fingerprint(args.model)
    if not args.no_cache:
        arrays = cache.read_entry(fingerprint, sha, len(targets), kind)
        if arrays is not None:
            logger.info("target index: hit %s", cache.paths(fingerprint, sha)[0])
    if arrays is None and engine_name == "onnx":
        index = engine.token_index(targets)
        if not args.no_cache:
            entry = ({"pooled": pooled_targets(index)} if kind == "pooled"
                     else numpy_index_arrays(index))
            try:
                path = cache.write_entry(fingerprint, sha, len(targets), kind, entry)
                logger.info("target index: miss, built and saved %s", path)
            except OSError as err:  # a read-only cache must not fail the ranking
                logger.warning("could not write index cache: %s", err)
        return top_k(engine, queries, engine.prepare(index), k)
    if arrays is None:
        model, fingerprint = load(args)
        index, cached = indexed(args, model, fingerprint, targets)
        logger.info("target index: %s %s", cached.status, cached.path or "")
        arrays = index_arrays(kind, index)
    if kind == "pooled":
        index = NumpyIndex.from_pooled(arrays["pooled"])
    else:
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


def model_tokenizer_file(spec: str) -> Path | None:
    """The ``tokenizer.json`` of the model ``spec`` names (a UWE folder, a sentence-transformers
    folder or an embedder name), None for a lexical baseline or a model without one."""
    from uwe.model.folder import find_st_folder, find_uwe_folder

    folder = find_uwe_folder(spec)
    if folder is None:
        try:
            from uwe.model.pretrained import KNOWN_MODELS, resolve_model
            from uwe.model.st_folder import read_st_folder

            st = find_st_folder(spec)
            if st is None and spec in KNOWN_MODELS and spec not in ("bm25", "tfidf_char"):
                st = Path(resolve_model(spec))
            folder = None if st is None else read_st_folder(st).transformer
        except (ValueError, OSError):  # the model's own loading reports what is wrong
            return None
    path = None if folder is None else folder / "tokenizer.json"
    return path if path is not None and path.is_file() else None


def meaningless_rankings(spec: str, queries: list[str], ranked: list) -> list[str]:
    """Warnings for rankings that look confident and mean nothing: a query made only of what
    the model's vocabulary does not know (every token ``[UNK]``), and a query whose top-k all
    score the same (no lexical match: their order is the targets' order)."""
    out = []
    path = model_tokenizer_file(spec)
    if path is not None:
        import json

        from tokenizers import Tokenizer

        unk = (json.loads(path.read_text(encoding="utf-8")).get("model") or {}).get("unk_token")
        tok = Tokenizer.from_file(str(path))
        tok.no_padding()  # a saved tokenizer may pad to a fixed length
        unk_id = tok.token_to_id(unk) if isinstance(unk, str) else None
        if unk_id is not None:
            for i, enc in enumerate(tok.encode_batch(queries, add_special_tokens=False)):
                if enc.ids and all(t == unk_id for t in enc.ids):
                    out.append(f"query {i + 1} ({queries[i]!r}) has no token the model knows "
                               f"(all {unk}): its ranking means nothing")
    for i, (_, scores) in enumerate(ranked):
        if len(scores) > 1 and len({float(x) for x in scores}) == 1:
            out.append(f"query {i + 1} ({queries[i]!r}): its top {len(scores)} targets all "
                       f"score {float(scores[0]):.4g}, so their order is the target list's")
    return out
