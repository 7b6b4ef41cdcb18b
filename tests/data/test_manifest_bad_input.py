"""Manifests that cannot be used as given: no rows, repeated column names, file cells that are not
paths, infinite regression targets. Each is a ManifestError naming what and where."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from polymodal.data.manifest import Manifest, read_manifest
from polymodal.data.multitarget import build_targets
from polymodal.data.validation import validate_manifest
from polymodal.errors import ManifestError

from .helpers import make_config

IMAGE = {"image": {"kind": "image", "column": "image"}}


def problems(info: pytest.ExceptionInfo) -> list[str]:
    return info.value.problems


@pytest.mark.parametrize(("suffix", "text"), [(".csv", "image,label\n"), (".tsv", "image\tlabel\n"),
                                              (".csv", "image,label\n\n\n")])
def test_a_manifest_with_only_a_header_has_no_rows(tmp_path, suffix, text):
    path = tmp_path / f"train{suffix}"
    path.write_text(text)
    with pytest.raises(ManifestError) as info:
        read_manifest(path)
    assert problems(info) == [f"train{suffix} has no rows (columns: ['image', 'label']); a manifest needs at least "
                              "one sample"]


def test_an_empty_file_and_other_formats_without_rows(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ManifestError, match="empty.csv has no rows"):
        read_manifest(tmp_path / "empty.csv")
    empty = pd.DataFrame({"image": pd.Series([], dtype=str), "label": pd.Series([], dtype=int)})
    empty.to_parquet(tmp_path / "t.parquet")
    with pytest.raises(ManifestError, match="t.parquet has no rows"):
        read_manifest(tmp_path / "t.parquet")
    (tmp_path / "t.jsonl").write_text("")
    with pytest.raises(ManifestError, match="t.jsonl has no rows"):
        read_manifest(tmp_path / "t.jsonl")


def test_an_empty_dataframe_has_no_rows():
    with pytest.raises(ManifestError, match=r"DataFrame has no rows \(columns: \['image', 'y'\]\)"):
        read_manifest(pd.DataFrame({"image": [], "y": []}))
    with pytest.raises(ManifestError, match=r"DataFrame has no rows \(columns: \[\]\)"):
        read_manifest(pd.DataFrame())


def test_validating_a_manifest_without_rows_says_so(tmp_path):
    empty = Manifest(pd.DataFrame({"image": [], "y": []}), tmp_path, "train.csv", 2)
    with pytest.raises(ManifestError, match="train.csv has no rows"):
        validate_manifest(empty, make_config(IMAGE))


@pytest.mark.parametrize("sep", [",", "\t"])
def test_repeated_column_names_are_refused_not_renamed(tmp_path, sep):
    path = tmp_path / ("train.csv" if sep == "," else "train.tsv")
    path.write_text(sep.join(["image", "audio", "image", "y", "y", "y"]) + "\n" + sep.join("abcdef") + "\n")
    with pytest.raises(ManifestError) as info:
        read_manifest(path)
    (message,) = problems(info)
    assert message.startswith(f"{path.name}: column names must be distinct; repeated: 'image' (2 times), 'y' (3 times)")
    assert "image.1" not in message


def test_repeated_column_names_in_a_dataframe_are_refused():
    frame = pd.DataFrame([["a.png", "b.png", 0]], columns=["image", "image", "y"])
    with pytest.raises(ManifestError, match=r"repeated: 'image' \(2 times\)"):
        read_manifest(frame)


def test_a_header_that_only_looks_like_a_renamed_column_is_fine(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("image,image.1,y\na.png,b.png,0\n")
    assert list(read_manifest(path).frame.columns) == ["image", "image.1", "y"]


def test_file_cells_that_are_not_paths_name_their_type_and_value(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    frame = pd.DataFrame({"image": ["a.png", 1, b"a.png", np.arange(3), None], "y": [0, 1, 0, 1, 0]})
    manifest = read_manifest(frame, root=tmp_path)
    with pytest.raises(ManifestError) as info:
        validate_manifest(manifest, make_config(IMAGE))
    assert problems(info) == [
        "DataFrame row 1, column 'image': expected a file path (string), got int 1",
        "DataFrame row 2, column 'image': expected a file path (string), got bytes b'a.png' (a file modality reads "
        "files: write in-memory images, arrays or bytes to files, e.g. with PIL's Image.save or np.save, and put "
        "their paths in the column)",  # said once, at the first value that is not a number
        "DataFrame row 3, column 'image': expected a file path (string), got ndarray array([0, 1, 2])",
        "DataFrame: no modality present in row 4 (data.on_error: skip or missing leaves such rows out and lists them)",
    ]


def test_in_memory_audio_cells_are_told_how_to_be_given_as_files(tmp_path):
    """A (samples, sample_rate) pair, which the runtime takes, got the images' advice (PIL's Image.save)."""
    samples = np.zeros(800, np.float32)
    frame = pd.DataFrame({"clip": [(samples, 8000), samples], "y": [0, 1]})
    config = make_config({"clip": {"kind": "audio", "column": "clip", "preprocess": {"sample_rate": 8000}}})
    with pytest.raises(ManifestError) as info:
        validate_manifest(read_manifest(frame, root=tmp_path), config)
    first, second = problems(info)
    assert first.startswith("DataFrame row 0, column 'clip': expected a file path (string), got tuple (array([0., ")
    assert first.endswith("(an audio modality reads files: write a (samples, sample_rate) pair to a WAV file with "
                          "soundfile.write('clip.wav', samples, sample_rate), resampled as any file is, or samples "
                          "already at the model's 8,000 Hz with np.save('clip.npy', samples), and put their paths in "
                          "the column; the exported model's Runtime.predict takes (samples, sample_rate) as it is)")
    assert second.startswith("DataFrame row 1, column 'clip': expected a file path (string), got ndarray")
    assert "soundfile" not in second  # said once


def test_a_numeric_file_column_is_reported_even_without_checking_files(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("image,y\n1,0\n2,1\n")
    with pytest.raises(ManifestError) as info:
        validate_manifest(read_manifest(path), make_config(IMAGE), check_files=False)
    assert problems(info) == ["train.csv row 0 (line 2), column 'image': expected a file path (string), got int 1",
                              "train.csv row 1 (line 3), column 'image': expected a file path (string), got int 2"]


def test_path_objects_are_file_paths(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    manifest = read_manifest(pd.DataFrame({"image": [tmp_path / "a.png"], "y": [0]}))
    validate_manifest(manifest, make_config(IMAGE))  # no error


@pytest.mark.parametrize("task", ["regression", "multilabel"])
def test_infinite_targets_are_refused_with_their_rows(tmp_path, task):
    (tmp_path / "a.png").write_bytes(b"")
    path = tmp_path / "train.csv"
    path.write_text("image,y\na.png,1\na.png,inf\na.png,0\na.png,-inf\n")
    with pytest.raises(ManifestError) as info:
        validate_manifest(read_manifest(path), make_config(IMAGE, task=task))
    assert problems(info) == [f"target column 'y' must hold finite numbers for task '{task}'; rows 1 (line 3), "
                              "3 (line 5) hold inf, -inf"]


def test_infinite_targets_of_a_further_task_are_refused(tmp_path):
    config = make_config(IMAGE, task="classification", tasks={"size": {"task": "regression", "target": "size"}})
    frame = pd.DataFrame({"image": ["a.png"] * 3, "y": [0, 1, 0], "size": [1.0, np.inf, 2.0]})
    with pytest.raises(ManifestError) as info:
        build_targets(config).fit(read_manifest(frame))
    assert problems(info) == ["target column 'size' of tasks.size must hold finite numbers for task 'regression'; "
                              "row 1 holds inf"]


def test_further_task_target_problems_name_the_rows_of_the_file(tmp_path):
    """Checked at fit time on the rows a validation split left for training: the message names the
    row as the manifest file numbers it."""
    config = make_config(IMAGE, task="classification", tasks={"size": {"task": "regression", "target": "size"}})
    frame = pd.DataFrame({"image": ["a.png"] * 6, "y": [0, 1, 0, 1, 0, 1],
                          "size": [1.0, 2.0, 3.0, "big", 5.0, np.inf]})
    kept = read_manifest(frame).subset(np.array([0, 3, 4, 5]))
    with pytest.raises(ManifestError) as info:
        build_targets(config).fit(kept)
    assert problems(info) == [
        "target column 'size' of tasks.size must be numeric for task 'regression'; row 3 holds 'big'",
        "target column 'size' of tasks.size must hold finite numbers for task 'regression'; row 5 holds inf"]


def test_a_folder_is_a_video_cell_but_not_an_image_cell(tmp_path):
    (tmp_path / "clip").mkdir()
    frame = pd.DataFrame({"v": ["clip"], "img": ["clip"], "y": ["a"]})
    manifest = read_manifest(frame, root=tmp_path)
    config = make_config({"video": {"kind": "video", "column": "v"}, "image": {"kind": "image", "column": "img"}})
    with pytest.raises(ManifestError) as info:
        validate_manifest(manifest, config, require_target=True)
    assert problems(info) == [f"DataFrame row 0, column 'img': a folder, not a file: {tmp_path / 'clip'}"]


def test_a_video_and_its_sound_track_read_from_one_column_list_its_missing_files_once(tmp_path):
    """The README's way of reading a video's sound: two modalities on one column; a file that is not
    there is one problem, not one per modality."""
    frame = pd.DataFrame({"clip": ["a.mp4", "b.mp4", 7], "y": ["a", "b", "a"]})
    config = make_config({"video": {"kind": "video", "column": "clip"}, "sound": {"kind": "audio", "column": "clip"}})
    with pytest.raises(ManifestError) as info:
        validate_manifest(read_manifest(frame, root=tmp_path), config, require_target=True)
    said = problems(info)
    assert [p.split(":")[0] for p in said] == ["DataFrame row 2, column 'clip'", "DataFrame row 0, column 'clip'",
                                                "DataFrame row 1, column 'clip'"], said
    assert "(3 problem(s))" in str(info.value)


def test_a_url_and_a_windows_path_say_why_they_name_no_file(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "0013.png").write_bytes(b"")
    frame = pd.DataFrame({"image": ["https://example.com/x.png", "img\\0013.png", "img\\gone.png"], "y": ["a"] * 3})
    with pytest.raises(ManifestError) as info:
        validate_manifest(read_manifest(frame, root=tmp_path), make_config(IMAGE))
    url, windows, gone = problems(info)[:3]
    assert url.startswith("DataFrame row 0, column 'image': file not found: a URL, and polymodal reads local files "
                          "only (no download at run time)")
    assert windows == (f"DataFrame row 1, column 'image': file not found: a Windows path ('\\' between folders), and "
                       f"{tmp_path / 'img' / '0013.png'} exists; write / between folders: {tmp_path / 'img'}\\0013.png")
    assert gone == f"DataFrame row 2, column 'image': file not found: {tmp_path / 'img'}\\gone.png"  # nothing to add


def test_a_folder_given_as_the_manifest_is_named_as_a_folder(tmp_path):
    with pytest.raises(ManifestError, match="is a folder, not a manifest file"):
        read_manifest(tmp_path)


def test_blank_column_names_from_a_spreadsheet_are_not_repeats(tmp_path):
    (tmp_path / "m.csv").write_text("x,y,,\n1,a,,\n2,b,,\n")  # a spreadsheet's stray empty columns
    manifest = read_manifest(tmp_path / "m.csv")
    assert list(manifest.frame.columns[:2]) == ["x", "y"] and len(manifest) == 2


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_trailing_delimiters_after_every_row_are_dropped_not_shifted_into_an_index(tmp_path, suffix):
    sep = "\t" if suffix == ".tsv" else ","
    path = tmp_path / f"m{suffix}"
    path.write_text(sep.join(["image", "audio", "label"]) + "\n" + "".join(
        sep.join([f"i{k}.png", f"a{k}.wav", str(k % 2)]) + sep + "\n" for k in range(3)), encoding="utf-8")
    frame = read_manifest(path, text_columns=["image", "audio"], label_columns=["label"]).frame
    assert list(frame.columns) == ["image", "audio", "label"]  # pandas alone made 'image' the index
    assert frame["image"].tolist() == ["i0.png", "i1.png", "i2.png"] and frame["label"].tolist() == [0, 1, 0]


def test_a_semicolon_csv_from_a_decimal_comma_spreadsheet_is_read_by_its_columns(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("\ufeffimage;weight;note;label\ni0.png;38,2;a, b;cat\ni1.png;;c;dog\n", encoding="utf-8")
    frame = read_manifest(path, text_columns=["image"], label_columns=["label"]).frame
    assert list(frame.columns) == ["image", "weight", "note", "label"]
    assert frame["weight"].tolist()[0] == 38.2 and np.isnan(frame["weight"].tolist()[1])
    assert frame["note"].tolist() == ["a, b", "c"] and frame["label"].tolist() == ["cat", "dog"]
    path.write_text("image,note\ni0.png,a; b\n", encoding="utf-8")  # a comma in the header: commas
    assert read_manifest(path).frame["note"].tolist() == ["a; b"]


def test_a_row_with_a_value_past_the_header_is_refused_with_its_line(tmp_path):
    path = tmp_path / "m.csv"
    # the first data row, longer than the header, made pandas guess an index (a quoted line break counts)
    path.write_text('image,audio,label\n"i\n0.png",a0.wav,0,,oops\ni1.png,a1.wav,1,,\n', encoding="utf-8")
    with pytest.raises(ManifestError, match=r"m.csv line 3 has 5 fields, but the header names 3 columns "
                                            r"\['image', 'audio', 'label'\]: fields \['', 'oops'\] belong to no column"):
        read_manifest(path)


def test_paths_written_relative_to_the_working_folder_get_advice(tmp_path, monkeypatch):
    (tmp_path / "data" / "img").mkdir(parents=True)
    (tmp_path / "data" / "img" / "a.png").write_bytes(b"x")
    (tmp_path / "lists").mkdir()
    path = tmp_path / "lists" / "m.csv"
    pd.DataFrame({"image": ["data/img/a.png"], "y": ["cat"]}).to_csv(path, index=False)
    monkeypatch.chdir(tmp_path)
    config = make_config({"image": {"kind": "image", "column": "image"}})
    with pytest.raises(ManifestError) as info:
        validate_manifest(read_manifest(path), config)
    assert "(1 problem(s))" in str(info.value)  # the advice is not counted as a problem
    assert info.value.problems[0] == (  # the advice first, before the files it explains
        f"column 'image': relative paths resolve against the manifest's folder {tmp_path / 'lists'}, but "
        f"'data/img/a.png' is a file relative to the working folder {tmp_path}: write the paths relative to the "
        "manifest's folder, or absolute")


def test_a_dataframe_read_from_a_csv_elsewhere_gets_advice_on_its_root(tmp_path, monkeypatch):
    """``pred.predict(pd.read_csv("data/test.csv"))``: the frame's relative paths are read from the
    working folder, not the CSV's."""
    (tmp_path / "data" / "img").mkdir(parents=True)
    (tmp_path / "data" / "img" / "a.png").write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    frame = pd.DataFrame({"image": ["img/a.png"], "y": ["cat"]})  # relative to data/, where the CSV was
    config = make_config({"image": {"kind": "image", "column": "image"}})
    with pytest.raises(ManifestError) as info:
        validate_manifest(read_manifest(frame), config)
    assert info.value.problems[1].endswith(f"column 'image': file not found: {tmp_path / 'img' / 'a.png'}")
    assert info.value.problems[0].startswith(f"a DataFrame's relative paths resolve against {tmp_path} ")
    assert "read_manifest(frame, root=ITS_FOLDER)" in info.value.problems[0]
    validate_manifest(read_manifest(frame, root=tmp_path / "data"), config)  # the advice works


