"""What a transfer run learns from, recorded and checked: the unlabelled manifest a run trained on
(``config.yaml``'s ``transfer.unlabeled``, checked on ``--resume``), aligned modalities the
unlabelled rows never hold, labels in the unlabelled manifest, a support set without a class of
the evaluated rows, and a distillation teacher reading a column the student's manifest lacks.

Data: the tiny three-class image + signal + tabular set of ``helpers_models``.
"""

from __future__ import annotations

import copy
import shutil
import warnings
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers_models import TABULAR, classification_config, make_dataset, write_splits

from polymodal import MultimodalPredictor
from polymodal.errors import ConfigError, ManifestError, OptionError, RunFolderError, SchemaMismatchError


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("data")
    paths = write_splits(root, make_dataset(root, n=60))
    target = pd.read_csv(paths["test"]).drop(columns="label")
    for name, frame in (("unlabeled", target), ("other", target.iloc[::-1]),
                        ("no_image", target.assign(image="")),
                        ("few_images", target.assign(image=[p if i < 3 else "" for i, p in enumerate(target["image"])])),
                        ("no_image_train", pd.read_csv(paths["train"]).drop(columns="image"))):
        paths[name] = root / f"{name}.csv"  # beside the files they name
        frame.to_csv(paths[name], index=False)
    return {"root": root, **paths}


def config(transfer: dict | None = None, **train) -> dict:
    cfg = classification_config(**{"epochs": 1, **train})
    cfg["transfer"] = transfer
    return cfg


def recorded(run) -> str | None:
    return yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))["transfer"]["unlabeled"]


# -- the unlabelled manifest a run trained on -----------------------------------------------------
@pytest.mark.slow  # 6 s: the record and its resume check stay in test_the_run_records_the_unlabelled_manifest_it_used_and_resume_checks_it
def test_a_second_fit_starts_from_the_config_given_not_the_one_the_first_recorded(data, tmp_path):
    pred = MultimodalPredictor.from_config(config({"method": "coral", "unlabeled": str(data["other"])}))
    pred.fit(data["train"], data["valid"], unlabeled=data["unlabeled"])
    assert str(pred.config.transfer.unlabeled) == str(data["unlabeled"].resolve())
    pred.fit(data["train"], data["valid"], out=tmp_path / "again")  # no unlabeled=: the config's file
    assert recorded(tmp_path / "again") == str(data["other"].resolve())
    pred.fit(data["train"], data["valid"], unlabeled=data["unlabeled"])
    pred.config.head.hidden = [5]  # an edit to the recorded config after the fit: the next fit follows it
    pred.fit(data["train"], data["valid"], out=tmp_path / "edited")
    saved = yaml.safe_load((tmp_path / "edited" / "config.yaml").read_text(encoding="utf-8"))
    assert saved["head"]["hidden"] == [5] and recorded(tmp_path / "edited") == str(data["other"].resolve())


def test_the_run_records_the_unlabelled_manifest_it_used_and_resume_checks_it(data, tmp_path):
    """``fit(unlabeled=...)`` wins over ``transfer.unlabeled``: the run's config.yaml names the file
    used, and a resume learning from any other (the config's, when none is given) is refused."""
    run = tmp_path / "run"
    cfg = config({"method": "coral", "unlabeled": str(data["other"])})
    pred = MultimodalPredictor.from_config(cfg).fit(data["train"], data["valid"], out=run, unlabeled=data["unlabeled"])
    assert recorded(run) == str(data["unlabeled"].resolve()) == str(pred.config.transfer.unlabeled)
    assert cfg["transfer"]["unlabeled"] == str(data["other"])  # the caller's config is left as it was
    longer = config({"method": "coral", "unlabeled": str(data["other"])}, epochs=2)

    def resume(**unlabeled):
        return MultimodalPredictor.from_config(longer).fit(data["train"], data["valid"], out=run, resume=True,
                                                           **unlabeled)

    expected = rf"resume=True: {run} trained with unlabeled= {data['unlabeled'].resolve()}; resume it with the " \
               r"same unlabeled= \(given: "
    with pytest.raises(RunFolderError, match=expected + rf"{data['other'].resolve()}, the config's transfer.unlabeled\)"):
        resume()
    with pytest.raises(RunFolderError, match=expected + rf"{data['no_image'].resolve()}\)"):
        resume(unlabeled=data["no_image"])
    with pytest.raises(RunFolderError, match=expected + r"a DataFrame\)"):
        resume(unlabeled=pd.read_csv(data["unlabeled"]))
    (run / "metrics.json").unlink()  # an interrupted run: config.yaml recorded it when training started
    with pytest.raises(RunFolderError, match=expected):
        resume(unlabeled=data["no_image"])
    assert len(resume(unlabeled=data["unlabeled"]).history) == 2
    assert recorded(run) == str(data["unlabeled"].resolve())


