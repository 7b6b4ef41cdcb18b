"""A text modality with a pretrained (transformers) tokenizer and encoder exports and serves: the
tokenizer's own JSON runs in the runtime through the tokenizers library, the BERT inside the graph."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from helpers_models import save_tiny_bert

from polymodal import MultimodalPredictor
from polymodal.deploy.errors import ExportError
from polymodal.deploy.export import export_run
from polymodal.deploy.runtime import Runtime

CAPTIONS = {0: "quite dark image", 1: "a mid signal", 2: "very bright image is very bright"}


@pytest.fixture(scope="module")
def bert_export(tmp_path_factory, one_thread):
    root = tmp_path_factory.mktemp("bert_text")
    bert = save_tiny_bert(root / "bert")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 48)
    frame = pd.DataFrame({"cap": [CAPTIONS[k] + (" unheard words!" if i % 4 == 0 else "") for i, k in enumerate(labels)],
                          "x": labels + rng.normal(0, 0.3, 48), "label": labels})
    frame.loc[5, "cap"] = ""  # a row without text
    frame.to_csv(root / "m.csv", index=False)
    config = {"task": "classification", "target": "label",
              "modalities": {"cap": {"kind": "text", "column": "cap", "preprocess": {"max_tokens": 6},
                                     "encoder": {"name": "hf", "path": str(bert)}},
                             "tab": {"kind": "tabular", "columns": ["x"], "encoder": {"dim": 4, "hidden": [8]}}},
              "fusion": {"name": "concat"},
              "train": {"epochs": 1, "batch_size": 8, "progress": False, "early_stopping": None, "num_workers": 0},
              "report": {"rows": 0}}
    predictor = MultimodalPredictor.from_config(config).fit(root / "m.csv", None, out=root / "run")
    report = export_run(predictor, root / "run" / "export", data=root / "m.csv")
    return predictor, root / "run" / "export", report


def test_the_export_checks_the_tokenizer_and_the_bert_on_the_rows(bert_export):
    from polymodal.deploy.export import required_format

    predictor, _, report = bert_export
    assert report.parity["runtime_rows"] == 48  # the row without text still has its number
    assert report.parity["runtime_max_abs_diff"] <= 1e-4 and report.parity["graph_max_abs_diff"] <= 1e-4
    assert Runtime.load(bert_export[1]).meta["format_version"] == 4  # its table's categories are normalised
    text_only = predictor.config.model_copy(update={"modalities": {"cap": predictor.config.modalities["cap"]}})
    assert required_format(text_only) == 3  # format 2 would run the pretrained tokenizer without truncation


@pytest.mark.parametrize("text", ["quite dark image", "The DARK image, very BRIGHT!!", "zzz qqq", "",
                                  "dark " * 30, "a mid signal is quite mid"])
def test_the_runtime_tokenizes_as_the_transformers_tokenizer(bert_export, text):
    predictor, folder, _ = bert_export
    runtime = Runtime.load(folder)
    assert runtime.features["cap"].decode(text) == predictor.pipeline.preprocessors["cap"].decode(text)
    assert len(runtime.features["cap"].decode(text)) <= 6


def test_a_cut_text_is_noted_with_its_length(bert_export):
    runtime = Runtime.load(bert_export[1])

    def notes(row):  # the text's own (the table left out gets a note of its own)
        return [n for n in runtime.notes(row) if n.startswith("modality 'cap', ")]

    assert notes({"cap": "dark " * 30}) == [
        "modality 'cap', 32 tokens where the model reads 6: cut to 6 (the tokenizer cuts from the right)"]  # + [CLS], [SEP]
    assert notes({"cap": "quite dark image"}) == []


def test_the_runtime_needs_neither_torch_nor_transformers(bert_export):
    script = (
        "import sys; sys.modules['torch'] = None; sys.modules['transformers'] = None\n"
        "from polymodal.deploy.runtime import Runtime\n"
        f"rt = Runtime.load({str(bert_export[1])!r})\n"
        "print(rt.predict([{'cap': 'very bright image', 'tab': {'x': 2.0}}]))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() in ("[0]", "[1]", "[2]")


def test_a_tokenizer_without_a_fast_form_is_refused_naming_the_modality(bert_export, tmp_path, monkeypatch):
    predictor, _, _ = bert_export
    prep = predictor.pipeline.preprocessors["cap"]
    monkeypatch.setitem(prep.__dict__, "_pretrained", SimpleNamespace(is_fast=False))
    with pytest.raises(ExportError, match=r"modality 'cap' \(text\): the pretrained tokenizer SimpleNamespace has no "
                                          r"tokenizers-library form"):
        export_run(predictor, tmp_path / "export")
    assert not (tmp_path / "export").exists()


def test_a_moved_run_serves_the_export_made_from_the_fitted_model(bert_export, tmp_path, monkeypatch):
    """The export was written from the fitted predictor (its tokenizer in the source folder); the run,
    copied elsewhere, loads from its own copy of the tokenizer: still the same model, so it serves."""
    import shutil

    from typer.testing import CliRunner

    from polymodal.cli import app
    from polymodal.cli import deploy as commands

    _, folder, _ = bert_export
    run = shutil.copytree(folder.parent, tmp_path / "moved" / "run")
    served = []
    monkeypatch.setattr(commands, "run_server", lambda app, settings: served.append(app))
    result = CliRunner().invoke(app, ["serve", str(run)])
    assert result.exit_code == 0, result.output
    assert len(served) == 1


def test_a_tokenizer_that_cuts_from_the_left_is_run_so(bert_export):
    """transformers keeps the side a tokenizer truncates from in its config, not in tokenizer.json."""
    import json

    from transformers import AutoTokenizer

    from polymodal.deploy.features import TextFeatures
    from polymodal.deploy.runtime import META_FILE

    _, folder, _ = bert_export
    meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))["modalities"]["cap"]
    assert meta["state"]["truncation_side"] == "right" and meta["preprocess"]["tokenizer_path"] is None
    meta["state"]["truncation_side"] = "left"
    text = "quite dark image is very bright a mid signal"
    left = AutoTokenizer.from_pretrained(str(folder.parent.parent / "bert"), truncation_side="left")
    expected = left(text, truncation=True, max_length=6)["input_ids"]
    assert TextFeatures("cap", meta).decode(text) == expected
    assert expected != AutoTokenizer.from_pretrained(str(folder.parent.parent / "bert"))(
        text, truncation=True, max_length=6)["input_ids"]  # the side matters for this text
