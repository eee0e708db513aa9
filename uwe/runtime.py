"""Run-time set-up shared by the notebooks and the CLI (never called on import)."""

from __future__ import annotations

import logging
import os
import random
import sys
from pathlib import Path

from uwe.config import Params, load_params


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
    sorted (``uwe/__init__.py`` left out: a docstring, ``__version__`` and the public API,
    imported lazily). What a stage's DVC deps and a training checkpoint's code fingerprint
    cover."""
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
    return sorted(seen - {PACKAGE / "__init__.py"})
