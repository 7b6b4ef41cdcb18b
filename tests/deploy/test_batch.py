"""Batch prediction: chunked, CSV or Parquet, identical to predict_frame, resumable.

The messages checked here are the command line's (``--out``, ``--resume``): each test runs as
``polymodal predict`` does (:func:`~polymodal.errors.command_line`); a Python call names
``out=``, ``resume=True`` (the last test here).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from polymodal import errors
from polymodal.deploy.batch import parts_folder, predict_to_file
from polymodal.errors import ManifestError, OptionError, SchemaMismatchError, command_line


@pytest.fixture(autouse=True)
def _as_a_command():
    with command_line():
        yield


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_chunks_give_the_same_table_as_one_pass(trained, dataset, tmp_path, suffix):
    predictor, _ = trained
    out = tmp_path / f"preds{suffix}"
    report = predict_to_file(predictor, dataset["test"], out, chunk_rows=7, progress=False)
    got = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    want = predictor.predict_frame(dataset["test"]).reset_index()
    assert report.rows == len(want) == 18 and report.chunks_done == 3
    assert list(got.columns) == list(want.columns) == ["row", "prediction", "proba_a", "proba_b", "proba_c", "absent"]
    assert got["row"].tolist() == list(range(18))
    assert got["prediction"].astype(str).tolist() == want["prediction"].astype(str).tolist()
    np.testing.assert_allclose(got[["proba_a", "proba_b", "proba_c"]], want[["proba_a", "proba_b", "proba_c"]], atol=1e-6)
    assert not parts_folder(out).exists()


def interrupt_after_two_chunks(predictor, dataset: dict, out: Path) -> None:
    """Predict the test manifest in chunks of 5 rows into ``out``, interrupted (Ctrl-C) after the second."""

    def stop_after_second(index: int) -> None:
        if index == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict_to_file(predictor, dataset["test"], out, chunk_rows=5, progress=False, on_chunk=stop_after_second)


def test_an_interrupted_run_resumes_where_it_stopped(trained, dataset, tmp_path, monkeypatch):
    predictor, _ = trained
    out = tmp_path / "preds.csv"
    interrupt_after_two_chunks(predictor, dataset, out)
    assert not out.exists() and len(list(parts_folder(out).glob("part-*.parquet"))) == 2
    seen = []
    original = predictor.predict_frame
    monkeypatch.setattr(predictor, "predict_frame", lambda m: seen.append(len(m)) or original(m))
    report = predict_to_file(predictor, dataset["test"], out, chunk_rows=5, resume=True, progress=False)
    assert report.chunks_resumed == 2 and report.chunks_done == 2 and seen == [5, 3]  # only rows 10..17 again
    got = pd.read_csv(out)
    want = original(dataset["test"]).reset_index()
    assert got["row"].tolist() == list(range(18))
    np.testing.assert_allclose(got["proba_b"], want["proba_b"], atol=1e-6)


def test_resume_refuses_parts_of_another_manifest(trained, dataset, tmp_path):
    predictor, _ = trained
    out = tmp_path / "preds.csv"
    with pytest.raises(KeyboardInterrupt):
        predict_to_file(predictor, dataset["test"], out, chunk_rows=5, progress=False,
                        on_chunk=stop)
    with pytest.raises(SchemaMismatchError, match="cannot resume.*chunk_rows 5.*chunk_rows 4.*--overwrite instead"):
        predict_to_file(predictor, dataset["test"], out, chunk_rows=4, resume=True, progress=False)
    report = predict_to_file(predictor, dataset["test"], out, chunk_rows=4, overwrite=True, progress=False)  # start over
    assert report.chunks_resumed == 0 and len(pd.read_csv(out)) == 18


def test_a_rerun_without_resume_keeps_the_finished_chunks(trained, dataset, tmp_path, monkeypatch):
    """Re-running an interrupted prediction without --resume deleted its finished chunks; it is
    refused, naming both ways on, and --overwrite starts over."""
    predictor, _ = trained
    out = tmp_path / "preds.csv"
    interrupt_after_two_chunks(predictor, dataset, out)
    parts = sorted(parts_folder(out).glob("part-*.parquet"))
    before = {p.name: p.read_bytes() for p in parts}
    assert len(before) == 2
    with pytest.raises(OptionError, match=r"2 chunk\(s\) of an interrupted prediction into it are already done.*"
                                          r"--resume to continue, --overwrite to start over"):
        predict_to_file(predictor, dataset["test"], out, chunk_rows=5, progress=False)
    assert {p.name: p.read_bytes() for p in sorted(parts_folder(out).glob("part-*.parquet"))} == before
    seen = []
    original = predictor.predict_frame
    monkeypatch.setattr(predictor, "predict_frame", lambda m: seen.append(len(m)) or original(m))
    report = predict_to_file(predictor, dataset["test"], out, chunk_rows=5, overwrite=True, progress=False)
    assert report.chunks_resumed == 0 and report.chunks_done == 4 and seen == [5, 5, 5, 3]  # every chunk again
    assert pd.read_csv(out)["row"].tolist() == list(range(18)) and not parts_folder(out).exists()



def test_resume_refuses_parts_made_under_another_on_error(trained, dataset, tmp_path):
    """Chunks made with skip (rows dropped) and missing (rows kept) are never joined into one output."""
    predictor, _ = trained
    out = tmp_path / "preds.csv"
    interrupt_after_two_chunks(predictor, dataset, out)
    before = predictor.config.data.on_error
    predictor.config.data.on_error = "skip" if before != "skip" else "missing"
    try:
        with pytest.raises(SchemaMismatchError, match=f"data.on_error {before} \\(now {predictor.config.data.on_error}\\)"):
            predict_to_file(predictor, dataset["test"], out, chunk_rows=5, resume=True, progress=False)
    finally:
        predictor.config.data.on_error = before

def test_resume_refuses_parts_an_earlier_version_wrote(trained, dataset, tmp_path):
    """Parts written before a version changed the output's columns would join into a torn file."""
    import json

    from polymodal.deploy.batch import STATE_FILE

    predictor, _ = trained
    out = tmp_path / "preds.csv"
    interrupt_after_two_chunks(predictor, dataset, out)
    state_file = parts_folder(out) / STATE_FILE
    state = json.loads(state_file.read_text())
    del state["format"]  # as written before the parts had a format
    state_file.write_text(json.dumps(state))
    with pytest.raises(SchemaMismatchError, match="written by another polymodal version"):
        predict_to_file(predictor, dataset["test"], out, chunk_rows=5, resume=True, progress=False)


