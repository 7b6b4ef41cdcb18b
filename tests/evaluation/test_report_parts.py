"""Building blocks of ``report.html``: the model summary, the confusion matrix and the anomaly score histogram."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

from polymodal.evaluation.html import table_html
from polymodal.evaluation.plots import (
    MAX_BARS,
    MAX_CHANNELS,
    bars_attribution,
    confusion_plot,
    lines_attribution,
    loss_lines,
    metric_lines,
    score_histogram,
)
from polymodal.evaluation.report import parameter_rows


class Backbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoders = nn.ModuleDict({"a": nn.Linear(3, 4), "b": nn.Linear(5, 4)})
        self.fusion = nn.Linear(8, 2)
        self.dropout = nn.Dropout(0.1)  # no parameters: no row


class Outer(nn.Module):  # an anomaly model: the encoders two levels down, a parameter of its own
    def __init__(self):
        super().__init__()
        self.backbone = Backbone()
        self.decoders = nn.ModuleDict({"a": nn.Linear(2, 3)})
        self.logit_scale = nn.Parameter(torch.zeros(()))


def test_the_model_summary_opens_the_network_holding_the_encoders_and_adds_up():
    net = Outer()
    net.backbone.encoders["b"].requires_grad_(False)
    rows = {r["part"]: r for r in parameter_rows(net)}
    assert list(rows) == ["encoder: a", "encoder: b", "fusion", "decoders", "other", "total"]
    assert rows["encoder: a"]["parameters"] == 16 and rows["encoder: b"]["trainable"] == 0
    assert rows["other"]["parameters"] == 1  # logit_scale
    for key in ("parameters", "trainable"):
        assert sum(r[key] for part, r in rows.items() if part != "total") == rows["total"][key]


@pytest.mark.parametrize("scores", [
    np.array([1.0, 2.0, np.nan, 3.0, np.inf]),  # non-finite rows left out
    np.full(5, 0.7),  # constant
    np.array([-3.0, -2.0, -1.0, -0.5, -0.1]),  # all negative
    np.array([0.5, 2.0, 8.0, 5e3, 1e4]),  # spans decades: log scale
])
def test_the_score_histogram_draws_any_finite_scores(scores):
    png = score_histogram(scores, np.array([False, False, False, True, True]), 1.0, "validation")
    assert png is not None and png.startswith(b"\x89PNG")


def test_the_score_histogram_of_no_finite_score_is_none():
    assert score_histogram(np.array([np.nan, np.inf]), np.array([False, True]), 1.0, "validation") is None


def test_the_confusion_matrix_of_many_classes_stays_a_readable_size():
    """It grew 60 px per class (7,500 px and 12 s for 120 classes; 1,000 classes: a 60,000 px square)."""
    n = 120
    matrix = (np.eye(n, dtype=int) * 5 + np.random.default_rng(0).integers(0, 2, (n, n))).tolist()
    width, height = Image.open(io.BytesIO(confusion_plot(matrix, [f"class {k}" for k in range(n)]))).size
    assert max(width, height) <= 2000
    small = Image.open(io.BytesIO(confusion_plot([[3, 1], [0, 4]], ["no", "yes"]))).size
    assert max(small) < max(width, height)


def test_confusion_matrix_class_names_are_drawn_as_text_not_mathtext():
    """'$\\frac$' made matplotlib's mathtext parser raise; '$50-$100' lost its dollar signs."""
    png = confusion_plot([[2, 0, 0], [0, 1, 0], [0, 1, 3]], ["<$50", "$50-$100", "$\\frac$"])
    assert Image.open(io.BytesIO(png)).size[0] > 0


def test_tabular_attribution_bars_of_many_features_show_the_largest(monkeypatch):
    """300 features made a 13,000 px tall figure; now the MAX_BARS largest |attributions| are drawn."""
    import matplotlib.axes

    attribution = np.zeros(300)
    attribution[[7, 150, 299]] = [-2.0, 1.0, 3.0]
    labels = [f"f{k}" for k in range(300)]
    drawn = []
    barh = matplotlib.axes.Axes.barh
    monkeypatch.setattr(matplotlib.axes.Axes, "barh",
                        lambda self, y, width, **kw: drawn.append((list(y), list(width))) or barh(self, y, width, **kw))
    png = bars_attribution(labels, attribution, "tab")
    assert Image.open(io.BytesIO(png)).size[1] < 2500
    shown, widths = drawn[0]
    assert len(shown) == MAX_BARS and shown.index("f7") < shown.index("f150") < shown.index("f299")
    assert min(widths) == -2.0 and max(widths) == 3.0


