"""The fitted data side of a model: every modality's preprocessor plus the target encoder.

``DataPipeline.fit(train)`` learns them from a training manifest; ``encode(manifest)`` turns
any manifest into an :class:`EncodedTable`; ``dataset(...)`` wraps it for torch. The state is
saved as JSON/safetensors in the run folder's ``preprocessors/``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from polymodal.config import Config
from polymodal.config.columns import class_columns, csv_columns, numeric_target_columns
from polymodal.config.modalities import modality_columns
from polymodal.data.cache import cache_root, take
from polymodal.data.cells import is_empty
from polymodal.data.dataset import MultimodalDataset
from polymodal.data.encode import EncodedModality, EncodedTable, encode_manifest, manifest_cells
from polymodal.data.manifest import Manifest, read_manifest
from polymodal.data.modalities import Preprocessor, build_preprocessor
from polymodal.data.multitarget import MultiTargetEncoder, build_targets, targets_from_state
from polymodal.data.skipped import require_rows
from polymodal.data.targets import warn_if_constant, warn_if_continuous
from polymodal.data.validation import validate_manifest
from polymodal.errors import ManifestError, SchemaMismatchError
from polymodal.run_files import TARGETS_FILE
from polymodal.utils.io import atomic_folder, atomic_write_json
from polymodal.utils.memory import release_memory
from polymodal.utils.suggest import did_you_mean
from polymodal.utils.warn import warn_user

DataSource = str | os.PathLike | pd.DataFrame | Manifest


NUMBER_TEXT_MIN_ROWS = 10  # fewer: too few to call a column numeric


def _warn_if_numbers(manifest: Manifest, name: str, column: str, present: np.ndarray) -> None:
    """Warn about a text modality whose every training text is a number (a measurement read as
    words learns one token per distinct value): most likely a column for a tabular modality."""
    if present.sum() < NUMBER_TEXT_MIN_ROWS:
        return
    values = manifest.column(column)[present]
    if pd.to_numeric(values, errors="coerce").notna().all():
        warn_user(f"text modality '{name}': every training cell of column '{column}' is a number "
                  f"(e.g. {values.iloc[0]!r}); read as text, each value is a word of its own: list the column in a "
                  "tabular modality's 'columns' to read it as a number, or its 'categorical' for codes")


def as_names(modalities: str | Iterable[str] | None) -> list[str] | None:
    """``modalities`` as a list of names (a bare name is one modality), None kept."""
    return None if modalities is None else [modalities] if isinstance(modalities, str) else list(modalities)


def column_meant(column: str, modality: str, columns: list[str]) -> str:
    """`` (did you mean 'DE'?)`` for the one of ``columns`` most likely meant for a modality's
    absent ``column``: a close spelling of it (:func:`did_you_mean`), else the modality's own name
    in another case (``DE`` for modality ``de`` reading ``de_path``); ``""`` when none is."""
    return did_you_mean(column, columns) or did_you_mean(modality, [c for c in columns
                                                                   if c.casefold() == modality.casefold()])


class DataPipeline:
    """Preprocessors and target encoder for one config."""

    def __init__(self, config: Config, targets: Any = None):
        """``targets``: the target encoder (an anomaly detector's own); None: the task's, with
        one per further task (``tasks``: :func:`~polymodal.data.multitarget.build_targets`)."""
        self.config = config
        self.preprocessors: dict[str, Preprocessor] = {
            name: build_preprocessor(config.modalities[name], name) for name in config.modality_names
        }
        self.targets = build_targets(config) if targets is None else targets

    # -- reading ------------------------------------------------------------------------------
    def read(self, data: DataSource, *, require_target: bool, modalities: Iterable[str] | None = None,
             training: bool = False) -> Manifest:
        """Read and validate a manifest (every problem reported at once).

        Args:
            modalities: restrict to these modalities (None: those whose columns the data has;
                at least one must be there, and a warning names the absent ones).
            training: every modality's column must be there and every row must hold one.
        """
        modalities = None if modalities is None else list(modalities)
        check = (require_target, None if modalities is None else sorted(modalities), training)
        if isinstance(data, Manifest) and data.checked is not None and data.checked[0] is self.config \
                and data.checked[1:] == check:  # validated before (the test manifest read before training)
            return data
        manifest = self.read_raw(data)
        if training:
            validate_manifest(manifest, self.config, require_target=require_target, training=True)
        else:
            names = self.check_modalities(modalities, manifest)
            if modalities is None:
                self._warn_absent(names, manifest)
            validate_manifest(manifest, self.config, require_target=require_target, modalities=names,
                              allow_empty_rows=modalities is not None, allow_partial_columns=True)
            self.warn_unknown_categories(manifest, names)
        release_memory(len(manifest))  # the parser's and the validation's buffers
        manifest.checked = (self.config, *check)
        return manifest

    def read_raw(self, data: DataSource) -> Manifest:
        """``data`` as a Manifest, not validated; a CSV's modality columns are read as text and its
        class labels keep their text where numbers would change them (see
        :func:`~polymodal.data.manifest.read_manifest`)."""
        return read_manifest(data, **csv_columns(self.config))

    def check_modalities(self, modalities: str | Iterable[str] | None, manifest: Manifest | None) -> list[str]:
        """The modalities to use for ``manifest``: ``modalities`` (a bare name is one modality),
        validated (an unknown name with the one most likely meant); None: those whose columns the
        manifest holds (refused when it holds none; only then is ``manifest`` read)."""
        known = self.config.modality_names
        if modalities is not None:
            chosen = as_names(modalities)
            if not chosen:
                raise SchemaMismatchError(f"no modality chosen (modalities=[]); name at least one of {known}")
            unknown = [name for name in dict.fromkeys(chosen) if name not in known]
            if unknown:
                said = ", ".join(f"'{name}'{did_you_mean(name, known)}" for name in unknown)
                raise SchemaMismatchError(f"modalities: unknown modalit{'y' if len(unknown) == 1 else 'ies'} {said}; "
                                          f"this model has {known}")
            return sorted(chosen)
        columns = set(manifest.columns)
        chosen = [n for n in known if any(c in columns for c in modality_columns(self.config.modalities[n]))]
        if not chosen:
            expected = {n: modality_columns(self.config.modalities[n]) for n in known}
            meant = [f"'{c}'{hint}" for n, cols in expected.items() for c in cols
                     if (hint := column_meant(c, n, [str(k) for k in manifest.columns]))]
            raise SchemaMismatchError(
                f"{manifest.name} has none of this model's modality columns; expected any of {expected}, "
                f"got columns {list(manifest.columns)}" + (f"; {', '.join(meant)}" if meant else "")
            )
        return chosen

    def _warn_absent(self, chosen: list[str], manifest: Manifest) -> None:
        """Warn that the model's modalities outside ``chosen`` have no column in ``manifest`` (they
        are treated as missing in every row), naming the manifest's columns the model does not read;
        and that those of ``chosen`` whose column is empty in every row are missing too."""
        partial = {n: [c for c in modality_columns(self.config.modalities[n]) if c not in manifest.columns]
                   for n in chosen}
        for n, cols in partial.items():
            if cols:  # a table read without some of its columns
                named = ", ".join(f"'{c}'{did_you_mean(str(c), manifest.columns)}" for c in cols)
                warn_user(f"{manifest.name} has no column{'s' if len(cols) > 1 else ''} {named} of modality {n}: "
                          f"{'they are' if len(cols) > 1 else 'it is'} missing in every row (imputed as any "
                          "missing value)")
        blank = [n for n in chosen if all(_all_empty(manifest.column(c)) for c in modality_columns(
            self.config.modalities[n]) if c in manifest.columns)]
        for n in blank:
            cols = [c for c in modality_columns(self.config.modalities[n]) if c in manifest.columns]
            where = f"column '{cols[0]}'" if len(cols) == 1 else f"columns {cols}"
            warn_user(f"{manifest.name}: modality {n} ({where}) has no value in any row: predicting without it")

        absent = {n: modality_columns(self.config.modalities[n]) for n in self.config.modality_names if n not in chosen}
        if not absent:
            return
        read = {c for m in self.config.modalities.values() for c in modality_columns(m)} | set(self.config.targets)
        for task in (self.config.tasks or {}).values():
            read |= set(task.targets)
        unknown = [str(c) for c in manifest.columns if c not in read]
        missing = ", ".join((f"column {cols[0]!r}" if len(cols) == 1 else f"columns {cols}") + f" (modality {n})"
                            + "".join(column_meant(c, n, unknown) for c in cols) for n, cols in absent.items())
        extra = "" if not unknown else f"; unrecognised columns: {unknown[:10]}" + (
            f" and {len(unknown) - 10} more" if len(unknown) > 10 else "")
        warn_user(f"{manifest.name} has no {missing}: predicting without {'it' if len(absent) == 1 else 'them'} "
                      f"(missing in every row){extra}")

    # -- fitting and encoding -----------------------------------------------------------------
    def fit(self, manifest: Manifest, progress: bool = False) -> tuple[EncodedTable, np.ndarray]:
        """Fit every preprocessor and the target encoder on a training manifest.

        Returns:
            The encoded training table and its encoded targets.

        Raises:
            ManifestError: a modality has no value in any training row, or none that could be
                read (``data.on_error`` ``skip``/``missing``), so there is nothing to fit its
                preprocessing on; or skipping unreadable files left no training row.
        """
        on_error = self.config.data.on_error
        self.warn_about_targets(manifest)
        for name, prep in self.preprocessors.items():
            cells = manifest_cells(manifest, self.config.modalities[name], prep.file_based)
            present = self.fit_rows(manifest, name, cells.present())
            if prep.kind == "text":
                _warn_if_numbers(manifest, name, self.config.modalities[name].column, present)
            prep.fit(cells.subset(np.flatnonzero(present)))
        table = self.encode(manifest, progress=progress)
        require_rows(table, manifest, on_error, "train on", "training row(s)")
        for name, prep in self.preprocessors.items():
            mod = table.modalities[name]
            if not mod.present.any():  # every file of it unreadable, or (skip) its rows dropped for others'
                raise self._nothing_to_fit(manifest, name, _nothing_left(table, prep, len(manifest), on_error),
                                           files=prep.file_based)
            self._fit_statistics(prep, mod)
        self.targets.fit(manifest if len(table) == len(manifest) else manifest.subset(table.rows))
        return table, self.encode_targets(manifest, table)

    def fit_rows(self, manifest: Manifest, name: str, present: np.ndarray | None = None) -> np.ndarray:
        """The rows of a validated training manifest that modality ``name``'s preprocessing is
        fitted on: those holding a value of it (``present``, as its cells say when None) whose
        file, for a file-based modality, validation did not find missing.

        Raises:
            ManifestError: no row holds a value of it, or (``data.on_error`` ``skip``/``missing``)
                none names a file that exists: nothing to fit its preprocessing on.
        """
        prep = self.preprocessors[name]
        if present is None:
            present = manifest_cells(manifest, self.config.modalities[name], prep.file_based).present()
        if not present.any():
            raise self._nothing_to_fit(manifest, name, "has no value in any training row")
        rows, reasons = manifest.absent(self.config.modalities[name].column) if prep.file_based else ((), ())
        if len(rows):  # files validation found missing (on_error skip / missing)
            present = present.copy()
            present[rows] = False
            if not present.any():
                raise self._nothing_to_fit(manifest, name, f"names no file that exists in any training row "
                                           f"({len(rows)} skipped, data.on_error: {self.config.data.on_error}; "
                                           f"first: {manifest.where(int(rows[0]))}: {reasons[0]})", files=True)
        return present

    def warn_about_targets(self, manifest: Manifest) -> None:
        """Warn about target columns of a training manifest that are read, but likely wrong: a
        classification target that looks continuous, a multilabel label or regression target
        holding one value in every row."""
        for column in class_columns(self.config):
            warn_if_continuous(manifest, column)
        for key, task, column in numeric_target_columns(self.config):
            warn_if_constant(manifest, task, column, key)

    def _nothing_to_fit(self, manifest: Manifest, name: str, why: str, files: bool = False) -> ManifestError:
        """The error for a modality whose training rows give its preprocessing nothing to fit on
        (``files``: because its files could not be read)."""
        columns = modality_columns(self.config.modalities[name])
        where = f"column '{columns[0]}'" if len(columns) == 1 else f"columns {columns}"
        fix = "fix or replace the files," if files else "fill the column"
        return ManifestError([f"{manifest.name}: {where} (modality '{name}') {why}: nothing to fit its preprocessing "
                              f"on; {fix} or drop the modality from the config"], source=manifest.name)

    def _fit_statistics(self, prep: Preprocessor, mod: EncodedModality) -> None:
        """``prep.fit_features`` on the present rows; with a feature cache, the fitted state is
        stored under ``<cache>/<fingerprint>/statistics/<digest>/``, the digest covering the
        preprocessing settings and the content keys of those rows in order, and a later fit on the
        same rows restores it instead of another pass over their features."""
        cache_dir = cache_root(self.config.data.cache_dir)
        if cache_dir is None or mod.keys is None:
            prep.fit_features({k: take(v, mod.present) for k, v in mod.arrays.items()})
            return
        fingerprint = prep.fingerprint()
        settings = {"name": prep.name, "config": prep.cfg.model_dump(mode="json") if hasattr(prep, "cfg") else {}}
        digest = hashlib.blake2b(json.dumps(settings, sort_keys=True).encode(), digest_size=16)
        digest.update(np.ascontiguousarray(mod.keys[mod.present]).tobytes())
        folder = Path(cache_dir) / fingerprint / "statistics" / digest.hexdigest()
        if folder.is_dir():
            try:
                prep.load(folder)
                return
            except (OSError, KeyError, ValueError):  # unreadable or from an older state format: fit again
                pass
        prep.fit_features({k: take(v, mod.present) for k, v in mod.arrays.items()})
        try:
            with atomic_folder(folder, replace=False) as tmp:  # another process may store it first: kept
                prep.save(tmp)
        except OSError:  # a read-only cache: fitted anyway
            pass

    def encode(self, manifest: Manifest, progress: bool = False, modalities: Iterable[str] | None = None) -> EncodedTable:
        """Encode a manifest; modalities outside ``modalities`` are absent everywhere (their files
        are not read: a broken sensor's files do not stop a prediction without it)."""
        if modalities is not None:
            chosen = {c for n in modalities for c in modality_columns(self.config.modalities[n])}
            left_out = [c for n in self.preprocessors if n not in set(modalities)
                        for c in modality_columns(self.config.modalities[n]) if c not in chosen]
            manifest = manifest.without_columns(left_out)
        table = encode_manifest(manifest, self.preprocessors, self.config.modalities,
                                on_error=self.config.data.on_error, progress=progress,
                                cache_dir=cache_root(self.config.data.cache_dir),
                                memory_limit_gb=self.config.data.memory_limit_gb)
        if modalities is not None:
            for name in set(self.preprocessors) - set(modalities):
                table.modalities[name].present[:] = False
        return table

    def warn_unknown_categories(self, manifest: Manifest, modalities: Iterable[str]) -> None:
        """Warn, per categorical column of the tabular ``modalities``, about the rows of
        ``manifest`` whose category the model did not learn: they read as the unknown category
        (one that is a learned category but for case or surrounding whitespace is named with it);
        and about empty cells where the model learned a category pandas reads as missing
        (:meth:`~polymodal.data.modalities.tabular.TabularPreprocessor.missing_value_categories`)."""
        for name in modalities:
            prep = self.preprocessors[name]
            if prep.kind != "tabular" or prep.categories is None:  # not fitted yet: nothing learned to compare
                continue
            for column in (c for c in prep.categorical if c in manifest.columns):
                unknown = prep.unknown_categories(column, manifest.column(column))
                if unknown:
                    shown = ", ".join(repr(k) for k, _ in unknown.most_common(5)) + (", ..." if len(unknown) > 5 else "")
                    warn_user(f"{manifest.name}: column '{column}' of modality {name}: {sum(unknown.values())} row(s) "
                              f"hold categories the model did not learn ({shown}): they read as the unknown category"
                              + _spelling_hint(prep, name, column, [k for k, _ in unknown.most_common()]))
                _warn_missing_value_categories(manifest, prep, name, column)

    def encode_targets(self, manifest: Manifest, table: EncodedTable, *, scorable: bool = False) -> np.ndarray:
        """The targets of ``table``'s rows. ``scorable`` (an evaluation): a further task whose
        targets ``manifest`` cannot give is left unscored, with a warning, rather than refused
        (:meth:`~polymodal.data.multitarget.MultiTargetEncoder.encode_scorable`)."""
        if scorable and isinstance(self.targets, MultiTargetEncoder):
            return self.targets.encode_scorable(manifest, table.rows)
        return self.targets.encode(manifest, table.rows)

    def check_test_targets(self, manifest: Manifest) -> None:
        """Refuse, before the epochs, a test manifest whose main task's targets cannot be scored (a
        class training never saw); a further task's (``tasks``) are left to the evaluation after
        them, which leaves that task unscored with a warning (:meth:`encode_targets`).

        Raises:
            SchemaMismatchError: a label of the main task that training did not see.
        """
        main = self.targets.main if isinstance(self.targets, MultiTargetEncoder) else self.targets
        main.encode(manifest)

    def dataset(self, table: EncodedTable, targets: np.ndarray | None = None, train: bool = False) -> MultimodalDataset:
        return MultimodalDataset(table, self.preprocessors, targets, train=train)

    def contexts(self) -> dict[str, dict[str, Any]]:
        """What each encoder needs to know about its input."""
        return {name: prep.encoder_context() for name, prep in self.preprocessors.items()}

    # -- state --------------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for prep in self.preprocessors.values():
            prep.save(folder)
        atomic_write_json(folder / TARGETS_FILE, self.targets.get_state())

    @classmethod
    def load(cls, config: Config, folder: Path,
             read_targets: Callable[[Mapping[str, Any]], Any] = targets_from_state) -> DataPipeline:
        """The pipeline :meth:`save` wrote into ``folder``; ``read_targets``: the target encoder
        from its state (an anomaly detector's own)."""
        state = json.loads((folder / TARGETS_FILE).read_text(encoding="utf-8"))
        pipeline = cls(config, targets=read_targets(state))
        for prep in pipeline.preprocessors.values():
            prep.load(folder)
        return pipeline


def _nothing_left(table: EncodedTable, prep: Preprocessor, rows: int, on_error: str) -> str:
    """Why ``prep``'s modality is present in none of ``table``'s rows, encoded from ``rows``
    training rows whose unreadable files were skipped: its own files (or values), or (``skip``) its
    rows dropped for another modality's file."""
    own = [s for s in table.skipped if s.modality == prep.name]
    first = ""
    if own:
        first = f"; first: {own[0].where}: " + (f"{own[0].path} ({own[0].reason})" if own[0].path else own[0].reason)
    if on_error == "missing":
        what = "file" if prep.file_based else "value"
        return f"has no readable {what} in any training row ({len(own)} unreadable, data.on_error: missing{first})"
    return (f"has no value left in any training row once the rows with an unreadable file were skipped "
            f"({rows - len(table)} of {rows} rows left out, {len(own)} of them for a file of its own; data.on_error: "
            f"{on_error}{first})")


def _spelling_hint(prep: Any, name: str, column: str, unknown: list[str]) -> str:
    """``; did you mean 'electronics'? (...)`` for the categories a tabular modality ``name`` did
    not learn (most rows first) that are learned ones but for case or surrounding whitespace: the
    first few, and the setting that keys them as one; ``""`` when none is."""
    meant = prep.spelt_otherwise(column, unknown)
    if not meant:
        return ""
    said = ", ".join(f"{learned!r} for {key!r}" for key, learned in list(meant.items())[:5])
    if len(meant) == 1 and len(unknown) == 1:
        said = repr(next(iter(meant.values())))
    how = "strip_lower" if any(key.strip() != learned.strip() for key, learned in meant.items()) else "strip"
    return (f"; did you mean {said}? (modalities.{name}.preprocess.normalize_categories: {how} in the tabular "
            "modality reads them as one, in a model trained with it; or correct the cells)")


def _warn_missing_value_categories(manifest: Manifest, prep: Any, name: str, column: str) -> None:
    """Warn when categorical ``column`` of ``manifest`` has empty cells and its tabular modality
    ``name`` learned a category whose text pandas reads as missing (``NA``): a DataFrame read by
    ``pd.read_csv`` with its default ``na_values`` turned that text into NaN, and those rows read
    as the missing category, not as the one learned. Not for a manifest read from its file
    (polymodal keeps such text), nor for a DataFrame whose column still holds the text (read so)."""
    learned = prep.missing_value_categories(column)
    if not learned or manifest.name != "DataFrame":
        return
    cells = manifest.column(column)
    empty = int(cells.map(is_empty).to_numpy(dtype=bool).sum())
    if not empty or cells.astype(str).str.strip().str.lower().isin([c.lower() for c in learned]).any():
        return
    named = " or ".join(map(repr, learned))
    warn_user(f"{manifest.name}: column '{column}' of modality {name}: {empty} of {len(manifest)} cell(s) are empty, "
              f"and the model learned the categor{'y' if len(learned) == 1 else 'ies'} {named}, which pandas reads as "
              f"missing by default: cells that held {named} read as missing now, not as the category; read the CSV "
              "with pd.read_csv(..., keep_default_na=False, na_values=['']) (only empty cells missing), or pass the "
              "file's path, which polymodal reads keeping such text")


def _all_empty(column: pd.Series) -> bool:
    """Whether every cell of a manifest column is empty (NaN, None or blank text), vectorised."""
    filled = column.notna()
    if not filled.any():
        return True
    if pd.api.types.is_numeric_dtype(column.dtype) or pd.api.types.is_bool_dtype(column.dtype):
        return False
    try:
        text = column[filled].astype("string")
    except (UnicodeDecodeError, TypeError, ValueError):  # bytes or other objects: not blank (validation names them)
        return False
    return bool(text.str.strip().eq("").all())
