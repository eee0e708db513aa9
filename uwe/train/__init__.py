"""Running the method: the training loop, its checkpoints and its distributed set-up.

* :mod:`uwe.train.loop`: :class:`~uwe.train.loop.Trainer` and :func:`~uwe.train.loop.train`;
* :mod:`uwe.train.frozen`: the frozen-bottom cache (the bottom layers' outputs computed once);
* :mod:`uwe.train.negatives`: mined hard negatives.

Stages: ``train`` (notebook ``02_train``), ``transfer@*`` and ``ablations@*`` (``04_variant``).
"""