@pytest.mark.slow  # 6 s: the record and its resume check stay in test_the_run_records_the_unlabelled_manifest_it_used_and_resume_checks_it
def test_the_config_of_a_run_resumes_it_without_naming_the_unlabelled_manifest_again(data, tmp_path):
    run = tmp_path / "run"
    MultimodalPredictor.from_config(config({"method": "mmd"})).fit(data["train"], data["valid"], out=run,
                                                                 unlabeled=data["unlabeled"])
    saved = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    saved["train"]["epochs"] = 2
    pred = MultimodalPredictor.from_config(saved).fit(data["train"], data["valid"], out=run, resume=True)
    assert len(pred.history) == 2 and pred.info["unlabeled_rows"] == len(pd.read_csv(data["unlabeled"]))


def test_a_distillation_run_trained_without_unlabelled_rows_resumes_without_them(data, tmp_path):
    """Distillation may go without unlabelled rows; a run that did is not continued with some."""
    MultimodalPredictor.from_config(config(epochs=1)).fit(data["train"], data["valid"], out=tmp_path / "teacher")
    run = tmp_path / "run"
    cfg = config({"method": "distill", "teacher": str(tmp_path / "teacher")})
    MultimodalPredictor.from_config(cfg).fit(data["train"], data["valid"], out=run)
    cfg["train"]["epochs"] = 2
    with pytest.raises(RunFolderError, match=rf"resume=True: {run} trained without unlabeled= \(or with a DataFrame"):
        MultimodalPredictor.from_config(cfg).fit(data["train"], data["valid"], out=run, resume=True,
                                                 unlabeled=data["unlabeled"])
    assert len(MultimodalPredictor.from_config(cfg).fit(data["train"], data["valid"], out=run,
                                                        resume=True).history) == 2


@pytest.mark.slow  # 6 s: the record and its resume check stay in test_the_run_records_the_unlabelled_manifest_it_used_and_resume_checks_it
def test_an_unlabelled_data_frame_records_no_path_and_is_not_checked_on_resume(data, tmp_path):
    """As for a DataFrame training manifest: nothing to compare a later one with."""
    run = tmp_path / "run"
    frame = pd.read_csv(data["unlabeled"])
    for column in ("image", "signal"):  # a DataFrame's relative paths would be read from the working folder
        frame[column] = [str(data["root"] / p) if isinstance(p, str) else p for p in frame[column]]
    cfg = config({"method": "coral", "unlabeled": str(data["other"])})
    MultimodalPredictor.from_config(cfg).fit(data["train"], data["valid"], out=run, unlabeled=frame)
    assert recorded(run) is None
    cfg["train"]["epochs"] = 2
    pred = MultimodalPredictor.from_config(cfg).fit(data["train"], data["valid"], out=run, resume=True,
                                                    unlabeled=frame)
    assert len(pred.history) == 2


# -- aligned modalities the rows do not hold ------------------------------------------------------
@pytest.mark.parametrize("method", ["mmd", "dann"])
def test_aligning_a_modality_no_unlabelled_row_holds_is_refused(data, method):
    cfg = config({"method": method, "on": ["img"]})
    with pytest.raises(ConfigError, match=rf"transfer.on: \['img'\]: method '{method}' aligns modality 'img' of the "
                                          r"unlabelled rows, but none of the 12 rows of no_image.csv holds it"):
        MultimodalPredictor.from_config(cfg).fit(data["train"], data["valid"], unlabeled=data["no_image"])


def test_aligning_a_modality_few_unlabelled_rows_hold_warns(data):
    cfg = config({"method": "mmd", "on": ["img", "tab"]})
    with pytest.warns(UserWarning, match=r"transfer.on: \['img', 'tab'\]: only 3 of the 12 unlabelled rows of "
                                         r"few_images.csv hold modality 'img'; about \d+% of the steps"):
        MultimodalPredictor.from_config(cfg).fit(data["train"], data["valid"], unlabeled=data["few_images"])


def test_aligning_the_fused_representation_counts_rows_with_any_modality(data):
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*transfer.on")
        pred = MultimodalPredictor.from_config(config({"method": "mmd"})).fit(data["train"], data["valid"],
                                                                            unlabeled=data["no_image"])
    assert (pred.history["train_domain_loss"] > 0).all()


