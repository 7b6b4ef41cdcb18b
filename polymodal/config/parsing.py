"""Config file parsing: YAML with YAML 1.2 booleans, and JSON; a repeated key is an error in both.

PyYAML follows YAML 1.1, where ``on``, ``off``, ``yes``, ``no``, ``y`` and ``n`` are booleans, so
``transfer: {method: dann, on: fused}`` would arrive with the key ``True``. Here only
``true`` / ``false`` (any capitalisation PyYAML accepts) are booleans, as in YAML 1.2 and JSON;
the other words stay strings. Boolean fields still accept ``yes`` / ``on``: pydantic turns those
strings into ``True``.

A key given twice in one mapping is an error (:class:`DuplicateKeyError`, naming the key path and,
for YAML, both lines); PyYAML and the json module would silently keep the last value.
"""

from __future__ import annotations

import json
import re
from collections import Counter
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


class DuplicateKeyError(yaml.YAMLError):
    """Keys given more than once in one mapping.

    Attributes:
        problems: one line per repeated key: ``key.path: duplicate key (first on line A, again on line B)...``.
        data: the document read with the last value of each repeated key, so that its other
            problems can be listed beside these.
    """

    def __init__(self, problems: list[str], data: Any = None):
        self.problems = problems
        self.data = data
        super().__init__("; ".join(problems))


_MERGE = "tag:yaml.org,2002:merge"


def duplicate_keys(loader: yaml.SafeLoader, root: yaml.Node) -> list[str]:
    """Every key that a mapping of the node tree ``root`` holds twice, with its path and lines."""
    problems: list[str] = []
    seen_nodes: set[int] = set()  # anchors and aliases can share (or nest) nodes

    def walk(node: yaml.Node, path: list[str]) -> None:
        if id(node) in seen_nodes:
            return
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first_line: dict[Any, int] = {}
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.tag != _MERGE:
                    key = loader.construct_object(key_node)
                    line = key_node.start_mark.line + 1
                    where = ".".join([*path, str(key)])
                    if key in first_line:
                        problems.append(f"{where}: duplicate key (first on line {first_line[key]}, again on line "
                                        f"{line}); a key may appear only once per mapping")
                    else:
                        first_line[key] = line
                    walk(value_node, [*path, str(key)])
                else:
                    walk(value_node, path)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, [*path, str(index)])

    walk(root, [])
    return problems


def load_yaml(text: str) -> Any:
    """Parse YAML text (safe: plain data only) with YAML 1.2 booleans.

    Raises:
        DuplicateKeyError: a mapping holds a key twice (every such key is listed).
        yaml.YAMLError: the text is not valid YAML.
    """
    loader = Yaml12BoolLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        problems = duplicate_keys(loader, node)
        data = loader.construct_document(node)
        if problems:
            raise DuplicateKeyError(problems, data)
        return data
    finally:
        loader.dispose()


def load_json(text: str) -> Any:
    """Parse JSON text.

    Raises:
        DuplicateKeyError: an object holds a key twice (every such key is listed with its path).
        json.JSONDecodeError: the text is not valid JSON.
    """
    # id of a parsed object -> (the object, its repeated keys); holding the object keeps its id from
    # being reused by a later one should a repeated key's value be dropped
    repeated: dict[int, tuple[dict, list[tuple[str, int]]]] = {}

    def build(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        if len(obj) < len(pairs):
            repeated[id(obj)] = (obj, [(k, n) for k, n in Counter(k for k, _ in pairs).items() if n > 1])
        return obj

    data = json.loads(text, object_pairs_hook=build)
    if not repeated:
        return data
    problems: list[str] = []

    def walk(value: Any, path: list[str]) -> None:
        if isinstance(value, dict):
            problems.extend(f"{'.'.join([*path, key])}: duplicate key (given {n} times); a key may appear only "
                            f"once per object" for key, n in repeated.get(id(value), (None, []))[1])
            for key, item in value.items():
                walk(item, [*path, key])
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, [*path, str(index)])

    walk(data, [])
    raise DuplicateKeyError(problems, data)


__all__ = ["DuplicateKeyError", "Yaml12BoolLoader", "duplicate_keys", "load_json", "load_yaml"]
