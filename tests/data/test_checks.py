"""Manifests checked against a config before training, from Python (``config check --data``'s checks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from data.helpers import make_config
from polymodal import check_manifests
from polymodal.data.checks import ManifestCheck
from polymodal.errors import ManifestError, SchemaMismatchError


def _write(path: Path, n: int, seed: int, drop: tuple[str, ...] = (), **columns: object) -> Path:
    """``n`` seeded rows of two numbers and a label (``a`` or ``b``), ``columns`` replaced."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n), "y": rng.choice(["a", "b"], n)})
    frame.assign(**columns).drop(columns=list(drop)).to_csv(path, index=False)
    return path


CONFIG = {"tab": {"kind": "tabular", "columns": ["x1", "x2"]}}


def test_good_manifests_pass_with_what_they_hold(tmp_path):
    train, valid = _write(tmp_path / "train.csv", 30, 0), _write(tmp_path / "valid.csv", 12, 1)
    checks = check_manifests(make_config(CONFIG), [train, str(valid)])
    assert checks == [ManifestCheck(train, said="30 rows"), ManifestCheck(valid, said="12 rows")]
    assert all(check.ok for check in checks)


def test_a_single_path_is_checked_as_a_list_of_one(tmp_path):
    train = _write(tmp_path / "train.csv", 30, 0)
    for path in (str(train), train):  # not letter by letter
        assert check_manifests(make_config(CONFIG), path) == [ManifestCheck(train, said="30 rows")]


def test_bad_manifests_are_refused_each_with_its_error_and_every_one_is_checked(tmp_path):
    train = _write(tmp_path / "train.csv", 30, 0)
    unseen = _write(tmp_path / "unseen.csv", 12, 1, y=["c"] + ["a"] * 11)  # a class training never saw
    no_target = _write(tmp_path / "no_target.csv", 12, 2, drop=("y",))
    valid = _write(tmp_path / "valid.csv", 12, 3)
    checks = check_manifests(make_config(CONFIG), [train, unseen, no_target, tmp_path / "gone.csv", valid])
    assert [check.ok for check in checks] == [True, False, False, False, True]
    assert [check.path for check in checks] == [train, unseen, no_target, tmp_path / "gone.csv", valid]
    assert all(check.said is None for check in checks if not check.ok)
    assert isinstance(checks[1].error, SchemaMismatchError)
    assert "unseen.csv row 0 (line 2): label 'c' in column 'y' was not seen in training" in str(checks[1].error)
    assert isinstance(checks[2].error, ManifestError)
    assert "target column 'y' is not in no_target.csv" in str(checks[2].error)
    assert isinstance(checks[3].error, ManifestError) and "manifest file not found" in str(checks[3].error)


def test_a_later_manifests_labels_are_not_compared_when_the_first_has_problems(tmp_path):
    bad = _write(tmp_path / "bad.csv", 30, 0, drop=("y",))  # no labels: no classes to compare a later one's with
    valid = _write(tmp_path / "valid.csv", 12, 1, y="c")
    first, later = check_manifests(make_config(CONFIG), [bad, valid])
    assert isinstance(first.error, ManifestError) and "target column 'y' is not in bad.csv" in str(first.error)
    assert later.said == "12 rows; labels not checked against the first --data's classes (it has problems)"
