"""The run folder under mistakes: a run is never replaced or corrupted by a command that fails, a
finished or interrupted run is only replaced when asked, ``--resume`` refuses another config, a
damaged run is named as such, and paths that cannot be written are one-line errors."""

from __future__ import annotations

import shutil
import warnings

import pandas as pd
import pytest
import yaml
from helpers_cli import assert_user_error, classification_files, invoke, train_run
from helpers_models import classification_config, unit_targets, unit_targets_config

from polymodal import MultimodalPredictor
from polymodal.errors import OptionError, RunFolderError


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    return classification_files(tmp_path_factory.mktemp("runfolder-data"), epochs=1)


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runfolder-runs") / "run"
    train_run(data, out)
    return out


def _copy(run, tmp_path):
    return shutil.copytree(run, tmp_path / "run")


def _train(data, out, *extra, config=None, train=None):
    return invoke("train", config or data["config"], "--train", train or data["train"], "--valid", data["valid"],
                  "--out", out, *extra)


def _beside_the_data(data, frame: pd.DataFrame, name: str):
    """Write a manifest next to the generated files (its relative paths resolve there)."""
    path = data["root"] / name
    frame.to_csv(path, index=False)
    return path


def _snapshot(run) -> dict[str, bytes]:
    return {p.relative_to(run).as_posix(): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def test_a_finished_run_is_not_replaced_unless_asked(data, trained, tmp_path):
    run = _copy(trained, tmp_path)
    before = _snapshot(run)
    assert_user_error(_train(data, run), "already holds a trained model", "--overwrite")
    assert _snapshot(run) == before
    (run / "notes.txt").write_text("mine")  # a file of the user's own survives the overwrite
    (run / "export").mkdir()
    (run / "export" / "deploy.json").write_text("{}")  # the old model's export: serve must not find it
    result = _train(data, run, "--overwrite")
    assert result.exit_code == 0, result.output
    assert (run / "notes.txt").read_text() == "mine" and not (run / "export").exists()
    assert MultimodalPredictor.load(run).info["epochs_run"] == 1


def test_an_out_holding_a_run_is_refused_before_the_training_engine_is_imported(data, trained):
    """train refused an --out holding a run only after Lightning's import (10 s): --out is checked
    first, as the README says."""
    import subprocess
    import sys

    args = ["train", str(data["config"]), "--train", str(data["train"]), "--valid", str(data["valid"]),
            "--out", str(trained)]
    code = ("import sys; from typer.testing import CliRunner; from polymodal.cli import app; "
            f"result = CliRunner().invoke(app, {args!r}); "
            "print(result.exit_code, sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', "
            "'torchmetrics'))); print(result.stderr)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    status, said = out.split("\n", 1)
    assert status == "2 []", out
    assert f"{trained} already holds a trained model" in said and "--overwrite" in said


def test_a_bad_manifest_leaves_the_existing_run_untouched(data, trained, tmp_path):
    run = _copy(trained, tmp_path)
    before = _snapshot(run)
    broken = pd.read_csv(data["train"])
    broken.loc[3, "image"] = "gone.png"
    broken.to_csv(data["root"] / "broken.csv", index=False)
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(classification_config(epochs=3)), encoding="utf-8")
    assert_user_error(_train(data, run, "--overwrite", config=other, train=data["root"] / "broken.csv"), "gone.png",
                      "hint: --on-error skip leaves out the rows of unreadable or missing files")
    assert _snapshot(run) == before, "the refused run's files changed"
    assert MultimodalPredictor.load(run).predict(data["test"]) is not None


def test_a_corrupt_training_file_under_overwrite_leaves_the_old_run(data, trained, tmp_path):
    """The old run is only cleared right before training: a file that fails to decode while
    preprocessing stops the command with the old run intact."""
    run = _copy(trained, tmp_path)
    before = _snapshot(run)
    frame = pd.read_csv(data["train"])
    row = frame.index[frame["image"].fillna("") != ""][0]
    (tmp_path / "corrupt.png").write_bytes(b"not an image")
    frame.loc[row, "image"] = str(tmp_path / "corrupt.png")
    result = _train(data, run, "--overwrite", train=_beside_the_data(data, frame, "train_corrupt.csv"))
    assert_user_error(result, "corrupt.png")
    assert _snapshot(run) == before


def test_resume_and_overwrite_together_are_refused_in_python_too(data, trained, tmp_path):
    predictor = MultimodalPredictor.from_config(data["config"])
    with pytest.raises(RunFolderError, match="give one of them"):
        predictor.fit(data["train"], data["valid"], out=trained, resume=True, overwrite=True)


def test_an_interrupted_run_needs_resume_or_overwrite(data, trained, tmp_path):
    run = _copy(trained, tmp_path)
    (run / "model.safetensors").unlink()  # interrupted: checkpoints but no final model
    assert_user_error(_train(data, run), "an interrupted run", "--resume")


@pytest.mark.parametrize("killed_in", ["write_model", "write_report"])
def test_a_resume_interrupted_while_saving_is_finished_by_the_next_resume(data, trained, tmp_path, monkeypatch,
                                                                        killed_in):
    """A resume for more epochs stopped while it saved: the folder held the earlier fit's model
    and metrics beside a checkpoint of more epochs, and the next --resume said 'already finished'."""
    import json

    from polymodal import runfolder
    from polymodal.evaluation import report
    from polymodal.resume import resuming_line

    run = _copy(trained, tmp_path)
    more = tmp_path / "two.yaml"
    more.write_text(yaml.safe_dump(classification_config(epochs=2)), encoding="utf-8")
    module, name = (runfolder, "write_model") if killed_in == "write_model" else (report, "write_report")
    real = getattr(module, name)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(module, name, killed)
    result = _train(data, run, "--resume", config=more)
    assert result.exit_code == 130 and "--resume continues it" in result.stderr
    monkeypatch.setattr(module, name, real)
    assert_user_error(_train(data, run, config=more), "latest results were not all written", "--resume")
    assert resuming_line(run, 2) == (f"resuming {run}: its 2 epochs are trained; writing the results an "
                                     "interrupted save left out")  # what the resume says (with train.progress)
    result = _train(data, run, "--resume", config=more)
    assert result.exit_code == 0, result.output
    assert json.loads((run / "metrics.json").read_text())["training"]["epochs_run"] == 2
    assert (run / "report.html").is_file()
    assert_user_error(_train(data, run, "--resume", config=more), "already finished its 2 epochs")


def test_a_second_fit_into_a_folder_another_fit_is_writing_is_refused_at_once(data, trained, tmp_path):
    """Two fits into one --out both reported success; one run was silently gone."""
    from polymodal.utils.io import exclusive_lock

    with exclusive_lock(tmp_path / "run", lambda held: AssertionError("the test holds it")):  # as a running fit does
        assert_user_error(_train(data, tmp_path / "run"), "is being trained into by another fit", "another --out")
    assert not (tmp_path / "run").exists()
    training = _copy(trained, tmp_path / "busy")
    (training / "model.safetensors").unlink()  # a fit under way: its checkpoint, no model yet
    with exclusive_lock(training, lambda held: AssertionError("the test holds it")):
        for extra in ([], ["--resume"]):  # not taken for an interrupted run (train checks --out early)
            assert_user_error(_train(data, training, *extra), "is being trained into by another fit")
    result = _train(data, tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert not (tmp_path / ".run.lock").exists()


def test_resume_refuses_a_config_that_trains_another_model(data, trained, tmp_path):
    run = _copy(trained, tmp_path)
    before = _snapshot(run)
    changed = classification_config(epochs=2)
    changed["modalities"]["img"]["encoder"]["channels"] = [4]
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(changed), encoding="utf-8")
    assert_user_error(_train(data, run, "--resume", config=path), "another config",
                      "modalities.img.encoder.channels: [8] -> [4]")
    assert _snapshot(run) == before
    changed = classification_config(epochs=2) | {"fusion": {"name": "attention"}}  # keys concat does not have
    path.write_text(yaml.safe_dump(changed), encoding="utf-8")
    assert_user_error(_train(data, run, "--resume", config=path), "fusion.name: 'concat' -> 'attention'", "(absent) -> ")


def test_resume_on_another_number_of_processes_is_refused_before_any_data_is_read(data, trained, tmp_path,
                                                                                   monkeypatch):
    """train.devices is resumable, but each process's share of the rows sets the optimiser steps per
    epoch, over which the schedule was laid out: a one-process run resumed on 2 ended its cosine
    schedule early (LR 0 for its last epochs) or failed mid-run under one-cycle."""
    import sys

    import torch

    monkeypatch.setattr(sys, "argv", ["-c"])  # not refused, it would go no further than check_devices: no processes
    run = _copy(trained, tmp_path)
    before = _snapshot(run)
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(classification_config(epochs=2, devices=2, accelerator="cpu")), encoding="utf-8")
    said = (f"--resume: {run} trained on 1 process(es) (train.devices: 1 x train.num_nodes: 1); resuming it on 2 "
            "(train.devices: 2 x train.num_nodes: 1) would give each process another share of the rows")
    assert_user_error(_train(data, run, "--resume", config=path), said, "train.scheduler: cosine",
                      "Resume it on 1 (train.devices: 1, train.num_nodes: 1), or start a new run")
    assert _snapshot(run) == before
    last = run / "checkpoints" / "last.ckpt"  # a checkpoint written before the processes were recorded: its config's
    state = torch.load(last, weights_only=True)
    del state["callbacks"]["StepsPerEpoch"]
    torch.save(state, last)
    assert_user_error(_train(data, run, "--resume", config=path), said)


