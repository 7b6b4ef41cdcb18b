"""Manifest reading (CSV, TSV, Parquet, JSONL, DataFrame) and validation."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from polymodal.data.cells import is_empty
from polymodal.data.encode import manifest_cells
from polymodal.data.manifest import read_manifest
from polymodal.data.validation import validate_manifest
from polymodal.errors import ManifestError

from .helpers import make_config

ROWS = [
    {"image": "img/a.png", "text": "a cat", "age": 3.0, "y": "cat"},
    {"image": "", "text": "a dog", "age": None, "y": "dog"},
    {"image": "img/c.png", "text": None, "age": 5.0, "y": "cat"},
]
IMAGE_TEXT = {"image": {"kind": "image", "column": "image"}, "text": {"kind": "text", "column": "text"}}


def write_manifest(folder, fmt: str, rows=ROWS) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(rows)
    path = folder / f"train.{fmt}"
    if fmt in ("csv", "tsv"):
        frame.to_csv(path, index=False, sep="\t" if fmt == "tsv" else ",")
    elif fmt == "parquet":
        frame.to_parquet(path)
    else:
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("fmt", ["csv", "tsv", "parquet", "jsonl"])
def test_every_format_reads_the_same_cells(tmp_path, fmt):
    manifest = read_manifest(write_manifest(tmp_path / "m", fmt))
    assert len(manifest) == 3
    assert manifest.name == f"train.{fmt}"
    assert manifest.root == (tmp_path / "m").resolve()
    frame = manifest.frame
    assert list(frame.columns) == ["image", "text", "age", "y"]
    assert [is_empty(v) for v in frame["image"]] == [False, True, False]
    assert [is_empty(v) for v in frame["text"]] == [False, False, True]
    assert [is_empty(v) for v in frame["age"]] == [False, True, False]
    assert frame["y"].tolist() == ["cat", "dog", "cat"]
    assert frame["age"].iloc[2] == 5.0


def test_dataframe_manifest_and_its_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    frame = pd.DataFrame(ROWS, index=[10, 20, 30])
    default = read_manifest(frame)
    assert default.name == "DataFrame"
    assert default.root == tmp_path.resolve()
    assert list(default.frame.index) == [0, 1, 2]
    explicit = read_manifest(frame, root=tmp_path / "elsewhere")
    assert explicit.resolve("img/a.png") == str((tmp_path / "elsewhere").resolve() / "img" / "a.png")


def test_relative_paths_resolve_against_the_manifest_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    manifest = read_manifest(write_manifest(tmp_path / "data" / "split", "csv"))
    folder = (tmp_path / "data" / "split").resolve()
    cells = manifest_cells(manifest, make_config(IMAGE_TEXT).modalities["image"], file_based=True)
    assert list(cells) == [str(folder / "img" / "a.png"), None, str(folder / "img" / "c.png")]
    assert manifest.resolve("/abs/x.png") == "/abs/x.png"


@pytest.mark.parametrize("root", ["/data/set", "/", "rel/folder"])
def test_cells_resolve_in_blocks_as_one_by_one(root, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    manifest = read_manifest(pd.DataFrame(ROWS), root=root)
    manifest.root = Path(root)  # as given, relative too (read_manifest makes it absolute)
    values = ["a/b.png", "x.npy#3", "/abs/p", "~/h.wav", "~", "", "  ", "\t", None, float("nan"), pd.NA, " lead",
              "./rel", "../up", "a//b", "é.wav"]
    expected = [None if is_empty(v) else os.path.join(root, os.path.expanduser(v)) for v in values]
    assert manifest.resolve_all(values) == expected == [manifest.resolve(v) for v in values]
    assert expected[3] == f"{tmp_path}/h.wav" and expected[0] == os.path.join(root, "a/b.png")


@pytest.mark.parametrize("value", [None, float("nan"), pd.NA, "", "   ", "\t"])
def test_empty_cells_mean_missing(value):
    assert is_empty(value)


@pytest.mark.parametrize("value", [0, 0.0, "0", "a", False])
def test_values_are_not_missing(value):
    assert not is_empty(value)


def test_inline_cells_of_missing_rows_are_none(tmp_path):
    manifest = read_manifest(write_manifest(tmp_path, "csv"))
    cells = manifest_cells(manifest, make_config(IMAGE_TEXT).modalities["text"], file_based=False)
    assert list(cells) == ["a cat", "a dog", None]


def test_cells_read_just_the_rows_asked_for_and_views_keep_manifest_rows(tmp_path):
    manifest = read_manifest(write_manifest(tmp_path, "csv"))
    cells = manifest_cells(manifest, make_config(IMAGE_TEXT).modalities["text"], file_based=False)
    assert len(cells) == 3 and cells[1] == "a dog" and cells[2] is None
    assert cells[np.array([2, 0])] == [None, "a cat"]
    assert cells[1:] == ["a dog", None]
    assert cells[np.array([False, True, True])] == ["a dog", None]  # a mask selects, it is not rows 0 and 1
    assert cells.present().tolist() == [True, True, False]
    view = cells.subset(np.array([2, 1]))
    assert len(view) == 2 and list(view) == [None, "a dog"] and view[1] == "a dog"
    assert view.present().tolist() == [False, True]
    assert view.subset(np.array([1]))[0] == "a dog"  # a view of a view still maps to manifest row 1


def test_csv_rows_know_their_file_line(tmp_path):
    manifest = read_manifest(write_manifest(tmp_path, "csv"))
    assert manifest.where(1) == "train.csv row 1 (line 3)"
    assert read_manifest(write_manifest(tmp_path, "parquet")).where(1) == "train.parquet row 1"


def test_jsonl_keeps_json_strings_as_strings(tmp_path):
    rows = [{"code": "007", "text": "10", "y": 1}, {"code": "010", "text": "20", "y": 0}]
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    frame = read_manifest(path).frame
    assert frame["code"].tolist() == ["007", "010"]
    assert frame["text"].tolist() == ["10", "20"]


def test_csv_class_labels_keep_their_text_only_where_numbers_would_change_them(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("code,digit,score,other\n01,7,7.50,01\n10,8,,02\n007,9,8,03\n", encoding="utf-8")
    frame = read_manifest(path, label_columns=["code", "digit", "score"]).frame
    assert frame["code"].tolist() == ["01", "10", "007"]  # codes: a number would lose their zeros
    assert frame["digit"].tolist() == [7, 8, 9] and pd.api.types.is_integer_dtype(frame["digit"])
    assert frame["score"].iloc[[0, 2]].tolist() == [7.5, 8.0]  # 7.50 and 7.5 are one label
    assert frame["other"].tolist() == [1, 2, 3]  # not a label column: pandas' guess stands


def test_a_large_csv_column_pandas_types_in_chunks_is_read_as_text_and_labels(tmp_path):
    """pandas reads a large CSV in chunks: a column of numbers with a few codes further down comes
    out mixed (ints, then strings); modality and label columns are read as text all the same."""
    n = 300_000
    codes = ["12"] * n
    codes[-3:] = ["A3", "007", "A3"]
    pd.DataFrame({"code": codes, "y": codes}).to_csv(tmp_path / "m.csv", index=False)
    assert pd.read_csv(tmp_path / "m.csv")["code"].map(type).nunique() == 2  # pandas' own reading: mixed
    frame = read_manifest(tmp_path / "m.csv", text_columns=["code"], label_columns=["y"]).frame
    assert frame["code"].iloc[[0, -2]].tolist() == ["12", "007"] and frame["y"].iloc[[0, -2]].tolist() == ["12", "007"]


def test_classes_of_a_csv_label_column_of_codes_are_the_codes(tmp_path):
    from polymodal.data.targets import TargetEncoder

    path = tmp_path / "m.csv"
    path.write_text("y\n01\n02\n1\n", encoding="utf-8")
    encoder = TargetEncoder("classification", ["y"]).fit(read_manifest(path, label_columns=["y"]))
    assert sorted(encoder.classes) == ["01", "02", "1"]  # three classes, not two


def test_json_array_of_records_reads_one_row_per_record(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps([{"text": "a", "y": 1}, {"text": "b", "y": 0}]), encoding="utf-8")
    frame = read_manifest(path).frame
    assert list(frame.columns) == ["text", "y"]
    assert frame["text"].tolist() == ["a", "b"]


def test_csv_words_like_none_are_text_not_missing(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("text,y\nNA,1\nNone,0\nnull,1\n,0\n", encoding="utf-8")
    frame = read_manifest(path).frame
    assert [is_empty(v) for v in frame["text"]] == [False, False, False, True]


# --- read errors -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("m.xlsx", b"whatever", "unsupported manifest extension '.xlsx'"),
        ("m.parquet", b"this is not parquet", "cannot parse m.parquet"),
        ("m.jsonl", b"{\"a\": 1}\n{not json\n", "m.jsonl line 2: not a valid JSON record: Expecting property name "
                                                 "enclosed in double quotes at column 2"),
        ("m.csv", b"a,b\n1,2\n1,2,3,4\n", "cannot parse m.csv"),
    ],
)
def test_unreadable_manifests(tmp_path, name, content, fragment):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ManifestError, match=fragment) as info:
        read_manifest(path)
    assert info.value.source == str(path)


def test_a_manifest_that_is_not_utf8_is_named_with_its_line(tmp_path):
    """The parser's byte position counts within a chunk it read; the message names the line."""
    path = tmp_path / "m.csv"
    path.write_bytes("image,label\na.png,0\nb.png,m\u00fcde\n".encode("latin-1"))
    with pytest.raises(ManifestError) as info:
        read_manifest(path)
    assert info.value.problems == ["m.csv is not UTF-8: line 3 holds byte 0xfc (byte 8 of the line), which is not "
                                   "UTF-8 text; re-save it as UTF-8"]


