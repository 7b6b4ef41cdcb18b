"""Matplotlib figures for the report and the explanation page, returned as PNG bytes.

Every figure uses 11-point text or larger and a width that fits a report column, so it is
readable without zooming.
"""

from __future__ import annotations

import html
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from polymodal.config.task_metrics import split_metric
from polymodal.config.tasks import MAIN_TASK_LOSS

FONT = {"font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11, "legend.fontsize": 10}
PERCENT_METRICS = {"accuracy", "macro_f1", "subset_accuracy", "micro_f1"}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(FONT)
    return plt


def figure_png(fig: Any, dpi: int = 110) -> bytes:
    """The figure as PNG bytes, trimmed to what it draws (``bbox_inches="tight"``'s picture); closes
    it. Without a layout engine the trimmed box is measured with the canvas's renderer, sparing the
    full extra drawing ``savefig`` makes to find it (a quarter of such a figure's time); a figure
    with one (constrained layout, or ``figure.autolayout`` in the user's matplotlibrc) only takes
    its final positions while drawing, so ``savefig`` measures it."""
    import matplotlib
    from matplotlib.layout_engine import PlaceHolderLayoutEngine  # what fig.tight_layout() leaves: lays out nothing

    buffer = io.BytesIO()
    if isinstance(fig.get_layout_engine(), type(None) | PlaceHolderLayoutEngine):
        fig.set_dpi(dpi)  # text is measured at the dpi it is drawn at
        box = fig.get_tightbbox(fig.canvas.get_renderer()).padded(matplotlib.rcParams["savefig.pad_inches"])
        fig.savefig(buffer, format="png", dpi=dpi, bbox_inches=box)  # box in inches
    else:
        fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buffer.getvalue()


def _scale(metric: str | None) -> tuple[float, str]:
    """Plot metrics in percent when they are proportions."""
    return (100.0, " (%)") if metric in PERCENT_METRICS else (1.0, "")


def importance_plot(importance: pd.DataFrame, metric: str | None) -> bytes:
    """Bars: each modality's share of the mean |Shapley value| and, when present, the metric
    drop when that modality is removed."""
    plt = _pyplot()
    drop = f"{metric}_drop" if metric is not None else None
    panels = 2 if drop is not None and drop in importance else 1
    height = 1.2 + 0.5 * len(importance)
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, height), squeeze=False)
    names = importance["modality"].tolist()
    ax = axes[0, 0]
    ax.barh(names, importance["share"] * 100.0, color="#4477aa")
    ax.set(xlabel="share of mean |Shapley value| (%)", title="Modality importance")
    ax.invert_yaxis()
    ax.grid(axis="x", alpha=0.3)
    if panels == 2:
        scale, _ = _scale(metric)
        ax = axes[0, 1]
        low, high = f"{drop}_low", f"{drop}_high"
        errors = None
        if low in importance and high in importance:  # the 95% interval around each drop
            errors = np.abs(np.vstack([importance[drop] - importance[low], importance[high] - importance[drop]])) * scale
        values = importance[drop].to_numpy(np.float64) * scale
        ax.barh(names, np.nan_to_num(values), color="#cc6677", xerr=errors, capsize=4 if errors is not None else 0)
        ax.axvline(0.0, color="black", lw=0.8)
        if np.isnan(values).all() or not np.nan_to_num(values).any():  # say why no bar shows, rather than a blank panel
            ax.text(0.5, 0.5, f"{metric} undefined on these rows" if np.isnan(values).all()
                    else f"no {metric} drop: the others alone score the same",
                    transform=ax.transAxes, ha="center", va="center", color="#555555")
        unit = " (percentage points)" if scale == 100.0 else ""  # a difference of percentages
        ax.set(xlabel=f"{metric} drop when removed{unit}",
               title="Removing one modality" + (" (95% interval)" if errors is not None else ""))
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return figure_png(fig)


