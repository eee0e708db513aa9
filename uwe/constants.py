"""The package's shared constants, in one home and importable without torch (the engines that
validate a model folder before, or instead of, loading torch read them here)."""

from __future__ import annotations

#: the scorers of :data:`uwe.core.scoring.SCORERS` (which checks that it has exactly these)
SCORER_NAMES = ("sli", "mean", "maxsim", "sli_mean_target", "sli_cos")
#: the loss variants of :data:`uwe.core.losses.VARIANTS` (which checks that it has exactly these)
LOSS_NAMES = ("one_to_one", "symmetric", "many_to_many", "many_to_many_one_direction")
#: the dtypes of the frozen-bottom cache (:data:`uwe.train.frozen.DTYPES`, which checks them)
CACHE_DTYPES = ("float16", "bfloat16", "float32")
#: the scorers whose target side is one unit mean-pooled vector per target (an index of them
#: holds the pooled vectors alone: uwe.core.scoring.pooled_target_scores)
POOLED_TARGET_SCORERS = ("mean", "sli_mean_target")

#: the lexical baselines by name (uwe.model.baselines; the registry resolves them without it)
LEXICAL_MODELS = ("bm25", "tfidf_char")

#: the floor under a norm before dividing by it (unit vectors of zero vectors stay zero)
EPS = 1e-12
#: shifted softmax logits are clamped here before exp(): a clamped term weighs < e^-80 of the
#: row's largest (far below float32 rounding) and exp() stays out of the slow subnormal range
EXP_FLOOR = -80.0