def test_resume_refuses_parts_of_another_model(trained, dataset, tmp_path):
    """Partial predictions of this run before it was trained further are not mixed into the output."""
    import torch

    predictor, _ = trained
    out = tmp_path / "preds.csv"
    with pytest.raises(KeyboardInterrupt):
        predict_to_file(predictor, dataset["test"], out, chunk_rows=5, progress=False, on_chunk=stop)
    weight = next(p for p in predictor.net.parameters() if p.requires_grad)
    saved = weight.detach().clone()
    try:
        with torch.no_grad():
            weight.add_(0.5)  # "trained further"
        with pytest.raises(SchemaMismatchError, match="another model"):
            predict_to_file(predictor, dataset["test"], out, chunk_rows=5, resume=True, progress=False)
    finally:
        with torch.no_grad():
            weight.copy_(saved)
    report = predict_to_file(predictor, dataset["test"], out, chunk_rows=5, resume=True, progress=False)
    assert report.chunks_resumed == 1  # the same model again: its part is reused


def test_bad_output_and_manifest_are_refused_before_work(trained, dataset, tmp_path):
    predictor, _ = trained
    with pytest.raises(OptionError, match=r"--out: tables are written as .csv or .parquet; got 'p.xlsx'"):
        predict_to_file(predictor, dataset["test"], tmp_path / "p.xlsx")
    (tmp_path / "taken.csv").mkdir()
    with pytest.raises(OptionError, match="taken.csv is a folder"):
        predict_to_file(predictor, dataset["test"], tmp_path / "taken.csv")
    bad = dataset["frame"].iloc[:3].drop(columns=["image", "audio", "text", "x1", "color"])
    with pytest.raises(SchemaMismatchError, match="none of this model's modality columns"):
        predict_to_file(predictor, bad, tmp_path / "p.csv")
    with pytest.raises(ManifestError, match=f"manifest file not found: {tmp_path / 'nope.csv'}"):  # as evaluate says
        predict_to_file(predictor, tmp_path / "nope.csv", tmp_path / "p.csv")
    assert not parts_folder(tmp_path / "p.csv").exists()


