"""Encoding a manifest into per-modality arrays (chunks decoded and featurised in DataLoader worker processes).

The result, an :class:`EncodedTable`, holds for each modality fixed-shape arrays with one row
per manifest row and a presence mask. Absent cells (and, with ``on_error: missing``, files that
failed to decode) are zero rows with ``present = False``.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polymodal.config.modalities import modality_columns
from polymodal.data.cache import FeatureStore, open_cache_dir, take
from polymodal.data.cells import BLOCK, Cells
from polymodal.data.content_keys import KEY_BYTES, StatMemo, content_keys
from polymodal.data.manifest import WHOLE_ROW, Manifest
from polymodal.data.modalities.base import Preprocessor
from polymodal.data.skipped import Skipped
from polymodal.errors import AbsentInputError, DecodeError
from polymodal.utils.io import exclusive_lock
from polymodal.utils.memory import release_memory
from polymodal.utils.progress import progress_bar
from polymodal.utils.warn import warn_user

CHUNK = 256


@dataclass
class EncodedModality:
    """Arrays with a leading axis of N rows, and which rows hold the modality.

    Attributes:
        batcher: turns batched arrays into encoder inputs in place of the modality's preprocessor
            (``to_batch``); set for precomputed encoder outputs (``polymodal.data.embeddings``).
        keys: what identifies each row's content in the cache (zeros where absent).
        read_absent: the rows whose file held nothing of the modality (an
            :class:`~polymodal.errors.AbsentInputError`), read as absent when encoded.
    """

    arrays: dict[str, np.ndarray]
    present: np.ndarray  # (N,) bool
    batcher: Any = None
    keys: np.ndarray | None = None  # (N,) content keys of the rows, when read through the feature cache
    read_absent: np.ndarray | None = None  # (K,) rows


@dataclass
class EncodedTable:
    """Every modality of a manifest, encoded; ``rows`` maps back to the manifest's row numbers."""

    modalities: dict[str, EncodedModality]
    rows: np.ndarray
    skipped: list[Skipped] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)

    def absent(self) -> np.ndarray:
        """(N,) per row, the modalities it lacks, comma-separated (empty when it holds them all):
        what a prediction was made without. Text even with no row (an object array), so that the
        parts of a chunked prediction agree on the column's type."""
        names = list(self.modalities)
        present = np.stack([self.modalities[name].present for name in names], axis=1) if names else \
            np.ones((len(self.rows), 0), bool)
        return np.asarray([", ".join(n for n, held in zip(names, row) if not held) for row in present], dtype=object)

    def select(self, keep: np.ndarray) -> EncodedTable:
        """Rows where ``keep`` is True."""
        mods = {
            name: EncodedModality({k: take(v, keep) for k, v in mod.arrays.items()}, mod.present[keep], mod.batcher,
                                  None if mod.keys is None else mod.keys[keep])
            for name, mod in self.modalities.items()
        }
        return EncodedTable(mods, self.rows[keep], self.skipped)


def manifest_cells(manifest: Manifest, modality_cfg: Any, file_based: bool) -> Cells:
    """The cells of one modality (see :class:`~polymodal.data.cells.Cells`): an absolute path,
    an inline value, a tuple of values (tabular), or None when the modality is missing for that row."""
    return Cells(manifest, modality_columns(modality_cfg), file_based)


def gather_cells(cells: Sequence[Any], rows: np.ndarray) -> list[Any]:
    """``cells[rows]``: a :class:`Cells` view reads just those manifest rows; a list is indexed."""
    return cells[rows] if isinstance(cells, Cells) else [cells[r] for r in rows.tolist()]


def _column(cells: Sequence[Any]) -> str | None:
    """The manifest column of a modality's cells when it reads one (a table's cells name their
    own column in its messages)."""
    return cells.columns[0] if isinstance(cells, Cells) and len(cells.columns) == 1 else None


def _present(cells: Sequence[Any]) -> np.ndarray:
    return cells.present() if isinstance(cells, Cells) else np.array([c is not None for c in cells], bool)


