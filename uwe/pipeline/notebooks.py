"""Executed notebooks fit to commit as results: what a run leaves in them that says where,
when and how fast it ran, not what it found, is removed
(``python -m uwe.pipeline.notebooks clean PATH...``, the last step of every stage's command), so
that running an unchanged stage again writes the same bytes.

:func:`clean_notebook` rewrites a papermill-executed notebook in place (atomically):

* **stderr** -- progress bars and library warnings (what a terminal shows while a stage runs)
  are dropped; consecutive stdout outputs of one cell are merged, each line keeping what a
  terminal would show after its last carriage return;
* **log records** -- the package logs to stdout with a timestamp; ``INFO`` records (progress:
  "wrote ...", a task's MAP and seconds, which the displayed tables and the metrics files hold)
  are dropped, ``WARNING`` and worse stay without their timestamp;
* **absolute paths** -- the repository root becomes ``.``, the folder that holds it ``..`` (the
  data mirror beside it: ``../shared/data``) and the home folder ``~`` in every text output;
* **timestamps** -- papermill's start / end times and durations (per cell and for the notebook),
  its environment, Jupyter's execution timing metadata and widget state are dropped;
* **the injected cell's id** -- papermill gives its ``injected-parameters`` cell a random id per
  run; it becomes ``injected-parameters``.

What a notebook displays stays: the stage notebooks display results, not timings (the
``latency`` stage's results are timings, so its notebook is the exception that changes per run).
``strip_outputs`` (``clean --strip-outputs``) drops every output and execution count instead
(the budget runs, whose hours of training are committed as metrics files only).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from uwe.io import write_text_atomic

_VOLATILE_PAPERMILL = ("start_time", "end_time", "duration", "exception", "environment_variables")
# a record of uwe.runtime.setup's logging format: "2026-12-06 07:18:27,601 INFO name: message"
_LOG_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} "
                         r"(DEBUG|INFO|WARNING|ERROR|CRITICAL) ")


def _terminal_text(text: str) -> str:
    """What a terminal shows for ``text``: each line after its last carriage return."""
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))


def _scrub_paths(text: str, root: str, home: str) -> str:
    root = root.rstrip("/")
    text = re.sub(re.escape(root) + r"(?=/|\b)", ".", text)
    parent = root.rsplit("/", 1)[0]
    if len(parent) > 1:  # a folder beside the repository (the data mirror ../shared/data)
        text = re.sub(re.escape(parent) + r"(?=/)", "..", text)
    return re.sub(re.escape(home.rstrip("/")) + r"(?=/)", "~", text) if home else text


def _log_lines(text: str) -> str:
    """``text`` without INFO / DEBUG log records, other records without their timestamp."""
    keep = []
    for line in text.split("\n"):
        m = _LOG_RECORD.match(line)
        if m is None:
            keep.append(line)
        elif m[1] not in ("DEBUG", "INFO"):
            keep.append(line[m.start(1):])
    return "\n".join(keep)


def _clean_outputs(outputs: list[dict], root: str, home: str) -> list[dict]:
    merged: list[dict] = []
    for out in outputs:
        if out.get("output_type") == "stream" and out.get("name") == "stderr":
            continue
        if (out.get("output_type") == "stream" and merged
                and merged[-1].get("output_type") == "stream"
                and merged[-1].get("name") == out.get("name")):
            merged[-1]["text"] += "".join(out.get("text", ""))
            continue
        out = dict(out)
        if out.get("output_type") == "stream":
            out["text"] = "".join(out.get("text", ""))
        merged.append(out)
    for out in merged:
        if out.get("output_type") == "stream":
            text = _scrub_paths(_log_lines(_terminal_text(out["text"])), root, home)
            out["text"] = text.splitlines(keepends=True)
        for key in ("text/plain", "text/html", "text/markdown"):
            data = out.get("data", {}).get(key)
            if data is not None:
                text = _scrub_paths("".join(data), root, home)
                out["data"][key] = text.splitlines(keepends=True)
    return [out for out in merged if out.get("output_type") != "stream" or out["text"]]


def clean_notebook(path: str | Path, root: str | Path, home: str | Path | None = None,
                   strip_outputs: bool = False) -> bool:
    """Clean the executed notebook ``path`` in place (module doc); ``root`` is the repository
    root its runs saw, ``home`` the home folder (default: the current user's). True when the
    file changed. A file that is not a notebook raises ValueError naming it."""
    path = Path(path)
    raw = path.read_text(encoding="utf-8")
    try:
        nb = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not a notebook (invalid JSON: {err})") from err
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise ValueError(f"{path}: not a notebook (no cells)")
    root_s = str(Path(root).resolve())
    home_s = str(Path(home) if home is not None else Path.home())
    for cell in nb["cells"]:
        meta = cell.get("metadata", {})
        if "injected-parameters" in meta.get("tags", []) and "id" in cell:
            cell["id"] = "injected-parameters"
        for key in _VOLATILE_PAPERMILL:
            meta.get("papermill", {}).pop(key, None)
        meta.pop("execution", None)
        if "outputs" in cell and strip_outputs:
            cell["outputs"], cell["execution_count"] = [], None
        elif "outputs" in cell:
            cell["outputs"] = _clean_outputs(cell["outputs"], root_s, home_s)
    for key in _VOLATILE_PAPERMILL:
        nb.get("metadata", {}).get("papermill", {}).pop(key, None)
    nb.get("metadata", {}).pop("widgets", None)
    text = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
    if text == raw:
        return False
    write_text_atomic(path, text)
    return True


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    strip = "--strip-outputs" in args
    args = [a for a in args if a != "--strip-outputs"]
    if len(args) < 2 or args[0] != "clean":
        print("usage: python -m uwe.pipeline.notebooks clean [--strip-outputs] NOTEBOOK...",
              file=sys.stderr)
        return 2
    root = Path.cwd()
    for name in args[1:]:
        try:
            changed = clean_notebook(name, root, strip_outputs=strip)
        except (OSError, ValueError) as err:
            print(f"uwe.pipeline.notebooks: {err}", file=sys.stderr)
            return 1
        print(f"{name}: {'cleaned' if changed else 'already clean'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
