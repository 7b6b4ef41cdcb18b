"""Every recipe config in ``examples/`` is a valid config (a schema change must update them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from polymodal.config import load_config

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").rglob("*.yaml"))


def test_the_examples_are_found():
    assert len(EXAMPLES) >= 4


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_example_config_is_valid(path):
    config = load_config(path)
    assert config.modalities
