import csv
import hashlib
from pathlib import Path

import pytest

from uwe.data.fetch import FetchError, fetch, read_manifest, resolve_mirror, verify

REPO = Path(__file__).resolve().parents[1]


def _make_mirror(root: Path, files: dict[str, bytes]) -> Path:
    mirror = root / "mirror"
    for rel, content in files.items():
        (mirror / rel).parent.mkdir(parents=True, exist_ok=True)
        (mirror / rel).write_bytes(content)
    return mirror


def _write_manifest(path: Path, files: dict[str, bytes], url: str = "") -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "url", "sha256", "license"])
        for rel, content in files.items():
            writer.writerow([rel, url, hashlib.sha256(content).hexdigest(), "CC BY 4.0"])
    return path


FILES = {"a/one.csv": b"x,y\n1,2\n", "b/two words.txt": b"hello\n"}


def test_fetch_from_mirror_places_verified_files(tmp_path):
    mirror = _make_mirror(tmp_path, FILES)
    manifest = _write_manifest(tmp_path / "manifest.csv", FILES)
    raw = tmp_path / "data" / "raw"
    sources = fetch(manifest, raw, mirror=mirror)
    assert sources == {rel: "mirror" for rel in FILES}
    for rel, content in FILES.items():
        assert (raw / rel).read_bytes() == content
    assert verify(manifest, raw) == []
    assert sorted(p.name for p in raw.parent.iterdir()) == ["raw"]  # no staging left behind
    (raw.parent / "plain").mkdir()
    assert raw.stat().st_mode == (raw.parent / "plain").stat().st_mode  # not tempfile's 0700


def test_corrupted_mirror_file_fails_and_leaves_raw_dir_untouched(tmp_path):
    mirror = _make_mirror(tmp_path, FILES)
    manifest = _write_manifest(tmp_path / "manifest.csv", FILES)
    raw = tmp_path / "data" / "raw"
    fetch(manifest, raw, mirror=mirror)
    corrupt = bytearray(FILES["b/two words.txt"])
    corrupt[0] ^= 0xFF  # one changed byte
    (mirror / "b" / "two words.txt").write_bytes(bytes(corrupt))
    (raw / "b" / "two words.txt").unlink()  # force the mirror to be read again
    before = {p: p.read_bytes() for p in raw.rglob("*") if p.is_file()}
    with pytest.raises(FetchError, match=r"checksum mismatch for b/two words\.txt"):
        fetch(manifest, raw, mirror=mirror)
    after = {p: p.read_bytes() for p in raw.rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in raw.parent.iterdir()) == ["raw"]


def test_missing_file_without_url_names_the_file(tmp_path):
    mirror = _make_mirror(tmp_path, {"a/one.csv": FILES["a/one.csv"]})
    manifest = _write_manifest(tmp_path / "manifest.csv", FILES)
    raw = tmp_path / "raw"
    with pytest.raises(FetchError, match=r"b/two words\.txt is missing from the mirror"):
        fetch(manifest, raw, mirror=mirror)
    assert not raw.exists()


def test_unreachable_url_names_the_file(tmp_path, monkeypatch):
    files = {"c.txt": b"c\n"}
    manifest = _write_manifest(tmp_path / "manifest.csv", files, url="http://127.0.0.1:9/c.txt")
    empty_mirror = tmp_path / "empty_mirror"
    empty_mirror.mkdir()
    # the mirror lacks the file: the message says so first, then that the download failed
    with pytest.raises(FetchError, match=r"c\.txt is missing from the mirror .*empty_mirror.*"
                       r"downloading it from http://127\.0\.0\.1:9/c\.txt failed"):
        fetch(manifest, tmp_path / "raw", mirror=empty_mirror)
    assert not (tmp_path / "raw").exists()
    monkeypatch.delenv("UWE_DATA_MIRROR", raising=False)
    monkeypatch.chdir(tmp_path)  # no ../shared/data beside it: no mirror at all
    with pytest.raises(FetchError, match=r"could not download c\.txt from http://127\.0\.0\.1:9"):
        fetch(manifest, tmp_path / "raw", repo_root=tmp_path)
    assert not (tmp_path / "raw").exists()


def test_malformed_manifest_rows_are_named(tmp_path):
    path = tmp_path / "manifest.csv"
    path.write_text("path,url,sha256,license\nok.txt,,abc,MIT\n")
    with pytest.raises(ValueError, match=r"row 2 \('ok.txt'\): sha256 must be 64"):
        read_manifest(path)
    path.write_text("path,url,license\n")
    with pytest.raises(ValueError, match=r"missing column\(s\) \['sha256'\]"):
        read_manifest(path)


def test_mirror_resolution_order(tmp_path, monkeypatch):
    explicit = tmp_path / "explicit"
    explicit.mkdir()
    env_dir = tmp_path / "env"
    env_dir.mkdir()
    monkeypatch.setenv("UWE_DATA_MIRROR", str(env_dir))
    assert resolve_mirror(explicit) == explicit
    assert resolve_mirror(None) == env_dir
    monkeypatch.delenv("UWE_DATA_MIRROR")
    repo = tmp_path / "repo"
    repo.mkdir()
    assert resolve_mirror(None, repo_root=repo) is None
    (tmp_path / "shared" / "data").mkdir(parents=True)
    assert resolve_mirror(None, repo_root=repo) == (tmp_path / "shared" / "data").resolve()


def test_project_manifest_matches_the_mirror(mirror):
    entries = read_manifest(REPO / "data" / "manifest.csv")
    assert len(entries) >= 15
    bad = verify(REPO / "data" / "manifest.csv", mirror)
    assert bad == [], f"mirror files failing the manifest checksum: {bad}"
