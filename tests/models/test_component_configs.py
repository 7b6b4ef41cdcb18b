"""Config checks shared by every registered component (encoders, fusions, heads): an unknown key
and a negative number are errors that name the key. Driven by the registries (STYLE rule 16)."""

from __future__ import annotations

import pytest

import polymodal.models  # noqa: F401 - fills the registries
from polymodal.config.base import validate
from polymodal.errors import ConfigError
from polymodal.models.registry import ENCODERS, FUSIONS, HEADS

from .helpers import numeric_fields, required_file_fields

CONFIG_CLASSES = [cfg_cls for registry in (ENCODERS, FUSIONS, HEADS) for cfg_cls, _ in registry.items()]


def base(cfg_cls: type) -> dict:
    """The smallest valid settings: placeholder paths for required file fields."""
    return {name: "some/folder" for name in required_file_fields(cfg_cls)}


def numeric_cases(classes=CONFIG_CLASSES) -> list:
    return [pytest.param(cfg_cls, field, id=f"{cfg_cls.__name__}.{field}")
            for cfg_cls in classes for field in numeric_fields(cfg_cls, base(cfg_cls))]


@pytest.mark.parametrize("cfg_cls", [pytest.param(c, id=c.__name__) for c in CONFIG_CLASSES])
def test_config_refuses_unknown_key(cfg_cls):
    with pytest.raises(ConfigError) as info:
        validate(cfg_cls, {**base(cfg_cls), "no_such_key": 1})
    assert "no_such_key" in str(info.value) and "allowed keys" in str(info.value)


@pytest.mark.parametrize(("cfg_cls", "field"), numeric_cases())
def test_config_refuses_negative_numbers(cfg_cls, field):
    with pytest.raises(ConfigError) as info:
        validate(cfg_cls, {**base(cfg_cls), field: -1})
    assert field in str(info.value)
