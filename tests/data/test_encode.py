"""Encoding a manifest: presence masks and the three ``on_error`` policies."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from polymodal.data.manifest import read_manifest
from polymodal.data.pipeline import DataPipeline
from polymodal.data.skipped import describe_skipped, skipped_frame
from polymodal.errors import DecodeError

from .helpers import MULTIMODAL, make_config, write_multimodal_manifest


def pipeline(on_error: str = "raise", modalities=MULTIMODAL) -> DataPipeline:
    return DataPipeline(make_config(modalities, data={"on_error": on_error}))


def test_presence_masks_follow_empty_cells(tmp_path):
    manifest = read_manifest(write_multimodal_manifest(tmp_path))
    table, targets = pipeline().fit(manifest)
    assert len(table) == 10 and table.rows.tolist() == list(range(10))
    present = {name: mod.present.tolist() for name, mod in table.modalities.items()}
    assert present["img"] == [i != 5 for i in range(10)]
    assert present["notes"] == [i != 2 for i in range(10)]
    assert present["labs"] == [i != 6 for i in range(10)]
    assert not table.modalities["img"].arrays["x"][5].any()  # absent rows are zeros
    assert table.modalities["img"].arrays["x"][4].any()
    assert targets.tolist() == [i % 2 for i in range(10)]
    assert table.skipped == []


def test_on_error_raise_names_file_row_and_reason(tmp_path):
    path = write_multimodal_manifest(tmp_path, broken_images=(3,))
    with pytest.raises(DecodeError) as info:
        pipeline("raise").fit(read_manifest(path))
    error = info.value
    assert error.modality == "img" and error.row == 3
    assert error.path == str(tmp_path.resolve() / "images" / "3.png")
    message = str(error)
    assert "modality 'img'" in message
    assert "train.csv row 3 (line 5), column 'image'" in message and error.column == "image"
    assert error.path in message
    assert "not a recognised image format" in message


def test_an_empty_file_is_said_to_be_empty_not_in_its_decoders_words(tmp_path):
    path = write_multimodal_manifest(tmp_path, broken_images=(3,))
    (tmp_path / "images" / "3.png").write_bytes(b"")
    with pytest.raises(DecodeError) as info:
        pipeline("raise").fit(read_manifest(path))
    assert info.value.row == 3 and info.value.modality == "img"
    assert str(info.value).endswith(f"file {tmp_path.resolve() / 'images' / '3.png'}: the file is empty (0 bytes)")


def test_on_error_skip_drops_the_row_and_lists_it(tmp_path):
    path = write_multimodal_manifest(tmp_path, broken_images=(3, 7))
    table, targets = pipeline("skip").fit(read_manifest(path))
    assert table.rows.tolist() == [0, 1, 2, 4, 5, 6, 8, 9]
    assert len(targets) == 8 and targets.tolist() == [r % 2 for r in table.rows]
    assert [(s.modality, s.row) for s in table.skipped] == [("img", 3), ("img", 7)]
    assert table.skipped[0].path == str(tmp_path.resolve() / "images" / "3.png")
    assert "not a recognised image format" in table.skipped[0].reason
    for mod in table.modalities.values():
        assert len(mod.present) == 8 and all(len(a) == 8 for a in mod.arrays.values())
    frame = skipped_frame(table.skipped)
    assert list(frame.columns) == ["modality", "row", "where", "path", "reason"]
    assert frame["where"].tolist() == ["train.csv row 3 (line 5)", "train.csv row 7 (line 9)"]


@pytest.mark.parametrize("on_error", ["skip", "missing"])
def test_the_feature_cache_skips_and_lists_every_row_of_a_bad_content(tmp_path, on_error):
    """Rows 3, 7 and 8 name byte-identical corrupt files (8 the same file as 3): the cache decodes
    each content once, and still skips and lists all three, as encoding without it does."""
    path = write_multimodal_manifest(tmp_path, broken_images=(3, 7))
    frame = pd.read_csv(path)
    frame.loc[8, "image"] = frame.loc[3, "image"]
    frame.to_csv(path, index=False)
    results = []
    for data in ({"on_error": on_error}, {"on_error": on_error, "cache_dir": str(tmp_path / "cache")}):
        table, _ = DataPipeline(make_config(MULTIMODAL, data=data)).fit(read_manifest(path))
        results.append((table.rows.tolist(), table.modalities["img"].present.tolist(),
                        sorted((s.row, s.path, s.reason) for s in table.skipped)))
    assert results[0] == results[1]
    assert [row for row, _, _ in results[1][2]] == [3, 7, 8]


def test_on_error_missing_keeps_the_row_without_that_modality(tmp_path):
    path = write_multimodal_manifest(tmp_path, broken_images=(3,))
    table, _ = pipeline("missing").fit(read_manifest(path))
    assert table.rows.tolist() == list(range(10))
    assert table.modalities["img"].present.tolist() == [i not in (3, 5) for i in range(10)]
    assert table.modalities["notes"].present[3] and table.modalities["labs"].present[3]
    assert [(s.modality, s.row) for s in table.skipped] == [("img", 3)]


def test_on_error_missing_drops_rows_left_with_no_modality(tmp_path):
    path = write_multimodal_manifest(tmp_path, broken_images=(2,), no_text=(2,), no_labs=(2,))
    table, _ = pipeline("missing").fit(read_manifest(path))
    assert 2 not in table.rows.tolist() and len(table) == 9
    assert [s.row for s in table.skipped] == [2]


def test_modalities_outside_the_chosen_ones_are_absent(tmp_path):
    manifest = read_manifest(write_multimodal_manifest(tmp_path))
    pipe = pipeline()
    pipe.fit(manifest)
    table = pipe.encode(manifest, modalities=["notes"])
    assert not table.modalities["img"].present.any() and not table.modalities["labs"].present.any()
    assert table.modalities["notes"].present.sum() == 9


def test_a_missing_file_is_a_decode_error_with_its_row(tmp_path):
    path = write_multimodal_manifest(tmp_path)
    (tmp_path / "images" / "4.png").unlink()
    with pytest.raises(DecodeError) as info:
        pipeline("raise").fit(read_manifest(path))
    assert info.value.row == 4 and info.value.path.endswith("4.png")
    assert "train.csv row 4 (line 6), column 'image', file" in str(info.value)


def test_on_error_skip_drops_a_non_numeric_tabular_value(tmp_path):
    path = write_multimodal_manifest(tmp_path)
    frame = pd.read_csv(path)
    frame["age"] = frame["age"].astype(object)
    frame.loc[4, "age"] = "forty"
    table, _ = pipeline("skip").fit(read_manifest(frame, root=tmp_path))
    assert 4 not in table.rows.tolist()
    assert [(s.modality, s.row) for s in table.skipped] == [("labs", 4)]


@pytest.mark.parametrize("cache", [False, True])
def test_on_error_missing_reads_a_value_that_is_no_number_as_missing_in_its_cell_and_lists_it(tmp_path, cache):
    path = write_multimodal_manifest(tmp_path)
    frame = pd.read_csv(path)
    frame["age"] = frame["age"].astype(object)
    frame.loc[4, "age"] = "forty"
    blank = frame.copy()
    blank.loc[4, "age"] = None
    encoded = {}
    for name, data in (("bad", frame), ("blank", blank)):
        pipe = DataPipeline(make_config(MULTIMODAL, data={"on_error": "missing",
                                                          "cache_dir": str(tmp_path / "cache") if cache else None}))
        table, _ = pipe.fit(pipe.read(read_manifest(data, root=tmp_path), require_target=True, training=True))
        encoded[name] = table
    bad, blanked = encoded["bad"], encoded["blank"]
    assert 4 in bad.rows.tolist() and bad.modalities["labs"].present[list(bad.rows).index(4)]  # the row keeps its table
    for key, values in bad.modalities["labs"].arrays.items():  # the other cells too: as if the cell were blank
        np.testing.assert_array_equal(np.asarray(values), np.asarray(blanked.modalities["labs"].arrays[key]))
    listed = skipped_frame(bad.skipped)
    assert listed[["modality", "row", "reason"]].values.tolist() == [
        ["labs", 4, "column 'age' must be numeric; got 'forty': read as missing"]]
    assert skipped_frame(blanked.skipped).empty
    with_files = pd.read_csv(path).astype({"age": object})
    with_files.loc[4, "age"] = "forty"
    assert "a value reads as missing in its cell" in describe_skipped(listed, "missing")
    pipe = pipeline("skip")  # skip still drops the row
    table, _ = pipe.fit(pipe.read(read_manifest(with_files, root=tmp_path), require_target=True, training=True))
    assert 4 not in table.rows.tolist()


def test_on_error_raise_names_the_row_of_a_non_numeric_tabular_value(tmp_path):
    path = write_multimodal_manifest(tmp_path)
    frame = pd.read_csv(path)
    frame["age"] = frame["age"].astype(object)
    frame.loc[4, "age"] = "forty"
    with pytest.raises(DecodeError) as info:
        pipeline("raise").fit(read_manifest(frame, root=tmp_path))
    assert info.value.row == 4 and info.value.modality == "labs"
    assert "'forty'" in str(info.value)



def test_on_error_raise_also_names_the_other_bad_rows_decoded_with_the_first(tmp_path):
    path = write_multimodal_manifest(tmp_path)
    frame = pd.read_csv(path)
    frame["age"] = frame["age"].astype(object)
    frame.loc[[4, 7], "age"] = ["forty", "fifty"]
    with pytest.raises(DecodeError) as info:
        pipeline("raise").fit(read_manifest(frame, root=tmp_path))
    assert info.value.row == 4
    assert str(info.value).endswith("(also, among the rows decoded with it: row 7: column 'age' must be numeric; "
                                    "got 'fifty')")
    frame.loc[[1, 2, 3, 5, 6, 8], "age"] = "sixty"  # the first, three more, then a count
    with pytest.raises(DecodeError, match=r"row 4: [^;]*; got 'forty'; and 4 more\)$"):
        pipeline("raise").fit(read_manifest(frame, root=tmp_path))


def test_on_error_skip_survives_a_corrupt_first_signal_file(tmp_path):
    (tmp_path / "0.npy").write_bytes(b"garbage")
    for i in (1, 2):
        np.save(tmp_path / f"{i}.npy", np.ones((50, 2), np.float32) * i)
    frame = pd.DataFrame({"sig": ["0.npy", "1.npy", "2.npy"], "y": ["a", "b", "a"]})
    pipe = pipeline("skip", {"vib": {"kind": "signal", "column": "sig", "preprocess": {"length": 64}}})
    table, _ = pipe.fit(read_manifest(frame, root=tmp_path))
    assert table.rows.tolist() == [1, 2]
    assert pipe.preprocessors["vib"].n_channels == 2


@pytest.mark.parametrize(("method", "seconds", "workers"), [("fork", 1.5, 4), ("fork", 0.8, 0), ("spawn", 1.5, 0),
                                                           ("forkserver", 1.0, 0), ("spawn", 6.0, 4)])
def test_encode_workers_pay_for_their_start(monkeypatch, method, seconds, workers):
    """Forked workers start cheaply; spawned ones import torch again, so they need more work left."""
    import multiprocessing
    from types import SimpleNamespace

    from polymodal.data.encode import encode_workers

    monkeypatch.setattr(multiprocessing, "get_start_method", lambda allow_none=False: method)
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    assert encode_workers(SimpleNamespace(file_based=True), seconds) == workers
    assert encode_workers(SimpleNamespace(file_based=False), 100.0) == 0  # inline values: nothing to decode


@pytest.mark.parametrize("cache", [False, True])
@pytest.mark.parametrize("on_error", ["skip", "missing"])
def test_a_file_that_does_not_exist_is_skipped_and_listed_like_an_unreadable_one(tmp_path, on_error, cache):
    """Validation does not stop at a missing file with ``skip``/``missing``: encoding leaves it out
    and lists it with the reason ``file not found``, as it does a corrupt file (here row 7)."""
    path = write_multimodal_manifest(tmp_path, broken_images=(7,))
    (tmp_path / "images" / "4.png").unlink()
    data = {"on_error": on_error, **({"cache_dir": str(tmp_path / "cache")} if cache else {})}
    pipe = DataPipeline(make_config(MULTIMODAL, data=data))
    table, targets = pipe.fit(pipe.read(path, require_target=True, training=True))
    listed = skipped_frame(table.skipped)
    assert listed[["modality", "row", "where"]].values.tolist() == [
        ["img", 4, "train.csv row 4 (line 6)"], ["img", 7, "train.csv row 7 (line 9)"]]
    assert listed["path"].iloc[0] == str(tmp_path.resolve() / "images" / "4.png")
    assert listed["reason"].iloc[0] == "file not found"
    assert "not a recognised image format" in listed["reason"].iloc[1]
    if on_error == "skip":
        assert table.rows.tolist() == [0, 1, 2, 3, 5, 6, 8, 9] and len(targets) == 8
    else:  # the row stays, without its image
        assert table.rows.tolist() == list(range(10))
        assert table.modalities["img"].present.tolist() == [i not in (4, 5, 7) for i in range(10)]
        assert table.modalities["notes"].present[4]


def test_a_missing_file_is_skipped_in_the_rows_a_holdout_left_and_in_a_later_manifest(tmp_path):
    """What validation found missing follows the rows into a subset (a validation split) and is
    found again in another manifest encoded with the fitted pipeline."""
    path = write_multimodal_manifest(tmp_path)
    (tmp_path / "images" / "8.png").unlink()
    pipe = DataPipeline(make_config(MULTIMODAL, data={"on_error": "skip"}))
    manifest = pipe.read(path, require_target=True, training=True)
    train, valid = manifest.subset(np.arange(6)), manifest.subset(np.arange(6, 10))
    pipe.fit(train)
    table = pipe.encode(valid)
    assert table.rows.tolist() == [0, 1, 3]  # positions in the subset; row 8 of the file left out
    assert [(s.row, s.source_row, s.where, s.reason) for s in table.skipped] == [
        (2, 8, "train.csv row 8 (line 10)", "file not found")]


def test_what_validation_found_missing_is_not_remembered_past_the_next_validation(tmp_path):
    """One manifest object validated again (``read_manifest`` returns a Manifest as it is): a file
    restored meanwhile is read, and a config reading another column is not given the first's rows."""
    from polymodal.data.validation import validate_manifest

    path = write_multimodal_manifest(tmp_path)
    image = tmp_path / "images" / "3.png"
    kept = image.read_bytes()
    image.unlink()
    pipe = DataPipeline(make_config(MULTIMODAL, data={"on_error": "skip"}))
    manifest = pipe.read(path, require_target=True, training=True)
    column = MULTIMODAL["img"]["column"]
    assert manifest.absent(column)[0].tolist() == [3]
    image.write_bytes(kept)
    validate_manifest(manifest, make_config(MULTIMODAL), require_target=True)  # on_error: raise, nothing missing
    assert manifest.absent(column)[0].tolist() == [], "the restored file is read, not skipped as before"
    table, _ = DataPipeline(make_config(MULTIMODAL)).fit(manifest)
    assert table.modalities["img"].present[3] and not table.skipped


