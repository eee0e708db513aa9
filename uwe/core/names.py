"""Names of the method's parts, importable without torch (the engines that validate a model
folder before, or instead of, loading torch read them here)."""

from __future__ import annotations

#: the scorers of :data:`uwe.core.scoring.SCORERS` (which checks that it has exactly these)
SCORER_NAMES = ("sli", "mean", "maxsim", "sli_mean_target", "sli_cos")
#: the loss variants of :data:`uwe.core.losses.VARIANTS` (which checks that it has exactly these)
LOSS_NAMES = ("one_to_one", "symmetric", "many_to_many", "many_to_many_one_direction")
#: the dtypes of the frozen-bottom cache (:data:`uwe.train.frozen.DTYPES`, which checks them)
CACHE_DTYPES = ("float16", "bfloat16", "float32")
