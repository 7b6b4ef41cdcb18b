"""Noise robustness sweeps: a task metric per modality, corruption and severity (0-5).

Each corrupted evaluation re-encodes one modality of the evaluated rows through
:class:`CorruptedPreprocessor`, which wraps the fitted preprocessor: the corruption runs right
after ``decode`` (or on the raw cell for text and tabular data), then the usual ``featurize``.
The encoding never uses the feature cache, so corrupted arrays are never stored, and the noise
of a row depends only on (seed, modality, corruption, severity, source row): the same run and
data give the same numbers.

The other modalities keep what the network read on the clean rows (``EvalData.features``): a
cached frozen encoder (``encoder.cache``) runs only while its own modality is corrupted, once per
severity on the evaluated rows (corrupted inputs have no stored outputs), never for another
modality's corruption.

Summary per (modality, corruption):

- ``worst``: the lowest metric over severities 0-5 (a curve need not fall monotonically, so
  this is not always the severity-5 value, which is the curves' last point).
- ``relative_robustness``: the area under metric-vs-severity, severities mapped to [0, 1]
  (trapezoid rule); it equals the clean metric for a model noise does not affect.
- ``effective_robustness`` (with a reference run, typically late fusion):
  ``AUC - AUC_ref - (clean - clean_ref)``, the area the model keeps above the reference beyond
  its clean-data advantage; positive = it degrades more gracefully than the reference.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from polymodal.config.task_metrics import TASK_METRICS
from polymodal.data.encode import EncodedModality, EncodedTable, encode_modality, manifest_cells
from polymodal.data.modalities.base import ArraySpec, Preprocessor
from polymodal.data.multitarget import MultiTargetEncoder
from polymodal.errors import ConfigError, ManifestError, OptionError, SchemaMismatchError, option
from polymodal.evaluation.corruptions import CORRUPTIONS, SEVERITIES, Corruption
from polymodal.evaluation.data import EvalData, check_max_rows, load_eval_data
from polymodal.utils.progress import progress_bar
from polymodal.utils.suggest import did_you_mean
from polymodal.utils.warn import warn_user

if TYPE_CHECKING:
    import torch

    from polymodal.data.pipeline import DataSource
    from polymodal.estimator import Estimator
    from polymodal.predictor import MultimodalPredictor

# the corruption the automatic report sweeps, per modality kind (the CLI sweeps every registered one)
REPORT_CORRUPTIONS = {"image": "gaussian_noise", "audio": "white_noise", "text": "typos", "signal": "noise",
                      "tabular": "missing", "video": "gaussian_noise"}


def row_rng(seed: int, key: str, severity: int, row: int) -> np.random.Generator:
    """The generator of one corrupted cell; ``key`` names the modality and corruption."""
    return np.random.default_rng([seed, zlib.crc32(key.encode()), severity, row])


class CorruptedPreprocessor(Preprocessor):
    """A fitted preprocessor whose ``decode`` also corrupts. Cells are ``(source row, value, position)``
    (``position``: the cell's index in the evaluated rows, which ``decoded`` is keyed by).

    Args:
        inner: the fitted preprocessor.
        corruption: what to apply, at ``severity``.
        seed: the sweep's seed.
        pool: every raw cell of the modality in the evaluated data (for corruptions that draw
            values from other rows).
        decoded: the cells' samples decoded before (:func:`decoded_once`), which a ``decoded``
            stage corruption corrupts a copy of instead of decoding the cell again.
    """

    def __init__(self, inner: Preprocessor, corruption: Corruption, severity: int, seed: int,
                 pool: Sequence[Any] = (), decoded: Mapping[int, Any] | None = None):
        super().__init__(inner.name)
        self.inner = inner
        self.kind = inner.kind
        self.file_based = inner.file_based
        self.corruption = corruption
        self.severity = severity
        self.seed = seed
        self.pool = list(pool)
        self.decoded = decoded or {}
        self.key = f"{inner.name}/{corruption.name}"

    @classmethod
    def from_config(cls, cfg: Any, *, name: str) -> Preprocessor:
        raise TypeError("CorruptedPreprocessor wraps a fitted preprocessor; it is not built from a config")

    def __getstate__(self) -> dict[str, Any]:
        """Without the decoded samples: an encoding worker started by spawn (macOS, Windows) would
        get a pickled copy of them each; it decodes its cells again (a forked one shares them)."""
        return {**self.__dict__, "decoded": {}}

    def decode(self, value: tuple[int, Any, int]) -> Any:
        row, cell, position = value
        rng = row_rng(self.seed, self.key, self.severity, int(row))
        if self.corruption.stage == "raw":
            return self.inner.decode(self.corruption(cell, self.severity, rng, self.pool))
        sample = self.decoded[position] if position in self.decoded else self.inner.decode(cell)
        return self.corruption(sample, self.severity, rng, self.pool)  # corruptions never change their input

    def featurize(self, samples: Sequence[Any]) -> dict[str, np.ndarray]:
        return self.inner.featurize(samples)

    def spec(self) -> dict[str, ArraySpec]:
        return self.inner.spec()

    def to_batch(self, arrays: Mapping[str, torch.Tensor], train: bool) -> dict[str, torch.Tensor]:
        return self.inner.to_batch(arrays, train)


# at most this many bytes of decoded samples per modality are kept for a sweep's corruptions (beyond
# it, each corrupted evaluation decodes its cells again)
DECODED_KEPT_BYTES = 1 << 30


def _swept_cells(predictor: MultimodalPredictor, data: EvalData, modality: str) -> tuple[list[Any], np.ndarray]:
    """The modality's cells in ``data.manifest`` and which of them a corruption reads (those the
    clean evaluation held present)."""
    prep = predictor.require_fitted()[0].preprocessors[modality]
    cells = manifest_cells(data.manifest, predictor.config.modalities[modality], prep.file_based)
    wanted = np.zeros(len(cells), bool)
    wanted[data.table.rows[data.table.modalities[modality].present]] = True
    return cells, wanted


def decoded_once(predictor: MultimodalPredictor, data: EvalData, modality: str) -> dict[int, Any]:
    """``{position: decoded sample}`` of the modality's cells a sweep corrupts, decoded once for all
    its ``decoded``-stage corruptions and severities (a video's frames, an audio file: decoding
    is most of a corrupted evaluation's cost). Empty where they would hold more than
    ``DECODED_KEPT_BYTES`` (judged by the first sample): each evaluation then decodes again. A
    cell that fails to decode is left out (its corrupted evaluations fail on it as before)."""
    prep = predictor.require_fitted()[0].preprocessors[modality]
    cells, wanted = _swept_cells(predictor, data, modality)
    positions = np.flatnonzero(wanted)
    if not len(positions):
        return {}
    good, samples, _ = prep.decode_chunk([cells[positions[0]]])
    if not samples:
        return {}
    if _nbytes(samples[0]) * len(positions) > DECODED_KEPT_BYTES:
        return {}
    decoded = {int(positions[0]): samples[0]}
    good, samples, _ = prep.decode_chunk([cells[p] for p in positions[1:]])
    decoded.update({int(positions[1:][g]): sample for g, sample in zip(good, samples, strict=True)})
    return decoded


def _nbytes(sample: Any) -> int:
    """Bytes of a decoded sample's arrays (a tuple's, such as ``(frames, valid)``; 64 for anything else)."""
    if isinstance(sample, np.ndarray):
        return sample.nbytes
    if isinstance(sample, tuple | list):
        return sum(_nbytes(part) for part in sample)
    return 64


def corrupt_table(predictor: MultimodalPredictor, data: EvalData, modality: str, corruption: Corruption,
                  severity: int, seed: int = 0, decoded: Mapping[int, Any] | None = None) -> tuple[EncodedTable, int]:
    """``data.features`` with ``modality`` re-encoded under ``corruption`` at ``severity`` (its
    encoder, cached or not, then runs on the corrupted inputs).

    Args:
        decoded: the modality's samples decoded before (:func:`decoded_once`), corrupted in place
            of decoding their cells again (``decoded``-stage corruptions).

    Returns:
        The table, and how many present cells failed to decode once corrupted (they count as
        missing).
    """
    pipeline, _ = predictor.require_fitted()
    prep = pipeline.preprocessors[modality]
    cells, wanted = _swept_cells(predictor, data, modality)
    clean = data.table.modalities[modality]
    items = [None if (c is None or not wanted[i]) else (int(data.sampled[i]), c, i) for i, c in enumerate(cells)]
    pool = [c for c in cells if c is not None] if corruption.stage == "raw" else []
    wrapped = CorruptedPreprocessor(prep, corruption, severity, seed, pool, decoded)
    encoded, failed = encode_modality(wrapped, items, data.manifest, on_error="missing", cache_dir=None)
    rows = data.table.rows
    arrays = {k: np.asarray(v)[rows] for k, v in encoded.arrays.items()}
    modalities = dict(data.features.modalities)  # the other modalities as the network read them clean
    modalities[modality] = EncodedModality(arrays, encoded.present[rows] & clean.present)
    return EncodedTable(modalities, rows, data.table.skipped), len(failed)


def _named(spec: Any) -> str:
    """How a message names one spec: ``--corruption img:blur`` (the CLI), ``corruptions='img:blur'`` (Python)."""
    return option(f"--corruption {spec}", f"corruptions={spec!r}")


def parse_corruptions(specs: str | Sequence[str] | None, predictor: MultimodalPredictor) -> dict[str, list[str]]:
    """``["audio:white_noise", "image"]`` -> ``{modality: [corruption, ...]}``; a bare modality
    name means every corruption of its kind; None or empty means every corruption of every modality;
    a single string is one spec (``"image:blur"``).

    Raises:
        OptionError: a spec that is not text, an unknown modality or corruption (allowed ones listed).
    """
    if isinstance(specs, str):  # one spec, not its letters
        specs = [specs]
    modalities = predictor.config.modalities
    chosen: dict[str, list[str]] = {}
    every = [name for name in predictor.config.modality_names if CORRUPTIONS.names(modalities[name].kind)]
    for spec in specs or every:  # by default, every modality of a kind that has corruptions (today: every kind)
        if not isinstance(spec, str):
            raise OptionError([f"{_named(spec)}: a spec is MODALITY or MODALITY:CORRUPTION text; got "
                               f"{type(spec).__name__}"])
        name, colon, corruption = spec.partition(":")
        if colon and not corruption:
            raise OptionError([f"{_named(spec)}: no corruption after the colon; give MODALITY or "
                               "MODALITY:CORRUPTION"])
        if name not in modalities:
            raise OptionError([f"{_named(spec)}: unknown modality '{name}'"
                               f"{did_you_mean(name, predictor.config.modality_names)}; this model has "
                               f"{predictor.config.modality_names}"])
        kind = modalities[name].kind
        if not CORRUPTIONS.names(kind):
            raise OptionError([f"{_named(spec)}: modality '{name}' is of kind '{kind}', which has no "
                               f"corruptions (kinds that have: {sorted(CORRUPTIONS.kinds())})"])
        try:
            names = [CORRUPTIONS.get(kind, corruption).name] if corruption else CORRUPTIONS.names(kind)
        except ConfigError as err:
            raise OptionError([f"{_named(spec)}: {problem}" for problem in err.problems]) from None
        chosen.setdefault(name, [])
        chosen[name] += [n for n in names if n not in chosen[name]]
    return chosen


def check_corruption_map(corruptions: Mapping[Any, Any], predictor: MultimodalPredictor,
                         option: str = "corruptions") -> dict[str, list[str]]:
    """``{modality: [corruption, ...]}`` (a single name for one corruption) checked as
    :func:`parse_corruptions` checks specs; returned with each list as names, without repeats.

    Raises:
        OptionError: an unknown modality, a value that is not a corruption name or a list of them
            (or an empty list), an unknown corruption; each named ``corruptions['MODALITY']``.
    """
    modalities = predictor.config.modalities
    chosen: dict[str, list[str]] = {}
    for name, value in corruptions.items():
        where = f"{option}[{name!r}]"
        if name not in modalities:
            raise OptionError([f"{where}: unknown modality {name!r}{did_you_mean(name, predictor.config.modality_names)}; "
                               f"this model has {predictor.config.modality_names}"])
        names = [value] if isinstance(value, str) else value
        if not isinstance(names, Sequence) or not names or not all(isinstance(n, str) for n in names):
            raise OptionError([f"{where}: a corruption name or a non-empty list of them (those of kind "
                               f"'{modalities[name].kind}': {CORRUPTIONS.names(modalities[name].kind)}); got {value!r}"])
        try:
            found = [CORRUPTIONS.get(modalities[name].kind, n).name for n in names]
        except ConfigError as err:
            raise OptionError([f"{where}: {problem}" for problem in err.problems]) from None
        chosen[name] = list(dict.fromkeys(found))
    return chosen


def area(values: Sequence[float]) -> float:
    """Trapezoid area under ``values`` at evenly spaced severities mapped to [0, 1]."""
    v = np.asarray(values, np.float64)
    return float((v[:-1] + v[1:]).sum() / 2.0 / (len(v) - 1)) if len(v) > 1 else float(v[0])


@dataclass
class RobustnessResult:
    """A sweep's results.

    Attributes:
        metric: the metric swept (``accuracy``, ``macro_f1`` or ``r2``).
        curves: one row per (modality, corruption, severity): ``level``, ``unit``, the metric,
            ``failed`` (cells that no longer decoded) and, with a reference, ``reference``.
        summary: one row per (modality, corruption): ``clean``, ``worst`` (the lowest metric at
            any severity), ``relative_robustness`` and, with a reference, ``effective_robustness``
            and the reference's own ``reference_clean`` and ``reference_relative_robustness`` (what
            the effective robustness subtracts).
        rows: rows evaluated.
        chance: what the metric reaches without looking at any input (accuracy: always the most
            frequent class of these rows; R²: always the mean, 0); None where no such line is
            drawn (macro F1). A curve that falls to it says the model gave up, not that skill
            was left.
    """

    metric: str
    curves: pd.DataFrame
    summary: pd.DataFrame
    rows: int
    chance: float | None = None


def chance_level(predictor: MultimodalPredictor, data: EvalData) -> float | None:
    """See :attr:`RobustnessResult.chance` (a multi-task model: its main task's)."""
    if predictor.config.task == "regression":
        return 0.0
    if predictor.config.task != "classification" or data.targets is None or not len(data.targets):
        return None
    targets = data.targets
    if isinstance(predictor.pipeline.targets, MultiTargetEncoder):
        targets = predictor.pipeline.targets.main_targets(targets)
    return float(np.bincount(np.asarray(targets, np.int64)).max() / len(targets))


def _metric(scores: Mapping[str, Any], metric: str) -> float:
    """``scores[metric]`` as a float: NaN where it is undefined (None: R2 of rows whose target is
    constant), so that a curve's column stays numeric."""
    value = scores[metric]
    return float("nan") if value is None else float(value)


def _sweep_curves(predictor: MultimodalPredictor, data: EvalData, corruptions: Mapping[str, Sequence[str]],
                  seed: int, progress: str | None = None) -> list[dict[str, Any]]:
    """The curve rows; ``progress``: the description of a progress bar over the corrupted evaluations."""
    if data.targets is None:
        raise SchemaMismatchError("a robustness sweep needs labelled data")
    metric = TASK_METRICS[predictor.config.task].sweep
    clean = _metric(predictor.score_outputs(predictor.raw_outputs(data.features), data.targets), metric)
    # a modality the data never holds has nothing to corrupt
    swept = {m: names for m, names in corruptions.items() if data.table.modalities[m].present.any()}
    empty = [m for m in corruptions if m not in swept]
    if empty and not swept:
        raise SchemaMismatchError(f"no row holds {', '.join(empty)}: there is nothing to corrupt")
    if empty:
        warn_user(f"no row holds {', '.join(empty)}: nothing to corrupt there, left out of the sweep")
    rows = []
    cells = sum(len(names) for names in swept.values()) * SEVERITIES
    with progress_bar(cells, progress or "", enabled=progress is not None, min_total=1) as advance:
        for modality, names in swept.items():
            kind = predictor.config.modalities[modality].kind
            stages = {CORRUPTIONS.get(kind, name).stage for name in names}
            decoded = decoded_once(predictor, data, modality) if "decoded" in stages else None
            for name in names:
                corruption = CORRUPTIONS.get(kind, name)
                rows.append({"modality": modality, "corruption": name, "severity": 0, "level": None,
                             "unit": corruption.unit, metric: clean, "failed": 0})
                for severity in range(1, SEVERITIES + 1):
                    table, failed = corrupt_table(predictor, data, modality, corruption, severity, seed, decoded)
                    score = _metric(predictor.score_outputs(predictor.raw_outputs(table), data.targets), metric)
                    rows.append({"modality": modality, "corruption": name, "severity": severity,
                                 "level": corruption.levels[severity - 1], "unit": corruption.unit, metric: score,
                                 "failed": failed})
                    advance(1)
    return rows


def robustness_sweep(predictor: MultimodalPredictor, data: DataSource | EvalData,
                     corruptions: Mapping[str, str | Sequence[str]] | str | Sequence[str] | None = None, *,
                     seed: int = 0, max_rows: int | None = None, reference: MultimodalPredictor | None = None,
                     progress: bool = False) -> RobustnessResult:
    """Evaluate ``predictor`` with one modality corrupted at a time, at severities 0..5.

    Args:
        data: a labelled manifest (or an already encoded :class:`EvalData`).
        corruptions: ``{modality: [corruption, ...]}`` (a single name for one), or a spec or specs for
            :func:`parse_corruptions` (``"image:blur"``, ``["image", "audio:white_noise"]``); None =
            every registered corruption of every modality's kind.
        seed: seeds the corruptions (and the row sample).
        max_rows: evaluate a seeded random sample of at most this many rows (at least 1).
        reference: a second run (e.g. late fusion) swept identically, for effective robustness;
            it must do the same task, have the swept modalities under the same names and kinds and
            (classification) know every evaluated label. It is checked, and the rows encoded for
            it, before either sweep runs.
        progress: show a progress bar over the corrupted evaluations (modality x corruption x severity).

    Raises:
        OptionError: an unknown modality or corruption, or ``max_rows`` below 1.
        SchemaMismatchError: unlabelled data, or a reference that cannot be swept beside this model
            (the message names the reference run).
    """
    check_max_rows(max_rows)
    if isinstance(corruptions, Mapping):
        corruptions = check_corruption_map(corruptions, predictor)
    else:
        corruptions = parse_corruptions(corruptions, predictor)
    if reference is not None:  # before any row is read, let alone swept
        check_reference(predictor, reference, corruptions)
    if not isinstance(data, EvalData):
        data = load_eval_data(predictor, data, require_target=True, max_rows=max_rows, seed=seed)
    ref_data = None if reference is None else reference_data(reference, data)  # its labels: before the sweep
    metric = TASK_METRICS[predictor.config.task].sweep
    curves = pd.DataFrame(_sweep_curves(predictor, data, corruptions, seed, "robustness sweep" if progress else None))
    if ref_data is not None:
        ref = pd.DataFrame(_sweep_curves(reference, ref_data, corruptions, seed,
                                         "robustness sweep (reference)" if progress else None))
        if not ref.empty:
            curves = curves.merge(ref[["modality", "corruption", "severity", metric]].rename(
                columns={metric: "reference"}), on=["modality", "corruption", "severity"], how="left")
    return RobustnessResult(metric, curves, _summary(curves, metric), len(data), chance_level(predictor, data))


def reference_name(reference: Estimator) -> str:
    """``the reference run runs/q`` (one never saved: ``the reference run``)."""
    return "the reference run" + ("" if reference.run_dir is None else f" {reference.run_dir}")


def check_reference(model: MultimodalPredictor, reference: Estimator,
                    corruptions: Mapping[str, Sequence[str]], data: DataSource | None = None) -> None:
    """Whether ``reference`` can be swept beside ``model``: the same task, and each swept modality
    under the same name and kind; with ``data`` (a labelled manifest), also that the reference reads
    its rows and knows their labels (only the target column is encoded: no file is decoded).

    Raises:
        SchemaMismatchError: what does not match, naming the reference run (:func:`reference_name`).
        ManifestError: the reference cannot read ``data`` (its problems, naming the reference run).
    """
    name = reference_name(reference)
    if reference.config.task != model.config.task:
        raise SchemaMismatchError(f"{name} does task '{reference.config.task}'; the evaluated run does "
                                  f"'{model.config.task}': a reference must do the same task")
    for modality in corruptions:
        ref = reference.config.modalities.get(modality)
        if ref is None or ref.kind != model.config.modalities[modality].kind:
            have = {n: m.kind for n, m in reference.config.modalities.items()}
            raise SchemaMismatchError(f"{name} must have modality '{modality}' of kind "
                                      f"'{model.config.modalities[modality].kind}' (it is swept); it has {have}")
    if data is not None:
        pipeline, _ = reference.require_fitted()
        with _naming_reference(reference):
            pipeline.targets.encode(pipeline.read(data, require_target=True))


def reference_data(reference: MultimodalPredictor, data: EvalData) -> EvalData:
    """``data``'s rows encoded for ``reference``, each with the noise of its source row.

    Raises:
        SchemaMismatchError, ManifestError: the reference cannot encode the rows (a label it never
            saw...), naming the reference run.
    """
    with _naming_reference(reference):
        ref_data = load_eval_data(reference, data.manifest, require_target=True)
    ref_data.sampled = data.sampled  # the same rows get the same noise
    return ref_data


@contextmanager
def _naming_reference(reference: MultimodalPredictor) -> Iterator[None]:
    """Re-raise a data error found for ``reference`` with the reference run named in front (the
    message would otherwise read as the evaluated run's)."""
    name = reference_name(reference)
    try:
        yield
    except SchemaMismatchError as err:
        raise SchemaMismatchError(f"{name} cannot score the evaluated rows: {err}") from err
    except ManifestError as err:
        raise ManifestError([f"{name}: {problem}" for problem in err.problems], source=err.source) from err


def _summary(curves: pd.DataFrame, metric: str) -> pd.DataFrame:
    rows = []
    if curves.empty:
        return pd.DataFrame(columns=["modality", "corruption", "clean", "worst", "relative_robustness"])
    for (modality, corruption), part in curves.groupby(["modality", "corruption"], sort=False):
        part = part.sort_values("severity")
        values = part[metric].to_numpy(np.float64)
        row = {"modality": modality, "corruption": corruption, "clean": values[0], "worst": values.min(),
               "relative_robustness": area(values)}
        if "reference" in part and part["reference"].notna().all():
            ref = part["reference"].to_numpy(np.float64)
            row["effective_robustness"] = area(values) - area(ref) - (values[0] - ref[0])
            row["reference_clean"], row["reference_relative_robustness"] = ref[0], area(ref)
        rows.append(row)
    return pd.DataFrame(rows)
