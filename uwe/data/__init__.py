"""The data: fetched and verified sources, leakage-free splits, WorkBench tasks and graphs.

* :mod:`uwe.data.fetch`: fetch and checksum the sources (stage ``fetch``, notebook ``00``);
* :mod:`uwe.data.sources`: readers of ESCO, JobBERT, HOUSE/TECH, SkillSkape, O*NET, SkillsFuture;
* :mod:`uwe.data.splits`, :mod:`uwe.data.curation`: the splits, task files and training graphs
  (stage ``curate``, notebook ``01``); :mod:`uwe.data.audit`: the leakage audit;
* :mod:`uwe.data.tasks`: loading a curated task (every evaluating stage).
"""
