"""The pipeline's analyses and reports: what turns metric files into the paper's claims.

* :mod:`uwe.pipeline.analyses`: one transfer or ablation run (stages ``transfer@*``,
  ``ablations@*``, notebook ``04_variant``);
* :mod:`uwe.pipeline.results` (collecting the metric files), :mod:`uwe.pipeline.reporting`
  (tables), :mod:`uwe.pipeline.claims` (the claims table and its verdicts) and
  :mod:`uwe.pipeline.plotting` (figures): stage ``figures`` (notebook ``06``).
"""
