"""``polymodal demo`` (``polymodal.demo.run_demo``) at a tiny size: 40 av-digits rows, 1 epoch, one fusion."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest
from rich.console import Console

from polymodal import MultimodalPredictor
from polymodal.demo import VARIANTS, run_demo
from polymodal.errors import ConfigError


def test_demo_writes_a_loadable_run_and_prints_its_accuracy(tmp_path):
    printed = io.StringIO()
    table = run_demo(tmp_path, size=40, epochs=1, console=Console(file=printed, width=200), variants=["concat"])

    run = tmp_path / "runs" / "concat"
    assert (run / "report.html").is_file() and (run / "report.html").stat().st_size > 0
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    test = pd.read_csv(tmp_path / "data" / "test.csv")
    assert metrics["test"]["rows"] == len(test) == 8  # 20% of 40 rows
    accuracy = metrics["test"]["accuracy"]
    loaded = MultimodalPredictor.load(run)
    assert loaded.evaluate(tmp_path / "data" / "test.csv")["accuracy"] == pytest.approx(accuracy)

    assert list(table["model"]) == ["concat"] and table["test_accuracy"].iloc[0] == pytest.approx(accuracy)
    assert pd.read_csv(tmp_path / "comparison.csv")["test_accuracy"].iloc[0] == pytest.approx(accuracy)
    assert (tmp_path / "comparison.md").is_file()
    text = printed.getvalue()
    assert f"concat      test accuracy {accuracy:.3f}" in text
    assert "test acc" in text and "(1 epoch each;" in text


def test_demo_unknown_variant_names_the_known_ones(tmp_path):
    with pytest.raises(ConfigError, match="'fancy'.*allowed") as info:
        run_demo(tmp_path, size=40, epochs=1, console=Console(file=io.StringIO()), variants=["concat", "fancy"])
    assert all(name in str(info.value) for name, _, _ in VARIANTS)
    assert not (tmp_path / "data").exists()  # refused before preparing anything
