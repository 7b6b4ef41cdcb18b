"""The base of the runtime's per-kind preprocessing: ``Features`` and what every kind shares."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from polymodal.deploy.errors import RequestError
from polymodal.errors import EMPTY_FILE

AMIN = 1e-10
NPY_MAGIC = b"\x93NUMPY"
# why a path naming a device, a pipe or a socket is refused: read whole, /dev/zero never ends and a
# pipe waits for a writer
SPECIAL_FILE = "not a regular file (a device, a pipe or a socket)"


class Features:
    """Base class: ``transform(values)`` -> the modality's arrays (N, ...) for its graph inputs,
    in the training preprocessor's two steps: ``decode`` one value, ``featurize`` the decoded samples.

    Args:
        name: the modality name.
        meta: the modality's entry in ``deploy.json`` (``kind``, ``preprocess``, ``state``, ``inputs``).
        on_error: the run's ``data.on_error`` (``deploy.json``'s ``on_error``; None: an export that
            predates it): what a value that cannot be read does where a kind follows it (a table's
            cell that is no number, under ``missing``, reads as missing as in training).
    """

    kind: ClassVar[str]

    def __init__(self, name: str, meta: Mapping[str, Any], on_error: str | None = None):
        self.name = name
        self.on_error = on_error
        self.cfg = dict(meta["preprocess"])
        self.state = dict(meta.get("state") or {})
        self.inputs = {k: (tuple(v["shape"]), v["dtype"]) for k, v in meta["inputs"].items()}

    def decode(self, value: Any) -> Any:
        raise NotImplementedError

    def featurize(self, samples: Sequence[Any]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def transform(self, values: Sequence[Any]) -> dict[str, np.ndarray]:
        """The arrays of ``values`` (all present): each decoded, then featurized together."""
        return self.featurize([self.decode(v) for v in values])

    def check(self, value: Any) -> None:
        """Refuse what the modality never reads before anything is decoded (a table's unknown
        columns): the one rule of the runtime's rows and the service's requests; nothing by default."""

    def file_bytes(self, value: Any) -> bytes:
        """A file's content: ``value`` itself (bytes), or the file its path names.

        Raises:
            RequestError: the path names no file that can be read (none, a folder, a device, a pipe,
                no permission), or the file is empty; its path is named.
        """
        if isinstance(value, bytes | bytearray | memoryview):
            data, where = bytes(value), "the file given"
        else:
            where = f"file '{value}'"
            self.check_path(value, folder=False)
            try:
                data = Path(str(value)).read_bytes()
            except OSError as err:
                raise self.unreadable_file(value, err) from None
        if not data:
            raise self.fail(f"cannot read {where}: {EMPTY_FILE}", "empty_file")
        return data

    def check_path(self, value: Any, folder: bool = True) -> None:
        """Refuse, before it is opened, a path (``value`` a string or path, not bytes nor an array)
        that names nothing, or something other than a regular file or (``folder``) a folder: where
        a decoder opens it itself (a video, or its frame folder), and before :meth:`file_bytes`
        reads one whole."""
        if not isinstance(value, str | os.PathLike):
            return
        try:
            mode = os.stat(value).st_mode
        except OSError as err:
            raise self.unreadable_file(value, err) from None
        if stat.S_ISDIR(mode) and not folder:
            raise self.unreadable_file(value, IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR)))
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise self.fail(f"cannot read file '{value}': {SPECIAL_FILE}")

    def unreadable_file(self, path: Any, err: OSError) -> RequestError:
        """The refusal of a file that cannot be read: ``cannot read file 'x.png': No such file or directory``."""
        return self.fail(f"cannot read file '{path}': {err.strerror or err}")

    def holds(self, value: Any) -> bool:
        """Whether ``value`` (given: not blank) holds anything this modality reads; every kind but a
        table whose filled cells all read as missing (:class:`TabularFeatures`) does."""
        return True

    def absent_note(self, count: int) -> str | None:
        """What to warn, once per call, of the ``count`` rows given a value that holds nothing this
        modality reads (:meth:`holds`), read with the modality absent; None: nothing (a table of
        unreadable numbers is told apart in each row's notes)."""
        return None

    def notes(self, value: Any) -> list[str]:
        """What a caller should know about how ``value`` (present, featurised) was read, such as a
        category the model never learned; none by default."""
        return []

    def empty(self, n: int) -> dict[str, np.ndarray]:
        """Zero arrays for ``n`` rows where the modality is absent."""
        return {k: np.zeros((n, *shape), dtype) for k, (shape, dtype) in self.inputs.items()}

    def fail(self, message: str, code: str = "bad_input", status: int = 422) -> RequestError:
        return RequestError(f"modality '{self.name}' ({self.kind}): {message}", status=status, code=code, field=self.name)
