"""Small file helpers shared by the pipeline: atomic writers for the artifacts it keeps in git
(JSON, text), temporary folders that become outputs, and file digests.

Files and folders made through :mod:`tempfile` are private (0600 / 0700) whatever the umask;
an output renamed into place from one gets the permissions an ordinary ``open`` / ``mkdir``
would have given it (``0666`` / ``0777`` minus the umask), so that a metrics file or a model
folder is as readable as any other file the user writes.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def set_default_mode(path: str | Path) -> None:
    """Give ``path`` the permissions a plain ``mkdir`` (folder) or ``open`` (file) would have:
    ``0777`` / ``0666`` minus the process umask."""
    mask = os.umask(0o022)
    os.umask(mask)
    os.chmod(path, (0o777 if Path(path).is_dir() else 0o666) & ~mask)


def make_temp_dir(dest: str | Path, tag: str = "tmp") -> Path:
    """A fresh folder beside ``dest`` (same file system, so it can be renamed onto ``dest``),
    named ``.{dest.name}.{tag}-XXXX``, with the permissions of a plain ``mkdir``."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.{tag}-", dir=dest.parent))
    set_default_mode(tmp)
    return tmp


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` via a temp file + rename, creating parent folders; the file
    gets the permissions of a plain ``open(path, "w")``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        set_default_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | Path, obj: Any) -> Path:
    """Atomic, stable JSON (sorted keys, 2-space indent, trailing newline)."""
    return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"not found: {path}")
    return json.loads(path.read_text(encoding="utf-8"))


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes (streamed, never read whole)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
