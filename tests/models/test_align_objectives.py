"""Alignment objectives: contrastive (InfoNCE / SupCon), triplet, soft CCA and the VAE's pieces,
against values computed by hand on tiny inputs; the modules' pair handling and gradients."""

from __future__ import annotations

import math

import pytest
import torch

from polymodal.config.align import CcaAlignConfig, ContrastiveAlignConfig, TripletAlignConfig, VaeAlignConfig
from polymodal.models.objectives.align import (
    AlignInputs,
    StackedEmbeddingLoss,
    build_objective,
    info_nce,
    positive_mask,
    soft_cca_loss,
    triplet_loss,
)
from polymodal.models.objectives.vae import gaussian_kl, product_of_experts, standardise, vae_loss

# unit vectors: a0 = (1, 0), a1 = (0, 1); b0 = (1, 0), b1 = (0.6, 0.8)
ZA = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
ZB = torch.tensor([[1.0, 0.0], [0.6, 0.8]])


def nll(scores: list[float], pick: int) -> float:
    """-log softmax(scores)[pick], written out."""
    return -(scores[pick] - math.log(sum(math.exp(s) for s in scores)))


def test_positive_mask_is_the_diagonal_or_equal_labels() -> None:
    assert torch.equal(positive_mask(None, 3), torch.eye(3, dtype=torch.bool))
    labels = torch.tensor([0, 1, 0])
    expected = torch.tensor([[True, False, True], [False, True, False], [True, False, True]])
    assert torch.equal(positive_mask(labels, 3), expected)


def test_info_nce_matches_hand_computed_value() -> None:
    scale = 2.0
    # cosine similarities s[i][j] = a_i . b_j: [[1, 0.6], [0, 0.8]], times the scale
    s = [[2.0, 1.2], [0.0, 1.6]]
    a_to_b = (nll(s[0], 0) + nll(s[1], 1)) / 2
    b_to_a = (nll([s[0][0], s[1][0]], 0) + nll([s[0][1], s[1][1]], 1)) / 2
    result = info_nce(ZA, ZB, scale)
    assert result.loss.item() == pytest.approx((a_to_b + b_to_a) / 2, abs=1e-6)
    assert result.logs["accuracy"].item() == pytest.approx(1.0)  # each a_i's best b is its partner


def test_info_nce_normalises_its_inputs() -> None:
    assert info_nce(3 * ZA, 0.5 * ZB, 2.0).loss.item() == pytest.approx(info_nce(ZA, ZB, 2.0).loss.item(), abs=1e-6)


def test_supervised_contrastive_averages_over_every_positive() -> None:
    za = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.8, 0.6]])
    zb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    labels = torch.tensor([0, 1, 0])  # rows 0 and 2 are the same class
    s = (za @ zb.T).tolist()  # all rows are unit vectors already
    pos = [[0, 2], [1], [0, 2]]
    a_to_b = sum(sum(nll(s[i], j) for j in pos[i]) / len(pos[i]) for i in range(3)) / 3
    cols = [[s[i][j] for i in range(3)] for j in range(3)]
    b_to_a = sum(sum(nll(cols[j], i) for i in pos[j]) / len(pos[j]) for j in range(3)) / 3
    result = info_nce(za, zb, 1.0, positive_mask(labels, 3))
    assert result.loss.item() == pytest.approx((a_to_b + b_to_a) / 2, abs=1e-6)


def test_triplet_loss_uses_the_hardest_negative() -> None:
    margin = 0.5
    # sims [[1, 0.6], [0, 0.8]]: a0: max(0, 0.5 + 0.6 - 1) = 0.1; a1: max(0, 0.5 + 0 - 0.8) = 0
    # b0 (column 0: [1, 0]): max(0, 0.5 + 0 - 1) = 0; b1 (column 1: [0.6, 0.8]): 0.5 + 0.6 - 0.8 = 0.3
    result = triplet_loss(ZA, ZB, margin, negatives="hardest")
    assert result.loss.item() == pytest.approx((0.1 + 0.0 + 0.0 + 0.3) / 4, abs=1e-6)
    assert result.logs["gap"].item() == pytest.approx((0.4 + 0.8 + 1.0 + 0.2) / 4, abs=1e-6)


