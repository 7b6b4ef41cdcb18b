"""A FAISS index over L2-normalised embeddings (inner product = cosine similarity), with the
identity of every vector kept beside it.

On disk an index is a folder: ``index.faiss`` (written by ``faiss.write_index``) and
``index.json`` (the ids, the modality, the digest of the model weights it was built with);
nothing is pickled.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from polymodal.data.cells import is_empty
from polymodal.errors import MissingDependencyError, RunFolderError, SchemaMismatchError, option
from polymodal.utils.io import atomic_folder, atomic_write_json, hash_file, python_scalar

INDEX_FILE = "index.faiss"
META_FILE = "index.json"
FORMAT = 2  # 2: ``model`` is the digest of the weights (``models.weights.state_digest``); 1: of the run's model file
SHOWN = 5  # offending ids or places a message names


def id_problems(ids: Sequence[Any], places: Sequence[int], where: Callable[[int], str], what: str,
                unit: str = "row") -> tuple[list[str], int]:
    """What is wrong with ids that must name items one to one: empty or repeated values.

    Args:
        ids: one per item.
        places: where each item comes from (a manifest row, a vector's position), as ``where`` names it.
        what: how the ids are named in the message (``id column 'name'``, ``ids``).
        unit: what a place is (``row``, ``vector``).

    Returns:
        One line per problem (none: the ids are fine), and the problems folded into a last line
        (``ManifestError``'s ``folded``).
    """
    def named(found: list[int]) -> str:
        return ", ".join(where(r) for r in found[:SHOWN]) + (", ..." if len(found) > SHOWN else "")

    problems = []
    empty = [int(p) for i, p in zip(ids, places) if is_empty(i)]
    if empty:
        problems.append(f"{what} is empty at {len(empty)} indexed {unit}(s): {named(empty)}; every item needs an id")
    places_of: dict[Any, list[int]] = {}
    for value, place in zip(ids, places):
        if not is_empty(value):
            places_of.setdefault(value, []).append(int(place))
    repeated = [(value, found) for value, found in places_of.items() if len(found) > 1]
    problems += [f"{what}: {value!r} names {len(found)} {unit}s: {named(found)}; ids must be unique"
                 for value, found in repeated[:SHOWN]]
    if len(repeated) > SHOWN:
        problems.append(f"{what}: {len(repeated) - SHOWN} more repeated value(s)")
    return problems, max(len(repeated) - SHOWN - 1, 0)


def _faiss() -> Any:
    try:
        import faiss
    except ImportError:
        raise MissingDependencyError("faiss-cpu", "building and searching a retrieval index") from None
    return faiss


def file_digest(path: str | os.PathLike) -> str:
    """A short content hash of a file (the run's model file an index of format 1 recorded)."""
    digest = hashlib.blake2b(digest_size=16)
    hash_file(digest, path)
    return digest.hexdigest()


class EmbeddingIndex:
    """Exact cosine-similarity search over a gallery of embeddings (``faiss.IndexFlatIP``).

    Args:
        index: a FAISS index holding the gallery vectors.
        ids: one JSON value per vector (a manifest row, a path, an id column's value).
        columns: gallery columns kept beside the ids (``index build --keep``): name -> one
            JSON value per vector, shown with every hit.
        meta: what built it: ``modality``, ``model`` (:func:`~polymodal.models.weights.state_digest` of the network),
            ``id_column``... (an index saved in format 1 has ``model_file`` instead: the digest
            of its run's ``model.safetensors``).
    """

    def __init__(self, index: Any, ids: Sequence[Any], meta: dict[str, Any] | None = None,
                 columns: dict[str, Sequence[Any]] | None = None):
        if index.ntotal != len(ids):
            raise ValueError(f"the index holds {index.ntotal} vectors but {len(ids)} ids were given")
        self.index = index
        self.ids = list(ids)
        self.meta = dict(meta or {})
        self.columns = {name: list(values) for name, values in (columns or {}).items()}
        for name, values in self.columns.items():
            if len(values) != len(self.ids):
                raise ValueError(f"column '{name}' holds {len(values)} values for {len(self.ids)} vectors")

    def __repr__(self) -> str:
        said = ", ".join(f"{k}={self.meta[k]!r}" for k in ("modality", "id_column") if self.meta.get(k) is not None)
        return (f"EmbeddingIndex({len(self)} vectors of dim {self.dim}" + (f", {said}" if said else "")
                + (f", columns={list(self.columns)}" if self.columns else "") + ")")

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    @classmethod
    def build(cls, vectors: np.ndarray, ids: Sequence[Any] | None = None, meta: dict[str, Any] | None = None,
              columns: dict[str, Sequence[Any]] | None = None) -> EmbeddingIndex:
        """Index ``vectors`` (N, D); they are L2-normalised first.

        Args:
            ids: one per vector (default: 0 .. N-1); unique and non-empty.
            columns: values kept beside each vector and shown with its hits (name -> one JSON
                value per vector).

        Raises:
            ValueError: the ids are not one per vector, or repeat, or are empty.
        """
        vectors = _normalised(vectors)
        if ids is not None:
            ids = [python_scalar(i) for i in ids]
            if len(ids) != len(vectors):
                raise ValueError(f"{len(vectors)} vectors but {len(ids)} ids were given; give one id per vector")
            problems, _ = id_problems(ids, range(len(ids)), lambda p: f"position {p}", "ids", unit="vector")
            if problems:
                raise ValueError("; ".join(problems))
        index = _faiss().IndexFlatIP(vectors.shape[1])
        index.add(vectors)
        return cls(index, list(range(len(vectors))) if ids is None else ids, meta, columns)

    def search(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest gallery vectors of each query.

        Args:
            queries: (Q, D), or one query as a (D,) vector (answered as a (1, D) batch of one);
                L2-normalised here.

        Returns:
            scores (Q, k) cosine similarities, best first, and positions (Q, k) into the gallery
            (``ids[position]`` names the item; -1 where FAISS found nothing, e.g. for a query
            holding NaN); k is capped at the gallery size. A (D,) query gives (1, k) arrays.
        """
        queries = _normalised(_as_batch(queries))
        if queries.shape[1] != self.dim:
            raise SchemaMismatchError(f"queries are {queries.shape[1]}-d but the index holds {self.dim}-d vectors")
        k = min(int(k), len(self))
        if k < 1:
            raise ValueError(f"k must be at least 1 and the index non-empty; got k={k}, {len(self)} vectors")
        scores, positions = self.index.search(queries, k)
        return scores, positions

    def search_frame(self, queries: np.ndarray, k: int = 10, query_ids: Sequence[Any] | None = None,
                     query_columns: dict[str, Sequence[Any]] | None = None) -> pd.DataFrame:
        """:meth:`search` as a long table: ``query``, the ``query_columns`` (name -> one value per
        query), ``rank`` (1 = best), ``id``, the index's kept :attr:`columns`, ``score``; the
        places where FAISS found nothing (position -1) are left out, not named ``ids[-1]``."""
        scores, positions = self.search(queries, k)
        query_ids = list(range(len(scores))) if query_ids is None else list(query_ids)
        q, r = np.meshgrid(np.arange(scores.shape[0]), np.arange(scores.shape[1]), indexing="ij")
        found = positions.ravel() >= 0
        asked, hit = q.ravel()[found], positions.ravel()[found]
        return pd.DataFrame({
            "query": [query_ids[i] for i in asked],
            **{name: [values[i] for i in asked] for name, values in (query_columns or {}).items()},
            "rank": r.ravel()[found] + 1,
            "id": [self.ids[p] for p in hit],
            **{name: [values[p] for p in hit] for name, values in self.columns.items()},
            "score": scores.ravel()[found],
        })

    def save(self, folder: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write ``index.faiss`` and ``index.json`` as the folder ``folder``, together: they are
        written into a hidden sibling folder that then replaces ``folder`` in one rename, so an
        interrupted save leaves the previous index whole (never its ids beside new vectors).

        Raises:
            RunFolderError: ``folder`` holds an index and ``overwrite`` is not set, or holds files
                of its own (which the replacement would remove).
        """
        folder = check_index_out(folder, overwrite=overwrite)
        with atomic_folder(folder) as staging:
            _faiss().write_index(self.index, str(staging / INDEX_FILE))
            atomic_write_json(staging / META_FILE, {"format": FORMAT, "dim": self.dim, "size": len(self),
                                                    **self.meta, "ids": self.ids, "columns": self.columns})
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> EmbeddingIndex:
        """Read an index folder written by :meth:`save`.

        Raises:
            FileNotFoundError: a file of the folder is missing.
            RunFolderError: a file is damaged (truncated, not JSON, not a FAISS index) or the two
                disagree (ids and vectors); the message names the file.
        """
        folder = Path(folder)
        for name in (INDEX_FILE, META_FILE):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"{folder} is not a polymodal index folder: {name} not found")
        meta = _read_meta(folder)
        try:
            index = _faiss().read_index(str(folder / INDEX_FILE))
        except RuntimeError as err:  # faiss reports a truncated or foreign file as a RuntimeError
            reason = str(err).strip().split("failed: ")[-1].replace(" (Success)", "")  # FAISS: "... failed: read error in"
            raise _damaged(folder, INDEX_FILE, "a FAISS index written by 'polymodal index build'",
                           f"a truncated or foreign file (FAISS: {reason})") from None
        ids, columns = meta.pop("ids"), meta.pop("columns", {})
        recorded = {key: meta.pop(key, None) for key in ("format", "dim", "size")}
        if index.ntotal != len(ids):
            raise _damaged(folder, INDEX_FILE, f"{len(ids)} vectors, one per id in {META_FILE}",
                           f"{index.ntotal} vectors")
        if recorded["dim"] is not None and recorded["dim"] != index.d:
            raise _damaged(folder, INDEX_FILE, f"{recorded['dim']}-d vectors (as {META_FILE} records)",
                           f"{index.d}-d vectors")
        if not isinstance(columns, dict) or any(not isinstance(v, list) or len(v) != len(ids) for v in columns.values()):
            raise _damaged(folder, META_FILE, f"kept columns of {len(ids)} values each, one per id",
                           f"'columns': {str(columns)[:80]}")
        if recorded["format"] == 1 and meta.get("model") is not None:  # the digest of a run's model file
            meta["model_file"] = meta.pop("model")
        return cls(index, ids, meta, columns)


def check_index_out(folder: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """``folder`` as a resolved Path, checked to be new, empty or (with ``overwrite``) an index folder.

    Raises:
        RunFolderError: a file; a folder holding files other than an index's (the save replaces
            the whole folder); an index, without ``overwrite``.
    """
    folder = Path(folder).resolve()  # '.' has no name to stage beside; a symlink's target is the index
    if not folder.exists():
        return folder
    if not folder.is_dir():
        raise RunFolderError(f"the index folder {folder} is a file; give a new folder")
    others = sorted(p.name for p in folder.iterdir() if p.name not in (INDEX_FILE, META_FILE))
    if others:
        raise RunFolderError(f"{folder} holds other files ({', '.join(others[:5])}); an index is a folder of its "
                             "own: give a new folder")
    if any(folder.iterdir()) and not overwrite:
        raise RunFolderError(f"{folder} already holds an index; give {option('--overwrite')} to replace it, or "
                             "another folder")
    return folder


def _damaged(folder: Path, name: str, expected: str, found: str) -> RunFolderError:
    return RunFolderError(f"the index {folder} is damaged: {name} should hold {expected}; found {found}. "
                          "Rebuild it with 'polymodal index build'")


def _read_meta(folder: Path) -> dict[str, Any]:
    """``index.json`` as a dict holding an ``ids`` list and a known ``format``."""
    expected = "a JSON object with the index's ids and metadata"
    text = (folder / META_FILE).read_bytes()
    try:
        meta = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        found = "an empty file" if not text.strip() else f"text that is not JSON ({err})"
        raise _damaged(folder, META_FILE, expected, found) from None
    if not isinstance(meta, dict) or not isinstance(meta.get("ids"), list):
        found = (f"a JSON {type(meta).__name__}" if not isinstance(meta, dict)
                 else f"keys {sorted(meta)} (no 'ids' list)")
        raise _damaged(folder, META_FILE, expected, found)
    version = meta.get("format")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= FORMAT:
        raise _damaged(folder, META_FILE, f"format 1 to {FORMAT}", f"format {version!r} (written by a newer "
                       "polymodal, or not an index file)")
    return meta


def _as_batch(queries: Any) -> np.ndarray:
    """A single (D,) query vector as a (1, D) batch; anything else as it is."""
    queries = np.asarray(queries)
    return queries[None, :] if queries.ndim == 1 and queries.size else queries


def _normalised(vectors: np.ndarray) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) == 0:
        raise ValueError(f"expected a non-empty (N, D) array of vectors; got shape {vectors.shape}")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12))
