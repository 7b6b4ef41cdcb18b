"""Zero-shot classification through the shared space: each class is the embedding of its name
(or prompts) on the text side; a row is classified by its nearest class embedding.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from polymodal.config.align import aligned_modalities
from polymodal.config.modalities import modality_columns
from polymodal.data.cells import is_empty
from polymodal.data.pipeline import DataSource
from polymodal.errors import ConfigError, OptionError, SchemaMismatchError, option
from polymodal.predictor import MultimodalPredictor
from polymodal.retrieval.embed import check_aligned, embed_rows

Classes = Sequence[str] | Mapping[str, str | Sequence[str]]


def text_side(predictor: MultimodalPredictor, text_modality: str | None) -> str:
    """The aligned text modality that embeds class prompts (the only one, unless named)."""
    named = option("--text-modality", "text_modality=")  # as the caller gave it (a command's option)
    if text_modality is not None:
        check_aligned(predictor, text_modality, named)
        if predictor.config.modalities[text_modality].kind != "text":
            raise SchemaMismatchError(f"modality '{text_modality}' is of kind "
                                      f"'{predictor.config.modalities[text_modality].kind}', not 'text'")
        return text_modality
    texts = [n for n in aligned_modalities(predictor.config) if predictor.config.modalities[n].kind == "text"]
    if len(texts) != 1:
        raise SchemaMismatchError(f"zero-shot classification embeds class names with an aligned text modality; this "
                                  f"model has {texts or 'none'}" + (f"; name one with {named}" if texts else ""))
    return texts[0]


MIN_CLASSES = 2  # with one class every row is predicted alike


def read_classes(path: str | Path, what: str = "the classes file") -> list[Any] | dict[str, Any]:
    """The classes of a JSON file (what ``polymodal zero-shot --classes FILE.json`` reads): a list of
    class names, or ``{class: prompt or [prompts]}``, as given to :func:`zero_shot` (which checks
    the names and prompts).

    Args:
        what: how error messages name the file's origin (the command line: ``--classes``).

    Raises:
        FileNotFoundError: no file at ``path``.
        ConfigError: the file is not valid JSON.
        OptionError: it holds neither a list nor an object (a JSON text ``"one"`` is not the
            classes o, n, e).
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{what} {path}: no such file")
    try:
        classes = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ConfigError([f"{what} {path}: not valid JSON ({err}); give a list of names or "
                           "{class: prompt or [prompts]}"], source=str(path)) from None
    if not isinstance(classes, list | dict):
        raise OptionError([f"{what} {path}: the file must hold a list of class names or "
                           f"{{class: prompt or [prompts]}}; it holds a JSON {type(classes).__name__}: {classes!r}"])
    return classes


def class_prompts(classes: Classes, template: str = "{}") -> dict[str, list[str]]:
    """Each class's prompts: ``template`` with ``{}`` replaced by a bare name, or the prompts given.

    Raises:
        OptionError: fewer than two classes, a repeated name, a name or prompt that is not a
            non-empty text, or a template without ``{}``.
    """
    if not isinstance(template, str) or "{}" not in template:
        raise OptionError([f"{option('--template', 'template=')}: must hold '{{}}' where the class name goes; got "
                           f"{template!r}"])
    allowed = "a list of class names, or {class: prompt or [prompts]}"
    named = option("--classes", "classes=")  # as the caller gave them (a command's option)
    if isinstance(classes, str | bytes) or not isinstance(classes, Mapping | Sequence):
        raise OptionError([f"{named}: expected {allowed}; got {type(classes).__name__} {classes!r}"])
    names = list(classes.keys() if isinstance(classes, Mapping) else classes)
    bad = [n for n in names if not isinstance(n, str) or not n.strip()]
    if bad:
        raise OptionError([f"{named}: class names must be non-empty texts; got {bad[:5]!r} in {names[:10]!r}"])
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise OptionError([f"{named}: each class must be named once; {repeated} repeat(s) in {names!r}"])
    if len(names) < MIN_CLASSES:
        raise OptionError([f"{named}: zero-shot classification needs at least {MIN_CLASSES} classes; got "
                           f"{len(names)}: {names!r}"])
    if not isinstance(classes, Mapping):
        return {name: [template.replace("{}", name)] for name in names}  # not format(): '{x}' is text
    prompts: dict[str, list[str]] = {}
    for name, given in classes.items():
        listed = [given] if isinstance(given, str) else given
        if not isinstance(listed, list | tuple) or not listed or any(not isinstance(p, str) or not p.strip()
                                                                      for p in listed):
            raise OptionError([f"{named}: class {name!r} needs a prompt or a non-empty list of prompts, each a "
                               f"non-empty text; got {given!r}"])
        prompts[name] = list(listed)
    return prompts