def test_an_out_inside_a_file_is_refused_before_work_as_every_out_is(trained, dataset, tmp_path):
    """``--out base.yaml/sub/p.csv`` passed the check (only the folder right above was looked at)
    and failed when the parts folder was made."""
    predictor, _ = trained
    taken = tmp_path / "base.yaml"
    taken.write_text("mine")
    for out in (taken / "p.csv", taken / "sub" / "p.csv"):
        with pytest.raises(OptionError, match=f"^--out: {re.escape(str(taken))} is a file, not a folder$"):
            predict_to_file(predictor, dataset["test"], out, progress=False)
    assert taken.read_text() == "mine"


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc, where no file can be made")
def test_an_out_in_a_folder_that_cannot_be_written_names_the_option_not_the_parts_folder(trained, dataset):
    """It said "No such file or directory: /proc/.p.csv.parts" (the hidden parts folder), once the
    manifest had been read."""
    predictor, _ = trained
    with pytest.raises(OptionError, match=r"^--out: the folder /proc cannot be written \(No such file or directory\)$"):
        predict_to_file(predictor, dataset["test"], "/proc/p.csv", progress=False)
    with pytest.raises(OptionError, match="^--out: the folder /proc cannot be written"):
        predict_to_file(predictor, dataset["test"], "/proc/new/p.csv", progress=False)  # made where it exists


def test_resume_of_a_finished_prediction_has_nothing_to_resume(trained, dataset, tmp_path, monkeypatch):
    """It said "--out ... already exists; give --overwrite to replace it", as for any other file."""
    predictor, _ = trained
    out = tmp_path / "preds.csv"
    predict_to_file(predictor, dataset["test"], out, chunk_rows=5, progress=False)
    before = out.read_bytes()
    calls = []
    monkeypatch.setattr(predictor, "predict_frame", lambda m: calls.append(len(m)))
    with pytest.raises(OptionError, match=rf"^--resume: {re.escape(str(out))} is finished \(every row predicted\); nothing to "
                                          r"resume: give --overwrite to predict again$"):
        predict_to_file(predictor, dataset["test"], out, chunk_rows=5, resume=True, progress=False)
    assert out.read_bytes() == before and calls == [] and not parts_folder(out).exists()
    with pytest.raises(OptionError, match="already exists; give --overwrite to replace it"):  # without --resume
        predict_to_file(predictor, dataset["test"], out, chunk_rows=5, progress=False)


def test_resume_into_an_out_an_interrupted_prediction_kept_continues(trained, dataset, tmp_path, monkeypatch):
    """A file at ``out`` beside the parts of an interrupted prediction into it (an earlier finished
    one, re-run with --overwrite and interrupted) is no finished prediction: --resume continues."""
    predictor, _ = trained
    out = tmp_path / "preds.csv"
    predict_to_file(predictor, dataset["test"], out, chunk_rows=5, progress=False)
    with pytest.raises(KeyboardInterrupt):
        predict_to_file(predictor, dataset["test"], out, chunk_rows=5, overwrite=True, progress=False, on_chunk=stop)
    report = predict_to_file(predictor, dataset["test"], out, chunk_rows=5, resume=True, progress=False)
    assert report.chunks_resumed == 1 and report.chunks_done == 3 and not parts_folder(out).exists()
    assert pd.read_csv(out)["row"].tolist() == list(range(18))


