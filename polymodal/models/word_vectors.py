"""Word vectors from local files, for initialising text embeddings.

Formats: GloVe/word2vec text (``word v1 v2 ...`` per line, optionally ``.gz``; a word may hold
spaces, the last D fields being its vector), or a folder (or
``.npy`` path) holding a ``(V, D)`` ``.npy`` matrix beside a word list (``.parquet`` with one
string column, or ``.txt`` with one word per line) in the same row order.
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from polymodal.errors import DecodeError


def _matrix_and_words(path: Path) -> tuple[np.ndarray, list[str]]:
    folder = path if path.is_dir() else path.parent
    npys = [path] if path.suffix == ".npy" else sorted(folder.glob("*.npy"))
    if len(npys) != 1:
        raise DecodeError(f"expected one .npy matrix; found {[p.name for p in npys]}", path=str(path))
    word_files = sorted(folder.glob("*.parquet")) + sorted(p for p in folder.glob("*.txt"))
    if not word_files:
        raise DecodeError("no word list (.parquet or .txt) beside the .npy matrix", path=str(folder))
    words_path = word_files[0]
    if words_path.suffix == ".parquet":
        import pandas as pd

        frame = pd.read_parquet(words_path)
        string_cols = [c for c in frame.columns if frame[c].dtype == object or str(frame[c].dtype).startswith("str")]
        if not string_cols:
            raise DecodeError(f"no string column in {words_path.name}", path=str(words_path))
        words = frame[string_cols[0]].astype(str).tolist()
    else:
        words = words_path.read_text(encoding="utf-8").split("\n")
        words = [w for w in words if w]
    matrix = np.load(npys[0], mmap_mode="r", allow_pickle=False)
    if matrix.shape[0] != len(words):
        raise DecodeError(f"{npys[0].name} has {matrix.shape[0]} rows but {words_path.name} lists {len(words)} words",
                          path=str(folder))
    return matrix, words


def load_word_vectors(path: str | Path, vocab: Sequence[str]) -> tuple[np.ndarray, list[int]]:
    """Vectors for the words of ``vocab``.

    Returns:
        (len(vocab), D) float32 matrix (zeros for words without a vector) and the indices of the
        vocabulary words that were found.

    Raises:
        FileNotFoundError: no such file or folder.
        DecodeError: the file is not in a known format, or holds no word of ``vocab``.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"word-vector file not found: {path}")
    index = {w: i for i, w in enumerate(vocab)}
    if path.is_dir() or path.suffix == ".npy":
        matrix, words = _matrix_and_words(path)
        out = np.zeros((len(vocab), matrix.shape[1]), np.float32)
        found = []
        for row, word in enumerate(words):
            i = index.get(word)
            if i is not None:
                out[i] = matrix[row]
                found.append(i)
        if not found:
            raise DecodeError("no vocabulary word has a vector in this file", path=str(path))
        return out, sorted(found)
    opener = gzip.open if path.suffix == ".gz" else open
    out, found, dim = None, [], None
    with opener(path, "rt", encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            word, _, rest = line.rstrip("\n").partition(" ")
            fields = rest.split()
            if line_no == 1 and len(fields) == 1:  # word2vec header "V D"
                dim = int(fields[0]) if fields[0].isdigit() else None
                continue
            if not fields:  # a blank line or a word without a vector
                continue
            dim = len(fields) if dim is None else dim  # the first vector's width
            if len(fields) > dim:  # a word with spaces in it (GloVe 840B has ". . ." and "at name@domain.com")
                word, fields = " ".join([word, *fields[:-dim]]), fields[-dim:]
            i = index.get(word)
            if i is None:
                continue
            if len(fields) != dim:
                raise DecodeError(f"line {line_no} has {len(fields)} values, expected {dim}", path=str(path))
            try:
                values = np.asarray(fields, np.float32)
            except ValueError:
                raise DecodeError(f"line {line_no} ('{word}'): expected {dim} numbers after the word", path=str(path)) from None
            if out is None:
                out = np.zeros((len(vocab), dim), np.float32)
            out[i] = values
            found.append(i)
    if out is None:
        raise DecodeError("no vocabulary word has a vector in this file", path=str(path))
    return out, sorted(found)
