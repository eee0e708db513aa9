"""Running the method: the training loop, its step, checkpoints and distributed set-up.

* :mod:`uwe.train.loop`: :class:`~uwe.train.loop.Trainer`, :func:`~uwe.train.loop.train` and
  :func:`~uwe.train.loop.train_main_model` (the ``train`` stage's one entry, shared by the
  notebook and ``scripts/train.py``);
* :mod:`uwe.train.step`: one training step's scores, from a batch to the loss' inputs;
* :mod:`uwe.train.frozen`: the frozen-bottom cache (the bottom layers' outputs computed once);
* :mod:`uwe.train.negatives`: mined hard negatives.

Imports the model floor and below, never serving code (``docs/architecture.md``). Stages:
``train`` (notebook ``02_train``), ``transfer@*``, ``ablations@*`` and ``budgets@*``
(``04_variant``).
"""
