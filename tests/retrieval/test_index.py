"""The FAISS index (exact cosine search, saved and loaded as files, no pickle) and the embedding
table format."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from polymodal.errors import ManifestError, OptionError, SchemaMismatchError
from polymodal.retrieval.embed import load_embeddings, save_embeddings
from polymodal.retrieval.index import EmbeddingIndex


def unit_rows(n: int, d: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_search_matches_brute_force_cosine_ranking() -> None:
    gallery, queries = unit_rows(50, 8, 0), unit_rows(7, 8, 1)
    index = EmbeddingIndex.build(3.0 * gallery)  # scale does not matter: vectors are normalised
    scores, positions = index.search(queries, k=5)
    sims = queries @ gallery.T
    expected = np.argsort(-sims, axis=1)[:, :5]
    assert np.array_equal(positions, expected)
    assert np.allclose(scores, np.take_along_axis(sims, expected, axis=1), atol=1e-5)


def test_query_scale_does_not_change_ids_or_scores() -> None:
    gallery, queries = unit_rows(30, 8, 4), unit_rows(5, 8, 5)
    index = EmbeddingIndex.build(gallery)
    unit_scores, unit_positions = index.search(queries, k=4)
    scores, positions = index.search(3.0 * queries, k=4)  # scores are cosines, not dot products
    assert np.array_equal(positions, unit_positions)
    assert np.allclose(scores, unit_scores, atol=1e-6)
    assert scores.max() <= 1.0 + 1e-5


def test_index_saved_and_loaded_gives_identical_results(tmp_path) -> None:
    gallery, queries = unit_rows(40, 6, 2), unit_rows(9, 6, 3)
    ids = [f"item{i}" for i in range(40)]
    index = EmbeddingIndex.build(gallery, ids, {"modality": "image", "model": "abc"})
    folder = index.save(tmp_path / "idx")
    assert sorted(p.name for p in folder.iterdir()) == ["index.faiss", "index.json"]
    assert json.loads((folder / "index.json").read_text())["ids"] == ids
    again = EmbeddingIndex.load(folder)
    assert again.meta == {"modality": "image", "model": "abc"} and again.ids == ids and again.dim == 6
    before, after = index.search_frame(queries, 4), again.search_frame(queries, 4)
    pd.testing.assert_frame_equal(before, after)
    assert before["id"].iloc[0] == ids[int(np.argmax(queries[0] @ gallery.T))]
    assert before["rank"].tolist()[:4] == [1, 2, 3, 4]


def test_k_is_capped_at_the_gallery_size_and_bad_queries_are_refused() -> None:
    index = EmbeddingIndex.build(unit_rows(3, 4, 0))
    scores, _ = index.search(unit_rows(2, 4, 1), k=10)
    assert scores.shape == (2, 3)
    with pytest.raises(SchemaMismatchError, match="5-d but the index holds 4-d"):
        index.search(unit_rows(2, 5, 1))
    with pytest.raises(ValueError, match="k must be at least 1"):
        index.search(unit_rows(2, 4, 1), k=0)


def test_a_single_query_vector_is_answered_as_a_batch_of_one() -> None:
    """A (D,) vector (one row of an embedding table) is one query: (1, k) results, the same as
    for the (1, D) batch holding it; search_frame names it query 0."""
    gallery, queries = unit_rows(20, 4, 0), unit_rows(3, 4, 1)
    index = EmbeddingIndex.build(gallery)
    scores, positions = index.search(queries[1], k=3)
    batch_scores, batch_positions = index.search(queries[1:2], k=3)
    assert scores.shape == positions.shape == (1, 3)
    assert np.array_equal(positions, batch_positions) and np.allclose(scores, batch_scores)
    assert positions[0, 0] == int(np.argmax(gallery @ queries[1]))
    frame = index.search_frame(queries[1], k=3)
    assert frame["query"].tolist() == [0, 0, 0] and frame["id"].tolist() == positions[0].tolist()
    with pytest.raises(SchemaMismatchError, match="5-d but the index holds 4-d"):
        index.search(np.ones(5, np.float32))
    with pytest.raises(ValueError, match="expected a non-empty"):
        index.search(np.ones(0, np.float32))


def test_loading_a_folder_without_an_index_names_the_missing_file(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="index.faiss not found"):
        EmbeddingIndex.load(tmp_path)


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_embedding_table_round_trip(tmp_path, suffix: str) -> None:
    values = unit_rows(5, 3, 4)
    frame = pd.DataFrame(values, index=pd.Index([0, 2, 3, 7, 9], name="row"), columns=["e0", "e1", "e2"])
    again = load_embeddings(save_embeddings(frame, tmp_path / f"emb{suffix}"))
    pd.testing.assert_frame_equal(again, frame.astype(np.float32))


def test_embedding_tables_refuse_other_formats_and_columns(tmp_path) -> None:
    frame = pd.DataFrame({"e0": [1.0]}, index=pd.Index([0], name="row"))
    with pytest.raises(OptionError, match=r"path: tables are written as .csv or .parquet; got 'emb.npy'"):
        save_embeddings(frame, tmp_path / "emb.npy")
    pd.DataFrame({"row": [0], "x": [1.0]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ManifestError, match="expected columns row, e0"):
        load_embeddings(tmp_path / "bad.csv")


def test_faiss_positions_of_minus_one_are_dropped_not_named_by_the_last_id() -> None:
    """FAISS answers -1 where it found nothing (a query holding NaN): no row may say ids[-1]."""
    index = EmbeddingIndex.build(unit_rows(4, 3, 0), ["a", "b", "c", "d"])
    queries = unit_rows(2, 3, 1)
    queries[1, 0] = np.nan
    _, positions = index.search(queries, k=4)
    assert (positions[1] == -1).all()
    hits = index.search_frame(queries, k=4, query_ids=["q0", "q1"])
    assert hits["query"].tolist() == ["q0"] * 4 and sorted(hits["id"]) == ["a", "b", "c", "d"]


@pytest.fixture
def saved(tmp_path):
    return EmbeddingIndex.build(unit_rows(5, 4, 0), [f"i{k}" for k in range(5)], {"model": "m"}).save(tmp_path / "idx")


@pytest.mark.parametrize("damage, fragments", [
    (lambda f: (f / "index.json").write_text(""), ["index.json should hold a JSON object", "found an empty file"]),
    (lambda f: (f / "index.json").write_text((f / "index.json").read_text()[:40]),
     ["index.json should hold a JSON object", "text that is not JSON"]),
    (lambda f: (f / "index.json").write_text('["i0"]'), ["index.json", "found a JSON list"]),
    (lambda f: (f / "index.faiss").write_bytes((f / "index.faiss").read_bytes()[:60]),
     ["index.faiss should hold a FAISS index", "a truncated or foreign file (FAISS: read error"]),
    (lambda f: (f / "index.json").write_text(json.dumps({**json.loads((f / "index.json").read_text()),
                                                         "ids": ["i0", "i1", "i2"]})),
     ["index.faiss should hold 3 vectors, one per id in index.json; found 5 vectors"]),
    (lambda f: (f / "index.json").write_text(json.dumps({**json.loads((f / "index.json").read_text()), "format": 9})),
     ["index.json should hold format 1 to 2; found format 9"]),
], ids=["empty-json", "truncated-json", "json-list", "truncated-faiss", "fewer-ids", "newer-format"])
def test_a_damaged_index_folder_names_the_file_what_was_expected_and_found(saved, damage, fragments) -> None:
    from polymodal.errors import RunFolderError

    damage(saved)
    with pytest.raises(RunFolderError) as caught:
        EmbeddingIndex.load(saved)
    message = str(caught.value)
    assert f"the index {saved} is damaged" in message and "Rebuild it with 'polymodal index build'" in message
    for fragment in fragments:
        assert fragment in message, message


def test_an_index_saved_in_format_1_keeps_its_model_file_digest_apart(saved) -> None:
    meta = json.loads((saved / "index.json").read_text())
    (saved / "index.json").write_text(json.dumps({**meta, "format": 1, "model": "filedigest"}))
    loaded = EmbeddingIndex.load(saved)
    assert loaded.meta == {"model_file": "filedigest"} and len(loaded) == 5


def test_build_refuses_repeated_or_missing_ids_as_build_index_does() -> None:
    """One check (index.id_problems) for EmbeddingIndex.build and build_index: hits named by a
    repeated id would not say which item they are."""
    with pytest.raises(ValueError, match="ids: 'a' names 2 vectors: position 0, position 1; ids must be unique"):
        EmbeddingIndex.build(unit_rows(3, 4, 0), ["a", "a", "b"])
    with pytest.raises(ValueError, match="ids is empty at 1 indexed vector\\(s\\): position 1; every item needs an id"):
        EmbeddingIndex.build(unit_rows(3, 4, 0), ["a", None, "b"])
    with pytest.raises(ValueError, match="3 vectors but 2 ids were given"):
        EmbeddingIndex.build(unit_rows(3, 4, 0), ["a", "b"])
    assert EmbeddingIndex.build(unit_rows(3, 4, 0), ["a", "b", "c"]).ids == ["a", "b", "c"]


def test_an_index_is_replaced_whole_only_when_asked_and_an_interrupted_save_keeps_the_old(tmp_path, monkeypatch):
    """A save killed between its two files paired the new vectors with the old ids: retrieval then
    named the wrong items without an error."""
    from polymodal.errors import RunFolderError
    from polymodal.retrieval import index as module

    old = EmbeddingIndex.build(unit_rows(5, 4, 0), [f"old{k}" for k in range(5)])
    new = EmbeddingIndex.build(unit_rows(6, 4, 1), [f"new{k}" for k in range(6)])
    folder = old.save(tmp_path / "idx")
    with pytest.raises(RunFolderError, match="already holds an index; give overwrite=True to replace it"):
        new.save(folder)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "atomic_write_json", killed)  # after the vectors, before the ids
    with pytest.raises(KeyboardInterrupt):
        new.save(folder, overwrite=True)
    monkeypatch.undo()
    kept = EmbeddingIndex.load(folder)
    assert kept.ids == old.ids and len(kept) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]  # no staging folder left
    new.save(folder, overwrite=True)
    assert EmbeddingIndex.load(folder).ids == new.ids
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(RunFolderError, match=r"holds other files \(notes.txt\)"):
        new.save(tmp_path / "mine", overwrite=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_an_index_saved_as_dot_or_through_a_symlink_lands_in_the_folder_named(tmp_path, monkeypatch):
    """'--out .' crashed (a path with no name to stage beside); a symlink was replaced by a folder."""
    index = EmbeddingIndex.build(unit_rows(4, 3, 0), ["a", "b", "c", "d"])
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    index.save(".")
    assert EmbeddingIndex.load(tmp_path / "here").ids == ["a", "b", "c", "d"]
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    index.save(tmp_path / "link")
    assert (tmp_path / "link").is_symlink() and EmbeddingIndex.load(tmp_path / "real").ids == ["a", "b", "c", "d"]


def test_an_index_prints_what_it_holds_not_its_address() -> None:
    index = EmbeddingIndex.build(unit_rows(5, 3, 0), meta={"modality": "image"}, columns={"label": list("abcde")})
    assert repr(index) == "EmbeddingIndex(5 vectors of dim 3, modality='image', columns=['label'])"
