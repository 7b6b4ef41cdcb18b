"""What ``report.html`` of a trained run shows: the metrics of ``metrics.json``, the learning curves and
confusion matrix (embedded, and saved as valid PNGs under ``plots/``), the model's parameter counts
and the run facts."""

from __future__ import annotations

import base64
import html
import io
import json
import re

import numpy as np
import pytest
from PIL import Image

from polymodal import MultimodalPredictor
from polymodal.evaluation.report import write_report

from .helpers import tabular_config, two_tabular

EPOCHS = 3


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    frame = two_tabular(90, "a")
    paths = {}
    for name, part in (("train", frame[:60]), ("valid", frame[60:75]), ("test", frame[75:])):
        paths[name] = root / f"{name}.csv"
        part.to_csv(paths[name], index=False)
    config = {**tabular_config(epochs=EPOCHS), "report": {"rows": 0}}  # no diagnostics: the core sections only
    out = root / "run"
    predictor = MultimodalPredictor.from_config(config).fit(paths["train"], paths["valid"], test=paths["test"], out=out)
    return predictor, out


def sections(page: str) -> dict[str, str]:
    """``{h2 title: the HTML up to the next h2}``."""
    parts = re.split(r"<h2>(.*?)</h2>", page)
    return {html.unescape(title): body for title, body in zip(parts[1::2], parts[2::2])}


def table(body: str) -> list[dict[str, str]]:
    """The first table of ``body`` as one dict per row, keyed by the header cells (numbers without
    their thousands separators)."""
    rows = [[re.sub(r"(?<=\d),(?=\d{3})", "", cell.replace("<wbr>", ""))  # <wbr>: where a long name may break
             for cell in re.findall(r"<t[dh]>(.*?)</t[dh]>", row)]
            for row in re.findall(r"<tr>(.*?)</tr>", body)]
    return [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]


def embedded_png(body: str, alt: str) -> bytes:
    match = re.search(rf'<img alt="{alt}" src="data:image/png;base64,([A-Za-z0-9+/=]+)">', body)
    assert match, f"no embedded '{alt}' image"
    return base64.b64decode(match[1])


def test_the_report_has_the_core_sections_in_order(run):
    _, out = run
    assert list(sections((out / "report.html").read_text(encoding="utf-8"))) == [
        "Metrics", "Training", "Decision threshold", "Model", "Run facts"]  # two classes: their operating points


def test_the_metrics_table_shows_every_number_of_metrics_json(run):
    _, out = run
    stored = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    rows = {r["split"]: r for r in table(sections((out / "report.html").read_text(encoding="utf-8"))["Metrics"])}
    assert set(rows) == {"valid", "test"}
    for split, row in rows.items():
        assert {"accuracy", "macro_f1", "auroc", "log_loss", "rows"} <= set(row)
        numbers = {k for k, v in stored[split].items() if isinstance(v, int | float) and not isinstance(v, bool)}
        rates = stored[split]["positive_class"]  # two classes: the second read as a screening test's positive
        numbers |= {f"{k} ({rates['class']})" for k in ("sensitivity", "specificity", "ppv", "npv")}
        assert set(row) - {"split"} == numbers, f"{split}: every number of metrics.json, and only those"
        assert row["accuracy"] == f"{stored[split]['accuracy']:.4f}"
        values = {**stored[split], **{f"{k} ({rates['class']})": v for k, v in rates.items()}}
        for key, shown in row.items():
            if key != "split":
                want = values[key]
                assert (shown == "-") if want is None else float(shown) == pytest.approx(want, abs=5e-5), f"{split} {key}"
    assert int(rows["test"]["rows"]) == 15 and int(rows["valid"]["rows"]) == 15


