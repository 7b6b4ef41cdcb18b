"""DataPipeline: reading with validation, fitting, and the saved state."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from polymodal.data import content_keys as keys_module
from polymodal.data.manifest import read_manifest
from polymodal.data.modalities.base import Preprocessor
from polymodal.data.modalities.image import ImagePreprocessor
from polymodal.data.pipeline import DataPipeline
from polymodal.errors import ConfigError, ManifestError, SchemaMismatchError

from .helpers import (
    MULTIMODAL,
    assert_nested_equal,
    make_config,
    tone,
    write_image,
    write_multimodal_manifest,
    write_wav,
)


def test_saved_pipeline_encodes_like_the_fitted_one(tmp_path):
    config = make_config(MULTIMODAL)
    manifest = read_manifest(write_multimodal_manifest(tmp_path / "data"))
    pipe = DataPipeline(config)
    table, targets = pipe.fit(manifest)
    pipe.save(tmp_path / "prep")
    files = sorted(p.name for p in (tmp_path / "prep").iterdir())
    assert files == sorted(["img.json", "notes.json", "labs.json", "targets.json"])  # no pickle anywhere

    loaded = DataPipeline.load(config, tmp_path / "prep")
    assert loaded.targets.classes == ["cat", "dog"]
    assert loaded.contexts() == pipe.contexts()
    again = loaded.encode(manifest)
    np.testing.assert_array_equal(loaded.encode_targets(manifest, again), targets)
    rows = list(range(len(table)))
    assert_nested_equal(loaded.dataset(again, targets).__getitems__(rows),
                        pipe.dataset(table, targets).__getitems__(rows))


def test_csv_categories_and_texts_are_read_as_written_whatever_else_the_file_holds(tmp_path):
    """pandas guesses each CSV's column types: zip 02139 would be 2139 in a file of numbers only and
    '02139' beside a word; a code column with a blank would read 12.0. Modality columns are read as
    text, so training and prediction see the same tokens and categories."""
    config = make_config({"place": {"kind": "tabular", "columns": ["x"], "categorical": ["zip"]},
                          "code": {"kind": "text", "column": "code"}})
    (tmp_path / "train.csv").write_text("x,zip,code,y\n1,02139,12,a\n2,10001,,b\n3,02139,7,a\n")
    (tmp_path / "new.csv").write_text("x,zip,code,y\n1,02139,12,a\n2,A0A1,7,b\n")
    pipeline = DataPipeline(config)
    train = pipeline.read(tmp_path / "train.csv", require_target=True, training=True)
    assert train.frame["zip"].tolist() == ["02139", "10001", "02139"] and train.frame["x"].tolist() == [1, 2, 3]
    pipeline.fit(train)
    assert pipeline.preprocessors["place"].categories["zip"] == ["02139", "10001"]
    assert pipeline.preprocessors["code"].vocab[2:] == ["12", "7"]
    new = pipeline.read(tmp_path / "new.csv", require_target=True)
    table = pipeline.encode(new)
    zips = table.modalities["place"].arrays["cat"][:, 0].tolist()
    assert zips[0] == 1 and zips[1] == 0  # 02139 is the first category; A0A1 is unknown
    assert pipeline.preprocessors["code"].decode("12") == table.modalities["code"].arrays["ids"][0, :1].tolist()


@pytest.mark.parametrize(("section", "target"), [({}, "y"), ({"tasks": {"grade": {"task": "classification",
                                                                                 "target": "grade"}}}, "grade")])
def test_csv_class_labels_that_are_codes_keep_their_zeros(tmp_path, section, target):
    config = make_config({"place": {"kind": "tabular", "columns": ["x"]}}, **section)
    (tmp_path / "train.csv").write_text("x,y,grade\n1,01,01\n2,02,02\n3,10,10\n")
    pipeline = DataPipeline(config)
    frame = pipeline.read(tmp_path / "train.csv", require_target=True, training=True).frame
    assert frame[target].tolist() == ["01", "02", "10"]
    regression = make_config({"place": {"kind": "tabular", "columns": ["x"]}}, task="regression")
    assert DataPipeline(regression).read(tmp_path / "train.csv", require_target=True).frame["y"].tolist() == [1, 2, 10]


def test_a_text_modality_of_numbers_is_warned_about_once_it_has_enough_rows(tmp_path):
    config = make_config({"lab": {"kind": "text", "column": "crp"}})
    frame = pd.DataFrame({"crp": [f"{v:.1f}" for v in np.linspace(1, 90, 12)], "y": ["a", "b"] * 6})
    frame.loc[3, "crp"] = ""  # an empty cell is no text: it does not count against the rule
    with pytest.warns(UserWarning, match=r"text modality 'lab': every training cell of column 'crp' is a number "
                                         r"\(e.g. '1.0'\).*tabular modality's 'columns'"):
        DataPipeline(config).fit(read_manifest(frame))
    frame.loc[5, "crp"] = "raised"  # one word among the numbers: text after all
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        DataPipeline(config).fit(read_manifest(frame))
        DataPipeline(config).fit(read_manifest(frame.iloc[:9].assign(crp="7")))  # too few rows to tell


def test_targets_state_is_plain_json(tmp_path):
    config = make_config(MULTIMODAL)
    pipe = DataPipeline(config)
    pipe.fit(read_manifest(write_multimodal_manifest(tmp_path)))
    pipe.save(tmp_path / "prep")
    state = json.loads((tmp_path / "prep" / "targets.json").read_text())
    assert state["task"] == "classification" and state["classes"] == ["cat", "dog"]


def test_read_validates_and_reports_every_problem(tmp_path):
    path = write_multimodal_manifest(tmp_path)
    frame = pd.read_csv(path)
    frame.loc[1, "y"] = None
    (tmp_path / "images" / "3.png").unlink()
    frame.to_csv(path, index=False)
    with pytest.raises(ManifestError) as info:
        DataPipeline(make_config(MULTIMODAL)).read(path, require_target=True)
    joined = "\n".join(info.value.problems)
    assert "row 3 (line 5), column 'image': file not found" in joined
    assert "target column 'y' is empty in row 1 (line 3)" in joined


def test_read_uses_the_modalities_the_manifest_has(tmp_path):
    path = write_multimodal_manifest(tmp_path)
    only_text = pd.read_csv(path)[["text", "y"]].drop(index=2)  # row 2 has no text
    pipe = DataPipeline(make_config(MULTIMODAL))
    with pytest.warns(UserWarning, match=r"no column 'image' \(modality img\), columns \['age', 'colour'\] "
                                         r"\(modality labs\): predicting without them") as caught:
        manifest = pipe.read(only_text.assign(extra=1), require_target=True)
    assert "unrecognised columns: ['extra']" in str(caught[0].message)
    assert pipe.check_modalities(None, manifest) == ["notes"]
    assert pipe.check_modalities(["notes", "img"], manifest) == ["img", "notes"]
    with pytest.raises(SchemaMismatchError, match=r"^modalities: unknown modality 'audio'; this model has"):
        pipe.check_modalities(["audio"], manifest)
    with pytest.raises(SchemaMismatchError, match="none of this model's modality columns"):
        pipe.read(pd.DataFrame({"other": [1], "y": ["cat"]}), require_target=False)


def test_a_modality_column_renamed_to_its_modality_is_named_as_the_one_meant(tmp_path):
    """``DE`` for modality ``de`` reading ``de_path``: no close spelling of the column, the
    modality's name in another case; still predicted from the others, and refused when none is left."""
    frame = pd.read_csv(write_multimodal_manifest(tmp_path)).rename(columns={"image": "IMG"})
    pipe = DataPipeline(make_config(MULTIMODAL))
    with pytest.warns(UserWarning, match=r"has no column 'image' \(modality img\) \(did you mean 'IMG'\?\): "
                                         r"predicting without it"):
        manifest = pipe.read(frame, require_target=False)
    assert pipe.check_modalities(None, manifest) == ["labs", "notes"]
    renamed = frame.rename(columns={"text": "Notes", "age": "AGE", "colour": "colours"})
    with pytest.raises(SchemaMismatchError) as info:
        pipe.read(renamed, require_target=False)
    assert str(info.value).endswith("; 'image' (did you mean 'IMG'?), 'age' (did you mean 'AGE'?), 'colour' (did you "
                                    "mean 'colours'?), 'text' (did you mean 'Notes'?)")


