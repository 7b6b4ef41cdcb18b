"""What a single value means, shared by training-time reading and the torch-free deploy runtime
(standard library only)."""

from __future__ import annotations

import math


def blank(value: object) -> bool:
    """True for the values that mean 'missing': None, NaN and blank strings (pandas' NA is one
    more, for manifests: :func:`polymodal.data.cells.is_empty`)."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()