def test_the_model_table_counts_the_networks_parameters(run):
    predictor, out = run
    rows = {r["part"]: r for r in table(sections((out / "report.html").read_text(encoding="utf-8"))["Model"])}
    total = sum(p.numel() for p in predictor.net.parameters())
    assert int(rows["total"]["parameters"]) == total == predictor.info["parameters"]
    assert int(rows["total"]["trainable"]) == total
    encoders = predictor.net.encoders
    for name in ("a", "b"):
        assert int(rows[f"encoder: {name}"]["parameters"]) == sum(p.numel() for p in encoders[name].parameters())
    for name, child in predictor.net.named_children():  # every other part is counted as the module it names
        if name != "encoders":
            assert int(rows[name]["parameters"]) == sum(p.numel() for p in child.parameters()) > 0, name
    assert set(rows) == {"total", *(f"encoder: {n}" for n in encoders),
                         *(n for n, _ in predictor.net.named_children() if n != "encoders")}  # no "other" remainder
    assert sum(int(r["parameters"]) for part, r in rows.items() if part != "total") == total


def test_the_run_facts_are_those_of_the_training(run):
    predictor, out = run
    facts = {r["fact"]: r["value"] for r in table(sections((out / "report.html").read_text(encoding="utf-8"))["Run facts"])}
    assert int(facts["epochs_run"]) == EPOCHS and int(facts["train_rows"]) == 60 and int(facts["valid_rows"]) == 15
    assert set(facts) == set(predictor.info), "every fact the run recorded, and only those"
    history = predictor.history
    best = int(history["val_loss"].idxmin())  # the epoch whose validation loss was lowest
    assert int(facts["best_epoch"]) == predictor.info["best_epoch"] == int(history["epoch"][best])
    assert float(facts["best_val_loss"]) == pytest.approx(history["val_loss"][best], abs=5e-5)


@pytest.mark.parametrize(("name", "alt"), [("learning_curves", "learning curves"), ("confusion_matrix", "confusion matrix")])
def test_the_plots_are_saved_as_valid_pngs_and_embedded(run, name, alt):
    _, out = run
    png = (out / "plots" / f"{name}.png").read_bytes()
    assert embedded_png(sections((out / "report.html").read_text(encoding="utf-8"))["Training"], alt) == png
    with Image.open(io.BytesIO(png)) as image:
        image.verify()
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG" and min(image.size) > 200
        pixels = np.asarray(image.convert("L"))
    assert len(np.unique(pixels)) > 10, "the plot is blank"


def test_the_confusion_matrix_falls_back_to_the_validation_set(run, tmp_path, monkeypatch):
    from polymodal.evaluation import report

    _, out = run
    plotted = []
    draw = report.confusion_plot
    monkeypatch.setattr(report, "confusion_plot", lambda matrix, classes: plotted.append(matrix) or draw(matrix, classes))
    loaded = MultimodalPredictor.load(out)
    assert loaded.metrics["test"]["confusion_matrix"] != loaded.metrics["valid"]["confusion_matrix"]
    body = sections(write_report(loaded, tmp_path / "with_test", loaded.net).read_text(encoding="utf-8"))
    assert "<figcaption>test set</figcaption>" in body["Training"]
    assert plotted == [loaded.metrics["test"]["confusion_matrix"]]  # the test set's matrix while there is one
    del loaded.metrics["test"]
    body = sections(write_report(loaded, tmp_path, loaded.net).read_text(encoding="utf-8"))
    assert [r["split"] for r in table(body["Metrics"])] == ["valid"]
    assert "<figcaption>valid set</figcaption>" in body["Training"]
    assert plotted[1:] == [loaded.metrics["valid"]["confusion_matrix"]]
    assert (tmp_path / "plots" / "confusion_matrix.png").is_file()


def test_failed_diagnostics_do_not_lose_the_trained_model(tmp_path, monkeypatch):
    from polymodal.evaluation import diagnostics

    def broken(*args, **kwargs):
        raise RuntimeError("the sweep broke")

    monkeypatch.setattr(diagnostics, "diagnose", broken)
    frame = two_tabular(60, "a")
    out = tmp_path / "run"
    with pytest.warns(UserWarning, match=r"diagnostics failed \(RuntimeError: the sweep broke\); the model is saved"):
        predictor = MultimodalPredictor.from_config(tabular_config(epochs=1)).fit(frame[:45], frame[45:], out=out)
    loaded = MultimodalPredictor.load(out)
    assert loaded.diagnostics == {"error": "RuntimeError: the sweep broke"}
    np.testing.assert_allclose(loaded.predict_proba(frame[45:]).to_numpy(), predictor.predict_proba(frame[45:]).to_numpy(),
                               atol=1e-6)
    body = sections((out / "report.html").read_text(encoding="utf-8"))
    assert "The diagnostics failed after training (RuntimeError: the sweep broke)" in body["Diagnostics"]


