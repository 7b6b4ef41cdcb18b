"""``.npy`` reading checks the header's shape against the bytes before numpy allocates it."""

from __future__ import annotations

import io

import numpy as np
import pytest

from polymodal.utils.npy import npy_from_bytes, npy_from_file


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def hostile_header(shape: tuple[int, ...]) -> bytes:
    """A valid ``.npy`` header that promises ``shape`` float64 values, followed by 64 bytes."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f8", "fortran_order": False, "shape": shape})
    return buffer.getvalue() + b"\0" * 64


@pytest.mark.parametrize("array", [np.arange(12, dtype=np.float32).reshape(3, 4), np.zeros(0), np.array(7.0),
                                   np.asfortranarray(np.arange(6).reshape(2, 3))])
def test_round_trip(array, tmp_path):
    data = npy(array)
    np.testing.assert_array_equal(npy_from_bytes(data), array)
    (tmp_path / "a.npy").write_bytes(data)
    np.testing.assert_array_equal(npy_from_file(tmp_path / "a.npy"), array)


def test_a_header_promising_terabytes_is_refused_before_allocating(tmp_path):
    data = hostile_header((1, 10**12))
    with pytest.raises(ValueError, match=r"shape \(1, 1000000000000\) \(8,000,000,000,000 bytes\) but only 64 bytes"):
        npy_from_bytes(data)
    (tmp_path / "a.npy").write_bytes(data)
    with pytest.raises(ValueError, match="truncated or corrupt"):
        npy_from_file(tmp_path / "a.npy")


def test_a_truncated_file_is_refused():
    data = npy(np.arange(100, dtype=np.int64))
    with pytest.raises(ValueError, match="800 bytes.* but only 799 bytes"):
        npy_from_bytes(data[:-1])


def test_not_npy_and_object_arrays_are_refused():
    with pytest.raises(ValueError):
        npy_from_bytes(b"PK\x03\x04 a zip, not an array")
    with pytest.raises(ValueError, match="Python objects"):
        npy_from_bytes(npy(np.array([{"a": 1}], dtype=object)))