def test_semihard_triplet_takes_the_closest_negative_below_the_positive() -> None:
    za = torch.eye(3)
    zb = torch.tensor([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [0.0, 0.6, 0.8]])
    # sims [[1, .8, 0], [0, .6, .6], [0, 0, .8]], margin .5
    # a->b: a0 pos 1, negs .8/0 -> .8: .3 | a1 pos .6, negs 0/.6 -> semi-hard 0: 0 (hardest .6: .5) | a2: 0
    # b->a: b0 col [1, 0, 0]: 0 | b1 col [.8, .6, 0] pos .6 -> semi-hard 0: 0 (hardest .8: .7) | b2 col [0, .6, .8]: .3
    assert triplet_loss(za, zb, 0.5, negatives="semihard").loss.item() == pytest.approx(0.6 / 6, abs=1e-6)
    assert triplet_loss(za, zb, 0.5, negatives="hardest").loss.item() == pytest.approx(1.8 / 6, abs=1e-6)


def test_semihard_triplet_falls_back_to_the_easiest_negative() -> None:
    za = torch.eye(3)
    zb = torch.tensor([[0.2, 0.0, math.sqrt(0.96)], [0.5, math.sqrt(0.75), 0.0], [0.9, math.sqrt(0.19), 0.0]])
    # sims [[.2, .5, .9], [0, .866, .436], [.980, 0, 0]], margin .1
    # a0: pos .2, no negative below -> easiest .5: .4 | a1: semi-hard .436 < .866: 0 | a2: pos 0, none below -> easiest 0: .1
    # b0 col [.2, 0, .98]: semi-hard 0: 0 | b1 col [.5, .866, 0]: 0 | b2 col [.9, .436, 0]: pos 0 -> easiest .436: .536
    expected = (0.4 + 0.1 + 0.1 + math.sqrt(0.19)) / 6
    assert triplet_loss(za, zb, 0.1, negatives="semihard").loss.item() == pytest.approx(expected, abs=1e-5)


def test_triplet_loss_with_label_positives_takes_the_hardest_positive() -> None:
    za = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    zb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    positives = positive_mask(torch.tensor([0, 1, 0]), 3)
    # a->b sims: a0 [1, 0, .6], a1 [0, 1, .8], a2 [1, 0, .6]
    # a0: hardest pos min(1, .6) = .6, hardest neg 0 -> 0.2 + 0 - .6 < 0 -> 0 ; a1: pos 1, neg .8 -> 0 ; a2 as a0 -> 0
    # b->a (columns): b0 [1, 0, 1]: pos min(1, 1)=1, neg 0 -> 0 ; b1 [0, 1, 0]: pos 1, neg 0 -> 0
    # b2 [.6, .8, .6]: pos .6, neg .8 -> 0.2 + .8 - .6 = 0.4
    assert triplet_loss(za, zb, 0.2, positives, negatives="hardest").loss.item() == pytest.approx(0.4 / 6, abs=1e-6)


def test_triplet_loss_without_negatives_is_a_zero_that_keeps_the_graph() -> None:
    za = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    positives = torch.ones(2, 2, dtype=torch.bool)
    result = triplet_loss(za, ZB, 0.2, positives, negatives="semihard")
    assert result.loss.item() == 0.0
    result.loss.backward()
    assert za.grad is not None


def test_soft_cca_matches_hand_computed_value() -> None:
    za = torch.tensor([[1.0], [-1.0]])  # mean 0, variance (1 + 1) / (2 - 1) = 2 -> (2 - 1)^2 = 1
    zb = torch.tensor([[2.0], [0.0]])  # mean 1, variance 2 -> 1; mean^2 = 1
    # match: ((1 - 2)^2 + (-1 - 0)^2) / 2 / dim = 1; penalty: (1 + 0) + (1 + 1) = 3
    assert soft_cca_loss(za, zb, decorrelation=0.5).loss.item() == pytest.approx(1.0 + 0.5 * 3.0, abs=1e-6)


def test_soft_cca_is_zero_for_identical_whitened_views() -> None:
    z = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]]) * math.sqrt(3 / 4)  # cov = I
    result = soft_cca_loss(z, z.clone())
    assert result.loss.item() == pytest.approx(0.0, abs=1e-6)
    assert result.logs["correlation"].item() == pytest.approx(1.0, abs=1e-6)


