"""Transfer loss terms on hand-made step contexts: which view FixMatch labels, the pseudo-label
ramp-up, distillation's row lookup, prototypes per class index, the main task's columns, and the
term each method adds."""

from __future__ import annotations

import typing
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from helpers_models import classification_config
from torch import nn
from torch.nn import functional as F

from polymodal.config import load_config
from polymodal.config.transfer import AnyTransfer
from polymodal.data.manifest import read_manifest
from polymodal.data.multitarget import MultiTargetEncoder
from polymodal.data.targets import TargetEncoder
from polymodal.models.fusion.base import FusedOutput
from polymodal.models.heads import PrototypeHead
from polymodal.models.model import NetOutput
from polymodal.training.distill import DistillTerm, TeacherOutputs
from polymodal.training.fewshot import EpisodeSampler, PrototypicalTerm, set_class_prototypes
from polymodal.training.semi import FixMatchTerm, PseudoLabelTerm
from polymodal.training.terms import TRANSFER_TERMS, StepContext, TaskTerm, Term
from polymodal.training.transfer import TransferPlan, main_classes


def unlabeled_context(outputs: torch.Tensor, views: dict[str, slice], progress: float = 1.0) -> StepContext:
    return StepContext(None, {}, {}, None, {"views": views}, progress, NetOutput(outputs, {}))


def test_fixmatch_labels_the_strong_view_with_the_confident_weak_view():
    weak = torch.tensor([[5.0, 0.0], [0.1, 0.0]])  # row 0 confident (p = 0.993), row 1 not (p = 0.52)
    strong = torch.tensor([[0.0, 1.0], [1.0, 0.0]], requires_grad=True)  # neither confident
    outputs = torch.cat([weak, strong])
    term = FixMatchTerm({}, threshold=0.9, weight=1.0, magnitude=1.0, erase=0.0, classes=slice(0, 2))
    result = term(unlabeled_context(outputs, {"rows": slice(0, 2), "strong": slice(2, 4)}))
    expected = F.cross_entropy(strong[:1], torch.tensor([0])) / 2  # one confident row, averaged over both
    assert result.loss.item() == pytest.approx(expected.item())
    assert result.logs["mask"].item() == pytest.approx(0.5)


@pytest.mark.parametrize(("progress", "scale"), [(0.25, 0.5), (0.5, 1.0), (1.0, 1.0)])
def test_pseudo_label_ramp_up_rises_linearly_then_stays_at_one(progress, scale):
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 3.0]])
    plain = F.cross_entropy(logits, torch.tensor([0, 2])).item()  # threshold 0: every row is its own label
    term = PseudoLabelTerm(threshold=0.0, weight=1.0, rampup=0.5, classes=slice(0, 3))
    loss = term(unlabeled_context(logits, {"rows": slice(0, 2)}, progress)).loss.item()
    assert loss == pytest.approx(scale * plain)


def test_distillation_looks_up_the_teacher_rows_of_the_batch():
    gen = torch.Generator().manual_seed(0)
    teacher_logits, teacher_features = torch.randn(4, 3, generator=gen), torch.randn(4, 5, generator=gen)
    term = DistillTerm(TeacherOutputs((teacher_logits, teacher_features)), student_dim=2, temperature=2.0,
                       feature_weight=0.5, weight=1.0, classes=slice(0, 3))
    student, pooled = torch.randn(2, 3, generator=gen), torch.randn(2, 2, generator=gen)
    rows = torch.tensor([3, 1])  # the batch holds training rows 3 and 1, in that order
    out = NetOutput(student, {}, None, FusedOutput(pooled, None, None))
    result = term(StepContext(None, {"index": rows}, {}, out, None, 1.0))
    p_t = F.softmax(teacher_logits[rows] / 2, dim=1)
    kl = (p_t * (p_t.log() - F.log_softmax(student / 2, dim=1))).sum(1).mean() * 4
    feature = F.mse_loss(term.loss.project(pooled), teacher_features[rows])
    assert result.loss.item() == pytest.approx((kl + 0.5 * feature).item(), rel=1e-5)
    # the teacher's tables are not buffers, which DDP would broadcast from rank 0 at every step
    assert [name for name, _ in term.named_buffers()] == []


def test_distillation_teaches_the_unlabelled_rows_of_the_step_too():
    """With unlabelled rows, the term covers the labelled and the unlabelled batch (its rows as
    loaded: a view FixMatch appended is not taught), each looked up in its own teacher table."""
    gen = torch.Generator().manual_seed(0)
    labeled = torch.randn(4, 3, generator=gen), torch.randn(4, 5, generator=gen)
    unlabeled = torch.randn(6, 3, generator=gen), torch.randn(6, 5, generator=gen)
    term = DistillTerm(TeacherOutputs(labeled, unlabeled), student_dim=2, temperature=1.0, feature_weight=0.5,
                       weight=1.0, classes=slice(0, 3))
    student, pooled = torch.randn(2, 3, generator=gen), torch.randn(2, 2, generator=gen)
    u_student, u_pooled = torch.randn(4, 3, generator=gen), torch.randn(4, 2, generator=gen)  # 2 rows + a 2-row view
    rows, u_rows = torch.tensor([3, 1]), torch.tensor([5, 0])
    ctx = StepContext(None, {"index": rows}, {}, NetOutput(student, {}, None, FusedOutput(pooled, None, None)),
                      {"index": u_rows, "views": {"rows": slice(0, 2), "strong": slice(2, 4)}}, 1.0,
                      NetOutput(u_student, {}, None, FusedOutput(u_pooled, None, None)))
    result = term(ctx)
    logits, features = torch.cat([student, u_student[:2]]), torch.cat([pooled, u_pooled[:2]])
    t_logits = torch.cat([labeled[0][rows], unlabeled[0][u_rows]])
    t_features = torch.cat([labeled[1][rows], unlabeled[1][u_rows]])
    p_t = F.softmax(t_logits, dim=1)
    kl = (p_t * (p_t.log() - F.log_softmax(logits, dim=1))).sum(1).mean()
    feature = F.mse_loss(term.loss.project(features), t_features)
    assert result.loss.item() == pytest.approx((kl + 0.5 * feature).item(), rel=1e-5)


