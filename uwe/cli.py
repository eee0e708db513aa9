"""The ``uwe`` command line: rank, index, evaluate, info.

    uwe rank --model models/uwe --task job2skill "data scientist"
    printf 'nurse\\nwelder\\n' | uwe rank --model bm25 --targets skills.txt --format csv
    uwe index --model models/uwe --targets skills.csv
    uwe evaluate --model models/uwe --task all --family heldout --out metrics/cli.json
    uwe info models/uwe

The commands parse their arguments, call the ranker's library API and print:
``rank`` / ``index`` build a :class:`uwe.infer.ranker.RankerOptions` and a
:class:`~uwe.infer.ranker.TargetSource` from the options (:func:`ranker_options`,
:func:`target_source`) and call :class:`~uwe.infer.ranker.Ranker`; ``evaluate`` runs
:func:`uwe.bench.evaluation.evaluate` on ``Ranker.scoring_model()``. Notebooks and the WorkRB
adapter call the same API (see :mod:`uwe.infer.ranker`).

Target indexes are cached on disk (:mod:`uwe.infer.index_cache`), so a second ``rank`` against the
same model and target list skips encoding the targets. Expected failures (a bad option value,
an unknown task, family, split or model name, a missing, damaged or unreadable model, task or
targets file, an empty target list) print one line ``uwe: error: ...`` on stderr, naming the
file, row or value and what to do, and exit with status 2; unknown names get a did-you-mean.
``--verbose`` shows the traceback and INFO logs instead.

The warm ``rank`` path is kept lean: heavy modules are imported only where they are used, the
target list of a task (or a .csv/.tsv/.parquet targets file) comes from the cache's target-list
sidecar (no pandas, no parquet), and for a UWE folder with a BERT-family backbone and the SLI
scorer (``--engine auto`` on the CPU) queries are encoded and scored with NumPy
(:mod:`uwe.infer.numpy_engine`) against the memory-mapped cached index, so neither torch nor
transformers
is imported unless the index has to be built; a UWE folder with another backbone or the mean
scorer runs its encoder in ONNX Runtime (:mod:`uwe.infer.ort`, exported once per model version).
``--engine torch`` runs the torch model instead (same scores up to float32 rounding).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys

from uwe.errors import CLIError
from uwe.infer.ranker import (
    DEFAULT_LAYOUT,
    ENGINES,
    LAYOUTS,
    Ranker,
    RankerOptions,
    TargetSource,
)
from uwe.model.model_card import describe_model
from uwe.runtime import configure_logging, configure_threads

EXIT_USAGE = 2
TABLE_FORMATS = ("table", "json", "csv")

logger = logging.getLogger("uwe.cli")


# -- inputs ----------------------------------------------------------------------------------


def _check_utf8(query: str, where: str) -> str:
    """``query`` if it is text; bytes that were not UTF-8 reach Python as lone surrogates
    (a tokenizer then fails with a traceback): a CLIError naming the byte."""
    try:
        query.encode("utf-8")
    except UnicodeEncodeError as err:
        char = ord(query[err.start])
        byte = f"byte 0x{char - 0xDC00:02x}" if 0xDC80 <= char <= 0xDCFF else f"U+{char:04X}"
        raise CLIError(f"{where} is not UTF-8 text ({byte} at character {err.start}): "
                       f"queries are UTF-8") from None
    return query


def read_queries(args: argparse.Namespace) -> list[str]:
    """Queries from the command line, else one per line from stdin (UTF-8, a BOM dropped); a
    query that is not UTF-8 text is one line naming it."""
    if args.queries:
        queries = [_check_utf8(q, f"query {i + 1}").strip() for i, q in enumerate(args.queries)]
    elif sys.stdin is None or sys.stdin.isatty():
        raise CLIError("no queries: pass them as arguments or pipe them on stdin, one per line")
    else:
        stream = getattr(sys.stdin, "buffer", None)
        if stream is not None:
            data = stream.read()
            try:
                text = data.decode("utf-8-sig")
            except UnicodeDecodeError as err:
                raise CLIError(f"stdin is not UTF-8 text (byte 0x{data[err.start]:02x} at "
                               f"offset {err.start}): pipe queries as UTF-8, one per line"
                               ) from None
        else:  # an in-memory stream (tests, embedding callers)
            text = sys.stdin.read()
        queries = [_check_utf8(line, f"stdin line {i + 1}").strip()
                   for i, line in enumerate(text.splitlines())]
    queries = [q for q in queries if q]
    if not queries:
        raise CLIError("no queries given (all empty)")
    return queries


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
def ranker_options(args: argparse.Namespace) -> RankerOptions:
    """The :class:`~uwe.infer.ranker.RankerOptions` of a ``rank`` / ``index`` / ``evaluate``
    command line (the options a command lacks keep their defaults)."""
    return RankerOptions(
        model=args.model,
        root=args.root,
        device=args.device,
        batch_size=args.batch_size,
        engine=getattr(args, "engine", "auto"),
        cache_dir=args.cache_dir,
        use_cache=not getattr(args, "no_cache", False),
        threads=args.threads,
        target_layout=getattr(args, "target_layout", DEFAULT_LAYOUT),
    )


def target_source(args: argparse.Namespace) -> TargetSource:
    """``--task`` (with ``--family`` / ``--split``) or ``--targets`` as a
    :class:`~uwe.infer.ranker.TargetSource`."""
    return TargetSource(task=args.task, file=args.targets, family=args.family, split=args.split)


def cmd_rank(args: argparse.Namespace) -> int:
    ranker = Ranker(ranker_options(args))
    targets = ranker.targets(target_source(args))
    queries = read_queries(args)
    ranking = ranker.rank(queries, targets, top_k=args.top_k)
    for warning in ranking.warnings:
        logger.warning(warning)
    print_rankings(ranking.queries, ranking.results, ranking.targets, args.format)
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    report = Ranker(ranker_options(args)).index(target_source(args), rebuild=args.rebuild)
    if report.path is None:
        print(
            f"{args.model}: lexical index, not cached (rebuilt in well under a second per "
            f"call); {report.n_targets} targets"
        )
    else:
        print(f"{report.path} ({report.n_targets} targets, {report.status})")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from uwe.bench.evaluation import evaluate, write_results

    ranker = Ranker(ranker_options(args))
    names = ranker.check_tasks(args.task, args.family, args.split)  # before loading the model
    res = evaluate(
        ranker.scoring_model(),
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


def nonempty_path(text: str) -> str:
    """argparse type: a path that is not empty (an empty one would mean the working folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("empty path; leave the option out for the default")
    return text


def _global_args(p: argparse.ArgumentParser, top: bool = False) -> None:
    """``--verbose`` and ``--threads``, accepted before or after the command (after it, a
    value overrides the one before)."""
    default = (lambda v: v) if top else (lambda v: argparse.SUPPRESS)
    p.add_argument("--verbose", "-v", action="store_true", default=default(False),
                   help="INFO logs and full tracebacks on errors")
    p.add_argument(
        "--threads",
        type=positive_int,
        default=default(None),
        help="CPU threads of torch and NumPy's BLAS (default: $UWE_THREADS, else the cores "
        "the load average leaves free; `rank` then uses 1 BLAS thread)",
    )


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
        type=nonempty_path,
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


def _layout_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--target-layout",
        choices=LAYOUTS,
        default=DEFAULT_LAYOUT,
        help="--engine onnx, SLI scorer: how the cached target tokens are stored for the one "
        "matrix product a query makes with them: int8_block (int8 per block of 128 values, "
        "ONNX Runtime's MatMulNBits) or float32 (exact; scripts/bench_layouts.py measures "
        f"both). Default: {DEFAULT_LAYOUT}",
    )


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
    _global_args(parser, top=True)
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
    _layout_arg(p)
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
        "uwe.bench.evaluation (the pipeline's numbers).",
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
        help="torch (the pipeline's numbers) or onnx: the encoder in ONNX Runtime (uwe.infer.ort; "
        "UWE folders and mean-pooling embedders, on the CPU)",
    )
    _layout_arg(p)
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
    for command in sub.choices.values():  # `uwe rank --threads 2 ...` works too
        _global_args(command)
    return parser


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