def robustness_plot(curves: pd.DataFrame, metric: str, chance: float | None = None) -> bytes:
    """One panel per modality: the metric against corruption severity, a line per corruption
    (dashed: the reference run, when there is one; dotted grey: ``chance``, what the metric
    reaches without any input, so a curve that falls onto it reads as no skill left)."""
    plt = _pyplot()
    modalities = list(dict.fromkeys(curves["modality"]))
    cols = min(3, len(modalities))
    rows = -(-len(modalities) // cols)
    # the legend goes under each panel, two entries a line, so that it never covers the curves
    entries = curves.groupby("modality")["corruption"].nunique().max() * (2 if "reference" in curves else 1)
    legend_height = 0.3 * -(-int(entries) // 2)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, (3.9 + legend_height) * rows), squeeze=False,
                             layout="constrained", sharey=True)  # one scale: the steeper fall looks steeper
    scale, unit = _scale(metric)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, modality in enumerate(modalities):
        ax = axes[k // cols, k % cols]
        part = curves[curves["modality"] == modality]
        for c, (name, line) in enumerate(part.groupby("corruption", sort=False)):
            line = line.sort_values("severity")
            color = colors[c % len(colors)]
            ax.plot(line["severity"], line[metric] * scale, marker="o", color=color, label=name)
            if "reference" in line and line["reference"].notna().all():
                ax.plot(line["severity"], line["reference"] * scale, ls="--", color=color, alpha=0.7,
                        label=f"{name} (reference)")
        if chance is not None:
            ax.axhline(chance * scale, color="grey", ls=":", lw=1.5,
                       label="always the most frequent class" if metric == "accuracy" else "always the mean")
        ax.set(xlabel="severity", ylabel=f"{metric}{unit}", title=f"{modality} corrupted", xticks=range(6))
        ax.grid(alpha=0.3)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize="small", frameon=False)
    for k in range(len(modalities), rows * cols):
        axes[k // cols, k % cols].axis("off")
    return figure_png(fig)


def reliability_plot(bins: Sequence[Mapping[str, Any]], ece: float) -> bytes:
    """Reliability diagram: accuracy against confidence per bin (bar width = bin), with the
    diagonal of perfect calibration and each bin's share of samples."""
    plt = _pyplot()
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(5.5, 6.0), height_ratios=[3, 1], sharex=True)
    lows = np.asarray([b["low"] for b in bins])
    widths = np.asarray([b["high"] - b["low"] for b in bins])
    acc = np.asarray([np.nan if b["accuracy"] is None else b["accuracy"] for b in bins], np.float64)
    conf = np.asarray([np.nan if b["confidence"] is None else b["confidence"] for b in bins], np.float64)
    counts = np.asarray([b["count"] for b in bins], np.float64)
    filled = counts > 0
    ax.bar(lows[filled], acc[filled], width=widths[filled], align="edge", color="#4477aa", edgecolor="white",
           label="accuracy")
    centres = lows[filled] + widths[filled] / 2
    ax.scatter(centres, conf[filled], color="#cc6677", marker="D", s=28, zorder=3, label="mean confidence")
    ax.plot([0, 1], [0, 1], color="black", lw=1, ls="--", label="perfect calibration")
    ax.set(ylabel="accuracy", title=f"Reliability (ECE {ece * 100:.2f}%)", xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)  # beside the bars, never over them
    ax.grid(alpha=0.3)
    hist.bar(lows, counts / max(counts.sum(), 1.0) * 100.0, width=widths, align="edge", color="#999999")
    hist.set(xlabel="confidence (top-class probability)", ylabel="samples (%)")
    hist.grid(alpha=0.3)
    fig.tight_layout()
    return figure_png(fig)


def _symmetric(attribution: np.ndarray) -> float:
    top = float(np.abs(attribution).max()) if attribution.size else 0.0
    return top if top > 0 else 1.0


def image_attribution(image: np.ndarray, attribution: np.ndarray, title: str) -> bytes:
    """The image, and the pixel attribution over it (red: towards the output, blue: against)."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(6.4, 3.4))
    shown = image[..., 0] if image.shape[-1] == 1 else image
    left.imshow(shown, cmap="gray" if shown.ndim == 2 else None)
    left.set_title("input")
    right.imshow(shown, cmap="gray" if shown.ndim == 2 else None, alpha=0.5)
    top = _symmetric(attribution)
    mapped = right.imshow(attribution, cmap="bwr", vmin=-top, vmax=top, alpha=0.75)
    right.set_title("Integrated Gradients")
    for ax in (left, right):
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(mapped, ax=right, fraction=0.046)
    fig.suptitle(title)
    fig.tight_layout()
    return figure_png(fig)


MAX_FRAMES_SHOWN = 16  # video frames drawn at most by :func:`frames_attribution` (evenly spaced)


def frames_attribution(frames: np.ndarray, attribution: np.ndarray, title: str) -> bytes:
    """A clip's (T, H, W, C) sampled frames over its (T, H, W) pixel attribution: the frames in the
    top row, each frame's attribution over it below (one colour scale for the clip, each titled with
    its total, so the frames that matter stand out); at most ``MAX_FRAMES_SHOWN``, evenly spaced."""
    plt = _pyplot()
    shown = np.unique(np.linspace(0, len(frames) - 1, min(len(frames), MAX_FRAMES_SHOWN)).round().astype(int))
    fig, axes = plt.subplots(2, len(shown), figsize=(max(4.0, 1.5 * len(shown) + 1.2), 3.8), squeeze=False,
                             layout="constrained")
    top = _symmetric(attribution)
    mapped = None
    for column, t in enumerate(shown.tolist()):
        image = frames[t][..., 0] if frames.shape[-1] == 1 else frames[t]
        cmap = "gray" if image.ndim == 2 else None
        upper, lower = axes[0, column], axes[1, column]
        upper.imshow(image, cmap=cmap)
        upper.set_title(f"frame {t}")
        lower.imshow(image, cmap=cmap, alpha=0.5)
        mapped = lower.imshow(attribution[t], cmap="bwr", vmin=-top, vmax=top, alpha=0.75)
        lower.set_title(f"{float(attribution[t].sum()):+.2g}")
        for ax in (upper, lower):
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("input")
    axes[1, 0].set_ylabel("IG")
    fig.colorbar(mapped, ax=axes[1, :].tolist(), fraction=0.046)
    fig.suptitle(title + ("" if len(shown) == len(frames) else f" ({len(shown)} of {len(frames)} frames)"))
    return figure_png(fig)


def map_attribution(features: np.ndarray, attribution: np.ndarray, title: str, ylabel: str,
                    xlabel: str = "frame") -> bytes:
    """A (bins, frames) input map and its attribution map, frames on the x axis."""
    plt = _pyplot()
    fig, (top_ax, bottom_ax) = plt.subplots(2, 1, figsize=(5.6, 5.0), sharex=True)
    image = top_ax.imshow(features, aspect="auto", origin="lower", cmap="magma")
    top_ax.set(ylabel=ylabel, title="model input")
    fig.colorbar(image, ax=top_ax, fraction=0.03)
    top = _symmetric(attribution)
    image = bottom_ax.imshow(attribution, aspect="auto", origin="lower", cmap="bwr", vmin=-top, vmax=top)
    bottom_ax.set(xlabel=xlabel, ylabel=ylabel, title="Integrated Gradients")
    fig.colorbar(image, ax=bottom_ax, fraction=0.03)
    fig.suptitle(title)
    fig.tight_layout()
    return figure_png(fig)


MAX_CHANNELS = 16  # signal channels drawn at most by :func:`lines_attribution` (those of largest total |attribution|)


def lines_attribution(signal: np.ndarray, attribution: np.ndarray, title: str, xlabel: str = "step") -> bytes:
    """Each channel of a (C, L) signal, with its per-step attribution as bars underneath; beyond
    :data:`MAX_CHANNELS` channels, those with the largest total |attribution|, in channel order."""
    plt = _pyplot()
    shown = np.arange(signal.shape[0])
    if len(shown) > MAX_CHANNELS:
        shown = np.sort(np.argsort(-np.abs(attribution).sum(axis=1), kind="stable")[:MAX_CHANNELS])
        title = f"{title}: the {MAX_CHANNELS} most attributed of {signal.shape[0]} channels"
    channels = len(shown)
    fig, axes = plt.subplots(2 * channels, 1, figsize=(7.5, 1.0 + 2.6 * channels), squeeze=False, sharex=True,
                             height_ratios=[3, 2] * channels)
    steps = np.arange(signal.shape[1])
    for k, c in enumerate(shown):
        line, bars = axes[2 * k, 0], axes[2 * k + 1, 0]
        line.plot(steps, signal[c], color="#333333", lw=1.0)
        line.set(ylabel=f"channel {c}")
        line.grid(alpha=0.3)
        bars.bar(steps, attribution[c], width=1.0, color=np.where(attribution[c] > 0, "#cc6677", "#4477aa"))
        bars.axhline(0.0, color="black", lw=0.6)
        bars.set(ylabel="attribution")
        bars.grid(alpha=0.3)
    axes[-1, 0].set_xlabel(xlabel)
    fig.suptitle(title)
    fig.tight_layout()
    return figure_png(fig)


MAX_BARS = 40  # features drawn at most by :func:`bars_attribution` (those of largest |attribution|)


def bars_attribution(labels: Sequence[str], attribution: np.ndarray, title: str) -> bytes:
    """Per-feature attribution bars (red: towards the output, blue: against); beyond
    :data:`MAX_BARS` features, only the largest in magnitude, in feature order."""
    plt = _pyplot()
    if len(labels) > MAX_BARS:
        keep = np.sort(np.argsort(-np.abs(attribution), kind="stable")[:MAX_BARS])
        title = f"{title}: the {MAX_BARS} largest of {len(labels)} features"
        labels, attribution = [labels[k] for k in keep], np.asarray(attribution)[keep]
    fig, ax = plt.subplots(figsize=(6.0, 1.2 + 0.4 * len(labels)))
    ax.barh(list(labels), attribution, color=["#cc6677" if v > 0 else "#4477aa" for v in attribution])
    ax.axvline(0.0, color="black", lw=0.8)
    ax.invert_yaxis()
    ax.set(xlabel="attribution", title=title)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return figure_png(fig)


def tokens_html(tokens: Sequence[str], attribution: np.ndarray) -> str:
    """Tokens as spans shaded by attribution (red: towards the output, blue: against)."""
    top = _symmetric(np.asarray(attribution, np.float64))
    spans = []
    for token, value in zip(tokens, attribution):
        alpha = min(1.0, abs(float(value)) / top)
        color = f"rgba(204,102,119,{alpha:.2f})" if value > 0 else f"rgba(68,119,170,{alpha:.2f})"
        spans.append(f'<span title="{float(value):+.4f}" style="background:{color};padding:2px 3px;'
                     f'margin:1px;border-radius:3px;display:inline-block">{html.escape(str(token))}</span>')
    return f'<p style="font-size:1.05rem;line-height:2">{"".join(spans)}</p>'


def score_histogram(scores: np.ndarray, anomalous: np.ndarray, threshold: float, split: str,
                    normal_label: str = "normal") -> bytes | None:
    """Anomaly scores of normal and anomalous rows (log-scaled when they span decades), with the
    flag threshold; None when no score is finite. ``normal_label`` names the rows not marked
    anomalous (``unlabelled`` when there are no labels)."""
    finite = np.isfinite(scores)
    scores, anomalous = scores[finite], anomalous[finite]
    if not len(scores):
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4))
    low, high = scores.min(), scores.max()
    wide = low > 0 and high > 1000 * low
    bins = np.geomspace(low, high, 41) if wide else np.histogram_bin_edges(scores, 40)
    ax.hist(scores[~anomalous], bins=bins, alpha=0.6, color="tab:blue", label=f"{normal_label} ({int((~anomalous).sum())})")
    if anomalous.any():
        ax.hist(scores[anomalous], bins=bins, alpha=0.6, color="tab:red", label=f"anomalous ({int(anomalous.sum())})")
    ax.axvline(threshold, color="black", linestyle="--", label="flag threshold")
    if wide:
        ax.set_xscale("log")
    left_out = f" ({int((~finite).sum())} non-finite left out)" if not finite.all() else ""
    ax.set(xlabel="anomaly score", ylabel="rows", title=f"Anomaly scores on the {split} rows{left_out}")
    ax.legend()
    ax.grid(alpha=0.3)
    return figure_png(fig)


def operating_points(positive_proba: np.ndarray, is_positive: np.ndarray, threshold: float | None,
                     positive: Any, metric: str = "balanced_accuracy") -> bytes:
    """A two-class classifier's validation sensitivity, specificity and ``metric`` at every
    decision threshold (of the probability of class ``positive``), with the model's ``threshold``
    (None: the more probable class, drawn at 0.5) marked: what moving it would trade."""
    from polymodal.metrics.threshold import cut_metrics, threshold_cuts

    cuts = threshold_cuts(positive_proba, is_positive)
    scored = cut_metrics(cuts)
    order = np.argsort(cuts["upper"])  # a cut's calls hold for every threshold in (lower, upper]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4))
    for name, colour in (("sensitivity", "tab:red"), ("specificity", "tab:blue"), (metric, "black")):
        ax.step(cuts["upper"][order], scored[name][order], where="pre", color=colour, label=name.replace("_", " "))
    at = 0.5 if threshold is None else threshold
    ax.axvline(at, color="grey", linestyle="--", label=f"threshold {at:.3g}" + (" (default)" if threshold is None else ""))
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel=f"threshold on P({str(positive).replace('$', chr(92) + '$')})",
           ylabel="validation rate", title="Decision threshold: what each one trades")
    ax.legend(loc="lower center", ncol=4, fontsize=8)
    ax.grid(alpha=0.3)
    return figure_png(fig)


def learning_curves(history: pd.DataFrame) -> bytes | None:
    """Loss and validation metrics per epoch (history's epochs, counted from 1), side by side at
    the report's full width. The training line is the task's own loss (``train_task_loss``; with
    further ``tasks``, the main task's, ``train_main/loss``), the quantity ``val_loss`` measures;
    when further tasks or terms (unimodal heads, alignment, distillation...) make the optimised
    total differ, it is drawn dashed beside it."""
    if history.empty or "epoch" not in history:
        return None
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    if "phase" in history:  # phases trained one after another (anomaly scorers), epochs counted across them
        history = history.assign(epoch=np.arange(1, len(history) + 1))
    metric_cols = metric_lines(history)
    fig, axes = plt.subplots(1, 2 if metric_cols else 1, figsize=(11 if metric_cols else 6, 4.2), squeeze=False,
                             layout="constrained")
    ax = axes[0, 0]
    losses = []
    for col, label, style in loss_lines(history):
        ax.plot(history["epoch"], history[col], marker="o", linestyle=style, label=label)
        losses.append(history[col].to_numpy(np.float64))
    values = np.concatenate(losses) if losses else np.array([])
    values = values[np.isfinite(values) & (values > 0)]
    if values.size and values.max() / values.min() > 20:  # a first epoch far above the rest: the rest stay readable
        ax.set_yscale("log")
    ax.set(xlabel="epoch", ylabel="loss" + (" (log scale)" if ax.get_yscale() == "log" else ""), title="Loss")
    ax.legend(loc="upper right")  # losses fall: the corner their first epochs leave free
    if metric_cols:
        ax = axes[0, 1]
        for col in metric_cols:
            ax.plot(history["epoch"], history[col], marker="o", label=col[4:].replace("_", " "))
        ax.set(xlabel="epoch", ylabel="value", title="Validation metrics")
        ax.legend()
    for ax in axes[0]:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    return figure_png(fig)


def metric_lines(history: pd.DataFrame) -> list[str]:
    """The validation metrics panel's columns: every ``val_`` figure but the losses (the loss panel
    draws those, ``log_loss`` included), the ECE and each target's own (``val_rmse_per_target.rpm``,
    one line per target and metric, in the targets' units: history.csv holds them), where an epoch
    has a value."""
    return [c for c in history.columns if c.startswith("val_") and not c.endswith("loss") and c != "val_ece"
            and split_metric(c)[1] is None and history[c].notna().any()]


def loss_lines(history: pd.DataFrame) -> list[tuple[str, str, str]]:
    """The loss panel's lines, (column, label, line style): the task's own training loss (with
    further ``tasks``, the main task's: ``train_main/loss``) beside the same loss on validation
    (whole rows: ``val_full_loss`` where ``loss.subset_weight`` mixes single-modality losses into
    ``val_loss``), so the two solid lines compare like with like; the optimised total and the
    validation loss epochs are selected by, dashed, when they differ."""
    task = next((c for c in (MAIN_TASK_LOSS, "train_task_loss") if c in history), "train_loss")
    valid = "val_full_loss" if "val_full_loss" in history else "val_loss"
    main = " (main task)" if task == MAIN_TASK_LOSS else ""
    lines = [(task, f"train loss{main}", "-"), (valid, f"validation loss{main}", "-")]
    if valid != "val_loss" and "val_loss" in history:
        lines.append(("val_loss", "validation loss with single-modality rows (selects the epoch)", "--"))
    if task != "train_loss" and "train_loss" in history and not np.allclose(history["train_loss"], history[task],
                                                                            equal_nan=True):
        auxiliary = "train_task_loss" not in history or not np.allclose(history["train_loss"],
                                                                         history["train_task_loss"], equal_nan=True)
        added = " and ".join(["further tasks"] * bool(main) + ["auxiliary terms"] * auxiliary)
        lines.append(("train_loss", f"train loss with {added} (optimised)", "--"))
    return [line for line in lines if line[0] in history]


CONFUSION_MAX_INCHES = 16.0  # the figure grows with the classes up to this side
CONFUSION_MAX_COUNTS = 30  # classes up to which every cell shows its count
CONFUSION_MAX_LABELS = 60  # tick labels shown at most (every k-th class beyond)


def confusion_plot(matrix: Sequence[Sequence[int]], classes: Sequence[Any]) -> bytes:
    """The confusion matrix as a heat-map; with many classes the figure stops growing, the cell
    counts are left out and only every k-th class is labelled, so that it stays readable and quick."""
    plt = _pyplot()
    values = np.asarray(matrix)
    n = len(classes)
    size = min(max(4.5, 0.55 * n + 2), CONFUSION_MAX_INCHES)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(values, cmap="Blues")
    ticks = range(0, n, -(-n // CONFUSION_MAX_LABELS) if n else 1)
    labels = [str(classes[k]).replace("$", r"\$") for k in ticks]  # a class name is text, never mathtext
    # slanted when they would run together: about 0.1 inch a character against the room each tick has
    slanted = n > 8 or max((len(label) for label in labels), default=0) * 0.1 > size / max(len(labels), 1)
    ax.set_xticks(ticks, labels, rotation=45 if slanted else 0, ha="right" if slanted else "center")
    ax.set_yticks(ticks, labels)
    ax.set(xlabel="predicted", ylabel="true", title="Confusion matrix")
    top = values.max() if values.size else 0
    if n <= CONFUSION_MAX_COUNTS:
        for (i, j), v in np.ndenumerate(values):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=9, color="white" if v > top / 2 else "black")
    return figure_png(fig)
