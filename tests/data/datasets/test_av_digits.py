"""The embedded av-digits dataset: deterministic per seed, unseen test voices, disjoint images."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile
from PIL import Image

from polymodal.data.datasets import prepare
from polymodal.data.datasets.av_digits import TEST_VOICES, TRAIN_VOICES

SIZE = 60


def build(folder: Path, seed: int) -> Path:
    prepare("av-digits", folder, seed=seed, size=SIZE, progress=False)
    return folder


@pytest.fixture(scope="module")
def first(tmp_path_factory, mnist_5k) -> Path:
    return build(tmp_path_factory.mktemp("av0"), seed=0)


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def splits(folder: Path) -> dict[str, pd.DataFrame]:
    return {s: pd.read_csv(folder / f"{s}.csv") for s in ("train", "valid", "test")}


@pytest.fixture(scope="module")
def second(tmp_path_factory, mnist_5k) -> Path:
    return build(tmp_path_factory.mktemp("av0_again"), seed=0)


def test_same_seed_gives_identical_manifests_and_images(first, second):
    reference, again = files(first), files(second)
    assert sorted(again) == sorted(reference)
    deterministic = [name for name in reference if not name.startswith("audio/")]
    assert [name for name in deterministic if again[name] != reference[name]] == []


def test_same_seed_gives_byte_identical_audio(first, second):
    reference, again = files(first), files(second)
    audio = [name for name in reference if name.startswith("audio/")]
    assert len(audio) == SIZE
    assert [name for name in audio if again[name] != reference[name]] == []


def test_another_seed_gives_another_dataset(first, tmp_path, mnist_5k):
    other = build(tmp_path / "other", seed=1)
    assert (other / "train.csv").read_bytes() != (first / "train.csv").read_bytes()
    assert (other / "audio" / "train_00000.wav").read_bytes() != (first / "audio" / "train_00000.wav").read_bytes()


def test_split_sizes_and_columns(first):
    parts = splits(first)
    assert {s: len(f) for s, f in parts.items()} == {"train": 42, "valid": 6, "test": 12}
    for frame in parts.values():
        assert list(frame.columns) == ["image", "audio", "label", "voice"]
        assert frame["label"].between(0, 9).all()
        for image, audio in zip(frame["image"], frame["audio"]):
            assert (first / image).is_file() and (first / audio).is_file()


def test_test_voices_are_never_heard_in_training(first):
    parts = splits(first)
    assert set(parts["test"]["voice"]) <= set(TEST_VOICES)
    assert set(parts["train"]["voice"]) | set(parts["valid"]["voice"]) <= set(TRAIN_VOICES)
    assert not set(TEST_VOICES) & set(TRAIN_VOICES)


def pixel_hash(path: Path) -> str:
    return hashlib.sha1(np.asarray(Image.open(path)).tobytes()).hexdigest()


def test_images_are_mnist_digits_of_the_row_label_and_splits_share_none(first, mnist_5k):
    images, labels = mnist_5k
    label_of = {hashlib.sha1(img.reshape(28, 28).astype(np.uint8).tobytes()).hexdigest(): int(lab)
                for img, lab in zip(images, labels)}
    seen: dict[str, set[str]] = {}
    for split, frame in splits(first).items():
        hashes = [pixel_hash(first / p) for p in frame["image"]]
        assert [label_of[h] for h in hashes] == frame["label"].tolist()
        seen[split] = set(hashes)
    assert not seen["train"] & seen["test"] and not seen["train"] & seen["valid"] and not seen["valid"] & seen["test"]


def test_audio_is_one_second_of_8khz_16bit_speech(first):
    frame = splits(first)["test"]
    for audio in frame["audio"]:
        info = soundfile.info(first / audio)
        assert (info.samplerate, info.frames, info.channels, info.subtype) == (8000, 8000, 1, "PCM_16")
        wave, _ = soundfile.read(first / audio)
        assert 0.5 < np.abs(wave).max() <= 0.91  # normalised to a 0.9 peak


def test_it_writes_only_its_manifests_summary_marker_and_folders(first):
    from . import fake_sources as fake

    fake.assert_writes_its_own_entries(first, "av-digits")


def test_an_interrupted_preparation_over_a_dataset_leaves_the_earlier_one_as_it_was(first, tmp_path, monkeypatch):
    """Ctrl-C while ``--overwrite`` writes the new files: the earlier dataset comes back whole, never
    a mix of both (nor a folder emptied of the earlier one)."""
    import shutil

    import polymodal.data.datasets.av_digits as av

    folder = tmp_path / "avd"
    shutil.copytree(first, folder)
    real = av.save_images

    def interrupted(*args, **kwargs):
        real(*args, **kwargs)  # some of the new images written
        raise KeyboardInterrupt  # Ctrl-C while the new files are being written

    monkeypatch.setattr(av, "save_images", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare("av-digits", folder, seed=1, size=SIZE, progress=False, overwrite=True)
    assert files(folder) == files(first)


def test_a_folder_holding_files_is_refused_and_overwrite_replaces_only_a_preparation(first, tmp_path):
    """``--out`` used to be written over silently: a smaller --size left the larger one's images."""
    import shutil

    from polymodal.errors import OptionError

    folder = tmp_path / "avd"
    shutil.copytree(first, folder)
    with pytest.raises(OptionError, match=f"--out {folder} already holds the av-digits dataset \\(60 rows\\); give "
                                          "--overwrite to replace the dataset"):
        prepare("av-digits", folder, size=20, progress=False)
    assert files(folder) == files(first)
    summary = prepare("av-digits", folder, size=20, progress=False, overwrite=True)
    assert summary["rows"] == {"train": 14, "valid": 2, "test": 4}
    written = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    listed = {path for split in splits(folder).values() for column in ("image", "audio") for path in split[column]}
    assert written == listed | {".polymodal-dataset.json", "dataset.json", "train.csv", "valid.csv", "test.csv"}
    (folder / "notes.txt").write_text("mine")  # a file of the user's: never removed, even with --overwrite
    for overwrite in (False, True):
        with pytest.raises(OptionError, match=r"and 1 file\(s\) no preparation wrote \(notes.txt\)"):
            prepare("av-digits", folder, size=20, progress=False, overwrite=overwrite)
    assert (folder / "notes.txt").read_text() == "mine" and (folder / "dataset.json").is_file()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "train.csv").write_text("x\n1\n")  # a manifest of the user's: no preparation's
    with pytest.raises(OptionError, match="is not empty and holds no prepared dataset \\(train.csv\\)"):
        prepare("av-digits", tmp_path / "mine", size=20, progress=False, overwrite=True)
    assert (tmp_path / "mine" / "train.csv").read_text() == "x\n1\n"
    (tmp_path / "empty").mkdir()
    prepare("av-digits", tmp_path / "empty", size=20, progress=False)  # an empty folder is a new one