def test_unseen_label_is_a_schema_mismatch(tmp_path):
    path = write_multimodal_manifest(tmp_path)
    pipe = DataPipeline(make_config(MULTIMODAL))
    pipe.fit(read_manifest(path))
    frame = pd.read_csv(path)
    frame.loc[2, "y"] = "bird"
    manifest = read_manifest(frame, root=tmp_path)
    with pytest.raises(SchemaMismatchError, match="label 'bird'.*not seen in training"):
        pipe.encode_targets(manifest, pipe.encode(manifest))


def test_regression_targets_are_standardised_with_training_statistics(tmp_path):
    path = write_multimodal_manifest(tmp_path)
    frame = pd.read_csv(path).assign(y=np.arange(10, dtype=float) * 2)
    pipe = DataPipeline(make_config(MULTIMODAL, task="regression"))
    _, targets = pipe.fit(read_manifest(frame, root=tmp_path))
    values = frame["y"].to_numpy()
    np.testing.assert_allclose(targets[:, 0], (values - values.mean()) / values.std(), rtol=1e-5)
    np.testing.assert_allclose(pipe.targets.decode_values(targets)[:, 0], values, rtol=1e-5, atol=1e-5)


def test_feature_cache_gives_the_same_batches(tmp_path):
    manifest = read_manifest(write_multimodal_manifest(tmp_path / "data"))
    plain = DataPipeline(make_config(MULTIMODAL))
    cached = DataPipeline(make_config(MULTIMODAL, data={"cache_dir": str(tmp_path / "cache")}))
    rows = list(range(10))
    expected = plain.dataset(*plain.fit(manifest)).__getitems__(rows)
    assert_nested_equal(cached.dataset(*cached.fit(manifest)).__getitems__(rows), expected)
    assert any((tmp_path / "cache").iterdir())
    assert_nested_equal(cached.dataset(cached.encode(manifest)).__getitems__(rows),
                        {k: v for k, v in expected.items() if k != "target"})  # second pass reads the cache