def test_product_of_experts_by_hand() -> None:
    mus = [torch.tensor([[1.0]]), torch.tensor([[3.0]])]
    logvars = [torch.zeros(1, 1), torch.zeros(1, 1)]  # unit variance: precision 1 each, plus the prior's 1
    mu, logvar = product_of_experts(mus, logvars, [torch.tensor([True]), torch.tensor([True])])
    assert mu.item() == pytest.approx(4.0 / 3.0)
    assert logvar.item() == pytest.approx(-math.log(3.0))
    mu, logvar = product_of_experts(mus, logvars, [torch.tensor([True]), torch.tensor([False])])  # second absent
    assert mu.item() == pytest.approx(0.5)
    assert logvar.item() == pytest.approx(-math.log(2.0))


def test_gaussian_kl_by_hand() -> None:
    mu, logvar = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, math.log(2.0)]])
    # 0.5 * [(1 + 1 - 1 - 0) + (2 + 0 - 1 - log 2)]
    assert gaussian_kl(mu, logvar).item() == pytest.approx(0.5 * (1.0 + 1.0 - math.log(2.0)))


def test_vae_loss_without_sampling_is_the_deterministic_elbo() -> None:
    decoders = {"a": torch.nn.Identity(), "b": torch.nn.Identity()}
    mus = {"a": torch.tensor([[1.0]]), "b": torch.tensor([[3.0]])}
    logvars = {"a": torch.zeros(1, 1), "b": torch.zeros(1, 1)}
    targets = {"a": torch.tensor([[0.0]]), "b": torch.tensor([[2.0]])}
    present = {"a": torch.tensor([True]), "b": torch.tensor([True])}
    result = vae_loss(mus, logvars, targets, present, decoders, beta=1.0, sample=False)

    def part(mu: float, var: float) -> float:  # recon of both targets from z = mu, plus KL; width 2
        recon = 0.5 * ((mu - 0.0) ** 2 + (mu - 2.0) ** 2)
        return (recon + 0.5 * (var + mu * mu - 1.0 - math.log(var))) / 2

    expected = part(4 / 3, 1 / 3) + part(0.5, 0.5) + part(1.5, 0.5)  # joint, a alone, b alone
    assert result.loss.item() == pytest.approx(expected, abs=1e-5)
    assert set(result.logs) == {"kl_joint", "kl_a", "kl_b"}


def test_vae_loss_reconstructs_only_the_modalities_a_row_holds() -> None:
    decoders = {"a": torch.nn.Identity(), "b": torch.nn.Identity()}
    mus = {"a": torch.tensor([[1.0]]), "b": torch.tensor([[3.0]])}
    logvars = {"a": torch.zeros(1, 1), "b": torch.zeros(1, 1)}
    targets = {"a": torch.tensor([[0.0]]), "b": torch.tensor([[2.0]])}
    present = {"a": torch.tensor([True]), "b": torch.tensor([False])}  # b is absent: no expert, no target
    result = vae_loss(mus, logvars, targets, present, decoders, beta=1.0, sample=False)
    # joint and a-alone posteriors are both a's expert with the prior: mean 1/2, variance 1/2; b alone covers no row
    recon = 0.5 * (0.5 - 0.0) ** 2  # a's target only
    kl = 0.5 * (0.5 + 0.25 - 1.0 - math.log(0.5))
    assert result.loss.item() == pytest.approx(2 * (recon + kl) / 2, abs=1e-6)
    assert set(result.logs) == {"kl_joint", "kl_a"}


def test_reconstruction_targets_are_standardised_with_the_present_rows_only() -> None:
    features = torch.tensor([[0.0], [2.0], [100.0]])
    out = standardise(features, torch.tensor([True, True, False]))
    # present rows 0 and 2: mean 1, sample std sqrt(((0 - 1)^2 + (2 - 1)^2) / 1) = sqrt(2)
    expected = (torch.tensor([[0.0], [2.0], [100.0]]) - 1.0) / math.sqrt(2.0)
    torch.testing.assert_close(out, expected)