def test_a_missing_first_signal_file_is_skipped_not_read_to_count_channels(tmp_path):
    """The channel count is learned from a training file that exists: the missing first one (a
    .wav, which the sound reader would fail on with its own error) is skipped and listed."""
    for i in (1, 2):
        np.save(tmp_path / f"{i}.npy", np.ones((50, 3), np.float32) * i)
    frame = pd.DataFrame({"sig": ["0.wav", "1.npy", "2.npy"], "y": ["a", "b", "a"]})
    pipe = pipeline("skip", {"vib": {"kind": "signal", "column": "sig", "preprocess": {"length": 64}}})
    table, _ = pipe.fit(pipe.read(read_manifest(frame, root=tmp_path), require_target=True, training=True))
    assert table.rows.tolist() == [1, 2] and pipe.preprocessors["vib"].n_channels == 3
    assert [(s.row, s.reason) for s in table.skipped] == [(0, "file not found")]


def test_with_on_error_raise_every_missing_file_is_still_reported_at_once(tmp_path):
    from polymodal.errors import ManifestError

    path = write_multimodal_manifest(tmp_path)
    for i in (3, 8):
        (tmp_path / "images" / f"{i}.png").unlink()
    with pytest.raises(ManifestError) as info:
        pipeline("raise").read(path, require_target=True, training=True)
    assert info.value.problems == [
        f"train.csv row {i} (line {i + 2}), column 'image': file not found: {tmp_path.resolve() / 'images'}/{i}.png"
        for i in (3, 8)]


