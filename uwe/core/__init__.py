"""The method of the paper, in one place: what a reader checks against arXiv 2511.07969, as
pure functions.

* :mod:`uwe.core.scoring`: the scorers over token embeddings -- soft late interaction (SLI, the
  reference formula), mean pooling, hard MaxSim, SLI with a mean-pooled target;
* :mod:`uwe.core.losses`: the bidirectional many-to-many InfoNCE (and the one-to-one and
  symmetric ablations);
* :mod:`uwe.core.batching`: sampling batches of pairs from the bipartite training graphs;
* :mod:`uwe.core.metrics`: exact MAP, RP@10, MRR, recall@k, nDCG and macro averages;
* :mod:`uwe.core.softness` (how soft SLI's attention is), :mod:`uwe.core.lengths` (texts
  grouped by token length).

The encoder and the model are one floor up (:mod:`uwe.model`), the training step in
:mod:`uwe.train.step`.
"""