def test_signal_attribution_lines_of_many_channels_show_the_most_attributed(monkeypatch):
    """64 channels made an 18,000 px tall figure of 128 panels; now MAX_CHANNELS of them, by total |attribution|."""
    import polymodal.evaluation.plots as plots

    rng = np.random.default_rng(0)
    attribution = rng.normal(0.0, 0.01, (64, 40))
    attribution[50] += 1.0
    figures = []
    draw = plots.figure_png
    monkeypatch.setattr(plots, "figure_png", lambda fig: figures.append(fig) or draw(fig))
    png = lines_attribution(rng.normal(size=(64, 40)), attribution, "sig")
    assert Image.open(io.BytesIO(png)).size[1] < 2.6 * 110 * (MAX_CHANNELS + 1)
    names = [ax.get_ylabel() for ax in figures[0].axes if ax.get_ylabel().startswith("channel")]
    assert len(names) == MAX_CHANNELS and "channel 50" in names


@pytest.mark.parametrize(("modalities", "how"), [(2, "Exact"), (7, "Sampled (permutation estimates of)")])
def test_the_importance_section_says_whether_its_shapley_values_are_exact(tmp_path, modalities, how):
    from polymodal.evaluation.report_sections import diagnostic_sections

    importance = [{"modality": f"m{i}", "mean_abs_shapley": 0.1, "share": 1 / modalities, "mean_shapley": 0.1}
                  for i in range(modalities)]
    sections = diagnostic_sections({"rows": 10, "split": "valid", "metric": "accuracy", "importance": importance},
                                   tmp_path)
    assert f"{how} Shapley values over modalities" in sections["Modality importance"]


def test_the_loss_panel_compares_the_task_loss_with_the_validation_loss():
    """``train_loss`` adds auxiliary terms (unimodal heads...) that ``val_loss`` does not hold:
    drawn as the training line it would show training worse than validation."""
    history = pd.DataFrame({"epoch": [1, 2], "train_loss": [3.1, 2.0], "train_task_loss": [2.0, 1.3],
                            "val_loss": [1.6, 1.1]})
    lines = loss_lines(history)
    assert lines[:2] == [("train_task_loss", "train loss", "-"), ("val_loss", "validation loss", "-")]
    assert lines[2][0] == "train_loss" and lines[2][2] == "--" and "auxiliary" in lines[2][1]
    same = history.assign(train_loss=history["train_task_loss"])
    assert [c for c, _, _ in loss_lines(same)] == ["train_task_loss", "val_loss"], "no dashed twin of the same line"
    older = history.drop(columns="train_task_loss")  # a run from before train_task_loss was logged
    assert [c for c, _, _ in loss_lines(older)] == ["train_loss", "val_loss"]
    mixed = history.assign(val_full_loss=[1.2, 0.8])  # loss.subset_weight: val_loss mixes single-modality rows in
    lines = loss_lines(mixed)
    assert lines[:2] == [("train_task_loss", "train loss", "-"), ("val_full_loss", "validation loss", "-")]
    assert lines[2][0] == "val_loss" and lines[2][2] == "--" and "selects the epoch" in lines[2][1]


def test_the_loss_panel_of_a_multi_task_run_compares_the_main_tasks_losses():
    """val_loss is the main task's own loss; train_task_loss adds the further tasks' weighted
    losses: the training line beside val_loss is the main task's own (train_main/loss)."""
    history = pd.DataFrame({"epoch": [1, 2], "train_loss": [4.6, 4.2], "train_task_loss": [3.0, 2.7],
                            "train_main/loss": [2.2, 2.0], "val_loss": [2.1, 2.0], "val_total_loss": [2.8, 2.6]})
    lines = loss_lines(history)
    assert lines == [("train_main/loss", "train loss (main task)", "-"), ("val_loss", "validation loss (main task)", "-"),
                     ("train_loss", "train loss with further tasks and auxiliary terms (optimised)", "--")]
    alone = history.assign(train_loss=history["train_task_loss"])  # no unimodal or transfer term
    assert loss_lines(alone)[2] == ("train_loss", "train loss with further tasks (optimised)", "--")


