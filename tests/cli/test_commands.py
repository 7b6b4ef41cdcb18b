"""The ``polymodal`` command (``polymodal.cli.app``), run in-process with typer's CliRunner."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from data.datasets import fake_sources
from helpers_cli import assert_user_error, classification_files, invoke, train_run
from helpers_models import CLASSES, classification_config, regression_config
from typer.testing import CliRunner

from polymodal import MultimodalPredictor, __version__
from polymodal.cli import app
from polymodal.deploy.batch import parts_folder
from polymodal.fewshot import use_support

runner = CliRunner()


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    return classification_files(tmp_path_factory.mktemp("cli-data"))


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli-runs") / "run"
    return out, train_run(data, out)


def test_train_sets_config_keys_from_the_command_line(data, tmp_path):
    out = tmp_path / "quick"
    result = invoke("train", data["config"], "--train", data["train"], "--valid", data["valid"], "--out", out,
                    "--set", "train.epochs=1", "--set", "head.hidden=[8]")
    assert result.exit_code == 0, result.output
    saved = yaml.safe_load((out / "config.yaml").read_text(encoding="utf-8"))
    assert saved["train"]["epochs"] == 1 and saved["head"]["hidden"] == [8]  # the run records what it trained
    assert len(pd.read_csv(out / "history.csv")) == 1
    assert_user_error(invoke("train", data["config"], "--train", data["train"], "--out", tmp_path / "x",
                             "--set", "train.epochs"), "--set: expected KEY=VALUE")



def test_an_encoder_setting_only_building_finds_wrong_is_a_user_error_naming_its_key(data, tmp_path):
    result = invoke("train", data["config"], "--train", data["train"], "--out", tmp_path / "x",
                    "--set", "modalities.img.encoder={name: timm, arch: no_such_net}")
    assert_user_error(result, "modalities.img.encoder.arch: timm has no architecture 'no_such_net'")
    assert not (tmp_path / "x").exists()
    said = " ".join(result.output.split())  # the value came from --set, not from the file
    assert f"Invalid --set values for {data['config']}" in said
    assert "- --set modalities.img.encoder.arch: timm has no architecture" in said
    in_file = tmp_path / "in_file.yaml"
    config = yaml.safe_load(Path(data["config"]).read_text(encoding="utf-8"))
    config["modalities"]["img"]["encoder"] = {"name": "timm", "arch": "no_such_net"}
    in_file.write_text(yaml.safe_dump(config), encoding="utf-8")
    result = invoke("train", in_file, "--train", data["train"], "--out", tmp_path / "y", "--set", "train.epochs=1")
    said = " ".join(result.output.split())  # written in the file: the file's, though another key was --set
    assert f"Invalid config in {in_file}" in said and "- modalities.img.encoder.arch: timm has no" in said


def test_a_config_problem_of_another_file_met_during_training_keeps_its_file(data, tmp_path, monkeypatch):
    """A teacher run's config read during fit names its own file, even at a key a --set gave."""
    from polymodal.errors import ConfigError
    from polymodal.predictor import MultimodalPredictor

    teacher = tmp_path / "teacher" / "config.yaml"

    def teacher_problem(*args, **kwargs):
        raise ConfigError(["modalities.img.encoder.dim: unknown key 'dim'"], source=str(teacher))

    monkeypatch.setattr(MultimodalPredictor, "fit", teacher_problem)
    result = invoke("train", data["config"], "--train", data["train"], "--out", tmp_path / "x",
                    "--set", "modalities.img.encoder.dim=8")
    said = " ".join(result.output.split())
    assert result.exit_code != 0 and f"Invalid config in {teacher}" in said
    assert "- modalities.img.encoder.dim: unknown key 'dim'" in said and "--set" not in said

# -- config ------------------------------------------------------------------------------------
def test_config_schema_prints_json_schema():
    result = invoke("config", "schema")
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert {"task", "target", "modalities", "fusion", "head", "train"} <= set(schema["properties"])
    assert "modalities" in schema["required"]
    assert "target" not in schema["required"], "task 'retrieval' needs no target; the others check it themselves"


def test_config_check_ok(data):
    result = invoke("config", "check", data["config"])
    assert result.exit_code == 0, result.output
    assert "OK" in result.stdout and "img (image/cnn)" in result.stdout and "fusion concat" in result.stdout
    result = invoke("config", "check", data["config"], "--set", "fusion.name=late")  # the config train would run
    assert result.exit_code == 0, result.output
    assert f"OK {data['config']} with --set fusion.name=late:" in " ".join(result.stdout.split())
    assert "fusion late" in result.stdout
    assert_user_error(invoke("config", "check", data["config"], "--set", "train.epoch=2"),
                      "Invalid --set values for", "--set train.epoch: unknown key 'epoch' (did you mean 'epochs'?)")