def test_the_advice_on_a_dataframe_root_comes_first_once_with_a_few_of_the_files_it_explains(tmp_path, monkeypatch):
    """Predicting a frame of 60 rows and 2 file columns listed 42 missing files before the advice
    that explained them all."""
    monkeypatch.chdir(tmp_path)
    frame = pd.DataFrame({"image": [f"images/{i}.png" for i in range(60)], "audio": [f"audio/{i}.wav" for i in range(60)],
                          "y": ["cat"] * 60})
    config = make_config({"image": {"kind": "image", "column": "image"}, "audio": {"kind": "audio", "column": "audio"}})
    with pytest.raises(ManifestError) as info:
        validate_manifest(read_manifest(frame), config)
    problems = info.value.problems
    assert problems[0].startswith(f"a DataFrame's relative paths resolve against {tmp_path} (the working folder)")
    assert sum("a DataFrame's relative paths" in p for p in problems) == 1  # one piece of advice for both columns
    assert len(problems) == 9 and problems[4] == "column 'audio': 57 more missing files"
    assert problems[8] == "column 'image': 57 more missing files"
    assert "(120 problem(s))" in str(info.value)  # every missing file counted; the advice is none


def test_trailing_delimiters_after_an_integer_id_column_are_dropped_too(tmp_path):
    """pandas turns evenly stepped integer ids it took for an index into a RangeIndex: the rows'
    length, not the index type, tells."""
    path = tmp_path / "m.csv"
    path.write_text("id,image,label\n1,a.png,x,\n2,b.png,y,\n3,c.png,z,\n", encoding="utf-8")
    frame = read_manifest(path, text_columns=["image"]).frame
    assert frame.to_dict("list") == {"id": [1, 2, 3], "image": ["a.png", "b.png", "c.png"], "label": ["x", "y", "z"]}


