"""The explanation page: ``explain.html`` (self-contained) plus ``shapley.csv`` and ``importance.csv``."""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from polymodal.evaluation.html import STYLE, embed_png, table_html
from polymodal.evaluation.plots import (
    bars_attribution,
    frames_attribution,
    image_attribution,
    importance_plot,
    lines_attribution,
    map_attribution,
    tokens_html,
)
from polymodal.utils.io import atomic_write, atomic_write_text
from polymodal.utils.scores import MULTILABEL_THRESHOLD, decisions

if TYPE_CHECKING:
    from polymodal.evaluation.attribution import Explanation
    from polymodal.evaluation.integrated_gradients import WithinAttribution

SHOWN_ROWS = 50


def _metric_of(explanation: Explanation) -> str | None:
    drops = [c for c in explanation.importance.columns if c.endswith("_drop")]
    return drops[0][: -len("_drop")] if drops else None


def _quantity(explanation: Explanation) -> str:
    """What the Shapley values attribute (an explanation built without a name: the generic words)."""
    return explanation.explained_quantity or "explained output's score"


def metric_scope(task: str, outputs: int | None = None) -> str:
    """What the metric columns of an importance table score, in the task's words: every class,
    label or target, not only the explained one (``outputs``: how many the model has; one: the
    prediction is the explained output; None: not known, as in a report saved before it was recorded)."""
    if task == "anomaly":
        return "every row's score against its label"
    what = {"classification": "class", "multilabel": "label", "regression": "target"}.get(task)
    if what is None:  # a report saved before its task was recorded
        return "the whole prediction (every class, label or target), not only the explained output"
    if outputs == 1 and task != "classification":
        return f"the whole prediction (its one {what}, the explained one)"
    return f"the whole prediction (every {what}), not only the explained {'output' if task == 'classification' else what}"


def other_outputs(task: str, outputs: int | None = None) -> bool:
    """Whether an explanation has another output to explain (``--output NAME``): a class, a label
    or a target beside the explained one (``outputs`` None: not known, said anyway)."""
    return task != "anomaly" and (task == "classification" or outputs is None or outputs > 1)


def explained_note(quantity: str, metric: str | None, task: str = "", outputs: int | None = None) -> str:
    """One sentence naming the explained output (HTML), and that the metric columns score every output."""
    note = f"The Shapley values explain the <b>{html.escape(quantity)}</b>"
    if metric is not None:
        note += f"; the <code>{html.escape(metric)}_*</code> columns score {metric_scope(task, outputs)}"
    return note + "."


def _base_note(explanation: Explanation) -> str:
    """What the Shapley values of a row add up to (HTML)."""
    if explanation.reference == "normal":
        return ("Each coalition's score is measured against the normal validation rows' mean score under the same "
                "coalition of the modalities the row holds, so for each row they add up to how far its score lies "
                "above the normal rows' mean with those modalities (<code>base</code>): a positive value is a "
                "modality that pushed the row towards a flag, and one the row lacks gets 0"
                + ("" if explanation.threshold is None else f" (flagged above {explanation.threshold:.4g})") + ".")
    note = ("For each row they add up to the explained score with every modality present minus the score with none "
            "(<code>base</code>).")
    if explanation.task == "anomaly":  # an anomaly detector without its normal reference
        note += (" This detector records no normal rows' scores to measure against (more than 6 modalities, or a run "
                 "saved by an earlier polymodal, which a new fit replaces), so its values are not centred on normal "
                 "rows.")
    return note


def caveats_html(caveats: list[str]) -> str:
    """:meth:`Explanation.caveats` as HTML sentences (empty without any)."""
    return "".join(f" <b>Note</b>: {html.escape(caveat)}." for caveat in caveats)


def _within_note(task: str) -> str:
    """What the Integrated Gradients attribute, in the task's terms."""
    if task == "regression":
        return ("Integrated Gradients (Captum) of the explained target's prediction (the network's standardised "
                "output; the value on the target's scale is a positive multiple of it plus a constant, so its "
                "attributions are these times the target's standard deviation)")
    if task in ("classification", "multilabel"):
        what = "class" if task == "classification" else "label"
        return (f"Integrated Gradients (Captum) of the explained {what}'s logit (the log-odds behind its "
                "probability)")
    if task == "anomaly":
        return ("Integrated Gradients (Captum) of the anomaly score (from an all-zero input: the training mean "
                "under standard normalisation) for the highest-scoring rows")
    return "Integrated Gradients (Captum) of the explained output's raw network output"