class _Chunks(torch.utils.data.Dataset):
    """Chunk ``i`` of ``cells[rows]`` -> (positions of the decoded items, their featurised
    arrays, errors as (position, reason, path, absent: the summary of an
    :class:`~polymodal.errors.AbsentInputError`, else None), notes as (position, note):
    ``Preprocessor.notes``). Runs in DataLoader worker processes."""

    def __init__(self, preprocessor: Preprocessor, cells: Sequence[Any], rows: np.ndarray):
        self.preprocessor = preprocessor
        self.cells = cells
        self.rows = rows

    def __len__(self) -> int:
        return -(-len(self.rows) // CHUNK)

    def __getitem__(self, i: int) -> tuple[np.ndarray, dict[str, np.ndarray],
                                           list[tuple[int, str, str | None, tuple[str, str] | None]], list[tuple[int, str]]]:
        start = i * CHUNK
        good, samples, errors = self.preprocessor.decode_chunk(gather_cells(self.cells, self.rows[start:start + CHUNK]))
        feats = self.preprocessor.featurize(samples) if samples else {}
        notes = [(start + position, note) for position, sample in zip(good, samples, strict=True)
                 for note in self.preprocessor.notes(sample)]
        return (np.asarray(good, dtype=np.int64) + start, feats,
                [(start + position, err.reason, err.path, said_absent(err)) for position, err in errors], notes)


def _as_is(item: Any) -> Any:
    return item


# Work left in a pass that pays for starting workers: forked ones start in tens of milliseconds;
# spawned ones (macOS, Windows, forkserver) import torch again, a second or more each.
WORKER_MIN_SECONDS = {"fork": 1.0}
SPAWNED_WORKER_MIN_SECONDS = 5.0


def encode_workers(preprocessor: Preprocessor, seconds_left: float) -> int:
    """Worker processes for the rest of an encoding pass: one per core (at most 8) when the work
    left, estimated from the first chunk, is long enough to pay for starting them; else none."""
    cores = os.cpu_count() or 1
    method = multiprocessing.get_start_method(allow_none=True) or multiprocessing.get_all_start_methods()[0]
    minimum = WORKER_MIN_SECONDS.get(method, SPAWNED_WORKER_MIN_SECONDS)
    if not preprocessor.file_based or cores < 2 or seconds_left < minimum:
        return 0
    return min(8, cores)


def freeze_inherited_objects(worker_id: int) -> None:
    """A DataLoader worker's ``worker_init_fn``: the objects a forked worker inherits are never
    garbage-collected in it (``gc.freeze``). A parent's garbage not yet collected (a PyAV filter
    graph left by decoding a video's sound track) would otherwise be freed in the child, where the
    library's threads do not exist: freeing its thread pool there waits on them for ever (a
    deadlock seen under ``fork``). The parent frees them; the child's own objects are collected as
    usual."""
    import gc

    gc.freeze()


def unshared_generator() -> torch.Generator:
    """A generator of its own (seeded 0) for a DataLoader that draws nothing at random (encoding,
    inference) to draw its workers' base seed from: a DataLoader without one draws it from torch's
    global generator on every pass, and encoding or predicting would move the caller's stream."""
    return torch.Generator().manual_seed(0)


def _featurize_rows(preprocessor: Preprocessor, cells: Sequence[Any], rows: np.ndarray, manifest: Manifest, *,
                    write: Any, on_error: str, progress: bool, label: str
                    ) -> tuple[np.ndarray, list[Skipped], np.ndarray]:
    """Decode and featurise ``cells[rows]`` chunk by chunk and ``write(positions, arrays)``, where
    positions index into ``rows``. The first chunk runs in-process and is timed; the rest goes to
    worker processes when that estimate says they pay off. Returns which positions succeeded
    (bool mask), the skipped cells and the rows read as absent; the decoded samples' notes (``Preprocessor.notes``) are
    one warning (:func:`warn_notes`). A cell whose file holds nothing of the modality
    (:class:`~polymodal.errors.AbsentInputError`) is neither done nor skipped: the modality is
    absent in that row, as for an empty cell, whatever ``on_error``, and one warning counts them
    (:func:`warn_absent`)."""
    done = np.zeros(len(rows), bool)
    skipped: list[Skipped] = []
    noted: dict[str, list[int]] = {}  # note -> the manifest rows it was said of
    absent: dict[tuple[str, str], list[int]] = {}  # an AbsentInputError's summary -> the manifest rows read as absent
    chunks = _Chunks(preprocessor, cells, rows)

    def consume(good: np.ndarray, feats: dict[str, np.ndarray], found: list[tuple[int, str, str | None, tuple[str, str] | None]],
                notes: list[tuple[int, str]]) -> None:
        for position, note in notes:
            noted.setdefault(note, []).append(int(rows[position]))
        for position, _, _, summary in found:
            if summary is not None:
                absent.setdefault(summary, []).append(int(rows[position]))
        errors = [(p, r, file) for p, r, file, summary in found if summary is None]
        for position, reason, path in errors:
            row = int(rows[position])
            if on_error == "raise":  # the first, and the next few of the rows decoded with it that fail too
                others = [f"{manifest.rows_text([int(rows[p])])}: {r}" + (f" ({file})" if file else "")
                          for p, r, file in errors[1:4]]
                more = f" (also, among the rows decoded with it: {'; '.join(others)}" \
                       f"{f'; and {len(errors) - 4} more' if len(errors) > 4 else ''})" if others else ""
                raise DecodeError(reason + more, path=path, modality=preprocessor.name, row=manifest.source_row(row),
                                  where=manifest.where(row), column=_column(cells))
            skipped.append(Skipped(preprocessor.name, row, manifest.where(row), path, reason, manifest.source_row(row)))
        if len(good):
            write(good, feats)
            done[good] = True
        advance(len(good) + len(found))

    with progress_bar(len(rows), label, enabled=progress) as advance:
        if len(chunks) == 0:
            return done, skipped, np.zeros(0, np.int64)
        started = time.perf_counter()
        consume(*chunks[0])
        workers = encode_workers(preprocessor, (time.perf_counter() - started) * (len(chunks) - 1))
        rest = torch.utils.data.Subset(chunks, range(1, len(chunks)))
        loader = torch.utils.data.DataLoader(rest, batch_size=None, shuffle=False, num_workers=workers,
                                             collate_fn=_as_is, prefetch_factor=2 if workers else None,
                                             worker_init_fn=freeze_inherited_objects,
                                             generator=unshared_generator())
        for item in loader:
            consume(*item)
    warn_notes(preprocessor, manifest, noted)
    warn_absent(preprocessor, manifest, absent)
    return done, skipped, np.asarray(sorted(r for found in absent.values() for r in found), np.int64)


def said_absent(err: DecodeError) -> tuple[str, str] | None:
    """An :class:`~polymodal.errors.AbsentInputError`'s summary, said of one and of several rows
    (``("video holds no audio track", "videos hold no audio track")``); None for any other error."""
    return tuple(err.summary) if isinstance(err, AbsentInputError) else None


def warn_absent(preprocessor: Preprocessor, manifest: Manifest, absent: Mapping[str, list[int]]) -> None:
    """One warning per kind of cell read as absent (``absent``: :func:`said_absent` -> the manifest
    rows): ``3 rows' videos hold no audio track (rows 1 (line 3), ...): their audio modality 'sound'
    is read as absent, as an empty cell is``."""
    for summary, found in absent.items():
        rows = sorted(found)
        one, many = summary
        said = f"1 row's {one}" if len(rows) == 1 else f"{len(rows)} rows' {many}"
        warn_user(f"{manifest.name}: {said} ({manifest.rows_text(rows, limit=5)}): {'its' if len(rows) == 1 else 'their'} "
                  f"{preprocessor.kind} modality '{preprocessor.name}' is read as absent, as an empty cell is")


SHOWN_NOTES = 3  # distinct notes a warning quotes


def warn_notes(preprocessor: Preprocessor, manifest: Manifest, noted: Mapping[str, list[int]]) -> None:
    """One warning for a modality's notes in a manifest (``noted``: note -> manifest rows), the
    commonest first, each with its first rows (:meth:`Manifest.rows_text`)."""
    if not noted:
        return
    rows = sorted({row for found in noted.values() for row in found})
    ranked = sorted(noted.items(), key=lambda item: (-len(item[1]), item[1][0]))
    said = "; ".join(f"{note} ({manifest.rows_text(sorted(found), limit=5)})" for note, found in ranked[:SHOWN_NOTES])
    more = f"; and {len(ranked) - SHOWN_NOTES} other note(s)" if len(ranked) > SHOWN_NOTES else ""
    warn_user(f"{manifest.name}: {preprocessor.kind} modality '{preprocessor.name}', {len(rows)} row(s): {said}{more}")


def _keys(preprocessor: Preprocessor, cells: Sequence[Any], rows: np.ndarray, manifest: Manifest, on_error: str,
          memo: StatMemo | None) -> tuple[np.ndarray, np.ndarray, list[Skipped]]:
    """Content keys of ``cells[rows]`` (block by block), which of them could be read, and the
    unreadable files."""
    keys = np.zeros(len(rows), f"S{KEY_BYTES}")
    ok = np.ones(len(rows), bool)
    skipped = []
    for start in range(0, len(rows), BLOCK):
        block = rows[start:start + BLOCK]
        values = gather_cells(cells, block)
        keys[start:start + len(block)], errors = content_keys(values, preprocessor.file_based, memo)
        for position, err in sorted(errors.items()):
            row = int(block[position])
            error = DecodeError(f"unreadable file ({err})", path=str(values[position]), modality=preprocessor.name,
                                row=manifest.source_row(row), where=manifest.where(row), column=_column(cells))
            if on_error == "raise":
                raise error
            skipped.append(Skipped(preprocessor.name, row, manifest.where(row), str(values[position]), error.reason,
                                   manifest.source_row(row)))
            ok[start + position] = False
    if memo is not None:
        memo.flush()
    return keys, ok, skipped


def _same_content_skipped(bad: list[Skipped], keys: np.ndarray, failed: np.ndarray, missing: np.ndarray,
                          todo: np.ndarray, cells: Sequence[Any], manifest: Manifest, name: str) -> list[Skipped]:
    """The other rows whose content is that of a file that failed to decode: one decode per
    distinct content stood for them, so they are skipped (and listed) with the same reason."""
    by_row = {s.row: s.reason for s in bad}
    reason = {keys[p]: by_row[int(todo[p])] for p in failed.tolist()}
    rest = missing[np.isin(keys[missing], list(reason)) & ~np.isin(missing, failed)]
    return [Skipped(name, int(row), manifest.where(int(row)), str(value), reason[keys[p]], manifest.source_row(int(row)))
            for p, row, value in zip(rest.tolist(), todo[rest], gather_cells(cells, todo[rest]))]


def encode_modality(
    preprocessor: Preprocessor,
    cells: Sequence[Any],
    manifest: Manifest,
    *,
    on_error: str = "raise",
    progress: bool = False,
    cache_dir: Path | None = None,
    absent: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[EncodedModality, list[Skipped]]:
    """Decode and featurise every present cell.

    Args:
        cells: from :func:`manifest_cells` (or a list of cells, None where absent).
        on_error: ``raise`` stops at the first bad file (naming file, row and reason);
            ``skip``/``missing`` record it and leave the row absent.
        cache_dir: with a folder, featurised items are read from / added to the on-disk
            :class:`~polymodal.data.cache.FeatureStore` and the arrays returned are memory-mapped
            views; without, arrays are built in memory.
        absent: (positions, reasons) of the rows whose cell names no file (``file not found``), as
            validation found them (:meth:`~polymodal.data.manifest.Manifest.absent`): not read,
            but skipped and listed as an unreadable file is.

    Raises:
        DecodeError: a cell could not be decoded (or is in ``absent``) and ``on_error`` is ``raise``.
    """
    todo = np.flatnonzero(_present(cells))
    gone: list[Skipped] = []
    if absent is not None and len(absent[0]):
        todo, gone = _skip_absent(preprocessor.name, cells, todo, manifest, absent, on_error)
    encoded, skipped = _encode_rows(preprocessor, cells, todo, manifest, on_error=on_error, progress=progress,
                                    cache_dir=cache_dir)
    return encoded, sorted(gone + skipped, key=lambda s: s.row) if gone else skipped


def _skip_absent(name: str, cells: Sequence[Any], todo: np.ndarray, manifest: Manifest,
                 absent: tuple[np.ndarray, np.ndarray], on_error: str) -> tuple[np.ndarray, list[Skipped]]:
    """``todo`` without the rows in ``absent``, and those rows as skipped files.

    Raises:
        DecodeError: ``on_error`` is ``raise`` (the first of them).
    """
    positions, reasons = absent
    rows, _, at = np.intersect1d(todo, positions, assume_unique=True, return_indices=True)
    gone = [Skipped(name, row, manifest.where(row), str(path), reason, manifest.source_row(row))
            for row, path, reason in zip(rows.tolist(), gather_cells(cells, rows), reasons[at])]
    if gone and on_error == "raise":
        first = gone[0]
        raise DecodeError(first.reason, path=first.path, modality=name, row=first.source_row, where=first.where,
                          column=_column(cells))
    return np.setdiff1d(todo, rows, assume_unique=True), gone


def _encode_rows(preprocessor: Preprocessor, cells: Sequence[Any], todo: np.ndarray, manifest: Manifest, *,
                 on_error: str, progress: bool, cache_dir: Path | None) -> tuple[EncodedModality, list[Skipped]]:
    """:func:`encode_modality` of the cells at ``todo`` (the others are absent)."""
    n = len(cells)
    spec = preprocessor.spec()
    label = f"encoding {preprocessor.name}"
    if cache_dir is None:
        arrays = {k: np.zeros((n, *s.shape), s.dtype) for k, s in spec.items()}

        def write(positions: np.ndarray, feats: dict[str, np.ndarray]) -> None:
            for key, value in feats.items():
                arrays[key][todo[positions]] = value

        done, skipped, read_absent = _featurize_rows(preprocessor, cells, todo, manifest, write=write,
                                                     on_error=on_error, progress=progress, label=label)
        present = np.zeros(n, bool)
        present[todo[done]] = True
        return EncodedModality(arrays, present, read_absent=read_absent), skipped

    store = FeatureStore(cache_dir, preprocessor.fingerprint(), spec)
    memo = StatMemo(cache_dir) if preprocessor.file_based else None
    keys, readable, skipped = _keys(preprocessor, cells, todo, manifest, on_error, memo)
    with _encoding_alone(store, readable, keys, label, progress) as missing:
        skipped, read_absent = _encode_missing(store, preprocessor, cells, todo, manifest, keys, missing, skipped,
                                               on_error=on_error, progress=progress, label=label)
    segment, slot = store.lookup(keys)
    segment[~readable] = -1
    segment_of = np.full(n, -1, np.int32)
    slot_of = np.zeros(n, np.int32)
    segment_of[todo], slot_of[todo] = segment, slot
    row_keys = np.zeros(n, f"S{KEY_BYTES}")
    row_keys[todo[segment >= 0]] = keys[segment >= 0]
    return EncodedModality(store.view(segment_of, slot_of), segment_of >= 0, keys=row_keys,
                           read_absent=read_absent), skipped


@contextmanager
def _encoding_alone(store: FeatureStore, readable: np.ndarray, keys: np.ndarray, label: str,
                    progress: bool) -> Iterator[np.ndarray]:
    """The positions of the ``readable`` items whose ``keys`` ``store`` lacks, for a block that
    encodes and stores them while no other process encodes into the store: several runs, or the
    ranks of a distributed fit, meeting a cold cache would each decode every item and store a
    copy. Nothing is locked when every item is stored; a process that waits says so (with
    ``progress``), and then finds what the other stored."""
    segment, _ = store.lookup(keys)
    if not (readable & (segment < 0)).any():
        yield np.zeros(0, np.int64)
        return

    def waiting(lock: Path) -> None:
        if progress:
            print(f"{label}: another process is encoding into the feature cache {store.folder} (lock {lock}); "
                  "waiting to reuse what it stores", file=sys.stderr, flush=True)

    with exclusive_lock(store.folder, None, waiting):
        store.refresh()
        segment, _ = store.lookup(keys)
        yield np.flatnonzero(readable & (segment < 0))


def _encode_missing(store: FeatureStore, preprocessor: Preprocessor, cells: Sequence[Any], todo: np.ndarray,
                    manifest: Manifest, keys: np.ndarray, missing: np.ndarray, skipped: list[Skipped], *,
                    on_error: str, progress: bool, label: str) -> tuple[list[Skipped], np.ndarray]:
    """Featurise the items at ``missing`` (positions in ``todo``; one decode per distinct content)
    into a new segment of ``store``: the files skipped (``skipped`` and those that failed) and the
    rows read as absent."""
    _, first = np.unique(keys[missing], return_index=True)
    new_positions = np.sort(missing[first])
    if not len(new_positions):
        return skipped, np.zeros(0, np.int64)
    tmp, out = store.open_segment(len(new_positions))

    def write_store(positions: np.ndarray, feats: dict[str, np.ndarray]) -> None:
        for key, value in feats.items():
            out[key][positions] = value

    try:
        filled, bad, read_absent = _featurize_rows(preprocessor, cells, todo[new_positions], manifest,
                                                   write=write_store, on_error=on_error, progress=progress,
                                                   label=label)
    except BaseException:
        store.discard_segment(tmp)
        raise
    failed = new_positions[~filled & ~np.isin(todo[new_positions], read_absent)]  # not those read as absent
    skipped = skipped + bad + _same_content_skipped(bad, keys, failed, missing, todo, cells, manifest,
                                                    preprocessor.name)
    store.commit_segment(tmp, out, keys[new_positions], filled)
    return skipped, read_absent


def encode_manifest(
    manifest: Manifest,
    preprocessors: Mapping[str, Preprocessor],
    modality_cfgs: Mapping[str, Any],
    *,
    on_error: str = "raise",
    progress: bool = False,
    cache_dir: Path | None = None,
    memory_limit_gb: float = float("inf"),
) -> EncodedTable:
    """Encode every modality of a manifest.

    Encoded data that would exceed ``memory_limit_gb`` goes to a temporary on-disk store
    (memory-mapped, read lazily) when no ``cache_dir`` is given.

    With ``on_error: skip`` rows with any undecodable file (or a file validation found missing,
    :meth:`~polymodal.data.manifest.Manifest.absent`) are dropped; with ``missing`` only that
    modality is marked absent (rows left with no modality at all are dropped), and a table's cell
    validation found unusable (no number) reads as missing (:class:`~polymodal.data.cells.Cells`). Either way every
    such file is listed in ``EncodedTable.skipped``, and so is a row validation found without
    any modality (``Manifest.absent(WHOLE_ROW)``; its ``modality`` is ``""``), which is dropped.
    """
    if cache_dir is not None:
        cache_dir = open_cache_dir(cache_dir)
    elif (needed := encoded_bytes(preprocessors, len(manifest))) > memory_limit_gb * 2**30:
        cache_dir = spill_folder()
        if progress:  # where the disk goes: a node's temporary folder may itself be memory (tmpfs)
            print(f"{manifest.name}: its encoded data (about {needed / 2**30:.3g} GB) exceeds data.memory_limit_gb "
                  f"{memory_limit_gb:g}: written to {cache_dir} and read memory-mapped (removed at exit; TMPDIR or "
                  "data.cache_dir chooses the folder)", file=sys.stderr, flush=True)
    encoded, skipped = {}, []
    for name in sorted(preprocessors):
        prep = preprocessors[name]
        cells = manifest_cells(manifest, modality_cfgs[name], prep.file_based)
        encoded[name], bad = encode_modality(prep, cells, manifest, on_error=on_error, progress=progress,
                                              cache_dir=cache_dir, absent=manifest.absent(modality_cfgs[name].column) if prep.file_based else None)
        release_memory(len(cells))  # keys, lookups and decode buffers of this modality's pass
        skipped += bad
        if not prep.file_based:  # cells validation found unusable (on_error: missing): read as missing, listed
            for column in modality_columns(modality_cfgs[name]):
                rows, reasons = manifest.absent(column)
                skipped += [Skipped(name, row, manifest.where(row), None, reason, manifest.source_row(row))
                            for row, reason in zip(rows.tolist(), reasons)]
    empty, reasons = manifest.absent(WHOLE_ROW)  # rows validation found without any modality (on_error not raise)
    skipped += [Skipped("", row, manifest.where(row), None, reason, manifest.source_row(row))
                for row, reason in zip(empty.tolist(), reasons)]
    skipped += _left_without_modality(manifest, encoded, skipped, on_error)
    table = EncodedTable(encoded, np.arange(len(manifest)), skipped)
    keep = np.ones(len(manifest), bool)
    if on_error == "skip" and skipped:
        keep[[s.row for s in skipped]] = False
    if skipped:  # rows whose only modalities failed to decode
        keep &= np.any([m.present for m in encoded.values()], axis=0)
    return table if keep.all() else table.select(keep)


NOTHING_LEFT = "no modality left: its only files hold nothing of their modality (read as absent)"


def _left_without_modality(manifest: Manifest, encoded: Mapping[str, EncodedModality], skipped: list[Skipped],
                           on_error: str) -> list[Skipped]:
    """The rows that hold no modality once the files holding nothing of theirs were read as absent
    (:class:`~polymodal.errors.AbsentInputError`: a video without sound the only cell of an audio
    modality; ``EncodedModality.read_absent``) and that no listed file explains: as a row without
    any modality is, listed (and dropped), or refused under ``on_error: raise``."""
    read_absent = [m.read_absent for m in encoded.values() if m.read_absent is not None and len(m.read_absent)]
    if not read_absent:
        return []
    nothing = ~np.any([m.present for m in encoded.values()], axis=0)
    rows = np.setdiff1d(np.intersect1d(np.flatnonzero(nothing), np.concatenate(read_absent)), [s.row for s in skipped])
    if len(rows) and on_error == "raise":
        raise DecodeError(NOTHING_LEFT, row=manifest.source_row(int(rows[0])), where=manifest.where(int(rows[0])))
    return [Skipped("", int(row), manifest.where(int(row)), None, NOTHING_LEFT, manifest.source_row(int(row)))
            for row in rows]



def encoded_bytes(preprocessors: Mapping[str, Preprocessor], rows: int) -> int:
    """Bytes the encoded arrays of ``rows`` rows take."""
    per_row = sum(int(np.prod(s.shape, dtype=np.int64)) * np.dtype(s.dtype).itemsize
                  for p in preprocessors.values() for s in p.spec().values())
    return per_row * rows


_SPILL: list[Path] = []


def spill_folder() -> Path:
    """A process-wide temporary feature store for data too large for memory (removed at exit)."""
    if not _SPILL:
        import atexit
        import shutil
        import tempfile

        folder = Path(tempfile.mkdtemp(prefix="polymodal-spill-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        _SPILL.append(folder)
    return _SPILL[0]