@pytest.mark.parametrize(("name", "text", "problem"), [
    ("m.jsonl", '{"a": 1}\n\n{"a": 2}\n{"a": "unclosed}\n{"a": 4}\n',
     "m.jsonl line 4: not a valid JSON record: Unterminated string starting at column 7 (a JSON-lines manifest "
     "holds one JSON object per line)"),
    ("m.json", '[\n  {"a": 1},\n  {"a": 2,,}\n]\n',
     "m.json line 3: not valid JSON: Expecting property name enclosed in double quotes at column 11"),
])
def test_a_broken_json_record_is_named_by_its_line(tmp_path, name, text, problem):
    (tmp_path / name).write_text(text)
    with pytest.raises(ManifestError) as info:
        read_manifest(tmp_path / name)
    assert info.value.problems == [problem]


def test_missing_manifest_file(tmp_path):
    with pytest.raises(ManifestError, match="manifest file not found"):
        read_manifest(tmp_path / "nope.csv")


# --- validation ----------------------------------------------------------------------------------
def touch(folder, *names):
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"")


def problems_of(manifest, config, **kwargs) -> list[str]:
    with pytest.raises(ManifestError) as info:
        validate_manifest(manifest, config, **kwargs)
    for line in info.value.problems:
        assert line in str(info.value)
    return info.value.problems


