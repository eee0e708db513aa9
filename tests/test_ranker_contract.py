"""One contract, every model kind the harness scores (uwe.bench.protocol.check_ranker): the
lexical baselines, a sentence-embedding baseline (real all-MiniLM-L6-v2 weights, both
engines), UWE with each scorer, its two-stage ANN wrapper and the NumPy and ONNX engines."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from uwe.bench.protocol import Ranker, check_ranker

QUERIES = ["data scientist", "registered nurse", "bake bread and pastries", "python"]
TARGETS = ["python programming", "bake bread", "care for patients", "statistics",
           "drive a truck", "use spreadsheets", "sql"]


def _uwe(backbone, scorer):
    from uwe.model.uwe_model import UWEModel

    torch.set_num_threads(1)
    return UWEModel.from_backbone(backbone, scorer, device="cpu", batch_size=4)


def _folder(backbone, tmp_path, scorer="sli"):
    from uwe.model.uwe_model import save

    return save(_uwe(backbone, scorer), tmp_path / f"uwe-{scorer}")


KINDS = ["bm25", "tfidf_char", "embedding@torch", "embedding@onnx", "uwe sli", "uwe mean",
         "uwe maxsim", "uwe sli_mean_target", "ann two-stage", "numpy engine",
         "onnx engine sli float32", "onnx engine sli int8_block", "onnx engine mean"]


def make(kind: str, backbone: str, tmp_path):
    from uwe.model.baselines import make_model

    if kind in ("bm25", "tfidf_char"):
        return make_model(kind)
    if kind.startswith("embedding@"):  # the engine is serving's choice (uwe.infer.loader)
        from uwe.infer.loader import load_model

        return load_model("all-MiniLM-L6-v2", engine=kind.split("@")[1], progress=False)
    if kind.startswith("uwe "):
        return _uwe(backbone, kind.split()[1])
    if kind == "ann two-stage":
        from uwe.infer.ann import TwoStageModel

        return TwoStageModel(_uwe(backbone, "sli"), n_candidates=5, first_stage="flat")
    if kind == "numpy engine":
        from uwe.infer.numpy_engine import NumpyUWE

        return NumpyUWE(_folder(backbone, tmp_path))
    from uwe.infer.ort import OrtModel

    *_, scorer, layout = kind.split() if "sli" in kind else (None, "mean", "float32")
    return OrtModel(backbone, scorer, max_length=32, threads=1, target_layout=layout)


@pytest.mark.parametrize("kind", KINDS)
def test_every_model_kind_keeps_the_ranker_contract(kind, tiny_backbone, tmp_path, monkeypatch):
    if "onnx" in kind:
        pytest.importorskip("onnxruntime")
    if "ann" in kind:
        pytest.importorskip("faiss")
    monkeypatch.setenv("UWE_CACHE_DIR", str(tmp_path / "cache"))
    model = make(kind, tiny_backbone, tmp_path)
    assert isinstance(model, Ranker)
    check_ranker(model, QUERIES, TARGETS)


def test_check_ranker_names_the_broken_check():
    class Transposed:  # scores targets x queries
        def index_targets(self, targets):
            return list(targets)

        def score_index(self, queries, index):
            return np.zeros((len(index), len(queries)), dtype=np.float32)

        def score(self, queries, targets):
            return self.score_index(queries, self.index_targets(targets))

    class OrderBlind(Transposed):  # ignores which target is which
        def score_index(self, queries, index):
            return np.tile(np.arange(len(index), dtype=np.float32), (len(queries), 1))

    with pytest.raises(AssertionError, match=r"Transposed breaks the Ranker contract \(shape\)"):
        check_ranker(Transposed(), QUERIES, TARGETS)
    with pytest.raises(AssertionError, match=r"\(target order\)"):
        check_ranker(OrderBlind(), QUERIES, TARGETS)
    with pytest.raises(AssertionError, match=r"\(methods\)"):
        check_ranker(object(), QUERIES, TARGETS)
