"""Shapley values and pairwise interactions over modalities, from coalition values: the one
plan and estimate ``explain`` (:mod:`polymodal.evaluation.attribution`) and the torch-free runtime
(``Runtime.explain``, ``POST /explain``) share (numpy only).

``values[mask]`` holds the scores (N, K) with only the modalities of bit mask ``mask`` present
(bit i = the i-th modality in sorted order). Exact Shapley values need all 2^M coalitions;
permutation sampling needs only the prefixes of the sampled orders. :func:`shapley_plan` chooses
between them (exact up to :data:`EXACT_MAX_MODALITIES` modalities, sampled beyond) and names the
coalitions to evaluate; :meth:`ShapleyPlan.estimate` turns their values into Shapley values. Both
satisfy efficiency exactly: per sample, the values add up to ``values[all] - values[none]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from math import factorial

import numpy as np

EXACT_MAX_MODALITIES = 6
# the sampled orders beyond EXACT_MAX_MODALITIES, and their seed, unless a caller asks otherwise:
# ``explain``'s defaults and the runtime's, so that both give the same values for the same rows
PERMUTATIONS = 64
SEED = 0


@dataclass(frozen=True, eq=False)  # its orders are an array: no meaningful ==
class ShapleyPlan:
    """How Shapley values over ``m`` modalities are computed.

    Attributes:
        m: the number of modalities.
        masks: the coalition bit masks whose values :meth:`estimate` needs, ascending (the empty
            and the full one included).
        orders: (P, m) the sampled modality orders, or None: exact, over all 2^m coalitions.
    """

    m: int
    masks: tuple[int, ...]
    orders: np.ndarray | None

    @property
    def exact(self) -> bool:
        """Whether the values are exact (else estimated from the sampled orders)."""
        return self.orders is None

    @property
    def method(self) -> str:
        """``exact`` or ``sampled``, as ``POST /explain`` reports it."""
        return "exact" if self.exact else "sampled"

    def estimate(self, values: Mapping[int, np.ndarray]) -> np.ndarray:
        """Shapley values (N, m, K) from the values (N, K) of at least the coalitions of :attr:`masks`."""
        return exact_shapley(values, self.m) if self.orders is None else sampled_shapley(values, self.orders)


def shapley_plan(m: int, permutations: int = PERMUTATIONS, seed: int = SEED) -> ShapleyPlan:
    """The plan for ``m`` modalities: exact up to :data:`EXACT_MAX_MODALITIES` (every coalition),
    else ``permutations`` seeded orders (:func:`sample_orders`) and the coalitions they pass
    through, so that the same call gives the same values."""
    if m <= EXACT_MAX_MODALITIES:
        return ShapleyPlan(m, tuple(range(1 << m)), None)
    orders = sample_orders(m, permutations, seed)
    return ShapleyPlan(m, tuple(sorted(prefix_masks(orders))), orders)


def exact_shapley(values: Mapping[int, np.ndarray], m: int) -> np.ndarray:
    """Exact Shapley values.

    Args:
        values: scores (N, K) for each of the 2^m coalition masks.
        m: number of modalities.

    Returns:
        (N, m, K) the contribution of each modality to each output of each sample.
    """
    weight = [factorial(s) * factorial(m - s - 1) / factorial(m) for s in range(m)]
    first = values[0]
    phi = np.zeros((first.shape[0], m, first.shape[1]), np.float64)
    for i in range(m):
        bit = 1 << i
        for mask in range(1 << m):
            if not mask & bit:
                phi[:, i] += weight[mask.bit_count()] * (values[mask | bit] - values[mask])
    return phi


def shapley_interactions(values: Mapping[int, np.ndarray], m: int) -> np.ndarray:
    """Pairwise Shapley interaction indices (Grabisch, 1997).

    ``I[i, j] = sum over S without i, j of |S|! (m-|S|-2)! / (m-1)! * (v(S+i+j) - v(S+i) - v(S+j) + v(S))``:
    positive when the two modalities are worth more together than apart (complementary, as in
    XOR), negative when either makes the other redundant.

    Returns:
        (N, m, m, K), symmetric, zero on the diagonal.
    """
    first = values[0]
    out = np.zeros((first.shape[0], m, m, first.shape[1]), np.float64)
    for i in range(m):
        for j in range(i + 1, m):
            both = (1 << i) | (1 << j)
            for mask in range(1 << m):
                if mask & both:
                    continue
                s = mask.bit_count()
                weight = factorial(s) * factorial(m - s - 2) / factorial(m - 1)
                delta = values[mask | both] - values[mask | (1 << i)] - values[mask | (1 << j)] + values[mask]
                out[:, i, j] += weight * delta
            out[:, j, i] = out[:, i, j]
    return out


def sample_orders(m: int, permutations: int, seed: int) -> np.ndarray:
    """(P, m) modality orders: ``permutations`` rounded up to an even number, half of them random
    and each followed by its reverse (antithetic sampling halves the variance for near-additive
    models)."""
    rng = np.random.default_rng(seed)
    half = [rng.permutation(m) for _ in range(max(1, (permutations + 1) // 2))]
    return np.asarray([order for p in half for order in (p, p[::-1])])


def prefix_masks(orders: np.ndarray) -> set[int]:
    """Every coalition mask the orders pass through (including empty and full)."""
    masks = {0}
    for order in orders:
        mask = 0
        for i in order:
            mask |= 1 << int(i)
            masks.add(mask)
    return masks


def sampled_shapley(values: Mapping[int, np.ndarray], orders: np.ndarray) -> np.ndarray:
    """Shapley values estimated from sampled orders: each modality's mean marginal contribution
    when added in that order. ``values`` must hold every mask of :func:`prefix_masks`.

    Returns:
        (N, m, K).
    """
    m = orders.shape[1]
    first = values[0]
    phi = np.zeros((first.shape[0], m, first.shape[1]), np.float64)
    for order in orders:
        mask = 0
        for i in order:
            grown = mask | (1 << int(i))
            phi[:, int(i)] += values[grown] - values[mask]
            mask = grown
    return phi / len(orders)