def test_a_cache_dir_that_cannot_be_a_folder_is_named_as_the_config_key(tmp_path):
    manifest = read_manifest(write_multimodal_manifest(tmp_path / "data"))
    (tmp_path / "afile").write_text("x")
    for cache_dir, problem in ((tmp_path / "afile", "is a file"), (tmp_path / "afile" / "cache", "is a file")):
        pipeline = DataPipeline(make_config(MULTIMODAL, data={"cache_dir": str(cache_dir)}))
        with pytest.raises(ConfigError, match=f"data.cache_dir: {cache_dir} .*{problem}"):
            pipeline.fit(manifest)



def test_a_cache_folder_named_by_the_environment_is_named_as_the_variable(tmp_path, monkeypatch):
    """POLYMODAL_CACHE_DIR, not the config, named it: the error says so (a config file named
    beside it would send the user to the wrong place)."""
    from polymodal.data.cache import CACHE_ENV
    from polymodal.errors import OptionError

    manifest = read_manifest(write_multimodal_manifest(tmp_path / "data"))
    (tmp_path / "afile").write_text("x")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "afile"))
    with pytest.raises(OptionError, match=f"{CACHE_ENV} \\(environment variable\\): {tmp_path / 'afile'} \\(or a "
                                          "folder above it\\) is a file"):
        DataPipeline(make_config(MULTIMODAL)).fit(manifest)


