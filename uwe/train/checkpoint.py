"""What a training run writes and checks besides the weights: the per-step CSV log, the
checkpoint's code-and-data fingerprint, RNG states, and stopping at a step boundary on a signal.

Checkpoints (``{checkpoint_dir}/last``, rewritten atomically at every validation and when a
SIGTERM/SIGINT stops the run at a step boundary): ``model.safetensors``, ``trainer_state.pt``
(optimizer, scheduler, RNG and sampler generator states per rank; read with
``weights_only=True``), ``checkpoint.json`` and ``log.csv`` (the per-step log up to the
checkpoint). ``resume=True`` continues from it and ends with the weights, and the log, an
uninterrupted run would have; the log file itself may be gone (``dvc repro`` deletes a stage's
outputs before running it). A checkpoint belongs to one run: the same training config (but the
``RESUME_FREE`` fields), seed and world size, and the same :func:`run_fingerprint` (source of the
``uwe`` package, torch version, bytes of the graph files), so that a change of code or data
trains again instead of continuing, or re-publishing, an old run. ``max_minutes`` is a safety
cap only: a run it stops ends early at a wall-clock-dependent step and is not reproducible step
for step.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import logging
import signal
from pathlib import Path
from typing import Any

import torch

from uwe.io import file_sha256
from uwe.runtime import PACKAGE, import_closure

logger = logging.getLogger(__name__)


class CsvLog:
    """Per-step rows, kept in memory and appended to a CSV as they come (``path=None``: memory
    only). A checkpoint stores the rows up to its step (:meth:`save`), and a resumed run starts
    from those (:meth:`read`), so the continued file has every step once, even when the file
    was deleted in between."""

    def __init__(self, columns: list[str]):
        self.columns, self.path, self.rows = columns, None, []

    def _text(self) -> str:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, self.columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        return buf.getvalue()

    def open(self, path: str | Path | None) -> None:
        """Write the rows so far to ``path`` (atomically) and append later rows to it."""
        from uwe.io import write_text_atomic

        self.path = Path(path) if path else None
        if self.path is not None:
            write_text_atomic(self.path, self._text())

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self._text(), encoding="utf-8")

    @staticmethod
    def read(path: str | Path) -> list[dict]:
        with Path(path).open(newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))

    def append(self, row: dict) -> None:
        row = {c: row.get(c, "") for c in self.columns}
        self.rows.append(row)
        if self.path is not None:
            with self.path.open("a", newline="", encoding="utf-8") as fh:
                csv.DictWriter(fh, self.columns, lineterminator="\n").writerow(row)


def run_fingerprint(graphs, data_root: str | Path) -> dict[str, str]:
    """What a checkpoint's weights depend on besides the config and seed: sha256 of the source
    of the ``uwe`` modules training runs (this module and every module it imports, directly or
    through others: :func:`uwe.runtime.import_closure`; by name and bytes), the torch version
    and sha256 of each training graph file (``{data_root}/graphs/{name}.parquet``; a missing
    file is skipped, the batcher names it). A change to any other module (plotting,
    evaluation, the CLI) keeps the checkpoint."""
    code = hashlib.sha256()
    for path in training_sources():
        code.update(path.relative_to(PACKAGE).as_posix().encode() + b"\0" + path.read_bytes())
    out = {"code": code.hexdigest(), "torch": torch.__version__}
    for name in sorted(graphs):
        path = Path(data_root) / "graphs" / f"{name}.parquet"
        if path.is_file():
            out[f"graph {name}"] = file_sha256(path)
    return out


def training_sources() -> list[Path]:
    """The ``uwe`` source files a training run executes (this module's import closure)."""
    this = PACKAGE / "train" / "loop.py"
    return [this, *(p for p in import_closure("import uwe.train.loop") if p != this)]


def rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


@contextlib.contextmanager
def stop_on_signals():
    """SIGTERM / SIGINT set ``flag['signal']`` (the loop stops at the next step boundary with a
    checkpoint); a second signal raises KeyboardInterrupt at once. No-op off the main thread."""
    flag: dict[str, Any] = {"signal": None}

    def handler(signum, frame):
        if flag["signal"] is not None:
            raise KeyboardInterrupt
        flag["signal"] = signal.Signals(signum).name
        logger.warning("%s received: stopping after this step", flag["signal"])

    old = {}
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            old[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread
        pass
    try:
        yield flag
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)
