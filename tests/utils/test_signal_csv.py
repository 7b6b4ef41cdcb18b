"""The signal CSV reader training and the runtime share: what it reads as pandas read these files
(header detection, missing markers, blank lines, short rows), what it refuses with the line, and
that its one-call fast path and its cell-by-cell reading agree."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polymodal.errors import DecodeError
from polymodal.utils.signal_csv import (
    _read_cells,
    _read_plain,
    has_header,
    is_csv_text,
    non_finite_reason,
    pick_channels,
    read_csv_signal,
)


@pytest.mark.parametrize(("text", "header"), [
    ("time,volts\n1.5,2\n3,4\n", True),
    ("0,1\n1.5,2\n3,4\n", True),  # pandas' column numbers
    ("vib,n/a\n1.5,2\n", True),  # a missing marker beside a word: still the columns' names
    ("1.5,2\n3,4\n", False),
    ("\ufeff1.5,\n2.5,3.5\n", False),  # Excel's byte-order mark, a missing value in the first sample
    ('"a","b"\r\n" 1.5","2"\r\n3, 4 \r\n', True),  # quotes, spaces around numbers, CRLF
    ("a,b\r1,2\r3,4\r", True),  # old Mac line ends
    ("a,b\n1,2\n\n   \n3,4\n\n", True),  # blank lines skipped
    ("a,b\n1,NA\n,2\nn/a,NaN\nnull,\n-nan,#N/A\n", True),  # missing markers
    ("a,b\n1\n3,4\n", True),  # a short row: padded with a missing value
    ("a,b\n1e400,-1e-3\ninf,-Infinity\n", True),
    ("a,a,\n1,2,3\n", True),  # a repeated and an empty name
    ("x\n1\n2\n", True),
    ("7\n8\n", False),
])
def test_reads_what_pandas_read(text, header):
    got = read_csv_signal(text.encode())
    frame = pd.read_csv(io.StringIO(text.removeprefix("\ufeff")), header=0 if header else None)
    assert got.header is header
    assert got.columns == list(frame.columns)
    np.testing.assert_array_equal(got.samples, frame.to_numpy(np.float32).T)
    assert got.samples.dtype == np.float32 and got.samples.flags.c_contiguous


def test_lines_count_blank_lines_and_rows_of_empty_cells():
    got = read_csv_signal(b"a,b\n1,2\n\n,\n  \n3,inf\n")  # a row of empty cells is a sample, a blank line is not
    assert got.lines.tolist() == [2, 4, 6]
    assert "3 NaN or infinite value(s), the first (nan) at channel 0, sample 1 (CSV line 4)" in \
        non_finite_reason(got.samples, got.lines)


def test_columns_by_name_in_the_order_given():
    got = read_csv_signal(b"t,x,y\n0,1,2\n1,3,4\n", ["y", "x"])
    assert got.columns == ["y", "x"] and got.samples.tolist() == [[2, 4], [1, 3]]
    with pytest.raises(DecodeError, match=r"columns \['z'\] \(preprocess.channels\) are not in the CSV; it has"):
        read_csv_signal(b"t,x,y\n0,1,2\n", ["z"])
    with pytest.raises(DecodeError, match="the CSV has no header row"):
        read_csv_signal(b"0.5,1\n", ["x"])


@pytest.mark.parametrize(("text", "reason"), [
    ("a,b\n1,2\n3,abc\n", r"CSV line 3, column 'b' holds 'abc'; signal samples must be numbers"),
    ("0.5,?\n1,2\n", r"CSV line 1, column 1 \(counting from 0\) holds '\?'"),
    ("a,b\n1,2\n1_0,2\n", r"CSV line 3, column 'a' holds '1_0'"),
    ("a,b\n1,2\n3,4,5\n", "CSV line 3 has 3 fields, more than the 2 of its header row"),
    ("1,2\n3,4,5\n", "CSV line 2 has 3 fields, more than the 2 of its first row"),
    ("a,b\n", r"holds no samples: the CSV has a header row \['a', 'b'\] and no rows below it"),
    ("\n  \n", "holds no samples: the CSV file has no rows"),
])
def test_refusals_name_the_line(text, reason):
    with pytest.raises(DecodeError, match=reason) as info:
        read_csv_signal(text.encode())
    assert info.value.path is None  # the caller names its file


def test_text_that_is_not_utf8_is_unreadable():
    with pytest.raises(DecodeError, match="unreadable or corrupt signal .*utf-8"):
        read_csv_signal("temp\u00e9rature\n1\n".encode("latin-1"))


def test_content_tells_csv_text_from_binary_files():
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(3, np.float32))
    assert is_csv_text(b"a,b\r\n1,2\n") and is_csv_text(b"\xef\xbb\xbf1,\t2\n")
    assert not is_csv_text(buffer.getvalue())
    assert not is_csv_text(b"RIFF\x24\x00\x00\x00WAVEfmt ") and not is_csv_text(b"PK\x03\x04\x14\x00")
    assert not is_csv_text("\u00e9".encode("latin-1"))


def test_channels_by_index():
    samples = np.arange(6, dtype=np.float32).reshape(3, 2)
    assert pick_channels(samples, [2, -3]).tolist() == [[4, 5], [0, 1]]
    with pytest.raises(DecodeError, match=r"channels \[3\] \(preprocess.channels\) out of range; the signal has 3"):
        pick_channels(samples, [0, 3])


def test_header_detection_keeps_the_first_sample():
    assert not has_header("0.126,n/a\n") and not has_header("0.5,abc\n") and has_header("time,1,2\n")


cells = st.sampled_from(["1", "-2.5", "3e2", " 4 ", ".5", "6.", "+7", "", "1e", "--1", "8", "9"])


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(st.lists(cells, min_size=1, max_size=3), min_size=1, max_size=6),
       header=st.booleans(), ending=st.sampled_from(["\n", "\r\n", "\r"]), last=st.booleans())
def test_the_fast_path_reads_what_cell_by_cell_reading_reads(rows, header, ending, last):
    text = ending.join(([",".join(f"c{i}" for i in range(len(rows[0])))] if header else []) +
                       [",".join(r) for r in rows]) + (ending if last else "")
    fast = _read_plain(text, has_header(text))
    if fast is None:
        return
    names, table, first = fast
    slow = _read_cells(text, has_header(text), None)
    assert slow.columns == names and slow.lines.tolist() == list(range(first, first + len(table)))
    np.testing.assert_array_equal(slow.samples, table.T.astype(np.float32))


def test_a_lone_zero_first_is_a_sample_and_column_numbers_are_a_header():
    from polymodal.utils.signal_csv import read_csv_signal

    one = read_csv_signal(b"0\n5\n7\n")
    assert not one.header and one.samples.tolist() == [[0.0, 5.0, 7.0]]
    two = read_csv_signal(b"0,1\n5,6\n")
    assert two.header and two.samples.tolist() == [[5.0], [6.0]]


@pytest.mark.parametrize(("text", "sep", "header"), [
    ("t;accel\n0.0;-0.13\n0.001;0.25\n", ";", True),  # a spreadsheet export where ',' is the decimal mark
    ("0.0;-0.13\n0.001;0.25\n", ";", False),
    ('"t";"accel"\r\n0.0;NA\r\n\r\n0.002;0.5\r\n', ";", True),  # quotes, a missing marker, a blank line
    ("t\taccel\n0.0\t-0.13\n0.001\t 0.25\n", "\t", True),
    ("0.0\t-0.13\n", "\t", False),
])
def test_semicolon_and_tab_separated_files_are_read_as_pandas_reads_them_with_that_separator(text, sep, header):
    got = read_csv_signal(text.encode())
    frame = pd.read_csv(io.StringIO(text), sep=sep, header=0 if header else None)
    assert got.header is header and got.columns == list(frame.columns)
    np.testing.assert_array_equal(got.samples, frame.to_numpy(np.float32).T)


def test_a_comma_in_the_first_line_keeps_commas_the_separator():
    got = read_csv_signal(b"a,b\n1,2\n")
    assert got.columns == ["a", "b"]
    with pytest.raises(DecodeError, match=r"column 'a' holds '1;2'; signal samples must be numbers$"):
        read_csv_signal(b"a,b\n1;2,3\n")


def test_a_decimal_comma_is_named_in_a_semicolon_separated_file():
    with pytest.raises(DecodeError, match=r"CSV line 2, column 'accel' holds '-0,13'; signal samples must be numbers "
                                          r"\(the file separates its columns with ';' and seems to write ',' as the "
                                          r"decimal mark"):
        read_csv_signal(b"t;accel\n0.0;-0,13\n")