@pytest.mark.parametrize("named_by", ["config", "environment"])
def test_a_warm_cache_pass_neither_reads_nor_decodes_files(tmp_path, monkeypatch, named_by):
    """The cache named by data.cache_dir, or by POLYMODAL_CACHE_DIR where the config names none
    (how the ranks a distributed fit starts read what its first process preprocessed)."""
    from polymodal.data.cache import CACHE_ENV

    monkeypatch.setattr(keys_module.StatMemo, "SETTLE_NS", 200_000_000)  # files settle after 0.2 s, not 2 s
    path = write_multimodal_manifest(tmp_path / "data")
    time.sleep(0.25)  # written before the run: their identity is remembered
    manifest = read_manifest(path)
    if named_by == "config":
        config = make_config(MULTIMODAL, data={"cache_dir": str(tmp_path / "cache")})
    else:
        monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
        config = make_config(MULTIMODAL)
    cold = DataPipeline(config)
    rows = list(range(10))
    expected = cold.dataset(cold.fit(manifest)[0]).__getitems__(rows)
    plain_key = keys_module.content_key

    def inline_only(value, file_based):
        assert not file_based, f"{value} was read on a warm pass"
        return plain_key(value, file_based)

    def no_decode(self, value):
        raise AssertionError(f"{value} was decoded on a warm pass")

    monkeypatch.setattr(keys_module, "content_key", inline_only)
    monkeypatch.setattr(ImagePreprocessor, "decode", no_decode)
    warm = DataPipeline(config)
    assert_nested_equal(warm.dataset(warm.fit(manifest)[0]).__getitems__(rows), expected)
    assert any((tmp_path / "cache").iterdir())


STATISTICS = {
    "img": {"kind": "image", "column": "image", "preprocess": {"size": 8, "color": "gray", "normalize": "standard"}},
    "voice": {"kind": "audio", "column": "audio", "preprocess": {"sample_rate": 8000, "normalize": "global"}},
    "vib": {"kind": "signal", "column": "signal", "preprocess": {"length": 64, "normalize": "global"}},
}


def _statistics_manifest(folder, n=8):
    rng = np.random.default_rng(1)
    rows = []
    for i in range(n):
        image = write_image(folder / f"{i}.png", rng.integers(0, 256, (10, 10), dtype=np.uint8))
        audio = write_wav(folder / f"{i}.wav", tone(200 + 50 * i, 0.2, 8000, seed=i), 8000)
        np.save(folder / f"{i}.npy", rng.normal(i, 1 + i, (2, 64)).astype(np.float32))
        rows.append({"image": image, "audio": audio, "signal": str(folder / f"{i}.npy"), "y": i % 2})
    pd.DataFrame(rows).to_csv(folder / "train.csv", index=False)
    return folder / "train.csv"


def test_fitted_statistics_are_stored_and_restored_for_the_same_rows(tmp_path, monkeypatch):
    manifest = read_manifest(_statistics_manifest(tmp_path / "data"))
    config = make_config(STATISTICS, data={"cache_dir": str(tmp_path / "cache")})
    cold = DataPipeline(config)
    rows = list(range(8))
    expected = cold.dataset(cold.fit(manifest)[0]).__getitems__(rows)
    assert cold.preprocessors["voice"].mean is not None and cold.preprocessors["img"].mean is not None

    def no_pass(self, arrays):
        raise AssertionError(f"{self.name}: statistics recomputed for the same rows")

    with monkeypatch.context() as patch:
        patch.setattr(Preprocessor, "fit_features", no_pass)
        for cls in {type(p) for p in cold.preprocessors.values()}:
            patch.setattr(cls, "fit_features", no_pass)
        warm = DataPipeline(config)
        assert_nested_equal(warm.dataset(warm.fit(manifest)[0]).__getitems__(rows), expected)
    fewer = DataPipeline(config)  # other training rows: other statistics, computed afresh
    fewer.fit(manifest.subset(range(4)))
    assert not np.allclose(fewer.preprocessors["vib"].mean, cold.preprocessors["vib"].mean)


def test_target_errors_name_the_original_row_after_skipped_rows(tmp_path):
    pipe = DataPipeline(make_config(MULTIMODAL, data={"on_error": "skip"}))
    pipe.fit(read_manifest(write_multimodal_manifest(tmp_path / "train")))
    path = write_multimodal_manifest(tmp_path / "test", broken_images=(1,))
    frame = pd.read_csv(path)
    frame.loc[3, "y"] = "bird"
    frame.to_csv(path, index=False)
    manifest = read_manifest(path)
    table = pipe.encode(manifest)
    assert 1 not in table.rows.tolist()
    with pytest.raises(SchemaMismatchError, match=r"train\.csv row 3 \(line 5\)"):
        pipe.encode_targets(manifest, table)


