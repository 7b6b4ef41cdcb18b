"""Dotted-key edits of a config's data before it is validated: ``--set train.epochs=1`` on the
command line, and the values a hyper-parameter search samples (``tune.space``).

A key walks sections by name and lists by position (``transfer.1.threshold``: the second method
of a list); missing sections are created. A value on the command line is read as YAML 1.2
(``1`` a number, ``true`` a boolean, ``[16, 32]`` a list, ``null`` none). ``null`` given to a
modality (``modalities.report=null``) or a further task removes it: a single-modality baseline
from the fused model's config.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from polymodal.config.base import DISCRIMINATORS, default_selector
from polymodal.errors import GIVEN, ConfigError, OptionError, given, option
from polymodal.utils.suggest import did_you_mean

NAMED = {"modalities": "modality", "tasks": "task"}  # sections of named entries, which null removes
WHOLE = {"modalities": "{kind: ..., column: ...}", "tasks": "{task: ..., target: ...}"}  # a new entry, given whole


@dataclass
class Edits:
    """What setting the keys did beyond setting them, so that a problem it caused is told as such.

    Attributes:
        created: the dotted path of each section the data lacked and a key made -> that key, and
            for a new modality (task) named by a key inside it (``modalities.imag.preprocess.size``),
            what the config has instead (``no modality 'imag' ... (did you mean 'image'?)``).
        replaced: the dotted path of each section a new selector replaced -> the selector's key,
            its new value and the value it had (``fusion`` -> ``("fusion.name", "late", "attention")``).
    """

    created: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    replaced: dict[str, tuple[str, Any, Any]] = field(default_factory=dict)


Naming = Callable[[str], str]  # how messages name a key set: given ('--set train.lr'), 'tune.space.train.lr'


def set_dotted(data: dict[str, Any], key: str, value: Any, named: Naming = str, edits: Edits | None = None) -> None:
    """``set_dotted(d, "train.lr", 1e-3)`` sets ``d["train"]["lr"]``, creating sections as needed;
    a number indexes a list. ``named`` names the key in messages (:func:`~polymodal.errors.given`
    for overrides); ``edits`` records the sections created.

    Raises:
        ConfigError: the key runs through a value that is not a section, or past a list's end;
            null given to a modality or task the config does not have.
    """
    node: Any = data
    parts = key.split(".")
    if value is None and len(parts) == 2 and parts[0] in NAMED:
        _remove_named(data, parts[0], parts[1], named(key))
        return
    for i, part in enumerate(parts):
        if isinstance(node, list) and not (part.isdigit() and int(part) < len(node)):
            raise ConfigError([f"{named(key)}: '{part}' is not an index of the list (it has {len(node)} items)"])
        if i == len(parts) - 1:
            break
        child = child_of(node, part)
        if child is None and isinstance(node, dict):
            if edits is not None:
                edits.created.setdefault(".".join(parts[:i + 1]), (key, _new_entry(parts[:i + 1], node)))
            child = node[part] = {}
        if not isinstance(child, dict | list):
            raise ConfigError([f"{named(key)}: '{part}' is not a section of the config (it holds {child!r})"])
        node = child
    node[int(parts[-1]) if isinstance(node, list) else parts[-1]] = value


def _new_entry(parts: list[str], section: dict[str, Any]) -> str | None:
    """For a modality (task) ``parts`` = ``[section name, entry]`` that ``section`` lacks: what it
    has, with the entry likely meant; None for any other path."""
    if len(parts) != 2 or parts[0] not in NAMED:
        return None
    have = sorted(section)
    return f"the config has no {NAMED[parts[0]]} '{parts[1]}'{did_you_mean(parts[1], have)}; it has {have}"


def _remove_named(data: dict[str, Any], section: str, name: str, said: str) -> None:
    """Remove the modality (task) ``name``, which the section must hold, and a modality's entry in
    ``train.modality_dropout`` given per modality and in ``align.modalities``."""
    entries = data.get(section)
    if not isinstance(entries, dict) or name not in entries:
        have = list(entries) if isinstance(entries, dict) else []
        raise ConfigError([f"{said}: null removes a {NAMED[section]}, but the config has no {NAMED[section]} '{name}'"
                           f"{did_you_mean(name, have)}; it has {have}"])
    del entries[name]
    if section == "modalities":  # settings keyed by modality name drop it too
        dropout = (data.get("train") or {}).get("modality_dropout")
        if isinstance(dropout, dict):
            dropout.pop(name, None)
        aligned = (data.get("align") or {}).get("modalities")
        if isinstance(aligned, list) and name in aligned:
            aligned.remove(name)


def child_of(node: Any, part: str) -> Any:
    """``node[part]``: a key of a section, a position in a list; None where there is none."""
    if isinstance(node, dict):
        return node.get(part)
    if isinstance(node, list) and part.isdigit() and int(part) < len(node):
        return node[int(part)]
    return None


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``["train.epochs=1", "fusion.name=late"]`` -> ``{"train.epochs": 1, "fusion.name": "late"}``.

    Raises:
        OptionError: an item without ``=`` or a key, or a value that is not YAML.
    """
    import yaml

    from polymodal.config.parsing import load_yaml

    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise OptionError([f"--set: expected KEY=VALUE with a dotted config key (train.epochs=1); got {item!r}"])
        overrides.pop(key, None)  # a key given again: set in its last place (dicts keep the first)
        try:
            overrides[key] = load_yaml(text) if text.strip() else None
        except yaml.YAMLError as err:
            raise OptionError([f"--set {key}: the value {text!r} is not YAML ({err})"]) from None
    return overrides


