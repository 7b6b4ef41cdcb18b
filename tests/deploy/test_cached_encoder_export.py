"""A run whose frozen pretrained encoders were cached (``encoder.cache: true``) exports: the cache
only spared training from running them, the run holds their weights, and the graph takes the
raw inputs with the encoders inside (a random timm ``mobilenetv3_small_050`` and a tiny BERT
saved to a temp folder: :mod:`helpers_pretrained`)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from helpers_pretrained import cached_frozen_config, cached_frozen_setup

from polymodal import MultimodalPredictor
from polymodal.deploy.export import export_run
from polymodal.deploy.runtime import META_FILE, Runtime


@pytest.fixture(scope="module")
def exported(tmp_path_factory, one_thread):
    setup = cached_frozen_setup(tmp_path_factory.mktemp("cached-export"))
    run = setup["root"] / "run"
    config = cached_frozen_config(setup, setup["root"] / "cache", report={"rows": 0})
    MultimodalPredictor.from_config(config).fit(setup["train"], setup["valid"], out=run)
    predictor = MultimodalPredictor.load(run)  # as `polymodal export RUN` loads it
    report = export_run(predictor, run / "export", data=setup["test"])
    return setup, predictor, run / "export", report


def test_the_export_passes_its_parity_checks_on_manifest_rows(exported):
    setup, _, _, report = exported
    rows = len(pd.read_csv(setup["test"]))
    assert report.parity["runtime_rows"] == rows
    assert report.parity["graph_max_abs_diff"] <= 1e-4 and report.parity["runtime_max_abs_diff"] <= 1e-4


def test_the_graph_takes_raw_inputs_with_the_encoders_inside(exported):
    _, predictor, folder, _ = exported
    meta = json.loads((folder / META_FILE).read_text())
    inputs = {i["name"]: i for i in meta["graph"]["inputs"]}
    assert inputs["img.x"]["dtype"] == "uint8" and inputs["img.x"]["shape"] == ["batch", 16, 16, 1]  # pixels
    assert "cap.ids" in inputs and not any(name.endswith(".pooled") for name in inputs)  # tokens, no features
    encoder_bytes = sum(p.numel() * 4 for n in ("img", "cap") for p in predictor.net.encoders[n].parameters())
    assert (folder / meta["graph"]["file"]).stat().st_size > encoder_bytes  # the frozen weights are in the file


def test_the_runtime_predicts_raw_rows_as_the_predictor_does(exported):
    setup, predictor, folder, _ = exported
    frame = pd.read_csv(setup["test"])
    rows = [{"img": str(setup["root"] / image) if isinstance(image, str) else None,
             "cap": cap if isinstance(cap, str) else None,
             "tab": {"x1": x1, "x2": x2, "color": color}}
            for image, cap, x1, x2, color in zip(frame["image"], frame["cap"], frame["x1"], frame["x2"], frame["color"])]
    rows = [{k: v for k, v in row.items() if v is not None} for row in rows]
    got = Runtime.load(folder).predict(rows)
    assert list(got) == list(predictor.predict(setup["test"]))
    assert np.isfinite(predictor.predict_proba(setup["test"]).to_numpy()).all()