def test_the_skipped_list_reads_in_row_order_across_modalities(tmp_path):
    path = write_multimodal_manifest(tmp_path, broken_images=(4,))
    frame = pd.read_csv(path)
    frame["age"] = frame["age"].astype(object)
    frame.loc[2, "age"] = "forty"
    table, _ = pipeline("skip").fit(read_manifest(frame, root=tmp_path))
    listed = skipped_frame(table.skipped)
    assert list(zip(listed["row"], listed["modality"])) == [(2, "labs"), (4, "img")]


def test_audio_clips_cut_silent_or_shorter_than_a_frame_are_one_warning_per_manifest(tmp_path):
    """Training said nothing of clips cut to max_seconds or silent, which the runtime notes per request."""
    from .helpers import tone, write_wav

    rate, rows = 8000, []
    for i in range(8):
        seconds = 0.75 if i in (1, 4, 6) else 0.3
        wave = np.zeros(int(rate * seconds), np.float32) if i == 5 else tone(300.0 + 50 * i, seconds, rate)
        rows.append({"clip": write_wav(tmp_path / f"c{i}.wav", wave, rate), "y": i % 2})
    pd.DataFrame(rows).to_csv(tmp_path / "train.csv", index=False)
    config = make_config({"clip": {"kind": "audio", "column": "clip",
                                   "preprocess": {"sample_rate": rate, "max_seconds": 0.5, "n_mels": 16}}})
    with pytest.warns(UserWarning) as caught:
        DataPipeline(config).fit(read_manifest(tmp_path / "train.csv"))
    said = [str(w.message) for w in caught if "audio modality 'clip'" in str(w.message)]
    assert said == ["train.csv: audio modality 'clip', 4 row(s): longer than max_seconds (0.5 s): cut to its first "
                    "0.5 s (rows 1 (line 3), 4 (line 6), 6 (line 8)); the audio is silent (one value throughout): a "
                    "muted or disconnected microphone? (row 5 (line 7))"]


