"""uwe.ort: the ONNX Runtime query side equals the torch model it was exported from."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

from uwe import cli, latency, ort  # noqa: E402
from uwe.model import UWEModel, save  # noqa: E402

TEXTS = ["data scientist", "registered nurse for intensive care", "bake bread", "python",
         "operate a forklift truck in a warehouse", "sql", "care for patients",
         "manage a team of software developers and testers"]
TARGETS = ["python programming", "bake bread", "drive a truck", "care for patients",
           "statistics", "manage a team", "use spreadsheets", "sql", "knead dough"]


@pytest.fixture(autouse=True)
def cache_dir(tmp_path_factory, monkeypatch):
    path = tmp_path_factory.getbasetemp() / "ort_cache"
    monkeypatch.setenv("UWE_CACHE_DIR", str(path))
    return path


def torch_hidden(folder, texts):
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(folder, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    out = []
    with torch.no_grad():
        for t in texts:
            enc = tok(t, return_tensors="pt", truncation=True, max_length=64)
            out.append(model(**enc).last_hidden_state[0].numpy())
    return out


def test_token_embeddings_equal_the_torch_backbone_on_real_weights():
    """all-MiniLM-L6-v2's real weights: the largest difference of a token embedding between
    ONNX Runtime and torch on these texts is a few 1e-6 (measured 2.3e-6, and 1.8e-6 for the
    trained models/uwe; bound 2e-5)."""
    from uwe.encoders import resolve_model

    folder = resolve_model("all-MiniLM-L6-v2")
    model = ort.OrtModel(folder, "mean", max_length=64, threads=1)
    ours = [emb for _, emb in sorted(
        ((int(p), e[k]) for pos, e in model.encode_buckets(TEXTS) for k, p in enumerate(pos)),
        key=lambda x: x[0])]
    ref = torch_hidden(folder, TEXTS)
    diff = max(float(np.abs(a - b).max()) for a, b in zip(ours, ref, strict=True))
    assert all(a.shape == b.shape for a, b in zip(ours, ref, strict=True))
    assert diff < 2e-5, diff


@pytest.mark.parametrize("scorer", ["sli", "mean", "sli_mean_target"])
def test_scores_equal_the_uwe_model(tiny_backbone, scorer):
    torch.set_num_threads(1)
    ref_model = UWEModel.from_backbone(tiny_backbone, scorer, device="cpu", max_length=32)
    fast = ort.OrtModel(tiny_backbone, scorer, max_length=32, threads=1)
    ref = ref_model.score_index(TEXTS, ref_model.index_targets(TARGETS))
    got = fast.score_index(TEXTS, fast.index_targets(TARGETS))
    assert got.shape == (len(TEXTS), len(TARGETS)) and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, atol=2e-5)
    np.testing.assert_allclose(fast.score(TEXTS[:2], TARGETS), ref[:2], atol=2e-5)


def test_the_export_is_cached_and_a_damaged_graph_is_exported_again(tiny_backbone, monkeypatch,
                                                                    caplog):
    first = ort.OrtModel(tiny_backbone, "sli", threads=1)
    assert first.onnx_path.is_file()
    real_export = ort.export_onnx
    monkeypatch.setattr(ort, "export_onnx", lambda *a: pytest.fail("exported again"))
    second = ort.OrtModel(tiny_backbone, "sli", threads=1)
    assert second.onnx_path == first.onnx_path
    first.onnx_path.write_bytes(b"not a graph")
    calls = []
    monkeypatch.setattr(ort, "export_onnx", lambda *a: calls.append(a) or real_export(*a))
    with caplog.at_level("WARNING", logger="uwe.ort"):
        third = ort.OrtModel(tiny_backbone, "sli", threads=1)
    assert len(calls) == 1 and "exporting it again" in caplog.text
    a = third.score(TEXTS[:2], TARGETS)
    b = second.score(TEXTS[:2], TARGETS)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_unsupported_scorer_is_one_line(tiny_backbone):
    with pytest.raises(ValueError, match="the ONNX engine runs the scorers sli, mean"):
        ort.OrtModel(tiny_backbone, "maxsim")


def test_latency_times_encoding_and_scoring_apart(tiny_backbone):
    fast = ort.OrtModel(tiny_backbone, "mean", threads=1)
    out = latency.measure(fast, TARGETS, TEXTS, warmup=2, repeats=6, throughput_batch=3,
                          throughput_batches=1)
    assert set(out) >= {"latency_ms", "encode_ms", "score_ms"}
    assert out["encode_ms"]["median"] > 0 and out["score_ms"]["median"] > 0
    assert out["latency_ms"]["median"] <= out["encode_ms"]["p90"] + out["score_ms"]["p90"]


@pytest.mark.parametrize("scorer", ["mean", "sli"])
def test_rank_with_the_onnx_engine_equals_torch(tiny_backbone, tmp_path, scorer, monkeypatch,
                                                capsys):
    folder = save(UWEModel.from_backbone(tiny_backbone, scorer, device="cpu"), tmp_path / "m")
    targets = tmp_path / "t.txt"
    targets.write_text("\n".join(TARGETS) + "\n", encoding="utf-8")
    monkeypatch.setattr("sys.stdin", io.StringIO(""))

    def rank(engine):
        argv = ["rank", "--model", str(folder), "--engine", engine, "--targets", str(targets),
                "--format", "json", "--top-k", "4", *TEXTS[:3]]
        rc = cli.main(argv)
        out, err = capsys.readouterr()
        assert rc == 0, err
        return json.loads(out)

    fast, again, slow = rank("onnx"), rank("onnx"), rank("torch")  # miss, hit, torch
    assert fast == again
    for a, b in zip(fast, slow, strict=True):
        assert [r["target"] for r in a["results"]] == [r["target"] for r in b["results"]]
        np.testing.assert_allclose([r["score"] for r in a["results"]],
                                   [r["score"] for r in b["results"]], atol=1e-5)
    assert cli.main(["rank", "--model", "bm25", "--engine", "onnx", "--targets", str(targets),
                     "x"]) == 2
    assert "--engine onnx needs a UWE model folder" in capsys.readouterr().err
