"""Latency: what is timed (one index, warm-up then single queries, throughput batches),
parameter counts, the SLI / mean-pooling ratio and the table."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from uwe.bench import latency


class CountingModel:
    """Scoring contract with call counters (no torch module: no parameters)."""

    def __init__(self):
        self.indexed, self.calls = 0, []

    def index_targets(self, targets):
        self.indexed += 1
        return list(targets)

    def score_index(self, queries, index):
        self.calls.append(len(queries))
        return np.zeros((len(queries), len(index)), dtype=np.float32)


def test_measure_times_single_queries_after_warmup_and_batches():
    model = CountingModel()
    out = latency.measure(model, ["a", "b", "c"], ["q1", "q2"], warmup=2, repeats=5,
                          throughput_batch=4, throughput_batches=3)
    assert model.indexed == 1
    assert model.calls == [1] * (2 + 5) + [4] * (1 + 3)  # warm-up, timed, warm-up batch, timed
    assert set(out["latency_ms"]) == {"median", "p10", "p90", "mean"}
    assert out["latency_ms"]["p10"] <= out["latency_ms"]["median"] <= out["latency_ms"]["p90"]
    assert out["throughput_qps"] > 0 and out["n_targets"] == 3 and out["parameters"] is None
    with pytest.raises(ValueError, match="repeats"):
        latency.measure(model, ["a"], ["q"], repeats=0)


def test_query_stream_cycles_from_an_offset():
    assert latency.query_stream(["a", "b", "c"], 5, start=2) == ["c", "a", "b", "c", "a"]
    with pytest.raises(ValueError, match="no queries"):
        latency.query_stream([], 1)


def test_parameter_count_counts_shared_modules_once():
    class Wrapper:
        def __init__(self):
            self.encoder = torch.nn.Linear(3, 2)  # 3 * 2 + 2 = 8

    class Nested:
        def __init__(self):
            self.encoder = type("E", (), {"model": torch.nn.Linear(4, 1)})()  # 5

    assert latency.parameter_count(Wrapper()) == 8
    assert latency.parameter_count(Nested()) == 5
    assert latency.parameter_count(CountingModel()) is None


def test_sli_mean_ratio_matches_the_backbone_by_name():
    models = {
        "uwe": {"kind": "uwe", "backbone": "all-MiniLM-L6-v2", "spec": "models/uwe",
                "latency_ms": {"median": 6.0}},
        "minilm": {"kind": "embedding", "spec": "sentence-transformers/all-MiniLM-L6-v2",
                   "latency_ms": {"median": 4.0}},
        "bm25": {"kind": "lexical", "spec": "bm25", "latency_ms": {"median": 1.0}},
    }
    assert latency.sli_mean_ratios(models) == {
        "uwe": {"mean_pooled": "minilm", "latency_ratio": 1.5}}
    del models["minilm"]
    assert latency.sli_mean_ratios(models)["uwe"]["latency_ratio"] is None


def test_a_mean_pooled_twin_is_the_sli_models_denominator():
    """An SLI model's own encoder mean-pooled (``twin_of``) is compared with it before the
    backbone's embedder; the twin itself is compared with the embedder."""
    models = {
        "uwe@onnx": {"kind": "uwe", "scorer": "sli", "backbone": "all-MiniLM-L6-v2",
                     "spec": "models/uwe", "engine": "onnx", "latency_ms": {"median": 7.0}},
        "uwe:mean@onnx": {"kind": "uwe", "scorer": "mean", "backbone": "all-MiniLM-L6-v2",
                          "spec": "models/uwe", "engine": "onnx", "twin_of": "uwe",
                          "latency_ms": {"median": 5.0}},
        "minilm@onnx": {"kind": "embedding", "spec": "sentence-transformers/all-MiniLM-L6-v2",
                        "engine": "onnx", "latency_ms": {"median": 4.0}},
    }
    ratios = latency.sli_mean_ratios(models)
    assert ratios["uwe@onnx"] == {"mean_pooled": "uwe:mean@onnx", "latency_ratio": 7.0 / 5.0}
    assert ratios["uwe:mean@onnx"] == {"mean_pooled": "minilm@onnx", "latency_ratio": 5.0 / 4.0}


def test_models_measured_together_take_turns_query_by_query():
    """measure_together interleaves the timed single queries (each query through every model,
    in a seeded order drawn per query), after each model's own warm-up; the batches come last,
    per model."""
    log = []

    class Logged(CountingModel):
        def __init__(self, name):
            super().__init__()
            self.name = name

        def score_index(self, queries, index):
            log.append((self.name, len(queries)))
            return super().score_index(queries, index)

    models = {"a": Logged("a"), "b": Logged("b")}
    out = latency.measure_together(models, ["t1", "t2"], ["q1", "q2", "q3"], warmup=1,
                                   repeats=20, throughput_batch=2, throughput_batches=1)
    assert set(out) == {"a", "b"} and all(m.indexed == 1 for m in models.values())
    singles = [n for n, size in log if size == 1]
    assert singles[:2] == ["a", "b"]  # the warm-up, model by model
    pairs = [tuple(singles[i:i + 2]) for i in range(2, len(singles), 2)]
    assert len(pairs) == 20 and all(sorted(p) == ["a", "b"] for p in pairs)
    assert {("a", "b"), ("b", "a")} <= set(pairs)  # both orders occur
    assert [n for n, size in log if size == 2] == ["a", "a", "b", "b"]
    again = {"a": Logged("a"), "b": Logged("b")}
    log.clear()
    latency.measure_together(again, ["t1", "t2"], ["q1", "q2", "q3"], warmup=1, repeats=20,
                             throughput_batch=2, throughput_batches=1)
    assert [n for n, size in log if size == 1] == singles  # seeded: the same order


def test_report_and_frame_with_a_lexical_baseline(tmp_path):
    report = latency.latency_report({"tfidf_char": "tfidf_char"}, ["python", "nursing care"],
                                    ["data scientist", "nurse"], root=tmp_path, device="cpu",
                                    warmup=1, repeats=3, throughput_batch=2,
                                    throughput_batches=1)
    entry = report["models"]["tfidf_char"]
    assert entry["kind"] == "lexical" and entry["parameters"] is None
    assert report["ratios"] == {} and report["sli_over_mean"] is None
    assert report["device"] == "cpu" and report["repeats"] == 3
    results = [{"model": "tfidf_char", "macro": {"map": 0.25}}]
    frame = latency.latency_frame(report, results)
    assert frame.loc[0, "model"] == "tfidf_char" and frame.loc[0, "macro MAP"] == 25.0


def test_untuned_scorer_spec_times_uwe_architecture_on_the_backbone(tmp_path, backbone_factory):
    backbone = backbone_factory(2)
    report = latency.latency_report({"sli_untuned": "untuned:sli"}, ["python", "nursing care"],
                                    ["data scientist", "nurse"], root=tmp_path, device="cpu",
                                    backbone=backbone, max_length=16, warmup=1, repeats=2,
                                    throughput_batch=2, throughput_batches=1)
    entry = report["models"]["sli_untuned"]
    assert (entry["kind"], entry["scorer"]) == ("uwe", "sli")
    assert entry["latency_ms"]["median"] > 0
    with pytest.raises(ValueError, match="needs the backbone"):
        latency.load_for_latency("untuned:sli", tmp_path)
