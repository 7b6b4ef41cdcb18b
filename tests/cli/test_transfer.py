"""``polymodal train --unlabeled``: a domain-adaptation run from the command line, and the user
errors around it (exit status 2, no traceback)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml
from helpers_models import classification_config, make_dataset, write_splits
from typer.testing import CliRunner

from polymodal.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("cli-transfer")
    paths = write_splits(root, make_dataset(root, n=45))
    pd.read_csv(paths["test"]).drop(columns="label").to_csv(root / "target.csv", index=False)
    configs = {}
    for name, transfer in (("coral", {"method": "coral"}), ("plain", None)):
        cfg = classification_config(epochs=1)
        cfg["transfer"] = transfer
        configs[name] = root / f"{name}.yaml"
        configs[name].write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return {"root": root, "target": root / "target.csv", **paths, **configs}


def train(data, config: str, out, *extra: str):
    args = ["train", data[config], "--train", data["train"], "--valid", data["valid"], "--out", out, *extra]
    return runner.invoke(app, [str(a) for a in args])


def test_train_with_unlabeled_target_rows(data, tmp_path):
    result = train(data, "coral", tmp_path / "run", "--unlabeled", data["target"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["training"]["transfer"] == "coral"
    assert metrics["training"]["unlabeled_rows"] == len(pd.read_csv(data["target"]))
    assert "train_domain_loss" in pd.read_csv(tmp_path / "run" / "history.csv").columns


@pytest.mark.parametrize(("config", "extra", "fragment"), [
    ("plain", ("--unlabeled", "TARGET"), "error: --unlabeled: unlabelled data was given, but no transfer method"),
    ("coral", (), "transfer.unlabeled"),
])
def test_unlabeled_rows_and_method_must_go_together(data, tmp_path, config, extra, fragment):
    extra = tuple(str(data["target"]) if e == "TARGET" else e for e in extra)
    result = train(data, config, tmp_path / "run", *extra)
    assert result.exit_code == 2, result.output
    assert fragment in result.stderr and "Traceback" not in result.output


def test_the_run_records_the_unlabeled_file_and_resume_without_it_is_refused(data, tmp_path):
    run = tmp_path / "run"
    assert train(data, "coral", run, "--unlabeled", data["target"]).exit_code == 0
    assert yaml.safe_load((run / "config.yaml").read_text())["transfer"]["unlabeled"] == str(data["target"].resolve())
    result = train(data, "coral", run, "--resume", "--set", "train.epochs=2")
    assert result.exit_code == 2, result.output
    assert (f"--resume: {run} trained with --unlabeled {data['target'].resolve()}; resume it with the same "
            "--unlabeled (given: none)") in " ".join(result.stderr.split()) and "Traceback" not in result.output
    result = train(data, "coral", run, "--resume", "--set", "train.epochs=2", "--unlabeled", data["target"])
    assert result.exit_code == 0, result.output