def with_bad_images(dataset: dict, folder: Path, rows: list[int]) -> pd.DataFrame:
    """The test manifest (absolute paths: the copy lives in ``folder``) with ``rows``' images corrupt."""
    frame = pd.read_csv(dataset["test"])
    for column in ("image", "audio"):
        frame[column] = [str(dataset["root"] / p) if isinstance(p, str) else p for p in frame[column]]
    for row in rows:
        (folder / f"bad{row}.png").write_bytes(b"not a png")
        frame.loc[row, "image"] = str(folder / f"bad{row}.png")
    return frame


def stop(index: int) -> None:
    raise KeyboardInterrupt


def test_skipped_rows_are_listed_beside_the_predictions_across_a_resume(trained, dataset, tmp_path, monkeypatch):
    predictor, _ = trained
    monkeypatch.setattr(predictor.config.data, "on_error", "skip")
    frame = with_bad_images(dataset, tmp_path, [1, 7])  # chunks 0 and 1 of 5 rows
    out = tmp_path / "preds.parquet"
    with pytest.raises(KeyboardInterrupt):
        predict_to_file(predictor, frame, out, chunk_rows=5, progress=False,
                        on_chunk=stop)
    report = predict_to_file(predictor, frame, out, chunk_rows=5, resume=True, progress=False)
    assert report.chunks_resumed == 1 and report.rows == 16
    assert 1 not in pd.read_parquet(out)["row"].tolist() and 7 not in pd.read_parquet(out)["row"].tolist()
    listed = pd.read_csv(tmp_path / "preds.skipped.csv")
    assert report.skipped_file == tmp_path / "preds.skipped.csv"
    assert listed["row"].tolist() == [1, 7] and listed["modality"].tolist() == ["image", "image"]
    assert listed["where"].tolist() == ["DataFrame row 1", "DataFrame row 7"]
    predict_to_file(predictor, frame.drop(index=[1, 7]), out, overwrite=True, progress=False)
    assert not (tmp_path / "preds.skipped.csv").exists()  # a clean run leaves no stale list


def test_a_support_set_needs_a_few_shot_model(trained, dataset, tmp_path):
    predictor, _ = trained
    with pytest.raises(SchemaMismatchError, match="protonet"):
        predict_to_file(predictor, dataset["test"], tmp_path / "p.csv", support=dataset["train"], progress=False)
    assert not (tmp_path / "p.csv").exists()
    assert not parts_folder(tmp_path / "p.csv").exists()  # refused before the parts folder is made


def read(out: Path) -> pd.DataFrame:
    return pd.read_csv(out) if out.suffix == ".csv" else pd.read_parquet(out)


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_a_chunk_with_every_row_skipped_joins_with_the_others(trained, dataset, tmp_path, monkeypatch, suffix):
    predictor, _ = trained
    monkeypatch.setattr(predictor.config.data, "on_error", "skip")
    want = predictor.predict_frame(dataset["test"]).reset_index()
    out = tmp_path / f"preds{suffix}"
    report = predict_to_file(predictor, with_bad_images(dataset, tmp_path, [0, 1, 2, 3]), out, chunk_rows=4,
                             progress=False)  # chunk 0 is an empty part
    got = read(out)
    assert report.rows == 14 and got["row"].tolist() == list(range(4, 18))
    assert list(got.columns) == list(want.columns)
    assert got["prediction"].tolist() == want["prediction"].iloc[4:].tolist()
    np.testing.assert_allclose(got["proba_a"], want["proba_a"].iloc[4:], atol=1e-6)
    assert report.skipped["row"].tolist() == [0, 1, 2, 3]
    assert pd.read_csv(tmp_path / "preds.skipped.csv")["row"].tolist() == [0, 1, 2, 3]
    assert not parts_folder(out).exists()


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_every_row_skipped_gives_an_empty_table_with_the_columns(trained, dataset, tmp_path, monkeypatch, suffix):
    predictor, _ = trained
    monkeypatch.setattr(predictor.config.data, "on_error", "skip")
    out = tmp_path / f"preds{suffix}"
    report = predict_to_file(predictor, with_bad_images(dataset, tmp_path, list(range(18))), out, chunk_rows=8,
                             progress=False)
    got = read(out)
    assert report.rows == 0 and got.empty
    assert list(got.columns) == ["row", "prediction", "proba_a", "proba_b", "proba_c", "absent"]
    assert report.skipped["row"].tolist() == list(range(18))
    assert not parts_folder(out).exists()


