"""Export: the ONNX graph, deploy.json, the built-in parity check, int8 and TorchScript."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import onnx
import pytest
import torch

from polymodal.data.manifest import read_manifest
from polymodal.deploy.errors import ExportError
from polymodal.deploy.export import export_run
from polymodal.deploy.graph import _adaptive_max_pool1d
from polymodal.deploy.parity import (
    PREPROCESSING_HINT,
    _without_preprocessing_hint,
    check_graph,
    manifest_rows,
    quantize_and_measure,
)
from polymodal.deploy.runtime import Runtime
from polymodal.errors import command_line
from polymodal.evaluation.data import sample_rows


def test_graph_has_per_modality_inputs_masks_and_dynamic_batch(exported):
    folder, _ = exported
    model = onnx.load(str(folder / "model.onnx"))
    inputs = {i.name: i.type.tensor_type for i in model.graph.input}
    expected = {"audio.length", "audio.x", "audio.present", "image.x", "image.present", "labs.cat", "labs.num",
                "labs.present", "notes.ids", "notes.length", "notes.present"}
    assert set(inputs) == expected
    for tensor_type in inputs.values():
        assert tensor_type.shape.dim[0].dim_param, "the batch axis must be symbolic"
    assert inputs["image.present"].elem_type == onnx.TensorProto.BOOL
    assert inputs["image.x"].elem_type == onnx.TensorProto.UINT8


def test_deploy_json_holds_the_preprocessing_state(exported, trained):
    folder, report = exported
    meta = json.loads((folder / "deploy.json").read_text())
    predictor, _ = trained
    assert meta["classes"] == ["a", "b", "c"] and meta["task"] == "classification"
    assert meta["modalities"]["notes"]["state"]["vocab"] == predictor.pipeline.preprocessors["notes"].vocab
    assert np.allclose(meta["modalities"]["image"]["state"]["mean"], predictor.pipeline.preprocessors["image"].mean)
    assert np.asarray(meta["modalities"]["audio"]["state"]["mel_bank"]).shape == (129, 16)  # n_fft 256 -> 129 bins
    assert meta["modalities"]["labs"]["columns"] == ["x1"] and meta["modalities"]["labs"]["categorical"] == ["color"]
    assert meta["parity"]["graph_max_abs_diff"] <= 1e-4 and report.parity["runtime_max_abs_diff"] <= 1e-4


def test_runtime_matches_the_eager_predictor_on_any_batch_size(exported, dataset, trained):
    folder, _ = exported
    predictor, _ = trained
    runtime = Runtime.load(folder)
    from polymodal.data.manifest import read_manifest
    from polymodal.deploy.parity import manifest_rows

    manifest = read_manifest(dataset["test"])
    rows = manifest_rows(runtime, manifest, len(manifest))
    eager = predictor.predict_proba(dataset["test"]).to_numpy()
    for size in (1, 5, len(rows)):
        got = np.concatenate([runtime.predict_proba(rows[s:s + size]) for s in range(0, len(rows), size)])
        np.testing.assert_allclose(got, eager, atol=1e-5)
    assert runtime.predict(rows) == list(predictor.predict(dataset["test"]))


def test_runtime_featurizes_exactly_like_training(exported, dataset, trained):
    folder, _ = exported
    predictor, _ = trained
    runtime = Runtime.load(folder)
    root = dataset["root"]
    for name, value in (("image", str(root / "i0.png")), ("audio", str(root / "a0.wav")),
                        ("notes", "The blue, LARGE one - number 2!"), ("labs", {"x1": None, "color": "purple"})):
        prep = predictor.pipeline.preprocessors[name]
        cell = tuple(value.values()) if isinstance(value, dict) else value
        want = prep.featurize([prep.decode(cell)])
        got = runtime.features[name].transform([value])
        assert set(got) == set(want)
        for key in want:
            assert got[key].dtype == want[key].dtype, (name, key)
            np.testing.assert_allclose(got[key], want[key], atol=2e-4, err_msg=f"{name}.{key}")


def test_parity_failure_is_loud(exported, trained):
    folder, _ = exported
    predictor, _ = trained
    meta = json.loads((folder / "deploy.json").read_text())
    original = predictor.net.head
    predictor.net.head = torch.nn.Sequential(original, torch.nn.Identity())
    with torch.no_grad():  # the eager model drifts from the exported graph
        last = [m for m in original.modules() if isinstance(m, torch.nn.Linear)][-1]
        last.bias += 1e-3
    try:
        with pytest.raises(ExportError, match="parity check failed.*allowed 0.0001"):
            check_graph(predictor, folder, meta, None, rows=8, tolerance=1e-4)
    finally:
        with torch.no_grad():
            last.bias -= 1e-3
        predictor.net.head = original


def test_parity_takes_the_worst_difference_over_every_feed_set(exported, trained, dataset, monkeypatch):
    from polymodal.deploy import parity

    folder, _ = exported
    predictor, _ = trained
    meta = json.loads((folder / "deploy.json").read_text())
    table = predictor.encode_data(read_manifest(dataset["test"]), require_target=False, modalities=None)[1]
    real, calls = parity._runner, []

    def runner(f, m):
        run = real(f, m)

        def off_on_first_pass(feeds):  # 8 rows: one call per feed set; only the first (as given) is off
            calls.append(1)
            return run(feeds) + (1e-2 if len(calls) == 1 else 0.0)

        return off_on_first_pass

    monkeypatch.setattr(parity, "_runner", runner)
    with pytest.raises(ExportError, match=r"differ by up to 0\.01 on 8 manifest rows"):
        check_graph(predictor, folder, meta, table, rows=8, tolerance=1e-4)
    assert len(calls) == 2  # both feed sets ran; the last one matched


def test_quantized_graph_is_reported_and_runs(exported, trained, dataset):
    folder, report = exported
    q = report.quantized
    ops = {n.op_type for n in onnx.load(str(folder / "model.int8.onnx")).graph.node}
    assert "DynamicQuantizeLinear" in ops and "MatMulInteger" in ops  # int8 matrix products
    assert {"accuracy", "accuracy_int8", "speedup_batch", "max_abs_diff"} <= set(q)
    assert 0 < q["max_abs_diff"] < 1.0  # quantised, not identical, not broken
    # the reported accuracies, recomputed: the eager predictor and the int8 runtime on the same rows
    predictor, _ = trained
    truth = dataset["frame"].iloc[42:]["label"].to_numpy()
    assert q["rows"] == len(truth)
    assert q["accuracy"] == pytest.approx((predictor.predict(dataset["test"]) == truth).mean())
    runtime = Runtime.load(folder, quantized=True)
    rows = manifest_rows(runtime, read_manifest(dataset["test"]), len(truth))
    assert q["accuracy_int8"] == pytest.approx((np.asarray(runtime.predict(rows)) == truth).mean())
    assert abs(q["accuracy_int8"] - q["accuracy"]) <= 2 / len(truth)  # int8 costs at most two of the rows
    proba = runtime.predict_proba([{"notes": "red small"}, {"labs": {"x1": 2.0, "color": "blue"}}])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)


def test_the_checks_sample_rows_across_the_whole_manifest():
    picked = sample_rows(875, 256, seed=0)  # CWRU's test manifest lists its Normal windows last
    assert len(picked) == 256 and len(set(picked.tolist())) == 256 and (np.diff(picked) > 0).all()
    assert picked.min() < 875 // 8 and picked.max() >= 875 - 875 // 8  # both ends, not the first 256
    assert (picked >= 783).sum() > 0.05 * 256  # the last 92 rows get about their share
    np.testing.assert_array_equal(picked, sample_rows(875, 256, seed=0))  # seeded: a re-export checks the same rows
    np.testing.assert_array_equal(sample_rows(5, 256, seed=0), np.arange(5))


def test_quantized_accuracy_is_measured_against_the_labels(exported, trained, dataset, tmp_path):
    folder = shutil.copytree(exported[0], tmp_path / "export")  # the shared export stays untouched
    predictor, _ = trained
    meta = json.loads((folder / "deploy.json").read_text())
    frame = dataset["frame"].iloc[42:].reset_index(drop=True)
    wrong = frame["label"].map({"a": "b", "b": "c", "c": "a"})
    frame["label"] = frame["label"].where(frame.index >= 6, wrong)  # the first six labels are wrong
    manifest = read_manifest(frame, root=dataset["root"])
    q = quantize_and_measure(predictor, folder, meta, manifest, rows=len(frame))
    truth = frame["label"].to_numpy()
    runtime = Runtime.load(folder, quantized=True)
    eager = (predictor.predict(manifest) == truth).mean()
    int8 = (np.asarray(runtime.predict(manifest_rows(runtime, manifest, len(frame)))) == truth).mean()
    assert q["rows"] == 18 and eager <= 12 / 18  # the six wrong labels count against it
    assert q["accuracy"] == pytest.approx(eager) and q["accuracy_int8"] == pytest.approx(int8)


def test_quantized_accuracy_matches_numeric_labels_whatever_their_type(exported, trained, dataset, tmp_path):
    """deploy.json keeps class labels with their JSON type (0, not "0"); labels read as text or
    floats still match them."""
    folder = shutil.copytree(exported[0], tmp_path / "export")
    predictor, _ = trained
    meta = json.loads((folder / "deploy.json").read_text())
    assert meta["classes"] == ["a", "b", "c"]
    frame = dataset["frame"].iloc[42:].reset_index(drop=True)
    as_text = quantize_and_measure(predictor, folder, meta, read_manifest(frame, root=dataset["root"]), rows=len(frame))
    numbered = frame.assign(label=[{"a": 0.0, "b": "1", "c": 2}[v] for v in frame["label"]])
    q = quantize_and_measure(predictor, folder, {**meta, "classes": [0, 1, 2]},
                             read_manifest(numbered, root=dataset["root"]), rows=len(frame))
    assert q["accuracy"] == as_text["accuracy"] >= 0.5 and q["accuracy_int8"] == as_text["accuracy_int8"]


def test_a_table_without_categorical_columns_exports_and_runs(tmp_path):
    """The exporter drops the graph input nothing reads (the empty ``cat`` array); deploy.json lists
    the inputs the graph takes, and the runtime feeds just those."""
    import pandas as pd

    from polymodal import MultimodalPredictor

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 90)
    frame = pd.DataFrame({"x1": y + rng.normal(0, 0.1, 90), "x2": rng.normal(size=90), "label": y})
    config = {"task": "classification", "target": "label",
              "modalities": {"tab": {"kind": "tabular", "columns": ["x1", "x2"], "encoder": {"dim": 8}}},
              "train": {"epochs": 2, "batch_size": 16, "progress": False}}
    predictor = MultimodalPredictor.from_config(config).fit(frame.iloc[:60], frame.iloc[60:])
    report = export_run(predictor, tmp_path / "export", data=frame, rows=90, quantize=True)
    meta = json.loads((tmp_path / "export" / "deploy.json").read_text())
    assert [i["name"] for i in meta["graph"]["inputs"]] == ["tab.num", "tab.present"]
    assert report.parity["runtime_max_abs_diff"] <= 1e-4 and report.quantized["rows"] == 90
    runtime = Runtime.load(tmp_path / "export")
    np.testing.assert_array_equal(np.asarray(runtime.predict([{"tab": {"x1": v, "x2": 0.0}} for v in frame["x1"]])),
                                  predictor.predict(frame.drop(columns="x2").assign(x2=0.0)))


def test_torchscript_export_matches_eager(trained, dataset, tmp_path):
    predictor, _ = trained
    report = export_run(predictor, tmp_path / "ts", fmt="torchscript")  # on the manifest the run recorded
    assert (tmp_path / "ts" / "model.torchscript.pt").is_file()
    assert report.recorded == ("valid", dataset["test"].resolve())
    assert report.parity["graph_max_abs_diff"] <= 1e-4 and "manifest rows" in report.parity["source"]


def test_an_export_of_a_run_that_recorded_no_manifest_is_checked_on_synthetic_arrays_with_a_warning(late_run,
                                                                                                    tmp_path):
    predictor, _ = late_run  # fitted on DataFrames
    with pytest.warns(UserWarning, match=r"checked on synthetic arrays only .*give held-out rows \(data=\) to check both"):
        report = export_run(predictor, tmp_path / "exp")
    assert report.recorded is None and report.parity["source"] == "synthetic arrays"
    assert "runtime_max_abs_diff" not in report.parity  # the numpy preprocessing needs real rows


def test_bad_format_and_quantize_combination(trained, tmp_path):
    predictor, _ = trained
    with pytest.raises(ExportError, match="unknown export format 'tflite'; use one of"):
        export_run(predictor, tmp_path / "x", fmt="tflite")
    with pytest.raises(ExportError, match="^quantize=True needs fmt='onnx'; got fmt='torchscript'$"):
        export_run(predictor, tmp_path / "x", fmt="torchscript", quantize=True)
    with command_line(), pytest.raises(ExportError, match="^--quantize needs --format onnx; got --format torchscript$"):
        export_run(predictor, tmp_path / "x", fmt="torchscript", quantize=True)  # as polymodal export calls it


def test_adaptive_max_pool_replacement_is_exact():
    x = torch.randn(3, 2, 101)
    for size in (1, 13, 50, 101):
        assert torch.equal(_adaptive_max_pool1d(x, size), torch.nn.functional.adaptive_max_pool1d(x, size))


def test_a_manifest_of_npy_waveforms_exports_and_the_runtime_reads_them(trained, dataset, tmp_path):
    """The runtime's check refused every .npy audio cell, which training reads (at the model's rate)."""
    import pandas as pd
    import soundfile

    predictor, _ = trained
    frame = pd.read_csv(dataset["test"], keep_default_na=False)
    for column in ("image", "audio"):
        frame[column] = [str(dataset["root"] / cell) if cell else "" for cell in frame[column]]
    for i, cell in enumerate(frame["audio"]):
        if cell:
            samples, _ = soundfile.read(cell, dtype="int16")  # the model's rate: as training takes a .npy
            np.save(tmp_path / f"clip{i}.npy", samples)
            frame.loc[i, "audio"] = str(tmp_path / f"clip{i}.npy")
    report = export_run(predictor, tmp_path / "export", data=frame, rows=8)
    assert report.parity["runtime_max_abs_diff"] <= 1e-4


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_failed_runtime_check_leaves_nothing_servable(trained, dataset, tmp_path, monkeypatch):
    from polymodal.deploy import parity

    predictor, _ = trained
    real = parity.check_runtime
    monkeypatch.setattr(parity, "check_runtime", lambda p, f, m, t, tolerance: real(p, f, m, t, -1.0))
    out = tmp_path / "export"
    with pytest.raises(ExportError, match=r"runtime parity check failed.*nothing was written to"):
        export_run(predictor, out, data=dataset["test"], rows=8)
    assert list(tmp_path.iterdir()) == []  # no deploy.json, no graph, no staging folder


def test_failed_export_keeps_the_previous_export(trained, tmp_path, monkeypatch):
    from polymodal.deploy import parity

    predictor, _ = trained
    out = tmp_path / "export"
    export_run(predictor, out, rows=8)
    before = _snapshot(out)
    real = parity.check_graph
    monkeypatch.setattr(parity, "check_graph", lambda p, f, meta, table, rows, tolerance: real(p, f, meta, table, rows, -1.0))
    with pytest.raises(ExportError, match=rf"parity check failed.*{out.name} keeps its previous export"):
        export_run(predictor, out, fmt="torchscript", rows=8)
    assert _snapshot(out) == before and [p.name for p in tmp_path.iterdir()] == ["export"]


def test_export_replaces_only_an_export_folder(trained, tmp_path):
    predictor, _ = trained
    out = tmp_path / "run"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"weights")
    with pytest.raises(ExportError, match=r"holds files that are not part of an export \['model.safetensors'\]"):
        export_run(predictor, out)
    assert [p.name for p in out.iterdir()] == ["model.safetensors"]


def test_quantizing_drops_only_onnxruntimes_preprocessing_hint(exported, trained, tmp_path, caplog):
    """``export --quantize`` printed "WARNING:root:Please consider to run pre-processing..."."""
    folder = shutil.copytree(exported[0], tmp_path / "export")  # the shared export stays untouched
    meta = json.loads((folder / "deploy.json").read_text())
    root = logging.getLogger()
    filters = list(root.filters)
    with caplog.at_level(logging.WARNING):
        quantize_and_measure(trained[0], folder, meta, None, rows=8)
        logging.warning("a root warning after quantising")
        with _without_preprocessing_hint():
            logging.warning(PREPROCESSING_HINT + ". Refer to example: ...")
            logging.warning("another onnxruntime warning")
    assert "pre-processing" not in caplog.text
    assert "a root warning after quantising" in caplog.text and "another onnxruntime warning" in caplog.text
    assert root.filters == filters


def test_class_labels_keep_their_json_type():
    """deploy.json keeps numbers as numbers, so the runtime and the service predict the values the
    predictor does (7, not "7")."""
    from polymodal.deploy.export import _json_label

    labels = [np.int64(7), np.float64(0.5), "seven", np.str_("x"), True]
    assert json.loads(json.dumps([_json_label(v) for v in labels])) == [7, 0.5, "seven", "x", True]


# -- late fusion, and what the exporter and onnxruntime refuse ------------------------------
def test_a_late_fusion_run_exports_and_matches_eager(late_run, tmp_path):
    """Every late-fusion export failed: onnxruntime has no ``Where`` kernel for bool tensors."""
    import pandas as pd

    predictor, _ = late_run
    frame = pd.DataFrame({"x1": [0.1, np.nan, 2.0, 1.0, 1.5], "x2": [0.0, 1.2, np.nan, 2.1, -0.3],
                          "label": [0, 1, 2, 1, 2]})
    report = export_run(predictor, tmp_path / "export", data=frame)
    assert report.parity["source"] == "5 manifest rows, as given and with modalities hidden"
    assert report.parity["graph_max_abs_diff"] <= 1e-4 and report.parity["runtime_max_abs_diff"] <= 1e-4
    runtime = Runtime.load(tmp_path / "export")
    rows = [{"a": {"x1": 0.1}, "b": {"x2": 0.0}}, {"b": {"x2": 1.2}}, {"a": {"x1": 2.0}}]
    np.testing.assert_allclose(runtime.predict_proba(rows), predictor.predict_proba(frame.iloc[:3]).to_numpy(),
                               atol=1e-5)


def _late_forward_with_where_on_bools(self, features, present):
    """``LateFusion.forward`` as it was: ``torch.where`` on bool tensors, which onnxruntime cannot run."""
    from polymodal.models.fusion.base import FusedOutput

    pooled, filled = self.fill(features, present)
    outputs = torch.stack([self.heads[n](pooled[n]) for n in self.names], dim=1)
    real = torch.stack([present[n] for n in self.names], dim=1)
    mask = torch.where(real.any(dim=1, keepdim=True), real, filled)
    weights = self.masked_softmax(self.logits.expand(mask.shape), mask)
    return FusedOutput((weights.unsqueeze(-1) * outputs).sum(dim=1), outputs, mask)


def test_a_graph_onnxruntime_cannot_run_is_an_export_error(late_run, tmp_path, monkeypatch):
    from polymodal.models.fusion.late import LateFusion

    predictor, _ = late_run
    monkeypatch.setattr(LateFusion, "forward", _late_forward_with_where_on_bools)
    with pytest.raises(ExportError, match=r"^onnxruntime cannot run the exported graph: \[ONNXRuntimeError\] : 9 : "
                                          r"NOT_IMPLEMENTED : .*Where.*; nothing was written to .*export$"):
        export_run(predictor, tmp_path / "export")
    assert list(tmp_path.iterdir()) == []


def test_the_graph_is_traced_while_torch_has_the_tracing_exporter(trained, tmp_path, onnx_exporters):
    from polymodal.deploy.writers import tracing_exporter

    assert tracing_exporter() is True  # torch 2.14 still has it (deprecated): 30-40 times faster than torch.export
    report = export_run(trained[0], tmp_path / "export", rows=8)
    assert onnx_exporters == [False] and report.parity["graph_max_abs_diff"] <= 1e-4


@pytest.mark.slow  # torch.export over four modalities (about 25 s); the histc case below takes that path too
def test_without_the_tracing_exporter_torch_export_captures_the_graph(trained, dataset, tmp_path, without_tracing,
                                                                     onnx_exporters):
    """Text (whose padding eager batches trim to a data-dependent length) with a GRU, image, audio and a
    table go through torch.export (``dynamo=True``) once torch removes the TorchScript-based exporter."""
    predictor, _ = trained
    report = export_run(predictor, tmp_path / "export", data=dataset["test"])
    assert onnx_exporters == [True]
    assert report.parity["graph_max_abs_diff"] <= 1e-4 and report.parity["runtime_max_abs_diff"] <= 1e-4
    model = onnx.load(str(tmp_path / "export" / "model.onnx"))
    ids = next(i for i in model.graph.input if i.name == "notes.ids")
    assert [d.dim_param or d.dim_value for d in ids.type.tensor_type.shape.dim] == ["batch", 8]  # max_tokens, fixed
    assert not any(node.metadata_props for node in model.graph.node)  # no stack traces with this machine's paths


@pytest.mark.parametrize(("capture", "said"), [
    (False, "Exporting the operator 'aten::histc' to ONNX opset version 18 is not supported"),
    (True, "aten.histc.default: aten_histc with min == max (0.0) is not supported in this export path")])
def test_an_operator_the_exporter_cannot_translate_is_an_export_error(late_run, tmp_path, monkeypatch, request, capture,
                                                                      said):
    from polymodal.models.fusion.late import LateFusion

    if capture:
        request.getfixturevalue("without_tracing")
    predictor, _ = late_run
    real = LateFusion.forward

    def with_histc(self, features, present):
        out = real(self, features, present)
        return type(out)(out.pooled + 0.0 * torch.histc(out.pooled, bins=2).sum(), out.tokens, out.mask)

    monkeypatch.setattr(LateFusion, "forward", with_histc)
    with pytest.raises(ExportError) as caught:
        export_run(predictor, tmp_path / "export")
    assert str(caught.value) == f"exporting to ONNX failed: {said}; nothing was written to {tmp_path / 'export'}"
    assert list(tmp_path.iterdir()) == []


def test_a_graph_onnxruntime_cannot_load_is_named_when_the_export_is_opened(exported, tmp_path):
    folder = shutil.copytree(exported[0], tmp_path / "export")
    (folder / "model.onnx").write_bytes(b"not a graph")
    with pytest.raises(ExportError, match=rf"^onnxruntime cannot load {folder / 'model.onnx'}: \[ONNXRuntimeError\].*"
                                          r"write the export again with 'polymodal export RUN'$"):
        Runtime.load(folder)


def _recording(run, manifest):
    """``run`` loaded, as if fitted with ``manifest`` as its validation manifest (and no other)."""
    from polymodal import MultimodalPredictor

    predictor = MultimodalPredictor.load(run)
    predictor.info = {k: v for k, v in predictor.info.items() if not k.endswith(("_manifest", "_manifest_key"))}
    predictor.info["valid_manifest"] = str(manifest)
    return predictor


def test_an_export_whose_recorded_rows_were_all_skipped_falls_back_to_synthetic_arrays(trained, dataset, tmp_path):
    import pandas as pd

    frame = pd.read_csv(dataset["test"])
    for column in ("image", "audio"):
        frame[column] = [str(tmp_path / "moved" / p) if isinstance(p, str) else p for p in frame[column]]
    frame.to_csv(tmp_path / "valid.csv", index=False)
    predictor = _recording(trained[1], tmp_path / "valid.csv")
    predictor.config.data.on_error = "skip"  # every row loses a file: no row is left to check
    with pytest.warns(UserWarning) as caught:
        report = export_run(predictor, tmp_path / "exp", rows=8)
    said = [str(w.message) for w in caught]
    assert any(m.startswith(f"the run's valid manifest {tmp_path / 'valid.csv'} cannot be read any more") for m in said)
    assert any(m.startswith("the export was checked on synthetic arrays only") for m in said)
    assert report.recorded is None and report.parity["source"] == "synthetic arrays"


def test_the_runtime_check_leaves_out_what_on_error_missing_read_as_missing(trained, dataset, tmp_path):
    import pandas as pd

    frame = pd.read_csv(dataset["test"])
    frame["image"] = [str(tmp_path / "moved" / p) if isinstance(p, str) else p for p in frame["image"]]
    frame["audio"] = [str(dataset["root"] / p) if isinstance(p, str) else p for p in frame["audio"]]
    frame.to_csv(tmp_path / "valid.csv", index=False)
    predictor = _recording(trained[1], tmp_path / "valid.csv")
    predictor.config.data.on_error = "missing"
    with predictor.quiet_skips():
        report = export_run(predictor, tmp_path / "exp", rows=8)
    assert report.recorded == ("valid", tmp_path / "valid.csv")
    assert report.parity["runtime_rows"] > 0 and report.parity["runtime_max_abs_diff"] <= 1e-4


def test_a_failed_check_on_the_recorded_manifest_names_it(trained, dataset, tmp_path, monkeypatch):
    from polymodal.deploy import parity

    predictor, _ = trained
    real = parity.check_graph
    monkeypatch.setattr(parity, "check_graph", lambda p, f, m, t, rows, tolerance: real(p, f, m, t, rows, -1.0))
    with pytest.raises(ExportError, match=r"parity check failed.*\(checked on the run's valid manifest .*test\.csv\)"):
        export_run(predictor, tmp_path / "exp", rows=8)


def test_an_input_the_runtime_refuses_that_training_read_is_named_with_its_row_and_file(trained, dataset, tmp_path,
                                                                                        monkeypatch):
    """The runtime decodes a batch at once; its refusal names the row in the batch, which the check
    names in the manifest (its own 'row k' of the batch left out)."""
    import pandas as pd

    from polymodal.deploy.errors import RequestError
    from polymodal.deploy.features import AudioFeatures

    predictor, _ = trained
    frame = pd.read_csv(dataset["test"])
    third = frame.index[frame["audio"].notna()][2]
    refused = str(frame.loc[third, "audio"])
    real = AudioFeatures.decode

    def decode(self, value):
        if str(value).endswith(refused):
            raise RequestError("not a readable audio file (WAV, FLAC, OGG)", status=415, field=self.name)
        return real(self, value)

    monkeypatch.setattr(AudioFeatures, "decode", decode)
    with pytest.raises(ExportError) as info:
        export_run(predictor, tmp_path / "exp", data=dataset["test"], rows=8)
    message = str(info.value)
    assert f"the numpy runtime cannot read test.csv row {third} (line {third + 2})" in message, message
    assert "modality 'audio'" in message and refused in message and "not a readable audio file" in message
    assert "read: row " not in message
    assert not (tmp_path / "exp").exists()


def test_the_weights_record_the_fingerprint_the_loaded_model_has(trained):
    """What serve compares an export with, read from the weight file's header without torch."""
    from polymodal import MultimodalPredictor
    from polymodal.run_files import saved_fingerprint

    predictor, run = trained
    saved = saved_fingerprint(run / "model.safetensors")
    assert saved == predictor.model_fingerprint() == MultimodalPredictor.load(run).model_fingerprint()


