"""Class labels match whatever type a manifest reader gave the column (int 0, text '0', Parquet's
0.0), keep the user's values for outputs, and a saved vocabulary still encodes; a label column
mixing numbers with text is named, row by row."""

from __future__ import annotations

import pandas as pd
import pytest

from polymodal.data.manifest import read_manifest
from polymodal.data.targets import TargetEncoder, label_key
from polymodal.errors import SchemaMismatchError


def fit(labels: list) -> TargetEncoder:
    return TargetEncoder("classification", ["y"]).fit(read_manifest(pd.DataFrame({"y": labels})))


@pytest.mark.parametrize(("value", "key"), [(0, "0"), ("0", "0"), (0.0, "0"), (7.0, "7"), (0.5, "0.5"),
                                            ("007", "007"), ("cat", "cat"), (True, "True"), ("1.0", "1"),
                                            ("0.50", "0.5"), (" 3 ", "3"), ("-0", "0"), ("01.5", "01.5"),
                                            ("+7", "7"), ("1e3", "1000"),
                                            ("9007199254740993", "9007199254740993"),  # past 2**53: exact
                                            (9007199254740993, "9007199254740993")])
def test_label_key(value, key):
    assert label_key(value) == key


def csv(tmp_path, name: str, labels: list) -> str:
    path = tmp_path / name
    path.write_text("y\n" + "".join(f"{v}\n" for v in labels))
    return str(path)


def test_a_text_label_among_numbers_is_named_and_ints_still_match(tmp_path):
    """The CSV reader types a column with 'seven' in it as text ('0', '1', ...); a manifest of ints
    then names the same classes."""
    train = read_manifest(csv(tmp_path, "train.csv", [0, 1, 2, 1, "seven", 0]))
    with pytest.warns(UserWarning, match=r"target column 'y' of train.csv mixes numbers \(5 rows\) with text "
                                         r"\(1 rows\): 'seven' in train.csv row 4 \(line 6\)"):
        enc = TargetEncoder("classification", ["y"]).fit(train)
    assert enc.classes == ["0", "1", "2", "seven"]  # the user's values, numbers in numeric order
    valid = read_manifest(csv(tmp_path, "valid.csv", [2, 0, 1]))
    assert valid.frame["y"].tolist() == [2, 0, 1]  # ints this time
    assert enc.encode(valid).tolist() == [2, 0, 1]


def test_numeric_text_labels_sort_by_value():
    enc = fit(["10", "2", "1", "x"])
    assert enc.classes == ["1", "2", "10", "x"]


def test_int_float_and_text_spellings_of_a_label_are_one_class(tmp_path):
    frame = pd.DataFrame({"y": [0, 1, 2, None]})  # the gap makes Parquet and pandas store floats
    frame.to_parquet(tmp_path / "t.parquet")
    parquet = read_manifest(tmp_path / "t.parquet").subset([0, 1, 2])
    enc = TargetEncoder("classification", ["y"]).fit(read_manifest(pd.DataFrame({"y": [2, 0, 1]})))
    assert enc.encode(parquet).tolist() == [0, 1, 2]
    assert enc.encode(read_manifest(pd.DataFrame({"y": ["1", "0"]}))).tolist() == [1, 0]
    merged = fit([0, "0", 1.0, "1"])
    assert merged.classes == [0, 1.0]  # the first spelling of each class is kept


def test_a_saved_vocabulary_encodes_manifests_typed_either_way():
    """Runs saved before labels were matched by key stored their values as the reader gave them."""
    for saved, labels in ((["0", "1", "seven"], [1, 0]), ([0, 1, 2], ["1", "0"]), ([0.0, 1.0], [1, 0])):
        enc = TargetEncoder.from_state({"task": "classification", "columns": ["y"], "classes": saved,
                                        "mean": None, "std": None})
        assert enc.encode(read_manifest(pd.DataFrame({"y": labels}))).tolist() == [1, 0]


def test_unseen_labels_name_every_row_that_holds_one():
    enc = fit([0, 1, 2])
    with pytest.raises(SchemaMismatchError) as info:
        enc.encode(read_manifest(pd.DataFrame({"y": ["0", "1", "3", "2", "seven"]})))
    assert str(info.value) == ("DataFrame row 2: label '3' in column 'y' was not seen in training; 1 more rows hold "
                               "unseen labels: 'seven' in DataFrame row 4; known labels: [0, 1, 2]")


