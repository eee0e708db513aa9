"""The one error style of the project's tools: a bad input is one line naming the file, row or
value and what to do, never a traceback or a silently wrong answer.

:class:`InputError` is a ``ValueError``, so library callers that catch ``ValueError`` keep
working; the command line (:mod:`uwe.cli`) prints ``uwe: error: <message>`` for it and exits
with status 2. :func:`did_you_mean` adds the closest known names to an "unknown name" message.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class InputError(ValueError):
    """An expected error caused by the user's input; its message is the whole report."""


class CLIError(InputError):
    """An expected user error of the command line: reported as one line, exit status 2."""


def did_you_mean(value: str, choices: Iterable[str], n: int = 3) -> str:
    """``" (did you mean 'x'?)"``, ``" (did you mean 'x' or 'y'?)"`` or ``""``: the known names
    closest to ``value`` (case-insensitive, :func:`difflib.get_close_matches`)."""
    choices = [str(c) for c in choices]
    lowered = {c.lower(): c for c in choices}
    hits = difflib.get_close_matches(str(value).lower(), list(lowered), n=n, cutoff=0.6)
    hits = [lowered[h] for h in hits if lowered[h] != value]
    if not hits:
        return ""
    quoted = [repr(h) for h in hits]
    return f" (did you mean {' or '.join(quoted) if len(quoted) < 3 else ', '.join(quoted)}?)"


def unknown(what: str, value: str, choices: Iterable[str], hint: str = "") -> InputError:
    """``InputError("unknown <what> 'value' (did you mean ...?); known: a, b, c[; hint]")``."""
    choices = list(choices)
    known = ", ".join(map(str, choices)) or "(none)"
    return InputError(f"unknown {what} {value!r}{did_you_mean(value, choices)}; known: {known}"
                      + (f"; {hint}" if hint else ""))
