"""Two configs compared key by key: the dotted keys whose values differ, and each change in words.

One comparison serves every caller: a fitted model's config changed under it
(:mod:`polymodal.config.fitted`, :data:`WHEN_FITTED`), ``train --resume`` and ``tune --resume``
with another config than the run's (:data:`ARROW`). A key one side lacks compares as None.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

ARROW = "{key}: {before!r} -> {after!r}"  # train --resume, tune --resume
WHEN_FITTED = "{key}: {before!r} when fitted, now {after!r}"  # a fitted model's config changed under it


class _Absent:
    """A key one config lacks (of another component), said as ``(absent)``."""

    def __repr__(self) -> str:
        return "(absent)"


ABSENT = _Absent()


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as ``{"a.b.c": leaf}`` (a list is a leaf)."""
    if not isinstance(value, dict):
        return {prefix: value}
    out: dict[str, Any] = {}
    for key, item in value.items():
        out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return out


def changes(before: Any, after: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """``(dotted key, before, after)`` for every value that differs between two nested dicts, in
    the order the keys first appear (a dict on one side only is one change; a key one side lacks
    compares, and is given, as None)."""
    if isinstance(before, dict) and isinstance(after, dict):
        return [change for key in dict.fromkeys([*before, *after])
                for change in changes(before.get(key), after.get(key), f"{prefix}{key}.")]
    return [] if before == after else [(prefix.rstrip("."), before, after)]


def changed_keys(saved: Mapping[str, Any], given: Mapping[str, Any], unchecked: Collection[str] = ()) -> list[str]:
    """The dotted keys of two flattened configs (:func:`flatten`) whose values differ (one absent
    from either counts), sorted; a key of ``unchecked`` and those under it aside."""
    return sorted(key for key, _, _ in changes(dict(saved), dict(given))
                  if not any(key == k or key.startswith(f"{k}.") for k in unchecked))


def said_change(key: str, before: Any, after: Any, wording: str = ARROW) -> str:
    """One change in words: ``wording`` (:data:`ARROW`, :data:`WHEN_FITTED`) with the dotted key
    and the two values as Python writes them (:data:`ABSENT` as ``(absent)``)."""
    return wording.format(key=key, before=before, after=after)


def said_changes(saved: Mapping[str, Any], given: Mapping[str, Any], changed: list[str], shown: int = 10) -> str:
    """``head.dropout: 0.1 -> 0.3; fusion.dim: (absent) -> 64``: the first ``shown`` of the
    ``changed`` keys (:func:`changed_keys`) of two flattened configs with the old value and the new."""
    more = f" (and {len(changed) - shown} more)" if len(changed) > shown else ""
    return "; ".join(said_change(k, saved.get(k, ABSENT), given.get(k, ABSENT)) for k in changed[:shown]) + more
