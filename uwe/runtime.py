"""Run-time set-up shared by the notebooks and the CLI (never called on import)."""

from __future__ import annotations

import argparse
import logging
import os
import random
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from uwe.errors import CLIError

if TYPE_CHECKING:  # imported when setup() runs: the CLI imports this module on its fast path
    from uwe.config import Params


def setup(
    root: str | Path = "..",
    params_file: str | Path = "params.yaml",
    profile: str | None = None,
    threads: int | None = None,
) -> tuple[Path, Params]:
    """Resolve the repository root, load the params, configure logging and CPU threads.

    CPU threads: ``threads``, else ``$UWE_THREADS``, else every core (set ``UWE_THREADS=1`` when
    several jobs share a small machine: oversubscribed torch threads run several times slower).

    ``root`` is the repository root relative to the working directory (a notebook runs in
    ``notebooks/``, so ``..``); ``params_file`` is relative to ``root`` unless absolute.
    """
    root = Path(root).resolve()
    params_path = Path(params_file)
    params_path = params_path if params_path.is_absolute() else root / params_path
    from uwe.config import load_params

    params = load_params(params_path, profile=profile)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stdout,
        force=True,
    )
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import torch

        env_threads = int(os.environ.get("UWE_THREADS", 0))
        torch.set_num_threads(threads or env_threads or os.cpu_count() or 1)
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass
    return root, params


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) for a run."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


PACKAGE = Path(__file__).resolve().parent


def uwe_imports(source: str) -> set[str]:
    """``uwe`` module names imported anywhere in Python ``source`` (function-level imports
    included; ``from uwe import x`` yields ``uwe.x``; relative imports count as ``uwe``)."""
    import ast

    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "uwe"}
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                module = "uwe" + ("." + module if module else "")
            if module.split(".")[0] == "uwe":
                found.add(module)
                found |= {f"{module}.{a.name}" for a in node.names}
    return found


def import_closure(source: str) -> list[Path]:
    """Files of the ``uwe`` modules ``source`` imports, directly or through other modules,
    sorted, the packages' ``__init__.py`` left out (docstrings; ``uwe/__init__.py`` also
    ``__version__`` and the public API, imported lazily: ``tests/test_pipeline_contract.py``
    checks that none imports a module). What a stage's DVC deps and a training checkpoint's
    code fingerprint cover."""
    root = PACKAGE.parent
    seen: set[Path] = set()
    todo = list(uwe_imports(source))
    while todo:
        mod = todo.pop().replace(".", "/")
        path = next((p for p in (root / f"{mod}.py", root / mod / "__init__.py") if p.is_file()),
                    None)  # None: a name imported from a module, not a module
        if path is not None and path not in seen:
            seen.add(path)
            todo += uwe_imports(path.read_text(encoding="utf-8"))
    return sorted(p for p in seen if p.name != "__init__.py")


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
