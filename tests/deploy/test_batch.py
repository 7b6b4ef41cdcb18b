"""Batch prediction: chunked, CSV or Parquet, identical to predict_frame, resumable."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from polymodal.deploy.batch import parts_folder, predict_to_file
from polymodal.errors import SchemaMismatchError


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_chunks_give_the_same_table_as_one_pass(trained, dataset, tmp_path, suffix):
    predictor, _ = trained
    out = tmp_path / f"preds{suffix}"
    report = predict_to_file(predictor, dataset["test"], out, chunk_rows=7, progress=False)
    got = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    want = predictor.predict_frame(dataset["test"]).reset_index()
    assert report.rows == len(want) == 18 and report.chunks_done == 3
    assert list(got.columns) == list(want.columns) == ["row", "prediction", "proba_a", "proba_b", "proba_c"]
    assert got["row"].tolist() == list(range(18))
    assert got["prediction"].astype(str).tolist() == want["prediction"].astype(str).tolist()
    np.testing.assert_allclose(got[["proba_a", "proba_b", "proba_c"]], want[["proba_a", "proba_b", "proba_c"]], atol=1e-6)
    assert not parts_folder(out).exists()


def test_an_interrupted_run_resumes_where_it_stopped(trained, dataset, tmp_path, monkeypatch):
    predictor, _ = trained
    out = tmp_path / "preds.csv"

    def stop_after_second(index: int) -> None:
        if index == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict_to_file(predictor, dataset["test"], out, chunk_rows=5, progress=False, on_chunk=stop_after_second)
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
                        on_chunk=lambda i: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(SchemaMismatchError, match="cannot resume.*chunk_rows 5.*chunk_rows 4"):
        predict_to_file(predictor, dataset["test"], out, chunk_rows=4, resume=True, progress=False)
    report = predict_to_file(predictor, dataset["test"], out, chunk_rows=4, progress=False)  # no resume: start over
    assert report.chunks_resumed == 0 and len(pd.read_csv(out)) == 18


def test_bad_output_and_manifest_are_refused_before_work(trained, dataset, tmp_path):
    predictor, _ = trained
    with pytest.raises(SchemaMismatchError, match=r"\['.csv', '.parquet'\]; got 'p.xlsx'"):
        predict_to_file(predictor, dataset["test"], tmp_path / "p.xlsx")
    bad = dataset["frame"].iloc[:3].drop(columns=["image", "audio", "text", "x1", "color"])
    with pytest.raises(SchemaMismatchError, match="none of this model's modality columns"):
        predict_to_file(predictor, bad, tmp_path / "p.csv")
    assert not parts_folder(tmp_path / "p.csv").exists()


def test_skipped_rows_are_listed_beside_the_predictions_across_a_resume(trained, dataset, tmp_path, monkeypatch):
    predictor, _ = trained
    monkeypatch.setattr(predictor.config.data, "on_error", "skip")
    frame = pd.read_csv(dataset["test"])
    for column in ("image", "audio"):  # the copy lives in tmp_path: absolute paths
        frame[column] = [str(dataset["root"] / p) if isinstance(p, str) else p for p in frame[column]]
    for row in (1, 7):  # chunks 0 and 1 of 5 rows
        (tmp_path / f"bad{row}.png").write_bytes(b"not a png")
        frame.loc[row, "image"] = str(tmp_path / f"bad{row}.png")
    out = tmp_path / "preds.parquet"
    with pytest.raises(KeyboardInterrupt):
        predict_to_file(predictor, frame, out, chunk_rows=5, progress=False,
                        on_chunk=lambda i: (_ for _ in ()).throw(KeyboardInterrupt))
    report = predict_to_file(predictor, frame, out, chunk_rows=5, resume=True, progress=False)
    assert report.chunks_resumed == 1 and report.rows == 16
    assert 1 not in pd.read_parquet(out)["row"].tolist() and 7 not in pd.read_parquet(out)["row"].tolist()
    listed = pd.read_csv(tmp_path / "preds.skipped.csv")
    assert report.skipped_file == tmp_path / "preds.skipped.csv"
    assert listed["row"].tolist() == [1, 7] and listed["modality"].tolist() == ["image", "image"]
    assert listed["where"].tolist() == ["DataFrame row 1", "DataFrame row 7"]
    predict_to_file(predictor, frame.drop(index=[1, 7]), out, progress=False)
    assert not (tmp_path / "preds.skipped.csv").exists()  # a clean run leaves no stale list


def test_a_support_set_needs_a_few_shot_model(trained, dataset, tmp_path):
    predictor, _ = trained
    with pytest.raises(SchemaMismatchError, match="protonet"):
        predict_to_file(predictor, dataset["test"], tmp_path / "p.csv", support=dataset["train"], progress=False)
    assert not (tmp_path / "p.csv").exists()