def test_a_folder_prepared_before_the_marker_counts_as_prepared(first, tmp_path):
    import shutil

    from polymodal.errors import OptionError

    folder = tmp_path / "avd"
    shutil.copytree(first, folder)
    (folder / ".polymodal-dataset.json").unlink()  # as a preparation of an earlier version left it
    with pytest.raises(OptionError, match="already holds the av-digits dataset"):
        prepare("av-digits", folder, size=20, progress=False)
    assert prepare("av-digits", folder, size=20, progress=False, overwrite=True)["rows"]["train"] == 14


def test_a_failure_while_the_earlier_files_are_moved_aside_puts_them_all_back(first, tmp_path, monkeypatch):
    """A file that cannot be moved (open on Windows, Ctrl-C between two moves): what was moved comes
    back, and the folder stays a dataset a later --overwrite replaces."""
    import os
    import shutil

    import polymodal.data.datasets.out_folder as out_folder

    folder = tmp_path / "avd"
    shutil.copytree(first, folder)
    real, calls = os.replace, []

    def second_fails(src, dst):
        calls.append(src)
        if len(calls) == 2:
            raise PermissionError(f"{src} is in use")
        return real(src, dst)

    monkeypatch.setattr(out_folder.os, "replace", second_fails)
    with pytest.raises(PermissionError, match="is in use"):
        prepare("av-digits", folder, size=20, progress=False, overwrite=True)
    monkeypatch.setattr(out_folder.os, "replace", real)
    assert files(folder) == files(first)
    assert prepare("av-digits", folder, size=20, progress=False, overwrite=True)["rows"]["train"] == 14