def apply_values(data: dict[str, Any], values: Mapping[str, Any], named: Naming = str, edits: Edits | None = None
                 ) -> None:
    """Set each dotted key of ``values`` in ``data`` (in place; see :func:`set_dotted`); ``edits``
    records the sections created or replaced.

    A value for a component's selector (``fusion.name``, ``modalities.x.encoder.name``,
    ``transfer.0.method``...) that differs from the config's replaces that section with the new
    component at its defaults (the old settings belong to the other component); selectors are set
    before the other keys, which then adjust the new component. A key inside a section the data
    leaves at its default component (``head.dropout`` with no ``head``) adjusts that component.
    """
    # a selector inside a section (not a top-level key that happens to share its name: --set name=x)
    selectors = [k for k in values if "." in k and k.rsplit(".", 1)[-1] in DISCRIMINATORS]
    for key in selectors + [k for k in values if k not in selectors]:
        _create_default_components(data, key.split(".")[:-1])
        section, _, field = key.rpartition(".")
        node: Any = data
        for part in section.split(".") if section else []:
            node = child_of(node, part)
        if key in selectors and isinstance(node, dict) and node.get(field) != values[key]:
            if edits is not None:
                edits.replaced[section] = (key, values[key], node.get(field))
            set_dotted(data, section, {field: values[key]}, named=named, edits=edits)
        else:
            set_dotted(data, key, values[key], named=named, edits=edits)


def _create_default_components(data: dict[str, Any], parts: list[str]) -> None:
    """Create the sections along ``parts`` that ``data`` lacks and whose default is a component,
    holding that component's selector (``head: {name: mlp}``), so that a key set inside one
    (``head.dropout``) adjusts the default component rather than leaving a section without it."""
    from polymodal.config.root import Config  # the schema the data is validated against

    node: Any = data
    for i, part in enumerate(parts):
        if isinstance(node, dict) and node.get(part) is None:
            selector = default_selector(Config, parts[:i + 1], data)
            if selector is None:
                return
            node[part] = dict(selector)
        node = child_of(node, part)


def apply_overrides(data: dict[str, Any], overrides: Mapping[str, Any], edits: Edits | None = None) -> None:
    """Keys set on top of a config: the command line's ``--set`` values, ``load_config``'s
    ``overrides`` (see :func:`apply_values`)."""
    apply_values(data, overrides, named=given, edits=edits)