def test_an_unseen_label_that_differs_in_case_names_the_one_likely_meant():
    enc = fit(["normal", "pneumonia"])
    with pytest.raises(SchemaMismatchError, match=r"label 'Pneumonia' in column 'y' was not seen in training \(did "
                                                  r"you mean 'pneumonia'\?\); known labels"):
        enc.encode(read_manifest(pd.DataFrame({"y": ["normal", "Pneumonia"]})))
    numbers = fit(["1", "0"])
    with pytest.raises(SchemaMismatchError) as info:  # '10' is no misspelt '1'
        numbers.encode(read_manifest(pd.DataFrame({"y": ["10"]})))
    assert "did you mean" not in str(info.value)


def test_a_column_of_numbers_or_of_text_alone_gives_no_warning(recwarn):
    fit([0, 1, 1])
    fit(["cat", "dog"])
    fit(["1", "2"])
    assert not [w for w in recwarn if "mixes numbers" in str(w.message)]


def test_a_number_read_as_text_beside_a_word_matches_the_same_number_read_as_a_float(tmp_path):
    """pandas reads a CSV column of 1.0, 2.0 as floats, but as text ('1.0') when another row holds a
    word: the two spellings must name the same classes."""
    (tmp_path / "train.csv").write_text("y\n1.0\n2.0\ncat\n")
    (tmp_path / "test.csv").write_text("y\n1.0\n2.0\n")
    encoder = TargetEncoder("classification", ["y"])
    with pytest.warns(UserWarning, match="mixes numbers"):
        encoder.fit(read_manifest(tmp_path / "train.csv"))
    assert encoder.encode(read_manifest(tmp_path / "test.csv")).tolist() == [0, 1]


def test_integer_ids_past_float_precision_stay_distinct_classes():
    enc = fit(["9007199254740993", "9007199254740992", "unknown", "9007199254740993"])
    assert enc.classes == ["9007199254740992", "9007199254740993", "unknown"]
    assert enc.encode(read_manifest(pd.DataFrame({"y": [9007199254740993, 9007199254740992]}))).tolist() == [1, 0]


def test_saved_classes_that_match_as_one_label_are_refused():
    """A vocabulary fitted before labels were matched by value could hold 1 and '1' apart; encoding
    with it would give every such row the last of them."""
    enc = TargetEncoder.from_state({"task": "classification", "columns": ["y"], "classes": [1, "1", "cat"]})
    with pytest.raises(SchemaMismatchError, match=r"classes 1 and '1' of this model match as one label \('1'\)"):
        enc.encode(read_manifest(pd.DataFrame({"y": ["cat"]})))


def test_classes_that_differ_only_in_case_or_spaces_are_warned_about_with_a_row(recwarn):
    frame = pd.DataFrame({"label": ["cat"] * 20 + ["dog"] * 20 + ["cat "] + ["Dog"] * 2})
    with pytest.warns(UserWarning, match=r"differ only in case or surrounding spaces: 'cat' \(20 rows\) and 'cat ' "
                                         r"\(1 row\), e.g. 'cat ' in DataFrame row 40; 'dog' \(20 rows\) and 'Dog' "
                                         r"\(2 rows\), e.g. 'Dog' in DataFrame row 41;"):
        encoder = TargetEncoder("classification", ["label"]).fit(read_manifest(frame))
    assert len(encoder.classes) == 4, "a warning, not a merge: the classes are the user's to fix"
    clean = pd.DataFrame({"label": ["cat", "dog", "Cat-2", "cat-2 b"] * 3})
    TargetEncoder("classification", ["label"]).fit(read_manifest(clean))
    one_class = pd.DataFrame({"label": [True] * 5 + ["True"] * 3 + ["no"] * 4})  # True and 'True': one key
    assert len(TargetEncoder("classification", ["label"]).fit(read_manifest(one_class)).classes) == 2
    assert not [w for w in recwarn if "differ only" in str(w.message)]
    codes = pd.DataFrame({"label": ["007"] * 5 + [" 007"] * 2 + ["1"] * 3})  # codes with leading zeros stay text
    with pytest.warns(UserWarning, match=r"'007' \(5 rows\) and ' 007' \(2 rows\)"):
        TargetEncoder("classification", ["label"]).fit(read_manifest(codes))