class _Embedder(nn.Module):
    """A network whose fused representation is its input ``z`` and whose head holds prototypes."""

    def __init__(self, n_classes: int, dim: int):
        super().__init__()
        self.head = PrototypeHead(nn.Identity(), n_classes, dim)

    def fuse(self, inputs, present):
        return inputs["z"]


def test_class_prototypes_land_at_their_class_index_and_absent_classes_keep_theirs():
    net = _Embedder(3, 2)
    net.head.set_prototypes(torch.full((3, 2), 7.0))
    z = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0], [0.0, 6.0]])
    loader = [{"inputs": {"z": z[:2]}, "present": {}}, {"inputs": {"z": z[2:]}, "present": {}}]
    set_class_prototypes(net, loader, np.array([0, 0, 2, 2]), torch.device("cpu"))  # no row of class 1
    torch.testing.assert_close(net.head.prototypes, torch.tensor([[1.0, 0.0], [7.0, 7.0], [0.0, 5.0]]))


def test_running_prototypes_restored_from_a_checkpoint_are_blended_into_not_replaced():
    """``seen`` is not saved: after a resume, a class's first episode mixes into its restored
    prototype (momentum 0.9) as the uninterrupted fit would, where a fresh class takes the mean."""
    head = PrototypeHead(nn.Identity(), 2, 2)
    head.load_state_dict({"prototypes": torch.tensor([[10.0, 0.0], [0.0, 0.0]])})  # class 1 never trained
    head.update(torch.tensor([[0.0, 0.0], [4.0, 2.0]]), torch.tensor([0, 1]))
    torch.testing.assert_close(head.prototypes, torch.tensor([[9.0, 0.0], [4.0, 2.0]]))
    head.update(torch.tensor([[0.0, 0.0], [0.0, 0.0]]), torch.tensor([0, 1]))  # both seen now: blended
    torch.testing.assert_close(head.prototypes, torch.tensor([[8.1, 0.0], [3.6, 1.8]]))


def test_main_classes_are_the_main_tasks_columns_of_a_multi_task_model():
    frame = pd.DataFrame({"label": ["a", "b", "c", "a"], "h": [1.0, 2.0, 3.0, 4.0], "w": [0.0, 1.0, 0.0, 1.0]})
    manifest = read_manifest(frame)
    single = TargetEncoder("classification", ["label"]).fit(manifest)
    assert main_classes(single) == slice(0, 3)
    multi = MultiTargetEncoder(TargetEncoder("classification", ["label"]),
                               {"size": TargetEncoder("regression", ["h", "w"])}).fit(manifest)
    assert main_classes(multi) == slice(0, 3)  # not the 3 + 2 outputs of both tasks


def test_episodes_leave_out_classes_with_no_row_beyond_the_support_shots():
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2])  # class 2 has only the two support rows, no query
    sampler = EpisodeSampler(labels, ways=3, shots=2, queries=1, episodes=20, seed=0)
    assert sampler.ways == 2
    for episode in sampler:
        assert len(episode) == 6 and set(labels[episode]) == {0, 1}  # two classes of shots + queries rows
    with pytest.raises(ValueError, match="at least 2 classes"):
        EpisodeSampler(np.array([0, 0, 0, 1, 1]), ways=2, shots=2, queries=1, episodes=1)


def test_under_ddp_each_rank_draws_its_own_share_of_the_episodes(monkeypatch):
    labels = np.repeat(np.arange(6), 10)
    single = list(EpisodeSampler(labels, ways=3, shots=2, queries=2, episodes=7, seed=5))
    ranks = []
    for rank in (0, 1):
        monkeypatch.setattr(EpisodeSampler, "_rank_and_world", staticmethod(lambda rank=rank: (rank, 2)))
        sampler = EpisodeSampler(labels, ways=3, shots=2, queries=2, episodes=7, seed=5)
        assert len(sampler) == 4  # ceil(7 / 2)
        ranks.append(list(sampler))
    assert ranks[0] == single[:4]  # rank 0 continues the single-process stream
    assert all(a != b for a, b in zip(*ranks))  # rank 1 draws other episodes


def test_every_transfer_method_in_the_schema_has_a_registered_term():
    in_schema = set(typing.get_args(typing.get_args(AnyTransfer)[0]))
    assert in_schema == {cfg_cls for cfg_cls, _ in TRANSFER_TERMS.items()}


@pytest.mark.parametrize(("transfer", "names"), [({"method": "pseudo_label"}, ["task", "term", "pseudo"]),
                                                 ({"method": "protonet"}, ["proto", "term"])])
def test_a_method_adds_its_term_and_protonet_replaces_the_task_term(transfer, names):
    config = load_config({**classification_config(), "transfer": transfer})
    pipeline = SimpleNamespace(targets=SimpleNamespace(n_outputs=3, task_outputs=None))
    plan = TransferPlan(config, pipeline, None, np.zeros(0))
    terms = plan.terms(None, [TaskTerm(None), Term()])
    assert [t.name for t in terms] == names
    assert any(isinstance(t, PrototypicalTerm) for t in terms) == (transfer["method"] == "protonet")