LABS = {"labs": {"kind": "tabular", "columns": ["temp", "crp"], "categorical": ["sex"]}}


def test_every_bad_number_of_a_tabular_modality_is_named_at_once(tmp_path):
    path = tmp_path / "m.csv"
    pd.DataFrame({"temp": ["37.1", "38,2", "36.5", "", "NA", "39,0"], "crp": [1, 2, 3, ">100", 5, "inf"],
                  "sex": list("MFMFMF"), "y": [0, 1] * 3}).to_csv(path, index=False)
    with pytest.raises(ManifestError) as info:
        validate_manifest(read_manifest(path), make_config(LABS))
    assert problems(info) == [
        "tabular modality 'labs', column 'temp' must be numeric: rows 1 (line 3), 5 (line 7) hold '38,2', '39,0' (a "
        "decimal comma? write 38.2 with a decimal point, or write the CSV with ';' between fields, which polymodal "
        "reads with decimal commas; data.on_error: missing reads such cells as missing)",
        "tabular modality 'labs', column 'crp' must be numeric: row 3 (line 5) holds '>100'",
        "tabular modality 'labs', column 'crp' holds an infinite value: row 5 (line 7) holds 'inf'"]


def test_a_text_column_read_as_numbers_is_advised_to_be_categorical(tmp_path):
    frame = pd.DataFrame({"temp": [37.0, 38.0, 36.0], "crp": ["M", "F", 3], "sex": list("MFM"), "y": [0, 1, 0]})
    with pytest.raises(ManifestError, match=r"list 'crp' under the modality's 'categorical'"):
        validate_manifest(read_manifest(frame), make_config(LABS))


