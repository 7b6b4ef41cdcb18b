"""Shapley values and interactions on games whose answers are known, and the plan ``explain`` and
the runtime share (``polymodal.utils.shapley``)."""

from __future__ import annotations

import numpy as np
import pytest

from polymodal.utils.shapley import (
    EXACT_MAX_MODALITIES,
    PERMUTATIONS,
    exact_shapley,
    prefix_masks,
    sample_orders,
    sampled_shapley,
    shapley_interactions,
    shapley_plan,
)


def game(m: int, value) -> dict[int, np.ndarray]:
    """Coalition values (N=1, K=1) from ``value(set of indices)``."""
    return {mask: np.array([[value({i for i in range(m) if mask >> i & 1})]], float) for mask in range(1 << m)}


def random_game(m: int, n: int = 5, k: int = 3, seed: int = 0) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {mask: rng.normal(size=(n, k)) for mask in range(1 << m)}


def test_additive_game_gives_each_player_its_own_weight_and_no_interaction():
    weights = [0.5, -1.0, 2.0, 0.25]
    values = game(4, lambda s: 3.0 + sum(weights[i] for i in s))
    np.testing.assert_allclose(exact_shapley(values, 4)[0, :, 0], weights)
    np.testing.assert_allclose(shapley_interactions(values, 4), 0.0, atol=1e-12)


def test_pure_xor_splits_the_value_and_shows_the_interaction():
    values = game(2, lambda s: 1.0 if s == {0, 1} else 0.0)
    np.testing.assert_allclose(exact_shapley(values, 2)[0, :, 0], [0.5, 0.5])
    interactions = shapley_interactions(values, 2)[0, :, :, 0]
    assert interactions[0, 1] == pytest.approx(1.0) and interactions[1, 0] == pytest.approx(1.0)
    assert interactions[0, 0] == 0.0


def test_interactions_weigh_coalitions_of_every_size_among_three_players():
    # v = 1 when players 0 and 1 are both in: by hand, I[0,1] = 1/2 (S = {}) + 1/2 (S = {2}) = 1,
    # and the dummy player 2 interacts with nobody.
    pair = shapley_interactions(game(3, lambda s: 1.0 if {0, 1} <= s else 0.0), 3)[0, :, :, 0]
    assert pair[0, 1] == pytest.approx(1.0)
    assert pair[0, 2] == pytest.approx(0.0) and pair[1, 2] == pytest.approx(0.0)
    # unanimity of all three: every pair gets 1 / (|T| - 1) = 1/2
    unanimity = shapley_interactions(game(3, lambda s: 1.0 if s == {0, 1, 2} else 0.0), 3)[0, :, :, 0]
    np.testing.assert_allclose(unanimity[np.triu_indices(3, 1)], 0.5)


def test_redundant_players_interact_negatively():
    values = game(2, lambda s: 1.0 if s else 0.0)  # either alone is enough
    assert shapley_interactions(values, 2)[0, 0, 1, 0] == pytest.approx(-1.0)


def test_dummy_player_gets_zero_and_symmetric_players_get_the_same():
    values = game(3, lambda s: float(len(s & {0, 1})) ** 2)  # player 2 never matters; 0 and 1 symmetric
    phi = exact_shapley(values, 3)[0, :, 0]
    assert phi[2] == pytest.approx(0.0)
    assert phi[0] == pytest.approx(phi[1])


@pytest.mark.parametrize("m", [1, 2, 3, 5, 6])
def test_exact_values_are_efficient_for_every_sample_and_output(m):
    values = random_game(m, seed=m)
    phi = exact_shapley(values, m)
    np.testing.assert_allclose(phi.sum(axis=1), values[(1 << m) - 1] - values[0], atol=1e-10)


@pytest.mark.parametrize("m", [2, 4, 8])
def test_sampled_values_are_efficient_and_approach_the_exact_ones(m):
    values = random_game(m, seed=10 + m)
    orders = sample_orders(m, 400, seed=0)
    assert set(prefix_masks(orders)) <= set(values)
    phi = sampled_shapley(values, orders)
    np.testing.assert_allclose(phi.sum(axis=1), values[(1 << m) - 1] - values[0], atol=1e-10)
    exact = exact_shapley(values, m)
    error = np.abs(phi - exact).mean() / np.abs(exact).mean()
    assert error < (1e-10 if m == 2 else 0.25), error  # two players: an order and its reverse are all orders


def test_orders_are_antithetic_pairs_and_seeded():
    orders = sample_orders(5, 10, seed=3)
    assert orders.shape == (10, 5)
    for first, second in zip(orders[::2], orders[1::2]):
        np.testing.assert_array_equal(first[::-1], second)
    np.testing.assert_array_equal(orders, sample_orders(5, 10, seed=3))
    assert not np.array_equal(orders, sample_orders(5, 10, seed=4))
    assert len(sample_orders(5, 7, seed=0)) == 8 and len(sample_orders(5, 1, seed=0)) == 2  # never fewer asked


@pytest.mark.parametrize("m", [1, 3, EXACT_MAX_MODALITIES])
def test_up_to_the_limit_the_plan_is_exact_over_every_coalition(m):
    plan = shapley_plan(m)
    assert plan.exact and plan.method == "exact" and plan.orders is None
    assert plan.masks == tuple(range(1 << m))
    values = random_game(m, seed=m)
    np.testing.assert_array_equal(plan.estimate(values), exact_shapley(values, m))


@pytest.mark.parametrize("m", [EXACT_MAX_MODALITIES + 1, 10, 16])
def test_beyond_the_limit_the_plan_samples_seeded_orders_and_names_fewer_coalitions(m):
    plan = shapley_plan(m)
    assert not plan.exact and plan.method == "sampled" and plan.orders.shape == (PERMUTATIONS, m)
    assert plan.masks == tuple(sorted(prefix_masks(plan.orders)))  # exactly the coalitions the orders pass through
    assert {0, (1 << m) - 1} <= set(plan.masks)  # the empty and the full coalition: the values' base and total
    assert len(plan.masks) <= PERMUTATIONS * (m - 1) + 2 and len(plan.masks) < 1 << m
    again = shapley_plan(m)  # seeded: the same request, the same answer
    np.testing.assert_array_equal(again.orders, plan.orders)
    assert again.masks == plan.masks
    assert not np.array_equal(shapley_plan(m, seed=1).orders, plan.orders)
    assert shapley_plan(m, permutations=8).orders.shape == (8, m)


def test_a_sampled_plan_estimates_from_its_own_coalitions_alone():
    m = EXACT_MAX_MODALITIES + 2
    plan = shapley_plan(m, permutations=16, seed=5)
    everything = random_game(m, n=3, k=2, seed=1)
    planned = {mask: everything[mask] for mask in plan.masks}  # what the runtime computes: nothing more
    phi = plan.estimate(planned)
    np.testing.assert_array_equal(phi, sampled_shapley(everything, plan.orders))
    np.testing.assert_allclose(phi.sum(axis=1), everything[(1 << m) - 1] - everything[0], atol=1e-10)
