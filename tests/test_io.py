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