def test_bad_numbers_are_left_to_encoding_when_files_are_skipped(tmp_path):
    frame = pd.DataFrame({"temp": ["x", "38"], "crp": [1, 2], "sex": ["M", "F"], "y": [0, 1]})
    validate_manifest(read_manifest(frame), make_config(LABS, data={"on_error": "missing"}))  # no error
    frame.loc[0, "temp"] = "37"
    validate_manifest(read_manifest(frame), make_config(LABS))  # numbers in text and as numbers: no error


def test_a_file_column_that_holds_text_is_named_as_likely_the_wrong_column(tmp_path):
    frame = pd.DataFrame({"image": ["no focal consolidation. heart size normal", "comparison with prior."],
                          "y": [0, 1]})
    with pytest.raises(ManifestError) as info:
        validate_manifest(read_manifest(frame, root=tmp_path), make_config(IMAGE))
    assert problems(info)[0] == ("column 'image' names no file that exists, and its cells do not look like file "
                                 "names (e.g. 'no focal consolidation. heart size normal'): is it the column "
                                 "image modality 'image' should read?")  # the advice first
    frame["image"] = ["a.png", "b.png"]  # file names, missing: no such advice
    with pytest.raises(ManifestError) as info:
        validate_manifest(read_manifest(frame, root=tmp_path), make_config(IMAGE))
    assert not any("do not look like file names" in p for p in problems(info))


