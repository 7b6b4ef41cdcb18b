"""Tables in the runtime: numbers imputed and scaled, categories looked up, as fitted in training."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from polymodal.deploy.errors import RequestError
from polymodal.deploy.features.base import Features
from polymodal.utils.suggest import did_you_mean
from polymodal.utils.values import blank, normalize_category, number


class TabularFeatures(Features):
    """A table's numbers imputed and scaled, its categories looked up. A numeric cell that is no
    finite number (``'>200'``, ``'38,5'``) is refused (a 4xx naming the column and value), except
    under the run's ``data.on_error: missing``, where it reads as missing, as training reads it,
    and :meth:`notes` says so."""

    kind = "tabular"

    def __init__(self, name: str, meta: Mapping[str, Any], on_error: str | None = None):
        super().__init__(name, meta, on_error)
        self.numeric = list(meta["columns"])
        self.categorical = list(meta["categorical"])
        self.lookup = {c: {v: i + 1 for i, v in enumerate(cats)} for c, cats in self.state["categories"].items()}
        # an export from before preprocess.normalize_categories keyed categories as written
        self.normalize = self.cfg.get("normalize_categories", "none")

    def check(self, value: Any) -> None:
        """Refuse a table's columns the model does not have (a misspelt ``'temprature'`` would
        otherwise be dropped and its column imputed without a word), empty ones too.

        Raises:
            RequestError: (422 ``unknown_field``) naming the columns, the closest one where one is
                misspelt, and the columns allowed.
        """
        if not isinstance(value, Mapping):  # not a table: decode says what is wrong
            return
        columns = self.numeric + self.categorical
        unknown = sorted(map(str, set(value) - set(columns)))
        if unknown:
            hint = did_you_mean(unknown[0], columns) if len(unknown) == 1 else ""
            raise RequestError(f"tabular modality '{self.name}' has no columns {unknown}{hint}; allowed {columns}",
                               status=422, code="unknown_field", field=self.name)

    def unreadable(self, value: Any) -> str | None:
        """Why a numeric cell is no finite number (``must be numeric; got '>200'``), or None."""
        try:
            number(value)
        except ValueError as err:
            return str(err)
        return None

    def number(self, value: Any, column: str) -> float:
        """A numeric cell's value; NaN (missing) for an unreadable one under ``on_error: missing``."""
        try:
            return number(value)
        except ValueError as err:
            if self.on_error == "missing":
                return float("nan")
            said = f" (data.on_error: {self.on_error})" if self.on_error is not None else ""
            raise self.fail(f"column '{column}' {err}{said}") from None

    def holds(self, value: Mapping[str, Any]) -> bool:
        """Whether a table (given) holds a cell that is read: under ``on_error: missing``, one whose
        filled cells are all unreadable numbers is a missing modality, as in training."""
        if self.on_error != "missing" or not isinstance(value, Mapping):  # not a table: decode says what is wrong
            return True
        return any(not blank(v) and (c not in self.numeric or self.unreadable(v) is None) for c, v in value.items())

    def category(self, value: Any) -> str | None:
        """A cell's category key, as training keys it (None when blank)."""
        if blank(value):
            return None
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return normalize_category(str(value), self.normalize)

    def decode(self, value: Any) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(value, Mapping):
            raise self.fail(f"expected a mapping of columns {self.numeric + self.categorical}; got {type(value).__name__}")
        numbers = np.asarray([self.number(value.get(c), c) for c in self.numeric], np.float64)
        missing = np.isnan(numbers)
        fill, center, scale = (np.asarray(self.state[k], np.float64) for k in ("fill", "center", "scale"))
        with np.errstate(over="ignore"):  # a value out of range once scaled is refused below
            scaled = (np.where(missing, fill, numbers) - center) / scale
            num = np.concatenate([scaled, missing.astype(np.float64)]) if self.cfg["missing_indicator"] else scaled
            num32 = num.astype(np.float32)
        cats = [self.lookup[c].get(self.category(value.get(c)), 0) for c in self.categorical]
        if not np.isfinite(num32).all():
            bad = [c for c, v in zip(self.numeric, num32) if not np.isfinite(v)]
            raise self.fail(f"columns {bad} are out of range once scaled (float32 overflows)")
        return num32, np.asarray(cats, np.int64)

    def notes(self, value: Mapping[str, Any]) -> list[str]:
        """The numeric cells of ``value`` read as missing for want of a number (``on_error:
        missing``) and the categories the model did not learn (read as the unknown category)."""
        unreadable = [f"column '{c}' {why}: read as missing (data.on_error: missing)" for c in self.numeric
                      if self.on_error == "missing" and (why := self.unreadable(value.get(c))) is not None]
        return unreadable + [f"column '{c}': {value[c]!r} is a category the model did not learn (read as unknown; learned: "
                f"{', '.join(map(repr, self.state['categories'][c][:10]))}"
                f"{' ...' if len(self.state['categories'][c]) > 10 else ''})"
                for c in self.categorical if (key := self.category(value.get(c))) is not None and key not in self.lookup[c]]

    def featurize(self, samples: Sequence[tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
        n = len(samples)
        return {"num": np.stack([s[0] for s in samples]).reshape(n, -1).astype(np.float32),
                "cat": np.stack([s[1] for s in samples]).reshape(n, len(self.categorical))}