def test_two_processes_meeting_a_cold_cache_encode_it_once(tmp_path, monkeypatch):
    """Two fits on one cache folder at once (two runs, or a distributed fit's ranks): the second
    waits while the first encodes a modality, then reuses what it stored, so every store holds one
    segment and both read the same arrays. (Threads stand in for processes: an advisory lock
    taken through two open files excludes either.)"""
    import threading

    from polymodal.data import encode
    from polymodal.data.cache import visible_folders

    path = write_multimodal_manifest(tmp_path)
    data = {"cache_dir": str(tmp_path / "cache")}
    entered, release = threading.Event(), threading.Event()
    real = encode._featurize_rows

    def held(*args, **kwargs):  # the first fit stays inside its first encoding until released
        if threading.current_thread().name == "first" and not entered.is_set():
            entered.set()
            assert release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(encode, "_featurize_rows", held)
    tables = {}

    def fit(name):
        tables[name] = DataPipeline(make_config(MULTIMODAL, data=data)).fit(read_manifest(path))[0]

    first = threading.Thread(target=fit, args=("first",), name="first")
    first.start()
    assert entered.wait(30)
    second = threading.Thread(target=fit, args=("second",), name="second")
    second.start()
    try:
        second.join(1.0)
        assert second.is_alive()  # waiting for the first to store what it encodes
    finally:
        release.set()
    first.join(60)
    second.join(60)
    assert set(tables) == {"first", "second"}
    stores = [folder for folder in (tmp_path / "cache").iterdir() if (folder / "segments").is_dir()]
    assert len(stores) == len(MULTIMODAL)
    assert all(len(visible_folders(store / "segments")) == 1 for store in stores)
    for name, modality in tables["first"].modalities.items():
        for key, array in modality.arrays.items():
            np.testing.assert_array_equal(np.asarray(array), np.asarray(tables["second"].modalities[name].arrays[key]))