def test_two_modalities_on_one_column_keep_their_own_statistics(tmp_path):
    manifest = read_manifest(_statistics_manifest(tmp_path / "data"))
    twins = {"a": STATISTICS["img"], "b": STATISTICS["img"]}  # same column, same settings
    config = make_config(twins, data={"cache_dir": str(tmp_path / "cache")})
    cold = DataPipeline(config)
    cold.fit(manifest)
    warm = DataPipeline(config)
    warm.fit(manifest)  # restores each modality's statistics from its own entry
    for name in twins:
        np.testing.assert_array_equal(warm.preprocessors[name].mean, cold.preprocessors[name].mean)


def test_a_pipeline_warning_points_at_the_users_call(tmp_path):
    path = write_multimodal_manifest(tmp_path)
    only_text = pd.read_csv(path)[["text", "y"]].drop(index=2)  # row 2 has no text
    pipe = DataPipeline(make_config(MULTIMODAL))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipe.read(only_text, require_target=True); line = __import__("inspect").currentframe().f_lineno  # noqa: E702
    assert len(caught) == 1 and "predicting without them" in str(caught[0].message)
    assert caught[0].filename == __file__ and caught[0].lineno == line


@pytest.mark.parametrize(("empty", "where"), [
    ({"no_text": tuple(range(10))}, "column 'text' (modality 'notes')"),
    ({"no_image": tuple(range(10))}, "column 'image' (modality 'img')"),
    ({"no_labs": tuple(range(10))}, "columns ['age', 'colour'] (modality 'labs')"),
])
def test_a_modality_empty_in_every_training_row_is_refused_by_name(tmp_path, empty, where):
    """Nothing to fit its preprocessing on (a text vocabulary, image statistics, table scaling):
    refused before training, not an index error in an embedding or a normalisation used unfitted."""
    path = write_multimodal_manifest(tmp_path, **empty)
    with pytest.raises(ManifestError) as info:
        DataPipeline(make_config(MULTIMODAL)).fit(read_manifest(path))
    assert info.value.problems == [f"train.csv: {where} has no value in any training row: nothing to fit its "
                                   "preprocessing on; fill the column or drop the modality from the config"]


def test_a_modality_whose_every_training_file_is_unreadable_is_refused_with_on_error_missing(tmp_path):
    path = write_multimodal_manifest(tmp_path, broken_images=tuple(range(10)), no_image=())
    with pytest.raises(ManifestError) as info:
        DataPipeline(make_config(MULTIMODAL, data={"on_error": "missing"})).fit(read_manifest(path))
    [problem] = info.value.problems
    assert problem.startswith("train.csv: column 'image' (modality 'img') has no readable file in any training row "
                              "(10 unreadable, data.on_error: missing; first: train.csv row 0 (line 2): "
                              f"{tmp_path.resolve() / 'images' / '0.png'} (not a recognised image format")
    assert problem.endswith("nothing to fit its preprocessing on; fix or replace the files, or drop the modality "
                            "from the config")


def test_a_modality_whose_every_training_file_is_missing_is_refused_with_on_error_missing(tmp_path):
    path = write_multimodal_manifest(tmp_path, no_image=(5,))
    for png in (tmp_path / "images").iterdir():
        png.unlink()
    pipe = DataPipeline(make_config(MULTIMODAL, data={"on_error": "missing"}))
    with pytest.raises(ManifestError) as info:
        pipe.fit(pipe.read(path, require_target=True, training=True))
    assert info.value.problems == ["train.csv: column 'image' (modality 'img') names no file that exists in any "
                                   "training row (9 skipped, data.on_error: missing; first: train.csv row 0 (line 2): "
                                   "file not found): nothing to fit its preprocessing on; fix or replace the files, "
                                   "or drop the modality from the config"]