@pytest.mark.parametrize("killed", ["while moving aside", "while writing", "before removing the earlier one"])
def test_a_replacement_a_killed_process_left_is_put_right_by_the_next_preparation(first, tmp_path, killed):
    """SIGKILL or out of memory gives no chance to restore: the next preparation into the folder
    finds the earlier files set aside and brings them back (or, when the new dataset was complete,
    drops them), before it checks the folder."""
    import json
    import shutil

    from polymodal.errors import OptionError

    folder = tmp_path / "avd"
    shutil.copytree(first, folder)
    holding = folder / ".polymodal-replaced"
    holding.mkdir()
    moving = sorted(folder.iterdir())
    if killed == "while moving aside":
        moving = [e for e in moving if e.name in (".polymodal-dataset.json", "dataset.json", "images")]
    for entry in moving:
        if entry != holding:
            entry.rename(holding / entry.name)
    (holding / ".state.json").write_text(json.dumps({"moved": killed != "while moving aside"}))
    if killed == "while writing":  # the new preparation's first files, no dataset.json yet
        (folder / ".polymodal-dataset.json").write_text(json.dumps({"dataset": "av-digits"}))
        (folder / "images").mkdir()
        (folder / "images" / "new.png").write_bytes(b"new")
    if killed == "before removing the earlier one":  # the new one complete: what it wrote stays
        shutil.copytree(first, folder, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".polymodal-replaced"))
    with pytest.raises(OptionError, match="already holds the av-digits dataset \\(60 rows\\)"):
        prepare("av-digits", folder, size=20, progress=False)
    assert files(folder) == files(first) and not holding.exists()


def test_a_dataset_json_of_the_users_own_is_no_preparation(tmp_path):
    """Only a registered dataset's summary, with its rows per split, marks a folder prepared before
    the marker existed: a project's own dataset.json beside its manifests is never replaced."""
    import json

    from polymodal.errors import OptionError

    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "dataset.json").write_text(json.dumps({"name": "my-project", "rows": {"train": 3}}))
    (folder / "train.csv").write_text("x\n1\n")
    with pytest.raises(OptionError, match="is not empty and holds no prepared dataset"):
        prepare("av-digits", folder, size=20, progress=False, overwrite=True)
    assert (folder / "train.csv").read_text() == "x\n1\n"


def test_two_preparations_never_write_one_folder_at_once(tmp_path):
    from polymodal.errors import OptionError
    from polymodal.utils.io import exclusive_lock

    folder = tmp_path / "avd"
    with exclusive_lock(folder, lambda lock: RuntimeError("taken")):  # another preparation holds it
        with pytest.raises(OptionError, match="another preparation is writing this folder"):
            prepare("av-digits", folder, size=20, progress=False)
    assert not folder.exists()


@pytest.mark.parametrize("size", [5, 0, 6000])
def test_a_size_that_leaves_a_split_empty_or_exceeds_the_images_is_refused(tmp_path, size):
    from polymodal.errors import DatasetOptionError

    with pytest.raises(DatasetOptionError, match=f"takes --size from 20 to 5000 .*got {size}"):
        prepare("av-digits", tmp_path / "x", size=size, progress=False)
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(NotADirectoryError, match="--out must be a folder"):
        prepare("av-digits", tmp_path / "file", size=60, progress=False)


def test_an_embedded_dataset_refuses_a_source_instead_of_ignoring_it(tmp_path):
    from polymodal.errors import DatasetOptionError

    with pytest.raises(DatasetOptionError, match="'av-digits' is embedded and takes no --source"):
        prepare("av-digits", tmp_path / "x", source=tmp_path, size=60, progress=False)


def test_speech_synthesis_advances_its_progress_bar_as_chunks_finish(monkeypatch):
    from contextlib import contextmanager

    import polymodal.utils.progress
    from polymodal.data.datasets import espeak as speech

    bars = []

    @contextmanager
    def recorder(total, description, enabled=True, min_total=200):
        bars.append({"total": total, "enabled": enabled, "steps": []})
        yield bars[-1]["steps"].append

    monkeypatch.setattr(polymodal.utils.progress, "progress_bar", recorder)
    monkeypatch.setattr(speech, "CHUNK", 2)
    jobs = [("one", TRAIN_VOICES[0], 150, 50, 50, 1), ("two", TRAIN_VOICES[0], 150, 50, 50, 2),
            ("three", TRAIN_VOICES[0], 150, 50, 50, 3)]
    _, waves = speech.synthesize(jobs, workers=1, progress=True)
    assert len(waves) == 3 and bars == [{"total": 3, "enabled": True, "steps": [2, 1]}]
