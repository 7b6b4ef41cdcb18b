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


@pytest.mark.parametrize("by", ["folder", "text"])
def test_a_file_holding_no_vocabulary_word_is_a_decode_error(tmp_path, by):
    """Both formats say so (the matrix format used to return no row, and the encoder then failed
    indexing its embedding with an empty float tensor)."""
    if by == "folder":
        save_matrix_folder(tmp_path / "data")
        path = tmp_path / "data"
    else:
        path = tmp_path / "vectors.txt"
        path.write_text("king 1 2\nqueen 3 4\n")
    with pytest.raises(DecodeError, match="no vocabulary word has a vector"):
        load_word_vectors(path, ["<pad>", "notaword"])


def test_glove_text_words_holding_spaces_keep_the_rows_aligned(tmp_path):
    """GloVe 840B has tokens with spaces (". . .", "at name@domain.com"): the vector is the last D
    fields of the line and the word everything before them."""
    path = tmp_path / "glove.840B.3d.txt"
    path.write_text(", 1 2 3\n. . . 4 5 6\n. 7 8 9\nat name@domain.com 1 1 1\n", encoding="utf-8")
    vectors, found = load_word_vectors(path, ["<pad>", ".", "at name@domain.com", ". . ."])
    assert found == [1, 2, 3]
    np.testing.assert_array_equal(vectors[1:], [[7, 8, 9], [1, 1, 1], [4, 5, 6]])
