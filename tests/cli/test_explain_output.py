"""``polymodal explain --output NAME``: the output explained, named in the printed table and the files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers_cli import assert_user_error, fitted_run, invoke
from helpers_models import multilabel_config

from polymodal import MultimodalPredictor


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return fitted_run(tmp_path_factory, multilabel_config(epochs=2), 40, "tags")


def test_the_default_output_is_named_in_the_printed_table_and_the_files(run, tmp_path):
    folder, paths = run
    result = invoke("explain", folder, "--data", paths["test"], "--samples", "0", "--out", tmp_path / "why")
    assert result.exit_code == 0, result.output
    assert "modality importance" in result.stdout
    assert "explained: the probability of label 'tag_bright'" in result.stdout
    importance = pd.read_csv(tmp_path / "why" / "importance.csv")
    assert (importance["explained"] == "probability of label 'tag_bright'").all()
    assert (pd.read_csv(tmp_path / "why" / "shapley.csv")["explained"] == "tag_bright").all()


def test_output_explains_that_label(run, tmp_path):
    folder, paths = run
    result = invoke("explain", folder, "--data", paths["test"], "--samples", "0", "--output", "tag_top",
                    "--out", tmp_path / "top")
    assert result.exit_code == 0, result.output
    assert "explained: the probability of label 'tag_top'" in result.stdout
    written = pd.read_csv(tmp_path / "top" / "shapley.csv", index_col="row")
    expected = MultimodalPredictor.load(folder).explain(paths["test"], samples=0, output="tag_top").values
    assert (written["explained"] == "tag_top").all()
    np.testing.assert_allclose(written[["img", "sig", "base", "prediction"]].to_numpy(),
                               expected[["img", "sig", "base", "prediction"]].to_numpy(), atol=1e-9)
    assert list(written.columns) == ["explained", "base", "img", "sig", "prediction", "truth"]  # truth added last
    truth = pd.read_csv(paths["test"])["tag_top"].iloc[written.index]
    assert (written["truth"].to_numpy() == truth.to_numpy()).all() and set(truth) == {0, 1}
    importance = pd.read_csv(tmp_path / "top" / "importance.csv")
    assert (importance["explained"] == "probability of label 'tag_top'").all()


def test_an_unknown_output_is_a_user_error_listing_the_choices(run, tmp_path):
    folder, paths = run
    result = invoke("explain", folder, "--data", paths["test"], "--output", "tag_nope", "--out", tmp_path / "no")
    assert_user_error(result, "'tag_nope'", "labels", "'tag_bright'", "'tag_top'")
    assert not (tmp_path / "no").exists(), "refused before the work"
