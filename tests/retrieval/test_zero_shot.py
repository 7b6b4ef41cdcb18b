"""Zero-shot classification's arithmetic, with the embedding model replaced by fixed vectors:
class embeddings are normalised prompt means, scores are cosine similarities."""

from __future__ import annotations

import importlib
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

zs = importlib.import_module("polymodal.retrieval.zero_shot")  # the module (the package exports a function of its name)

PROMPTS = {"p1": [1.0, 0.0], "p2": [0.0, 1.0], "p3": [3.0, 4.0]}  # the text side's (unnormalised) vectors


@pytest.fixture
def fake_model(monkeypatch):
    def embed_rows(predictor, data, modality):
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
