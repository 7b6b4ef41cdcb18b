"""Tabular fields grouped as one modality: numeric columns (imputed, optionally flagged when
missing, scaled) and categorical columns (a vocabulary per column, index 0 = unknown/missing).

A row's cell is the tuple of its values for ``columns + categorical``; the modality counts as
missing only when all of them are empty.

Cached form: ``num`` float32 (n_numeric [+ n_numeric missing flags]) and ``cat`` int64
(n_categorical). A training batch reads a share (``preprocess.unknown_rate``) of its categorical
cells as index 0, so that index learns what a category training never saw means.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from polymodal.config.modalities import TabularModality
from polymodal.config.preprocess import TabularPreprocess
from polymodal.data.cells import cell_text, is_empty
from polymodal.data.modalities.base import PREPROCESSORS, ArraySpec, Preprocessor
from polymodal.errors import DecodeError, NotFittedError
from polymodal.utils.values import NA_VALUES, normalize_category, number, spelling_variants
from polymodal.utils.warn import warn_user

SHOWN_VARIANTS = 5  # groups of spelling variants a fit-time warning quotes per column


def _number(value: Any, column: str) -> float:
    if is_empty(value):  # pandas' NA too
        return float("nan")
    try:
        return number(value)
    except ValueError as err:
        raise DecodeError(f"column '{column}' {err}") from None


def _category(value: Any, normalize: str) -> str | None:
    """The category key of a cell (None when empty); whole-number floats are keyed like ints
    ('3.0' -> '3'), see :func:`~polymodal.data.cells.cell_text`; text as ``normalize``
    (``preprocess.normalize_categories``) keys it."""
    return None if is_empty(value) else normalize_category(cell_text(value), normalize)


def _as_row(value: Any) -> Sequence[Any]:
    """A cell as a sequence of column values (a modality with a single column has scalar cells)."""
    return value if isinstance(value, tuple | list) else (value,)


@PREPROCESSORS.register(TabularModality)
class TabularPreprocessor(Preprocessor):
    """See the module docstring."""

    kind = "tabular"
    file_based = False
    featurize_version = 3  # 2: imputation and scaling in float64 (the fitted state too); 3: infinities kept out of fit
    batch_time_fields = frozenset({"unknown_rate"})  # applied to training batches: the cached ids stay valid

    def __init__(self, name: str, cfg: TabularPreprocess, numeric: list[str], categorical: list[str]):
        super().__init__(name)
        self.cfg = cfg
        self.numeric = numeric
        self.categorical = categorical
        self.center: np.ndarray | None = None
        self.scale: np.ndarray | None = None
        self.fill: np.ndarray | None = None
        self.categories: dict[str, list[str]] | None = None
        # training rows of each learned category (the "average row" attribution weighs embeddings by
        # them); None: a run saved before they were recorded
        self.category_counts: dict[str, list[int]] | None = None
        self._lookup: dict[str, dict[str, int]] = {}

    @classmethod
    def from_config(cls, cfg: TabularModality, *, name: str) -> TabularPreprocessor:
        return cls(name, cfg.preprocess, list(cfg.columns), list(cfg.categorical))

    def _columns(self, values: Sequence[Any]) -> tuple[np.ndarray, list[list[str | None]], dict[int, DecodeError]]:
        """A chunk of cells column by column: the numbers (N, n_numeric), NaN where empty, unparsable
        or infinite; each categorical column's keys; and the first problem of each row that has one
        (a value that is not a number, or is infinite)."""
        rows = [_as_row(v) for v in values]
        columns = list(zip(*rows)) if rows else [()] * (len(self.numeric) + len(self.categorical))
        numbers = np.full((len(rows), len(self.numeric)), np.nan)
        errors: dict[int, DecodeError] = {}
        for j, name in enumerate(self.numeric):
            column = numbers[:, j]
            try:  # the usual column, numbers and empty cells (None, NaN), converted in one go
                column[:] = np.array(columns[j], dtype=np.float64)
                if np.isfinite(column[~np.isnan(column)]).all():
                    continue
            except (TypeError, ValueError):
                pass
            for i, value in enumerate(columns[j]):  # else cell by cell, naming the first bad one of a row
                try:
                    column[i] = _number(value, name)
                except DecodeError as err:
                    column[i] = np.nan  # the vectorised pass may have left an infinity here
                    errors.setdefault(i, err)
        n = len(self.numeric)
        how = self.cfg.normalize_categories
        return numbers, [[_category(v, how) for v in columns[n + j]] for j in range(len(self.categorical))], errors

    def fit(self, values: Sequence[Sequence[Any]]) -> None:
        """Imputation values, scaling and category vocabularies from the training cells (a value
        that is not a finite number counts as missing here; encoding reports it with its row)."""
        numbers, categories, _ = self._columns(list(values))
        numbers = np.where(np.isfinite(numbers), numbers, np.nan)  # no infinity may reach the statistics
        with warnings.catch_warnings():  # an all-missing column's mean: NaN, filled with 0 below
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(numbers, axis=0) if len(numbers) else np.zeros(0)
        mean = np.where(np.isnan(mean), 0.0, mean)
        if self.cfg.impute == "median":
            fill = np.nanmedian(np.where(np.isnan(numbers).all(axis=0), 0.0, numbers), axis=0)
        elif self.cfg.impute == "zero":
            fill = np.zeros(len(self.numeric))
        elif self.cfg.impute == "mean":
            fill = mean
        else:  # a choice the config offers without a branch here: an error, not another choice's result
            raise NotImplementedError(f"tabular impute '{self.cfg.impute}'")
        filled = np.where(np.isnan(numbers), fill, numbers)
        if self.cfg.scale == "standard":
            center, scale = filled.mean(axis=0), filled.std(axis=0)
        elif self.cfg.scale == "minmax":
            center, scale = filled.min(axis=0), filled.max(axis=0) - filled.min(axis=0)
        elif self.cfg.scale == "robust":  # median and interquartile range (outliers barely move them)
            q25, center, q75 = np.percentile(filled, [25, 50, 75], axis=0)
            scale = q75 - q25
        elif self.cfg.scale == "none":
            center, scale = np.zeros(len(self.numeric)), np.ones(len(self.numeric))
        else:
            raise NotImplementedError(f"tabular scale '{self.cfg.scale}'")
        # float64, as scikit-learn's scalers keep them: a float32 mean of Unix times (1.7e9) is off by
        # up to 64, which shifts the whole standardised column
        self.fill = fill.astype(np.float64)
        self.center = center.astype(np.float64)
        self.scale = np.where(scale > 1e-12, scale, 1.0).astype(np.float64)
        self.categories, self.category_counts = {}, {}
        for j, column in enumerate(self.categorical):
            counts = Counter(key for key in categories[j] if key is not None)
            self._warn_variants(column, counts)
            ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            kept = [k for k, c in ranked if c >= self.cfg.min_category_count][: self.cfg.max_categories]
            self.categories[column] = sorted(kept)
            self.category_counts[column] = [counts[k] for k in self.categories[column]]
        self._build_lookup()

    def decode(self, value: Any) -> tuple[np.ndarray, np.ndarray]:
        good, samples, errors = self.decode_chunk([value])
        if errors:
            raise errors[0][1]
        return samples[0]

    def decode_chunk(self, values: Sequence[Any]) -> tuple[list[int], list[Any], list[tuple[int, DecodeError]]]:
        """Every cell of a chunk at once: numbers imputed and scaled as one array, categories looked up
        column by column. A sample is a row's ``(num, cat)`` arrays."""
        if self.categories is None:
            raise NotFittedError(f"tabular modality '{self.name}' is not fitted")
        numbers, categories, errors = self._columns(values)
        missing = np.isnan(numbers)
        scaled = (np.where(missing, self.fill, numbers) - self.center) / self.scale
        num = (np.concatenate([scaled, missing], axis=1) if self.cfg.missing_indicator else scaled).astype(np.float32)
        cat = np.zeros((len(numbers), len(self.categorical)), np.int64)
        for j, column in enumerate(self.categorical):
            lookup = self._lookup[column]
            cat[:, j] = [lookup.get(key, 0) if key is not None else 0 for key in categories[j]]
        good = [i for i in range(len(numbers)) if i not in errors]
        return good, [(num[i], cat[i]) for i in good], sorted(errors.items())

    def unknown_categories(self, column: str, cells: Iterable[Any]) -> Counter:
        """The cells of categorical ``column`` that hold none of its learned categories (they read
        as the unknown category: a new value, one spelt another way, or one too rare in training),
        counted by category."""
        lookup, unknown = self._lookup[column], Counter()
        for value, count in Counter(cells).items():  # each distinct cell keyed once, not every row
            key = _category(value, self.cfg.normalize_categories)
            if key is not None and key not in lookup:
                unknown[key] += count
        return unknown

    def spelt_otherwise(self, column: str, keys: Iterable[str]) -> dict[str, str]:
        """The learned category of ``column`` that each of ``keys`` (categories it did not learn)
        equals but for case and surrounding whitespace (``'Electronics'`` -> ``'electronics'``);
        keys with none are left out (with ``normalize_categories: strip_lower``, every key is)."""
        folded: dict[str, str] = {}
        for learned in self.categories[column]:
            folded.setdefault(learned.strip().lower(), learned)  # the first, alphabetically: one answer
        return {key: folded[key.strip().lower()] for key in keys if key.strip().lower() in folded}

    def missing_value_categories(self, column: str) -> list[str]:
        """The learned categories of ``column`` whose training text pandas reads as missing by
        default (``NA``: North America; ``None``, ``null``...; its ``na_values``): a DataFrame read
        with ``pd.read_csv``'s defaults holds empty cells where the text was."""
        keys = {normalize_category(text, self.cfg.normalize_categories): text for text in sorted(NA_VALUES) if text}
        return [key for key in self.categories[column] if key in keys]

    def _warn_variants(self, column: str, counts: Mapping[str, int]) -> None:
        """Warn when training categories of ``column`` differ only in case and/or surrounding
        whitespace (each is learned as a category of its own), naming the groups and how to merge them."""
        groups = spelling_variants(counts)
        if not groups:
            return
        shown = "; ".join(" / ".join(f"{key!r} ({count} row{'s' if count != 1 else ''})" for key, count in group)
                          for group in groups[:SHOWN_VARIANTS])
        more = f"; and {len(groups) - SHOWN_VARIANTS} more group(s)" if len(groups) > SHOWN_VARIANTS else ""
        case = any(len({key.strip() for key, _ in group}) > 1 for group in groups)
        space = any(key != key.strip() for group in groups for key, _ in group)
        differ = " and/or ".join(w for w, found in (("case", case), ("surrounding whitespace", space)) if found)
        fix = "strip_lower" if case else "strip"
        warn_user(f"tabular modality '{self.name}', column '{column}': categories that differ only in {differ} "
                  f"are learned as separate categories: {shown}{more}; to merge them, set "
                  f"modalities.{self.name}.preprocess.normalize_categories: {fix} (it applies in prediction and "
                  "serving too), or correct the cells")

    def _build_lookup(self) -> None:
        self._lookup = {col: {c: i + 1 for i, c in enumerate(cats)} for col, cats in (self.categories or {}).items()}

    def featurize(self, samples: Sequence[tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
        return {
            "num": np.stack([s[0] for s in samples]).reshape(len(samples), self.n_numeric_features),
            "cat": np.stack([s[1] for s in samples]).reshape(len(samples), len(self.categorical)),
        }

    @property
    def n_numeric_features(self) -> int:
        return len(self.numeric) * (2 if self.cfg.missing_indicator else 1)

    def spec(self) -> dict[str, ArraySpec]:
        return {"num": ArraySpec((self.n_numeric_features,), "float32"),
                "cat": ArraySpec((len(self.categorical),), "int64")}

    def to_batch(self, arrays: Mapping[str, torch.Tensor], train: bool) -> dict[str, torch.Tensor]:
        cat = arrays["cat"].long()  # (B, n_categorical)
        if train and self.cfg.unknown_rate > 0 and cat.numel():  # see TabularPreprocess
            cat = cat.masked_fill(torch.rand(cat.shape, device=cat.device) < self.cfg.unknown_rate, 0)
        return {"x": arrays["num"].float(), "cat": cat}

    def encoder_context(self) -> dict[str, Any]:
        cards = [len(self.categories[c]) + 1 for c in self.categorical] if self.categories is not None else []
        return {"n_numeric": self.n_numeric_features, "cardinalities": cards}

    def strong_options(self) -> dict[str, Any]:
        return {"flags": len(self.numeric) if self.cfg.missing_indicator else 0}  # x = [numbers | their flags]

    def get_state(self) -> dict[str, Any]:
        if self.categories is None:
            return {}
        return {"fill": self.fill.tolist(), "center": self.center.tolist(), "scale": self.scale.tolist(),
                "categories": self.categories,
                **({"category_counts": self.category_counts} if self.category_counts is not None else {})}

    def set_state(self, state: Mapping[str, Any]) -> None:
        if "categories" in state:
            self.fill = np.asarray(state["fill"], np.float64)
            self.center = np.asarray(state["center"], np.float64)
            self.scale = np.asarray(state["scale"], np.float64)
            self.categories = {k: list(v) for k, v in state["categories"].items()}
            counts = state.get("category_counts")
            self.category_counts = None if counts is None else {k: [int(c) for c in v] for k, v in counts.items()}
            self._build_lookup()

    def encoding_config(self) -> dict[str, Any]:
        """The settings; ``normalize_categories: none``, how every run keyed categories before the
        setting, is left out, so that those runs keep their fingerprint (the one their weights
        record, which serving checks an export against) and their cached features."""
        config = super().encoding_config()
        if config.get("normalize_categories") == "none":
            del config["normalize_categories"]
        return config

    def settings_digest_config(self) -> dict[str, Any]:
        """Every setting but ``unknown_rate``: training only, it changes no stored output of a frozen
        encoder (computed in evaluation), so runs saved before it keep their stored embeddings."""
        config = super().settings_digest_config()
        config.pop("unknown_rate", None)
        return config

    def runtime_settings(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The base's, without ``unknown_rate`` (training only: the runtime never applies it)."""
        settings, state = super().runtime_settings()
        settings.pop("unknown_rate", None)
        return settings, state

    def encoding_state(self) -> dict[str, Any]:
        """The state featurising depends on (the categories' training counts do not)."""
        state = {k: v for k, v in self.get_state().items() if k != "category_counts"}
        return {**state, "numeric": self.numeric, "categorical": self.categorical}
