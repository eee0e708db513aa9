"""The method of the paper, in one place: what a reader checks against arXiv 2511.07969.

* :mod:`uwe.core.scoring`: the scorers over token embeddings -- soft late interaction (SLI, the
  reference formula), mean pooling, hard MaxSim, SLI with a mean-pooled target;
* :mod:`uwe.core.losses`: the bidirectional many-to-many InfoNCE (and the one-to-one and
  symmetric ablations);
* :mod:`uwe.core.batching`: sampling batches of pairs from the bipartite training graphs;
* :mod:`uwe.model.encoder`: the token encoder (one shared transformer);
* :mod:`uwe.train.step`: one training step's scores, from a batch to the loss' inputs.

Stages: ``train`` (and the ``transfer`` / ``ablations`` runs, which train the same way);
``evaluate``, ``baselines``, ``latency`` score with :mod:`uwe.core.scoring` through
:mod:`uwe.infer`.
"""
