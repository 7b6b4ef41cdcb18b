"""``cwru``: Case Western Reserve bearing vibration, cut into windows.

Source layout: ``cwru/files.csv`` (columns file, fault, load, rpm...) and one ``.npz`` per file
with arrays ``de`` (drive end) and ``fe`` (fan end). Each window becomes two ``.npy`` signals
(``de_path``, ``fe_path``: two modalities) with label = fault class (``Normal``, ``B007``...),
the class's parts ``fault_type`` (``Normal``, ``B`` ball, ``IR`` inner race, ``OR`` outer race)
and ``fault_size`` (inches: 0.007, 0.014, 0.021; 0 for Normal), and columns ``load`` and ``rpm``. Windows of a recording are split by position (first 70% train,
next 10% valid, last 20% test); windows overlapping a cut are dropped, so splits share no samples.
A ``window`` (or ``max_windows``) that would leave a recording's valid or test windows all dropped is
refused before anything is written, with the largest window that fills every split.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from polymodal.data.datasets.base import register_dataset, require, write_splits
from polymodal.errors import DatasetOptionError, DatasetSourceError
from polymodal.utils.signals import window_starts


def fault_parts(fault: str) -> tuple[str, float]:
    """``OR014@6`` -> (``OR``, 0.014); ``Normal`` -> (``Normal``, 0.0)."""
    match = re.fullmatch(r"(B|IR|OR)(\d{3})(@\d+)?", fault)
    if match is None:
        if fault != "Normal":
            raise DatasetSourceError(f"dataset 'cwru': fault '{fault}' is neither Normal nor B/IR/OR + a size "
                                     "in thousandths of an inch (B007, IR014, OR021@6)")
        return fault, 0.0
    return match[1], int(match[2]) / 1000


@register_dataset("cwru", "CWRU bearings: drive-end + fan-end vibration windows, label = fault type",
                  source="cwru/files.csv and cwru/*.npz", folders=("signals",))
def prepare_cwru(out: Path, source: Path, seed: int = 0, window: int = 2048, hop: int = 1024,
                 loads: Sequence[int] | None = None, max_windows: int | None = None, **_: Any) -> dict[str, Any]:
    out, folder = Path(out), Path(source) / "cwru"
    files = pd.read_csv(require(folder / "files.csv", "the CWRU file list", "cwru", Path(source)))
    needed = {"file", "fault", "load_hp"}
    if not needed <= set(files.columns):
        raise DatasetSourceError(f"dataset 'cwru': files.csv needs columns {sorted(needed)}; has {list(files.columns)}")
    if loads is not None:
        unknown = sorted(set(loads) - set(files["load_hp"]))
        if unknown:
            raise DatasetOptionError(f"dataset 'cwru': no recording at load(s) {unknown} hp; files.csv holds loads "
                                     f"{sorted(set(files['load_hp']))}", dataset="cwru", option="loads")
        files = files[files["load_hp"].isin(list(loads))]
    recordings = []
    for rec in files.to_dict("records"):
        name = str(rec["file"])
        path = require(folder / (name if name.endswith(".npz") else f"{name}.npz"), f"recording {name}", "cwru")
        with np.load(path) as npz:
            if "de" not in npz or "fe" not in npz:
                raise DatasetSourceError(f"dataset 'cwru': {path} must hold arrays 'de' and 'fe'")
            recordings.append((rec, path, min(npz["de"].size, npz["fe"].size)))
        fault_parts(str(rec["fault"]))  # a fault name it cannot read is refused before the options are
    _refuse_an_empty_split([(path.stem, length) for _, path, length in recordings], window, hop, max_windows)
    (out / "signals").mkdir(parents=True, exist_ok=True)
    frames: dict[str, list[dict[str, Any]]] = {"train": [], "valid": [], "test": []}
    for rec, path, length in recordings:
        with np.load(path) as npz:
            de, fe = npz["de"].reshape(-1).astype(np.float32), npz["fe"].reshape(-1).astype(np.float32)
            rpm = float(np.asarray(npz["rpm"]).reshape(-1)[0]) if "rpm" in npz else float(rec.get("rpm", np.nan))
        fault_type, fault_size = fault_parts(str(rec["fault"]))
        stem = path.stem
        for split, starts in split_windows(window_starts(length, window, hop, max_windows), window).items():
            for start in starts:
                rel = {ch: f"signals/{stem}_{ch}_{start}.npy" for ch in ("de", "fe")}
                np.save(out / rel["de"], de[start:start + window])
                np.save(out / rel["fe"], fe[start:start + window])
                frames[split].append({"de_path": rel["de"], "fe_path": rel["fe"], "label": rec["fault"],
                                      "fault_type": fault_type, "fault_size": fault_size, "load": int(rec["load_hp"]),
                                      "rpm": rpm, "recording": stem, "start": int(start)})
    columns = ["de_path", "fe_path", "label", "fault_type", "fault_size", "load", "rpm", "recording", "start"]
    return write_splits(out, {s: pd.DataFrame(r, columns=columns) for s, r in frames.items()},
                        {"name": "cwru", "seed": seed, "target": "label", "window": window, "hop": hop, "sample_rate": 12000})


def split_windows(starts: np.ndarray, window: int) -> dict[str, list[int]]:
    """One recording's window starts by split: the first 70% of the windows train, the next 10%
    valid, the last 20% test; a window that overlaps the previous split's last window is dropped, so
    splits share no samples."""
    count = len(starts)
    cut_train, cut_valid = int(count * 0.7), int(count * 0.8)
    train = [int(s) for s in starts[:cut_train]]
    free = train[-1] + window if train else 0  # the first sample after the train split's last window
    valid = [int(s) for s in starts[cut_train:cut_valid] if s >= free]
    free = valid[-1] + window if valid else free
    test = [int(s) for s in starts[cut_valid:] if s >= free]
    return {"train": train, "valid": valid, "test": test}


def _largest_window(lengths: Sequence[int], below: int, hop: int, max_windows: int | None) -> int | None:
    """The largest window shorter than ``below`` that leaves every split of recordings of these
    ``lengths`` non-empty (None: none does, as with ``max_windows`` under 4).

    The windows' starts depend on the window only through their count, ``(length - window) // hop
    + 1``: among windows of one count, those up to the split's room (how far the valid and test
    windows start past the previous split's last one) fill every split; past it, the search moves on
    to the next count.
    """
    window = below - 1
    while window >= 2:
        for length in sorted(set(lengths)):
            if length < window:
                window = length
                break
            starts = window_starts(length, window, hop, max_windows)
            count = len(starts)
            cut_train, cut_valid = int(count * 0.7), int(count * 0.8)
            room = (min(starts[cut_valid - 1] - starts[cut_train - 1], starts[-1] - starts[cut_valid - 1])
                    if 0 < cut_train < cut_valid < count else 0)
            if room < window:
                same_count = length - ((length - window) // hop + 1) * hop  # windows above it give as many
                window = int(room) if room > same_count else same_count
                break
        else:
            return window
    return None


def _refuse_an_empty_split(recordings: Sequence[tuple[str, int]], window: int, hop: int,
                           max_windows: int | None) -> None:
    """A DatasetOptionError when ``window`` (with ``hop``, ``max_windows``) leaves a split of a recording
    (``(name, length)`` pairs) without a window, naming the shortest such recording and the largest
    window that fills every split; checked before anything is written."""
    empty = []
    for name, length in recordings:
        starts = window_starts(length, window, hop, max_windows)
        kept = split_windows(starts, window)
        if not all(kept.values()):
            empty.append((length, name, starts, kept))
    if not empty:
        return
    length, name, starts, kept = min(empty, key=lambda e: e[:2])
    count = len(starts)
    cut_train, cut_valid = int(count * 0.7), int(count * 0.8)
    cap = f", --max-windows {max_windows}" if max_windows is not None else ""
    missing = [s for s, k in kept.items() if not k]
    parts = (f"{count} windows at --hop {hop}{cap}, placed {cut_train} train, {cut_valid - cut_train} valid, "
             f"{count - cut_valid} test" if count else "no window (it is shorter than the window)")
    message = (f"dataset 'cwru': --window {window} leaves the {' and '.join(missing)} split{'s' if len(missing) > 1 else ''} empty for {len(empty)} of "
               f"{len(recordings)} recordings, so the manifests would be useless. The shortest, '{name}' "
               f"({length:,} samples), has {parts}. Each recording's windows are split by position (first 70% "
               f"train, next 10% valid, last 20% test), and a window overlapping the previous split's last "
               f"window is dropped so splits share no samples")
    if 0 < cut_train < cut_valid < count:
        message += (f": its valid windows start at most {starts[cut_valid - 1] - starts[cut_train - 1]:,} samples "
                    f"after its last train window, its test windows at most "
                    f"{starts[-1] - starts[cut_valid - 1]:,} after its last valid one")
    largest = _largest_window([n for _, n in recordings], window, hop, max_windows)
    message += (f". The largest --window that leaves every split of every recording non-empty is {largest:,}"
                if largest is not None else f". No --window fills every split{cap}: allow more windows")
    raise DatasetOptionError(message + ".", dataset="cwru", option="window")
