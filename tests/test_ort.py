"""uwe.infer.ort: the ONNX Runtime query side equals the torch model it was exported from."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

from uwe import cli  # noqa: E402
from uwe.bench import latency  # noqa: E402
from uwe.infer import ort  # noqa: E402
from uwe.model.uwe_model import UWEModel, save  # noqa: E402

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
    from uwe.model.pretrained import resolve_model

    folder = resolve_model("all-MiniLM-L6-v2")
    model = ort.OrtModel(folder, "mean", max_length=64, threads=1)
    ours = [emb for _, emb in sorted(
        ((int(p), e[k]) for pos, e in model.encode_buckets(TEXTS) for k, p in enumerate(pos)),
        key=lambda x: x[0])]
    ref = torch_hidden(folder, TEXTS)
    diff = max(float(np.abs(a - b).max()) for a, b in zip(ours, ref, strict=True))
    assert all(a.shape == b.shape for a, b in zip(ours, ref, strict=True))
    assert diff < 2e-5, diff


def test_sentence_embeddings_equal_sentence_transformers():
    """The ``onnx`` engine of the embedding baselines (``evaluate.engine``) gives the
    embeddings of ``SentenceTransformer.encode`` (all-MiniLM-L6-v2, real weights) up to float
    rounding, text order kept across length groups, an empty text and a truncated one included
    (measured: 2.1e-7 here, 1.3e-6 for all-mpnet-base-v2 on 803 ESCO skills)."""
    from uwe.infer.loader import load_model

    texts = TEXTS + ["", "word " * 400]
    ref = load_model("all-MiniLM-L6-v2", engine="torch", progress=False).encoder.encode(texts)
    onnx = load_model("all-MiniLM-L6-v2", engine="onnx", progress=False, text_cache_mb=16)
    assert onnx.encoder.engine == "onnx" and onnx.encoder.model is None
    ours = onnx.encoder.encode(texts + texts[:3])  # the text cache answers the repeats
    assert ours.shape == (len(texts) + 3, ref.shape[1]) and ours.dtype == np.float32
    assert float(np.abs(ours[: len(texts)] - ref).max()) < 1e-5
    np.testing.assert_array_equal(ours[len(texts):], ours[:3])
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="engine 'tensorrt'"):
        load_model("all-MiniLM-L6-v2", engine="tensorrt")


@pytest.mark.parametrize("scorer", ["sli", "mean", "sli_mean_target"])
def test_scores_equal_the_uwe_model(tiny_backbone, scorer):
    torch.set_num_threads(1)
    ref_model = UWEModel.from_backbone(tiny_backbone, scorer, device="cpu", max_length=32)
    fast = ort.OrtModel(tiny_backbone, scorer, max_length=32, threads=1, target_layout="float32")
    ref = ref_model.score_index(TEXTS, ref_model.index_targets(TARGETS))
    got = fast.score_index(TEXTS, fast.index_targets(TARGETS))
    assert got.shape == (len(TEXTS), len(TARGETS)) and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, atol=2e-5)
    np.testing.assert_allclose(fast.score(TEXTS[:2], TARGETS), ref[:2], atol=2e-5)
    default = ort.OrtModel(tiny_backbone, scorer, max_length=32, threads=1)  # int8 tokens
    assert default.target_layout == ort.DEFAULT_LAYOUT == "int8_block"
    np.testing.assert_allclose(default.score(TEXTS, TARGETS), ref, atol=2e-2)


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
    with caplog.at_level("WARNING", logger="uwe.infer.ort"):
        third = ort.OrtModel(tiny_backbone, "sli", threads=1)
    assert len(calls) == 1 and "exporting it again" in caplog.text
    a = third.score(TEXTS[:2], TARGETS)
    b = second.score(TEXTS[:2], TARGETS)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_a_graph_whose_bytes_changed_is_exported_again(tiny_backbone, monkeypatch, caplog):
    """Flipped bytes inside the weights of a cached graph still load in ONNX Runtime and rank
    otherwise: the graph's sha256 (recorded at export, checked once per change of the file)
    finds them, and the graph is exported again."""
    first = ort.OrtModel(tiny_backbone, "sli", threads=1)
    want = first.score(TEXTS[:3], TARGETS)
    data = bytearray(first.onnx_path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(b ^ 0x55 for b in data[middle : middle + 64])
    first.onnx_path.write_bytes(bytes(data))
    with caplog.at_level("WARNING", logger="uwe.infer.ort"):
        again = ort.OrtModel(tiny_backbone, "sli", threads=1)
    assert "does not match its checksum" in caplog.text
    np.testing.assert_allclose(again.score(TEXTS[:3], TARGETS), want, atol=1e-6)
    caplog.clear()
    monkeypatch.setattr(ort, "export_onnx", lambda *a: pytest.fail("exported again"))
    with caplog.at_level("WARNING", logger="uwe.infer.ort"):
        ort.OrtModel(tiny_backbone, "sli", threads=1)  # intact now: no export, no warning
    assert caplog.text == ""


def test_an_unwritable_onnx_cache_warns_and_ranks(tiny_backbone, tmp_path, monkeypatch, caplog):
    """As the index cache: a cache that cannot be written is a warning, not a failed ranking."""
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the cache folder would go")
    want = ort.OrtModel(tiny_backbone, "sli", threads=1).score(TEXTS[:2], TARGETS)
    monkeypatch.setenv("UWE_CACHE_DIR", str(blocker))
    with caplog.at_level("WARNING", logger="uwe.infer.ort"):
        model = ort.OrtModel(tiny_backbone, "sli", threads=1)
    assert "could not write the ONNX cache" in caplog.text and model.onnx_path is None
    np.testing.assert_allclose(model.score(TEXTS[:2], TARGETS), want, atol=1e-6)


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
    pooled = len(TARGETS) * 32 * 4  # the tiny backbone's 32-d unit rows
    assert out["index_mb"] * 2**20 == pooled  # the unit mean vectors alone, no tokens kept
    sizes = {}
    for layout in ort.LAYOUTS:
        sli = ort.OrtModel(tiny_backbone, "sli", threads=1, target_layout=layout)
        sizes[layout] = latency.measure(sli, TARGETS, TEXTS, warmup=1, repeats=2,
                                        throughput_batch=2, throughput_batches=1)["index_mb"]
    # a byte a value (+ a scale per block, a norm a token) against float32's four; the tiny
    # backbone's 32 values pad to one whole block (tests/test_token_matrix.py compares sizes)
    assert 0 < sizes["int8_block"] and 0 < sizes["float32"]


@pytest.mark.parametrize("scorer", ["mean", "sli"])
def test_rank_with_the_onnx_engine_equals_torch(tiny_backbone, tmp_path, scorer, monkeypatch,
                                                capsys):
    folder = save(UWEModel.from_backbone(tiny_backbone, scorer, device="cpu"), tmp_path / "m")
    targets = tmp_path / "t.txt"
    targets.write_text("\n".join(TARGETS) + "\n", encoding="utf-8")
    monkeypatch.setattr("sys.stdin", io.StringIO(""))

    def rank(engine, *layout):
        argv = ["rank", "--model", str(folder), "--engine", engine, "--targets", str(targets),
                "--format", "json", "--top-k", "4", *layout, *TEXTS[:3]]
        rc = cli.main(argv)
        out, err = capsys.readouterr()
        assert rc == 0, err
        return json.loads(out)

    exact = ("--target-layout", "float32")
    fast, again, slow = rank("onnx", *exact), rank("onnx", *exact), rank("torch")  # miss, hit
    assert fast == again
    for a, b in zip(fast, slow, strict=True):
        assert [r["target"] for r in a["results"]] == [r["target"] for r in b["results"]]
        np.testing.assert_allclose([r["score"] for r in a["results"]],
                                   [r["score"] for r in b["results"]], atol=1e-5)
    for a, b in zip(rank("onnx"), slow, strict=True):  # the default layout: int8 tokens
        top = {r["target"]: r["score"] for r in b["results"]}
        assert all(abs(r["score"] - top[r["target"]]) < 2e-2 for r in a["results"]
                   if r["target"] in top)
    assert cli.main(["rank", "--model", "bm25", "--engine", "onnx", "--targets", str(targets),
                     "x"]) == 2
    assert "--engine onnx needs a UWE model folder" in capsys.readouterr().err


def test_the_int8_block_layout_scores_within_its_stated_bound(tiny_backbone):
    """The ONNX engine's default index: every cached target token once, int8 per block, in one
    TokenMatrix; its scores differ from the exact float32 layout's by no more than the bound
    TokenMatrix.error_bound states (tests/test_token_matrix.py proves the bound on random
    tokens; here on a real backbone's), and the engine scores a raw token index as well."""
    from uwe.infer.token_matrix import TokenMatrix

    pytest.importorskip("numba")
    exact = ort.OrtModel(tiny_backbone, "sli", max_length=32, threads=1, target_layout="float32")
    fast = ort.OrtModel(tiny_backbone, "sli", max_length=32, threads=1)
    index = fast.index_targets(TARGETS)
    assert isinstance(index, TokenMatrix) and index.layout == "int8_block"
    assert len(index) == len(TARGETS) and fast.prepare(index) is index
    ref = exact.score_index(TEXTS, exact.index_targets(TARGETS))
    got = fast.score_index(TEXTS, index)
    bound = np.concatenate([index.error_bound(q, fast.attention_temperature)
                            for _, q in fast.encode_queries(TEXTS)])
    order = np.concatenate([pos for pos, _ in fast.encode_queries(TEXTS)])
    err = np.abs(got - ref).max(1)[order]
    assert np.all(err <= bound + 1e-6) and err.max() > 0, (err, bound)
    raw = fast.token_index(TARGETS)  # the cached float32 tokens, prepared on the fly
    np.testing.assert_array_equal(fast.score_index(TEXTS, raw), got)


def test_the_cli_offers_the_engine_layouts():
    assert cli.LAYOUTS == ort.LAYOUTS and cli.DEFAULT_LAYOUT == ort.DEFAULT_LAYOUT
    assert cli.main(["rank", "--target-layout", "bfloat16", "x"]) == 2


def test_the_int8_encoder_is_a_cached_twin_of_the_exported_graph(tiny_backbone, monkeypatch):
    """encoder_precision="int8": ONNX Runtime's dynamic quantisation of the exported graph,
    written once beside it (re-made after a new export), close to the float32 embeddings."""
    exact = ort.OrtModel(tiny_backbone, "mean", threads=1)
    quant = ort.OrtModel(tiny_backbone, "mean", threads=1, encoder_precision="int8")
    twin = exact.onnx_path.with_name(ort.QUANTIZED_FILE)
    assert twin.is_file() and twin.stat().st_size < exact.onnx_path.stat().st_size
    a, b = exact.sentence_embeddings(TEXTS), quant.sentence_embeddings(TEXTS)
    cos = (a * b).sum(1)
    assert np.all(cos > 0.98) and np.any(np.abs(a - b) > 1e-6), cos  # rounded, not broken
    import onnxruntime.quantization as q

    monkeypatch.setattr(q, "quantize_dynamic", lambda *a, **k: pytest.fail("quantised again"))
    ort.OrtModel(tiny_backbone, "mean", threads=1, encoder_precision="int8")  # the cached twin
    ort.export_onnx(tiny_backbone, exact.onnx_path)  # a new export drops the old twin
    assert not twin.exists()
    with pytest.raises(ValueError, match="encoder precision must be one of float32, int8"):
        ort.OrtModel(tiny_backbone, "mean", encoder_precision="int4")
