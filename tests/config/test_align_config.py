"""The ``align`` section: defaults, choices and its cross-field rules (each error names the key,
what is allowed and what was given); which modality pairs an objective aligns."""

from __future__ import annotations

from typing import Any

import pytest

from polymodal.config import load_config
from polymodal.config.align import aligned_modalities, modality_pairs
from polymodal.errors import ConfigError


def tab(*columns: str) -> dict[str, Any]:
    return {"kind": "tabular", "columns": list(columns)}


def config(task: str = "retrieval", align: dict[str, Any] | None = None, target: str | None = None,
           names: tuple[str, ...] = ("a", "b", "c")) -> dict[str, Any]:
    data: dict[str, Any] = {"task": task, "modalities": {n: tab(f"{n}0") for n in names}}
    if align is not None:
        data["align"] = align
    if target is not None:
        data["target"] = target
    return data


def problem(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(data)
    return str(info.value)


def test_defaults_and_discriminated_objectives() -> None:
    cfg = load_config(config(align={"objective": "triplet", "projection": {"name": "mlp", "hidden": [32]}}))
    assert cfg.align.objective == "triplet" and cfg.align.margin == 0.2 and cfg.align.dim == 128
    assert cfg.align.negatives == "semihard"
    assert cfg.align.projection.name == "mlp" and cfg.align.projection.hidden == [32]
    assert cfg.align.positives == "pair" and cfg.target is None
    assert load_config(config(align={"objective": "contrastive"})).align.projection.name == "linear"


def test_every_pair_or_each_to_the_anchor() -> None:
    every = load_config(config(align={"objective": "contrastive"}))
    assert aligned_modalities(every) == ["a", "b", "c"]
    assert modality_pairs(every) == [("a", "b"), ("a", "c"), ("b", "c")]
    anchored = load_config(config(align={"objective": "cca", "anchor": "b"}))
    assert modality_pairs(anchored) == [("b", "a"), ("b", "c")]
    subset = load_config(config("classification", {"objective": "vae", "modalities": ["c", "a"]}, target="y"))
    assert aligned_modalities(subset) == ["a", "c"] and modality_pairs(subset) == [("a", "c")]


def test_retrieval_needs_an_align_section() -> None:
    assert "align: task 'retrieval' trains an alignment and needs an 'align' section" in problem(config())


def test_unknown_objective_and_projection_list_the_choices() -> None:
    message = problem(config(align={"objective": "clip"}))
    assert "align" in message and "'contrastive', 'triplet', 'cca', 'vae'" in message and "clip" in message
    message = problem(config(align={"objective": "contrastive", "projection": {"name": "deep"}}))
    assert "align.projection.name: must be one of ['linear', 'mlp']; got 'deep'" in message


def test_ranges_are_checked() -> None:
    message = problem(config(align={"objective": "contrastive", "temperature": 0.005}))
    assert "align.temperature: Input should be greater than or equal to 0.01 (got 0.005)" in message
    assert "align.dim: Input should be greater than 0" in problem(config(align={"objective": "triplet", "dim": 0}))


@pytest.mark.parametrize("align, needle", [
    ({"objective": "contrastive", "modalities": ["a", "x"]}, "align.modalities: names unknown modalities ['x']"),
    ({"objective": "contrastive", "modalities": ["a", "a"]}, "align.modalities: lists a modality twice"),
    ({"objective": "contrastive", "anchor": "x"}, "align.anchor: must be one of the aligned modalities ['a', 'b', 'c']; "
                                                  "got 'x'"),
    ({"objective": "cca", "positives": "label"}, "align.positives: 'label' works with objectives 'contrastive' and "
                                                 "'triplet'; objective is 'cca'"),
    ({"objective": "triplet", "positives": "label"}, "align.positives: 'label' needs class labels"),
    ({"objective": "contrastive", "modalities": ["a", "b"]},
     "align.modalities: task 'retrieval' uses only the aligned modalities"),
    ({"objective": "vae", "anchor": "b"}, "align.anchor: must be null with objective 'vae', whose joint posterior "
                                          "aligns every aligned modality ['a', 'b', 'c'] at once"),
    ({"objective": "vae", "anchor": "x"}, "(drop anchor, or use objective 'contrastive', 'triplet' or 'cca'); got 'x'"),
])
def test_cross_field_rules(align: dict[str, Any], needle: str) -> None:
    assert needle in problem(config(align=align))


def test_label_positives_with_a_target_are_accepted() -> None:
    cfg = load_config(config(align={"objective": "contrastive", "positives": "label"}, target="y"))
    assert cfg.align.positives == "label" and cfg.targets == ["y"]
    problem_text = problem(config("regression", {"objective": "contrastive", "positives": "label"}, target="y"))
    assert "align.positives: 'label' needs class labels" in problem_text


def test_label_positives_with_further_tasks_are_refused() -> None:
    """With further tasks the batch's target is every task's columns: not one label per row."""
    data = config("classification", {"objective": "contrastive", "positives": "label"}, target="y")
    data["tasks"] = {"parity": {"task": "classification", "target": "p"}}
    assert "align.positives: 'label' cannot be combined with further tasks (['parity'])" in problem(data)
