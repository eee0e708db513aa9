"""uwe.io: atomic writers keep the permissions of a plain write; temp folders; file digests."""

from __future__ import annotations

import hashlib
import os
import stat

import pytest

from uwe.io import file_sha256, make_temp_dir, read_json, write_json, write_text_atomic


@pytest.fixture(params=[0o022, 0o077, 0o002])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_writes_get_the_mode_of_a_plain_write(tmp_path, umask):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    written = write_text_atomic(tmp_path / "sub" / "a.txt", "hello\n")
    assert written.read_text() == "hello\n"
    assert mode(written) == mode(plain) == 0o666 & ~umask  # tempfile alone gives 0600
    j = write_json(tmp_path / "b.json", {"b": 1, "a": [1, 2]})
    assert mode(j) == 0o666 & ~umask
    assert j.read_text() == '{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1\n}\n'
    assert read_json(j) == {"a": [1, 2], "b": 1}
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.txt", "b.json", "plain.txt", "sub"]


def test_atomic_write_failure_keeps_the_old_file(tmp_path):
    path = write_text_atomic(tmp_path / "a.txt", "old")
    with pytest.raises(TypeError):
        write_text_atomic(path, 123)  # type: ignore[arg-type]
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]  # no temp leftover


def test_make_temp_dir_beside_dest_with_mkdir_mode(tmp_path, umask):
    dest = tmp_path / "models" / "uwe"
    tmp = make_temp_dir(dest, "staging")
    assert tmp.parent == dest.parent and tmp.name.startswith(".uwe.staging-")
    plain = tmp_path / "plain"
    plain.mkdir()
    assert mode(tmp) == mode(plain) == 0o777 & ~umask  # tempfile alone gives 0700
    assert make_temp_dir(dest) != tmp


def test_file_sha256(tmp_path):
    data = os.urandom(3 << 20) + b"tail"  # several read blocks
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
    with pytest.raises(FileNotFoundError):
        file_sha256(tmp_path / "missing.bin")
    assert not (tmp_path / "missing.bin").exists()


def test_read_json_names_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        read_json(tmp_path / "nope.json")


def test_a_killed_writers_temp_file_is_swept_by_the_next_write(tmp_path):
    """A SIGKILL leaves the temp file of an atomic write behind (no ``finally`` runs): the next
    write of the same file removes it, and leaves a live writer's alone."""
    import os
    import subprocess
    import sys

    from uwe.io import atomic_path, sweep_stale_temps

    path = tmp_path / "entry.safetensors"
    code = ("import os, sys, signal\n"
            "from uwe.io import atomic_path\n"
            "with atomic_path(sys.argv[1]) as tmp:\n"
            "    tmp.write_bytes(b'x' * 1_000_000)\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], check=False)
    assert proc.returncode == -9
    left = list(tmp_path.glob(".entry.safetensors.*.tmp"))
    assert len(left) == 1 and left[0].stat().st_size == 1_000_000 and not path.exists()
    live = tmp_path / f".entry.safetensors.{os.getppid()}.abcd.tmp"  # a running writer's
    live.write_bytes(b"y")
    with atomic_path(path) as tmp:
        tmp.write_bytes(b"new")
    assert path.read_bytes() == b"new"
    assert sorted(tmp_path.glob(".entry.safetensors.*")) == [live]
    assert sweep_stale_temps(path) == []


def test_replace_dir_swaps_and_never_loses_the_old_folder(tmp_path, monkeypatch):
    import os

    from uwe import io

    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "old.txt").write_text("old")
    new = io.make_temp_dir(dest)
    (new / "new.txt").write_text("new")
    assert io.replace_dir(new, dest) == dest
    assert sorted(p.name for p in dest.iterdir()) == ["new.txt"] and not new.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # nothing left beside it

    # the rename into place fails: the old folder is back where it was, nothing else is left
    failing = io.make_temp_dir(dest)
    real = os.replace

    def replace(src, dst):
        if os.fspath(src) == os.fspath(failing):
            raise OSError("disk full")
        return real(src, dst)

    monkeypatch.setattr(io.os, "replace", replace)
    with pytest.raises(OSError, match="disk full"):
        io.replace_dir(failing, dest)
    assert (dest / "new.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out", failing.name])
