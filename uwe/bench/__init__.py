"""WorkBench: the evaluation harness and latency, for any model.

* :mod:`uwe.bench.evaluation`: scoring any model on a task family (the harness);
* :mod:`uwe.bench.protocol`: the Ranker protocol every model keeps;
* :mod:`uwe.bench.latency`: per-query latency and throughput;
* :mod:`uwe.bench.softness`: the attention softness report.

The metrics are :mod:`uwe.core.metrics`; the models (baselines included) and the registry that
names them are :mod:`uwe.model`. Stages: ``baselines@*`` and ``evaluate`` (notebook ``03``),
``latency`` (``07``), and the evaluation of every analysis run.
"""
