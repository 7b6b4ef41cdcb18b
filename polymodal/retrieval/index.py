"""A FAISS index over L2-normalised embeddings (inner product = cosine similarity), with the
identity of every vector kept beside it.

On disk an index is a folder: ``index.faiss`` (written by ``faiss.write_index``) and
``index.json`` (the ids, the modality, the model it was built with); nothing is pickled.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from polymodal.errors import MissingDependencyError, SchemaMismatchError
from polymodal.utils.io import atomic_path, atomic_write_json, python_scalar

INDEX_FILE = "index.faiss"
META_FILE = "index.json"
FORMAT = 1


def _faiss() -> Any:
    try:
        import faiss
    except ImportError:
        raise MissingDependencyError("faiss-cpu", "building and searching a retrieval index") from None
    return faiss


def file_digest(path: str | os.PathLike) -> str:
    """A short content hash of a file (identifies the model an index was built with)."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class EmbeddingIndex:
    """Exact cosine-similarity search over a gallery of embeddings (``faiss.IndexFlatIP``).

    Args:
        index: a FAISS index holding the gallery vectors.
        ids: one JSON value per vector (a manifest row, a path, an id column's value).
        meta: what built it: ``modality``, ``model`` digest, ``manifest``...
    """

    def __init__(self, index: Any, ids: Sequence[Any], meta: dict[str, Any] | None = None):
        if index.ntotal != len(ids):
            raise ValueError(f"the index holds {index.ntotal} vectors but {len(ids)} ids were given")
        self.index = index
        self.ids = list(ids)
        self.meta = dict(meta or {})

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    @classmethod
    def build(cls, vectors: np.ndarray, ids: Sequence[Any] | None = None, meta: dict[str, Any] | None = None
              ) -> EmbeddingIndex:
        """Index ``vectors`` (N, D); they are L2-normalised first.

        Args:
            ids: one per vector (default: 0 .. N-1).
        """
        vectors = _normalised(vectors)
        index = _faiss().IndexFlatIP(vectors.shape[1])
        index.add(vectors)
        return cls(index, list(range(len(vectors))) if ids is None else [python_scalar(i) for i in ids], meta)

    def search(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest gallery vectors of each query.

        Args:
            queries: (Q, D); L2-normalised here.

        Returns:
            scores (Q, k) cosine similarities, best first, and positions (Q, k) into the gallery
            (``ids[position]`` names the item); k is capped at the gallery size.
        """
        queries = _normalised(queries)
        if queries.shape[1] != self.dim:
            raise SchemaMismatchError(f"queries are {queries.shape[1]}-d but the index holds {self.dim}-d vectors")
        k = min(int(k), len(self))
        if k < 1:
            raise ValueError(f"k must be at least 1 and the index non-empty; got k={k}, {len(self)} vectors")
        scores, positions = self.index.search(queries, k)
        return scores, positions

    def search_frame(self, queries: np.ndarray, k: int = 10, query_ids: Sequence[Any] | None = None) -> pd.DataFrame:
        """:meth:`search` as a long table: ``query``, ``rank`` (1 = best), ``id``, ``score``."""
        scores, positions = self.search(queries, k)
        query_ids = list(range(len(queries))) if query_ids is None else list(query_ids)
        q, r = np.meshgrid(np.arange(scores.shape[0]), np.arange(scores.shape[1]), indexing="ij")
        return pd.DataFrame({
            "query": [query_ids[i] for i in q.ravel()],
            "rank": r.ravel() + 1,
            "id": [self.ids[p] for p in positions.ravel()],
            "score": scores.ravel(),
        })

    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``index.faiss`` and ``index.json`` into ``folder`` (each atomically)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / INDEX_FILE) as tmp:
            _faiss().write_index(self.index, str(tmp))
        atomic_write_json(folder / META_FILE, {"format": FORMAT, "dim": self.dim, "size": len(self),
                                               **self.meta, "ids": self.ids})
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> EmbeddingIndex:
        """Read an index folder written by :meth:`save`."""
        folder = Path(folder)
        for name in (INDEX_FILE, META_FILE):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"{folder} is not a polymodal index folder: {name} not found")
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        ids = meta.pop("ids")
        for key in ("format", "dim", "size"):
            meta.pop(key, None)
        return cls(_faiss().read_index(str(folder / INDEX_FILE)), ids, meta)


def _normalised(vectors: np.ndarray) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) == 0:
        raise ValueError(f"expected a non-empty (N, D) array of vectors; got shape {vectors.shape}")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12))