def test_a_damaged_checkpoint_is_refused_before_training(data, trained, tmp_path):
    run = _copy(trained, tmp_path)
    last = run / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    longer = tmp_path / "longer.yaml"
    longer.write_text(yaml.safe_dump(classification_config(epochs=2)), encoding="utf-8")
    assert_user_error(_train(data, run, "--resume", config=longer), "checkpoint", "is damaged", "--overwrite")


def test_the_test_manifest_is_checked_before_training(data, tmp_path):
    frame = pd.read_csv(data["test"])
    frame.loc[1, "image"] = "missing.png"
    manifest = _beside_the_data(data, frame, "test_missing.csv")
    out = tmp_path / "run"
    result = _train(data, out, "--test", manifest)
    assert_user_error(result, "1 problem(s)", "missing.png")
    assert not out.exists(), "nothing is written before the inputs are checked"


def test_a_test_label_the_training_did_not_see_is_refused_before_training(data, trained, tmp_path):
    """Refused before the epochs, and before --overwrite clears the run already there."""
    frame = pd.read_csv(data["test"])
    frame.loc[2, "label"] = "zzz"
    run = _copy(trained, tmp_path)
    before = _snapshot(run)
    result = _train(data, run, "--overwrite", "--test", _beside_the_data(data, frame, "test_unseen.csv"))
    assert_user_error(result, "test_unseen.csv row 2 (line 4): label 'zzz' in column 'label' was not seen in training")
    assert _snapshot(run) == before


