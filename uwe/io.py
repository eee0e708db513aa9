"""The package's one home for writing files safely: atomic file writes (:func:`atomic_path`,
:func:`write_text_atomic`, :func:`write_json`), temporary folders that become outputs
(:func:`make_temp_dir`) and folder swaps (:func:`replace_dir`), plus file digests and the cache
root. One failure behaviour everywhere: a write that fails or is interrupted leaves the earlier
file or folder in place, and its temp file or folder is removed (or, after a SIGKILL, swept by
the next write of the same file).

Files and folders made through :mod:`tempfile` are private (0600 / 0700) whatever the umask;
an output renamed into place from one gets the permissions an ordinary ``open`` / ``mkdir``
would have given it (``0666`` / ``0777`` minus the umask), so that a metrics file or a model
folder is as readable as any other file the user writes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
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


def replace_dir(src: str | Path, dest: str | Path) -> Path:
    """Move folder ``src`` onto ``dest`` (same file system: :func:`make_temp_dir` makes one
    beside it), replacing an existing ``dest``: the old folder is renamed aside, ``src`` renamed
    into place, then the old one removed. If that second rename fails the old folder is put
    back, so ``dest`` is never lost; ``src`` is the caller's to remove."""
    src, dest = Path(src), Path(dest)
    aside = None
    if dest.exists():
        aside = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
        os.replace(dest, aside / dest.name)
    try:
        os.replace(src, dest)
    except BaseException:
        if aside is not None:
            os.replace(aside / dest.name, dest)
            aside.rmdir()
        raise
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
    return dest


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # another user's process, or a platform without signal 0: keep its file
    return True


def sweep_stale_temps(path: str | Path) -> list[Path]:
    """Remove the temp files of writes of ``path`` whose writer was killed (named
    ``.{name}.{pid}.XXXX.tmp`` by :func:`atomic_path`; the pid no longer runs) -> those removed.
    A SIGKILL leaves a full-size temp file that no ``finally`` can delete."""
    path = Path(path)
    prefix = f".{path.name}."
    removed = []
    for tmp in path.parent.glob(f"{glob_escape(prefix)}*.tmp"):
        pid = tmp.name[len(prefix):].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temp file beside ``path`` (``.{name}.{pid}.XXXX.tmp``) to write, renamed onto ``path``
    with the permissions of a plain ``open`` when the block ends, removed when it raises; the
    temp files killed writers left are swept first (:func:`sweep_stale_temps`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp",
                               dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        set_default_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` via a temp file + rename (:func:`atomic_path`), creating parent
    folders; the file gets the permissions of a plain ``open(path, "w")``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
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


def cache_root() -> Path:
    """Root of the project's caches (models, target indexes, ONNX graphs, frozen bottoms):
    ``$UWE_CACHE_DIR`` when set and not empty, else ``$XDG_CACHE_HOME/uwe`` when that is an
    absolute path, else ``$HOME/.cache/uwe``. An empty or relative ``$HOME`` (a cache at the
    file-system root or in whatever folder the command runs from) is an InputError asking for
    ``UWE_CACHE_DIR``."""
    from uwe.errors import InputError

    env = os.environ.get("UWE_CACHE_DIR", "").strip()
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "uwe"
    home = os.environ.get("HOME", "").strip()
    if not home or not Path(home).is_absolute() or Path(home) == Path(Path(home).anchor):
        raise InputError(f"no folder for the cache: $HOME is {home!r} (empty, relative or the "
                         f"file-system root) and $UWE_CACHE_DIR is not set; set UWE_CACHE_DIR "
                         f"to a folder of yours")
    return Path(home) / ".cache" / "uwe"
