"""utils.values.number: the one reading of a tabular cell, for training and the runtime."""

from __future__ import annotations

import math

import pytest

from polymodal.utils.values import NA_VALUES, decimal_comma, number


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


@pytest.mark.parametrize("cell, hint", [("12,50", "a decimal comma? write 12.50"), (" -3,5", "a decimal comma? write -3.5"),
                                        ("1.234,5", "a decimal comma? write 1234.5"),
                                        ("1,234", "a decimal comma or a thousands separator? write 1.234 or 1234"),
                                        ("1,234,567", "thousands separators? write 1234567")])
def test_a_number_written_with_a_decimal_comma_is_told_so(cell, hint):
    assert decimal_comma(cell) == hint
    with pytest.raises(ValueError) as caught:
        number(cell)
    assert str(caught.value) == f"must be numeric; got {cell!r} ({hint})"


@pytest.mark.parametrize("cell", ["lots", "1,2,3", "12,", ",5", "12.5", "1,23,4567", 12.5, None])
def test_only_text_that_reads_as_a_decimal_comma_number_gets_the_hint(cell):
    assert decimal_comma(cell) is None


def test_the_missing_value_texts_are_pandas_defaults():
    """Training reads them as a missing number and warns of a learned category spelt as one of
    them (``NA``, North America): both are pandas' ``read_csv`` defaults, which it must follow."""
    from pandas._libs.parsers import STR_NA_VALUES

    assert set(STR_NA_VALUES) == NA_VALUES


def test_texts_that_differ_only_by_surrounding_whitespace_are_shown_quoted():
    from polymodal.utils.values import shown_apart

    assert shown_apart(["F ", "F", "Male ", "male", "M", "(empty)"]) == {
        "F ": "'F '", "F": "'F'", "Male ": "'Male '", "male": "male", "M": "M", "(empty)": "(empty)"}
    assert shown_apart(["north", "south"]) == {"north": "north", "south": "south"}