def test_skipping_every_training_row_says_no_row_is_left_not_that_classes_are_missing(tmp_path):
    path = write_multimodal_manifest(tmp_path, broken_images=tuple(range(10)), no_image=())
    with pytest.raises(ManifestError) as info:
        DataPipeline(make_config(MULTIMODAL, data={"on_error": "skip"})).fit(read_manifest(path))
    [problem] = info.value.problems
    assert problem.startswith("train.csv: no row is left to train on: each of its 10 training row(s) had an "
                              "unreadable file, skipped (10 file(s); data.on_error: skip); first: train.csv row 0 "
                              f"(line 2), modality 'img': {tmp_path.resolve() / 'images' / '0.png'} (not a "
                              "recognised image format")


def test_a_modality_left_only_in_rows_skipped_for_another_one_is_refused(tmp_path):
    """Images only in rows 0-2, whose table values are unreadable: skipping those rows leaves the
    image modality nothing to fit on, and the message says why it is empty."""
    path = write_multimodal_manifest(tmp_path, no_image=tuple(range(3, 10)))
    frame = pd.read_csv(path)
    frame["age"] = frame["age"].astype(object)
    frame.loc[[0, 1, 2], "age"] = "forty"
    with pytest.raises(ManifestError) as info:
        DataPipeline(make_config(MULTIMODAL, data={"on_error": "skip"})).fit(read_manifest(frame, root=tmp_path))
    assert info.value.problems == ["DataFrame: column 'image' (modality 'img') has no value left in any training "
                                   "row once the rows with an unreadable file were skipped (3 of 10 rows left out, 0 "
                                   "of them for a file of its own; data.on_error: skip): nothing to fit its "
                                   "preprocessing on; fix or replace the files, or drop the modality from the config"]


def test_fitting_a_classification_target_of_distinct_decimals_suggests_regression(tmp_path):
    """The fit warns (before a held-out row's unseen class is refused with its row)."""
    path = write_multimodal_manifest(tmp_path, n=12)
    frame = pd.read_csv(path)
    frame["y"] = [0.25 + 1.01 * i for i in range(12)]
    frame.to_csv(path, index=False)
    with pytest.warns(UserWarning, match=r"^target column 'y' of train.csv holds 12 distinct values in 12 "
                                                  r"rows \(12 of them the only row of their class, e.g. 0.25, 1.26, "
                                                  r"2.27\): is it a regression target \(task: regression\)\?"):
        DataPipeline(make_config(MULTIMODAL)).fit(read_manifest(path))


