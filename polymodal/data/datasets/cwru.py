"""``cwru``: Case Western Reserve bearing vibration, cut into windows.

Source layout: ``cwru/files.csv`` (columns file, fault, load, rpm...) and one ``.npz`` per file
with arrays ``de`` (drive end) and ``fe`` (fan end). Each window becomes two ``.npy`` signals
(``de_path``, ``fe_path``: two modalities) with label = fault class (``Normal``, ``B007``...),
the class's parts ``fault_type`` (``Normal``, ``B`` ball, ``IR`` inner race, ``OR`` outer race)
and ``fault_size`` (inches: 0.007, 0.014, 0.021; 0 for Normal), and columns ``load`` and ``rpm``. Windows of a recording are split by position (first 70% train,
next 10% valid, last 20% test); windows overlapping a cut are dropped, so splits share no samples.
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
                  source="cwru/files.csv and cwru/*.npz")
def prepare_cwru(out: Path, source: Path, seed: int = 0, window: int = 2048, hop: int = 1024,
                 loads: Sequence[int] | None = None, max_windows: int | None = None, **_: Any) -> dict[str, Any]:
    out, folder = Path(out), Path(source) / "cwru"
    files = pd.read_csv(require(folder / "files.csv", "the CWRU file list", "cwru"))
    needed = {"file", "fault", "load_hp"}
    if not needed <= set(files.columns):
        raise DatasetSourceError(f"dataset 'cwru': files.csv needs columns {sorted(needed)}; has {list(files.columns)}")
    if loads is not None:
        unknown = sorted(set(loads) - set(files["load_hp"]))
        if unknown:
            raise DatasetOptionError(f"dataset 'cwru': no recording at load(s) {unknown} hp; files.csv holds loads "
                                     f"{sorted(set(files['load_hp']))}", dataset="cwru", option="loads")
        files = files[files["load_hp"].isin(list(loads))]
    (out / "signals").mkdir(parents=True, exist_ok=True)
    frames: dict[str, list[dict[str, Any]]] = {"train": [], "valid": [], "test": []}
    for rec in files.to_dict("records"):
        name = str(rec["file"])
        path = require(folder / (name if name.endswith(".npz") else f"{name}.npz"), f"recording {name}", "cwru")
        with np.load(path) as npz:
            if "de" not in npz or "fe" not in npz:
                raise DatasetSourceError(f"dataset 'cwru': {path} must hold arrays 'de' and 'fe'")
            de, fe = npz["de"].reshape(-1).astype(np.float32), npz["fe"].reshape(-1).astype(np.float32)
            rpm = float(np.asarray(npz["rpm"]).reshape(-1)[0]) if "rpm" in npz else float(rec.get("rpm", np.nan))
        fault_type, fault_size = fault_parts(str(rec["fault"]))
        length = min(len(de), len(fe))
        starts = window_starts(length, window, hop, max_windows)
        cut_train, cut_valid = int(len(starts) * 0.7), int(len(starts) * 0.8)
        stem = path.stem
        previous_end, previous_split = -1, "train"
        for k, start in enumerate(starts):
            split = "train" if k < cut_train else "valid" if k < cut_valid else "test"
            if split != previous_split and start < previous_end:
                continue  # overlaps the previous split's last window: splits must share no samples
            previous_end, previous_split = int(start) + window, split
            rel = {ch: f"signals/{stem}_{ch}_{start}.npy" for ch in ("de", "fe")}
            np.save(out / rel["de"], de[start:start + window])
            np.save(out / rel["fe"], fe[start:start + window])
            frames[split].append({"de_path": rel["de"], "fe_path": rel["fe"], "label": rec["fault"],
                                  "fault_type": fault_type, "fault_size": fault_size, "load": int(rec["load_hp"]), "rpm": rpm, "recording": stem, "start": int(start)})
    columns = ["de_path", "fe_path", "label", "fault_type", "fault_size", "load", "rpm", "recording", "start"]
    return write_splits(out, {s: pd.DataFrame(r, columns=columns) for s, r in frames.items()},
                        {"name": "cwru", "seed": seed, "target": "label", "window": window, "hop": hop, "sample_rate": 12000})
