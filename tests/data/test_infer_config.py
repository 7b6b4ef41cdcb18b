"""``polymodal config init``: a starting config inferred from a manifest's columns.

Its messages are checked as the command prints them (``--task``): each test runs as a command
does. ``infer_config`` in Python names ``task=`` instead (``tests/test_python_api.py``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers_cli import assert_user_error, invoke

from polymodal.config import load_config
from polymodal.data.infer_config import infer_config
from polymodal.errors import ManifestError, OptionError, command_line

from .helpers import tone, write_image, write_wav


@pytest.fixture(autouse=True)
def _as_a_command():
    with command_line():
        yield

WORDS = ["the pump", "hums loudly", "a bearing", "rattles at speed", "after the service", "no fault was seen"]


@pytest.fixture
def manifest(tmp_path):
    """24 rows: a grey 40x30 picture, a 0.5 s clip at 22.05 kHz, a (2, 300) signal, an RGB .npy
    picture, a number, a category, a sentence, an identifier, an empty column and a 3-class label."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(24):
        write_image(tmp_path / f"x{i}.png", rng.integers(0, 255, (30, 40), dtype=np.uint8))
        write_wav(tmp_path / f"a{i}.wav", tone(220.0, 0.5 if i else 0.75, 22_050), 22_050)
        np.save(tmp_path / f"s{i}.npy", rng.standard_normal((2, 300)).astype(np.float32))
        np.save(tmp_path / f"p{i}.npy", rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
        rows.append({"scan": f"x{i}.png", "sound_path": f"a{i}.wav", "vib": f"s{i}.npy", "photo": f"p{i}.npy",
                     "age": int(rng.integers(20, 30)), "row_no": i, "site": ["north", "south"][i % 2],
                     "note": " ".join(rng.choice(WORDS, size=3)), "patient_id": f"P{i:03d}", "blank": "",
                     "label": ["ok", "worn", "broken"][i % 3], "wear": 0.1 * i + 0.01, "hot": i % 2, "loud": i % 3 == 0})
    pd.DataFrame(rows).to_csv(tmp_path / "train.csv", index=False)
    return tmp_path / "train.csv"


def test_each_column_becomes_what_its_cells_hold_with_settings_from_its_files(manifest):
    inferred = infer_config(manifest, "label")
    became = {column: kind for column, kind, _ in inferred.columns}
    assert became == {"scan": "image", "sound_path": "audio", "vib": "signal", "photo": "image", "age": "number",
                      "site": "category", "note": "text", "patient_id": "skipped", "blank": "skipped", "row_no": "skipped",
                      "wear": "number", "hot": "number", "loud": "category", "label": "target (classification)"}
    modalities = inferred.config["modalities"]
    assert modalities["scan"]["preprocess"] == {"size": 40, "color": "gray", "normalize": "standard"}
    assert modalities["scan"]["encoder"] == {"name": "cnn", "channels": [32, 64, 128], "pool": "avg"}  # over 32 px
    assert "encoder" not in modalities["photo"]  # 32 px: the default cnn, flattened, is small
    assert modalities["sound"]["preprocess"] == {"sample_rate": 16_000, "max_seconds": 0.75}  # at most 16 kHz
    assert modalities["vib"] == {"kind": "signal", "column": "vib", "preprocess": {"length": 300}}
    assert modalities["photo"]["preprocess"]["color"] == "rgb"
    assert modalities["table"] == {"kind": "tabular", "columns": ["age", "wear", "hot"], "categorical": ["site", "loud"]}
    assert modalities["note"]["kind"] == "text"
    assert inferred.config["task"] == "classification" and inferred.config["fusion"] == {"name": "attention"}
    load_config(inferred.config)


@pytest.mark.parametrize(("target", "task"), [("wear", "regression"), ("label", "classification"),
                                              (["hot", "loud"], "multilabel")])
def test_the_task_follows_the_target(manifest, target, task):
    assert infer_config(manifest, target).config["task"] == task


def test_a_column_that_determines_the_target_is_flagged_and_a_missing_target_named(manifest, tmp_path):
    frame = pd.read_csv(manifest)
    frame["batch"] = frame["label"].map({"ok": "b1", "worn": "b2", "broken": "b3"})  # the label under another name
    frame["cosigner"] = [["aunt", "friend"][i % 2] if label == "ok" else None  # filled in a few rows, one class
                         for i, label in enumerate(frame["label"])]
    frame.to_csv(tmp_path / "leaky.csv", index=False)
    inferred = infer_config(tmp_path / "leaky.csv", "label")
    why = {column: reason for column, _, reason in inferred.columns}
    assert "determines the target" in why["batch"] and "left out as a likely leak" in why["batch"]
    assert "cosigner" in inferred.config["modalities"]["table"]["categorical"], why["cosigner"]  # proves nothing
    assert "batch" not in inferred.config["modalities"]["table"]["categorical"]
    assert not any("determines the target" in why[c] for c in ("site", "age", "wear"))  # unique values prove nothing
    with pytest.raises(ManifestError, match=r"target column 'Label' is not in train.csv \(did you mean 'label'\?\)"):
        infer_config(manifest, "Label")


def test_two_columns_that_together_determine_the_target_are_both_flagged(manifest, tmp_path):
    """A fault's type and size spell out its label together, neither alone."""
    frame = pd.read_csv(manifest)
    frame["fault_type"] = frame["label"].map({"ok": "x", "worn": "x", "broken": "y"})
    frame["fault_size"] = frame["label"].map({"ok": 7, "worn": 14, "broken": 7})
    frame.to_csv(tmp_path / "paired.csv", index=False)
    inferred = infer_config(tmp_path / "paired.csv", "label")
    why = {column: reason for column, _, reason in inferred.columns}
    table = inferred.config["modalities"]["table"]
    assert "fault_type" not in table["categorical"] and "fault_size" not in table["columns"]
    assert "'fault_size'" in why["fault_type"] and "it determines the target" in why["fault_type"]
    assert "'fault_type'" in why["fault_size"] and "it determines the target" in why["fault_size"]
    assert not any("determines" in why[c] for c in ("site", "hot", "age"))  # with each other or loud: no


def test_a_copy_of_a_column_is_left_out_also_where_the_target_is_one_value(manifest, tmp_path):
    """An anomaly detector's rows are all normal: no leak can be seen through the target, but two
    columns that agree in every normal row (a picture's digit, the spoken digit) would teach it
    that they agree, and give a mismatch away at test time."""
    frame = pd.read_csv(manifest).assign(label="normal")
    frame["age_again"] = frame["age"]
    frame.to_csv(tmp_path / "normal.csv", index=False)
    inferred = infer_config(tmp_path / "normal.csv", "label")
    became = {column: (kind, why) for column, kind, why in inferred.columns}
    assert became["age_again"][0] == "skipped" and "the same as 'age'" in became["age_again"][1]
    assert became["age"][0] == "number" and inferred.config["task"] == "anomaly"
    assert inferred.config["modalities"]["table"]["columns"] == ["age", "wear", "hot"]



def test_a_whole_number_column_named_as_a_position_is_left_out_and_settings_named_so_are_kept(manifest, tmp_path):
    """A window's start sample or a frame index says where a row was cut from, not what it holds (and
    a split by position puts every test value outside the training range); a setting that names a
    position word beside a measure (a sample rate), a code of few values, or decimals are kept."""
    frame = pd.read_csv(manifest)
    frame["start"] = np.arange(24) % 8 * 1024  # windows of three recordings: 8 values, too few for a position
    frame["windowOffset"] = np.arange(24) % 20 * 512  # camelCase: 'offset'; 20 values, repeated
    frame["Frame Index"] = np.arange(24) * 7 % 22 + 3  # 22 values, repeated
    frame["sample_rate"] = np.arange(24) % 20 * 1000 + 8000  # 20 values, but a measure: kept
    frame["frame"] = np.arange(24) % 4 + 1  # a camera code, 4 values: kept
    frame["end_s"] = np.arange(24) * 0.25 + 0.1  # seconds, not whole: kept
    frame["rpm"] = 1797 - np.arange(24)  # an operating condition: kept
    frame["end_diastolic_volume"] = 100 + np.arange(24) * 7 % 23  # a measurement that starts with a position word: kept
    frame.to_csv(tmp_path / "positions.csv", index=False)
    inferred = infer_config(tmp_path / "positions.csv", "label")
    became = {column: (kind, why) for column, kind, why in inferred.columns}
    for column, said in (("windowOffset", "20 whole numbers named as a position ('offset')"),
                         ("Frame Index", "22 whole numbers named as a position ('frame')")):
        assert became[column][0] == "skipped" and became[column][1].startswith(said), became[column]
    columns = inferred.config["modalities"]["table"]["columns"]
    assert {"start", "sample_rate", "frame", "end_s", "rpm", "end_diastolic_volume"} <= set(columns), became
    assert "windowOffset" not in columns and "Frame Index" not in columns
    frame["start"] = np.arange(24) % 20 * 1024  # 20 values: a position
    frame.to_csv(tmp_path / "positions.csv", index=False)
    became = {column: kind for column, kind, _ in infer_config(tmp_path / "positions.csv", "label").columns}
    assert became["start"] == "skipped"

def test_config_init_writes_a_config_that_trains_and_refuses_to_overwrite(manifest, tmp_path):
    out = tmp_path / "config.yaml"
    result = invoke("config", "init", "--data", manifest, "--target", "label", "--out", out)
    assert result.exit_code == 0, result.output
    assert "patient_id" in result.stdout and "identifier" in result.stdout
    config = yaml.safe_load(out.read_text())
    assert config["target"] == "label" and set(config["modalities"]) == {"scan", "sound", "vib", "photo", "note",
                                                                         "table"}
    assert_user_error(invoke("config", "init", "--data", manifest, "--target", "label", "--out", out),
                      "already exists", "--overwrite")
    out.write_text(yaml.safe_dump({**config, "train": {"epochs": 1, "progress": False}}))  # every modality inferred
    trained = invoke("train", out, "--train", manifest, "--out", tmp_path / "run")
    assert trained.exit_code == 0, trained.output


def test_files_are_judged_by_kind_and_an_unreadable_first_file_is_passed_over(tmp_path):
    rng = np.random.default_rng(1)
    rows = []
    for i in range(12):
        name = f"scan {i}.{'jpg' if i % 2 else 'png'}"  # spaces, and two picture formats in one column
        if i == 0:
            (tmp_path / name).write_bytes(b"not a picture")
        else:
            write_image(tmp_path / name, rng.integers(0, 255, (20, 24), dtype=np.uint8))
        np.save(tmp_path / f"eeg{i}.npy", rng.standard_normal((32, 500)).astype(np.float32))  # 32 channels
        rows.append({"scan": name, "eeg": f"eeg{i}.npy", "missing": f"gone{i}.png", "y": i % 2, "t": ["a", "b"][i % 2]})
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    inferred = infer_config(tmp_path / "m.csv", "y")
    became = {column: (kind, why) for column, kind, why in inferred.columns}
    assert became["scan"][0] == "image" and inferred.config["modalities"]["scan"]["preprocess"]["size"] == 24
    assert became["eeg"][0] == "signal" and inferred.config["modalities"]["eeg"]["preprocess"]["length"] == 500
    assert became["missing"] == ("skipped", f".png paths, none of the 12 looked at found (relative to {tmp_path})")
    assert "spectrogram" not in inferred.config["modalities"]["eeg"]["preprocess"]  # 500 samples: read as they are
    with pytest.raises(ManifestError, match=r"target column 'scan' holds 12 distinct text values in 12 rows"):
        infer_config(tmp_path / "m.csv", ["y", "scan"])  # one of several targets: as refused alone


def test_constants_groups_counters_and_stray_text_among_numbers_are_judged_as_a_user_would(tmp_path):
    rng = np.random.default_rng(2)
    n = 40
    frame = pd.DataFrame({
        "listing": np.arange(1000, 1000 + n),  # a counter without an id name
        "country": ["NL"] * n,  # the same everywhere
        "speaker": [f"s{i % 4}" for i in range(n)],  # who the row is from
        "rooms": [str(int(v)) if i % 10 else "?" for i, v in enumerate(rng.integers(1, 6, n))],  # '?' among numbers
        "area": rng.uniform(40, 200, n).round(1),
        "price": rng.integers(100, 900, n) * 1000,  # whole numbers, too many to be classes
        "normal": ["ok"] * n,
        "price_text": [f"${v:,}" for v in rng.integers(100_000, 900_000, n)],
    })
    frame.to_csv(tmp_path / "m.csv", index=False)
    inferred = infer_config(tmp_path / "m.csv", "price")
    became = {column: (kind, why) for column, kind, why in inferred.columns}
    assert became["listing"] == ("skipped", "whole numbers unique to every row: an identifier")
    assert became["country"] == ("skipped", "the same value ('NL') in every row looked at")
    assert became["speaker"][0] == "skipped" and "split the data by it" in became["speaker"][1]
    assert became["rooms"] == ("number", "numbers (4 cell(s) of 40 rows that are not: '?'; read as missing)")
    assert inferred.config["data"] == {"on_error": "missing"}  # as said: training reads the '?' as missing
    assert became["(data)"][1].startswith("some number columns hold cells that are no number: each reads as missing")
    assert inferred.config["task"] == "regression"
    assert inferred.config["modalities"]["table"]["columns"] == ["rooms", "area"]
    anomaly = infer_config(tmp_path / "m.csv", "normal").config  # one value: the normal rows of a detector
    assert anomaly["task"] == "anomaly" and anomaly["anomaly"] == {"normal": ["ok"]} and anomaly["target"] == "normal"
    with pytest.raises(ManifestError, match="holds 40 distinct text values in 40 rows"):
        infer_config(tmp_path / "m.csv", "price_text")


@pytest.fixture
def motor(tmp_path):
    """A motor's recordings: a load of 0-3 (class-like codes), a speed that takes 18 whole-number
    values between 1730 and 1797 rpm (written as floats), a fault size of 7/14/21, tags."""
    rng = np.random.default_rng(4)
    n = 120
    speeds = np.array([1730, 1733, 1735, 1740, 1744, 1748, 1750, 1752, 1757, 1760, 1765, 1772, 1775, 1780, 1785,
                       1790, 1796, 1797], float)
    pd.DataFrame({"vib_rms": rng.normal(size=n), "temp": rng.normal(40, 2, n), "load": np.arange(n) % 4,
                  "rpm": speeds[np.arange(n) % len(speeds)], "size": [7, 14, 21] * (n // 3),
                  "grade": rng.integers(1, 11, n), "worn": np.arange(n) % 2, "label": ["ok", "ball"] * (n // 2),
                  }).to_csv(tmp_path / "motor.csv", index=False)
    return tmp_path / "motor.csv"


def test_whole_numbers_read_as_classes_only_when_they_lie_close_together_as_codes_do(motor):
    why = {}
    for target in ("load", "rpm", "size", "grade"):
        inferred = infer_config(motor, target)
        why[target] = (inferred.config["task"], dict((c, w) for c, _, w in inferred.columns)[target])
    assert why["load"] == ("classification", "4 whole-number labels (0-3), each on several rows: classes "
                                             "(--task regression for a number)")
    assert why["grade"][0] == "classification"  # 1-10
    assert why["rpm"] == ("regression", "18 whole numbers spread over 1730-1797: a measurement, as class codes lie "
                                        "close together (--task classification for classes)")
    assert why["size"][0] == "regression"  # 7, 14, 21 mils: a size


def test_the_task_can_be_chosen_in_place_of_the_inferred_one(motor, tmp_path):
    inferred = infer_config(motor, "load", task="regression")
    assert inferred.config["task"] == "regression" and inferred.config["target"] == "load"
    assert dict((c, w) for c, _, w in inferred.columns)["load"] == "--task regression (inferred: classification)"
    assert infer_config(motor, "rpm", task="classification").config["task"] == "classification"
    assert infer_config(motor, ["worn", "load"], task="regression").config["task"] == "regression"
    assert dict((c, w) for c, _, w in infer_config(motor, "rpm", task="regression").columns)["rpm"] == \
        "--task regression"  # as inferred: nothing more to say
    out = tmp_path / "c.yaml"
    result = invoke("config", "init", "--data", motor, "--target", "load", "--task", "regression", "--out", out)
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(out.read_text())["task"] == "regression"
    assert "task regression" in result.stdout


def test_task_anomaly_takes_the_target_as_anomaly_labels_and_writes_which_are_normal(motor, tmp_path):
    worn = infer_config(motor, "worn", task="anomaly")  # 0/1: 0 is one of anomaly.normal's defaults
    assert worn.config["task"] == "anomaly" and worn.config["target"] == "worn"
    assert worn.config["anomaly"] == {"normal": [0]}
    assert dict((c, w) for c, _, w in worn.columns)["(anomaly)"] == \
        "0: anomaly.normal's default; the other labels (1) are anomalies"
    assert infer_config(motor, None, task="anomaly").config["task"] == "anomaly"  # no labels: all rows normal
    rng = np.random.default_rng(0)  # no default label: the most frequent is taken as normal, and said so
    pd.DataFrame({"x": rng.normal(size=20), "state": ["ok"] * 14 + ["ball"] * 4 + ["inner"] * 2}).to_csv(
        tmp_path / "m.csv", index=False)
    out = tmp_path / "c.yaml"
    result = invoke("config", "init", "--data", tmp_path / "m.csv", "--target", "state", "--task", "anomaly",
                    "--out", out)
    assert result.exit_code == 0, result.output
    written = yaml.safe_load(out.read_text())
    assert written["task"] == "anomaly" and written["target"] == "state" and written["anomaly"] == {"normal": ["ok"]}
    load_config(written)
    said = " ".join(result.stdout.split())
    assert "guessed: 'ok', the most frequent label (70% of the rows)" in said
    assert "edit anomaly.normal if another label means normal" in said


@pytest.mark.parametrize(("target", "task", "said"), [
    ("label", "regression", "--task regression: target column 'label' holds text ('ok', 'ball'); task 'regression' "
                            "needs numbers"),
    (["worn", "load"], "multilabel", "--task multilabel: target column 'load' holds values other than 0 and 1 "
                                     "(2, 3)"),
    (["worn", "load"], "classification", "--task classification: takes one target column; got ['worn', 'load']"),
    (None, "regression", "--task regression: needs --target COLUMN"),
    ("load", "clasification", "--task: one of classification, regression, multilabel, anomaly; got 'clasification'"),
    (["worn", "load"], "anomaly", "--task anomaly: takes at most one target column, the anomaly labels; got "
                                  "['worn', 'load']"),
])
def test_a_task_the_targets_cannot_be_is_refused_naming_the_option(motor, tmp_path, target, task, said):
    with pytest.raises(OptionError) as info:
        infer_config(motor, target, task=task)
    assert info.value.problems[0].startswith(said)
    targets = [] if target is None else [target] if isinstance(target, str) else target
    assert_user_error(invoke("config", "init", "--data", motor, *[a for t in targets for a in ("--target", t)],
                             "--task", task, "--out", tmp_path / "c.yaml"), said)
    assert not (tmp_path / "c.yaml").exists()


def test_files_some_of_which_are_missing_train_with_that_modality_missing(tmp_path):
    rng = np.random.default_rng(3)
    rows = []
    for i in range(10):
        if i % 3:
            write_image(tmp_path / f"x{i}.png", rng.integers(0, 255, (8, 8), dtype=np.uint8))
        rows.append({"x": f"x{i}.png", "y": i % 2})
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    inferred = infer_config(tmp_path / "m.csv", "y")
    assert "4 of the 10 looked at not found" in dict((c, w) for c, _, w in inferred.columns)["x"]
    assert inferred.config["data"] == {"on_error": "missing"}


def test_videos_get_their_frame_size_and_colour_and_a_sound_column_their_audio_track(tmp_path):
    from polymodal.data.video_io import write_video

    rng = np.random.default_rng(4)
    rows = []
    for i in range(6):
        grey = rng.integers(0, 255, (4, 32, 48), dtype=np.uint8)
        track = np.sin(np.arange(9600 if i == 4 else 4000) / 5.0).astype(np.float32)  # 1.2 s on row 4, else 0.5 s
        write_video(str(tmp_path / f"v{i}.mp4"), grey, fps=10, audio=track, sample_rate=8000)
        rows.append({"clip": f"v{i}.mp4", "audio": f"v{i}.mp4", "y": i % 2})
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    inferred = infer_config(tmp_path / "m.csv", "y")
    modalities = inferred.config["modalities"]
    assert modalities["clip"]["kind"] == "video"
    assert modalities["clip"]["preprocess"] == {"size": 48, "color": "gray", "normalize": "standard"}
    assert modalities["audio"]["kind"] == "audio" and modalities["audio"]["preprocess"]["sample_rate"] == 8000
    assert modalities["audio"]["preprocess"]["max_seconds"] >= 1.2  # every track's header read, not the first's (0.5 s)


def _clips(root, sounds: list[float | None], rate: int = 8000, suffix: str = ".mp4"):
    """A manifest ``m.csv`` of 8x8 grey videos, one per entry of ``sounds``: its sound track's
    seconds at ``rate`` (None: no audio track), and a 0/1 label."""
    from polymodal.data.video_io import write_video

    rng = np.random.default_rng(8)
    for i, seconds in enumerate(sounds):
        track = None if seconds is None else np.sin(np.arange(int(seconds * rate)) / 5.0).astype(np.float32)
        write_video(str(root / f"v{i}{suffix}"), rng.integers(0, 255, (4, 8, 8), dtype=np.uint8), fps=10,
                    audio=track, sample_rate=rate)
    pd.DataFrame({"clip": [f"v{i}{suffix}" for i in range(len(sounds))], "y": [0, 1] * (len(sounds) // 2)}).to_csv(
        root / "m.csv", index=False)
    return root / "m.csv"


def test_a_video_column_with_sound_also_gets_an_audio_modality_for_its_tracks(tmp_path):
    inferred = infer_config(_clips(tmp_path, [0.5, 0.5, 1.2, 0.5], rate=11_025), "y")
    modalities = inferred.config["modalities"]
    assert set(modalities) == {"clip", "clip_sound"}
    assert modalities["clip"]["kind"] == "video"
    assert modalities["clip_sound"]["kind"] == "audio" and modalities["clip_sound"]["column"] == "clip"
    assert modalities["clip_sound"]["preprocess"]["sample_rate"] == 11_025
    assert 1.2 <= modalities["clip_sound"]["preprocess"]["max_seconds"] < 1.4  # the longest track (+ a frame), every header
    assert inferred.config["fusion"] == {"name": "attention"}
    became = [(c, b) for c, b, _ in inferred.columns]
    assert became[:2] == [("clip", "video"), ("clip", "audio (clip_sound)")]
    assert "hold no audio track" not in inferred.columns[1][2]


def test_a_video_column_whose_videos_hold_no_sound_gets_no_audio_modality(tmp_path):
    inferred = infer_config(_clips(tmp_path, [None] * 4), "y")
    assert set(inferred.config["modalities"]) == {"clip"}
    assert [b for c, b, _ in inferred.columns if c == "clip"] == ["video"]


def test_videos_some_with_sound_get_the_audio_modality_said_absent_in_the_others_and_train(tmp_path):
    manifest = _clips(tmp_path, [None, 0.5, 0.5, None])
    out = tmp_path / "c.yaml"
    result = invoke("config", "init", "--data", manifest, "--target", "y", "--out", out)
    assert result.exit_code == 0, result.output
    assert "2 of the 4 hold no audio track, such as v0.mp4" in " ".join(result.stdout.split())
    assert "clip_sound (audio)" in result.stdout
    config = yaml.safe_load(out.read_text())
    assert config["modalities"]["clip_sound"] == {"kind": "audio", "column": "clip",
                                                  "preprocess": {"sample_rate": 8000, "max_seconds": 0.63}}  # + an AAC frame
    load_config(config)
    out.write_text(yaml.safe_dump({**config, "train": {"epochs": 1, "batch_size": 2, "progress": False}}))
    trained = invoke("train", out, "--train", manifest, "--out", tmp_path / "run")
    assert trained.exit_code == 0, trained.output


def test_modality_names_stay_unique_beside_a_column_named_like_the_sound(tmp_path):
    manifest = _clips(tmp_path, [0.5] * 4)
    frame = pd.read_csv(manifest)
    frame["clip_sound"] = frame["clip"]  # a video column named for its sound: read for its tracks alone
    frame.to_csv(manifest, index=False)
    modalities = infer_config(manifest, "y").config["modalities"]
    assert {name: (m["kind"], m["column"]) for name, m in modalities.items()} == {
        "clip": ("video", "clip"), "clip_sound": ("audio", "clip"), "clip_sound_2": ("audio", "clip_sound")}


def test_images_are_grey_when_every_one_read_is_grey_in_content_whatever_its_mode(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(5)
    paths = []
    for i in range(8):
        grey = rng.integers(0, 255, (28, 28), dtype=np.uint8)
        if i == 1:  # a grey scan saved as RGBA (R = G = B)
            Image.fromarray(np.dstack([grey, grey, grey, np.full_like(grey, 255)]), "RGBA").save(tmp_path / "x1.png")
        elif i == 2:  # a grey scan saved as RGB, one channel off by a compression's rounding
            Image.fromarray(np.dstack([grey, grey, np.clip(grey.astype(int) + 2, 0, 255).astype(np.uint8)])).save(
                tmp_path / "x2.png")
        elif i == 3:  # a big-endian 16-bit TIFF
            Image.frombytes("I;16B", (28, 28), (grey.astype(">u2") * 200).tobytes()).save(tmp_path / "x3.tif")
        else:
            write_image(tmp_path / f"x{i}.png", grey)
        paths.append(f"x{i}.tif" if i == 3 else f"x{i}.png")
    assert Image.open(tmp_path / "x3.tif").mode == "I;16B"
    pd.DataFrame({"scan": paths, "y": [0, 1] * 4}).to_csv(tmp_path / "m.csv", index=False)
    inferred = infer_config(tmp_path / "m.csv", "y")
    assert inferred.config["modalities"]["scan"]["preprocess"]["color"] == "gray"
    why = dict((c, w) for c, _, w in inferred.columns)["scan"]
    assert "grey (every one of the 8 read is grey in content, including 2 stored as RGB/RGBA" in why, why
    assert "1 of the 8 read are stored wider than 8 bits (such as x3.tif): each is scaled by its own maximum" in why
    assert "value_range" not in inferred.config["modalities"]["scan"]["preprocess"]

    colour = rng.integers(0, 255, (28, 28, 3), dtype=np.uint8)  # one photo in colour makes the column colour
    write_image(tmp_path / "x6.png", colour)
    inferred = infer_config(tmp_path / "m.csv", "y")
    assert inferred.config["modalities"]["scan"]["preprocess"]["color"] == "rgb"
    assert "1 of the 8 read hold colour, such as x6.png" in dict((c, w) for c, _, w in inferred.columns)["scan"]


def test_an_npy_picture_of_three_equal_channels_is_grey(tmp_path):
    rng = np.random.default_rng(6)
    for i in range(4):
        grey = rng.integers(0, 255, (32, 32), dtype=np.uint8)
        np.save(tmp_path / f"p{i}.npy", np.dstack([grey] * 3))
    pd.DataFrame({"photo": [f"p{i}.npy" for i in range(4)], "y": [0, 1] * 2}).to_csv(tmp_path / "m.csv", index=False)
    assert infer_config(tmp_path / "m.csv", "y").config["modalities"]["photo"]["preprocess"]["color"] == "gray"


@pytest.mark.parametrize(("length", "n_fft"), [(1024, 128), (2048, 256), (6000, 256)])
def test_long_signal_windows_are_read_as_spectrograms(tmp_path, length, n_fft):
    rng = np.random.default_rng(3)
    for i in range(6):
        np.save(tmp_path / f"v{i}.npy", rng.standard_normal((2, length - i)).astype(np.float32))  # the first longest
    pd.DataFrame({"vib": [f"v{i}.npy" for i in range(6)], "y": [0, 1] * 3}).to_csv(tmp_path / "m.csv", index=False)
    inferred = infer_config(tmp_path / "m.csv", "y")
    assert inferred.config["modalities"]["vib"]["preprocess"] == {
        "length": length, "spectrogram": {"n_fft": n_fft, "hop": n_fft // 2}}
    assert f"spectrograms (n_fft {n_fft})" in dict((c, why) for c, _, why in inferred.columns)["vib"]
    load_config(inferred.config)


def test_the_longest_clip_counts_among_every_sampled_row_not_only_the_first_files(tmp_path):
    """Audio lengths come from headers, cheap to read: a long clip at row 30 sets max_seconds."""
    for i in range(32):
        write_wav(tmp_path / f"a{i}.wav", tone(220.0, 1.5 if i == 30 else 0.5, 8_000), 8_000)
    pd.DataFrame({"clip": [f"a{i}.wav" for i in range(32)], "y": [0, 1] * 16}).to_csv(tmp_path / "m.csv", index=False)
    inferred = infer_config(tmp_path / "m.csv", "y")
    assert inferred.config["modalities"]["clip"]["preprocess"] == {"sample_rate": 8_000, "max_seconds": 1.5}
    assert "in the 32 file(s) read" in dict((c, why) for c, _, why in inferred.columns)["clip"]


def test_config_init_without_a_target_says_what_it_made_and_names_a_likely_target(manifest, tmp_path):
    result = invoke("config", "init", "--data", manifest, "--out", tmp_path / "c.yaml")
    assert result.exit_code == 0, result.output
    said = " ".join(result.stdout.split())
    assert "task anomaly" in said and "no --target: every row is taken as normal" in said
    assert "or --task anomaly --target COLUMN to evaluate anomalies against its labels" in said  # not a classifier
    assert "(this manifest has 'label')" in said
    config = yaml.safe_load((tmp_path / "c.yaml").read_text())
    assert "label" not in config["modalities"]["table"]["categorical"]  # the answer is no feature
    assert "no --target" not in invoke("config", "init", "--data", manifest, "--target", "label", "--out",
                                       tmp_path / "d.yaml").stdout


def test_the_target_line_names_unlabelled_rows_and_classes_of_one_row(manifest):
    frame = pd.read_csv(manifest)
    frame.loc[[3, 7], "label"] = None
    frame.loc[5, "label"] = "fish"
    frame.to_csv(manifest, index=False)
    why = {column: reason for column, _, reason in infer_config(manifest, "label").columns}
    assert why["label"] == ("4 text label(s); 2 row(s) without one, which train refuses: drop them (or give them as "
                            "transfer.unlabeled); 1 class(es) with a single row ('fish'): too few to learn, or to "
                            "score once split off for validation")


def test_the_target_line_names_a_multilabel_or_regression_column_of_one_value(manifest, tmp_path):
    pd.read_csv(manifest).assign(always=1, rpm=1796.0).to_csv(tmp_path / "const.csv", index=False)
    why = {column: reason for column, _, reason in infer_config(tmp_path / "const.csv", ["hot", "always"]).columns}
    assert why["always"] == ("several 0/1 columns; one value (1) in every row: the model learns only to repeat it, "
                             "and its AUROC is undefined")
    assert why["hot"] == "several 0/1 columns"
    why = {column: reason for column, _, reason in infer_config(tmp_path / "const.csv", ["wear", "rpm"]).columns}
    assert why["rpm"].endswith("; one value (1796.0) in every row: the model learns only to repeat it, and its R2 is "
                               "undefined")
    assert "one value" not in why["wear"]


def test_number_and_category_columns_are_read_in_every_row_not_only_the_sampled_ones(tmp_path):
    """The cells judged are a sample (200 rows spread across the manifest); a number column's cells
    that are no number and a category column's spellings are then counted in every row, so a
    '38,4' or an 'm' between the sampled rows is found, and the output says what was sampled."""
    from polymodal.data.infer_config import SAMPLE_ROWS

    n = 5000
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"crp": rng.lognormal(3, 1, n).round(1).astype(object),
                          "temp": rng.normal(37.5, 0.6, n).round(1).astype(object),
                          "sex": rng.choice(["M", "F"], n).astype(object),
                          "smoking": rng.choice(["never", "current"], n).astype(object),
                          "label": rng.choice(["a", "b"], n)})
    sampled = set(np.unique(np.linspace(0, n - 1, min(n, SAMPLE_ROWS)).astype(np.int64)).tolist())
    odd = [r for r in range(1, n) if r not in sampled][:6]
    frame.loc[odd[0], "crp"], frame.loc[odd[1], "crp"], frame.loc[odd[2], "temp"] = ">200", "?", "38,4"
    frame.loc[odd[3], "sex"], frame.loc[odd[4], "smoking"] = "m", "Current "
    frame.to_csv(tmp_path / "m.csv", index=False)
    inferred = infer_config(tmp_path / "m.csv", "label")
    became = {column: (kind, why) for column, kind, why in inferred.columns}
    assert (inferred.rows, inferred.sampled) == (n, SAMPLE_ROWS)
    assert became["crp"] == ("number", "numbers (2 cell(s) of 5,000 rows that are not: '>200', '?'; read as missing)")
    assert became["temp"] == ("number", "numbers (1 cell(s) of 5,000 rows that are not: '38,4'; read as missing)")
    assert inferred.config["data"] == {"on_error": "missing"}  # found outside the sample too
    assert became["sex"][0] == "category" and "'m' (1)" in became["sex"][1] and "3 values" in became["sex"][1]
    assert "'current' (" in became["smoking"][1] and "'Current ' (1)" in became["smoking"][1]
    table = inferred.config["modalities"]["table"]
    assert table["preprocess"] == {"normalize_categories": "strip_lower"}
    assert became["(table)"][0] == "normalize_categories: strip_lower"
    result = invoke("config", "init", "--data", tmp_path / "m.csv", "--target", "label", "--out", tmp_path / "c.yaml")
    assert result.exit_code == 0, result.output
    assert f"judged on {SAMPLE_ROWS} of 5,000 rows, spread across the manifest; number and category columns were " \
           "then read in every row" in " ".join(result.stdout.split())


@pytest.mark.parametrize(("positives", "decided"), [(25, True), (45, False)])
def test_two_uneven_classes_get_a_threshold_chosen_on_validation(tmp_path, positives, decided):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=100), "z": rng.normal(size=100),
                          "finding": ["pneumonia"] * positives + ["normal"] * (100 - positives)})
    inferred = infer_config(frame, "finding")
    assert (inferred.config.get("decision") == {"threshold": "auto"}) is decided
    said = {column: (became, why) for column, became, why in inferred.columns}
    if decided:
        assert said["(decision)"][0] == "threshold: auto"
        assert f"two classes, 'normal' ({100 - positives}% of the rows) and 'pneumonia' ({positives}%)" in \
            said["(decision)"][1]
    else:
        assert "(decision)" not in said


def test_sparse_whole_number_codes_read_as_a_measurement_and_the_reason_says_how_to_choose_classes():
    """The known cost of the rule: codes far apart (HTTP statuses) read as numbers; --task fixes it."""
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"x": rng.normal(size=60), "status": [200, 404, 500] * 20})
    inferred = infer_config(frame, "status")
    reason = dict((c, w) for c, _, w in inferred.columns)["status"]
    assert inferred.config["task"] == "regression" and "--task classification for classes" in reason
    assert infer_config(frame, "status", task="classification").config["task"] == "classification"


def test_an_audio_column_may_hold_npy_arrays_aiff_and_opus_files_and_mixed_kinds_are_named(tmp_path):
    """30 .wav and one .npy (or .aiff, .opus) read as 'text unique to every row: an identifier'."""
    import soundfile

    rng = np.random.default_rng(4)
    for i in range(12):
        write_wav(tmp_path / f"a{i}.wav", tone(220.0, 0.5, 8_000), 8_000)
    np.save(tmp_path / "n.npy", tone(220.0, 3.0, 8_000))  # no rate: neither it nor its length counts
    soundfile.write(tmp_path / "b.aiff", tone(220.0, 0.75, 8_000), 8_000)
    soundfile.write(tmp_path / "c.opus", tone(220.0, 0.5, 48_000), 48_000, format="OGG", subtype="OPUS")
    write_image(tmp_path / "p.png", rng.integers(0, 255, (20, 24), dtype=np.uint8))
    clips = [f"a{i}.wav" for i in range(12)]
    columns = {"with_npy": [*clips, "n.npy"], "with_aiff": [*clips, "b.aiff"], "with_opus": [*clips, "c.opus"],
               "with_png": [*clips, "p.png"], "with_other": [*clips[:11], "readme.txt", "n.npy"]}
    pd.DataFrame({**columns, "y": [0, 1] * 6 + [0]}).to_csv(tmp_path / "m.csv", index=False)
    inferred = infer_config(tmp_path / "m.csv", "y")
    became = {column: (kind, why) for column, kind, why in inferred.columns}
    settings = {name: modality["preprocess"] for name, modality in inferred.config["modalities"].items()}
    assert became["with_npy"][0] == "audio" and "in the 12 file(s) read" in became["with_npy"][1]
    assert settings["with_npy"] == {"sample_rate": 8_000, "max_seconds": 0.5}
    assert became["with_aiff"][0] == "audio" and settings["with_aiff"] == {"sample_rate": 8_000, "max_seconds": 0.75}
    assert became["with_opus"][0] == "audio" and settings["with_opus"] == {"sample_rate": 16_000, "max_seconds": 0.5}
    assert became["with_png"] == ("skipped", "file paths of mixed kinds: 12 .wav (audio), 1 .png (image); a column "
                                             "holds one kind of file (audio files may include .npy arrays of "
                                             "samples): split it into one column per kind")
    assert became["with_other"][0] == "skipped"
    assert became["with_other"][1].startswith("file paths of mixed kinds: 11 .wav (audio), 1 .npy (array), 1 of no "
                                              "known kind, such as 'readme.txt'")
    load_config(inferred.config)


def test_sound_track_settings_cap_the_length_before_the_codec_frame_and_default_unknown_lengths():
    """A 10 s AAC track (64 ms frames at 16 kHz) ran past a max_seconds capped at 10 s, and a track
    whose header tells no length (a browser's WebM) gave 0.1 s: every row was cut."""
    from polymodal.data.infer_config_files import _track_preprocess

    frame = 1024 / 16_000
    assert _track_preprocess(16_000, [(16_000, 10.0, frame)]) == {"sample_rate": 16_000, "max_seconds": 10.07}
    assert _track_preprocess(16_000, [(16_000, 30.0, frame)])["max_seconds"] == 10.07
    assert _track_preprocess(48_000, [(48_000, None, 0.0)]) == {"sample_rate": 16_000, "max_seconds": 10.0}
    assert _track_preprocess(8_000, [(8_000, None, 0.0), (8_000, 0.5, 0.128)])["max_seconds"] == 0.63


def test_numbers_written_with_leading_zeros_are_codes_kept_as_written(tmp_path):
    """Zip codes read as numbers lost their zero (02139 -> 2139) and became a quantity: with codes
    written so in a share of the cells, the column is categories (an identifier where unique to
    every row), and training reads it as the file writes it."""
    from polymodal.config.columns import csv_columns
    from polymodal.data.manifest import read_manifest

    rng = np.random.default_rng(0)
    n = 40
    zips = ["01003", "01009", "02139", "10001", "94110"]
    frame = pd.DataFrame({"zip": [zips[i % 5] for i in range(n)], "x": rng.normal(size=n),
                          "agent": [f"{i:03d}" for i in range(n)],  # '000'-'039': unique codes
                          "rooms": ["05"] + [str(v) for v in rng.integers(1, 9, n - 1)],  # one stray zero: a number
                          "y": ["a", "b"] * (n // 2)})
    frame.to_csv(tmp_path / "m.csv", index=False)
    inferred = infer_config(tmp_path / "m.csv", "y")
    became = {column: (kind, why) for column, kind, why in inferred.columns}
    assert became["zip"] == ("category", "numbers written with leading zeros (24 of the 40 cells looked at, such as "
                                         "'01003'): codes, not quantities: read as categories, as written; 5 values "
                                         "repeated across rows")
    assert became["agent"] == ("skipped", "numbers written with leading zeros (40 of the 40 cells looked at, such as "
                                          "'000'): codes, not quantities; unique to every row: an identifier")
    assert became["rooms"][0] == "number"  # 1 of 40 (under 5%): a slip, not codes
    table = inferred.config["modalities"]["table"]
    assert table["categorical"] == ["zip"] and table["columns"] == ["x", "rooms"]
    read = read_manifest(tmp_path / "m.csv", **csv_columns(load_config(inferred.config)))  # as training reads it
    assert sorted(read.column("zip").unique()) == sorted(zips)
    codes = infer_config(frame.assign(zip=frame["zip"].astype(object)), "y")  # a DataFrame's strings: alike
    assert dict((c, k) for c, k, _ in codes.columns)["zip"] == "category"
    blanks = frame.astype({"zip": object})
    blanks.loc[3, "zip"] = None  # a blank cell: pandas reads the rest as floats (1003.0)
    blanks.to_csv(tmp_path / "b.csv", index=False)
    assert dict((c, k) for c, k, _ in infer_config(tmp_path / "b.csv", "y").columns)["zip"] == "category"


def test_a_number_whose_values_alone_separate_the_classes_is_kept_and_said_so(tmp_path):
    """A threshold on one column telling every class apart can be an easy feature or the target
    in disguise: it stays in the table, its line and a warning on stderr say so."""
    rng = np.random.default_rng(0)
    n = 60
    y = np.array(["ok", "worn", "broken"] * (n // 3))
    score = np.select([y == "ok", y == "worn"], [rng.uniform(0, 1, n), rng.uniform(2, 3, n)], rng.uniform(4, 5, n))
    frame = pd.DataFrame({"score": score.round(3), "x": rng.normal(size=n), "y": y})
    frame.to_csv(tmp_path / "m.csv", index=False)
    inferred = infer_config(tmp_path / "m.csv", "y")
    why = {column: reason for column, _, reason in inferred.columns}
    assert "score" in inferred.config["modalities"]["table"]["columns"]
    assert why["score"].startswith("numbers; its values alone separate the classes, each in its own range ('ok' ")
    assert why["score"].endswith("check it is not derived from the target") and why["x"] == "numbers"
    assert len(inferred.warnings) == 1 and inferred.warnings[0].startswith("column 'score' alone separates the "
                                                                           "classes of 'y'")
    result = invoke("config", "init", "--data", tmp_path / "m.csv", "--target", "y", "--out", tmp_path / "c.yaml")
    assert result.exit_code == 0, result.output
    assert "warning: column 'score' alone separates the classes of 'y'" in " ".join(result.stderr.split())
    overlap = frame.assign(score=np.where(np.arange(n) == 1, 0.5, frame["score"]))  # one 'worn' in 'ok''s range
    assert not infer_config(overlap, "y").warnings
    few = frame.iloc[:52].copy()  # 'broken' kept on 17 rows, but only 4 of them with a score
    few.loc[few.index[(few["y"] == "broken").to_numpy()][4:], "score"] = None
    assert not infer_config(few, "y").warnings
    regressed = infer_config(frame.assign(y=score + rng.normal(0, 0.1, n)), "y").warnings  # no classes: no ranges
    assert len(regressed) == 1 and regressed[0].startswith("column 'score' follows the regression target 'y'")


def test_a_target_of_one_value_warns_that_the_config_is_an_anomaly_detector(manifest, tmp_path):
    """A single class is most often a manifest filtered by mistake: still the documented anomaly
    detector, but said on stderr, and not where --task anomaly asked for one."""
    pd.read_csv(manifest).assign(label="ok").to_csv(tmp_path / "one.csv", index=False)
    result = invoke("config", "init", "--data", tmp_path / "one.csv", "--target", "label", "--out", tmp_path / "c.yaml")
    assert result.exit_code == 0, result.output
    said = " ".join(result.stderr.split())
    assert "warning: target column 'label' holds one value ('ok') in every row: the config is an anomaly detector " \
           "of those rows (task: anomaly), not a classifier" in said
    assert "check the manifest was not filtered to one class, or give --task anomaly" in said
    assert yaml.safe_load((tmp_path / "c.yaml").read_text())["task"] == "anomaly"
    asked = invoke("config", "init", "--data", tmp_path / "one.csv", "--target", "label", "--task", "anomaly",
                   "--out", tmp_path / "d.yaml")
    assert asked.exit_code == 0, asked.output
    assert "warning" not in asked.stderr
    assert not infer_config(tmp_path / "one.csv", "label", task="anomaly").warnings


@pytest.mark.parametrize(("target", "task", "columns", "blank", "subset"), [
    ("label", None, ["note", "age"], "note", True), ("wear", None, ["note", "age"], "age", True),
    (["hot", "loud"], None, ["note", "age"], "note", True), ("label", "anomaly", ["note", "age"], "note", False),
    ("label", None, ["note", "age"], None, False),  # every row has every modality: each alone may mislead
    ("label", None, ["age", "wear"], "age", False),  # one modality, the table: nothing to train alone
])
def test_modalities_some_rows_lack_are_also_trained_alone(manifest, tmp_path, target, task, columns, blank, subset):
    """With subset_weight at its default 0, predict and explain warn that a row without some
    modality was never trained for: where some training rows lack one, each is trained alone
    too. Not where every row has every modality (on cwru_faults a table of operating conditions
    trained alone misled the model at unseen loads), nor for an anomaly detector (no task loss)
    or one modality."""
    frame = pd.read_csv(manifest)[[*columns, *([target] if isinstance(target, str) else target)]]
    if blank is not None:
        frame.loc[[3, 10], blank] = np.nan  # a table lacks its modality only where all its columns are empty
        if blank == "age" and "wear" in columns:
            frame.loc[[3, 10], "wear"] = np.nan
    inferred = infer_config(frame, target, task)
    said = {column: (became, why) for column, became, why in inferred.columns}
    assert (inferred.config.get("loss") == {"subset_weight": 1.0}) is subset
    assert ("(loss)" in said) is subset and ("loss" in inferred.config) is subset
    if subset:
        lacking = "'table'" if blank == "age" else "'note'"
        assert said["(loss)"] == ("subset_weight: 1.0", f"some rows lack {lacking}: each modality is also trained "
                                  "alone, so rows without some of them are predicted by a model trained on such rows "
                                  "(at the default 0, predict and explain warn that it was not)")
        assert load_config(inferred.config).loss.subset_weight == 1.0


NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@pytest.fixture
def digits():
    """60 rows: a digit 0-9 (6 rows each), its name, whether it is even, a value of the digit plus
    a little noise, a pen's pressure (a decimal unrelated to the digit) and a noise column."""
    rng = np.random.default_rng(7)
    digit = np.arange(60) % 10
    return pd.DataFrame({"digit": digit, "digit_name": [NAMES[d] for d in digit], "even": (digit % 2 == 0).astype(int),
                         "big": (digit > 4).astype(int), "value": (digit + rng.normal(0, 0.1, 60)).round(3),
                         "pressure": rng.uniform(0.5, 1.5, 60).round(3), "x": rng.normal(size=60)})


def test_a_column_that_determines_any_one_of_several_targets_is_left_out_naming_it(digits):
    """Each target is judged alone: a copy of 'digit' gives 'digit' away, however little it says
    of 'value' beside it."""
    why = {column: (kind, reason) for column, kind, reason in infer_config(digits, ["digit", "value"]).columns}
    assert why["digit_name"][0] == "skipped"
    assert why["digit_name"][1].endswith("it determines the target 'digit' in the rows looked at: left out as a "
                                         "likely leak (a recording's id, the label under another name); add it to "
                                         "the table's columns if it is known when predicting")
    why = {column: (kind, reason) for column, kind, reason in infer_config(digits, ["even", "value"]).columns}
    assert why["digit"][0] == "skipped" and "it determines the target 'even' in the rows" in why["digit"][1]
    assert why["big"][0] == "number" and why["pressure"] == ("number", "numbers")  # neither spells out a target
    both = {column: reason for column, _, reason in infer_config(digits, ["digit", "even", "value"]).columns}
    assert "it determines the targets 'digit' and 'even' in the rows" in both["digit_name"]
    paired = digits.assign(kind=np.where(digits["even"] == 1, "p", "q"), size=np.where(digits["big"] == 1, 7, 14))
    why = {column: reason for column, _, reason in infer_config(paired, ["value", "big", "even"]).columns}
    assert "it determines the target 'big'" in why["size"] and "it determines the target 'even'" in why["kind"]
    quarter = digits.assign(label=digits["even"] * 2 + digits["big"])  # spelt out by 'kind' and 'size' together
    why = {column: reason for column, _, reason in infer_config(quarter.assign(
        kind=np.where(digits["even"] == 1, "p", "q"), size=np.where(digits["big"] == 1, 7, 14)).drop(
        columns=["even", "big", "digit", "digit_name"]), ["label", "value"]).columns}
    assert "with 'size' it determines the target 'label'" in why["kind"]
    assert "with 'kind' it determines the target 'label'" in why["size"]


def test_targets_of_different_kinds_make_a_multi_task_config_that_trains(digits, tmp_path):
    inferred = infer_config(digits.drop(columns=["digit_name", "digit"]), ["even", "value"])
    assert inferred.config["task"] == "classification" and inferred.config["target"] == "even"
    assert inferred.config["tasks"] == {"value": {"task": "regression", "target": "value"}}
    load_config(inferred.config)
    said = {column: (became, why) for column, became, why in inferred.columns}
    assert said["even"][0] == "target (classification)" and said["value"] == ("target (regression, tasks.value)",
                                                                              "numbers")
    assert said["(tasks)"][0] == "value: regression"
    assert said["(tasks)"][1].startswith("the targets are of different kinds (0/1 labels: 'even'; numbers: 'value'), "
                                         "which no one task learns together")
    assert "the first target 'even' its main task" in said["(tasks)"][1]
    coded = infer_config(digits.drop(columns=["digit_name"]), ["digit", "value", "even"]).config  # class codes
    assert coded["task"] == "classification" and coded["target"] == "digit"
    assert coded["tasks"] == {"value": {"task": "regression", "target": "value"},
                              "even": {"task": "classification", "target": "even"}}
    named = infer_config(digits.drop(columns=["digit"]), ["digit_name", "big"]).config  # text classes and a label
    assert named["target"] == "digit_name" and named["tasks"] == {"big": {"task": "classification", "target": "big"}}
    assert infer_config(digits, ["value", "pressure"]).config["task"] == "regression"  # all numbers: one regression
    assert "tasks" not in infer_config(digits, ["value", "pressure"]).config
    assert infer_config(digits, ["even", "big"]).config["task"] == "multilabel"  # all 0/1: multilabel
    digits.drop(columns=["digit_name", "digit"]).to_csv(tmp_path / "m.csv", index=False)
    result = invoke("config", "init", "--data", tmp_path / "m.csv", "--target", "even", "--target", "value",
                    "--out", tmp_path / "c.yaml")
    assert result.exit_code == 0, result.output
    assert "task classification, further tasks value (regression)" in " ".join(result.stdout.split())
    config = yaml.safe_load((tmp_path / "c.yaml").read_text())
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({**config, "train": {"epochs": 1, "progress": False}}))
    trained = invoke("train", tmp_path / "c.yaml", "--train", tmp_path / "m.csv", "--out", tmp_path / "run")
    assert trained.exit_code == 0, trained.output


def test_a_task_asked_for_several_targets_is_kept_and_a_regressed_label_warned(digits):
    inferred = infer_config(digits.drop(columns=["digit_name", "digit"]), ["even", "value"], task="regression")
    assert inferred.config["task"] == "regression" and inferred.config["target"] == ["even", "value"]
    assert "tasks" not in inferred.config
    assert dict((c, w) for c, _, w in inferred.columns)["even"] == (
        "--task regression (inferred: a task per target: classification for 'even', regression for 'value')")
    assert inferred.warnings == ["target column 'even' holds only 0 and 1, a label, but is a regression target "
                                 "(--task regression): it is fit as a number, by squared error, not as a label; "
                                 "leave --task out to learn it as a class"]
    alone = infer_config(digits[["even", "x"]], "even", task="regression").warnings
    assert len(alone) == 1 and alone[0].endswith("to learn it as classes")
    assert not infer_config(digits[["value", "x"]], "value", task="regression").warnings


def test_a_number_that_follows_a_regression_target_almost_exactly_is_kept_and_said_so(digits):
    """The regression analogue of a column separating the classes: |r| >= 0.99 (Pearson, or
    Spearman's on ranks for a monotone rescaling) is kept as a feature, but warned."""
    inferred = infer_config(digits[["digit", "x", "value"]], "value")
    why = {column: reason for column, _, reason in inferred.columns}
    assert "digit" in inferred.config["modalities"]["table"]["columns"] and why["x"] == "numbers"
    assert why["digit"].startswith("numbers; it follows the target 'value' almost exactly (Pearson r = 0.99")
    assert len(inferred.warnings) == 1
    assert inferred.warnings[0].startswith("column 'digit' follows the regression target 'value' almost exactly "
                                           "(Pearson r = 0.99")
    assert "on 60 rows): it is kept as a feature" in inferred.warnings[0]
    rescaled = digits[["value", "x"]].assign(growth=np.exp(digits["value"]))  # monotone, far from a line
    said = " ".join(infer_config(rescaled, "value").warnings)
    assert "column 'growth' follows the regression target 'value' almost exactly (Spearman's rank r = 1 on 60 " \
           "rows)" in said
    rng = np.random.default_rng(1)
    loose = digits[["value", "x"]].assign(reading=digits["value"] + rng.normal(0, 1.5, 60))  # r about 0.9
    assert not infer_config(loose, "value").warnings
    few = infer_config(digits[["digit", "x", "value"]].iloc[:9], "value")  # 9 rows prove little
    assert not few.warnings and dict((c, w) for c, _, w in few.columns)["digit"] == "numbers"


def test_text_labels_joined_by_a_separator_get_a_hint_to_make_one_0_1_column_per_label(tmp_path):
    rng = np.random.default_rng(3)
    n = 40
    tags = [["a;b", "a", "b", "", "b;a"][i % 5] for i in range(n)]
    frame = pd.DataFrame({"x": rng.normal(size=n), "tags": tags, "state": ["ok", "worn"] * (n // 2)})
    frame.to_csv(tmp_path / "m.csv", index=False)
    inferred = infer_config(tmp_path / "m.csv", "tags")
    looks = "its values look like several labels joined by ';' (2 labels: 'a', 'b')"
    assert inferred.config["task"] == "classification"
    assert looks in dict((c, w) for c, _, w in inferred.columns)["tags"]
    assert len(inferred.warnings) == 1 and looks in inferred.warnings[0]
    assert "df = df.join(df['tags'].str.get_dummies(sep=';').add_prefix('tags_'))" in inferred.warnings[0]
    assert "(--target tags_a --target tags_b; a row without a label is 0 in each)" in inferred.warnings[0]
    with pytest.raises(OptionError, match=r"needs 0 or 1 in every row; its values look like several labels joined "
                                          r"by ';'"):
        infer_config(tmp_path / "m.csv", "tags", task="multilabel")
    for cells in (frame["tags"], frame["tags"].str.replace(";", " ; ")):  # spaces around ';': removed first
        warning = infer_config(frame.assign(tags=cells), "tags").warnings[0]
        recipe = warning.split("pandas writes them with df = ")[1].split(", to give as the targets")[0]
        df = eval(recipe, {"df": frame.assign(tags=cells)})  # the line of pandas, as said
        assert {"tags_a", "tags_b"} <= set(df.columns) and df.filter(like="tags_").shape[1] == 2, recipe
        assert infer_config(df.drop(columns="tags"), ["tags_a", "tags_b"]).config["task"] == "multilabel"
    assert not infer_config(tmp_path / "m.csv", "state").warnings  # plain labels: no hint
    many = ["|".join(sorted(rng.choice(list("pqrstuvw"), size=int(rng.integers(1, 4)), replace=False)))
            for _ in range(n)]  # combinations nearly unique to their rows: refused, with the hint
    with pytest.raises(ManifestError, match=r"class labels repeat.*joined by '\|' \(8 labels: 'p', 'q'"):
        infer_config(frame.assign(tags=many), "tags")
    brackets = frame.assign(tags=[["1,000-2,000", "2,000-5,000", "5,000-9,000"][i % 3] for i in range(n)])
    assert not infer_config(brackets, "tags").warnings  # commas between digits join no labels


def test_a_modality_named_for_a_column_with_letters_outside_ascii_is_a_valid_name():
    rng = np.random.default_rng(5)
    frame = pd.DataFrame({"bemerkung_ä": [" ".join(rng.choice(WORDS, size=3)) for _ in range(24)],
                          "y": ["ok", "worn"] * 12})
    inferred = infer_config(frame, "y")  # validated: a name is an ASCII identifier
    assert inferred.config["modalities"]["bemerkung__"]["column"] == "bemerkung_ä"


def test_a_further_tasks_rows_without_a_label_are_not_told_to_be_dropped():
    """A further task's empty cells are rows without its label, which still train the others:
    'which train refuses: drop them' is the main target's caveat only."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=60), "kind": rng.choice(["a", "b"], 60),
                          "size": rng.normal(5, 2, 60).round(3)})
    frame.loc[:9, "size"] = np.nan
    inferred = infer_config(frame, ["kind", "size"])
    assert inferred.config["tasks"] == {"size": {"task": "regression", "target": "size"}}
    said = dict((c, w) for c, _, w in inferred.columns)["size"]
    assert "10 row(s) without one, which train the other tasks and not this one" in said and "drop" not in said
