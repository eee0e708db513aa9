"""WorkBench: metrics, the evaluation harness, baselines, latency.

* :mod:`uwe.core.metrics`: exact MAP, RP@10, MRR, recall@k, nDCG and macro averages;
* :mod:`uwe.bench.evaluation`: scoring any model on a task family (the harness);
* :mod:`uwe.model.baselines`: BM25, char TF-IDF, the sentence-embedding generalists;
* :mod:`uwe.model.registry`: a model spec (folder, baseline name, embedder) -> a model;
* :mod:`uwe.bench.latency`: per-query latency and throughput.

Stages: ``baselines@*`` and ``evaluate`` (notebook ``03``), ``latency`` (``07``), and the
evaluation of every ``transfer`` / ``ablations`` run.
"""
