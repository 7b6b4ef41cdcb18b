"""Two configs compared key by key, and each change in the wording of its caller."""

from __future__ import annotations

from polymodal.config.diff import ARROW, WHEN_FITTED, changed_keys, changes, flatten, said_change, said_changes


def test_flatten_gives_dotted_keys_with_lists_as_leaves():
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": None}) == {"a.b": 1, "a.c.d": [1, 2], "e": None}


def test_changes_walk_nested_dicts_in_key_order_and_give_a_missing_key_as_none():
    before = {"head": {"dropout": 0.1, "name": "mlp"}, "fusion": {"name": "concat"}, "target": "y"}
    after = {"head": {"dropout": 0.3, "name": "mlp"}, "fusion": "late", "target": "y", "tasks": {"z": 1}}
    assert changes(before, after) == [("head.dropout", 0.1, 0.3), ("fusion", {"name": "concat"}, "late"),
                                      ("tasks", None, {"z": 1})]
    assert changes(before, before) == []


def test_changed_keys_of_flattened_configs_are_sorted_with_the_unchecked_ones_aside():
    saved = flatten({"train": {"epochs": 3, "lr": 0.1}, "head": {"dropout": 0.1}, "fusion": {"name": "concat"}})
    given = flatten({"train": {"epochs": 9, "lr": 0.1}, "head": {"dropout": 0.3}, "fusion": {"name": "gated", "dim": 8}})
    assert changed_keys(saved, given) == ["fusion.dim", "fusion.name", "head.dropout", "train.epochs"]
    assert changed_keys(saved, given, unchecked=("train", "fusion.name")) == ["fusion.dim", "head.dropout"]


def test_each_caller_has_its_wording():
    saved, given = {"head.dropout": 0.1}, {"head.dropout": 0.3, "fusion.dim": 64}
    changed = changed_keys(saved, given)
    assert said_changes(saved, given, changed) == "fusion.dim: (absent) -> 64; head.dropout: 0.1 -> 0.3"
    assert said_changes(saved, given, changed, shown=1) == "fusion.dim: (absent) -> 64 (and 1 more)"
    assert said_change("target", "label", "y", WHEN_FITTED) == "target: 'label' when fitted, now 'y'"
    assert said_change("a.b", None, 2) == said_change("a.b", None, 2, ARROW) == "a.b: None -> 2"
