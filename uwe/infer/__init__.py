"""Using a trained model: the model folder, target indexes and the fast query engines.

* :mod:`uwe.model.uwe_model`: :class:`~uwe.model.uwe_model.UWEModel` (index targets, score, rank),
  ``save`` / ``load``; :mod:`uwe.model.folder` checks a folder before loading it and
  :mod:`uwe.model.model_card` writes its ``README.md``;
* :mod:`uwe.infer.ranker`: the Ranker API (typed arguments: rank, index, the model evaluation
  scores) that ``uwe rank`` / ``index`` / ``evaluate``, the WorkRB adapter and notebooks call;
* :mod:`uwe.infer.index_cache`: target indexes cached on disk (``uwe rank`` / ``uwe index``);
* :mod:`uwe.infer.numpy_engine` (NumPy BERT + SLI, no torch), :mod:`uwe.infer.ort` (the encoder in
  ONNX Runtime, compact target layouts) and :mod:`uwe.infer.kernels` (the fused Numba kernels);
* :mod:`uwe.infer.ann` (two-stage retrieval with FAISS), :mod:`uwe.model.textcache`.

Stages: ``evaluate``, ``latency``, the analysis runs (they score through
:class:`~uwe.model.uwe_model.UWEModel`); the command line (``uwe rank``, ``uwe index``).
"""