def _rows_note(explanation: Explanation) -> str:
    """Which rows the within-modality maps show, where they are chosen by how wrong they are (HTML)."""
    if explanation.truth is None or explanation.task not in ("multilabel", "regression"):
        return ""
    worst = "the largest errors of the explained target" if explanation.task == "regression" else \
        "the explained label called wrongly, the most confidently first"
    return f" The rows shown: the worst-predicted first ({worst}; up to half of them), then rows spread over the others."


def within_html(item: WithinAttribution) -> str:
    """One within-modality attribution as a figure (or highlighted tokens)."""
    title = item.modality if item.modality == item.kind else f"{item.modality} ({item.kind})"
    if item.layout == "tokens":
        return f"<figure>{tokens_html(item.labels or [], item.attribution)}<figcaption>{html.escape(title)}: " \
               "token attributions (red: raises the explained output, blue: lowers it)</figcaption></figure>"
    if item.layout == "image":
        png = image_attribution(item.display, item.attribution, title)
    elif item.layout == "frames":
        png = frames_attribution(item.display, item.attribution, title)
    elif item.layout == "map":
        png = map_attribution(item.display, item.attribution, title,
                              "mel / frequency bin" if item.kind == "audio" else "channel x frequency bin",
                              item.time_axis)
    elif item.layout == "lines":
        png = lines_attribution(item.display, item.attribution, title, item.time_axis)
    else:
        png = bars_attribution(item.labels or [], item.attribution, title)
    return f"<figure>{embed_png(png, title)}</figure>"


def row_table(explanation: Explanation) -> pd.DataFrame:
    """The page's per-row table: the manifest row, (classification) its true and predicted class,
    the explained output (these as text), its score with every modality, (with targets) the
    explained label's or target's ``truth`` and a regression's ``error``, its score with none, and
    each Shapley value."""
    values = explanation.values.reset_index(drop=True)
    table = pd.DataFrame({"row": [str(row) for row in explanation.rows]})  # as text: no thousands separators
    if explanation.index is not None:  # a DataFrame's own index labels beside its row numbers
        table.insert(1, "index", [str(label) for label in explanation.index])
    if explanation.task == "classification":
        if explanation.labels is not None:
            table["true class"] = [str(label) for label in explanation.labels]
        called = decisions("classification", explanation.full, explanation.threshold)
        table["predicted class"] = [str(explanation.outputs[k]) for k in called]
    if explanation.task == "anomaly":
        if "label" in values:
            table["label"] = ["" if label is None else str(label) for label in values["label"]]
        if "flag" in values:
            table["flag"] = values["flag"]
    table["explained"] = values["explained"].astype(str)
    table["score"] = values["prediction"]
    if "truth" in values:  # multilabel, regression with targets: the explained output's true value
        table["truth"] = [None if pd.isna(v) else v for v in values["truth"]]  # a blank cell: '-', not '<NA>'
        if "error" in values:
            table["error"] = values["error"]
    table["normal mean score" if explanation.reference == "normal" else "score without modalities"] = values["base"]
    return pd.concat([table, values[explanation.modalities]], axis=1)


