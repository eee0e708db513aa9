"""Names of the method's parts, importable without torch (the engines that validate a model
folder before, or instead of, loading torch read them here)."""

from __future__ import annotations

#: the scorers of :data:`uwe.core.scoring.SCORERS` (which checks that it has exactly these)
SCORER_NAMES = ("sli", "mean", "maxsim", "sli_mean_target", "sli_cos")
