"""The anomaly tests' data: written once per module (see :mod:`tests.anomaly.helpers`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import write_splits


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_splits(tmp_path_factory.mktemp("anomaly"))