def test_config_check_with_data_checks_the_manifests_as_training_reads_them(data, tmp_path):
    result = invoke("config", "check", data["config"], "--data", data["train"], "--data", data["valid"])
    assert result.exit_code == 0, result.output
    rows = len(pd.read_csv(data["train"]))
    said = " ".join(result.stdout.split())
    assert f"OK {data['train']}: {rows} rows (files found to exist, not decoded: an unreadable one is found when " \
           "training reads it)" in said
    frame = pd.read_csv(data["train"]).rename(columns={"image": "imag"}).assign(label=lambda f: f["label"].where(
        f.index != 2))
    frame.to_csv(tmp_path / "bad.csv", index=False)
    assert_user_error(invoke("config", "check", data["config"], "--data", tmp_path / "bad.csv"),
                      "modality 'img' reads column(s) 'image' (did you mean 'imag'?), not in bad.csv",
                      "target column 'label' is empty in row 2")  # every problem at once, before any training
    config = yaml.safe_load(data["config"].read_text()) | {"data": {"on_error": "missing"}}
    (data["root"] / "missing.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    gone = pd.read_csv(data["train"]).assign(image=lambda f: f["image"].where(f.index > 1, "gone.png"))
    gone["x1"] = gone["x1"].astype(object)
    gone.loc[[3, 5, 6], "x1"] = ["38,2", ">100", "n/a?"]  # read as missing, as training reads them
    gone.to_csv(data["root"] / "gone.csv", index=False)
    result = invoke("config", "check", data["root"] / "missing.yaml", "--data", data["root"] / "gone.csv")
    assert result.exit_code == 0, result.output
    said = " ".join(result.stdout.split())
    assert "data.on_error: missing skips 2 missing file(s) of 'image'" in said
    assert "data.on_error: missing reads as missing 3 value(s) of 'x1' that are no number" in said


def test_config_check_refuses_a_later_manifest_label_the_first_lacks_as_training_does(data, tmp_path):
    """config check passed a validation manifest holding a class the training manifest lacks, which
    train then refused: the second --data is now checked against the first one's classes, with
    training's own message."""
    valid = pd.read_csv(data["valid"]).assign(label=lambda f: f["label"].where(f.index != 3, "d"))
    valid.to_csv(data["root"] / "newclass.csv", index=False)
    said = "newclass.csv row 3 (line 5): label 'd' in column 'label' was not seen in training; known labels: " \
           "['a', 'b', 'c']"
    trained = invoke("train", data["config"], "--train", data["train"], "--valid", data["root"] / "newclass.csv",
                     "--out", tmp_path / "run", "--set", "train.epochs=1")
    assert_user_error(trained, said)
    assert_user_error(invoke("config", "check", data["config"], "--data", data["train"], "--data",
                             data["root"] / "newclass.csv"), said)
    result = invoke("config", "check", data["config"], "--data", data["root"] / "newclass.csv", "--data", data["train"])
    assert result.exit_code == 0, result.output  # the first manifest's classes are those trained: 'd' is one
    config = yaml.safe_load(data["config"].read_text()) | {"data": {"on_error": "skip"}}
    (data["root"] / "skip.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    valid.assign(image=lambda f: f["image"].where(f.index != 3, "gone.png")).to_csv(data["root"] / "gone_d.csv",
                                                                                      index=False)
    result = invoke("config", "check", data["root"] / "skip.yaml", "--data", data["train"], "--data",
                    data["root"] / "gone_d.csv")  # on_error skip drops the row of 'd': training never reads its label
    assert result.exit_code == 0, result.output
    assert "skips 1 missing file(s) of 'image'" in " ".join(result.stdout.split())


def test_config_check_with_data_says_a_multilabel_label_is_one_value_in_every_row(data):
    from helpers_models import multilabel_config

    config = {**multilabel_config(), "target": ["tag_bright", "tag_top", "always"]}
    (data["root"] / "multilabel.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    pd.read_csv(data["train"]).assign(always=1).to_csv(data["root"] / "always.csv", index=False)
    with pytest.warns(UserWarning) as caught:
        result = invoke("config", "check", data["root"] / "multilabel.yaml", "--data", data["root"] / "always.csv")
    assert result.exit_code == 0, result.output
    said = [str(w.message) for w in caught if "in every one of its" in str(w.message)]
    assert len(said) == 1 and said[0].startswith("label column 'always' of always.csv is 1 in every one of its ")
    assert "its AUROC is undefined and the model learns only to repeat 1" in said[0]



def test_config_check_with_data_checks_anomaly_normal_against_the_target_labels(data):
    """A misspelt normal value ('A' for 'a') passed the config check, and training then found every
    row of that label anomalous."""
    root = data["root"]

    def check(name: str, **anomaly: object):
        config = {"task": "anomaly", "target": "label", "modalities": classification_config()["modalities"],
                  **({"anomaly": anomaly} if anomaly else {})}
        (root / name).write_text(yaml.safe_dump(config), encoding="utf-8")
        return invoke("config", "check", root / name, "--data", data["train"])

    assert_user_error(check("typo.yaml", normal=["A", "b"]),
                      "anomaly.normal value 'A' is no label of target column 'label' of train.csv (its labels: "
                      "['a', 'b', 'c']) (did you mean 'a'?)")
    result = check("right.yaml", normal=["a", "b"])
    assert result.exit_code == 0, result.output
    assert_user_error(check("default.yaml"),  # the default, ['normal', 0]: one of them is enough, here none is
                      "anomaly.normal ['normal', 0] matches no label of target column 'label' of train.csv (its "
                      "labels: ['a', 'b', 'c']), so no row is normal")

def test_what_the_commands_print_is_text_not_markup(data, tmp_path):
    """Square brackets in a file name, a --set value or an error are printed as written (rich read
    them as style tags: '[bold]' vanished and styled the rest, '[normal]' vanished)."""
    config = tmp_path / "cfg[bold].yaml"
    config.write_text(Path(data["config"]).read_text(encoding="utf-8"), encoding="utf-8")
    result = invoke("config", "check", config, "--set", "head.hidden=[8]")
    assert result.exit_code == 0, result.output
    assert f"OK {config} with --set head.hidden=[8]:" in " ".join(result.stdout.split())
    assert_user_error(invoke("config", "check", config, "--set", "train.epochs=x[normal]"), "--set train.epochs",
                      "x[normal]")


def test_config_check_checks_the_tune_space_as_tune_does(data, tmp_path):
    """An unknown space key (train.lrr) printed OK, and tune then refused it."""
    config = yaml.safe_load(data["config"].read_text()) | {"tune": {"space": {"train.lrr": {"low": 1e-4, "high": 1e-2}}}}
    path = tmp_path / "tune.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    said = ("tune.space.train.lrr: low 0.0001 and high 0.01 do not fit the config: train.lrr: unknown key 'lrr' "
            "(did you mean 'lr'?)")
    assert_user_error(invoke("config", "check", path), f"Invalid config in {path}", said)
    assert_user_error(invoke("tune", path, "--train", data["train"], "--out", tmp_path / "search"), said)
    assert not (tmp_path / "search").exists()
    config["tune"]["space"] = {"modalities.img.encoder.dim": {"low": 8, "high": 32.0}}  # trial 0 would draw 20.3
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    assert_user_error(invoke("config", "check", path), "tune.space.modalities.img.encoder.dim: "
                      "modalities.img.encoder.dim takes whole numbers, but low 8 and high 32.0 make a float range")
    config["tune"]["space"] = {"modalities.img.encoder.dim": {"low": 8, "high": 32}, "fusion.name": ["concat", "late"]}
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    result = invoke("config", "check", path)
    assert result.exit_code == 0, result.output
    assert "head mlp, tune.space fusion.name, modalities.img.encoder.dim" in " ".join(result.stdout.split())


def test_config_check_reports_every_manifests_problems_in_one_run(data):
    """It stopped at the first manifest with a problem."""
    root = data["root"]
    pd.read_csv(data["valid"]).drop(columns="label").to_csv(root / "valid_nocat.csv", index=False)
    pd.read_csv(data["valid"]).assign(label=lambda f: f["label"].str.upper()).to_csv(root / "valid_case.csv",
                                                                                    index=False)
    result = invoke("config", "check", data["config"], "--data", data["train"], "--data", root / "valid_nocat.csv",
                    "--data", root / "valid_case.csv", "--data", data["valid"])
    assert_user_error(result, "Invalid manifest valid_nocat.csv (1 problem(s)):\n  - target column 'label' is not "
                      "in valid_nocat.csv", "valid_case.csv row 0 (line 2): label 'A' in column 'label' was not "
                      "seen in training (did you mean 'a'?)", "2 of 4 manifest(s) have problems")
    shown = " ".join(result.stdout.split())
    assert f"OK {data['train']}: " in shown and f"OK {data['valid']}: " in shown
    result = invoke("config", "check", data["config"], "--data", root / "valid_nocat.csv", "--data", data["valid"])
    assert_user_error(result, "1 of 2 manifest(s) have problems")  # the first failed: no classes to compare with
    assert f"OK {data['valid']}: 19 rows; labels not checked against the first --data's classes (it has problems)" \
        in " ".join(result.stdout.split())


def test_config_check_refuses_a_training_manifest_without_a_value_of_a_modality_as_train_does(data, tmp_path):
    """A text column blank in every row printed OK, and train then found nothing to fit the text
    preprocessing on; in a later (validation) manifest it is warned about: training validates
    without the modality."""
    root = data["root"]
    config = yaml.safe_load(data["config"].read_text())
    config["modalities"]["review"] = {"kind": "text", "column": "review"}
    (root / "text.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    pd.read_csv(data["train"]).assign(review="").to_csv(root / "notext_train.csv", index=False)
    pd.read_csv(data["valid"]).assign(review="fine").to_csv(root / "text_valid.csv", index=False)
    said = ("notext_train.csv: column 'review' (modality 'review') has no value in any training row: nothing to fit "
            "its preprocessing on; fill the column or drop the modality from the config")
    assert_user_error(invoke("train", root / "text.yaml", "--train", root / "notext_train.csv", "--valid",
                             root / "text_valid.csv", "--out", tmp_path / "run", "--set", "train.epochs=1"), said)
    assert_user_error(invoke("config", "check", root / "text.yaml", "--data", root / "notext_train.csv"), said)
    pd.read_csv(data["train"]).assign(review="fine").to_csv(root / "text_train.csv", index=False)
    pd.read_csv(data["valid"]).assign(review="").to_csv(root / "notext_valid.csv", index=False)
    with pytest.warns(UserWarning, match=r"^notext_valid.csv: modality 'review' has no value \(or no file that "
                                         r"exists\) in any row: training validates the model without it$"):
        result = invoke("config", "check", root / "text.yaml", "--data", root / "text_train.csv", "--data",
                        root / "notext_valid.csv")
    assert result.exit_code == 0, result.output


def test_config_check_names_the_bad_key(tmp_path):
    config = classification_config()
    config["modalities"]["img"]["encoder"]["dim"] = -1
    config["train"]["epoch"] = 3
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    assert_user_error(invoke("config", "check", path), "modalities.img.encoder.dim", "epoch", "did you mean 'epochs'")


def test_config_check_missing_file(tmp_path):
    assert_user_error(invoke("config", "check", tmp_path / "nope.yaml"), "config file not found")


# -- datasets ----------------------------------------------------------------------------------
def test_datasets_list():
    result = invoke("datasets", "list")
    assert result.exit_code == 0
    assert "av-digits" in result.stdout and "embedded" in result.stdout
    flat = " ".join(result.stdout.replace("│", " ").split())  # the table folds long descriptions
    assert "polymodal[openclipart]" in flat.replace(" ", "")  # the extra's name, not eaten as rich markup


def test_datasets_prepare_unknown_name(tmp_path):
    assert_user_error(invoke("datasets", "prepare", "no-such-set", "--out", tmp_path / "x"), "no-such-set", "av-digits")


@pytest.fixture(scope="module")
def fsdd_source(tmp_path_factory):
    """A tiny source folder laid out like ../shared/data: 3 speakers, 10 MNIST-like images per digit."""
    source = tmp_path_factory.mktemp("fsdd-source")
    fake_sources.make_fsdd(source, {"jackson": 2, "nicolas": 1, "theo": 1})
    fake_sources.make_mnist(source, n=100)
    return source


def prepare_fsdd(source, out, *args: str):
    return invoke("datasets", "prepare", "fsdd-mnist", "--source", source, "--out", out, *args)


def test_datasets_prepare_chooses_the_test_speakers(fsdd_source, tmp_path):
    result = prepare_fsdd(fsdd_source, tmp_path / "fm", "--test-speaker", "nicolas", "--test-speaker", "theo")
    assert result.exit_code == 0, result.output
    test, train = (pd.read_csv(tmp_path / "fm" / f"{s}.csv") for s in ("test", "train"))
    assert set(test["speaker"]) == {"nicolas", "theo"} and len(test) == 20
    assert set(train["speaker"]) == {"jackson"}
    assert json.loads((tmp_path / "fm" / "dataset.json").read_text())["test_speakers"] == ["nicolas", "theo"]


def test_datasets_prepare_replaces_an_earlier_preparation_only_with_overwrite(fsdd_source, tmp_path):
    assert prepare_fsdd(fsdd_source, tmp_path / "fm", "--test-speaker", "theo").exit_code == 0
    assert_user_error(prepare_fsdd(fsdd_source, tmp_path / "fm", "--test-speaker", "nicolas"),
                      f"--out {tmp_path / 'fm'} already holds the fsdd-mnist dataset (40 rows); give --overwrite")
    result = prepare_fsdd(fsdd_source, tmp_path / "fm", "--test-speaker", "nicolas", "--overwrite")
    assert result.exit_code == 0, result.output
    assert set(pd.read_csv(tmp_path / "fm" / "test.csv")["speaker"]) == {"nicolas"}
    listed = {p for s in ("train", "valid", "test") for c in ("image", "audio")
              for p in pd.read_csv(tmp_path / "fm" / f"{s}.csv")[c]}
    assert {p.relative_to(tmp_path / "fm").as_posix() for p in (tmp_path / "fm").glob("*/*")} == listed


def test_datasets_prepare_unknown_test_speaker_lists_the_speakers_found(fsdd_source, tmp_path):
    assert_user_error(prepare_fsdd(fsdd_source, tmp_path / "fm", "--test-speaker", "george"),
                      "['george']", "speakers found: ['jackson', 'nicolas', 'theo']")


def test_datasets_prepare_test_speaker_needs_the_speaker_split(fsdd_source, tmp_path):
    assert_user_error(prepare_fsdd(fsdd_source, tmp_path / "fm", "--split", "official", "--test-speaker", "theo"),
                      "--test-speaker", "only allowed with split 'speaker'")


def test_datasets_prepare_cuts_cwru_windows_at_the_chosen_loads(tmp_path):
    fake_sources.make_cwru(tmp_path / "src", {"b_0": ("B007", 0, 1797), "b_2": ("B007", 2, 1748),
                                              "ir_3": ("IR014", 3, 1730)}, length=1000)
    result = invoke("datasets", "prepare", "cwru", "--source", tmp_path / "src", "--out", tmp_path / "c",
                    "--window", "200", "--hop", "100", "--load", "2", "--load", "3", "--max-windows", "5")
    assert result.exit_code == 0, result.output
    rows = pd.concat([pd.read_csv(tmp_path / "c" / f"{s}.csv") for s in ("train", "valid", "test")])
    assert sorted(set(rows["load"])) == [2, 3] and len(rows) == 10  # 9 windows each, 5 kept
    assert all(np.load(tmp_path / "c" / p).shape == (200,) for p in rows["de_path"])
    assert set(zip(rows["fault_type"], rows["fault_size"])) == {("B", 0.007), ("IR", 0.014)}
    assert_user_error(invoke("datasets", "prepare", "cwru", "--source", tmp_path / "src", "--out", tmp_path / "d",
                             "--load", "5"), "no recording at load(s) [5] hp", "holds loads [0, 2, 3]")
    assert_user_error(invoke("datasets", "prepare", "mnist", "--source", tmp_path / "src", "--out", tmp_path / "e",
                             "--window", "100"), "dataset 'mnist' does not take --window")


def test_datasets_prepare_unknown_split_names_the_allowed_ones(fsdd_source, tmp_path):
    assert_user_error(prepare_fsdd(fsdd_source, tmp_path / "fm", "--split", "bogus"),
                      "split must be 'speaker' or 'official'", "got 'bogus'")
    assert not (tmp_path / "fm").exists()


@pytest.mark.parametrize("option", [("--split", "speaker"), ("--test-speaker", "theo")], ids=lambda o: o[0])
def test_datasets_prepare_refuses_options_the_dataset_does_not_take(option, fsdd_source, tmp_path):
    result = invoke("datasets", "prepare", "mnist", "--source", fsdd_source, "--out", tmp_path / "m", *option)
    assert_user_error(result, f"dataset 'mnist' does not take {option[0]}", "options it takes: none")
    assert not (tmp_path / "m").exists()


def test_datasets_prepare_lists_the_flags_a_dataset_takes(tmp_path):
    result = invoke("datasets", "prepare", "av-digits", "--out", tmp_path / "a", "--split", "official")
    assert_user_error(result, "dataset 'av-digits' does not take --split (options it takes: --size)")


def test_datasets_prepare_size_makes_a_smaller_av_digits(tmp_path):
    result = invoke("datasets", "prepare", "av-digits", "--out", tmp_path / "a", "--size", "40")
    assert result.exit_code == 0, result.output
    rows = sum(len(pd.read_csv(tmp_path / "a" / f"{split}.csv")) for split in ("train", "valid", "test"))
    assert rows == 40


def test_datasets_prepare_moving_digits_takes_its_clip_counts(tmp_path):
    fake_sources.make_fsdd(tmp_path / "src", {"jackson": 6})  # indices 0-4 feed test clips, 5 the others
    fake_sources.make_mnist(tmp_path / "src", n=200)
    result = invoke("datasets", "prepare", "moving-digits", "--source", tmp_path / "src", "--out", tmp_path / "md",
                    "--size", "32", "--n-train", "5", "--n-valid", "2", "--test-normal", "3", "--test-per-anomaly", "1")
    assert result.exit_code == 0, result.output
    labels = {s: pd.read_csv(tmp_path / "md" / f"{s}.csv")["label"].value_counts().to_dict()
              for s in ("train", "valid", "test")}
    assert labels == {"train": {"normal": 5}, "valid": {"normal": 2},
                      "test": {"normal": 3, "mismatched_audio": 1, "frozen_frames": 1, "dropped_audio": 1}}
    assert_user_error(invoke("datasets", "prepare", "av-digits", "--out", tmp_path / "a", "--n-train", "5"),
                      "dataset 'av-digits' does not take --n-train")


# -- train / evaluate / predict ----------------------------------------------------------------
def test_train_writes_a_run(run):
    out, result = run
    for name in ("config.yaml", "model.safetensors", "metrics.json", "history.csv", "report.html"):
        assert (out / name).is_file(), name
    assert "valid metrics" in result.stdout and "accuracy" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["valid"]["accuracy"] >= 0.8
    assert metrics["training"]["polymodal_version"] == __version__  # what wrote the run


def test_version_prints_the_installed_polymodal_version():
    result = invoke("--version")
    assert result.exit_code == 0 and result.stdout == f"polymodal {__version__}\n"
    for module in ("polymodal", "polymodal.cli"):  # python -m, as launchers (torchrun -m) start it
        started = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True, text=True, timeout=120)
        assert started.returncode == 0 and started.stdout == f"polymodal {__version__}\n", started.stderr


def test_evaluate_json(run, data):
    out, _ = run
    result = invoke("evaluate", out, "--data", data["test"], "--json")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["rows"] == len(pd.read_csv(data["test"]))
    expected = MultimodalPredictor.load(out).evaluate(data["test"])
    assert metrics["accuracy"] == pytest.approx(expected["accuracy"])
    assert metrics["confusion_matrix"] == expected["confusion_matrix"]


def test_evaluate_table(run, data):
    out, _ = run
    result = invoke("evaluate", out, "--data", data["test"])
    assert result.exit_code == 0 and "accuracy" in result.stdout and "test.csv" in result.stdout


def test_predict_writes_a_csv(run, data, tmp_path):
    out, _ = run
    preds = tmp_path / "preds.csv"
    result = invoke("predict", out, "--data", data["test"], "--out", preds)
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(preds)
    test = pd.read_csv(data["test"])
    assert list(frame.columns) == ["row", "prediction", *(f"proba_{c}" for c in CLASSES), "absent"]
    assert len(frame) == len(test) and list(frame["row"]) == list(range(len(test)))
    proba = frame[[f"proba_{c}" for c in CLASSES]].to_numpy()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    assert list(frame["prediction"]) == [CLASSES[i] for i in proba.argmax(axis=1)]
    expected = MultimodalPredictor.load(out).predict_proba(data["test"]).to_numpy()
    np.testing.assert_allclose(proba, expected, rtol=1e-6, atol=1e-7)
    assert f"{len(test)} predictions" in result.stdout


def test_predict_parquet(run, data, tmp_path):
    out, _ = run
    preds = tmp_path / "preds.parquet"
    assert invoke("predict", out, "--data", data["test"], "--out", preds, "--keep", "label").exit_code == 0
    frame = pd.read_parquet(preds)
    test = pd.read_csv(data["test"])
    assert len(frame) == len(test) and list(frame.columns[:3]) == ["row", "label", "prediction"]
    assert frame["label"].tolist() == test["label"].tolist()  # --keep: a manifest column carried through


def test_a_misnamed_modality_column_is_warned_about(run, data):
    out, _ = run
    pd.read_csv(data["test"]).rename(columns={"image": "img_path"}).to_csv(data["root"] / "renamed.csv", index=False)
    with pytest.warns(UserWarning, match=r"renamed.csv has no column 'image' \(modality img\).*'img_path'"):
        result = invoke("evaluate", out, "--data", data["root"] / "renamed.csv", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows"] == len(pd.read_csv(data["test"]))


def test_missing_modality_evaluation_does_not_warn(run, data, tmp_path, recwarn):
    out, _ = run
    result = invoke("evaluate", out, "--data", data["test"], "--missing", "--out", tmp_path, "--json")
    assert result.exit_code == 0, result.output
    assert {row["modalities"] for row in json.loads(result.stdout)["missing"]} >= {"img", "tab"}
    assert [str(w.message) for w in recwarn if "has no column" in str(w.message)] == []


@pytest.fixture(scope="module")
def fewshot_run(data, tmp_path_factory):
    """A prototypical network, and the test rows and a support set with the classes renamed."""
    folder = tmp_path_factory.mktemp("cli-fewshot")
    config = classification_config(epochs=4)
    config["transfer"] = {"method": "protonet", "shots": 3, "queries": 4, "dim": 16}
    (folder / "protonet.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    out = folder / "run"
    result = invoke("train", folder / "protonet.yaml", "--train", data["train"], "--valid", data["valid"], "--out", out)
    assert result.exit_code == 0, result.output
    names = {"a": "low", "b": "mid", "c": "high"}
    for split in ("valid", "test"):  # beside the images: the relative paths still resolve
        frame = pd.read_csv(data[split])
        frame.assign(label=frame["label"].map(names)).to_csv(data["root"] / f"{split}_renamed.csv", index=False)
    return out, data["root"] / "valid_renamed.csv", data["root"] / "test_renamed.csv"


def test_predict_and_evaluate_with_a_support_set(fewshot_run, data, tmp_path):
    out, support, test = fewshot_run
    preds = tmp_path / "preds.csv"
    result = invoke("predict", out, "--data", data["test"], "--out", preds, "--support", support)
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(preds)
    assert list(frame.columns) == ["row", "prediction", "proba_high", "proba_low", "proba_mid", "absent"]
    expected = MultimodalPredictor.load(out).predict_frame(data["test"], support=support)
    assert list(frame["prediction"]) == list(expected["prediction"])
    truth = pd.read_csv(test)["label"]
    assert (frame["prediction"] == truth).mean() >= 0.75
    result = invoke("evaluate", out, "--data", test, "--support", support, "--json")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["accuracy"] == pytest.approx((frame["prediction"] == truth).mean())
    assert_user_error(invoke("evaluate", out, "--data", test), "not seen in training")  # no support: a, b, c


def test_a_support_set_is_embedded_with_the_query_manifests_modalities_as_in_python(fewshot_run, data, tmp_path):
    out, support, test = fewshot_run  # the support set holds both modalities (img, tab)
    queries = data["root"] / "test_renamed_tab_only.csv"  # queries holding the tabular columns alone
    pd.read_csv(test)[["x1", "x2", "color", "label"]].to_csv(queries, index=False)
    pred = MultimodalPredictor.load(out)
    with pytest.warns(UserWarning, match="has no column"):  # the queries' absent image column
        expected = pred.predict_frame(queries, support=support)
        python_metrics = pred.evaluate(queries, support=support)
        with use_support(pred, support):  # prototypes of every modality the support set has: they differ
            both = pred.predict_proba(queries)
    probas = [f"proba_{c}" for c in both.columns]
    assert not np.allclose(expected[probas].to_numpy(), both.to_numpy(), atol=1e-3)
    preds = tmp_path / "preds.csv"
    with pytest.warns(UserWarning, match="has no column"):  # the commands warn of it too
        predicted = invoke("predict", out, "--data", queries, "--out", preds, "--support", support)
        result = invoke("evaluate", out, "--data", queries, "--support", support, "--json")
    assert predicted.exit_code == 0, predicted.output
    frame = pd.read_csv(preds)
    assert list(frame["prediction"]) == list(expected["prediction"])
    np.testing.assert_allclose(frame[probas].to_numpy(), expected[probas].to_numpy(), atol=1e-5)
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["log_loss"] == pytest.approx(python_metrics["log_loss"], abs=1e-5)
    assert metrics["accuracy"] == pytest.approx(python_metrics["accuracy"])


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_a_support_set_for_a_model_without_prototypes_is_refused(command, run, data, tmp_path):
    out, _ = run
    extra = ("--out", tmp_path / "preds.csv") if command == "predict" else ()
    result = invoke(command, out, "--data", data["test"], "--support", data["valid"], *extra)
    assert_user_error(result, "support", "protonet")
    assert not (tmp_path / "preds.csv").exists()
    assert not parts_folder(tmp_path / "preds.csv").exists()  # refused before the parts folder is made


@pytest.fixture(scope="module")
def reg_run(data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli-reg")
    config = folder / "reg.yaml"
    config.write_text(yaml.safe_dump(regression_config(epochs=2)), encoding="utf-8")
    out = folder / "run"
    result = invoke("train", config, "--train", data["train"], "--valid", data["valid"], "--out", out)
    assert result.exit_code == 0, result.output
    assert "mae" in result.stdout and "rmse" in result.stdout
    return out


def test_train_regression_and_predict(reg_run, data, tmp_path):
    preds = tmp_path / "preds.csv"
    result = invoke("predict", reg_run, "--data", data["test"], "--out", preds)
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(preds)
    assert "pred_y" in frame.columns and len(frame) == len(pd.read_csv(data["test"]))
    expected = MultimodalPredictor.load(reg_run).predict(data["test"])
    np.testing.assert_allclose(frame["pred_y"], expected, rtol=1e-6)


def test_regression_predictions_carry_the_row_number(reg_run, data, tmp_path):
    preds = tmp_path / "preds.csv"
    assert invoke("predict", reg_run, "--data", data["test"], "--out", preds).exit_code == 0
    frame = pd.read_csv(preds)
    assert list(frame.columns) == ["row", "pred_y", "absent"]


def test_train_resume_continues_the_run(data, tmp_path):
    out, config = tmp_path / "run", tmp_path / "config.yaml"
    args = ("train", config, "--train", data["train"], "--valid", data["valid"], "--out", out)
    config.write_text(yaml.safe_dump(classification_config(epochs=1)), encoding="utf-8")
    assert invoke(*args).exit_code == 0
    first = pd.read_csv(out / "history.csv")
    config.write_text(yaml.safe_dump(classification_config(epochs=2)), encoding="utf-8")
    result = invoke(*args, "--resume")
    assert result.exit_code == 0, result.output
    history = pd.read_csv(out / "history.csv")
    assert list(history["epoch"]) == [1, 2]
    # epoch 0 is the first run's row, its measured seconds included: only epoch 1 was trained again
    pd.testing.assert_frame_equal(history.iloc[:1], first)
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["epochs"] == 2
    assert "valid metrics" in result.stdout and (out / "model.safetensors").is_file()


def test_train_resume_without_a_checkpoint(data, tmp_path):
    result = invoke("train", data["config"], "--train", data["train"], "--out", tmp_path / "fresh", "--resume")
    assert_user_error(result, "no checkpoint")


# -- user errors -------------------------------------------------------------------------------
def test_missing_training_manifest(data, tmp_path):
    result = invoke("train", data["config"], "--train", tmp_path / "nope.csv", "--out", tmp_path / "run")
    assert_user_error(result, "manifest file not found", "nope.csv")
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_missing_evaluation_manifest(run, tmp_path):
    out, _ = run
    result = invoke("evaluate", out, "--data", tmp_path / "nope.csv")
    assert_user_error(result, "manifest file not found")
    assert "hint:" not in result.stderr  # no row to go past: the manifest itself is missing


def test_evaluate_a_folder_that_is_not_a_run(data, tmp_path):
    assert_user_error(invoke("evaluate", tmp_path, "--data", data["test"]), "not a polymodal run folder")
    assert_user_error(invoke("evaluate", tmp_path / "nonexist", "--data", data["test"]),
                      f"run folder not found: {tmp_path / 'nonexist'}")
    assert_user_error(invoke("evaluate", data["config"], "--data", data["test"]), "is a file, not a run folder")


def test_explain_into_a_file_is_refused_before_the_work(run, data, tmp_path):
    out, _ = run
    (tmp_path / "p.csv").write_text("mine")
    assert_user_error(invoke("explain", out, "--data", data["test"], "--out", tmp_path / "p.csv"),
                      f"--out must be a folder (explain.html, shapley.csv...); {tmp_path / 'p.csv'} is a file")


def test_unseen_label_on_evaluate(run, data):
    out, _ = run
    frame = pd.read_csv(data["test"])
    frame.loc[0, "label"] = "zebra"
    frame.to_csv(data["root"] / "unseen.csv", index=False)
    assert_user_error(invoke("evaluate", out, "--data", data["root"] / "unseen.csv"), "'zebra'")


def test_evaluating_rows_without_labels_points_to_predict(run, data):
    out, _ = run
    unlabelled = pd.read_csv(data["test"]).drop(columns=["label"])
    unlabelled.to_csv(data["root"] / "unlabelled.csv", index=False)
    said = (f"target column 'label' is not in unlabelled.csv (columns: {list(unlabelled.columns)}): evaluating "
            "scores predictions against it; to predict unlabelled rows use 'polymodal predict'")
    for extra in ([], ["--missing"]):  # the sweeps read the manifest first
        assert_user_error(invoke("evaluate", out, "--data", data["root"] / "unlabelled.csv", *extra), said)


def test_error_messages_keep_square_brackets(data, tmp_path):
    missing = tmp_path / "[exp1]" / "train.csv"
    assert_user_error(invoke("train", data["config"], "--train", missing, "--out", tmp_path / "run"), "[exp1]")


def test_misspelt_early_stopping_metric_is_a_config_error(data, tmp_path):
    config = classification_config(epochs=1, early_stopping={"monitor": "acuracy"})
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    assert_user_error(invoke("config", "check", path), "acuracy")


def test_config_check_of_a_retrieval_config_names_no_head(tmp_path):
    config = classification_config()
    config.update(task="retrieval", align={"objective": "contrastive", "dim": 8})
    config.pop("target")
    path = tmp_path / "align.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    result = invoke("config", "check", path)
    assert result.exit_code == 0, result.output
    assert "task retrieval" in result.stdout and "align contrastive (8-d)" in " ".join(result.stdout.split())
    assert "head" not in result.stdout and "fusion" not in result.stdout  # the alignment trains alone


def test_config_check_names_the_transfer_methods(tmp_path):
    config = classification_config()
    config["transfer"] = [{"method": "cdan"}, {"method": "fixmatch"}]
    path = tmp_path / "adapt.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    result = invoke("config", "check", path)
    assert result.exit_code == 0, result.output
    assert "head mlp, transfer cdan+fixmatch" in " ".join(result.stdout.split())

def test_config_check_of_an_anomaly_config_names_its_scorer_not_a_head(tmp_path):
    config = classification_config()
    config.update(task="anomaly", anomaly={"scorer": "deep_svdd"})
    config.pop("target")
    path = tmp_path / "anomaly.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    result = invoke("config", "check", path)
    assert result.exit_code == 0, result.output
    assert "fusion concat, scorer deep_svdd" in " ".join(result.stdout.split()) and "head" not in result.stdout
    del config["anomaly"]  # as config init writes it without --target: the default scorer
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    result = invoke("config", "check", path)
    assert result.exit_code == 0, result.output
    assert "scorer autoencoder" in " ".join(result.stdout.split())


def test_ctrl_c_ends_a_command_with_one_line_and_status_130(capsys, tmp_path):
    """The --resume hint only where there is something to resume: a fit stopped while it read
    its data has no checkpoint, and --resume would say so."""
    import typer

    from polymodal.cli import user_errors

    @user_errors
    def train(out: Path, resume: bool = False) -> None:
        raise KeyboardInterrupt

    with pytest.raises(typer.Exit) as stopped:
        train(out=tmp_path / "run", resume=False)
    assert stopped.value.exit_code == 130
    assert capsys.readouterr().err.strip() == "interrupted"
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "last.ckpt").write_bytes(b"")
    with pytest.raises(typer.Exit):
        train(out=tmp_path / "run", resume=False)
    assert "interrupted (the same command with --resume continues it)" in capsys.readouterr().err


def test_sigterm_ends_a_command_like_ctrl_c_with_status_143(capsys, tmp_path):
    import os
    import signal

    import typer

    from polymodal.cli import user_errors

    before = signal.getsignal(signal.SIGTERM)

    @user_errors
    def predict(out: Path, resume: bool = False) -> None:
        parts = out.parent / f".{out.name}.parts"  # a chunk finished before the signal
        parts.mkdir()
        (parts / "part-000000.parquet").write_bytes(b"")
        os.kill(os.getpid(), signal.SIGTERM)  # docker stop, a scheduler, Kubernetes
        raise AssertionError("not reached: the signal stops the command")

    with pytest.raises(typer.Exit) as stopped:
        predict(out=tmp_path / "preds.csv", resume=False)
    assert stopped.value.exit_code == 143
    assert "terminated (the same command with --resume continues it)" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is before  # put back once the command ends


def test_config_check_names_the_files_a_config_refers_to_that_do_not_exist(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("target: y\nmodalities:\n  img: {kind: image, column: img, encoder: {name: resnet, weights: "
                    "nowts/r18.pt}}\ndata: {cache_dir: not_yet}\n", encoding="utf-8")
    for command in (["config", "check", path], ["train", path, "--train", tmp_path / "t.csv", "--out", tmp_path / "r"]):
        result = invoke(*command)  # train names them as config check does, the config file included
        assert_user_error(result, f"Invalid config in {path}",
                          f"modalities.img.encoder.weights: not found: {tmp_path / 'nowts' / 'r18.pt'}")
        assert "cache_dir" not in result.stderr  # a folder the run creates


def test_datasets_prepare_names_the_flag_an_embedded_dataset_does_not_take(tmp_path):
    result = invoke("datasets", "prepare", "av-digits", "--out", tmp_path / "x", "--source", tmp_path, "--size", "60")
    assert_user_error(result, "dataset 'av-digits' does not take --source (options it takes: --size)")


def test_the_command_list_rewraps_each_commands_help_to_the_terminal():
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    lines = [" ".join(line.strip("│ ").split()) for line in result.output.splitlines()]
    # the docstring breaks this sentence after 'or'; a wide terminal shows it on one line
    assert any("inside each, to pixels, tokens or time-frequency bins (Integrated Gradients)" in line for line in lines)
    serve = runner.invoke(app, ["serve", "--help"], env={"COLUMNS": "200"})
    assert "Authorization: Bearer TOKEN" in serve.output  # markdown would drop an <angle-bracketed> word


def test_the_on_error_option_offers_the_configs_choices():
    from typing import get_args

    from polymodal.cli.common import ON_ERROR
    from polymodal.config.train import OnError

    assert ON_ERROR == get_args(OnError)


def test_an_option_named_as_a_config_key_is_answered_with_the_set_that_sets_it(tmp_path):
    """``train --epochs 3``: not an option, a config key; train, tune and config check say which
    --set sets it, a command without --set says nothing of it."""
    import re

    def said(result) -> str:
        return " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.output).split())

    for args in (["train", tmp_path / "c.yaml", "--train", tmp_path / "t.csv", "--out", tmp_path / "r", "--epochs", "3"],
                 ["config", "check", tmp_path / "c.yaml", "--batch-size", "8"]):
        result = invoke(*args)
        assert result.exit_code == 2
        key = "train.epochs" if args[0] == "train" else "train.batch_size"
        assert f"(it is a config key: --set {key}=VALUE sets it)" in said(result), said(result)
    result = invoke("evaluate", tmp_path / "r", "--data", tmp_path / "t.csv", "--epochs", "3")
    assert result.exit_code == 2 and "No such option: --epochs" in said(result) and "config key" not in said(result)
