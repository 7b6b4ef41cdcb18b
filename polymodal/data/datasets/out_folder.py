"""The folder a dataset is prepared into (``--out``): refused when it holds files, unless they
are an earlier preparation's and ``overwrite`` is given; then those files are replaced, and
never a file no preparation wrote.

A preparation writes :data:`MARKER` (the dataset's name) first, so that even an interrupted one
is known as a preparation, and ``dataset.json`` last (see :func:`~polymodal.data.datasets.prepare`).
An earlier preparation's files are moved aside (:data:`HOLDING`) while the new one is written:
removed once it is complete, moved back if it fails, so a failed ``--overwrite`` (a bad value
a converter refuses, Ctrl-C) leaves the earlier dataset as it was; one killed before it could
(SIGKILL, out of memory) is put right by the next preparation into the folder. A lock keeps two
preparations out of one folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from polymodal.data.datasets.base import DATASETS, SPLITS
from polymodal.errors import OptionError
from polymodal.utils.io import atomic_write_json, exclusive_lock

MARKER = ".polymodal-dataset.json"  # written first: {"dataset": NAME}
HOLDING = ".polymodal-replaced"  # an earlier preparation's files while a new one is written
SUMMARY = "dataset.json"  # written last: the preparation is complete
COMMON = (MARKER, HOLDING, SUMMARY, *(f"{split}.csv" for split in SPLITS))


def written_entries(name: str | None) -> tuple[str, ...]:
    """The names a preparation of dataset ``name`` writes directly in its folder: the manifests,
    the summary, the marker, and the dataset's own folders (``images``, ``audio``...); only the
    common ones for a name no longer registered (or None)."""
    spec = DATASETS.get(name) if name is not None else None
    return COMMON + (spec.folders if spec is not None else ())


def earlier_dataset(out: Path) -> tuple[str | None, bool]:
    """The dataset an earlier preparation wrote into ``out``, by its marker, else (a folder
    prepared before the marker existed) by its ``dataset.json``; and whether it completed
    (``dataset.json`` is there). ``(None, False)``: no preparation is known there (a file that
    is not the JSON a preparation writes counts as none: the folder is then not taken for one)."""
    complete = (out / SUMMARY).is_file()
    for path, key in ((out / MARKER, "dataset"), (out / SUMMARY, "name")):
        if path.is_file():
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
                name = record.get(key)
            except (ValueError, AttributeError):  # not JSON, or not an object: not a preparation's file
                continue
            # a summary alone (no marker) counts only as a registered dataset's, with its rows per split
            legacy = path.name == SUMMARY and not (name in DATASETS and isinstance(record.get("rows"), dict))
            if isinstance(name, str) and not legacy:
                return name, complete
    return None, False


def _is_written(entry: str, names: tuple[str, ...]) -> bool:
    """Whether ``entry`` is one of ``names`` or the temporary file an atomic write of one leaves
    when killed (``.train.csv.1a2b3c4d.tmp``)."""
    temporary = re.fullmatch(r"\.(.+)\.[0-9a-f]{8}\.tmp", entry)
    return entry in names or (temporary is not None and temporary.group(1) in names)


def _shown(entries: list[Path]) -> str:
    """A few of ``entries`` by name, folders with a slash."""
    names = [f"{e.name}/" if e.is_dir() else e.name for e in entries]
    return ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")


def check_out(out: Path, overwrite: bool) -> list[Path]:
    """The entries of ``out`` an earlier preparation wrote, to replace; empty for a new or empty
    folder.

    Raises:
        OptionError: ``out`` holds files and ``overwrite`` is not given, naming the dataset an
            earlier preparation wrote there; or it holds files no preparation wrote (the
            ``overwrite`` never removes them), naming some.
    """
    entries = sorted(out.iterdir()) if out.is_dir() else []
    if not entries:
        return []
    name, complete = earlier_dataset(out)
    names = written_entries(name)
    foreign = [e for e in entries if name is None or not _is_written(e.name, names)]
    if name is None:
        raise OptionError([f"--out {out} is not empty and holds no prepared dataset ({_shown(entries)}); a dataset "
                           "is prepared into a new or empty folder, and --overwrite replaces only a folder a "
                           "preparation wrote: give another --out"])
    what = f"the {name} dataset{_rows(out)}" if complete else f"an unfinished preparation of {name} (no {SUMMARY})"
    others = (f" and {len(foreign)} file(s) no preparation wrote ({_shown(foreign)}), which --overwrite never "
              "removes") if foreign else ""
    if not overwrite:
        move = "move those out of the folder and " if foreign else ""
        raise OptionError([f"--out {out} already holds {what}{others}; {move}give --overwrite to replace the dataset "
                           "(its files are removed, so none of an earlier, larger preparation stays), or another --out"])
    if foreign:
        raise OptionError([f"--out {out} holds {what}{others}: move them out of the folder, or give another --out"])
    return entries


def _rows(out: Path) -> str:
    """`` (300 rows)``: the rows of the splits a prepared folder's summary records; ``""`` if none."""
    try:
        rows = json.loads((out / SUMMARY).read_text(encoding="utf-8")).get("rows") or {}
        return f" ({sum(int(n) for n in rows.values()):,} rows)"
    except (ValueError, AttributeError, TypeError):  # a summary without row counts: said without them
        return ""