def test_a_test_manifest_failing_after_training_keeps_the_trained_model(data, tmp_path):
    frame = pd.read_csv(data["test"])
    row = frame.index[frame["image"].fillna("") != ""][0]
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    frame.loc[row, "image"] = str(tmp_path / "corrupt.png")
    out = tmp_path / "run"
    with pytest.warns(UserWarning, match="the trained model is saved"):
        result = _train(data, out, "--test", _beside_the_data(data, frame, "test_corrupt.csv"))
    assert_user_error(result, "corrupt.png")
    assert MultimodalPredictor.load(out).predict(data["valid"]) is not None


def test_the_test_manifest_is_read_and_checked_once(data, tmp_path, monkeypatch):
    import polymodal.data.pipeline as pipeline

    checked = []
    validate = pipeline.validate_manifest
    monkeypatch.setattr(pipeline, "validate_manifest", lambda manifest, *a, **k: (
        checked.append(manifest.name), validate(manifest, *a, **k))[1])
    test = _beside_the_data(data, pd.read_csv(data["test"]).drop(columns=["image"]), "test_no_image.csv")
    with pytest.warns(UserWarning, match="predicting without it") as caught:
        predictor = MultimodalPredictor.from_config(classification_config(epochs=1)).fit(
            data["train"], data["valid"], test=test)
    assert sorted(checked) == sorted(["train.csv", "valid.csv", "test_no_image.csv"])
    assert len([w for w in caught if "test_no_image.csv has no column" in str(w.message)]) == 1
    assert predictor.metrics["test"]["rows"] == len(pd.read_csv(test))
    assert predictor.evaluate(test) == predictor.metrics["test"]  # read again from the file: checked again
    assert checked.count("test_no_image.csv") == 2


@pytest.mark.parametrize(("damage", "fragment"), [
    (lambda run: (run / "model.safetensors").write_bytes(b"\x00\x01"), "is damaged: model.safetensors"),
    (lambda run: (run / "preprocessors" / "img.json").write_text("{not json"),
     "is damaged: preprocessors/img.json cannot be read (JSONDecodeError"),
    (lambda run: (run / "preprocessors" / "img.json").unlink(), "is incomplete: preprocessors/img.json is missing"),
    (lambda run: (run / "metrics.json").write_text("[1, 2"), "is damaged: metrics.json"),
    (lambda run: (run / "metrics.json").write_text("[1]"), "is damaged: metrics.json"),
    (lambda run: (run / "preprocessors" / "targets.json").write_text("[]"), "is damaged: preprocessors/"),
    (lambda run: (run / "preprocessors" / "targets.json").write_text(
        (run / "preprocessors" / "targets.json").read_text().replace('"a"', '"z"')), "preprocessors/ is not the one"),
], ids=["weights", "preprocessor", "missing-preprocessor", "metrics", "metrics-shape", "targets-shape",
        "other-preprocessors"])
def test_a_damaged_run_is_named_as_such(data, trained, tmp_path, damage, fragment):
    run = _copy(trained, tmp_path)
    damage(run)
    assert_user_error(invoke("predict", run, "--data", data["test"], "--out", tmp_path / "p.csv"), fragment)
    with pytest.raises(RunFolderError, match="retrain it or restore"):
        MultimodalPredictor.load(run)


