"""UWE inside WorkRB (techwolf-ai/workrb, Apache-2.0), the paper's released benchmark toolkit.

Install the optional extra (``pip install -e '.[workrb]'``, pins ``workrb==0.6.0``); ``workrb``
is imported lazily, so ``import uwe.workrb_adapter`` works without it and the first use raises
an ImportError that says what to install.

* :func:`as_workrb_model` -> a ``workrb.models.ModelInterface`` around any model with the
  harness contract (a :class:`uwe.model.uwe_model.UWEModel`, a baseline, or a model spec,
  loaded as ``uwe rank`` loads it: :meth:`uwe.infer.ranker.Ranker.model`).
  ``compute_rankings(queries, targets, ...)`` returns the ``(n_q, n_t)`` SLI score matrix
  (``index_targets`` once, then ``score_index``); classification ranks texts against the label
  texts the same way. WorkRB's input types (job title, skill name, ...) are ignored: UWE is
  one task-agnostic encoder.
* :func:`workrb_task` / :func:`curated_workrb_task` -> a WorkRB ``RankingTask`` built from local
  data (a :class:`uwe.data.dataset.RankingDataset`, e.g. a curated WorkBench task), so
  ``workrb.evaluate(model, [task], output_folder=...)`` scores it with WorkRB's own metrics.
  WorkRB's own tasks (``workrb.tasks.ESCOJob2SkillRanking(split="test", languages=["en"])``,
  ...) work as well wherever their data can be downloaded.

Metrics agree with :mod:`uwe.bench.evaluation` except on ties: WorkRB ranks with an unstable
``np.argsort``, :mod:`uwe.core.metrics` breaks ties by the lower target index.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

WORKRB_VERSION = "0.6.0"
INSTALL_HINT = (
    f"the WorkRB adapter needs the optional 'workrb' extra: "
    f"pip install 'workrb=={WORKRB_VERSION}' (or pip install -e '.[workrb]')"
)

#: uwe task group -> (WorkRB task group member, query input type, target input type)
GROUP_TYPES: dict[str, tuple[str, str, str]] = {
    "job2skill": ("JOB2SKILL", "JOB_TITLE", "SKILL_NAME"),
    "skill2job": ("SKILL2JOB", "SKILL_NAME", "JOB_TITLE"),
    "job_norm": ("JOB_NORMALIZATION", "JOB_TITLE", "JOB_TITLE"),
    "skill_norm": ("SKILL_NORMALIZATION", "SKILL_NAME", "SKILL_NAME"),
    "skill_extraction": ("SKILL_EXTRACTION", "SKILL_SENTENCE", "SKILL_NAME"),
    "skill_sim": ("SEMANTIC_SIMILARITY", "SKILL_NAME", "SKILL_NAME"),
}


def require_workrb():
    """Import ``workrb`` or raise an ImportError naming the extra to install."""
    try:
        import workrb
    except ImportError as err:
        raise ImportError(INSTALL_HINT) from err
    return workrb


@functools.cache
def _model_class() -> type:
    require_workrb()
    import torch
    from workrb.models.base import ModelInterface

    class UWEWorkRBModel(ModelInterface):
        """A uwe scoring model as a WorkRB model (see module doc)."""

        def __init__(self, model: Any, name: str | None = None, description: str | None = None):
            self.model = model
            self._name = name or f"UWE-{getattr(model, 'name', type(model).__name__)}"
            self._description = description or (
                "Unified Work Embeddings (arXiv 2511.07969): one bi-encoder, soft late "
                "interaction over token embeddings"
            )

        @property
        def name(self) -> str:
            return self._name

        @property
        def description(self) -> str:
            return self._description

        @property
        def citation(self) -> str | None:
            return (
                "@article{delange2025uwe, title={Unified Work Embeddings: Contrastive "
                "Learning of a Bidirectional Multi-task Ranker}, author={De Lange, Matthias "
                "and Decorte, Jens-Joris and Van Hautte, Jeroen}, journal={arXiv preprint "
                "arXiv:2511.07969}, year={2025}}"
            )

        def _compute_rankings(
            self,
            queries: list[str],
            targets: list[str],
            query_input_type: Any = None,
            target_input_type: Any = None,
        ) -> torch.Tensor:
            index = self.model.index_targets(list(targets))
            scores = np.asarray(self.model.score_index(list(queries), index), dtype=np.float32)
            return torch.from_numpy(scores)  # (n_q, n_t)

        def _compute_classification(
            self,
            texts: list[str],
            targets: list[str],
            input_type: Any = None,
            target_input_type: Any = None,
        ) -> torch.Tensor:
            return self._compute_rankings(texts, targets, input_type, target_input_type)

        @property
        def classification_label_space(self) -> list[str] | None:
            return None  # no classification head: labels are ranked as texts

    return UWEWorkRBModel


def as_workrb_model(
    model: Any, name: str | None = None, device: str = "auto", batch_size: int = 128
):
    """A WorkRB model around ``model`` (an object with ``index_targets``/``score_index``, or a
    model spec, loaded by the ranker's API: :meth:`uwe.infer.ranker.Ranker.model`, the torch
    model of :func:`uwe.infer.loader.load_model`)."""
    if isinstance(model, str):
        from uwe.infer.ranker import Ranker, RankerOptions

        options = RankerOptions(model=model, device=device, batch_size=batch_size,
                                engine="torch", progress=True)
        model = Ranker(options).model()
    return _model_class()(model, name=name)


@functools.cache
def _task_class() -> type:
    require_workrb()
    from workrb.tasks.abstract.base import LabelType, Language
    from workrb.tasks.abstract.ranking_base import RankingDataset, RankingTask, RankingTaskGroup
    from workrb.types import ModelInputType

    class LocalRankingTask(RankingTask):
        """A WorkRB ranking task over in-memory data (one English dataset, id ``"en"``)."""

        def __init__(
            self,
            dataset: Any,
            name: str,
            group: str = "job2skill",
            split: str = "test",
            description: str = "",
        ):
            if group not in GROUP_TYPES:
                raise ValueError(f"unknown task group {group!r}; valid: {sorted(GROUP_TYPES)}")
            self._data, self._name, self._group = dataset, name, group
            self._description = description or f"local ranking task {name}"
            super().__init__(languages=["en"], split=split)

        name = property(lambda self: self._name)
        description = property(lambda self: self._description)
        supported_query_languages = property(lambda self: [Language.EN])
        supported_target_languages = property(lambda self: [Language.EN])
        label_type = property(lambda self: LabelType.MULTI_LABEL)
        task_group = property(lambda self: RankingTaskGroup[GROUP_TYPES[self._group][0]])
        query_input_type = property(lambda self: ModelInputType[GROUP_TYPES[self._group][1]])
        target_input_type = property(lambda self: ModelInputType[GROUP_TYPES[self._group][2]])

        def load_dataset(self, dataset_id: str, split: Any) -> RankingDataset:
            ds = self._data
            return RankingDataset(
                query_texts=list(ds.queries),
                target_indices=[list(map(int, p)) for p in ds.positives],
                target_space=list(ds.targets),
                dataset_id=dataset_id,
            )

    return LocalRankingTask


def workrb_task(
    dataset: Any, name: str | None = None, group: str | None = None, description: str = ""
):
    """A WorkRB ``RankingTask`` over ``dataset`` (anything with ``queries``, ``targets`` and
    ``positives``, e.g. :class:`uwe.data.dataset.RankingDataset`); ``group`` defaults to the uwe
    task group of ``dataset.name`` (else job2skill, which only sets WorkRB's input types and
    grouping)."""
    from uwe.data.tasks import TASKS_BY_NAME

    ds_name = getattr(dataset, "name", "local")
    if group is None:
        spec = TASKS_BY_NAME.get(ds_name)
        group = spec.group if spec is not None and spec.group in GROUP_TYPES else "job2skill"
    split = getattr(dataset, "split", "test")
    family = getattr(dataset, "family", "local")
    return _task_class()(
        dataset,
        name=name or f"uwe/{family}/{ds_name}",
        group=group,
        split=split if split in ("val", "test") else "test",
        description=description,
    )


def curated_workrb_task(
    name: str, family: str = "heldout", split: str = "test", root: str = "data/curated"
):
    """A curated WorkBench task (:func:`uwe.data.tasks.load_task`) as a WorkRB task."""
    from uwe.data.tasks import load_task

    return workrb_task(load_task(name, family=family, split=split, root=root))


def __getattr__(name: str) -> Any:
    """``UWEWorkRBModel`` / ``LocalRankingTask`` are created on first access (lazy workrb)."""
    if name == "UWEWorkRBModel":
        return _model_class()
    if name == "LocalRankingTask":
        return _task_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