def row_heading(explanation: Explanation, line: pd.Series) -> str:
    """``Row 12 (true class '7', predicted '1'): probability of class '1' 0.413`` (text); a
    DataFrame's own index label beside the row: ``Row 12 (index 'id12', ...``; with targets, a
    multilabel row's ``(true 1, predicted 0)`` and a regression row's ``(true value 2.500, error -0.300)``."""
    label = f"index '{line['index']}', " if "index" in line else ""
    if explanation.task == "classification":
        truth = f"true class '{line['true class']}', " if "true class" in line else ""
        return (f"Row {line['row']} ({label}{truth}predicted '{line['predicted class']}'): probability of class "
                f"'{line['explained']}' {line['score']:.3f}")
    if explanation.task == "anomaly":
        said = ([f"index '{line['index']}'"] if "index" in line else []) + \
            ([f"label '{line['label']}'"] if line.get("label") else [])
        where = f" ({', '.join(said)})" if said else ""
        flag = "" if "flag" not in line else " (flagged)" if line["flag"] else " (not flagged)"
        return f"Row {line['row']}{where}: anomaly score {line['score']:.4g}{flag}"
    what = "probability of label" if explanation.task == "multilabel" else "predicted value of target"
    said = [label[:-2]] if label else []
    if "truth" in line and not pd.isna(line["truth"]):  # ``Row 4 (true 1, predicted 0)``, ``(true value 2.5, error -0.3)``
        if explanation.task == "multilabel":
            said.append(f"true {int(line['truth'])}, predicted {int(line['score'] >= MULTILABEL_THRESHOLD)}")
        else:
            said.append(f"true value {line['truth']:.3f}, error {line['error']:+.3f}")
    where = f" ({', '.join(said)})" if said else ""
    return f"Row {line['row']}{where}: {what} '{line['explained']}' {line['score']:.3f}"


def by_group_html(explanation: Explanation) -> str:
    """:meth:`Explanation.by_group` as a section (HTML; empty when it has no rows)."""
    table = explanation.by_group()
    if table.empty:
        return ""
    return (f"<h2>Mean Shapley value by {html.escape(table.columns[0])}</h2><p>Which modality each kind of row shows "
            "in: its rows' mean Shapley value of each modality, and the share of its rows where that modality's value "
            "is the largest (<i>first</i>; rows without a score left out).</p>" + table_html(table.to_dict("records")))


def column_tables(explanation: Explanation) -> dict[str, pd.DataFrame]:
    """Per tabular modality, each column's mean |attribution| and mean attribution over the rows
    explained inside it (``attrs['rows']``: how many), largest first."""
    tables: dict[str, pd.DataFrame] = {}
    for modality in dict.fromkeys(i.modality for i in explanation.within if i.features is not None):
        items = [i for i in explanation.within if i.modality == modality]
        frame = pd.DataFrame([dict(zip(i.features, np.asarray(i.attribution, np.float64))) for i in items])
        table = pd.DataFrame({"column": frame.columns, "mean_abs_attribution": frame.abs().mean().to_numpy(),
                              "mean_attribution": frame.mean().to_numpy()})
        table = table.sort_values("mean_abs_attribution", ascending=False, kind="stable").reset_index(drop=True)
        table.attrs["rows"] = len(items)
        tables[modality] = table
    return tables


