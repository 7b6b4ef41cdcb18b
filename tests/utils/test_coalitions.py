"""Coalitions of modalities and their bit masks (``polymodal.utils.coalitions``)."""

from __future__ import annotations

import numpy as np

from polymodal.utils.coalitions import (
    against_reference,
    all_subsets,
    coalition_of,
    coalition_values,
    held_masks,
    mask_of,
    subset_label,
)


def test_subsets_come_largest_first_then_by_name_and_the_empty_one_only_when_asked():
    assert all_subsets(["b", "a"]) == [frozenset("ab"), frozenset("a"), frozenset("b")]
    assert all_subsets(["b", "a"], empty=True)[-1] == frozenset()
    assert len(all_subsets(list("abcd"))) == 15
    assert subset_label({"image", "audio"}) == "audio+image" and subset_label(()) == "(none)"


def test_a_mask_and_its_coalition_are_inverse_bit_i_the_ith_name():
    names = ["audio", "image", "text"]
    assert mask_of({"audio", "text"}, names) == 0b101
    assert [coalition_of(mask_of(c, names), names) for c in all_subsets(names)] == all_subsets(names)
    present = np.array([[True, False, True], [False, True, False], [False, False, False]])
    assert held_masks(present).tolist() == [0b101, 0b010, 0]


def test_values_against_a_reference_give_a_lacking_modality_nothing():
    assert coalition_values(np.array([1.5, np.nan])).tolist() == [1.5, 0.0]
    values = {mask: np.full((2, 1), float(mask)) for mask in range(4)}  # two modalities, two rows
    same, base = against_reference(values, None, np.array([3, 1]))
    assert same is values and base is values[0]
    reference = np.array([0.0, 10.0, 20.0, 30.0])  # the normal rows' mean score per coalition
    measured, base = against_reference(values, reference, np.array([3, 1]))  # row 1 lacks modality 1
    assert measured[3].ravel().tolist() == [3 - 30, 3 - 10]
    assert measured[2].ravel().tolist() == [2 - 20, 2 - 0]  # modality 1 alone: row 1 is measured against no modality
    assert base.ravel().tolist() == [0 + 30, 0 + 10]