@pytest.mark.parametrize(("normalize", "on_error", "version"), [
    ("none", "raise", 2), ("strip", "raise", 4), ("strip_lower", "skip", 4), ("none", "missing", 4)])
def test_an_export_needs_format_4_when_its_table_reads_cells_as_a_runtime_of_format_3_would_not(normalize, on_error,
                                                                                                version):
    from polymodal.config import load_config
    from polymodal.deploy.export import required_format

    spec = {"task": "classification", "target": "y", "data": {"on_error": on_error},
            "modalities": {"t": {"kind": "tabular", "columns": ["a"], "categorical": ["c"],
                                 "preprocess": {"normalize_categories": normalize}},
                           "n": {"kind": "text", "column": "note",
                                 "preprocess": {"keep_number_punctuation": False, "join_apostrophes": False}}}}
    assert required_format(load_config(spec)) == version
    spec["modalities"].pop("t")
    assert required_format(load_config(spec)) == 2  # no table: nothing format 4 adds


@pytest.mark.parametrize(("preprocess", "version"), [
    ({"join_apostrophes": False}, 5),  # '3.5' kept whole: a runtime of format 4 would read '3 5'
    ({"strip_punctuation": False}, 2),  # nothing stripped: nothing kept
    ({"keep_number_punctuation": False, "join_apostrophes": False, "stopwords": True}, 2),  # the list is in the state
    ({"keep_number_punctuation": False, "join_apostrophes": False, "stopwords": ["us"]}, 2),  # matched in any case
    ({"keep_number_punctuation": False, "join_apostrophes": False, "stopwords": ["us"], "lowercase": False},
     5),  # format 4 would drop 'US'
])
def test_an_export_needs_format_5_when_its_text_cleans_as_a_runtime_of_format_4_would_not(preprocess, version):
    from polymodal.config import load_config
    from polymodal.deploy.export import required_format

    spec = {"task": "classification", "target": "y",
            "modalities": {"n": {"kind": "text", "column": "note", "preprocess": preprocess}}}
    assert required_format(load_config(spec)) == version


