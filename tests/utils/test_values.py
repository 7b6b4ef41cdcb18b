"""utils.values.number: the one reading of a tabular cell, for training and the runtime."""

from __future__ import annotations

import math

import pytest

from polymodal.utils.values import number


@pytest.mark.parametrize("cell, expected", [(2, 2.0), ("2.5", 2.5), (" -1e3 ", -1000.0), (True, 1.0), (False, 0.0)])
def test_numbers(cell, expected):
    assert number(cell) == expected


@pytest.mark.parametrize("cell", [None, math.nan, "", "  ", "NA", "null", "N/A", "nan", "None", "#N/A"])
def test_missing_cells_are_nan(cell):
    assert math.isnan(number(cell))


@pytest.mark.parametrize("cell, message", [("lots", "must be numeric; got 'lots'"), ("na na", "must be numeric"),
                                           (math.inf, "holds an infinite value"), ("-inf", "holds an infinite value"),
                                           (10 ** 400, "holds a number out of range"), ([1], "must be numeric")])
def test_what_is_not_a_number_says_why(cell, message):
    with pytest.raises(ValueError, match=message):
        number(cell)


def test_texts_that_differ_only_by_surrounding_whitespace_are_shown_quoted():
    from polymodal.utils.values import shown_apart

    assert shown_apart(["F ", "F", "Male ", "male", "M", "(empty)"]) == {
        "F ": "'F '", "F": "'F'", "Male ": "'Male '", "male": "male", "M": "M", "(empty)": "(empty)"}
    assert shown_apart(["north", "south"]) == {"north": "north", "south": "south"}