def test_fitting_a_multilabel_label_that_is_one_value_in_every_training_row_warns_naming_it(tmp_path):
    path = write_multimodal_manifest(tmp_path)
    frame = pd.read_csv(path).assign(always=1, never=0, some=[i % 2 for i in range(10)])
    frame.to_csv(path, index=False)
    config = make_config(MULTIMODAL, task="multilabel", target=["always", "some", "never"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        DataPipeline(config).fit(read_manifest(path))
    said = [str(w.message) for w in caught if "in every one of its" in str(w.message)]
    assert said == [
        "label column 'always' of train.csv is 1 in every one of its 10 rows: its AUROC is undefined and the model "
        "learns only to repeat 1; add rows where it is 0, or leave the column out of target",
        "label column 'never' of train.csv is 0 in every one of its 10 rows: its AUROC is undefined and the model "
        "learns only to repeat 0; add rows where it is 1, or leave the column out of target"]  # not 'some'


def test_fitting_a_regression_target_of_one_value_warns_and_a_further_tasks_empty_cells_do_not_count(tmp_path):
    path = write_multimodal_manifest(tmp_path)
    frame = pd.read_csv(path).assign(rpm=1796.0, load=[float(i) for i in range(10)],
                                     speed=[3.5 if i < 4 else None for i in range(10)])
    frame.to_csv(path, index=False)
    config = make_config(MULTIMODAL, task="regression", target=["load", "rpm"],
                         tasks={"spin": {"task": "regression", "target": "speed"}})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        DataPipeline(config).warn_about_targets(read_manifest(path))
    said = [str(w.message) for w in caught]
    assert said == [
        "regression target column 'rpm' of train.csv is 1796 in every one of its 10 rows: with no spread to learn, "
        "the model learns only to repeat that value (and its R2 is undefined); add rows where it varies, or leave "
        "the column out of target",
        "regression target column 'speed' of train.csv is 3.5 in every one of its 4 rows: with no spread to learn, "
        "the model learns only to repeat that value (and its R2 is undefined); add rows where it varies, or leave "
        "the column out of tasks.spin.target"]


def _fitted_table(tmp_path, text: str, **preprocess) -> tuple[DataPipeline, Path]:
    """A pipeline of one tabular modality ``place`` (number ``x``, categories ``region`` and
    ``kind``) fitted on the CSV ``text``, read from its path as polymodal reads it."""
    table = {"kind": "tabular", "columns": ["x"], "categorical": ["region", "kind"],
             **({"preprocess": preprocess} if preprocess else {})}
    path = tmp_path / "train.csv"
    path.write_text(text)
    pipeline = DataPipeline(make_config({"place": table}))
    pipeline.fit(pipeline.read(path, require_target=True, training=True))
    return pipeline, path


REGIONS = "x,region,kind,y\n1,NA,food,a\n2,EU,food,b\n3,NA,electronics,a\n4,EU,electronics,b\n5,NA,food,a\n"


@pytest.mark.parametrize("normalize, learned", [("strip", "'NA'"), ("strip_lower", "'na'")])
def test_empty_cells_where_the_model_learned_a_category_pandas_reads_as_missing_are_warned_about(
        tmp_path, normalize, learned):
    """'NA' (North America) learned from a CSV's path; the same file read with pandas' defaults
    holds NaN there, which reads as the missing category: said, with the fix, once per column."""
    pipeline, path = _fitted_table(tmp_path, REGIONS, normalize_categories=normalize)
    assert learned.strip("'") in pipeline.preprocessors["place"].categories["region"]
    frame = pd.read_csv(path)  # the README's pattern, pandas' default na_values
    assert frame["region"].isna().sum() == 3
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipeline.read(frame, require_target=False)
    said = [str(w.message) for w in caught if "pandas reads as missing" in str(w.message)]
    assert said == [f"DataFrame: column 'region' of modality place: 3 of 5 cell(s) are empty, and the model learned "
                    f"the category {learned}, which pandas reads as missing by default: cells that held {learned} "
                    "read as missing now, not as the category; read the CSV with pd.read_csv(..., "
                    "keep_default_na=False, na_values=['']) (only empty cells missing), or pass the file's path, "
                    "which polymodal reads keeping such text"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the text kept, or no empty cell: nothing to say
        pipeline.read(pd.read_csv(path, keep_default_na=False, na_values=[""]), require_target=False)
        pipeline.read(path, require_target=False)
        blank = tmp_path / "blank.csv"  # a file holding the text and a blank cell: read as written
        blank.write_text(REGIONS.replace("2,EU,", "2,,"))
        pipeline.read(blank, require_target=False)
        pipeline.read(pd.read_csv(blank, keep_default_na=False, na_values=[""]), require_target=False)


def test_empty_cells_are_not_warned_about_when_no_learned_category_reads_as_missing(tmp_path):
    pipeline, path = _fitted_table(tmp_path, REGIONS.replace("NA", "US"))
    frame = pd.read_csv(path)
    frame.loc[[0, 2], "region"] = None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pipeline.read(frame, require_target=False)


def test_an_unlearned_category_that_is_a_learned_one_but_for_case_is_named_with_it(tmp_path):
    pipeline, path = _fitted_table(tmp_path, REGIONS)
    frame = pd.read_csv(path, keep_default_na=False)
    frame["kind"] = ["Electronics", "food", "Electronics", "purple", "FOOD"]
    with pytest.warns(UserWarning) as caught:
        pipeline.read(frame, require_target=False)
    said = [str(w.message) for w in caught if "did not learn" in str(w.message)]
    assert said == ["DataFrame: column 'kind' of modality place: 4 row(s) hold categories the model did not learn "
                    "('Electronics', 'purple', 'FOOD'): they read as the unknown category; did you mean "
                    "'electronics' for 'Electronics', 'food' for 'FOOD'? (modalities.place.preprocess."
                    "normalize_categories: strip_lower in the tabular modality reads them as one, in a model trained "
                    "with it; or correct the cells)"]
    frame["kind"] = ["Electronics", "food", "food", "food", "food"]
    with pytest.warns(UserWarning, match=r"\('Electronics'\): they read as the unknown category; did you mean "
                                         r"'electronics'\? \(modalities\.place\.preprocess\.normalize_categories: "
                                         "strip_lower"):
        pipeline.read(frame, require_target=False)
    frame["kind"] = ["purple", "food", "food", "food", "food"]
    with pytest.warns(UserWarning, match=r"\('purple'\): they read as the unknown category$"):  # no hint to give
        pipeline.read(frame, require_target=False)
    folded, _ = _fitted_table(tmp_path, REGIONS, normalize_categories="strip_lower")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a model that keys them as one reads 'Electronics' as learned
        folded.read(frame.assign(kind="Electronics"), require_target=False)


def test_a_number_written_with_a_decimal_comma_is_told_so_in_training_and_prediction(tmp_path):
    pipeline, _ = _fitted_table(tmp_path, REGIONS)
    bad = tmp_path / "bad.csv"
    bad.write_text(REGIONS.replace("\n3,", '\n"12,50",'))
    hint = ("(a decimal comma? write 12.50 with a decimal point, or write the CSV with ';' between fields, which "
            "polymodal reads with decimal commas; data.on_error: missing reads such cells as missing)")
    with pytest.raises(ManifestError) as info:  # training
        DataPipeline(pipeline.config).read(bad, require_target=True, training=True)
    assert info.value.problems == [f"tabular modality 'place', column 'x' must be numeric: row 2 (line 4) holds "
                                   f"'12,50' {hint}"]
    with pytest.raises(ManifestError) as info:  # prediction, of a file and of a DataFrame
        pipeline.read(bad, require_target=False)
    assert info.value.problems == [f"tabular modality 'place', column 'x' must be numeric: row 2 (line 4) holds "
                                   f"'12,50' {hint}"]
    with pytest.raises(ManifestError, match=r"row 2 holds '12,50' \(a decimal comma\? write 12\.50 with a decimal "
                                            r"point, or read the CSV with pd\.read_csv\(\.\.\., decimal=','\)"):
        pipeline.read(pd.read_csv(bad), require_target=False)
    missing = DataPipeline(make_config(pipeline.config.modalities, data={"on_error": "missing"}))
    missing.preprocessors = pipeline.preprocessors
    manifest = missing.read(bad, require_target=False)
    rows, reasons = manifest.absent("x")
    assert rows.tolist() == [2] and reasons == ["column 'x' must be numeric; got '12,50' (a decimal comma? write "
                                                "12.50): read as missing"]
    skip = DataPipeline(make_config(pipeline.config.modalities, data={"on_error": "skip"}))
    skip.preprocessors = pipeline.preprocessors
    table = skip.encode(skip.read(bad, require_target=False))
    assert [s.reason for s in table.skipped] == ["column 'x' must be numeric; got '12,50' (a decimal comma? write "
                                                 "12.50)"]


def test_empty_targets_are_advised_as_the_read_uses_them(tmp_path):
    """Training rows without a target may be learned from semi-supervised; evaluated rows may not."""
    pipeline, _ = _fitted_table(tmp_path, REGIONS)
    path = tmp_path / "unlabelled.csv"
    path.write_text(REGIONS.replace(",b\n", ",\n"))
    with pytest.raises(ManifestError, match=r"target column 'y' is empty in rows 1 \(line 3\), 3 \(line 5\) \(every "
                                            "row needs one here.*transfer.unlabeled rows\\)$"):
        DataPipeline(pipeline.config).read(path, require_target=True, training=True)
    with pytest.raises(ManifestError) as info:
        pipeline.read(path, require_target=True)
    assert info.value.problems == ["target column 'y' is empty in rows 1 (line 3), 3 (line 5) (evaluating scores "
                                   "each row's prediction against its label, so every row needs one: remove those "
                                   "rows (e.g. df.dropna(subset=['y'])), or predict unlabelled rows with 'polymodal "
                                   "predict' (predict_frame in Python))"]