@pytest.mark.parametrize(("preprocess", "version"), [
    ({}, 7),  # "can't" read 'cant': a runtime of format 6 would read 'can t'
    ({"keep_number_punctuation": False}, 7),
    ({"join_apostrophes": False}, 5),  # split as a runtime of format 6 splits it
    ({"strip_punctuation": False}, 2),  # nothing stripped: the setting is idle
])
def test_an_export_needs_format_7_when_its_text_joins_apostrophes(preprocess, version):
    from polymodal.config import load_config
    from polymodal.deploy.export import required_format

    spec = {"task": "classification", "target": "y",
            "modalities": {"n": {"kind": "text", "column": "note", "preprocess": preprocess}}}
    assert required_format(load_config(spec)) == version
    # checked above a subset threshold's 6: an anomaly detector with a text that joins them needs 7 too
    assert required_format(load_config(spec), subset_thresholds=True) == max(version, 6)


@pytest.mark.parametrize(("kind", "without"), [("image", 2), ("video", 3)])
def test_an_export_needs_format_8_when_its_pixels_read_through_a_value_range(kind, without):
    """A runtime of format 7 would scale a 16-bit image by its own maximum."""
    from polymodal.config import load_config
    from polymodal.deploy.export import required_format

    spec = {"task": "classification", "target": "y",
            "modalities": {"x": {"kind": kind, "column": "x", "preprocess": {"value_range": [0, 4095]}}}}
    assert required_format(load_config(spec)) == 8
    spec["modalities"]["x"]["preprocess"] = {}
    assert required_format(load_config(spec)) == without
