"""YAML reading with YAML 1.2 booleans.

PyYAML follows YAML 1.1, where ``on``, ``off``, ``yes``, ``no``, ``y`` and ``n`` are booleans, so
``transfer: {method: dann, on: fused}`` would arrive with the key ``True``. Here only
``true`` / ``false`` (any capitalisation PyYAML accepts) are booleans, as in YAML 1.2 and JSON;
the other words stay strings. Boolean fields still accept ``yes`` / ``on``: pydantic turns those
strings into ``True``.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

_BOOL = "tag:yaml.org,2002:bool"


class Yaml12BoolLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` whose only implicit booleans are true/True/TRUE/false/False/FALSE."""


Yaml12BoolLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Yaml12BoolLoader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def load_yaml(text: str) -> Any:
    """Parse YAML text (safe: plain data only) with YAML 1.2 booleans.

    Raises:
        yaml.YAMLError: the text is not valid YAML.
    """
    return yaml.load(text, Loader=Yaml12BoolLoader)  # noqa: S506 - a SafeLoader subclass


__all__ = ["Yaml12BoolLoader", "load_yaml"]