STATE = ".state.json"  # in HOLDING: {"moved": false} while the earlier files are moved in, true once all are


@contextmanager
def preparing(out: Path, name: str, overwrite: bool) -> Iterator[None]:
    """Prepare dataset ``name`` into ``out`` within the block (see the module's description):
    ``out`` locked against another preparation, a replacement a killed process left half done
    put right (:func:`_recover`), ``out`` checked (:func:`check_out`), an earlier preparation's
    files moved aside, the marker written; on success the earlier files are removed, on failure
    (a partial move aside included) what the block wrote is removed and the earlier files come
    back (a folder this made is removed again)."""
    def busy(lock: Path) -> Exception:
        return OptionError([f"--out {out}: another preparation is writing this folder (it holds the lock {lock}); "
                            "wait for it to finish, or give another --out"])

    with exclusive_lock(out, busy):
        _recover(out)
        earlier = check_out(out, overwrite)
        made = not out.exists()
        holding = out / HOLDING
        started = not earlier  # whether what out holds is the new preparation's alone
        try:
            if earlier:
                holding.mkdir()
                atomic_write_json(holding / STATE, {"moved": False})
                for entry in earlier:
                    os.replace(entry, holding / entry.name)
                atomic_write_json(holding / STATE, {"moved": True})
                started = True
            out.mkdir(parents=True, exist_ok=True)
            atomic_write_json(out / MARKER, {"dataset": name})
            yield
        except BaseException:
            _put_back(out, new_files=started)
            if made and out.is_dir():
                out.rmdir()
            raise
        if earlier:
            _remove(holding)


def _recover(out: Path) -> None:
    """Put right a replacement a killed process (SIGKILL, out of memory) left in ``out``: when
    its new preparation completed (``dataset.json`` written after every earlier file was moved
    aside), the earlier one is removed; otherwise the earlier preparation comes back."""
    holding = out / HOLDING
    if not holding.is_dir():
        return
    moved = _moved(holding)
    if moved and (out / SUMMARY).is_file():
        _remove(holding)
    else:
        _put_back(out, new_files=moved)


def _moved(holding: Path) -> bool:
    """Whether every earlier file was moved into ``holding`` (its state file says so)."""
    try:
        return json.loads((holding / STATE).read_text(encoding="utf-8")).get("moved") is True
    except (OSError, ValueError, AttributeError):  # not written yet (killed right after mkdir), or torn: not all moved
        return False


def _put_back(out: Path, *, new_files: bool) -> None:
    """The earlier preparation in :data:`HOLDING` moved back into ``out``; with ``new_files`` (a new
    preparation had started writing), the entries it writes are removed first. Files no
    preparation wrote are never touched."""
    holding = out / HOLDING
    if new_files and out.is_dir():
        name, _ = earlier_dataset(out)
        for entry in out.iterdir():
            if entry != holding and _is_written(entry.name, written_entries(name)):
                _remove(entry)
    if not holding.is_dir():
        return
    for entry in holding.iterdir():
        if entry.name != STATE and not (out / entry.name).exists():
            os.replace(entry, out / entry.name)
    (holding / STATE).unlink(missing_ok=True)
    if not any(holding.iterdir()):
        holding.rmdir()


def _remove(entry: Path) -> None:
    """Remove a file, a link (not what it points to) or a folder with its contents."""
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry)
    else:
        entry.unlink()
