"""The ranker behind ``uwe rank`` / ``uwe index`` / ``uwe evaluate``, as a library API with typed
arguments (the command line, the WorkRB adapter and notebooks call the same code)::

    from uwe.infer.ranker import Ranker, RankerOptions, TargetSource

    ranker = Ranker(RankerOptions(model="models/uwe", root="data/curated"))
    ranking = ranker.rank(["data scientist"], TargetSource(task="job2skill"), top_k=5)
    ranking.top(0)                                   # [(target, score), ...] of query 0
    ranker.index(TargetSource(file="skills.csv"))    # build and cache a target index

* :class:`RankerOptions`: the model spec and how to run it (device, batch size, engine, the
  index cache, threads, the ONNX engine's target layout, the curated data folder ``root``).
* :class:`TargetSource`: a curated task (``task``, ``family``, ``split``) or a targets ``file``
  (text, CSV/TSV, parquet; :func:`read_targets_file`), exactly one of them.
* :class:`Ranker`: :meth:`~Ranker.targets` (the list and its sha256, kept in the cache's
  target-list sidecar so a warm ``rank`` neither imports pandas nor reads parquet),
  :meth:`~Ranker.rank` (a :class:`Ranking`: per query the top-k ids and scores, and the
  warnings of :func:`meaningless_rankings`), :meth:`~Ranker.index` (an :class:`IndexReport`),
  :meth:`~Ranker.model` (the torch model, loaded once through :func:`uwe.infer.loader.load_model`)
  and :meth:`~Ranker.scoring_model` (what :func:`uwe.bench.evaluation.evaluate` scores: the
  ONNX engine's model, or the torch model behind the index cache).
* Engine (:func:`fast_engine`): NumPy (:mod:`uwe.infer.numpy_engine`) or ONNX Runtime
  (:mod:`uwe.infer.ort`) for a UWE folder on the CPU, else the torch model; the first two rank
  against the cached index without importing torch on a hit.
* :func:`select_top_k`: the ranking, ties to the lower target index, never with a NaN score.

Evaluation itself lives in :mod:`uwe.bench.evaluation` (serving never imports ``uwe.bench``):
``evaluate(ranker.scoring_model(), family, tasks=ranker.check_tasks("all"), ...)``.

Every bad input is a :class:`uwe.errors.CLIError` (an :class:`~uwe.errors.InputError`, so a
``ValueError``): one line, exit status 2 in ``uwe``.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from uwe.errors import CLIError, unknown

ENGINES = ("auto", "numpy", "onnx", "torch")
TASK_FAMILIES = ("full", "heldout", "zeroshot")  # uwe.data.tasks.FAMILIES (imports pandas)
TASK_SPLITS = ("val", "test")  # uwe.data.tasks.SPLITS
LIST_SUFFIXES = (".csv", ".tsv", ".parquet")  # targets files whose list the cache keeps
# the ONNX engine's SLI target layouts (uwe.infer.ort.LAYOUTS; not imported: it loads numpy)
LAYOUTS = ("float32", "int8_block")
DEFAULT_LAYOUT = "int8_block"

logger = logging.getLogger(__name__)


# -- the arguments -----------------------------------------------------------------------------
@dataclass(frozen=True)
class RankerOptions:
    """What to rank with and how (the ``uwe`` options of the same names).

    ``model``: a UWE folder, ``bm25``, ``tfidf_char`` or an embedder (``--model``; a relative
    folder is found from the working folder); ``root``: the curated data folder of the tasks
    (``--root``); ``device``: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``; ``engine``: one of
    :data:`ENGINES` for :meth:`Ranker.rank` (:func:`fast_engine`), while
    :meth:`Ranker.scoring_model` runs ONNX Runtime for ``onnx`` and torch otherwise;
    ``cache_dir``: the index cache (None: ``$UWE_CACHE_DIR/index`` or ``~/.cache/uwe/index``);
    ``use_cache=False`` neither reads nor writes it (``--no-cache``); ``threads``: torch's and
    ONNX Runtime's CPU threads (None: leave them as they are); ``target_layout``: the ONNX
    engine's SLI target layout (:data:`LAYOUTS`); ``progress``: an embedding baseline's progress
    bars while it encodes."""

    model: str
    root: str | Path = "data/curated"
    device: str = "auto"
    batch_size: int = 128
    engine: str = "auto"
    cache_dir: str | Path | None = None
    use_cache: bool = True
    threads: int | None = None
    target_layout: str = DEFAULT_LAYOUT
    progress: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.model, str | Path) or not str(self.model).strip():
            raise CLIError(f"model must be a model folder or name, got {self.model!r}")
        object.__setattr__(self, "model", str(self.model))
        if self.engine not in ENGINES:
            raise unknown("engine", self.engine, ENGINES)
        if self.target_layout not in LAYOUTS:
            raise unknown("target layout", self.target_layout, LAYOUTS)
        for name in ("batch_size", "threads"):
            value = getattr(self, name)
            if (value is not None or name == "batch_size") and (
                    isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise CLIError(f"{name} must be a whole number >= 1, got {value!r}")


@dataclass(frozen=True)
class TargetSource:
    """Where the targets come from: a curated ``task`` of ``family`` / ``split`` (under
    :attr:`RankerOptions.root`), or a targets ``file`` (:func:`read_targets_file`); exactly one
    of ``task`` and ``file``. ``family`` and ``split`` of a task are checked here."""

    task: str | None = None
    file: str | Path | None = None
    family: str = "heldout"
    split: str = "test"

    def __post_init__(self) -> None:
        if self.task is not None and self.file is not None:
            raise CLIError(f"a target source is a curated task or a targets file, not both: "
                           f"task {self.task!r}, file {str(self.file)!r}")
        if self.task is None and self.file is None:
            raise CLIError("a target source needs a curated task (task=..., --task) or a "
                           "targets file (file=..., --targets)")
        if self.task is not None:
            check_family_split(self.family, self.split)


class Targets(NamedTuple):
    """A resolved target list: ``texts`` (target ``j`` is ``texts[j]``) and the sha256 the index
    cache keys it by (:func:`uwe.infer.index_cache.targets_sha256`)."""

    texts: list[str]
    sha256: str


@dataclass(frozen=True, eq=False)  # numpy arrays inside: compared by identity
class Ranking:
    """:meth:`Ranker.rank`'s answer: ``results[i]`` is ``(ids (k,), scores (k,))`` of
    ``queries[i]``, best first (ids index ``targets``); ``warnings``: rankings that mean nothing
    (:func:`meaningless_rankings`)."""

    queries: list[str]
    targets: list[str]
    results: list[tuple[Any, Any]]
    warnings: list[str] = field(default_factory=list)

    def top(self, i: int) -> list[tuple[str, float]]:
        """``[(target, score), ...]`` of query ``i``, best first."""
        ids, scores = self.results[i]
        return [(self.targets[int(j)], float(s)) for j, s in zip(ids, scores, strict=True)]


@dataclass(frozen=True)
class IndexReport:
    """:meth:`Ranker.index`'s answer: the cached index file (None when not cached: a lexical
    model, ``use_cache=False`` or an unwritable cache), its ``status`` (``hit``, ``miss``,
    ``not-cached``, ``disabled``; :class:`uwe.infer.index_cache.CacheResult`) and the number of
    targets."""

    path: Path | None
    status: str
    n_targets: int


# -- targets files -----------------------------------------------------------------------------
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


#: the one rule per extension of a targets table (docs/using-uwe.md, "Ranking your own targets")
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


# -- checks ------------------------------------------------------------------------------------
def check_family_split(family: str, split: str) -> None:
    if family not in TASK_FAMILIES:
        raise unknown("--family", family, TASK_FAMILIES)
    if split not in TASK_SPLITS:
        raise unknown("--split", split, TASK_SPLITS)


def load_checked_task(name: str, family: str, split: str, root: str | Path):
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


# -- the ranker --------------------------------------------------------------------------------
class Ranker:
    """Rank, index and score with one model (see the module doc). The model, and the NumPy or
    ONNX engine, are loaded on first use and kept, so a notebook's second :meth:`rank` loads
    nothing (make a new Ranker after retraining a model folder in place); the target list and
    its index are looked up in the cache on every call (a changed targets file or task is read
    again)."""

    def __init__(self, options: RankerOptions):
        if not isinstance(options, RankerOptions):
            raise TypeError(f"Ranker takes a RankerOptions, got {type(options).__name__}")
        self.options = options
        self._loaded: tuple[Any, dict] | None = None
        self._engines: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"Ranker({self.options!r})"

    # -- targets -------------------------------------------------------------------------
    def targets(self, source: TargetSource) -> Targets:
        """``(targets, targets_sha256)`` of ``source``.

        A task's list (and a .csv/.tsv/.parquet file's) is kept in the cache's target-list
        sidecar keyed by the sha256 of the source files' bytes
        (:func:`uwe.infer.index_cache.task_source_key`): a hit skips pandas and the parquet
        reader, a changed file is a miss. ``use_cache=False`` neither reads nor writes it.
        """
        from uwe.infer.index_cache import (
            IndexCache,
            file_source_key,
            targets_sha256,
            task_source_key,
        )

        if not isinstance(source, TargetSource):
            raise TypeError(f"expected a TargetSource, got {type(source).__name__}")
        o = self.options
        key, origin = None, ""
        if o.use_cache:
            if source.task is not None:
                if source.task:  # family and split: checked by TargetSource
                    key = task_source_key(o.root, source.family, source.task, source.split)
                    origin = f"task {source.family}/{source.task}/{source.split} under {o.root}"
            elif (Path(source.file).suffix.lower() in LIST_SUFFIXES
                  and Path(source.file).is_file()):
                key, origin = file_source_key(source.file), f"file {source.file}"
        cache = IndexCache(o.cache_dir)
        if key is not None:
            hit = cache.target_list(key)
            if hit is not None:
                return Targets(*hit)
        if source.task is not None:
            targets = load_checked_task(source.task, source.family, source.split, o.root).targets
        else:
            targets = read_targets_file(source.file)
        if key is not None:
            try:
                cache.save_target_list(key, targets, origin)
            except OSError as err:  # a read-only cache must not fail the ranking
                logger.warning("could not write the target list cache: %s", err)
        return Targets(targets, targets_sha256(targets))

    def _resolve(self, source: TargetSource | Targets | Sequence[str]) -> Targets:
        """:meth:`targets` of a source; a :class:`Targets` as it is; a list of texts as given
        (target ``j`` is the ``j``-th text)."""
        if isinstance(source, TargetSource):
            return self.targets(source)
        if isinstance(source, Targets):
            return source
        if isinstance(source, str | Path) or not isinstance(source, Sequence):
            raise CLIError(f"targets: give a TargetSource or a list of target texts, not "
                           f"{type(source).__name__} {str(source)[:60]!r}")
        texts = list(source)
        bad = next((t for t in texts if not isinstance(t, str)), None)
        if bad is not None or not texts:
            raise CLIError("targets: a list of target texts needs at least one, every one a str"
                           + (f", got {type(bad).__name__} {bad!r}" if bad is not None else ""))
        from uwe.infer.index_cache import targets_sha256

        return Targets(texts, targets_sha256(texts))

    # -- the model -----------------------------------------------------------------------
    def model(self) -> Any:
        """The model :attr:`RankerOptions.model` names, loaded once for serving
        (:func:`uwe.infer.loader.load_model`; torch's threads set to ``threads`` first)."""
        return self._model_and_fingerprint()[0]

    def fingerprint(self) -> dict:
        """What identifies the model in the index cache
        (:func:`uwe.infer.index_cache.model_fingerprint`)."""
        if self._loaded is not None:
            return self._loaded[1]
        from uwe.infer.index_cache import model_fingerprint

        return model_fingerprint(self.options.model)

    def _model_and_fingerprint(self) -> tuple[Any, dict]:
        if self._loaded is None:
            from uwe.infer import loader
            from uwe.infer.index_cache import model_fingerprint

            o = self.options
            if o.threads:
                import torch

                torch.set_num_threads(o.threads)
            check_device(o.device)
            model = loader.load_model(o.model, device=o.device, batch_size=o.batch_size,
                                      progress=o.progress)
            encoder = getattr(model, "encoder", None)
            if hasattr(encoder, "progress") and not o.progress:  # an embedding baseline
                encoder.progress = False
            self._loaded = model, model_fingerprint(o.model)
        return self._loaded

    def _indexed(self, targets: list[str], rebuild: bool = False):
        """``(index, CacheResult)`` of the torch model through the index cache."""
        from uwe.infer.index_cache import IndexCache

        model, fingerprint = self._model_and_fingerprint()
        return IndexCache(self.options.cache_dir).get_or_build(
            model, fingerprint, targets, use_cache=self.options.use_cache, rebuild=rebuild)

    def scoring_model(self) -> Any:
        """What :func:`uwe.bench.evaluation.evaluate` scores: with ``engine="onnx"`` the
        ONNX-engine model (:func:`uwe.infer.ort.ort_model_for`; its indexes are not cached),
        else the torch model, its target indexes through the index cache
        (:class:`uwe.infer.index_cache.CachedIndexModel`) unless ``use_cache`` is False."""
        o = self.options
        if o.engine == "onnx":  # the query side in ONNX Runtime
            from uwe.infer.ort import ort_model_for

            check_device(o.device)
            return ort_model_for(o.model, threads=o.threads, target_layout=o.target_layout)
        model, fingerprint = self._model_and_fingerprint()
        if not o.use_cache:
            return model
        from uwe.infer.index_cache import CachedIndexModel, IndexCache

        return CachedIndexModel(model, fingerprint, IndexCache(o.cache_dir))

    def check_tasks(self, tasks: str, family: str = "heldout",
                    split: str = "test") -> list[str] | None:
        """The task names of ``tasks`` (a name, several separated by commas, or ``all``: None)
        for :func:`uwe.bench.evaluation.evaluate`, each checked on disk under ``root`` before
        any model is loaded."""
        check_family_split(family, split)
        if tasks == "all":
            return None
        names = [t.strip() for t in tasks.split(",") if t.strip()]
        if not names:
            raise CLIError(f"--task {tasks!r} names no task: give a task name, several "
                           f"separated by commas, or 'all'")
        for name in names:
            load_checked_task(name, family, split, self.options.root)
        return names

    # -- rank, index ---------------------------------------------------------------------
    def rank(self, queries: Sequence[str], source: TargetSource | Targets | Sequence[str],
             top_k: int = 10) -> Ranking:
        """The top ``top_k`` targets of ``source`` (a :class:`TargetSource`, the
        :class:`Targets` of :meth:`targets`, or a list of target texts) for each query, scored
        by :func:`fast_engine`'s engine against the cached index, else by the torch model."""
        targets, sha = self._resolve(source)
        if isinstance(queries, str):
            raise CLIError(f"queries: give a list of query texts, not one string {queries!r}")
        queries = list(queries)
        bad = next((q for q in queries if not isinstance(q, str)), None)
        if bad is not None:
            raise CLIError(f"queries: every query is a str, got {type(bad).__name__} {bad!r}")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise CLIError(f"top_k must be >= 1, got {top_k!r}")
        k = min(top_k, len(targets))
        fast = fast_engine(self.options)
        if fast is not None:
            ranked = self._rank_fast(*fast, queries, targets, sha, k)
        else:
            model = self.model()
            index, cached = self._indexed(targets)
            logger.info("target index: %s %s", cached.status, cached.path or "")
            ranked = select_top_k(model, queries, index, k)
        return Ranking(queries, targets, ranked,
                       meaningless_rankings(self.options.model, queries, ranked))

    def index(self, source: TargetSource | Targets | Sequence[str],
              rebuild: bool = False) -> IndexReport:
        """Build the target index of ``source`` and store it in the cache (``rebuild``: even if
        it is there). A UWE folder's cached index is reported without loading the model."""
        from uwe.infer.index_cache import IndexCache

        targets, sha = self._resolve(source)
        o = self.options
        if not rebuild and o.use_cache and uwe_folder_of(o.model) is not None:
            cache, fingerprint = IndexCache(o.cache_dir), self.fingerprint()
            if cache.read_entry(fingerprint, sha, len(targets), "uwe") is not None:
                return IndexReport(cache.paths(fingerprint, sha)[0], "hit", len(targets))
        _, cached = self._indexed(targets, rebuild=rebuild)
        return IndexReport(cached.path, cached.status, len(targets))

    def _engine(self, engine_name: str, folder: Path) -> tuple[Any, dict]:
        """The NumPy or ONNX engine of ``folder`` and the fingerprint of the weights it read,
        made once."""
        if engine_name not in self._engines:
            from uwe.infer.index_cache import model_fingerprint

            fingerprint = model_fingerprint(self.options.model)
            if engine_name == "onnx":
                from uwe.infer.ort import OrtModel

                engine = OrtModel.from_uwe_folder(folder, threads=self.options.threads,
                                                  target_layout=self.options.target_layout)
            else:
                from uwe.infer.numpy_engine import NumpyUWE

                engine = NumpyUWE(folder)
            self._engines[engine_name] = engine, fingerprint
        return self._engines[engine_name]

    def _rank_fast(self, engine_name: str, folder: Path, queries: list[str],
                   targets: list[str], sha: str, k: int) -> list:
        """:func:`select_top_k` of the NumPy or ONNX engine against the cached index. On a miss
        the index is built (ONNX engine: by it; NumPy: by torch) and saved; with
        ``use_cache=False`` built and not saved."""
        from uwe.infer.index_arrays import index_arrays, numpy_index_arrays
        from uwe.infer.index_cache import IndexCache, uwe_kind
        from uwe.infer.numpy_engine import NumpyIndex
        from uwe.infer.ort import pooled_targets

        o = self.options
        engine, fingerprint = self._engine(engine_name, folder)
        cache = IndexCache(o.cache_dir)
        kind = uwe_kind(getattr(engine, "scorer_name", "sli"))  # pooled: the unit mean vectors
        arrays = None
        if o.use_cache:
            arrays = cache.read_entry(fingerprint, sha, len(targets), kind)
            if arrays is not None:
                logger.info("target index: hit %s", cache.paths(fingerprint, sha)[0])
        if arrays is None and engine_name == "onnx":
            index = engine.token_index(targets)
            if o.use_cache:
                entry = ({"pooled": pooled_targets(index)} if kind == "pooled"
                         else numpy_index_arrays(index))
                try:
                    path = cache.write_entry(fingerprint, sha, len(targets), kind, entry)
                    logger.info("target index: miss, built and saved %s", path)
                except OSError as err:  # a read-only cache must not fail the ranking
                    logger.warning("could not write index cache: %s", err)
            return select_top_k(engine, queries, engine.prepare(index), k)
        if arrays is None:
            index, cached = self._indexed(targets)
            logger.info("target index: %s %s", cached.status, cached.path or "")
            arrays = index_arrays(kind, index)
        if kind == "pooled":
            index = NumpyIndex.from_pooled(arrays["pooled"])
        else:
            index = NumpyIndex.from_arrays(arrays, len(targets))
        return select_top_k(engine, queries,
                            engine.prepare(index) if engine_name == "onnx" else index, k)


def uwe_folder_of(spec: str) -> Path | None:
    """The UWE folder ``spec`` names (:func:`uwe.model.registry.resolve`), None for any other
    kind of model (which the NumPy and ONNX engines of a UWE folder do not run)."""
    from uwe.model.registry import resolve

    ref = resolve(spec)
    return ref.path if ref.kind == "uwe" and not ref.st_folder else None


def fast_engine(options: RankerOptions) -> tuple[str, Path] | None:
    """``(engine, UWE folder)`` to rank with without torch, or None for the torch path.

    ``numpy``: :class:`uwe.infer.numpy_engine.NumpyUWE` (a BERT-family backbone with the SLI
    scorer; nothing but NumPy and ``tokenizers``); ``onnx``: :class:`uwe.infer.ort.OrtModel` (the
    encoder in ONNX Runtime; the SLI, mean and SLI-with-mean-target scorers, any backbone).
    ``engine="auto"``: numpy where it runs, else onnx where it runs, else torch, with the device
    auto or cpu (ranking a few queries against a cached index is faster on the CPU than
    starting CUDA). ``numpy`` / ``onnx`` require theirs; ``torch`` never takes either.
    """
    engine, spec, device = options.engine, options.model, options.device
    if engine == "torch":
        return None
    folder = uwe_folder_of(spec)
    if folder is None:
        if engine != "auto":
            raise CLIError(f"--engine {engine} needs a UWE model folder, not {spec!r}")
        return None
    if device not in ("auto", "cpu"):
        if engine != "auto":
            raise CLIError(f"--engine {engine} runs on the CPU, not --device {device}")
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


def select_top_k(model: Any, queries: list[str], index: Any, k: int, chunk: int = 256):
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
    from uwe.model.pretrained import KNOWN_MODELS, resolve_model
    from uwe.model.registry import resolve
    from uwe.model.st_folder import read_st_folder

    try:
        ref = resolve(spec)
        if ref.kind == "uwe" and not ref.st_folder:
            folder = ref.path
        elif ref.st_folder or ref.kind == "embedding" and spec in KNOWN_MODELS:
            folder = read_st_folder(ref.path or Path(resolve_model(spec))).transformer
        else:  # lexical, untuned, an embedder this machine does not hold
            folder = None
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
