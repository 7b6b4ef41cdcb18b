"""Zero-shot classification's arithmetic, with the embedding model replaced by fixed vectors:
class embeddings are normalised prompt means, scores are cosine similarities."""

from __future__ import annotations

import importlib
import math
import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from polymodal.errors import OptionError

zs = importlib.import_module("polymodal.retrieval.zero_shot")  # the module (the package exports a function of its name)

PROMPTS = {"p1": [1.0, 0.0], "p2": [0.0, 1.0], "p3": [3.0, 4.0]}  # the text side's (unnormalised) vectors


@pytest.fixture
def fake_model(monkeypatch):
    def embed_rows(predictor, data, modality, labelled=False):
        if modality == "caption":
            return pd.DataFrame([PROMPTS[p] for p in data["caption"]])
        return pd.DataFrame(np.asarray(data["vec"].tolist(), np.float64), index=data.index)

    monkeypatch.setattr(zs, "text_side", lambda predictor, text_modality: "caption")
    monkeypatch.setattr(zs, "modality_columns", lambda cfg: ["caption"])
    monkeypatch.setattr(zs, "check_aligned", lambda predictor, modality: None)
    monkeypatch.setattr(zs, "embed_rows", embed_rows)
    return SimpleNamespace(config=SimpleNamespace(modalities={"caption": None}))


def test_class_embeddings_are_normalised_means_of_their_prompts(fake_model):
    centres = zs.class_embeddings(fake_model, {"cat": ["p1", "p2"], "dog": "p3"})
    assert list(centres.index) == ["cat", "dog"]
    np.testing.assert_allclose(centres.loc["cat"], [1 / math.sqrt(2), 1 / math.sqrt(2)])
    np.testing.assert_allclose(centres.loc["dog"], [0.6, 0.8])


def test_zero_shot_scores_are_cosine_similarities(fake_model):
    rows = pd.DataFrame({"vec": [[1.0, 0.0], [0.0, 1.0]]})
    out = zs.zero_shot(fake_model, rows, "image", {"cat": ["p1", "p2"], "dog": "p3"})
    np.testing.assert_allclose(out["score_cat"], [1 / math.sqrt(2)] * 2)
    np.testing.assert_allclose(out["score_dog"], [0.6, 0.8])
    assert out["prediction"].tolist() == ["cat", "dog"]  # 0.707 > 0.6, then 0.8 > 0.707


def test_classes_that_embed_alike_are_refused_not_all_sent_to_the_first(fake_model):
    """Names outside a word vocabulary all become [UNK]: their embeddings are one and the same."""
    from polymodal.errors import SchemaMismatchError

    PROMPTS.update({"zebra": [2.0, 0.0], "okapi": [5.0, 0.0]})  # the same direction as p1
    try:
        with pytest.raises(SchemaMismatchError, match=r"classes \[\('cat', 'zebra'\), \('cat', 'okapi'\)"):
            zs.class_embeddings(fake_model, {"cat": "p1", "zebra": "zebra", "okapi": "okapi", "dog": "p3"})
    finally:
        for key in ("zebra", "okapi"):
            PROMPTS.pop(key)
    with pytest.raises(OptionError, match="^template=: must hold"):
        zs.class_embeddings(fake_model, ["p1", "p3"], template="a drawing")


def test_a_template_is_filled_by_replacing_braces_not_by_format():
    prompts = zs.class_prompts(["cat", "dog"], "digit {x} {}")  # format() would raise KeyError on {x}
    assert prompts == {"cat": ["digit {x} cat"], "dog": ["digit {x} dog"]}
    assert zs.class_prompts(["a{}", "b"], "the {}") == {"a{}": ["the a{}"], "b": ["the b"]}
    with pytest.raises(OptionError, match=r"^template=: must hold '\{\}' where the class name goes; got '\{0\}'"):
        zs.class_prompts(["cat", "dog"], "{0}")


@pytest.mark.parametrize("classes, message", [
    (["cat"], "classes=: zero-shot classification needs at least 2 classes; got 1: ['cat']"),
    ([], "needs at least 2 classes; got 0"),
    (["cat", "dog", "cat"], "classes=: each class must be named once; ['cat'] repeat(s)"),
    ("one", "classes=: expected a list of class names, or {class: prompt or [prompts]}; got str 'one'"),
    ([1, 2], "classes=: class names must be non-empty texts; got [1, 2]"),
    (["cat", " "], "class names must be non-empty texts; got [' ']"),
    ({"one": 5, "two": "two"}, "classes=: class 'one' needs a prompt or a non-empty list of prompts, each a "
                               "non-empty text; got 5"),
    ({"one": [], "two": "two"}, "class 'one' needs a prompt or a non-empty list of prompts"),
    ({"one": "", "two": "two"}, "class 'one' needs a prompt or a non-empty list of prompts"),
    ({"one": ["a", 3], "two": "two"}, "got ['a', 3]"),
])
def test_bad_classes_are_refused_before_the_model_is_asked(fake_model, classes, message):
    with pytest.raises(OptionError) as caught:
        zs.zero_shot(fake_model, pd.DataFrame({"vec": [[1.0, 0.0]]}), "image", classes)
    assert message in str(caught.value)


def test_zero_shot_accuracy_and_balanced_accuracy_against_labels_spelled_as_the_classes():
    predicted = ["cat", "cat", "cat", "dog", "cat"]
    truth = ["cat", "cat", "dog", "dog", None]  # the empty label is left out
    scores = zs.zero_shot_accuracy(predicted, truth, ["cat", "dog"])
    assert scores == {"accuracy": 0.75, "balanced_accuracy": 0.75, "rows": 4, "classes": 2}
    skewed = zs.zero_shot_accuracy(["cat"] * 4, ["cat", "cat", "cat", "dog"], ["cat", "dog"])
    assert skewed["accuracy"] == 0.75 and skewed["balanced_accuracy"] == 0.5  # one class always wrong
    with pytest.raises(OptionError, match="the labels: '0', '1' are not among the classes \\['cat', 'dog'\\]"):
        zs.zero_shot_accuracy(["cat", "dog"], [0, 1], ["cat", "dog"])
    with pytest.raises(OptionError, match="every row's label is empty"):
        zs.zero_shot_accuracy(["cat"], [""], ["cat", "dog"])


def test_read_classes_reads_a_list_or_prompts_and_refuses_anything_else(tmp_path):
    from polymodal.errors import ConfigError

    file = tmp_path / "classes.json"
    file.write_text('{"food": ["a drawing of food", "a meal"], "animals": "an animal"}', encoding="utf-8")
    assert zs.read_classes(file) == {"food": ["a drawing of food", "a meal"], "animals": "an animal"}
    file.write_text('["cat", "dog"]', encoding="utf-8")
    assert zs.read_classes(str(file)) == ["cat", "dog"]
    file.write_text('"one"', encoding="utf-8")  # a JSON text is not the classes o, n, e
    with pytest.raises(OptionError, match=re.escape(f"the classes file {file}: the file must hold a list of class "
                                                    "names or {class: prompt or [prompts]}; it holds a JSON str: 'one'")):
        zs.read_classes(file)
    file.write_text('["cat", "dog"', encoding="utf-8")
    with pytest.raises(ConfigError, match="--classes .*classes.json: not valid JSON") as caught:
        zs.read_classes(file, what="--classes")
    assert caught.value.source == str(file)
    with pytest.raises(FileNotFoundError, match="nope.json: no such file"):
        zs.read_classes(tmp_path / "nope.json")
