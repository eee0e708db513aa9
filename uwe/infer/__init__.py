"""Serving a trained model: the fast engines, target indexes and the Ranker API.

* :mod:`uwe.infer.loader`: the registry's model (:mod:`uwe.model.registry`) with serving's fast
  parts (the fused SLI kernel, ONNX Runtime for an embedder); ``uwe.load``;
* :mod:`uwe.infer.ranker`: the Ranker API (typed arguments: rank, index, the model evaluation
  scores; targets, engine choice, the cached index, top-k) that ``uwe rank`` / ``index`` /
  ``evaluate``, the WorkRB adapter and notebooks call;
* :mod:`uwe.infer.index_cache`: target indexes cached on disk;
* :mod:`uwe.infer.numpy_engine` (NumPy BERT + SLI, no torch), :mod:`uwe.infer.ort` (the encoder in
  ONNX Runtime, compact target layouts), :mod:`uwe.infer.dense` and :mod:`uwe.infer.kernels`
  (the fused Numba kernels); :mod:`uwe.infer.ann` (two-stage retrieval with FAISS).

Imports the model floor and below, never :mod:`uwe.bench` or :mod:`uwe.train`
(``docs/architecture.md``). Stages: ``evaluate``, ``latency``, the analysis runs' evaluation;
the command line.
"""