def embeddings(batch: int = 6, dim: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {n: torch.randn(batch, dim, generator=gen, requires_grad=True) for n in ("x", "y", "z")}


@pytest.mark.parametrize("cfg", [ContrastiveAlignConfig(dim=4), TripletAlignConfig(dim=4), CcaAlignConfig(dim=4),
                                 VaeAlignConfig(dim=4, hidden=[8])], ids=lambda c: c.objective)
def test_every_objective_gives_gradients_to_every_modality_and_parameter(cfg) -> None:
    z = embeddings()
    features = {n: torch.randn(6, 5) for n in z}
    objective = build_objective(cfg, [("x", "y"), ("x", "z")], {n: 5 for n in z})
    present = {n: torch.ones(6, dtype=torch.bool) for n in z}
    result = objective(AlignInputs(z, features, present))
    assert torch.isfinite(result.loss)
    result.loss.backward()
    for name, tensor in z.items():
        assert tensor.grad is not None and tensor.grad.abs().sum() > 0, name
    for name, param in objective.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_pairwise_objective_scores_only_rows_where_both_modalities_are_present() -> None:
    z = embeddings()
    objective = build_objective(ContrastiveAlignConfig(dim=4, learn_temperature=False, temperature=0.5),
                                [("x", "y")], {})
    present = {"x": torch.tensor([True, True, False, True, True, True]),
               "y": torch.tensor([True, True, True, True, False, True])}
    rows = torch.tensor([0, 1, 3, 5])
    expected = info_nce(z["x"][rows], z["y"][rows], 2.0).loss
    assert objective(AlignInputs(z, {}, present)).loss.item() == pytest.approx(expected.item(), abs=1e-6)


def test_pairwise_objective_averages_over_its_pairs() -> None:
    z = embeddings()
    present = {n: torch.ones(6, dtype=torch.bool) for n in z}
    objective = build_objective(TripletAlignConfig(dim=4, margin=0.3), [("x", "y"), ("x", "z")], {})
    expected = (triplet_loss(z["x"], z["y"], 0.3, negatives="semihard").loss  # the config's default
                + triplet_loss(z["x"], z["z"], 0.3, negatives="semihard").loss) / 2
    assert objective(AlignInputs(z, {}, present)).loss.item() == pytest.approx(expected.item(), abs=1e-6)


def test_pairwise_objective_uses_label_positives_when_given() -> None:
    z = embeddings()
    present = {n: torch.ones(6, dtype=torch.bool) for n in z}
    labels = torch.tensor([0, 1, 0, 1, 2, 2])
    objective = build_objective(ContrastiveAlignConfig(dim=4, learn_temperature=False, temperature=1.0),
                                [("x", "y")], {})
    expected = info_nce(z["x"], z["y"], 1.0, positive_mask(labels, 6)).loss
    got = objective(AlignInputs(z, {}, present, labels)).loss
    assert got.item() == pytest.approx(expected.item(), abs=1e-6)
    assert got.item() != pytest.approx(info_nce(z["x"], z["y"], 1.0).loss.item(), abs=1e-4)


def test_learnable_temperature_is_a_parameter_and_a_fixed_one_is_not() -> None:
    learned = build_objective(ContrastiveAlignConfig(dim=4, temperature=0.1), [("x", "y")], {})
    fixed = build_objective(ContrastiveAlignConfig(dim=4, temperature=0.1, learn_temperature=False), [("x", "y")], {})
    assert [n for n, _ in learned.named_parameters()] == ["log_scale"]
    assert list(fixed.parameters()) == []
    assert learned.log_scale.exp().item() == pytest.approx(10.0, rel=1e-5)


def test_stacked_embedding_loss_skips_absent_rows() -> None:
    z = {n: torch.nn.functional.normalize(t.detach(), dim=-1) for n, t in embeddings().items() if n != "z"}
    z["y"][2] = 0.0  # row 2 lacks y
    stacked = torch.cat([z["x"], z["y"]], dim=-1)
    keep = torch.tensor([0, 1, 3, 4, 5])
    expected = info_nce(z["x"][keep], z["y"][keep], 1 / 0.05).loss
    loss = StackedEmbeddingLoss(["x", "y"], [("x", "y")])(stacked).loss
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)
