"""Schema building blocks and the one place where validation errors are turned into messages."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from polymodal.errors import ConfigError

# Fields whose value selects a member of a discriminated union; pydantic puts that value into
# the error location, and we take it out again so that paths match what the user wrote.
DISCRIMINATORS = ("kind", "name", "objective", "method")


class StrictModel(BaseModel):
    """A config section: unknown keys are errors that list the allowed keys."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown_keys(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        allowed = sorted(info.alias or name for name, info in cls.model_fields.items())
        unknown = [key for key in data if key not in allowed]
        if unknown:
            hints = []
            for key in unknown:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hints.append(f"'{key}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
            raise PydanticCustomError(
                "unknown_key",
                "unknown key {keys}; allowed keys: {allowed}",
                {"keys": ", ".join(hints), "allowed": ", ".join(allowed)},
            )
        return data


def _user_path(loc: tuple, data: Any) -> str:
    """Turn a pydantic error location into the key path the user wrote.

    Drops the union tags pydantic inserts (the value of ``kind``/``name``...) by walking the input
    alongside the location.
    """
    parts: list[str] = []
    node = data
    for element in loc:
        if isinstance(node, Mapping):
            if element not in node and any(node.get(d) == element for d in DISCRIMINATORS):
                continue  # the tag of a discriminated union
            parts.append(str(element))
            node = node.get(element)
        elif isinstance(element, str) and node is not None:
            continue  # the member label of a plain union, e.g. 'int' in int | list[int]
        else:
            parts.append(str(element))
            is_index = isinstance(node, list | tuple) and isinstance(element, int) and element < len(node)
            node = node[element] if is_index else None
    return ".".join(parts) or "<root>"


def format_validation_error(error: ValidationError, data: Any) -> list[str]:
    """One line per problem: ``key.path: what is wrong (got VALUE)``."""
    lines = []
    for err in error.errors(include_url=False):
        path = _user_path(tuple(err["loc"]), data)
        message = err["msg"]
        if err["type"] == "missing":
            lines.append(f"{path}: required key is missing")
            continue
        if err["type"] == "value_error" and message.startswith("Value error, "):
            message = message[len("Value error, "):]
        got = err.get("input")
        shown = "" if err["type"] in ("unknown_key",) or isinstance(got, Mapping) else f" (got {got!r})"
        lines.append(f"{path}: {message}{shown}")
    return lines


def validate(model: type[BaseModel], data: Any, source: str | None = None) -> Any:
    """Validate ``data`` against ``model``; raise :class:`ConfigError` listing every problem."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, data), source=source) from None