def test_a_good_manifest_validates(tmp_path):
    touch(tmp_path, "img/a.png", "img/c.png")
    validate_manifest(read_manifest(write_manifest(tmp_path, "csv")), make_config(IMAGE_TEXT))


def test_missing_columns_and_target_problems_are_reported_together(tmp_path):
    config = make_config({**IMAGE_TEXT, "audio": {"kind": "audio", "column": "wav"}}, task="regression")
    rows = [{"image": "", "text": "a", "y": 1.5}, {"image": "", "text": "b", "y": None},
            {"image": "", "text": "c", "y": "heavy"}]
    problems = problems_of(read_manifest(pd.DataFrame(rows)), config, check_files=False)
    assert len(problems) == 3
    assert "modality 'audio' reads column(s) 'wav'" in problems[0]
    assert problems[1].startswith("target column 'y' is empty in row 1 (evaluating")  # a DataFrame: rows without lines
    assert problems[2] == "target column 'y' must be numeric for task 'regression'; row 2 holds 'heavy'"


def test_missing_files_are_listed_with_rows_alongside_target_problems(tmp_path):
    touch(tmp_path, "img/a.png")
    rows = [{"image": "img/a.png", "text": "a", "y": 1.0}, {"image": "img/gone.png", "text": "b", "y": None},
            {"image": "img/lost.png", "text": "c", "y": "x"}]
    config = make_config(IMAGE_TEXT, task="regression")
    problems = problems_of(read_manifest(write_manifest(tmp_path, "csv", rows)), config)
    joined = "\n".join(problems)
    assert f"train.csv row 1 (line 3), column 'image': file not found: {tmp_path.resolve() / 'img/gone.png'}" in joined
    assert "train.csv row 2 (line 4), column 'image': file not found" in joined
    assert "target column 'y' is empty in row 1 (line 3)" in joined
    assert "target column 'y' must be numeric for task 'regression'; row 2 (line 4) holds 'x'" in joined
    assert len(problems) == 4


