"""The project's exception hierarchy.

Every error a user can trigger with bad input is one of these. They subclass the built-in
exception a Python user would expect (``ValueError``, ``FileNotFoundError``...) so that generic
handlers keep working, and they carry the context needed to find the problem: the config key,
the manifest, row, column, file and modality.

Messages follow one template: what was wrong, where, what is allowed, what was received. A
setting the caller gave is named as the caller gave it (:func:`option`): ``--resume`` in a
command of the command line, ``resume=True`` in a Python call.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

_command_line = False  # True while a command of the command line runs (see command_line)


@contextmanager
def command_line() -> Iterator[None]:
    """Within the block (a command of the command line runs there), messages name the command's
    options (``--resume``) rather than the Python arguments they map to (``resume=True``)."""
    global _command_line
    before, _command_line = _command_line, True
    try:
        yield
    finally:
        _command_line = before


# the Python argument each command-line option maps to, as messages name it (see option)
PYTHON_NAMES = {"--resume": "resume=True", "--overwrite": "overwrite=True", "--out": "out=", "--train": "train",
                "--valid": "valid=", "--unlabeled": "unlabeled=", "--by": "by=", "--split": "split="}


def option(cli: str, python: str | None = None) -> str:
    """How a message names a setting the caller gave: ``cli`` (``--resume``) while a command of the
    command line runs (:func:`command_line`), else ``python`` (``resume=True``), by default the
    argument :data:`PYTHON_NAMES` maps ``cli`` to."""
    return cli if _command_line else PYTHON_NAMES[cli] if python is None else python


def given(key: str, *value: Any) -> str:
    """How a message names a dotted config key set on top of a config (and the value set):
    ``--set train.epochs`` (``--set fusion.name=late``) on the command line, ``overrides
    'train.epochs'`` (``overrides 'fusion.name'='late'``) in Python (``load_config(overrides=)``)."""
    return option(f"--set {key}" + "".join(f"={v}" for v in value),
                  f"overrides '{key}'" + "".join(f"={v!r}" for v in value))  # quoted alike whatever the key holds


GIVEN = ("--set ", "overrides '")  # how every message naming an override starts (see given)


class PolymodalError(Exception):
    """Base class of every error raised on purpose by polymodal."""


class PolymodalWarning(UserWarning):
    """Category of every warning polymodal gives, so that they can be filtered apart from others'
    (``warnings.filterwarnings("ignore", category=polymodal.PolymodalWarning)``); a ``UserWarning``
    where it is not told apart."""


class ConfigError(PolymodalError, ValueError):
    """A configuration file or object does not match the schema.

    Attributes:
        problems: one line per problem, each starting with the full key path.
        source: the file the config came from, when known.
        only_set: every problem comes from the keys set on top of the file (``--set`` on the
            command line, ``overrides`` in Python), not from the file (each problem names its key:
            :func:`given`), and the heading says so.
    """

    def __init__(self, problems: Sequence[str], source: str | None = None, *, only_set: bool = False):
        self.problems = list(problems)
        self.source = source
        self.only_set = only_set
        what = option("--set values", "overrides") if only_set else "config"
        where = (f" for {source}" if only_set else f" in {source}") if source else ""
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"Invalid {what}{where} ({len(self.problems)} problem(s)):\n{lines}")


class ManifestError(PolymodalError, ValueError):
    """A manifest is unreadable or does not fit the config. Lists every problem found.

    Args:
        folded: problems a line stands for beyond itself (``40 more missing files`` is 40 problems
            in one line: 39 folded), so that the count names every problem.
        missing_files: how many of the problems are cells naming no file (which ``data.on_error``
            ``skip`` or ``missing`` would go past).
    """

    def __init__(self, problems: Sequence[str], source: str | None = None, folded: int = 0, missing_files: int = 0):
        self.problems = list(problems)
        self.source = source
        self.missing_files = missing_files
        where = f" {source}" if source else ""
        shown = self.problems[:50]
        more = len(self.problems) - len(shown)
        lines = "\n".join(f"  - {p}" for p in shown)
        tail = f"\n  ... and {more} more" if more > 0 else ""
        super().__init__(f"Invalid manifest{where} ({len(self.problems) + folded} problem(s)):\n{lines}{tail}")


EMPTY_FILE = "the file is empty (0 bytes)"  # why a file of no bytes is refused, wherever it is read


class DecodeError(PolymodalError, ValueError):
    """A file or inline value could not be decoded into a sample.

    Attributes:
        modality: the modality being decoded.
        path: the file, or None for an inline value.
        row: the manifest row, when known.
        column: the manifest column the cell is in, when known.
        reason: the decoder's own explanation.
    """

    def __init__(self, reason: str, *, path: str | None = None, modality: str | None = None,
                 row: int | None = None, where: str | None = None, column: str | None = None):
        self.reason = reason
        self.path = path
        self.modality = modality
        self.row = row
        self.column = column
        parts = []
        if modality is not None:
            parts.append(f"modality '{modality}'")
        if where is not None:
            parts.append(where)
        elif row is not None:
            parts.append(f"row {row}")
        if column is not None:
            parts.append(f"column '{column}'")
        if path is not None:
            parts.append(f"file {path}")
        location = ", ".join(parts)
        super().__init__(f"Cannot decode {location}: {reason}" if location else f"Cannot decode: {reason}")


class AbsentInputError(DecodeError):
    """A cell that names a readable file holding nothing of its modality (a video without a sound
    track in an audio column: a camera without a microphone): read as an empty cell is, that
    modality absent in the row, not as a file that cannot be read. A :class:`DecodeError` where it
    is not told apart.

    Attributes:
        summary: what such a row's cell holds, said of one and of several (``video holds no audio
            track``, ``videos hold no audio track``), for the one warning that counts them.
    """

    summary = ("file holds nothing of its modality", "files hold nothing of their modality")


class OversizedInputError(DecodeError):
    """A file refused for its size before it is decoded whole: more pixels, frames or seconds than
    allowed (a possible decompression bomb). A :class:`DecodeError` everywhere a file is read; the
    service answers it with 413, where a corrupt file is 422.

    Attributes:
        measure: what was too large: ``pixels``, ``frames``, ``seconds`` or ``samples`` (an audio
            file's rate and channels over its allowed seconds).
    """

    def __init__(self, reason: str, *, measure: str, **where: Any):
        super().__init__(reason, **where)
        self.measure = measure


class SchemaMismatchError(PolymodalError, ValueError):
    """Data given to a fitted model does not match what it was trained on."""


class NotFittedError(PolymodalError, RuntimeError):
    """A component was used before ``fit``."""


class DatasetSourceError(PolymodalError, FileNotFoundError):
    """A built-in dataset's source folder is missing or laid out differently than expected."""


class DatasetOptionError(PolymodalError, ValueError):
    """An option given to a built-in dataset is one it does not take, or has a value it does not allow.

    Attributes:
        dataset: the dataset's name.
        option: the option's name (``split``, ``test_speakers``...).
    """

    def __init__(self, message: str, *, dataset: str, option: str):
        self.dataset = dataset
        self.option = option
        super().__init__(message)


class EncoderSettingError(PolymodalError, ValueError):
    """An encoder setting that only building the encoder can find wrong (more blocks to freeze than
    it has, a weights file that does not fit, an unknown timm architecture...), with the key path
    under the encoder's config (``freeze``, ``frame.freeze``, ``weights``) so that
    :func:`~polymodal.models.model.build_encoders` names the config key in its ConfigError."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key, self.message = key, message


class MissingDependencyError(PolymodalError, ImportError):
    """An optional dependency is not installed."""

    def __init__(self, package: str, purpose: str, extra: str | None = None, install: str | None = None):
        hint = install or (f"pip install 'polymodal[{extra}]'" if extra else f"pip install {package}")
        super().__init__(f"{purpose} needs the optional package '{package}'. Install it with: {hint}")


class UnknownNameError(PolymodalError, KeyError):
    """A name (dataset, component...) that is not one of those available; the message lists them."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class OptionError(PolymodalError, ValueError):
    """A command-line option (or the argument of a call it maps to) has a value that cannot be
    used, or does not fit the config; no config file is at fault, so the message names the option.

    Attributes:
        problems: one line per problem, each starting with the option (``--port: ...``).
    """

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class RunFolderError(PolymodalError, ValueError):
    """A run folder cannot be written or read: it already holds a run that would be replaced, it
    belongs to another config (``--resume``), or one of its files is missing or damaged."""


class RunNotFoundError(RunFolderError, FileNotFoundError):
    """No run folder at the path given: nothing there, a file, or a folder without a model."""


# Operating-system errors about a path the user gave: a file or folder that is missing, is a file
# where a folder is needed (or the reverse), or cannot be written.
PATH_ERRORS = (FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError)