def test_the_metrics_panel_leaves_the_losses_to_the_loss_panel():
    history = pd.DataFrame({"epoch": [1, 2], "val_loss": [1.0, 0.8], "val_full_loss": [0.9, 0.7],
                            "val_subset_loss": [1.2, 1.0], "val_log_loss": [0.9, 0.7], "val_tags/loss": [0.5, 0.4],
                            "val_accuracy": [0.5, 0.6], "val_ece": [0.1, 0.1], "val_auroc": [None, None],
                            "val_macro_f1": [0.4, 0.5]})
    assert metric_lines(history) == ["val_accuracy", "val_macro_f1"]  # no loss, no ECE, no column without values
    several = pd.DataFrame({"epoch": [1, 2], "val_rmse": [11.0, 10.0], "val_r2": [0.2, 0.3],
                            "val_rmse_per_target.load": [0.1, 0.08], "val_rmse_per_target.rpm": [22.0, 20.0],
                            "val_aux/r2_per_target.x": [0.1, 0.2]})
    assert metric_lines(several) == ["val_rmse", "val_r2"]  # each target's own: in history.csv, not on one axis


def test_table_numbers_are_readable():
    page = table_html([{"fact": "parameters", "value": 762094}, {"fact": "peak_rss_mb", "value": 1240.6094},
                       {"fact": "accuracy", "value": np.float64(0.81666)}, {"fact": "ece", "value": float("nan")},
                       {"fact": "flag", "value": True}])
    for shown in ("<td>762,094</td>", "<td>1,240.6</td>", "<td>0.8167</td>", "<td>-</td>", "<td>True</td>"):
        assert shown in page
    assert page.startswith("<div class='scroll'>"), "a wide table scrolls by itself, not the page"


def test_long_column_names_may_break_after_their_underscores():
    page = table_html([{"modality": "audio", "accuracy_drop_low": 0.1}])
    assert "<th>accuracy_<wbr>drop_<wbr>low</th>" in page and "<td>audio</td>" in page  # cells stay as they are


def test_a_loss_falling_by_orders_of_magnitude_is_drawn_on_a_log_scale(monkeypatch):
    from polymodal.evaluation import plots

    scales = []
    monkeypatch.setattr(plots, "figure_png", lambda fig: scales.append(fig.axes[0].get_yscale()) or b"png")
    falling = pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [4.4, 0.05, 0.02], "val_loss": [2.0, 0.06, 0.03]})
    plots.learning_curves(falling)
    plots.learning_curves(falling.assign(train_loss=[1.0, 0.8, 0.6], val_loss=[1.1, 0.9, 0.7]))
    assert scales == ["log", "linear"]


@pytest.mark.parametrize("layout", ["none", "tight_layout", "constrained", "rc autolayout"])
def test_a_figure_is_trimmed_as_matplotlibs_tight_box_trims_it(layout):
    """figure_png measures the trimmed box itself where no layout engine moves things while
    drawing; the picture is savefig(bbox_inches="tight")'s in every case, a legend outside the
    axes and a figure title included."""
    import matplotlib

    from polymodal.evaluation.plots import _pyplot, figure_png

    def figure():
        fig, axes = _pyplot().subplots(1, 2, figsize=(6, 2.5), layout="constrained" if layout == "constrained" else None)
        for ax in axes:
            ax.plot([0, 1, 2], [2, 0, 1], label="a long legend entry")
            ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0))
            ax.set(title="panel", xlabel="step", ylabel="a value with a long name")
        fig.suptitle("a title above")
        if layout == "tight_layout":
            fig.tight_layout()
        return fig

    with matplotlib.rc_context({"figure.autolayout": layout == "rc autolayout"}):
        reference = io.BytesIO()
        fig = figure()
        fig.savefig(reference, format="png", dpi=110, bbox_inches="tight")
        _pyplot().close(fig)
        expected = np.asarray(Image.open(reference))
        got = np.asarray(Image.open(io.BytesIO(figure_png(figure()))))
    assert got.shape == expected.shape
    if layout == "none":
        assert expected.shape[1] > 6 * 110  # the outside legend widened it
    np.testing.assert_array_equal(got, expected)


def test_the_report_figures_drawn_with_constrained_layout_are_trimmed_as_savefig_trims_them():
    from polymodal.evaluation import plots

    history = pd.DataFrame({"epoch": [1, 2, 3], "train_task_loss": [1.0, 0.6, 0.4], "val_loss": [1.1, 0.7, 0.5],
                            "val_accuracy": [0.5, 0.7, 0.8]})
    got = np.asarray(Image.open(io.BytesIO(plots.learning_curves(history))))
    real_png, kept = plots.figure_png, []
    plots.figure_png = lambda fig, dpi=110: kept.append(fig) or real_png(fig, dpi)
    try:
        plots.learning_curves(history)
    finally:
        plots.figure_png = real_png
    assert kept  # (closed by figure_png: draw it again with savefig's own tight box)
    reference = io.BytesIO()
    kept[0].savefig(reference, format="png", dpi=110, bbox_inches="tight")
    np.testing.assert_array_equal(got, np.asarray(Image.open(reference)))