def test_rows_without_any_modality_are_reported_with_target_problems(tmp_path):
    rows = [{"image": None, "text": "a", "y": "cat"}, {"image": None, "text": " ", "y": None},
            {"image": None, "text": None, "y": "dog"}]
    problems = problems_of(read_manifest(pd.DataFrame(rows)), make_config(IMAGE_TEXT), training=True)
    assert problems == ["DataFrame: no modality present in rows 1, 2 (data.on_error: skip or missing leaves such rows "
                        "out and lists them)", "target column 'y' is empty in row 1 (every row needs one here: drop "
                        "the others, e.g. df.dropna(subset=['y']); a semi-supervised fit learns from them as "
                        "transfer.unlabeled rows)"]


def test_missing_files_and_rows_without_modality_are_reported_together(tmp_path):
    rows = [{"image": "img/gone.png", "text": "a", "y": "cat"}, {"image": None, "text": None, "y": "dog"}]
    problems = problems_of(read_manifest(write_manifest(tmp_path, "csv", rows)), make_config(IMAGE_TEXT))
    joined = "\n".join(problems)
    assert "file not found" in joined
    assert "train.csv: no modality present in row 1 (line 3)" in joined


def test_many_missing_files_are_capped_with_a_count(tmp_path):
    rows = [{"image": f"img/{i}.png", "text": "t", "y": "a"} for i in range(25)]
    problems = problems_of(read_manifest(pd.DataFrame(rows), root=tmp_path), make_config(IMAGE_TEXT))
    assert sum("file not found" in p for p in problems) == 20
    assert problems[-1] == "column 'image': 5 more missing files"
    with pytest.raises(ManifestError, match=r"\(25 problem\(s\)\)"):  # every missing file counted, not the lines
        validate_manifest(read_manifest(pd.DataFrame(rows), root=tmp_path), make_config(IMAGE_TEXT))


def test_multilabel_targets_must_be_zero_or_one():
    config = make_config(IMAGE_TEXT, task="multilabel", target=["a", "b"])
    rows = [{"image": None, "text": "t", "a": 1, "b": 0}, {"image": None, "text": "u", "a": 2, "b": 1}]
    problems = problems_of(read_manifest(pd.DataFrame(rows)), config)
    assert problems == ["target column 'a' must hold 0 or 1 for task 'multilabel'; row 1 holds 2"]


def test_multilabel_values_other_than_0_or_1_are_named_with_their_rows_lines_and_values(tmp_path):
    """As a file problem is named: the rows with their lines, and the values found there; 0.0 and
    1.0 (a column with a blank is read as floats) are 0 and 1, and a non-number is named once."""
    config = make_config(IMAGE_TEXT, task="multilabel", target=["a", "b"])
    path = tmp_path / "train.csv"
    path.write_text("image,text,a,b\n,t,0,1\n,t,2,0.0\n,t,0.5,1.0\n,t,-1,1\n,t,1,0\n,t,yes,1\n")
    problems = problems_of(read_manifest(path), config)
    assert problems == [
        "target column 'a' must be numeric for task 'multilabel'; row 5 (line 7) holds 'yes'",
        "target column 'a' must hold 0 or 1 for task 'multilabel'; rows 1 (line 3), 2 (line 4), 3 (line 5) hold 2, "
        "0.5, -1"]


