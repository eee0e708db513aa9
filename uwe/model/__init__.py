"""The model, below training and serving: what both wings build on.

* :mod:`uwe.model.uwe_model`: :class:`~uwe.model.uwe_model.UWEModel` (encoder + scorer; index
  targets, score, rank, in torch), ``save`` / ``load``;
* :mod:`uwe.model.encoder`: the shared token encoder and strict backbone loading;
* :mod:`uwe.model.folder` / :mod:`uwe.model.st_folder`: UWE and sentence-transformers folders,
  checked before anything loads; :mod:`uwe.model.model_card`: a folder's ``README.md``;
* :mod:`uwe.model.baselines`: BM25, char TF-IDF, the sentence-embedding generalists;
  :mod:`uwe.model.pretrained`: the pretrained encoders that install from PyPI;
* :mod:`uwe.model.registry`: which model a spec names, with an explicit kind, for every caller.

Training (:mod:`uwe.train`) and serving (:mod:`uwe.infer`) import from here; this floor imports
neither (``docs/architecture.md``).
"""
