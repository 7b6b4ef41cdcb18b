"""Building configs for the config tests."""

from __future__ import annotations

import copy
from typing import Any


def with_changes(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of ``base`` with dotted-path overrides, e.g. ``{"train.lr": 0}``."""
    data = copy.deepcopy(base)
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = data
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return data
