"""The base of the runtime's per-kind preprocessing: ``Features`` and what every kind shares."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from polymodal.deploy.errors import RequestError

AMIN = 1e-10
NPY_MAGIC = b"\x93NUMPY"


def read_bytes(value: Any) -> bytes:
    """File content from bytes or a path."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return Path(str(value)).read_bytes()


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

    def holds(self, value: Any) -> bool:
        """Whether ``value`` (given: not blank) holds anything this modality reads; every kind but a
        table whose filled cells all read as missing (:class:`TabularFeatures`) does."""
        return True

    def notes(self, value: Any) -> list[str]:
        """What a caller should know about how ``value`` (present, featurised) was read, such as a
        category the model never learned; none by default."""
        return []

    def empty(self, n: int) -> dict[str, np.ndarray]:
        """Zero arrays for ``n`` rows where the modality is absent."""
        return {k: np.zeros((n, *shape), dtype) for k, (shape, dtype) in self.inputs.items()}

    def fail(self, message: str, code: str = "bad_input", status: int = 422) -> RequestError:
        return RequestError(f"modality '{self.name}' ({self.kind}): {message}", status=status, code=code, field=self.name)
