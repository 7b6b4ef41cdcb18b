"""What a fitted model is bound to: the config sections that define its network and preprocessing
(every one but :data:`RUNTIME_SECTIONS`), and the refusal of a config changed under it."""

from __future__ import annotations

from typing import Any

from polymodal.config.diff import WHEN_FITTED, changes, said_change
from polymodal.config.root import Config, config_to_dict
from polymodal.errors import ConfigError

RUNTIME_SECTIONS = ("data", "train", "report", "tune")  # a fitted model's config may change these


def model_settings(config: Config) -> dict[str, Any]:
    """The config sections that define a fitted model, as plain data."""
    settings = config_to_dict(config)
    for section in RUNTIME_SECTIONS:
        settings.pop(section, None)
    return settings


def check_unchanged(fitted: dict[str, Any] | None, config: Config) -> None:
    """Refuse ``config`` when its model-defining sections differ from ``fitted`` (what
    :func:`model_settings` gave when the model was fitted or loaded; None: nothing to compare):
    the network and preprocessing follow the config they were fitted with.

    Raises:
        ConfigError: every changed key, with its value then and now.
    """
    if fitted is None:
        return
    now = model_settings(config)
    if now == fitted:
        return
    changed = [said_change(key, before, after, WHEN_FITTED) for key, before, after in changes(fitted, now)]
    raise ConfigError(changed + ["the fitted network and preprocessing follow the config they were fitted with: put "
                                 "the value(s) back, or fit again (after a fit only "
                                 f"{', '.join(s + '.*' for s in RUNTIME_SECTIONS)} may change)"],
                      source="the fitted model's config")
