"""``data.memory_limit_gb``: encoded data larger than the limit is not held in memory; without a
``cache_dir`` it spills to a temporary on-disk store and is read lazily from memory maps, with
the same values, and so the same training and predictions, as an in-memory run."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from polymodal import MultimodalPredictor
from polymodal.data import encode
from polymodal.data.cache import SegmentedArray
from polymodal.data.encode import encoded_bytes
from polymodal.data.pipeline import DataPipeline

from .helpers import MULTIMODAL, make_config, write_multimodal_manifest

GB = 2**30
ENCODERS = {"img": {"name": "cnn", "dim": 8, "channels": [4]},
            "notes": {"name": "embedding_bag", "dim": 8},
            "labs": {"dim": 8, "hidden": [8], "dropout": 0.0}}


def config(limit_gb: float):
    modalities = {name: {**cfg, "encoder": ENCODERS[name]} for name, cfg in MULTIMODAL.items()}
    return make_config(modalities, data={"memory_limit_gb": limit_gb},
                       train={"epochs": 2, "batch_size": 8, "lr": 0.01, "seed": 0, "progress": False,
                              "num_workers": 0, "accelerator": "cpu", "early_stopping": None},
                       report={"rows": 0})


@pytest.fixture
def spill(tmp_path, monkeypatch) -> Path:
    """The folder the process-wide spill store is made in, fresh for the test."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(encode, "_SPILL", [])
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture
def manifest(tmp_path) -> Path:
    return write_multimodal_manifest(tmp_path / "data", n=24)


def spilled_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.npy") if "/segments/" in p.as_posix())


def encoded_size(manifest: Path) -> int:
    """Bytes the encoded manifest takes in memory."""
    pipeline = DataPipeline(config(4.0))
    return encoded_bytes(pipeline.preprocessors, len(pd.read_csv(manifest)))


def test_a_limit_below_the_encoded_size_spills_to_memory_maps(spill, manifest):
    size = encoded_size(manifest)
    kept = DataPipeline(config(size * 1.01 / GB))
    in_memory, y_memory = kept.fit(kept.read(manifest, require_target=True, training=True))
    assert not spilled_files(spill), "data under the limit must stay in memory"
    assert all(type(a) is np.ndarray for m in in_memory.modalities.values() for a in m.arrays.values())
    assert len(in_memory.rows) == len(pd.read_csv(manifest)), "every row encoded: the size is that of the whole file"
    assert size == sum(a.nbytes for m in in_memory.modalities.values() for a in m.arrays.values()), \
        "the estimated size is what the encoded arrays take"

    spilling = DataPipeline(config(size * 0.99 / GB))
    spilled, y_spilled = spilling.fit(spilling.read(manifest, require_target=True, training=True))
    files = spilled_files(spill)
    assert {p.relative_to(spill).parts[1] for p in files} == {p.fingerprint() for p in spilling.preprocessors.values()}
    for name, mod in spilled.modalities.items():
        assert set(mod.arrays) == set(in_memory.modalities[name].arrays)
        np.testing.assert_array_equal(mod.present, in_memory.modalities[name].present)
        for key, array in mod.arrays.items():
            assert isinstance(array, SegmentedArray), f"{name}.{key} is held in memory"
            assert all(isinstance(s, np.memmap) and Path(s.filename).is_relative_to(spill) for s in array.segments)
            np.testing.assert_array_equal(np.asarray(array), in_memory.modalities[name].arrays[key], err_msg=name)
    np.testing.assert_array_equal(y_spilled, y_memory)
    for name, prep in spilling.preprocessors.items():  # statistics fitted on the memory-mapped rows
        state, expected = prep.get_state(), kept.preprocessors[name].get_state()
        assert state.keys() == expected.keys()
        for key, value in state.items():
            np.testing.assert_array_equal(np.asarray(value), np.asarray(expected[key]), err_msg=f"{name}.{key}")


def test_a_spilled_run_trains_and_predicts_as_the_in_memory_one(spill, manifest):
    frame = pd.read_csv(manifest)
    frame["image"] = [str(manifest.parent / p) if isinstance(p, str) else p for p in frame["image"]]
    in_memory = MultimodalPredictor.from_config(config(4.0)).fit(manifest)
    assert not spilled_files(spill)
    spilled = MultimodalPredictor.from_config(config(1e-9)).fit(manifest)
    assert spilled_files(spill), "a limit of about a byte must spill"
    columns = ["epoch", "train_loss", "val_loss", "val_accuracy"]
    pd.testing.assert_frame_equal(spilled.history[columns], in_memory.history[columns], check_exact=True)
    pd.testing.assert_frame_equal(spilled.predict_proba(frame), in_memory.predict_proba(frame), check_exact=True)


def test_spilling_says_where_the_data_goes(spill, manifest, capsys):
    """A node's temporary folder may itself be memory: a spill names its size and folder (when
    progress is shown), and no line is printed for data that stays in memory."""
    size = encoded_size(manifest)
    for limit, spills in ((size * 1.01, False), (size * 0.99, True)):
        pipeline = DataPipeline(config(limit / GB))
        pipeline.fit(pipeline.read(manifest, require_target=True, training=True))
        capsys.readouterr()
        pipeline.encode(pipeline.read(manifest, require_target=True), progress=True)
        said = capsys.readouterr().err
        assert ("exceeds data.memory_limit_gb" in said) is spills, said
        if spills:
            assert f"written to {spill}" in said and "TMPDIR or data.cache_dir chooses the folder" in said