def test_a_file_fixed_before_resume_is_no_longer_listed_as_skipped(trained, dataset, tmp_path, monkeypatch):
    predictor, _ = trained
    monkeypatch.setattr(predictor.config.data, "on_error", "skip")
    frame = with_bad_images(dataset, tmp_path, [1])
    out = tmp_path / "preds.parquet"
    with pytest.raises(KeyboardInterrupt):
        predict_to_file(predictor, frame, out, chunk_rows=5, progress=False, on_chunk=stop)
    parts = parts_folder(out)
    assert (parts / "skipped-000000.parquet").is_file()
    (parts / "part-000000.parquet").unlink()  # interrupted after chunk 0's skipped list, before its part
    good = next(p for p in frame["image"] if isinstance(p, str) and "bad" not in p)
    (tmp_path / "bad1.png").write_bytes(Path(good).read_bytes())  # the file is fixed before resuming
    report = predict_to_file(predictor, frame, out, chunk_rows=5, resume=True, progress=False)
    assert report.chunks_done == 4 and report.chunks_resumed == 0
    assert report.rows == 18 and pd.read_parquet(out)["row"].tolist() == list(range(18))
    assert report.skipped.empty and report.skipped_file is None
    assert not (tmp_path / "preds.skipped.csv").exists()


def test_resume_refuses_parts_of_a_manifest_edited_in_place(trained, dataset, tmp_path):
    predictor, _ = trained
    manifest = tmp_path / "rows.csv"
    frame = pd.read_csv(dataset["test"], keep_default_na=False)
    for column in ("image", "audio"):  # the copy lives elsewhere: its file paths become absolute
        frame[column] = [str(dataset["root"] / p) if p else "" for p in frame[column]]
    frame.to_csv(manifest, index=False)
    out = tmp_path / "preds.csv"
    with pytest.raises(KeyboardInterrupt):
        predict_to_file(predictor, manifest, out, chunk_rows=5, progress=False, on_chunk=stop)
    frame.loc[7, "x1"] = "99.0"  # same file, same row count, same chunk size: other content
    frame.to_csv(manifest, index=False)
    with pytest.raises(SchemaMismatchError, match=r"cannot resume.*, content changed since \(a cell edited"):
        predict_to_file(predictor, manifest, out, chunk_rows=5, resume=True, progress=False)


def test_resume_with_nothing_to_resume_says_so_and_predicts_every_row(trained, dataset, tmp_path):
    predictor, _ = trained
    with pytest.warns(UserWarning, match="--resume: no interrupted prediction into .*preds.csv to continue"):
        report = predict_to_file(predictor, dataset["test"], tmp_path / "preds.csv", resume=True, progress=False)
    assert report.rows == 18 and report.chunks_resumed == 0


def test_an_existing_out_is_replaced_only_when_asked_and_never_the_manifest(trained, dataset, tmp_path):
    from polymodal.errors import OptionError

    predictor, _ = trained
    manifest = dataset["root"] / "test_guarded.csv"  # beside the files it names
    manifest.write_bytes(dataset["test"].read_bytes())
    before = manifest.read_bytes()
    with pytest.raises(OptionError, match="is the manifest being predicted"):
        predict_to_file(predictor, manifest, manifest, overwrite=True, progress=False)
    mine = tmp_path / "keep.csv"
    mine.write_text("hello\n")
    with pytest.raises(OptionError, match="already exists; give --overwrite"):
        predict_to_file(predictor, manifest, mine, progress=False)
    assert mine.read_text() == "hello\n" and manifest.read_bytes() == before
    predict_to_file(predictor, manifest, mine, overwrite=True, progress=False)
    assert list(pd.read_csv(mine)["row"]) == list(range(len(pd.read_csv(manifest))))


