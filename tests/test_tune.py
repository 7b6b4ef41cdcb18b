"""Hyper-parameter search (polymodal.tune)."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import optuna
import pandas as pd
import pytest
import yaml
from helpers_models import (
    classification_config,
    make_dataset,
    regression_config,
    tabular_anomaly,
    unit_targets,
    unit_targets_config,
    write_splits,
)

from polymodal.config import config_to_dict, load_config
from polymodal.config.overrides import set_dotted
from polymodal.errors import ConfigError, OptionError, RunFolderError
from polymodal.tune import _metric, _score, _suggest, check_space, pruning_callback, run_search, trial_config


def test_set_dotted_creates_and_overrides_sections():
    data = {"train": {"lr": 1.0}}
    set_dotted(data, "train.lr", 0.5)
    set_dotted(data, "fusion.dim", 32)
    assert data == {"train": {"lr": 0.5}, "fusion": {"dim": 32}}
    with pytest.raises(ConfigError, match="not a section"):
        set_dotted({"train": 3}, "train.lr", 0.1)


def test_trial_config_validates_sampled_values():
    base = classification_config()
    assert trial_config(base, {"train.lr": 0.02}).train.lr == 0.02
    with pytest.raises(ConfigError, match="train.lr"):
        trial_config(base, {"train.lr": -1.0})


def test_a_space_entry_is_checked_as_the_kind_it_names_a_range_or_choices():
    space = {"train.lr": {"low": 1e-4, "hihg": 1e-2, "log": True}, "train.epochs": {"low": 5, "high": 2},
             "fusion.name": {"choice": ["concat", "late"]}, "head.dropout": {"choices": [0.1]},
             "head.hidden": {"low": 1, "high": 2, "choices": [[8], [16]]}}
    with pytest.raises(ConfigError) as err:
        load_config({**classification_config(), "tune": {"space": space}})
    assert sorted(err.value.problems) == sorted([
        "tune.space.train.lr.high: required key is missing",
        "tune.space.train.lr.hihg: unknown key 'hihg' (did you mean 'high'?); allowed keys: high, log, low, step",
        "tune.space.train.epochs: low (5) must be below high (2)",
        "tune.space.fusion.name.choices: required key is missing",
        "tune.space.fusion.name.choice: unknown key 'choice' (did you mean 'choices'?); allowed keys: choices",
        "tune.space.head.dropout.choices: a search needs at least 2 choices (to fix a key's value, set it in the "
        "config and leave it out of tune.space) (got [0.1])",
        "tune.space.head.hidden.low: unknown key 'low'; allowed keys: choices",  # choices named: a list of them
        "tune.space.head.hidden.high: unknown key 'high'; allowed keys: choices",
    ])  # one kind's problems per entry: a range is not also told it lacks choices


def test_a_list_is_short_for_the_choices():
    config = load_config({**classification_config(), "tune": {"space": {"train.batch_size": [16, 32]}}})
    assert config.tune.space["train.batch_size"].choices == [16, 32]


def test_a_method_inside_a_transfer_list_is_addressed_by_its_index():
    base = {**classification_config(), "transfer": [{"method": "cdan"}, {"method": "fixmatch"}]}
    config = trial_config(base, {"transfer.1.threshold": 0.8, "transfer.0.method": "dann"})
    assert [m.method for m in config.transfers] == ["dann", "fixmatch"] and config.transfers[1].threshold == 0.8
    assert base["transfer"][1] == {"method": "fixmatch"}  # the base is not modified
    for key in ("transfer.2", "transfer.5.threshold", "transfer.x.threshold"):
        with pytest.raises(ConfigError, match=rf"tune.space.{key}: '.' is not an index of the list \(it has 2 items"):
            set_dotted({"transfer": [{}, {}]}, key, 0.5, named=lambda k: f"tune.space.{k}")


def test_pruning_callback_stops_a_trial_the_pruner_rejects():
    class Trial:
        reported: list = []

        def report(self, value, step):
            self.reported.append((step, value))

        def should_prune(self):
            return True

    callback = pruning_callback(Trial(), "accuracy")
    trainer = SimpleNamespace(sanity_checking=False, current_epoch=3,
                              callback_metrics={"val_accuracy": __import__("torch").tensor(0.25)})
    with pytest.raises(optuna.TrialPruned):
        callback.on_validation_end(trainer, None)
    assert Trial.reported == [(3, 0.25)]


def test_search_writes_trials_and_the_best_config(tmp_path):
    paths = write_splits(tmp_path, make_dataset(tmp_path, n=60))
    config = classification_config(epochs=2)
    config["tune"] = {"space": {"train.lr": {"low": 1e-3, "high": 3e-2, "log": True},
                                "fusion.name": {"choices": ["concat", "late"]}},
                      "trials": 3, "pruner": "none", "seed": 1}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    table = run_search(path, paths["train"], paths["valid"], tmp_path / "search")
    trials = pd.read_csv(tmp_path / "search" / "trials.csv")
    assert len(trials) == len(table) == 3 and (trials["state"] == "complete").all()
    assert trials["train.lr"].between(1e-3, 3e-2).all() and set(trials["fusion.name"]) <= {"concat", "late"}
    summary = json.loads((tmp_path / "search" / "summary.json").read_text())
    assert summary["direction"] == "maximize" and summary["metric"] == "val_accuracy"
    best = trials.loc[trials["value"].idxmax()]
    assert summary["best_value"] == pytest.approx(best["value"])
    best_config = load_config(tmp_path / "search" / "best_config.yaml")
    assert best_config.tune is None
    assert best_config.train.lr == pytest.approx(best["train.lr"]) and best_config.fusion.name == best["fusion.name"]


def tuned(tmp_path, config, **tune):
    config["tune"] = {"space": {"train.lr": {"low": 1e-3, "high": 3e-2, "log": True}}, "trials": 2,
                      "pruner": "none", "seed": 0, **tune}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def test_regression_search_minimises_rmse_at_the_kept_epoch(tmp_path):
    """auto: the headline metric of the task (rmse for regression), read at the epoch whose weights
    each trial keeps (the validation-loss best)."""
    paths = write_splits(tmp_path, make_dataset(tmp_path, n=60))
    run_search(tuned(tmp_path, regression_config(epochs=3)), paths["train"], paths["valid"], tmp_path / "search")
    summary = json.loads((tmp_path / "search" / "summary.json").read_text())
    assert summary["metric"] == "val_rmse" and summary["direction"] == "minimize"
    best = load_config(tmp_path / "search" / "best_config.yaml")
    from polymodal import MultimodalPredictor

    predictor = MultimodalPredictor(best).fit(paths["train"], paths["valid"])
    history = predictor.history.set_index("epoch")
    kept = predictor.info["best_epoch"]
    assert kept == history["val_loss"].idxmin()
    assert summary["best_value"] == pytest.approx(history.loc[kept, "val_rmse"], rel=1e-4)


def test_a_search_of_several_targets_optimises_one_targets_own_figure_or_the_unit_free_r2(tmp_path):
    """load (hp) and rpm: ``tune.metric: rmse_per_target.rpm`` is read at each trial's kept epoch
    although early stopping watches the loss; ``auto`` is the mean r2, not the unit-mixing rmse."""
    for name, n, seed in (("train", 80, 0), ("valid", 30, 1)):
        unit_targets(n, seed).to_csv(tmp_path / f"{name}.csv", index=False)
    config = tuned(tmp_path, unit_targets_config(epochs=2), metric="rmse_per_target.rpm")
    run_search(config, tmp_path / "train.csv", tmp_path / "valid.csv", tmp_path / "search")
    summary = json.loads((tmp_path / "search" / "summary.json").read_text())
    assert summary["metric"] == "val_rmse_per_target.rpm" and summary["direction"] == "minimize"
    trials = pd.read_csv(tmp_path / "search" / "trials.csv")
    assert (trials["state"] == "complete").all() and summary["best_value"] == pytest.approx(trials["value"].min())
    assert 1.0 < summary["best_value"] < 500.0, "rpm's own rmse, in rpm"
    assert _metric(load_config(tuned(tmp_path, unit_targets_config()))) == ("r2", "maximize")
    assert _metric(load_config(tuned(tmp_path, regression_config()))) == ("rmse", "minimize")  # one target: as before
    with pytest.warns(UserWarning, match=r"tune.metric: 'mae' averages the mae of targets \['load', 'rpm'\]"):
        assert _metric(load_config(tuned(tmp_path, unit_targets_config(), metric="mae"))) == ("mae", "minimize")
    with pytest.raises(ConfigError, match=r"allowed: \[.*\], or mae_per_target.T / .* where T is a target of "):
        _metric(load_config(tuned(tmp_path, unit_targets_config(), metric="rmse_per_target.torque")))


def test_a_diverged_trial_fails_and_the_search_goes_on(tmp_path):
    """A learning rate of 1e30 makes the regression NaN: that trial is recorded as failed, the
    others are ranked."""
    paths = write_splits(tmp_path, make_dataset(tmp_path, n=60))
    config = tuned(tmp_path, regression_config(epochs=2), trials=4)
    spec = yaml.safe_load(config.read_text())
    spec["tune"]["space"] = {"train.lr": {"choices": [1e-3, 1e30]}}
    config.write_text(yaml.safe_dump(spec), encoding="utf-8")
    with pytest.warns(UserWarning, match="the trial diverged, or the metric is undefined"):
        run_search(config, paths["train"], paths["valid"], tmp_path / "search")
    trials = pd.read_csv(tmp_path / "search" / "trials.csv")
    assert set(trials.loc[trials["train.lr"] > 1, "state"]) == {"fail"} and (trials["train.lr"] > 1).any()
    assert set(trials.loc[trials["train.lr"] < 1, "state"]) == {"complete"}
    assert load_config(tmp_path / "search" / "best_config.yaml").train.lr == pytest.approx(1e-3)


def diverging(tmp_path, lrs, trials, **train):
    """A regression search over ``train.lr`` choices ``lrs`` (1e30 makes the regression NaN)."""
    config = tuned(tmp_path, regression_config(epochs=1, **train), trials=trials)
    spec = yaml.safe_load(config.read_text())
    spec["tune"]["space"] = {"train.lr": {"choices": lrs}}
    config.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return config


def test_a_search_whose_every_trial_diverged_says_so_and_to_lower_the_learning_rate(tmp_path, monkeypatch):
    """Every trial's metric NaN (diverged): the search said every one was pruned and advised pruning
    later or not at all. It says they diverged, with the learning rates they drew; pruned and
    diverged trials together are each counted, each with its remedy."""
    from polymodal import MultimodalPredictor

    paths = write_splits(tmp_path, make_dataset(tmp_path, n=40))
    out = tmp_path / "search"
    with pytest.warns(UserWarning, match="the trial diverged"), pytest.raises(ConfigError) as info:
        run_search(diverging(tmp_path, [1e29, 1e30], 2), paths["train"], paths["valid"], out)
    [problem] = info.value.problems
    trials = pd.read_csv(out / "trials.csv")
    drawn = ", ".join(f"{v:.3g}" for v in sorted(set(trials["train.lr"])))
    assert problem == (f"tune: none of the 2 trial(s) completed (every one diverged (val_loss is not a number); see "
                       f"{out / 'trials.csv'}); lower the learning rates tune.space.train.lr draws (the diverged "
                       f"trials drew {drawn})")
    assert trials["state"].tolist() == ["fail", "fail"]
    assert trials["note"].tolist() == ["diverged: val_loss is not a number"] * 2

    config = tuned(tmp_path, regression_config(epochs=1, lr=1e30, grad_clip=None), trials=2,
                   space={"head.dropout": {"low": 0.0, "high": 0.5}})  # the learning rate is not searched
    with pytest.warns(UserWarning, match="the trial diverged"), pytest.raises(ConfigError) as info:
        run_search(config, paths["train"], paths["valid"], tmp_path / "fixed")
    assert info.value.problems[0].endswith("every one diverged (val_loss is not a number); see "
                                           f"{tmp_path / 'fixed' / 'trials.csv'}); lower the learning rate (train.lr: "
                                           "1e+30, or search it in tune.space), or clip gradients (train.grad_clip)")

    fit = MultimodalPredictor.fit

    def pruned_when_slow(self, *args, **kwargs):  # lr 1e-3 pruned, 1e30 diverges
        if self.config.train.lr < 1:
            raise optuna.TrialPruned()
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(MultimodalPredictor, "fit", pruned_when_slow)
    with pytest.warns(UserWarning, match="the trial diverged"), pytest.raises(ConfigError) as info:
        run_search(diverging(tmp_path, [1e-3, 1e30], 4), paths["train"], paths["valid"], tmp_path / "both")
    trials = pd.read_csv(tmp_path / "both" / "trials.csv")
    states = trials.groupby("state")["train.lr"].agg(set).to_dict()
    assert states == {"pruned": {1e-3}, "fail": {1e30}}
    pruned, failed = (int((trials["state"] == state).sum()) for state in ("pruned", "fail"))
    assert info.value.problems == [
        f"tune: none of the 4 trial(s) completed ({pruned} pruned, {failed} diverged (val_loss is not a number); see "
        f"{tmp_path / 'both' / 'trials.csv'}); run more trials, prune later (tune.warmup_epochs) or not at all "
        "(tune.pruner: none); lower the learning rates tune.space.train.lr draws (the diverged trials drew 1e+30)"]


def test_diverged_trials_count_towards_the_trials_of_a_search_its_summary_and_its_resume(tmp_path, monkeypatch):
    """A diverged trial (failed) was left out of summary.json's counts and did not count as run:
    --resume of a finished search of 4 trials ran another one in the place of each diverged one."""
    from typer.testing import CliRunner

    from polymodal import MultimodalPredictor
    from polymodal.cli import app

    paths = write_splits(tmp_path, make_dataset(tmp_path, n=40))
    config = diverging(tmp_path, [1e-3, 1e30], 4)
    out = tmp_path / "search"
    with pytest.warns(UserWarning, match="the trial diverged"):
        run_search(config, paths["train"], paths["valid"], out)
    trials = pd.read_csv(out / "trials.csv")
    diverged = trials["train.lr"] > 1
    assert 0 < diverged.sum() < 4, "seed 0 draws both learning rates"
    assert set(trials.loc[diverged, "state"]) == {"fail"} and set(trials.loc[~diverged, "state"]) == {"complete"}
    assert set(trials.loc[diverged, "note"]) == {"diverged: val_loss is not a number"}
    assert trials.loc[~diverged, "note"].isna().all()
    summary = json.loads((out / "summary.json").read_text())
    assert {k: summary[k] for k in ("trials", "completed", "pruned", "failed", "stopped")} == {
        "trials": 4, "completed": int((~diverged).sum()), "pruned": 0, "failed": int(diverged.sum()), "stopped": 0}

    fits = []
    fit = MultimodalPredictor.fit
    monkeypatch.setattr(MultimodalPredictor, "fit", lambda self, *a, **k: fits.append(1) or fit(self, *a, **k))
    with pytest.raises(RunFolderError, match=r"already ran 4 trial\(s\) \(--trials 4\)"):
        run_search(config, paths["train"], paths["valid"], out, resume=True)
    assert fits == []
    args = ["tune", str(config), "--train", str(paths["train"]), "--valid", str(paths["valid"]), "--out", str(out),
            "--resume", "--trials", "5"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert len(fits) == 1, "one trial more, none in the place of the diverged ones"
    trials = pd.read_csv(out / "trials.csv")
    summary = json.loads((out / "summary.json").read_text())
    failed = int((trials["state"] == "fail").sum())
    assert len(trials) == summary["trials"] == 5 and summary["failed"] == failed >= 1
    assert (f"5 trial(s): {5 - failed} completed, 0 pruned, {failed} failed (metric not a number)"
            in " ".join(result.output.split()))


def test_search_on_the_validation_loss_and_an_unknown_metric(tmp_path):
    paths = write_splits(tmp_path, make_dataset(tmp_path, n=60))
    run_search(tuned(tmp_path, classification_config(epochs=2), metric="loss"), paths["train"], paths["valid"],
               tmp_path / "loss")
    summary = json.loads((tmp_path / "loss" / "summary.json").read_text())
    assert summary["metric"] == "val_loss" and summary["direction"] == "minimize" and summary["completed"] == 2
    with pytest.raises(ConfigError, match=r"tune.metric: 'r2' is not a validation metric of task 'classification'; "
                                          r"allowed: \[.*'accuracy'"):
        run_search(tuned(tmp_path, classification_config(epochs=1), metric="r2"), paths["train"], paths["valid"],
                   tmp_path / "r2")
    assert not (tmp_path / "r2" / "trials.csv").exists(), "refused before any trial trained"



def test_a_search_over_several_processes_is_refused_before_any_trial(tmp_path):
    paths = write_splits(tmp_path, make_dataset(tmp_path, n=30))
    with pytest.raises(ConfigError, match=r"train.devices: 2 .*search on one device"):
        run_search(tuned(tmp_path, classification_config(epochs=1, devices=2, accelerator="cpu")), paths["train"],
                   paths["valid"], tmp_path / "ddp")
    assert not (tmp_path / "ddp").exists()

def test_an_anomaly_search_prunes_on_the_last_phase_and_ranks_the_kept_epoch(tmp_path, monkeypatch):
    """task anomaly: each trial is an AnomalyDetector; Deep SVDD's pruning reports come from its
    last phase (pre-training's reconstruction loss is another quantity) and the trial's value is
    that phase's validation loss at the kept (best) epoch."""
    config = tabular_anomaly(tmp_path, {"train": 48, "valid": 16}, "deep_svdd", epochs=4, batch_size=16, seed=0)
    reports: dict[int, list] = {}
    report = optuna.Trial.report

    def recording(trial, value, step):
        reports.setdefault(trial.number, []).append((step, value))
        report(trial, value, step)

    monkeypatch.setattr(optuna.Trial, "report", recording)
    table = run_search(tuned(tmp_path, config), tmp_path / "train.csv", tmp_path / "valid.csv", tmp_path / "search")
    summary = json.loads((tmp_path / "search" / "summary.json").read_text())
    assert summary["metric"] == "val_loss" and summary["direction"] == "minimize" and summary["completed"] == 2
    for row in table.itertuples():
        assert [step for step, _ in reports[row.trial]] == [0, 1]  # the 2 epochs of the svdd phase
        assert row.value == pytest.approx(min(v for _, v in reports[row.trial]), abs=1e-5)
    assert load_config(tmp_path / "search" / "best_config.yaml").task == "anomaly"


def test_a_trial_is_scored_at_the_epoch_it_keeps_not_the_last():
    history = pd.DataFrame({"epoch": [0, 1, 2, 3], "val_loss": [0.9, 0.4, 0.5, 0.6],
                            "val_accuracy": [0.5, 0.8, 0.9, 0.7]})
    assert _score(SimpleNamespace(history=history, info={"best_epoch": 1}), "accuracy") == pytest.approx(0.8)
    assert _score(SimpleNamespace(history=history, info={"best_epoch": None}), "accuracy") == pytest.approx(0.7)
    with pytest.warns(UserWarning, match="val_rmse of the kept epoch is not a number"):  # never logged: never finite
        assert math.isnan(_score(SimpleNamespace(history=history, info={"best_epoch": 1}), "rmse"))
    history.loc[1, "val_accuracy"] = float("nan")
    with pytest.warns(UserWarning, match="val_accuracy of the kept epoch is not a number"):
        assert math.isnan(_score(SimpleNamespace(history=history, info={"best_epoch": 1}), "accuracy"))


def test_every_value_the_space_may_try_is_checked_before_any_trial(tmp_path):
    """A later choice or a range's upper end that does not fit fails the search before it trains
    anything (it used to fail the trial that drew it, after the ones before had trained)."""
    space = {"fusion.name": {"choices": ["concat", "gatd"]}, "head.dropout": {"low": 0.0, "high": 1.4},
             "train.lr": {"low": 1e-3, "high": 3e-2, "log": True}}
    path = tuned(tmp_path, classification_config(epochs=1), space=space)
    with pytest.raises(ConfigError) as info:
        run_search(path, "train.csv", None, tmp_path / "out")
    problems = info.value.problems
    assert len(problems) == 2 and info.value.source == str(path)
    assert problems[0].startswith("tune.space.fusion.name: choice 'gatd' does not fit the config: fusion.name: ")
    assert problems[1].startswith("tune.space.head.dropout: high 1.4 does not fit the config: head.dropout: Input "
                                  "should be less than 1")
    assert not (tmp_path / "out").exists()


def test_a_problem_a_trial_finds_names_the_space_key_the_set_value_or_the_file(tmp_path):
    """Found only once a trial builds its model (more blocks to freeze than the encoder has): the
    error names what gave the value, not a bare key path with no file."""
    paths = write_splits(tmp_path, make_dataset(tmp_path, n=40))
    space = {"modalities.img.encoder.freeze": {"choices": [99, 98]}}
    path = tuned(tmp_path, classification_config(epochs=1), space=space)
    with pytest.raises(ConfigError) as info:
        run_search(path, paths["train"], paths["valid"], tmp_path / "drawn")
    assert info.value.source == str(path)
    [problem] = info.value.problems
    assert problem.startswith("tune.space.modalities.img.encoder.freeze: trial 0 drew 9")
    assert "modalities.img.encoder.freeze: 9" in problem and "but encoder ImageCnn has 2" in problem
    path = tuned(tmp_path, classification_config(epochs=1))  # a space over train.lr alone
    with pytest.raises(ConfigError) as info:
        run_search(path, paths["train"], paths["valid"], tmp_path / "set",
                   overrides={"modalities.img.encoder.freeze": 99})
    assert info.value.source == str(path)
    assert info.value.problems[0].startswith("overrides 'modalities.img.encoder.freeze': 99 trailing blocks "
                                             "requested")
    config = classification_config(epochs=1)
    config["modalities"]["img"]["encoder"]["freeze"] = 99
    path = tuned(tmp_path, config)
    with pytest.raises(ConfigError) as info:
        run_search(path, paths["train"], paths["valid"], tmp_path / "file")
    assert info.value.source == str(path)
    assert info.value.problems[0].startswith("modalities.img.encoder.freeze: 99 trailing blocks requested")


def test_search_needs_a_tune_section(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(classification_config()), encoding="utf-8")
    with pytest.raises(ConfigError, match="no 'tune' section"):
        run_search(path, "train.csv", None, tmp_path / "out")
    tuned_path = tuned(tmp_path, classification_config(epochs=1))
    with pytest.raises(ConfigError, match="no 'tune' section"):  # --set reaches the config searched
        run_search(tuned_path, "train.csv", None, tmp_path / "out", overrides={"tune": None})


def test_a_second_search_into_the_same_folder_is_refused_unless_overwrite(tmp_path, monkeypatch):
    """``polymodal tune`` run again with the same --out refuses, before any trial trains, to replace
    the earlier search's results; --overwrite replaces them and leaves the folder's other files."""
    from typer.testing import CliRunner

    from polymodal import MultimodalPredictor
    from polymodal.cli import app

    paths = write_splits(tmp_path, make_dataset(tmp_path, n=40))
    config = tuned(tmp_path, classification_config(epochs=1), trials=1)
    out = tmp_path / "search"
    args = ["tune", str(config), "--train", str(paths["train"]), "--valid", str(paths["valid"]), "--out", str(out)]
    runner = CliRunner()
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    shown = " ".join(first.output.split())
    assert "trials (value: val_accuracy, higher is better)" in shown
    assert f"best: trial 0, val_accuracy {summary['best_value']:.4f}; best config:" in shown
    seconds = pd.read_csv(out / "trials.csv")["seconds"].iloc[0]
    assert f"│ {seconds:.1f} │" in shown and f"{seconds:.4f}" not in shown  # seconds with one decimal
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    before = {name: (out / name).read_bytes() for name in ("trials.csv", "summary.json", "best_config.yaml")}
    fits = []
    fit = MultimodalPredictor.fit
    monkeypatch.setattr(MultimodalPredictor, "fit", lambda self, *a, **k: fits.append(1) or fit(self, *a, **k))

    again = runner.invoke(app, args + ["--trials", "2"])
    assert again.exit_code == 2
    assert f"{out} already holds a search's results (trials.csv, best_config.yaml, summary.json, study.journal); " \
           "give another --out, --resume to continue it, or --overwrite to replace them" in " ".join(again.output.split())
    assert fits == [], "refused before any trial trained"
    assert {name: (out / name).read_bytes() for name in before} == before

    partial = tmp_path / "partial"  # any one of a search's files is enough
    partial.mkdir()
    (partial / "summary.json").write_text("{}", encoding="utf-8")
    with pytest.raises(RunFolderError, match=r"already holds a search's results \(summary.json\)"):
        run_search(config, paths["train"], paths["valid"], partial)
    assert fits == []

    replaced = runner.invoke(app, args + ["--trials", "2", "--overwrite"])
    assert replaced.exit_code == 0, replaced.output
    assert len(fits) == 2 and len(pd.read_csv(out / "trials.csv")) == 2
    assert json.loads((out / "summary.json").read_text())["trials"] == 2 and (out / "best_config.yaml").is_file()
    assert (out / "notes.txt").read_text(encoding="utf-8") == "mine"


def test_an_interrupted_search_resumes_with_its_finished_trials_and_the_interrupted_one_failed(tmp_path, monkeypatch):
    """An interrupted search could only be started again (--overwrite), its finished trials lost."""
    from polymodal import MultimodalPredictor

    paths = write_splits(tmp_path, make_dataset(tmp_path, n=40))
    config = tuned(tmp_path, classification_config(epochs=1), trials=3)
    out = tmp_path / "search"
    fit = MultimodalPredictor.fit
    fits = []

    def interrupted_second(self, *args, **kwargs):
        fits.append(1)
        if len(fits) == 2:
            raise KeyboardInterrupt
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(MultimodalPredictor, "fit", interrupted_second)
    with pytest.raises(KeyboardInterrupt):
        run_search(config, paths["train"], paths["valid"], out)
    assert pd.read_csv(out / "trials.csv")["state"].tolist() == ["complete"]
    with pytest.raises(RunFolderError, match="--resume to continue it"):
        run_search(config, paths["train"], paths["valid"], out)
    with pytest.raises(RunFolderError) as refused:  # what differs is named, as train --resume names it
        run_search(config, paths["train"], paths["valid"], out, resume=True, overrides={"train.epochs": 2})
    assert str(refused.value).startswith(f"--resume: the search in {out} started with another config (train.epochs: "
                                         "1 -> 2); resume it with the config, --set values and manifests it started "
                                         "with (a resume may change tune.trials")
    with pytest.raises(RunFolderError) as refused:
        run_search(config, paths["train"], paths["train"], out, resume=True)
    assert (f"the search in {out} started with another --valid (the search validated on a manifest of other "
            "content); resume") in str(refused.value)
    with pytest.raises(RunFolderError) as refused:
        run_search(config, paths["test"], paths["valid"], out, resume=True)
    assert (f"the search in {out} started with another --train (the search trained on a manifest of other "
            "content); resume") in str(refused.value)
    with pytest.raises(RunFolderError) as refused:
        run_search(config, paths["train"], None, out, resume=True, overrides={"tune.metric": "log_loss"})
    assert (f"the search in {out} started with another config (tune.metric: 'auto' -> 'log_loss'); its metric "
            "maximized, not minimized; a --valid manifest (now left out: rows held out of --train); resume") \
        in str(refused.value)
    monkeypatch.setattr(MultimodalPredictor, "fit", lambda self, *a, **k: fits.append(1) or fit(self, *a, **k))
    table = run_search(config, paths["train"], paths["valid"], out, resume=True,
                       overrides={"train.num_workers": 0})  # where it trains may change
    assert len(fits) == 4  # the two trials left of 3: the finished one counts, the interrupted one does not
    assert table.loc[2, "train.lr"] not in set(table.loc[:1, "train.lr"])  # not the first trials' draws again
    assert table["state"].tolist() == ["complete", "fail", "complete", "complete"]
    assert table["trial"].tolist() == [0, 1, 2, 3] and len(pd.read_csv(out / "trials.csv")) == 4
    summary = json.loads((out / "summary.json").read_text())
    assert summary["completed"] == 3 and summary["best_trial"] in (0, 2, 3)
    assert summary["stopped"] == 1 and summary["failed"] == 0  # the interrupted trial: not counted, not failed
    assert table.loc[1, "note"] == "stopped (an interruption or an error): not counted"
    with pytest.raises(RunFolderError, match="already ran 3 trial"):
        run_search(config, paths["train"], paths["valid"], out, resume=True)
    run_search(config, paths["train"], paths["valid"], out, trials=4, resume=True)  # one more
    assert len(fits) == 5 and len(pd.read_csv(out / "trials.csv")) == 5
    with pytest.raises(RunFolderError, match="holds no search to continue"):
        run_search(config, paths["train"], paths["valid"], tmp_path / "empty", resume=True)


def test_a_search_folder_that_is_a_file_is_refused(tmp_path):
    path = tuned(tmp_path, classification_config(epochs=1))
    (tmp_path / "taken").write_text("x", encoding="utf-8")
    with pytest.raises(RunFolderError, match="the search folder .*taken is a file"):
        run_search(path, "train.csv", None, tmp_path / "taken")


def test_trials_below_one_are_refused_and_a_search_whose_trials_were_all_pruned_says_so(tmp_path, monkeypatch):
    from polymodal import MultimodalPredictor

    path = tuned(tmp_path, classification_config(epochs=1))
    for trials in (0, -1):  # 0 is a number of trials, not "the config's default"
        with pytest.raises(OptionError, match=f"--trials: at least 1; got {trials}"):
            run_search(path, "train.csv", None, tmp_path / "out", trials=trials)

    def pruned(self, *args, **kwargs):
        raise optuna.TrialPruned()

    monkeypatch.setattr(MultimodalPredictor, "fit", pruned)
    paths = write_splits(tmp_path, make_dataset(tmp_path, n=40))
    with pytest.raises(ConfigError, match=r"none of the 2 trial\(s\) completed \(every one was pruned"):
        run_search(path, paths["train"], paths["valid"], tmp_path / "search")
    assert len(pd.read_csv(tmp_path / "search" / "trials.csv")) == 2


def test_a_range_optuna_cannot_draw_is_refused_by_its_key():
    """A step with log: true, and a fractional step of an integer range (int(0.5) = 0), passed every
    check and then crashed Optuna in trial 0; a step wider than the range draws low alone."""
    space = {"train.lr": {"low": 1e-4, "high": 1e-2, "log": True, "step": 1e-4},
             "train.epochs": {"low": 1, "high": 3, "step": 0.5},
             "head.dropout": {"low": 0.1, "high": 0.3, "step": 0.5},
             "train.batch_size": {"low": 8, "high": 64, "log": True, "step": 2}}
    with pytest.raises(ConfigError) as err:
        load_config({**classification_config(), "tune": {"space": space}})
    assert sorted(err.value.problems) == sorted([
        "tune.space.train.lr: a log-scale range (log: true) takes no step (Optuna draws on a log scale or in steps, "
        "not both); got step 0.0001: drop step, or log",
        "tune.space.train.epochs: an integer range (low 1 and high 3 are whole numbers) takes a whole step; got step "
        "0.5: give a whole step, or float bounds (low: 1.0) for a key that takes fractions",
        "tune.space.head.dropout: step (0.5) is larger than the range (high - low = 0.2): only low "
        "(0.1) would be drawn",
        "tune.space.train.batch_size: a log-scale range (log: true) takes no step (Optuna draws on a log scale or in "
        "steps, not both); got step 2: drop step, or log",
    ])
    fine = {"train.batch_size": {"low": 8, "high": 64, "log": True, "step": 1},  # Optuna's own default step
            "train.epochs": {"low": 1, "high": 3, "step": 2.0}, "head.dropout": {"low": 0.1, "high": 0.3, "step": 0.2},
            "train.weight_decay": {"low": 0.2, "high": 0.3, "step": 0.1}}  # widths 0.19999999999999998, 0.09999999999999998
    config = load_config({**classification_config(), "tune": {"space": fine}})
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    drawn = {key: _suggest(study.ask(), key, param) for key, param in config.tune.space.items()}
    assert drawn["train.epochs"] in (1, 3) and 8 <= drawn["train.batch_size"] <= 64


def test_a_space_optuna_or_a_drawn_value_would_fail_is_refused_before_the_journal(tmp_path):
    """A float range on a key of whole numbers passed the check of its two ends (16 and 64.0 both
    read as integers) and failed in trial 0, after study.journal was written: a search with the
    space fixed was then refused (the folder held a search) and --resume failed again."""
    paths = write_splits(tmp_path, make_dataset(tmp_path, n=30))
    space = {"modalities.img.encoder.dim": {"low": 16, "high": 64.0}, "head.dropout": {"low": 0.0, "high": 0.5}}
    path = tuned(tmp_path, classification_config(epochs=1), space=space)
    with pytest.raises(ConfigError) as info:
        run_search(path, paths["train"], paths["valid"], tmp_path / "dim")
    assert info.value.source == str(path)
    assert info.value.problems == [
        "tune.space.modalities.img.encoder.dim: modalities.img.encoder.dim takes whole numbers, but low 16 and high "
        "64.0 make a float range (a trial may draw 40.5: modalities.img.encoder.dim: Input should be a valid integer, "
        "got a number with a fractional part (got 40.5)); give both bounds as whole numbers (low: 16, high: 64) to "
        "draw integers"]
    assert not (tmp_path / "dim").exists()
    (tmp_path / "step").mkdir()  # the folder a crashed search had made
    path = tuned(tmp_path, classification_config(epochs=1),
                 space={"train.lr": {"low": 1e-4, "high": 1e-2, "log": True, "step": 1e-4}})
    with pytest.raises(ConfigError, match="tune.space.train.lr: a log-scale range"):
        run_search(path, paths["train"], paths["valid"], tmp_path / "step")
    assert list((tmp_path / "step").iterdir()) == [], "no study.journal"
    fine = load_config(tuned(tmp_path, classification_config(epochs=1), space={"head.dropout": {"low": 0.1, "high": 0.9}}))
    check_space(config_to_dict(fine), fine.tune.space)  # a key taking fractions: 0.5 fits


def test_values_drawn_together_that_do_not_fit_name_their_space_keys(tmp_path):
    """Each key of the space fits alone (dim 20 with 4 heads, 6 heads with dim 24), trial 0 draws
    both (20 split across 6 heads): the error named no tune.space key and no file."""
    paths = write_splits(tmp_path, make_dataset(tmp_path, n=30))
    config = {**classification_config(epochs=1), "fusion": {"name": "attention", "dim": 24, "heads": 4}}
    space = {"fusion.dim": {"choices": [24, 20]}, "fusion.heads": {"choices": [4, 6]}}
    path = tuned(tmp_path, config, space=space, seed=1)  # seed 1: trial 0 draws 20 and 6
    with pytest.raises(ConfigError) as info:
        run_search(path, paths["train"], paths["valid"], tmp_path / "search")
    assert info.value.source == str(path)
    assert info.value.problems == ["tune.space.fusion.dim, tune.space.fusion.heads: trial 0 drew 20, 6: fusion: dim "
                                   "(20) must be divisible by heads (6)"]


def test_a_resumed_search_may_raise_tune_trials_in_the_config(tmp_path):
    """--resume refused tune.trials raised in the YAML ('started with another config (tune.trials:
    1 -> 2)') although --trials 2 does the same; a journal recorded while tune.trials was part of
    the search's identity resumes too. Other tune keys are refused, naming what may change."""
    paths = write_splits(tmp_path, make_dataset(tmp_path, n=30))
    path = tuned(tmp_path, classification_config(epochs=1), trials=1)
    out = tmp_path / "search"
    run_search(path, paths["train"], paths["valid"], out)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(out / "study.journal")))
    study_id = storage.get_study_id_from_name("polymodal")
    recorded = json.loads(storage.get_study_user_attrs(study_id)["search"])
    recorded["config"]["tune"]["trials"] = 1  # as a search before this change recorded it
    storage.set_study_user_attr(study_id, "search", json.dumps(recorded, sort_keys=True))
    spec = yaml.safe_load(path.read_text())
    spec["tune"]["trials"] = 2
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    table = run_search(path, paths["train"], paths["valid"], out, resume=True)
    assert table["trial"].tolist() == [0, 1] and (table["state"] == "complete").all()
    spec["tune"].update(trials=3, warmup_epochs=0)
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    with pytest.raises(RunFolderError) as refused:
        run_search(path, paths["train"], paths["valid"], out, resume=True)
    assert str(refused.value) == (
        f"--resume: the search in {out} started with another config (tune.warmup_epochs: 2 -> 0); resume it with the "
        "config, --set values and manifests it started with (a resume may change tune.trials, as --trials does, and "
        "where trials train: train.progress, train.num_workers, train.threads, train.accelerator, train.devices, "
        "train.num_nodes, train.strategy, report, data.cache_dir, data.memory_limit_gb), or give --overwrite to "
        "start a new search (or another --out)")


def test_a_classifier_whose_loss_diverged_is_not_ranked_on_the_accuracy_its_nan_outputs_score(tmp_path):
    """At lr 1e30 the loss is NaN but the accuracy of the NaN outputs (every row called the first
    class) a finite number: the trial was ranked as completed."""
    paths = write_splits(tmp_path, make_dataset(tmp_path, n=40))
    config = tuned(tmp_path, classification_config(epochs=1, lr=1e30, grad_clip=None), trials=1,
                   space={"head.dropout": {"low": 0.0, "high": 0.5}}, metric="accuracy")
    with pytest.warns(UserWarning, match="the trial diverged"), pytest.raises(ConfigError, match="every one diverged"):
        run_search(config, paths["train"], paths["valid"], tmp_path / "search")
    trials = pd.read_csv(tmp_path / "search" / "trials.csv")
    assert trials["state"].tolist() == ["fail"] and trials["note"].tolist() == ["diverged: val_loss is not a number"]