def class_embeddings(predictor: MultimodalPredictor, classes: Classes, text_modality: str | None = None,
                     template: str = "{}") -> pd.DataFrame:
    """One L2-normalised embedding per class: the normalised mean of its prompts' embeddings.

    Args:
        classes: at least two distinct class names (each prompt is ``template`` with ``{}``
            replaced by the name), or ``{class: prompt or [prompts]}``.
        template: how a bare class name becomes a prompt, e.g. ``"a drawing of a {}"``.

    Returns:
        (C, D) indexed by class name.
    """
    prompts = class_prompts(classes, template)
    text = text_side(predictor, text_modality)
    flat = [(c, p) for c, ps in prompts.items() for p in ps]
    column = modality_columns(predictor.config.modalities[text])[0]
    embedded = embed_rows(predictor, pd.DataFrame({column: [p for _, p in flat]}), text)
    if len(embedded) != len(flat):
        raise SchemaMismatchError("every class prompt must be a non-empty text")
    owners = np.array([c for c, _ in flat])
    vectors = embedded.to_numpy()
    means = np.stack([vectors[owners == c].mean(axis=0) for c in prompts])
    means /= np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
    names = list(prompts)
    same = [(names[i], names[j]) for i in range(len(names)) for j in range(i + 1, len(names))
            if float(means[i] @ means[j]) > 1 - 1e-6]
    if same:  # every row would go to the first of them
        raise SchemaMismatchError(f"classes {same[:5]} embed alike: the text modality '{text}' reads their prompts as "
                                  "the same tokens (words outside its vocabulary become one unknown token); use "
                                  "names or prompts with words it was trained on, or a pretrained tokenizer")
    return pd.DataFrame(means, index=pd.Index(names, name="class"))


def zero_shot(predictor: MultimodalPredictor, data: DataSource, modality: str, classes: Classes,
              text_modality: str | None = None, template: str = "{}") -> pd.DataFrame:
    """Classify every row of ``data`` holding ``modality`` by its nearest class embedding.

    Returns:
        Indexed by manifest row (a DataFrame's own index, when it has one): ``prediction`` and one
        ``score_<class>`` column (cosine similarity) per class.

    Raises:
        OptionError: bad ``classes`` or ``template`` (see :func:`class_prompts`).
        SchemaMismatchError: no row of ``data`` holds ``modality``.
    """
    class_prompts(classes, template)  # refused before the model is asked anything
    check_aligned(predictor, modality)
    centres = class_embeddings(predictor, classes, text_modality, template)
    rows = embed_rows(predictor, data, modality, labelled=True)
    scores = rows.to_numpy() @ centres.to_numpy().T  # (N, C)
    names = np.asarray(centres.index, dtype=object)
    frame = pd.DataFrame({"prediction": names[scores.argmax(axis=1)]}, index=rows.index)
    return frame.join(pd.DataFrame(scores, index=rows.index, columns=[f"score_{c}" for c in names]))


def zero_shot_accuracy(predicted: Sequence[object], truth: Sequence[object], classes: Sequence[str],
                     what: str = "the labels") -> dict[str, float | int]:
    """Accuracy and balanced accuracy (the mean of the per-class recalls) of zero-shot
    ``predicted`` class names against ``truth`` labels spelled as the class names (compared as
    text); a row with an empty label is left out.

    Raises:
        OptionError: no row has a label; a label is not one of ``classes`` (it could never be
            predicted: the labels are spelled otherwise, or a class is missing), naming ``what``.
    """
    pairs = [(str(p), str(t).strip()) for p, t in zip(predicted, truth, strict=True) if not is_empty(t)]
    if not pairs:
        raise OptionError([f"{what}: every row's label is empty; nothing to score"])
    unknown = sorted({t for _, t in pairs} - {str(c) for c in classes})
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise OptionError([f"{what}: {shown} {'is' if len(unknown) == 1 else 'are'} not among the classes "
                           f"{list(classes)}: zero-shot scoring compares the predicted class names with the labels, so "
                           "they must be spelled alike"])
    guess, label = (np.asarray(v, dtype=object) for v in zip(*pairs, strict=True))
    recalls = [float((guess[label == c] == c).mean()) for c in np.unique(label)]
    return {"accuracy": float((guess == label).mean()), "balanced_accuracy": float(np.mean(recalls)),
            "rows": len(pairs), "classes": len(recalls)}