def test_a_config_edited_after_training_is_named_not_the_weights(data, trained, tmp_path):
    """Sound weights under an edited config.yaml (another width): the message says which file
    disagrees with which, and where, instead of calling the weights damaged."""
    run = _copy(trained, tmp_path)
    config = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    config["head"]["hidden"] = [int(config["head"]["hidden"][0]) * 2]
    (run / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    with pytest.raises(RunFolderError) as info:
        MultimodalPredictor.load(run)
    message = str(info.value)
    assert "config.yaml does not describe the network model.safetensors holds (was config.yaml edited" in message
    assert "head." in message and "in model.safetensors" in message and "damaged" not in message


def test_an_output_path_that_cannot_be_written_is_one_line(data, trained, tmp_path):
    (tmp_path / "afile").write_text("x")
    assert_user_error(invoke("predict", trained, "--data", data["test"], "--out", tmp_path / "afile" / "p.csv"),
                      "is a file, not a folder", "afile")
    assert_user_error(_train(data, tmp_path / "afile"), "is a file")


def test_files_skipped_in_training_are_warned_about(data, tmp_path):
    frame = pd.read_csv(data["train"])
    rows = frame.index[frame["image"].fillna("") != ""][:2]
    for i, row in enumerate(rows):
        (tmp_path / f"bad{i}.png").write_bytes(b"garbage")
        frame.loc[row, "image"] = str(tmp_path / f"bad{i}.png")
    manifest = _beside_the_data(data, frame, "train_skip.csv")
    assert_user_error(_train(data, tmp_path / "refused", train=manifest), "Cannot decode modality 'img'",
                      "column 'image'", "hint: --on-error skip leaves out the rows of unreadable or missing files")
    assert_user_error(_train(data, tmp_path / "refused", "--on-error", "ignore", train=manifest),
                      "--on-error: one of raise, skip, missing; got 'ignore'")
    with pytest.warns(UserWarning) as caught:  # the library's warning (printed on stderr outside pytest)
        result = _train(data, tmp_path / "run", "--on-error", "skip", train=manifest)  # the config says raise
    assert result.exit_code == 0, result.output
    warned = [str(w.message) for w in caught if "skipped" in str(w.message)]
    assert len(warned) == 1 and warned[0].startswith("2 unreadable or missing file(s) skipped") and "bad0.png" in warned[0]
    assert warned[0].endswith(f"all of them: {tmp_path / 'run' / 'skipped.csv'}, written with the run")
    assert "2 unreadable or missing file(s) skipped (data.on_error: skip; 2 train), named above; full list: " in \
        " ".join(result.stderr.split())  # said again after the epochs' lines
    assert len(pd.read_csv(tmp_path / "run" / "skipped.csv")) == 2
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["data"]["on_error"] == "skip"  # recorded


def test_train_says_cells_read_as_missing_were_read_as_missing_not_skipped(data, tmp_path):
    """Under data.on_error: missing a table's unreadable numbers are read as missing (their rows
    are trained on): the summary after the epochs says so, as the library's warning does."""
    frame = pd.read_csv(data["train"]).astype({"x1": object})
    frame.loc[[1, 4, 7], "x1"] = [">200", "38,4", "?"]
    manifest = _beside_the_data(data, frame, "train_cells.csv")
    with pytest.warns(UserWarning, match=r"3 unreadable value\(s\) read as missing \(data.on_error: missing\)"):
        result = _train(data, tmp_path / "run", "--on-error", "missing", train=manifest)
    assert result.exit_code == 0, result.output
    said = " ".join(result.stderr.split())
    assert "3 unreadable value(s) read as missing (data.on_error: missing; 3 train), named above; full list: " in said
    assert "skipped (" not in said and "skipped;" not in said  # (the list is still skipped.csv)


def test_an_internal_key_error_is_not_passed_off_as_a_user_mistake(trained, data, monkeypatch):
    def broken(path):
        raise KeyError("a bug")

    monkeypatch.setattr(MultimodalPredictor, "load", broken)
    result = invoke("evaluate", trained, "--data", data["test"])
    assert result.exit_code == 1 and isinstance(result.exception, KeyError)


@pytest.mark.parametrize(("code", "reason"), [("ENOSPC", "No space left on device"),
                                              ("EROFS", "Read-only file system")])
def test_a_full_disk_or_read_only_file_system_is_one_line_naming_the_place(trained, data, monkeypatch, code, reason):
    import errno

    def failing(path):
        raise OSError(getattr(errno, code), reason, "/runs/x/model.safetensors")

    monkeypatch.setattr(MultimodalPredictor, "load", failing)
    assert_user_error(invoke("evaluate", trained, "--data", data["test"]), f"{reason}: /runs/x/model.safetensors")


def test_another_os_error_is_not_passed_off_as_a_user_mistake(trained, data, monkeypatch):
    import errno

    def failing(path):
        raise OSError(errno.EIO, "Input/output error", "/dev/sdz")

    monkeypatch.setattr(MultimodalPredictor, "load", failing)
    result = invoke("evaluate", trained, "--data", data["test"])
    assert result.exit_code == 1 and isinstance(result.exception, OSError)


def test_resume_of_a_finished_run_changes_nothing_and_says_so(data, trained, tmp_path):
    """A finished run resumed with the epochs it ran has nothing to train: the command is refused
    (before any data is read) instead of rewriting its model, metrics and report."""
    run = _copy(trained, tmp_path)
    before = _snapshot(run)
    assert_user_error(_train(data, run, "--resume"), "already finished its 1 epochs", "nothing to resume",
                      "train.epochs", "--overwrite")
    assert _snapshot(run) == before
    fewer = classification_config(epochs=1)  # any number of epochs it has already run
    fewer["train"]["early_stopping"] = None  # a resumable key, but nothing left to train either way
    path = tmp_path / "fewer.yaml"
    path.write_text(yaml.safe_dump(fewer), encoding="utf-8")
    assert_user_error(_train(data, run, "--resume", config=path), "already finished its 1 epochs")
    assert _snapshot(run) == before


def test_an_evaluation_whose_every_row_is_skipped_is_one_line_and_lists_them(data, tmp_path):
    config = classification_config(epochs=1)
    config["data"] = {"on_error": "skip"}
    path = tmp_path / "skip.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    assert _train(data, tmp_path / "run", config=path).exit_code == 0
    (tmp_path / "garbage.png").write_bytes(b"garbage")
    frame = pd.read_csv(data["test"]).head(3).assign(image=str(tmp_path / "garbage.png"))
    manifest = _beside_the_data(data, frame, "all_bad.csv")
    result = invoke("evaluate", tmp_path / "run", "--data", manifest)
    assert_user_error(result, "all_bad.csv: no row is left to evaluate: each of its 3 row(s) had an unreadable file, "
                              "skipped (3 file(s)")
    listed = pd.read_csv(tmp_path / "run" / "evaluation" / "skipped.csv")  # this evaluation's, not an earlier one's
    assert len(listed) == 3 and set(listed["path"]) == {str(tmp_path / "garbage.png")}


def test_compare_ranks_runs_by_their_headline_metric_and_names_a_folder_that_is_no_run(trained, tmp_path):
    import json

    runs = []
    # no metric a tenth (0.6000), which the check on train_s's printed digits below would find
    for name, accuracy, auroc in (("low", 0.25, 0.93), ("high", 0.75, 0.61)):
        run = shutil.copytree(trained, tmp_path / name)
        metrics = json.loads((run / "metrics.json").read_text())
        metrics["valid"].update(accuracy=accuracy, auroc=auroc)
        (run / "metrics.json").write_text(json.dumps(metrics))
        runs.append(run)
    result = invoke("compare", runs[0], runs[1], "--json")
    assert result.exit_code == 0, result.output
    assert "\\/" not in result.stdout  # paths as written, not JSON-escaped 'runs\/low'
    records = json.loads(result.stdout)
    assert [r["run"] for r in records] == [str(runs[1]), str(runs[0])]  # best first
    assert [r["valid_accuracy"] for r in records] == [0.75, 0.25]
    assert records[0]["task"] == "classification" and records[0]["epochs"] == 1 and records[0]["parameters"] > 0
    assert records[0]["trainable"] == records[0]["parameters"]  # nothing frozen here
    for by in ("auroc", "valid_auroc"):  # another metric ranks them the other way round
        ranked = json.loads(invoke("compare", runs[1], runs[0], "--by", by, "--json").stdout)
        assert [r["run"] for r in ranked] == [str(runs[0]), str(runs[1])]
    by_loss = json.loads(invoke("compare", runs[0], runs[1], "--by", "log_loss", "--json").stdout)
    assert by_loss[0]["valid_log_loss"] <= by_loss[1]["valid_log_loss"]  # lower is better
    assert_user_error(invoke("compare", runs[0], "--by", "aurco"), "--by: the runs' valid metrics are", "'aurco'",
                      "did you mean 'auroc'?")
    printed = invoke("compare", runs[0], runs[1])
    assert printed.exit_code == 0 and "2 run(s), best first" in printed.stdout and "valid_accuracy" in printed.stdout
    seconds = records[0]["train_s"]  # rounded to a tenth: printed so, not as 1.2000
    shown = " ".join(printed.stdout.split())
    assert f"│ {seconds:.1f} │" in shown and f"{seconds:.4f}" not in shown
    (tmp_path / "notes").mkdir()  # runs/* also matches a folder that is no run: left out, and said so
    with pytest.warns(UserWarning, match="left out of the comparison: .*notes is not a polymodal run folder"):
        mixed = invoke("compare", runs[0], tmp_path / "notes", "--json")
    assert mixed.exit_code == 0 and [r["run"] for r in json.loads(mixed.stdout)] == [str(runs[0])]
    assert_user_error(invoke("compare", tmp_path / "notes"), "no run to compare")
    assert_user_error(invoke("compare", runs[0], "--split", "train"), "--split: valid or test")


def test_compare_leaves_out_a_run_that_does_not_load_and_says_why(trained, tmp_path):
    """A run whose config.yaml holds a key this version does not know (written by another
    polymodal), or whose metrics.json is damaged, stopped the whole comparison: it is left out
    with a warning naming it and its first problem, as a folder that is no run is."""
    import json

    good = shutil.copytree(trained, tmp_path / "good")
    newer = shutil.copytree(trained, tmp_path / "newer")
    config = yaml.safe_load((newer / "config.yaml").read_text(encoding="utf-8"))
    config["fusion"]["frobnicate"] = 1
    config["head"]["wobble"] = 2
    (newer / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    damaged = shutil.copytree(trained, tmp_path / "damaged")
    (damaged / "metrics.json").write_text("{not json", encoding="utf-8")
    with pytest.warns(UserWarning) as caught:
        result = invoke("compare", good, newer, damaged, "--json")
    assert result.exit_code == 0, result.output
    assert [r["run"] for r in json.loads(result.stdout)] == [str(good)]
    [said] = [str(w.message) for w in caught if "left out of the comparison" in str(w.message)]
    assert f"{newer}: its config.yaml does not load: fusion.frobnicate: unknown key 'frobnicate'" in said
    assert "(and 1 more problem(s))" in said
    assert f"the run {damaged} is damaged: metrics.json cannot be read" in said
    assert str(good) not in said
    assert_user_error(invoke("compare", newer, damaged), "no run to compare", "unknown key 'frobnicate'",
                      "metrics.json cannot be read")  # none left: the error for no runs, naming each


def test_compare_warns_when_the_runs_were_scored_on_different_rows(trained, tmp_path):
    import json

    from polymodal.compare import compare_runs

    same = [shutil.copytree(trained, tmp_path / name) for name in ("a", "b")]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same validation manifest: nothing to say
        compare_runs(same)
    other = shutil.copytree(trained, tmp_path / "held")
    metrics = json.loads((other / "metrics.json").read_text())
    del metrics["training"]["valid_manifest"], metrics["training"]["valid_manifest_key"]  # held out of train
    metrics["valid"]["rows"] = 24
    (other / "metrics.json").write_text(json.dumps(metrics))
    with pytest.warns(UserWarning) as caught:
        compare_runs([*same, other])
    warned = " ".join(str(w.message) for w in caught)
    rows = json.loads((trained / "metrics.json").read_text())["valid"]["rows"]
    assert f"the runs' valid metrics come from different rows ({same[0]}, {same[1]}: {rows} rows of " in warned
    assert f"{other}: 24 rows held out of " in warned and "(val_fraction 0.1, seed 0)" in warned


def test_compare_names_the_runs_whose_valid_figures_are_fitted_by_their_threshold(trained, tmp_path):
    import json

    from polymodal.compare import compare_runs
    from polymodal.decision import IN_SAMPLE

    plain, auto = (shutil.copytree(trained, tmp_path / name) for name in ("plain", "auto"))
    metrics = json.loads((auto / "metrics.json").read_text())
    metrics["valid"]["note"] = IN_SAMPLE  # as a fit with decision: {threshold: auto} saves it
    metrics["valid"]["accuracy"] = 1.0
    (auto / "metrics.json").write_text(json.dumps(metrics))
    with pytest.warns(UserWarning) as caught:
        frame = compare_runs([plain, auto])
    [said] = [str(w.message) for w in caught if "decision threshold" in str(w.message)]
    assert said.startswith(f"{auto}: the decision threshold was chosen on these validation rows") and str(plain) not in said
    assert "fitted to them (optimistic" in said and "the ranking by valid_accuracy favours them over the other runs" in said
    assert frame.attrs["ranked_by"] == "valid_accuracy" and frame["run"][0] == str(auto)
    with pytest.warns(UserWarning) as caught:
        compare_runs([plain, auto], by="auroc")  # the probabilities' figure: no threshold set it
    [said] = [str(w.message) for w in caught if "decision threshold" in str(w.message)]
    assert "ranking" not in said
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compare_runs([plain, plain])  # no threshold chosen on the rows: nothing to say


def test_compare_names_the_runs_without_test_metrics_when_it_falls_back_to_valid(trained, tmp_path):
    import json

    from polymodal.compare import compare_runs

    tested, untested, also = (shutil.copytree(trained, tmp_path / name) for name in ("a_tested", "b_untested", "c_untested"))
    metrics = json.loads((tested / "metrics.json").read_text())
    metrics["test"] = dict(metrics["valid"])
    (tested / "metrics.json").write_text(json.dumps(metrics))
    with pytest.warns(UserWarning, match="compared on valid metrics: ") as caught:
        frame = compare_runs([tested, untested, also])
    [said] = [str(w.message) for w in caught if "compared on valid" in str(w.message)]
    assert f": {untested}, {also} have no test metrics" in said and str(tested) not in said
    assert frame.attrs["ranked_by"] == "valid_accuracy"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compare_runs([untested, also])  # none has test metrics: valid, as there is nothing else
        compare_runs([tested, untested], split="valid")  # asked for
    with pytest.warns(UserWarning) as caught:  # asked for test: the runs without any are named as such
        frame = compare_runs([untested, tested], split="test")
    said = [str(w.message) for w in caught]
    assert [s for s in said if s.startswith(f"{untested} has no test metrics (trained without a test manifest): "
                                            "listed last, without figures")], said
    assert not [s for s in said if "come from different rows" in s], said
    assert list(frame["run"]) == [str(tested), str(untested)] and frame.attrs["ranked_by"] == "test_accuracy"


def test_compare_refuses_a_split_no_run_has_by_the_option(trained, tmp_path):
    from polymodal.compare import compare_runs

    untested, also = (shutil.copytree(trained, tmp_path / name) for name in ("a", "b"))
    with pytest.raises(OptionError, match="split=: none of the runs has test metrics") as caught:
        compare_runs([untested, also], split="test")  # not a table of no figures
    assert f"({untested}, {also}: trained without a test manifest); compare them on valid" in str(caught.value)
    assert 'split="valid"' in str(caught.value) and "MultimodalPredictor.load(RUN).evaluate(FILE)" in str(caught.value)
    with pytest.raises(OptionError, match="split=: valid or test; got 'tset'") as caught:
        compare_runs([untested], split="tset")
    assert isinstance(caught.value, ValueError)
    assert_user_error(invoke("compare", untested, "--split", "test"), "--split: none of the runs has test metrics",
                      "(--split valid)", "'polymodal evaluate RUN --data FILE'")


def test_compare_takes_a_single_run_folder_as_a_list_of_one(trained):
    from polymodal.compare import compare_runs

    for run in (trained, str(trained)):  # not letter by letter
        assert list(compare_runs(run)["run"]) == [str(trained)]


@pytest.fixture(scope="module")
def by_target(tmp_path_factory) -> dict:
    """Runs on the same rows: ``load`` (one target, hp) and ``multi`` (load and rpm)."""
    root = tmp_path_factory.mktemp("by-target")
    for name, n, seed in (("train", 120, 0), ("valid", 40, 1)):
        unit_targets(n, seed).to_csv(root / f"{name}.csv", index=False)
    runs = {}
    for name, target in (("load", "load"), ("multi", ["load", "rpm"])):
        config = {**unit_targets_config(epochs=3), "target": target}
        MultimodalPredictor.from_config(config).fit(root / "train.csv", root / "valid.csv", out=root / name)
        runs[name] = root / name
    return runs


def test_compare_does_not_rank_runs_of_other_targets_on_their_mixed_averages(by_target):
    import json

    from polymodal.compare import compare_runs

    load, multi = by_target["load"], by_target["multi"]
    with pytest.warns(UserWarning, match=r"the runs predict different targets \(.*multi: regression of load, rpm; "
                                         r".*load: regression of load\): their valid metrics do not measure "
                                         r"the same thing, so they are not ranked") as caught:
        frame = compare_runs([multi, load])
    assert len(caught) == 1 and frame.attrs["ranked_by"] is None
    assert frame["run"].tolist() == [str(multi), str(load)]  # as given, although load's rmse is far lower
    assert frame["target"].tolist() == ["load+rpm", "load"]
    rows = frame.set_index("target")
    assert rows.loc["load", "valid_rmse_per_target.load"] == rows.loc["load", "valid_rmse"]  # one target: its own
    scores = json.loads((multi / "metrics.json").read_text())["valid"]
    assert rows.loc["load+rpm", "valid_rmse_per_target.rpm"] == scores["rmse_per_target"]["rpm"]
    assert pd.isna(rows.loc["load", "valid_rmse_per_target.rpm"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one target's own figure of both: comparable, nothing to say
        ranked = compare_runs([load, multi], by="rmse_per_target.load")
    assert ranked.attrs["ranked_by"] == "valid_rmse_per_target.load"
    assert ranked["valid_rmse_per_target.load"].tolist() == sorted(ranked["valid_rmse_per_target.load"])
    with pytest.warns(UserWarning, match="ranked by valid_rmse, but the runs predict different targets"):
        assert compare_runs([multi, load], by="rmse")["run"].tolist() == [str(load), str(multi)]
    with pytest.warns(UserWarning, match="the runs predict different targets"):
        printed = invoke("compare", multi, load)
    assert printed.exit_code == 0 and "2 run(s)\n" in printed.stdout and "best first" not in printed.stdout


def test_compare_groups_runs_of_other_tasks_each_group_best_first(trained, by_target, tmp_path):
    """A classifier beside regressions: not ranked against each other, but each task's runs
    together, best first by their own headline figure."""
    import json

    from polymodal.compare import compare_runs

    def edited(source, name, **scores):
        run = shutil.copytree(source, tmp_path / name)
        metrics = json.loads((run / "metrics.json").read_text())
        metrics["valid"].update(scores)
        (run / "metrics.json").write_text(json.dumps(metrics))
        return run

    weak, strong = edited(trained, "weak", accuracy=0.2), edited(trained, "strong", accuracy=0.9)
    far, near = edited(by_target["load"], "far", rmse=9.0), edited(by_target["load"], "near", rmse=1.0)
    with pytest.warns(UserWarning, match=r"the runs predict different tasks \(.*weak, .*strong: classification of "
                                         r".*far, .*near: regression of load\).*not ranked against each other"):
        frame = compare_runs([weak, far, strong, near])
    assert frame["run"].tolist() == [str(strong), str(weak), str(near), str(far)]
    assert frame.attrs["ranked_by"] is None and frame.attrs["grouped"]
    with pytest.warns(UserWarning, match="different tasks"):
        printed = invoke("compare", weak, far, strong, near)
    assert printed.exit_code == 0 and "4 run(s), each task and target's best first" in printed.stdout


def test_compare_ranks_runs_of_the_same_several_targets_by_the_unit_free_r2(by_target, tmp_path):
    import json

    from polymodal.compare import compare_runs

    better = shutil.copytree(by_target["multi"], tmp_path / "better")  # higher r2, but a higher mean rmse
    metrics = json.loads((better / "metrics.json").read_text())
    metrics["valid"].update(r2=0.99, rmse=metrics["valid"]["rmse"] + 100.0)
    (better / "metrics.json").write_text(json.dumps(metrics))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frame = compare_runs([by_target["multi"], better])
    assert frame.attrs["ranked_by"] == "valid_r2" and frame["run"].tolist() == [str(better), str(by_target["multi"])]
    assert {"valid_mae_per_target.load", "valid_rmse_per_target.rpm", "valid_r2_per_target.rpm"} <= set(frame.columns)
    printed = invoke("compare", by_target["multi"], better)
    assert printed.exit_code == 0 and "2 run(s), best first by valid_r2" in printed.stdout


def test_an_interrupted_overwrite_keeps_the_run_it_replaces_until_the_new_one_is_saved(data, trained, tmp_path,
                                                                                       monkeypatch):
    """--overwrite sets the old run aside (run/.replaced) instead of deleting it: a fit stopped
    before its model is saved loses nothing, a second --overwrite keeps the same old run, and the
    run saved whole at last drops it."""
    from polymodal import runfolder

    run = _copy(trained, tmp_path)
    old = _snapshot(run)
    real = runfolder.write_model

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runfolder, "write_model", killed)
    for _ in range(2):  # stopped twice: the old run set aside the first time stays the one kept
        assert _train(data, run, "--overwrite").exit_code == 130
        kept = {k.removeprefix(".replaced/"): v for k, v in _snapshot(run).items() if k.startswith(".replaced/")}
        assert kept == old
        assert not (run / "model.safetensors").exists()
    with pytest.raises(FileNotFoundError, match=r"holds an interrupted run .*; the run it replaces is kept in "
                                                r".*\.replaced until then"):
        MultimodalPredictor.load(run)
    monkeypatch.setattr(runfolder, "write_model", real)
    assert _train(data, run, "--overwrite").exit_code == 0
    assert not (run / ".replaced").exists() and MultimodalPredictor.load(run).predict(data["test"]) is not None


def test_a_config_mistake_found_while_the_model_is_built_names_the_config_file(data, tmp_path):
    """Here the value came from --set: the message says so, beside the file it was set on."""
    result = _train(data, tmp_path / "run", "--set", "modalities.img.encoder.freeze=99")
    assert_user_error(result, f"Invalid --set values for {data['config']}", "--set modalities.img.encoder.freeze: 99 "
                      "trailing blocks requested")
