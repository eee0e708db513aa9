"""Offline model resolution (PyPI slices, cache, errors) and the sentence encoder."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from uwe.model import pretrained as encoders
from uwe.model.pretrained import SentenceEncoder, find_model_dir, resolve_device, resolve_model


@pytest.fixture(scope="module")
def minilm() -> SentenceEncoder:
    torch.set_num_threads(2)
    return SentenceEncoder("all-MiniLM-L6-v2", device="cpu", batch_size=16, progress=False)


def _split_zip(tmp_path: Path, n_parts: int = 3) -> list[Path]:
    """A zip shaped like the MPNet one (nested model folder + desktop.ini), cut in slices."""
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("all-mpnet-base-v2/modules.json", json.dumps([]))
        zf.writestr("all-mpnet-base-v2/config.json", "{}")
        zf.writestr("all-mpnet-base-v2/desktop.ini", "junk")
        zf.writestr("all-mpnet-base-v2/1_Pooling/config.json", "{}")
        zf.writestr("all-mpnet-base-v2/1_Pooling/desktop.ini", "junk")
    data = archive.read_bytes()
    cut = np.linspace(0, len(data), n_parts + 1).astype(int)
    parts = []
    for i in range(n_parts):
        part = tmp_path / f"all-mpnet-base-v2.zip.{i + 1:03d}"
        part.write_bytes(data[cut[i] : cut[i + 1]])
        parts.append(part)
    return parts


def test_mpnet_slices_are_joined_extracted_once_and_cleaned(tmp_path, monkeypatch):
    parts = _split_zip(tmp_path)
    monkeypatch.setattr(encoders, "_mpnet_slices", lambda: parts)
    cache = tmp_path / "cache"
    path = Path(resolve_model("sentence-transformers/all-mpnet-base-v2", cache_dir=cache))
    assert path == cache / "all-mpnet-base-v2" / "all-mpnet-base-v2"
    assert (path / "modules.json").is_file() and (path / "1_Pooling" / "config.json").is_file()
    assert not list(cache.rglob("desktop.ini"))
    assert sorted(p.name for p in cache.iterdir()) == ["all-mpnet-base-v2"]  # no temp dirs left

    def boom():
        raise AssertionError("must not re-extract")

    monkeypatch.setattr(encoders, "_mpnet_slices", boom)
    assert Path(resolve_model("all-mpnet-base-v2", cache_dir=cache)) == path


def test_extract_loses_a_race_gracefully(tmp_path):
    parts = _split_zip(tmp_path)
    dest = tmp_path / "cache" / "m"
    dest.mkdir(parents=True)
    (dest / "marker").write_text("first")
    encoders._extract_slices(parts, dest)  # the destination already exists: keep it
    assert (dest / "marker").read_text() == "first"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["m"]


def test_cache_root_follows_env(tmp_path, monkeypatch):
    from uwe.errors import InputError
    from uwe.io import cache_root

    monkeypatch.setenv("UWE_CACHE_DIR", str(tmp_path))
    assert cache_root() == tmp_path
    monkeypatch.setenv("UWE_CACHE_DIR", "")  # empty = unset
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "me"))
    assert cache_root() == tmp_path / "me" / ".cache" / "uwe"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "uwe"
    monkeypatch.delenv("XDG_CACHE_HOME")
    for home in ("", "relative", "/"):  # never a cache at the root or in the working folder
        monkeypatch.setenv("HOME", home)
        with pytest.raises(InputError, match=r"no folder for the cache: \$HOME is .*UWE_CACHE_DIR"):
            cache_root()


def test_missing_package_names_it_and_the_pip_command(tmp_path, monkeypatch):
    monkeypatch.setattr(encoders, "MPNET_PACKAGES", ("uwe-no-such-package-part-001",))
    with pytest.raises(ValueError, match=r"uwe-no-such-package-part-001.*pip install"):
        resolve_model("all-mpnet-base-v2", cache_dir=tmp_path)


def test_resolve_model_local_folder_and_hub_id(tmp_path, monkeypatch):
    assert resolve_model(tmp_path) == str(tmp_path)
    monkeypatch.delenv("UWE_ALLOW_DOWNLOAD", raising=False)
    # not a folder, not known, not in the HF cache: refused at once, offline
    with pytest.raises(ValueError, match=r"unknown model: 'BAAI/bge-small-en-v1\.5'.*"
                                         r"UWE_ALLOW_DOWNLOAD=1"):
        resolve_model("BAAI/bge-small-en-v1.5")
    with pytest.raises(ValueError, match=r"unknown model: 'all-minilm-l6' \(did you mean "
                                         r"'all-MiniLM-L6-v2'"):
        resolve_model("all-minilm-l6")
    with pytest.raises(ValueError, match=r"model folder not found: '\./models/nowhere'"):
        resolve_model("./models/nowhere")
    monkeypatch.setenv("UWE_ALLOW_DOWNLOAD", "1")  # the user asked: sentence-transformers may
    assert resolve_model("BAAI/bge-small-en-v1.5") == "BAAI/bge-small-en-v1.5"
    minilm_dir = Path(resolve_model("sentence-transformers/all-MiniLM-L6-v2"))
    assert (minilm_dir / "modules.json").is_file()
    assert resolve_model("all-MiniLM-L6-v2") == str(minilm_dir)


def test_find_model_dir_prefers_the_shallowest_config(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "modules.json").write_text("[]")
    (tmp_path / "a" / "b" / "config.json").write_text("{}")
    assert find_model_dir(tmp_path) == tmp_path / "a"
    with pytest.raises(ValueError, match="no model config"):
        find_model_dir(tmp_path / "empty")


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ValueError, match="nonsense"):
        resolve_device("nonsense")


def test_unloadable_hub_id_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("UWE_ALLOW_DOWNLOAD", "1")
    with pytest.raises(ValueError, match=r"uwe-test/no-such-model.*could not be loaded"):
        SentenceEncoder("uwe-test/no-such-model", device="cpu", progress=False)


def test_minilm_embeddings_are_normalised_float32_and_sensible(minilm):
    texts = ["python programming", "software development in python", "baking bread"]
    emb = minilm.encode(texts)
    assert emb.shape == (3, 384) and emb.dtype == np.float32 and minilm.dim == 384
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    sims = emb @ emb.T
    assert sims[0, 1] > sims[0, 2]
    # batching does not change the embeddings
    np.testing.assert_allclose(minilm.encode(texts[:1]), emb[:1], atol=1e-5)
    assert minilm.encode([]).shape == (0, 384)