def test_target_problems_of_a_subset_name_the_rows_and_lines_of_the_file(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("image,text,y\n,t,1.5\n,t,\n,t,2\n,t,heavy\n,t,\n")
    kept = read_manifest(path).subset(np.array([1, 3, 4]))
    problems = problems_of(kept, make_config(IMAGE_TEXT, task="regression"), training=True)
    assert problems == ["target column 'y' is empty in rows 1 (line 3), 4 (line 6) (every row needs one here: drop the "
                        "others, e.g. df.dropna(subset=['y']); a semi-supervised fit learns from them as "
                        "transfer.unlabeled rows)",
                        "target column 'y' must be numeric for task 'regression'; row 3 (line 5) holds 'heavy'"]


def test_empty_targets_of_rows_to_evaluate_are_advised_as_evaluation_rows_not_training_ones(tmp_path):
    """An evaluation (or a fit's test rows) scores every row against its label: a row without one
    is left out or predicted instead; learning from it semi-supervised is a fit's advice."""
    path = tmp_path / "test.csv"
    path.write_text("image,text,y\n,t,1.5\n,t,\n,t,2\n,t,\n")
    problems = problems_of(read_manifest(path), make_config(IMAGE_TEXT, task="regression"))
    assert problems == ["target column 'y' is empty in rows 1 (line 3), 3 (line 5) (evaluating scores each row's "
                        "prediction against its label, so every row needs one: remove those rows (e.g. "
                        "df.dropna(subset=['y'])), or predict unlabelled rows with 'polymodal predict' (predict_frame "
                        "in Python))"]


def test_validation_options_limit_the_checks(tmp_path):
    rows = [{"image": "img/gone.png", "y": None}]
    manifest = read_manifest(pd.DataFrame(rows), root=tmp_path)
    config = make_config(IMAGE_TEXT)
    # only the image modality, no targets, no file checks: nothing left to complain about
    validate_manifest(manifest, config, require_target=False, check_files=False, modalities=["image"])
    assert "file not found" in problems_of(manifest, config, require_target=False, modalities=["image"])[0]
    assert "target column 'y' is empty" in problems_of(manifest, config, check_files=False, modalities=["image"])[0]


def test_manifest_error_lists_problems_as_lines():
    error = ManifestError([f"problem {i}" for i in range(60)], source="m.csv")
    text = str(error)
    assert "Invalid manifest m.csv (60 problem(s))" in text
    assert "  - problem 49" in text and "problem 50" not in text
    assert "... and 10 more" in text
    assert isinstance(error, ValueError)


def test_subset_keeps_root_and_reindexes(tmp_path):
    manifest = read_manifest(write_manifest(tmp_path, "csv"))
    part = manifest.subset(np.array([2, 0]))
    assert part.frame["y"].tolist() == ["cat", "cat"]
    assert list(part.frame.index) == [0, 1]
    assert part.root == manifest.root and part.name == manifest.name


def test_a_dataframe_whose_index_repeats_labels_is_warned_about():
    frame = pd.DataFrame({"image": ["a.png", "b.png", "c.png"], "y": [0, 1, 0]}, index=[7, 7, 8])
    with pytest.warns(UserWarning, match=r"the DataFrame's index repeats labels \(7\.\.\.\): .*reset_index"):
        manifest = read_manifest(frame)
    assert manifest.labels.tolist() == [7, 7, 8]  # still named by it, as asked
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_manifest(frame.set_axis([7, 9, 8]))  # a unique index: no warning


def test_groups_key_a_category_as_the_tabular_preprocessor_does():
    from polymodal.data.modalities.tabular import _category

    cells = ["F ", "F", "f", "Male ", "male", None, "M"]
    manifest = read_manifest(pd.DataFrame({"sex": cells}))
    rows = np.arange(len(cells))
    as_written = manifest.groups("sex", rows)
    assert set(as_written) == {"F ", "F", "f", "Male ", "male", "(empty)", "M"}
    keyed = manifest.groups("sex", rows, normalize="strip_lower")
    assert {key: list(np.flatnonzero(mask)) for key, mask in keyed.items()} == {
        "(empty)": [5], "f": [0, 1, 2], "m": [6], "male": [3, 4]}
    assert set(keyed) - {"(empty)"} == {_category(c, "strip_lower") for c in cells if c is not None}
    assert set(manifest.groups("sex", rows, normalize="strip")) == {"F", "f", "Male", "male", "(empty)", "M"}


def test_a_manifest_prints_its_size_and_columns_not_its_table(tmp_path):
    frame = pd.DataFrame({f"c{i}": range(60) for i in range(10)})
    said = repr(read_manifest(frame, root=tmp_path))
    assert said == (f"Manifest('DataFrame', 60 rows, columns=['c0', 'c1', 'c2', 'c3', 'c4', 'c5', 'c6', 'c7', ... "
                    f"(10 in all)], root={str(tmp_path.resolve())!r})")
