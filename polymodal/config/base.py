"""Schema building blocks and the one place where validation errors are turned into messages."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    ModelWrapValidatorHandler,
    PrivateAttr,
    Tag,
    ValidationError,
    model_validator,
)
from pydantic.json_schema import GenerateJsonSchema, NoDefault
from pydantic_core import InitErrorDetails, PydanticCustomError, core_schema

from polymodal.errors import ConfigError
from polymodal.utils.suggest import did_you_mean

# Fields whose value selects a member of a discriminated union; pydantic puts that value into
# the error location, and we take it out again so that paths match what the user wrote.
DISCRIMINATORS = ("kind", "name", "objective", "method")


_VALIDATING: ContextVar[bool] = ContextVar("polymodal_config_validating", default=False)


@contextmanager
def validating() -> Iterator[bool]:
    """Mark the code inside as validation: an assignment a validator makes there raises pydantic's
    error (gathered with the section's other problems and reported by key path) instead of a
    :class:`ConfigError` of its own. Yields whether this is the outermost validation, that is,
    whether the caller is the user (an assignment in their code) rather than a validator."""
    outermost = not _VALIDATING.get()
    token = _VALIDATING.set(True)
    try:
        yield outermost
    finally:
        _VALIDATING.reset(token)


class StrictModel(BaseModel):
    """A config section: unknown keys are errors (the message lists the allowed keys), a boolean
    is not a number (pydantic would read ``epochs: true`` as 1), and numbers are finite (``lr: .inf``
    would train a NaN model)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=(), allow_inf_nan=False)
    # the section's dotted key in the config that holds it ('train', 'modalities.img.preprocess';
    # '' for the root), so that an assignment's error names it; None for a section on its own
    _key: str | None = PrivateAttr(default=None)

    def name_sections(self, key: str = "") -> None:
        """Record ``key`` as this section's dotted key, and each section below it its own."""
        self._key = key
        for field in type(self).model_fields:
            _name_sections(getattr(self, field), f"{key}.{field}" if key else field)

    @model_validator(mode="wrap")
    @classmethod
    def _no_bool_for_numbers(cls, data: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        """Refuse a boolean given for a number field (a field validator cannot do it for every field:
        pydantic forbids them on the discriminator fields), reported under the field's key beside
        every other problem of the section."""
        with validating():
            return cls._checked(data, handler)

    @classmethod
    def _checked(cls, data: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        found = {}
        if isinstance(data, Mapping):
            for key, value in data.items():
                field = cls.model_fields.get(key) if isinstance(key, str) else None
                problem = None if field is None else bool_for_number(field.annotation, value)
                if problem is not None:
                    found[key] = (problem, value)
        if not found:
            return handler(data)
        errors: list[InitErrorDetails] = [
            {"type": PydanticCustomError("bool_for_number", problem), "loc": (key,), "input": value}
            for key, (problem, value) in found.items()]
        try:
            handler({key: value for key, value in data.items() if key not in found})  # the section's other problems
        except ValidationError as err:
            errors += [_error_details(e) for e in err.errors(include_url=False)  # a rule across keys (at the
                       if e["loc"] and e["loc"][:1] not in [(key,) for key in found]]  # root) saw defaults
        raise ValidationError.from_exception_data(cls.__name__, errors)

    def __setattr__(self, name: str, value: Any) -> None:
        """Assignment is validated (``validate_assignment``), and a boolean for a number refused
        there too (pydantic hands the wrap validator the model, not the assigned value); a bad value
        raises :class:`ConfigError` naming the key, as a bad file does (inside a validator, pydantic's
        error, which the validation reports by key path). A section's own kind (the ``name`` of a
        fusion, the ``kind`` of a modality) cannot change in place: assign the whole section
        (``config.fusion = {"name": "late"}``)."""
        field = type(self).model_fields.get(name)
        problem = None if field is None else bool_for_number(field.annotation, value)
        key = None if self._key is None or field is None else f"{self._key}.{name}" if self._key else name
        with validating() as outermost:  # outermost: the user's assignment, not a validator's
            try:
                if problem is not None:
                    raise ValidationError.from_exception_data(type(self).__name__, [
                        {"type": PydanticCustomError("bool_for_number", problem), "loc": (name,), "input": value}])
                super().__setattr__(name, value)
            except ValidationError as err:
                if not outermost:
                    raise
                lines = format_validation_error(err, {name: value}, type(self))
                if name in DISCRIMINATORS and field is not None and get_origin(field.annotation) is Literal:
                    lines = [f"{name}: a section's {name} cannot change in place ({getattr(self, name)!r} to "
                             f"{value!r}); assign a new section instead, e.g. config.<section> = "
                             f"{{'{name}': {value!r}, ...}}"]
                if self._key:  # the lines name keys within this section: named within the config
                    lines = [f"{self._key}.{line}" for line in lines]
                where = f"config.{key}" if key is not None else f"{type(self).__name__}.{name}"
                raise ConfigError(lines, source=f"an assignment to {where}") from None
        if key is not None:  # a section assigned whole: its sections named below this one
            _name_sections(getattr(self, name), key)


def _name_sections(value: Any, key: str) -> None:
    """Tell the sections in ``value`` (a section, or a dict or list of them) their dotted key."""
    if isinstance(value, StrictModel):
        value.name_sections(key)
    elif isinstance(value, Mapping):
        for name, item in value.items():
            _name_sections(item, f"{key}.{name}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _name_sections(item, f"{key}.{index}")


def _error_details(error: Any) -> InitErrorDetails:
    """A reported error made raisable again: a pydantic error type as it was, a custom one as a
    :class:`PydanticCustomError` with the same type name and message."""
    details: InitErrorDetails = {"type": error["type"], "loc": error["loc"], "input": error["input"]}
    if "ctx" in error:
        details["ctx"] = error["ctx"]
    try:
        ValidationError.from_exception_data("check", [details])  # builds (not raises) a known type
        return details
    except (KeyError, TypeError, ValueError):  # pydantic-core: unknown error type
        pass
    return {"type": PydanticCustomError(error["type"], error["msg"]), "loc": error["loc"], "input": error["input"]}


def _takes_bool(member: Any) -> bool:
    return member is bool or member is Any or (get_origin(member) is Literal and any(
        isinstance(v, bool) for v in get_args(member)))


def _item_annotation(container: Any, index: int) -> Any:
    """The annotation of item ``index`` of a ``list[A]`` / ``tuple[A, B]`` / ``tuple[A, ...]``."""
    args = get_args(container)
    if not args:
        return Any
    if get_origin(container) is tuple and not (len(args) == 2 and args[1] is Ellipsis):
        return args[index] if index < len(args) else Any
    return args[0]


def bool_for_number(annotation: Any, value: Any) -> str | None:
    """What is wrong when ``value`` puts a boolean where ``annotation`` wants a number (at any depth
    of lists, tuples and dicts), else None: ``must be an integer, not a boolean``."""
    members = _flat_members(annotation)
    if isinstance(value, bool):
        if any(_takes_bool(m) for m in members):
            return None
        numbers = [m for m in members if m in (int, float)]
        if not numbers:
            return None  # not a number field: pydantic says what it wants
        choices = [repr(v) for m in members if get_origin(m) is Literal for v in get_args(m)]
        wanted = [*choices, "an integer" if numbers == [int] else "a number"]
        listed = wanted[0] if len(wanted) == 1 else f"{', '.join(wanted[:-1])} or {wanted[-1]}"
        return f"must be {listed}, not a boolean"
    if isinstance(value, list | tuple):
        containers = [m for m in members if get_origin(m) in (list, tuple, set, frozenset)]
        for index, item in enumerate(value):
            problem = next((p for c in containers if (p := bool_for_number(_item_annotation(c, index), item))), None)
            if problem is not None:
                return f"item {index} {problem}"
    if isinstance(value, Mapping):
        dicts = [m for m in members if get_origin(m) is dict and len(get_args(m)) == 2]
        for key, item in value.items():
            problem = next((p for d in dicts if (p := bool_for_number(get_args(d)[1], item))), None)
            if problem is not None:
                return f"value of '{key}' {problem}"
    return None


def _flat_members(annotation: Any) -> list[Any]:
    """The members of a union, with Annotated wrappers and nested unions flattened
    (``Optional[Annotated[A | B, discriminator]]`` -> ``[A, B, None]``)."""
    if get_origin(annotation) is Annotated:
        return _flat_members(get_args(annotation)[0])
    if get_origin(annotation) in (Union, UnionType):
        return [member for arg in get_args(annotation) for member in _flat_members(arg)]
    return [annotation]


def _unwrap(annotation: Any, node: Any) -> Any:
    """The member of ``annotation`` (Annotated / Optional / Union) that describes ``node``."""
    if get_origin(annotation) is Annotated:
        inner, *metadata = get_args(annotation)
        chosen = _tagged_member(inner, metadata, node)
        return _unwrap(inner if chosen is None else chosen, node)
    if get_origin(annotation) in (Union, UnionType):
        members = [a for a in _flat_members(annotation) if a is not type(None)]
        models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
        if isinstance(node, Mapping):
            for model in models:
                for key in DISCRIMINATORS:
                    field = model.model_fields.get(key)
                    if field is not None and node.get(key) in get_args(field.annotation):
                        return model
            if len(models) == 1:
                return models[0]
            dicts = [m for m in members if get_origin(m) is dict]
            if dicts:
                return dicts[0]
        lists = [m for m in members if get_origin(m) is list]
        if isinstance(node, list | tuple) and lists:
            return lists[0]
    return annotation


def _tagged_member(union: Any, metadata: list[Any], node: Any) -> Any:
    """The member of a union with a callable ``Discriminator`` that it picks for ``node`` (None
    when the union has none, or it picks no member)."""
    choose = next((m.discriminator for m in metadata if isinstance(m, Discriminator) and callable(m.discriminator)),
                  None)
    if choose is None or node is None:
        return None
    tag = choose(node)
    for member in get_args(union):
        if get_origin(member) is Annotated and any(isinstance(m, Tag) and m.tag == tag for m in get_args(member)[1:]):
            return member
    return None


def _annotation_at(root: type[BaseModel], parts: list[str], data: Any) -> Any:
    """The annotation describing the value at the user key path ``parts`` (None if unknown)."""
    annotation: Any = root
    node = data
    for part in parts:
        annotation = _unwrap(annotation, node)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(part)
            if field is None:
                return None
            annotation = field.annotation
        elif get_origin(annotation) is dict:
            annotation = get_args(annotation)[1]
        elif get_origin(annotation) is list and part.isdigit():
            annotation = get_args(annotation)[0]
        else:
            return None
        node = _node(node, [part])
    return annotation


def default_selector(root: type[BaseModel], parts: list[str], data: Any) -> dict[str, Any] | None:
    """The selector (``{"name": "mlp"}``) of the component a section at key path ``parts`` holds
    by default, where the section's default is a component (``head``, a modality's ``encoder``);
    None where it has no such default (a section of plain settings, a dict's new entry)."""
    parent = _unwrap(_annotation_at(root, parts[:-1], data), _node(data, parts[:-1])) if len(parts) > 1 else root
    if not (isinstance(parent, type) and issubclass(parent, BaseModel)):
        return None
    field = parent.model_fields.get(parts[-1])
    if field is None or (field.default_factory is None and not isinstance(field.default, BaseModel)):
        return None
    default = field.get_default(call_default_factory=True)
    if not isinstance(default, BaseModel):
        return None
    return next(({key: getattr(default, key)} for key in DISCRIMINATORS if key in type(default).model_fields), None)


def _union_tags(annotation: Any) -> list[str]:
    """The discriminator values a (discriminated) union accepts."""
    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    tags = []
    for member in _flat_members(annotation):
        if isinstance(member, type) and issubclass(member, BaseModel):
            for key in DISCRIMINATORS:
                field = member.model_fields.get(key)
                if field is not None and get_origin(field.annotation) is Literal:
                    tags += [str(v) for v in get_args(field.annotation)]
    return tags


def _user_path(loc: tuple, data: Any, error_type: str) -> list[str]:
    """Turn a pydantic error location into the key path the user wrote.

    Drops what pydantic inserts that the user never typed: the tag of a discriminated union
    (``audio`` in ``modalities.spoken.audio.preprocess``) and the member labels of plain unions
    (``int`` in ``int | list[int]``, ``dict[str,...]``), by walking the input alongside the location.
    """
    parts: list[str] = []
    node = data
    for i, element in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(node, Mapping):
            if element not in node and not (last and error_type == "missing"):
                continue  # a union tag or member label
            parts.append(str(element))
            node = node.get(element)
        elif isinstance(element, str) and node is not None:
            continue  # the member label of a plain union
        else:
            parts.append(str(element))
            is_index = isinstance(node, list | tuple) and isinstance(element, int) and element < len(node)
            node = node[element] if is_index else None
    return parts


# a cross-field rule names the key it is about first, relative to the section that checks it:
# "align.anchor must...", "head.name: 'rnn' needs...", "target: ..." (a single key needs the colon)
RULE_KEY = re.compile(r"^(?P<key>[A-Za-z_]\w*(?:\.[\w-]+)*)(?P<colon>:?) (?P<rest>.+)$", re.DOTALL)


def _rule_path(message: str, parts: list[str], root: type[BaseModel], data: Any) -> tuple[str, str] | None:
    """``(full key path, rest of the message)`` when a section's rule names one of its keys first."""
    rule = RULE_KEY.match(message)
    if rule is None or not (rule["colon"] or "." in rule["key"]):
        return None
    section = _unwrap(_annotation_at(root, parts, data), _node(data, parts)) if parts else root
    if not (isinstance(section, type) and issubclass(section, BaseModel)):
        return None
    if rule["key"].split(".")[0] not in section.model_fields:
        return None
    return ".".join([*parts, rule["key"]]), rule["rest"]


def _describe(err: Any, parts: list[str], root: type[BaseModel], data: Any) -> str:
    path = ".".join(parts) or "<root>"
    kind = err["type"]
    if kind == "value_error":  # reported under the key its message starts with, when it names one
        rule = _rule_path(err["msg"].removeprefix("Value error, "), parts, root, data)
        if rule is not None:
            return f"{rule[0]}: {rule[1]}"
    if kind == "missing":
        return f"{path}: required key is missing"
    if kind == "extra_forbidden":
        section = _unwrap(_annotation_at(root, parts[:-1], data), _node(data, parts[:-1]))
        allowed = sorted(section.model_fields) if isinstance(section, type) and issubclass(section, BaseModel) else []
        hint = did_you_mean(str(parts[-1]), allowed)
        listed = f"; allowed keys: {', '.join(allowed)}" if allowed else ""  # empty: a union of several sections
        return f"{path}: unknown key '{parts[-1]}'{hint}{listed}"
    if kind in ("union_tag_not_found", "union_tag_invalid"):
        tags = _union_tags(_annotation_at(root, parts, data))
        key = str(err.get("ctx", {}).get("discriminator", "")).strip("'")
        node = _node(data, parts)
        if key and isinstance(node, Mapping):  # the tag is the section's own key: report it there
            path = ".".join([*parts, key])
            got = node.get(key)
            return f"{path}: must be one of {tags}; got {got!r}" if key in node else \
                f"{path}: required key is missing; must be one of {tags}"
        what = f"'{key}' must be one of {tags}" if key else f"must be one of {tags}"
        return f"{path}: {what}; got {node!r}" if node is not None else f"{path}: {what}, and it is missing"
    message = err["msg"]
    if kind == "value_error" and message.startswith("Value error, "):
        message = message[len("Value error, "):]
    got = err.get("input")
    shown = "" if isinstance(got, Mapping | BaseModel) else f" (got {got!r})"  # a section: its problem says it
    return f"{path}: {message}{shown}"


def _node(data: Any, parts: list[str]) -> Any:
    for part in parts:
        if isinstance(data, Mapping):
            data = data.get(part)
        elif isinstance(data, list | tuple) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data


# what a member of a plain union (``A | list[A]``) says when the value has the other member's shape
SHAPE_ERRORS = ("dict_type", "list_type", "tuple_type", "int_type", "float_type", "model_type", "model_attributes_type",
                "literal_error")  # (a Literal member of `PositiveInt | Literal["auto"]` when the number is out of range)
# what the number member of a word-or-number union (``Literal["none", "all"] | int``) says of another word
NUMBER_ERRORS = {"int_parsing": "an integer", "int_from_float": "an integer", "float_parsing": "a number"}
LENGTH_ERRORS = ("too_short", "too_long")  # a member that says these accepted the value's shape
RANGE_ERRORS = ("greater_than", "greater_than_equal", "less_than", "less_than_equal")  # and these


class DefaultsJsonSchema(GenerateJsonSchema):
    """The JSON Schema with a ``default`` for every field that has one, those made by a default
    factory included (``train``, ``head``, ``train.early_stopping``...: pydantic leaves them out),
    as the factory makes it."""

    def get_default_value(self, schema: core_schema.WithDefaultSchema) -> Any:
        factory = schema.get("default_factory")
        if factory is not None and not schema.get("default_factory_takes_data"):
            return factory()
        return schema.get("default", NoDefault)


def format_validation_error(error: ValidationError, data: Any, root: type[BaseModel]) -> list[str]:
    """One line per problem: ``key.path: what is wrong (got VALUE)``.

    A union member's complaint that the value has the wrong shape (``should be a valid list``) is
    left out when another member accepted the shape: it found a problem further inside the value,
    or only the value's length or range is wrong (``transfer: []``, ``size: 5000``).
    """
    found = [(err, _user_path(tuple(err["loc"]), data, err["type"])) for err in error.errors(include_url=False)]
    inside = {tuple(parts[:i]) for _, parts in found for i in range(len(parts))}  # strict prefixes
    inside |= {tuple(parts) for err, parts in found if err["type"] in LENGTH_ERRORS + RANGE_ERRORS}
    dropped = [(err, parts) for err, parts in found if err["type"] in SHAPE_ERRORS and tuple(parts) in inside]
    # the words a number-or-word field also takes ('auto'), said on its range error's line
    words = {tuple(parts): err.get("ctx", {}).get("expected") for err, parts in dropped if err["type"] == "literal_error"}
    # a word-or-number field given something else: one line saying both, not one per member
    numbers = {tuple(parts): NUMBER_ERRORS[err["type"]] for err, parts in found if err["type"] in NUMBER_ERRORS}
    literal = {tuple(parts) for err, parts in found if err["type"] == "literal_error"}
    lines = []
    for err, parts in found:
        if (err, parts) in dropped or (err["type"] in NUMBER_ERRORS and tuple(parts) in literal):
            continue
        line = _describe(err, parts, root, data)
        if err["type"] == "literal_error" and tuple(parts) in numbers:
            line = line.replace(f"{err['msg']}", f"{err['msg']}, or {numbers[tuple(parts)]}", 1)
        if err["type"] in RANGE_ERRORS and words.get(tuple(parts)):
            line = line.replace(f"{err['msg']}", f"{err['msg']}, or {words[tuple(parts)]}", 1)
        lines.append(line)
    return list(dict.fromkeys(lines))


def validate(model: type[BaseModel], data: Any, source: str | None = None,
             context: dict[str, Any] | None = None) -> Any:
    """Validate ``data`` against ``model``; raise :class:`ConfigError` listing every problem.

    ``context`` reaches every validator (``base``: the config file's folder, for relative paths).
    """
    with validating():  # a validator's assignments report as pydantic's errors, by key path
        try:
            return model.model_validate(data, context=context)
        except ValidationError as err:
            raise ConfigError(format_validation_error(err, data, model), source=source) from None