@contextmanager
def naming_overrides(overrides: Mapping[str, Any] | None, source: str | None = None) -> Iterator[Edits]:
    """Within the block (which applies the keys set on top of a config, the command line's ``--set``
    values or ``load_config``'s ``overrides``, recording into the :class:`Edits` yielded, then
    validates), a :class:`ConfigError` problem they caused is labelled ``--set KEY: ...``
    (``overrides 'KEY': ...`` in Python: :func:`~polymodal.errors.given`), so that it is not read as the config file's: one at a
    key given or under it, one at a section a key created (``--set trian.epochs`` makes a section
    ``trian``), one inside a section a new selector replaced (``--set fusion.name=late``: the
    file's settings of the old component are gone, and the message says so), and the problems
    inside a modality (task) a key created, as one problem naming the one likely meant. A problem
    at a section holding keys ``--set`` gave (a check of several keys: ``unfreeze`` needs
    ``freeze``) ends ``(with --set KEY, ...)``. When
    every problem comes from ``--set`` the error says so rather than blaming the file
    (``Invalid --set values for qs.yaml``). ``source``: the config file, when the error names none."""
    edits = Edits()
    try:
        yield edits
    except ConfigError as err:
        if not overrides:
            raise
        problems = _label_problems(err.problems, list(overrides), edits)
        raise ConfigError(problems, source=err.source or source,
                          only_set=all(p.startswith(GIVEN) for p in problems)) from None


def _label_problems(problems: list[str], keys: list[str], edits: Edits) -> list[str]:
    """``problems`` with those ``--set`` caused labelled (see :func:`naming_overrides`); the
    problems inside each new modality (task) become one, in the place of the first."""
    out: list[str] = []
    entries: dict[str, tuple[int, list[str]]] = {}  # a new modality's path -> its place in out, its problems
    for problem in problems:
        where, _, said = problem.partition(":")
        where, said = where.strip(), said.strip()
        if problem.startswith(GIVEN):
            out.append(problem)
            continue
        if _under(where, keys):  # at a key given, or under it
            out.append(f"{given(where)}: {said}")
            continue
        created = next((path for path in edits.created if _under(where, [path])), None)
        replaced = next((path for path in edits.replaced if _under(where, [path])), None)
        if created is not None and edits.created[created][1] is not None:
            if created not in entries:
                entries[created] = (len(out), [])
                out.append("")  # its place, filled below
            entries[created][1].append(problem)
        elif created is not None:
            key = edits.created[created][0]
            out.append(f"{given(key)}: {said}" if where == created else
                       f"{given(key)}: {problem} (the config has no section {created}: "
                       f"{option('--set', 'overrides')} made it)")
        elif replaced is not None:
            key, new, old = edits.replaced[replaced]
            name = key.rsplit(".", 1)[-1]
            was = f"the file's settings of {name} {old!r}" if old is not None else "the file's settings of the section"
            out.append(f"{given(key, new)}: {problem}; a new {name} starts {replaced} from its defaults ({was} do "
                       f"not carry over): set the keys it needs {option('with --set', 'in overrides')} too")
        elif inside := [key for key in keys if where and key.startswith(where + ".")]:  # a check of several keys
            out.append(f"{problem} ({option('with --set ' + ', '.join(inside), 'with overrides ' + ', '.join(map(repr, inside)))})")
        else:
            out.append(problem)
    for path, (at, inside) in entries.items():
        key, have = edits.created[path]
        section = path.split(".", 1)[0]
        whole = option(f"--set {path}={WHOLE[section]}", f"overrides '{path}': {WHOLE[section]}")
        out[at] = (f"{given(key)}: {have}; a new {NAMED[section]} is given whole ({whole}), and "
                   f"'{path.split('.', 1)[1]}' lacks: {'; '.join(inside)}")
    return out


def _under(where: str, paths: Iterable[str]) -> bool:
    """Whether the key path ``where`` is one of ``paths`` or inside one."""
    return any(where == path or where.startswith(f"{path}.") for path in paths)