def explanation_html(explanation: Explanation, title: str) -> str:
    """The page as HTML."""
    values = explanation.values
    n = len(values)
    how = "exact (all coalitions)" if explanation.exact else "estimated from sampled modality orders"
    parts = [f"<h1>{html.escape(title)}</h1>",
             f"<p>{n} row{'' if n == 1 else 's'}; modalities {', '.join(f'<b>{html.escape(m)}</b>' for m in explanation.modalities)}. "
             f"Shapley values over modalities, {how}: a modality outside a coalition is hidden through the "
             f"model's missing-modality path. {_base_note(explanation)}{caveats_html(explanation.caveats())} "
             f"{explained_note(_quantity(explanation), _metric_of(explanation), explanation.task, len(explanation.outputs))}"
             + (" Another output: <code>pred.explain(data, output=NAME)</code> or <code>polymodal explain RUN --data X "
                "--output NAME</code>." if other_outputs(explanation.task, len(explanation.outputs)) else "") + "</p>"]
    metric = _metric_of(explanation)
    png = importance_plot(explanation.importance, metric)
    parts.append("<h2>Global importance</h2>" + embed_png(png, "modality importance")  # `explained`: said above
                 + table_html(explanation.importance.drop(columns="explained", errors="ignore").to_dict("records")))
    interactions = explanation.interaction_table()
    if len(interactions):
        parts.append("<h2>Interactions</h2><p>Pairwise Shapley interaction indices: positive when two modalities "
                     "are worth more together than apart, negative when they are redundant.</p>"
                     + table_html(interactions.to_dict("records")))
    table = row_table(explanation)
    if explanation.task == "anomaly":  # the rows a monitor raises first (unscored rows last)
        shown = table.sort_values("score", ascending=False, kind="stable", na_position="last").head(SHOWN_ROWS)
        which = f"The {len(shown)} highest-scoring of {n} rows"
    else:
        shown = table.head(SHOWN_ROWS)
        which = f"First {len(shown)} of {n} rows"
    base = "the normal rows' mean score" if explanation.reference == "normal" else "the score with none"
    parts.append(by_group_html(explanation))
    truth = "" if "truth" not in table else \
        (", <code>truth</code> the explained label's true value (1: present)" if explanation.task == "multilabel"
         else ", <code>truth</code> the explained target's true value and <code>error</code> the prediction minus it")
    parts.append(f"<h2>Per-row Shapley values</h2><p>{which} (all in "
                 "<code>shapley.csv</code>, where <code>prediction</code> is the score with every modality"
                 f"{',' if truth else ' and'} <code>base</code> {base}{truth}).</p>" + table_html(shown.to_dict("records")))
    for modality, columns in column_tables(explanation).items():
        parts.append(f"<h2>Columns of {html.escape(modality)}</h2><p>Mean |attribution| of each column over the "
                     f"{columns.attrs['rows']} row(s) explained inside (below; <code>--samples</code> sets how many), "
                     "largest first: which measurements the model leaned on. A blank cell's bar is the imputed "
                     "value's, its <i>(missing)</i> flag the blank's own.</p>" + table_html(columns.to_dict("records")))
    if explanation.within:
        parts.append(f"<h2>Inside each modality</h2><p>{_within_note(explanation.task)} with respect to each "
                     "modality's input, the other inputs fixed; red pushes the output up, blue down. "
                     "These maps need not agree with the Shapley values, even in sign: a Shapley value measures "
                     "the modality against its absence (the model's missing-modality path), Integrated Gradients "
                     "against a baseline input given in its place (all zeros, the training mean under standard "
                     "normalisation, for arrays; padding for text; the average row for a table)."
                     + (" A video shows its sampled frames, each titled with its attribution's total: frames "
                        "summing below zero against all-zero frames can come with a positive Shapley value for "
                        "the video, which compares it with no video at all."
                        if any(item.layout == "frames" for item in explanation.within) else "")
                     + f"{_rows_note(explanation)}</p>")
        by_row: dict[int, list[WithinAttribution]] = {}
        for item in explanation.within:
            by_row.setdefault(item.row, []).append(item)
        for row, items in by_row.items():
            line = table.loc[table["row"] == str(row)].iloc[0]
            shares = ", ".join(f"{html.escape(m)} {line[m]:+.3f}" for m in explanation.modalities)
            parts.append(f"<h3>{html.escape(row_heading(explanation, line))}</h3><p>Shapley values: {shares}.</p>"
                         "<div class='grid'>" + "".join(within_html(i) for i in items) + "</div>")
    body = "".join(parts)
    return f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>" \
           f"<style>{STYLE}</style></head><body>{body}</body></html>"


def write_explanation(explanation: Explanation, folder: Path, title: str) -> Path:
    """Write ``explain.html``, ``shapley.csv``, ``importance.csv``, for an anomaly detector
    ``by_group.csv`` (:meth:`Explanation.by_group`) and, per tabular modality,
    ``columns_<modality>.csv`` (:func:`column_tables`) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / "shapley.csv", lambda tmp: explanation.values.to_csv(tmp))
    atomic_write(folder / "importance.csv", lambda tmp: explanation.importance.to_csv(tmp, index=False))
    groups = explanation.by_group()
    if not groups.empty:
        atomic_write(folder / "by_group.csv", lambda tmp: groups.to_csv(tmp, index=False))
    for modality, columns in column_tables(explanation).items():
        atomic_write(folder / f"columns_{modality}.csv", lambda tmp, table=columns: table.to_csv(tmp, index=False))
    page = folder / "explain.html"
    atomic_write_text(page, explanation_html(explanation, title))
    return page