# -- labels in the unlabelled manifest ------------------------------------------------------------
def test_unlabelled_rows_that_are_evaluated_on_are_warned_about_and_labels_alone_are_not(data, tmp_path):
    cfg = config({"method": "pseudo_label"})
    with pytest.warns(UserWarning, match=r"the unlabelled rows are the test manifest: the model trains on them"):
        MultimodalPredictor.from_config(cfg).fit(data["train"], data["valid"], test=data["test"],
                                                 unlabeled=data["test"])
    duplicate = shutil.copyfile(data["test"], Path(data["test"]).with_name("test_copy.csv"))  # beside it: same paths
    with pytest.warns(UserWarning, match=r"the unlabelled rows are the test manifest: the model trains on them"):
        MultimodalPredictor.from_config(cfg).fit(data["train"], data["valid"], test=data["test"], unlabeled=duplicate)
    with pytest.warns(UserWarning, match=r"the unlabelled rows are the validation manifest"):
        frame = pd.read_csv(data["valid"], keep_default_na=False)
        for column in ("image", "signal"):  # a DataFrame's paths resolve against the working folder
            frame[column] = [str(data["root"] / p) if p else "" for p in frame[column]]
        MultimodalPredictor.from_config(cfg).fit(data["train"], frame, unlabeled=frame.copy())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # a labelled set given as unlabelled rows: its labels are just not read
        MultimodalPredictor.from_config(cfg).fit(data["train"], data["valid"], unlabeled=data["test"])
    assert not [w for w in caught if "unlabelled" in str(w.message)]


# -- a support set without a class of the evaluated rows ------------------------------------------
def test_a_class_missing_from_the_support_set_is_named_as_the_support_sets(data):
    cfg = config({"method": "protonet", "shots": 2, "queries": 2, "dim": 16})
    pred = MultimodalPredictor.from_config(cfg).fit(data["train"], data["valid"])
    support = data["root"] / "support_ab.csv"
    valid = pd.read_csv(data["valid"])
    valid[valid["label"] != "c"].to_csv(support, index=False)
    with pytest.raises(SchemaMismatchError, match=r"label 'c' in column 'label' was not seen in the support set "
                                                  r"support_ab.csv; .*known labels: \['a', 'b'\]$"):
        pred.evaluate(data["test"], support=support)
    other = data["root"] / "test_z.csv"
    pd.read_csv(data["test"]).assign(label="z").to_csv(other, index=False)
    with pytest.raises(SchemaMismatchError, match=r"label 'z' in column 'label' was not seen in training"):
        pred.evaluate(other)  # the model's own classes: as before


# -- a teacher reading a column the student's manifest lacks --------------------------------------
def test_a_column_only_the_teacher_reads_is_named_as_the_teacher_runs(data, tmp_path):
    MultimodalPredictor.from_config(config()).fit(data["train"], data["valid"], out=tmp_path / "teacher")
    cfg = config({"method": "distill", "teacher": str(tmp_path / "teacher")})
    cfg["modalities"] = {"tab": copy.deepcopy(TABULAR)}
    with pytest.raises(ManifestError, match=rf"the teacher run {tmp_path / 'teacher'} \(transfer.teacher\): modality "
                                            r"'img' reads column\(s\) 'image', not in no_image_train.csv"):
        MultimodalPredictor.from_config(cfg).fit(data["no_image_train"], data["valid"])


def test_unlabelled_rows_the_teacher_cannot_read_are_named_with_the_way_to_leave_them_to_other_methods(data,
                                                                                                      tmp_path):
    """Distillation teaches the unlabelled rows too; when they lack the teacher's columns (another
    domain's rows, for a domain-adaptation method), the error says how to teach the labelled rows
    only; set so, the domain method still learns from them."""
    MultimodalPredictor.from_config(config()).fit(data["train"], data["valid"], out=tmp_path / "teacher")
    cfg = config([{"method": "distill", "teacher": str(tmp_path / "teacher")}, {"method": "coral"}])
    cfg["modalities"] = {"tab": copy.deepcopy(TABULAR)}  # the student reads what the unlabelled rows hold
    with pytest.raises(ManifestError, match=r"not in no_image_train.csv .*; transfer.0.teach_unlabeled: false "
                                            r"teaches on the labelled rows only"):
        MultimodalPredictor.from_config(cfg).fit(data["train"], data["valid"], unlabeled=data["no_image_train"])
    cfg["transfer"][0]["teach_unlabeled"] = False
    student = MultimodalPredictor.from_config(cfg).fit(data["train"], data["valid"], unlabeled=data["no_image_train"])
    assert student.info["unlabeled_rows"] > 0 and "train_domain_loss" in student.history
    alone = config({"method": "distill", "teacher": str(tmp_path / "teacher"), "teach_unlabeled": False})
    alone["modalities"] = {"tab": copy.deepcopy(TABULAR)}
    with pytest.raises(OptionError, match="unlabelled data was given, but the configured transfer method"):
        MultimodalPredictor.from_config(alone).fit(data["train"], data["valid"], unlabeled=data["no_image_train"])


def test_pairing_the_loaders_warns_nothing_about_lightning_internals():
    """Lightning's CombinedLoader builds a torch ``LeafSpec``, which newer torch deprecates: a
    warning the user can do nothing about, printed once per fit before training starts."""
    import warnings

    from torch.utils.data import DataLoader

    from polymodal.training.transfer import PairedLoader

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        paired = PairedLoader(DataLoader(list(range(4)), batch_size=2), DataLoader(list(range(6)), batch_size=2))
    assert len(paired) == 3