def test_a_misspelt_column_gets_a_suggestion_case_first(tmp_path):
    frame = pd.DataFrame({"temp": [37.0], "crp": [1.0], "sex": ["M"], "label": [0]})
    config = make_config({"labs": {"kind": "tabular", "columns": ["temp", "CRP"], "categorical": ["sexx"]}},
                         target="lable")
    with pytest.raises(ManifestError) as info:
        validate_manifest(read_manifest(frame), config)
    assert problems(info) == [
        "modality 'labs' reads column(s) 'CRP' (did you mean 'crp'?), 'sexx' (did you mean 'sex'?), not in "
        "DataFrame (columns: ['temp', 'crp', 'sex', 'label'])",
        "target column 'lable' is not in DataFrame (did you mean 'label'?) (columns: ['temp', 'crp', 'sex', 'label'])"]


def test_did_you_mean_stays_quiet_without_a_likely_name():
    from polymodal.utils.suggest import did_you_mean

    assert did_you_mean("image", ["label", "audio"]) == ""
    assert did_you_mean("Image", ["image", "images"]) == " (did you mean 'image'?)"  # case before spelling
    assert did_you_mean("temp", ["crp", "temperature"]) == " (did you mean 'temperature'?)"  # an abbreviation
    assert did_you_mean("temp", ["temperature", "temporal_site"]) == ""  # two it may abbreviate: neither named
    assert did_you_mean("te", ["temperature"]) == ""  # too short to say


def test_dates_and_numbers_past_float_range_in_a_numeric_column_are_named_not_a_crash():
    frame = pd.DataFrame({"temp": [37.0, 10**400, 36.0], "crp": pd.to_datetime(["2020-01-01", None, "2020-01-03"]),
                          "sex": list("MFM"), "y": [0, 1, 0]})
    with pytest.raises(ManifestError) as info:
        validate_manifest(read_manifest(frame), make_config(LABS))
    assert problems(info)[0].startswith("tabular modality 'labs', column 'temp' holds a number out of range: row 1 holds")
    assert problems(info)[1].startswith("tabular modality 'labs', column 'crp' must be numeric: rows 0, 1, 2 hold "
                                        "Timestamp('2020-01-01")  # dates are no numbers (NaT neither, as encoded)
    assert len(problems(info)) == 2