def test_each_output_gets_its_row_of_figures():
    from polymodal.evaluation.report import per_output_table

    metrics = {"valid": {"mae": 1.0, "mae_per_target": {"wear": 1.5, "load": 0.5},
                         "r2_per_target": {"wear": 0.9, "load": None}}}
    table = per_output_table(metrics)
    assert "(valid)" in table and "<th>output</th><th>mae</th><th>r2</th>" in table
    assert "<td>wear</td><td>1.5000</td><td>0.9000</td>" in table and "<td>load</td><td>0.5000</td><td>-</td>" in table
    assert per_output_table({"valid": {"mae": 1.0}}) == ""  # one target: the metrics table says it all
    tasks = per_output_table({"test": {"f1_per_label": {"leak": 0.5}, "aux/mae_per_target": {"wear": 2.0, "load": 1.0}}})
    assert "<td>leak</td><td>0.5000</td>" in tasks and "of task aux on its own (test)" in tasks
    assert "<td>wear</td><td>2.0000</td>" in tasks and "<td>load</td><td>1.0000</td>" in tasks


def test_the_subsets_and_robustness_sections_say_what_their_figures_are(tmp_path):
    """Several targets: the subsets' mean mae / rmse are said to mix units beside each target's own
    columns; the robustness section names its metric (a mean R² over targets is unit-free)."""
    from polymodal.evaluation.report_sections import diagnostic_sections
    from polymodal.metrics.tasks import MIXED_UNITS

    one = {"modalities": "a", "n_modalities": 1, "rows_with_any": 10, "mae": 9.0, "rmse": 11.0, "r2": 0.5}
    several = {**one, "rmse_per_target.load": 0.1, "rmse_per_target.rpm": 22.0}
    curves = [{"modality": "a", "corruption": "noise", "severity": s, "r2": 0.9 - 0.1 * s} for s in range(6)]
    summary = [{"modality": "a", "corruption": "noise", "clean": 0.9, "worst": 0.4, "relative_robustness": 0.7}]
    diagnostics = {"rows": 10, "split": "valid", "metric": "r2", "subsets": [several],
                   "robustness": {"metric": "r2", "curves": curves, "summary": summary}}
    sections = diagnostic_sections(diagnostics, tmp_path)
    assert f"Here {html.escape(MIXED_UNITS)}." in sections["Modality subsets"]
    assert "rmse_<wbr>per_<wbr>target.rpm" in sections["Modality subsets"]
    assert "The <b>r2</b> (R²; with several targets the mean of theirs, which is unit-free)" in sections["Robustness"]
    alone = diagnostic_sections({**diagnostics, "subsets": [one]}, tmp_path)["Modality subsets"]
    assert "mix the targets' units" not in html.unescape(alone)  # one target: nothing mixed
    accuracy = [{**c, "accuracy": c.pop("r2")} for c in [dict(c) for c in curves]]
    named = diagnostic_sections({"rows": 10, "split": "valid", "robustness": {"metric": "accuracy", "curves": accuracy,
                                                                              "summary": summary}}, tmp_path)
    assert "The <b>accuracy</b> with one modality corrupted" in named["Robustness"]


def test_the_report_header_names_the_further_tasks():
    """A multi-task run's report said 'Task classification, target digit' and never named the
    tasks whose metrics follow."""
    from helpers_models import classification_config

    from polymodal.config import load_config
    from polymodal.evaluation.report import run_header

    spec = classification_config()
    spec["tasks"] = {"size": {"task": "regression", "target": "size"}}
    header = run_header(load_config(spec))
    assert "target label, further task <b>size</b> (regression, target size), modalities" in header
    assert "further task" not in run_header(load_config(classification_config()))
