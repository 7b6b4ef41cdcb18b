"""'Did you mean' for a misspelt name: a config key, a manifest column."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(name: str, choices: Iterable[object]) -> str:
    """`` (did you mean 'crp'?)`` for the choice ``name`` most likely meant: the same name in
    another case, else the closest spelling (difflib, ratio 0.6 or more), else the one choice
    that ``name`` abbreviates (``temp`` for ``temperature``); ``""`` when none is."""
    texts = [str(c) for c in choices]
    same = [c for c in texts if c.casefold() == name.casefold() and c != name]
    longer = [c for c in texts if len(name) >= 3 and c.casefold().startswith(name.casefold()) and c != name]
    close = same or difflib.get_close_matches(name, texts, n=1) or (longer if len(longer) == 1 else [])
    return f" (did you mean '{close[0]}'?)" if close else ""