def test_a_chunked_prediction_checks_and_warns_once(trained, dataset, tmp_path):
    import warnings

    predictor, _ = trained
    manifest = dataset["root"] / "test_no_x1.csv"  # beside the files it names
    pd.read_csv(dataset["test"]).drop(columns=["x1"]).to_csv(manifest, index=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predict_to_file(predictor, manifest, tmp_path / "p.csv", chunk_rows=3, progress=False)
    absent = [str(w.message) for w in caught if "has no column 'x1'" in str(w.message)]
    assert len(absent) == 1, absent  # the chunks are views of the checked manifest, not read again


def test_kept_columns_follow_row_for_the_rows_predicted(trained, dataset, tmp_path, monkeypatch):
    predictor, _ = trained
    monkeypatch.setattr(predictor.config.data, "on_error", "skip")
    frame = with_bad_images(dataset, tmp_path, [2])
    frame["id"] = [f"patient-{i:03d}" for i in range(len(frame))]
    out = tmp_path / "preds.parquet"
    predict_to_file(predictor, frame, out, chunk_rows=5, keep=["id", "label"], progress=False)
    got = pd.read_parquet(out)
    assert list(got.columns[:4]) == ["row", "id", "label", "prediction"]
    assert got["id"].tolist() == [f"patient-{r:03d}" for r in got["row"]] and 2 not in got["row"].tolist()
    assert got["label"].tolist() == frame["label"].drop(index=2).tolist()
    with pytest.raises(OptionError) as info:
        predict_to_file(predictor, frame, tmp_path / "p2.csv", keep=["ID", "id", "id"], progress=False)
    assert info.value.problems == [
        "--keep ID: not a column of DataFrame (did you mean 'id'?) (columns: ['image', 'audio', 'text', 'x1', "
        "'color', 'label', 'id'])",
        "--keep id: named twice"]
    with pytest.raises(OptionError) as info:  # found with the first chunk, before it is written
        predict_to_file(predictor, frame.assign(prediction="x"), tmp_path / "p2.csv", keep=["prediction"],
                        progress=False)
    assert info.value.problems == ["--keep prediction: the predictions have a column of that name (['row', "
                                   "'prediction', 'proba_a', 'proba_b', 'proba_c', 'absent'])"]
    assert not (tmp_path / "p2.csv").exists()


def test_resume_refuses_parts_made_with_other_kept_columns(trained, dataset, tmp_path):
    predictor, _ = trained
    out = tmp_path / "preds.csv"
    with pytest.raises(KeyboardInterrupt):
        predict_to_file(predictor, dataset["test"], out, chunk_rows=5, progress=False, on_chunk=stop)
    with pytest.raises(SchemaMismatchError, match=r"--keep \[\] \(now \['label'\]\)") as info:
        predict_to_file(predictor, dataset["test"], out, chunk_rows=5, resume=True, keep=["label"], progress=False)
    assert "content changed" not in str(info.value)  # the kept column read as text is not another manifest
    kept = tmp_path / "kept.csv"
    with pytest.raises(KeyboardInterrupt):
        predict_to_file(predictor, dataset["test"], kept, chunk_rows=5, progress=False, keep=["label"], on_chunk=stop)
    edited = pd.read_csv(dataset["test"]).assign(label=lambda f: f["label"].astype(str) + "x")
    edited.to_csv(dataset["root"] / "edited_labels.csv", index=False)  # beside the files it names
    with pytest.raises(SchemaMismatchError, match=r"content changed since \(a cell edited"):
        predict_to_file(predictor, dataset["root"] / "edited_labels.csv", kept, chunk_rows=5, resume=True, keep=["label"],
                        progress=False)  # (another file name too: it is the content that is compared)


def test_kept_csv_ids_stay_as_written(trained, dataset, tmp_path):
    predictor, _ = trained
    frame = pd.read_csv(dataset["test"])
    frame["id"] = [f"{i:05d}" if i != 3 else "" for i in range(len(frame))]  # zeros, and a blank cell
    path = dataset["root"] / "test_with_ids.csv"
    frame.to_csv(path, index=False)
    out = tmp_path / "p.parquet"
    predict_to_file(predictor, path, out, keep=["id"], progress=False)
    got = pd.read_parquet(out)["id"].tolist()
    assert got[:3] == ["00000", "00001", "00002"] and got[4] == "00004" and pd.isna(got[3])  # blank: missing
    with pytest.raises(OptionError, match="--keep ident: not a column of test_with_ids.csv"):
        predict_to_file(predictor, path, tmp_path / "q.csv", keep=["ident"], progress=False)


def test_a_second_prediction_into_the_same_out_is_refused_while_the_first_runs(trained, dataset, tmp_path):
    """Two predictions into one file mixed their chunks: each reused the other's parts."""
    predictor, _ = trained
    out = tmp_path / "preds.csv"
    refused = []

    def second_prediction(index: int) -> None:
        if index == 0:
            with pytest.raises(OptionError, match="is being written by another prediction") as info:
                predict_to_file(predictor, dataset["test"], out, chunk_rows=5, progress=False, overwrite=True)
            refused.append(str(info.value))

    predict_to_file(predictor, dataset["test"], out, chunk_rows=5, progress=False, on_chunk=second_prediction)
    assert len(refused) == 1 and len(pd.read_csv(out)) == 18
    assert not (tmp_path / ".preds.csv.lock").exists()  # released with the prediction
    predict_to_file(predictor, dataset["test"], out, chunk_rows=5, progress=False, overwrite=True)  # free again


def emptied(dataset: dict, folder: Path, rows: list[int], columns: list[str]) -> pd.DataFrame:
    """The test manifest (absolute paths) with ``columns`` empty in ``rows``: every input of the
    model reading them, so that ``data.on_error: missing`` keeps those rows without a prediction."""
    frame = with_bad_images(dataset, folder, [])
    frame.loc[rows, columns] = None
    return frame


def chunked_and_one_pass(predictor, frame: pd.DataFrame, folder: Path, suffix: str):
    """``frame`` predicted in chunks of 4 rows and in one chunk: (report, table) of each."""
    results = []
    for chunk_rows in (4, len(frame)):
        out = folder / f"preds{chunk_rows}{suffix}"
        with pytest.warns(UserWarning, match="kept, with NaN predictions"):
            report = predict_to_file(predictor, frame, out, chunk_rows=chunk_rows, progress=False)
        results.append((report, read(out)))
    return results


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_a_chunk_of_rows_without_a_prediction_joins_with_the_types_of_one_pass(trained, dataset, tmp_path,
                                                                             monkeypatch, suffix):
    """Under on_error: missing, a chunk whose every row has no modality present (all its predictions
    null) joins with the others, and the output's columns have the types one chunk gives them."""
    predictor, _ = trained
    monkeypatch.setattr(predictor.config.data, "on_error", "missing")
    frame = emptied(dataset, tmp_path, [4, 5, 6, 7], ["image", "audio", "text", "x1", "color"])  # chunk 1 of 4 rows
    (chunked, got), (whole, want) = chunked_and_one_pass(predictor, frame, tmp_path, suffix)
    assert chunked.chunks_done == 5 and chunked.rows == whole.rows == 18
    assert chunked.unpredicted == whole.unpredicted == 4
    assert got["prediction"].isna().tolist() == [row in (4, 5, 6, 7) for row in range(18)]
    assert set(got.loc[4, "absent"].split(", ")) == {"image", "audio", "notes", "labs"}
    pd.testing.assert_frame_equal(got, want, atol=1e-5)  # dtypes included


@pytest.fixture(scope="module")
def multilabel(dataset):
    """A tabular multilabel model (one epoch: its columns, not their quality, matter)."""
    from polymodal import MultimodalPredictor

    frame = dataset["frame"].assign(tag_a=lambda f: (f["label"] == "a").astype(int),
                                    tag_b=lambda f: (f["label"] != "c").astype(int))
    config = {"task": "multilabel", "target": ["tag_a", "tag_b"],
              "modalities": {"labs": {"kind": "tabular", "columns": ["x1"], "categorical": ["color"],
                                      "encoder": {"dim": 8, "hidden": [16]}}},
              "fusion": {"name": "concat"}, "head": {"name": "mlp", "hidden": [8]}, "report": {"rows": 0},
              "train": {"epochs": 1, "batch_size": 8, "seed": 0, "progress": False, "num_workers": 0}}
    return MultimodalPredictor.from_config(config).fit(frame.iloc[:42], frame.iloc[42:])


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_multilabel_predictions_a_missing_row_makes_float_are_float_in_every_chunk(multilabel, dataset, tmp_path,
                                                                                  monkeypatch, suffix):
    """A multilabel pred_ column is 0/1 integers in a chunk where every row is predicted, floats
    (NaN) in one with a row left without a prediction: the join refused the Parquet parts, and the
    CSV wrote 1 in some chunks and 1.0 in others; both are now as one chunk writes them."""
    monkeypatch.setattr(multilabel.config.data, "on_error", "missing")
    frame = emptied(dataset, tmp_path, [4, 5, 6, 7], ["x1", "color"])
    (chunked, got), (_, want) = chunked_and_one_pass(multilabel, frame, tmp_path, suffix)
    assert chunked.unpredicted == 4 and got["pred_tag_a"].isna().tolist() == [row in (4, 5, 6, 7) for row in range(18)]
    pd.testing.assert_frame_equal(got, want, atol=1e-5)
    if suffix == ".csv":  # spelled alike in every chunk
        spelled = [pd.read_csv(tmp_path / f"preds{n}.csv", dtype=str)[["pred_tag_a", "pred_tag_b"]] for n in (4, 18)]
        pd.testing.assert_frame_equal(*spelled)
        assert set(spelled[0].stack().dropna()) <= {"0.0", "1.0"}  # never 1 in one chunk, 1.0 in another


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_integer_class_labels_are_spelled_alike_in_every_chunk(dataset, tmp_path, monkeypatch, suffix):
    """A classifier of integer labels: a chunk holding a row without a prediction (null) wrote its
    labels as 2.0 in a CSV, the other chunks 2."""
    from polymodal import MultimodalPredictor

    frame = dataset["frame"].assign(label=lambda f: f["label"].map({"a": 0, "b": 1, "c": 2}))
    config = {"task": "classification", "target": "label",
              "modalities": {"labs": {"kind": "tabular", "columns": ["x1"], "categorical": ["color"],
                                      "encoder": {"dim": 8, "hidden": [16]}}},
              "fusion": {"name": "concat"}, "head": {"name": "mlp", "hidden": [8]}, "report": {"rows": 0},
              "train": {"epochs": 1, "batch_size": 8, "seed": 0, "progress": False, "num_workers": 0}}
    predictor = MultimodalPredictor.from_config(config).fit(frame.iloc[:42], frame.iloc[42:])
    monkeypatch.setattr(predictor.config.data, "on_error", "missing")
    emptied_frame = emptied(dataset, tmp_path, [5], ["x1", "color"]).assign(label=frame["label"])
    (chunked, got), (_, want) = chunked_and_one_pass(predictor, emptied_frame, tmp_path, suffix)
    assert chunked.unpredicted == 1 and got["prediction"].isna().tolist() == [row == 5 for row in range(18)]
    pd.testing.assert_frame_equal(got, want, atol=1e-5)
    if suffix == ".csv":
        spelled = pd.read_csv(tmp_path / "preds4.csv", dtype=str)["prediction"].dropna()
        assert set(spelled) <= {"0", "1", "2"}, set(spelled)  # never 2.0 beside 2


def test_a_python_call_is_told_its_arguments(trained, dataset, tmp_path):
    """``predict_to_file(..., out=...)`` in a notebook was told to give ``--overwrite``."""
    predictor, _ = trained
    out = tmp_path / "preds.csv"
    out.write_text("row,prediction\n", encoding="utf-8")
    errors._command_line = False  # a Python call, outside the command_line() this file's tests run in
    try:
        with pytest.raises(OptionError, match=rf"^{re.escape(str(out))} \(out=\) already exists; give overwrite=True "
                                              r"to replace it, or another out=$"):
            predict_to_file(predictor, dataset["test"], out, progress=False)
        with pytest.raises(OptionError, match="^keep nope: not a column of test.csv"):
            predict_to_file(predictor, dataset["test"], tmp_path / "other.csv", progress=False, keep=["nope"])
    finally:
        errors._command_line = True
