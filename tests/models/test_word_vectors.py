"""Word vectors stored as a ``.npy`` matrix beside a word list, the layout of ``pkg:glove-6b-50d``
(``data/glove_6B_50d_emb.npy`` (V, D) float32 and ``data/glove_6B_index.parquet``, one string
column ``index`` in row order), written here in miniature."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from polymodal.errors import DecodeError
from polymodal.models.word_vectors import load_word_vectors

WORDS = ["the", ",", "king", "queen", "banana"]


def save_matrix_folder(folder: Path, words: list[str] = WORDS, rows: int | None = None) -> np.ndarray:
    """The packaged GloVe layout: a (V, 4) float32 ``.npy`` and a parquet word list in the same order."""
    folder.mkdir(parents=True, exist_ok=True)
    matrix = np.arange((len(words) if rows is None else rows) * 4, dtype=np.float32).reshape(-1, 4) / 8 - 1
    np.save(folder / "glove_6B_4d_emb.npy", matrix)
    pd.DataFrame({"index": words}).to_parquet(folder / "glove_6B_index.parquet")
    return matrix


@pytest.mark.parametrize("by", ["folder", "npy"])
def test_vectors_load_by_word_from_a_matrix_and_a_parquet_word_list(tmp_path, by):
    matrix = save_matrix_folder(tmp_path / "data")
    path = tmp_path / "data" if by == "folder" else tmp_path / "data" / "glove_6B_4d_emb.npy"
    vocab = ["<pad>", "queen", "notaword", "king", ","]
    vectors, found = load_word_vectors(path, vocab)
    assert vectors.shape == (5, 4) and vectors.dtype == np.float32
    assert found == [1, 3, 4]
    np.testing.assert_array_equal(vectors[1], matrix[WORDS.index("queen")])
    np.testing.assert_array_equal(vectors[3], matrix[WORDS.index("king")])
    np.testing.assert_array_equal(vectors[4], matrix[WORDS.index(",")])
    assert not vectors[0].any() and not vectors[2].any()  # no vector: zeros


def test_a_word_list_of_another_length_than_the_matrix_is_refused(tmp_path):
    save_matrix_folder(tmp_path / "data", rows=len(WORDS) + 1)
    with pytest.raises(DecodeError, match=r"has 6 rows but glove_6B_index.parquet lists 5 words"):
        load_word_vectors(tmp_path / "data", ["king"])
