"""``polymodal.training.module``: modality dropout, the training step, optimiser groups, LR schedule."""

from __future__ import annotations

import math
import types
import warnings

import pytest
import torch
from torch import nn

from polymodal.models.encoders.base import Encoder
from polymodal.models.model import NetOutput
from polymodal.models.objectives import TaskLoss
from polymodal.training.module import (
    OptimSettings,
    PolymodalModule,
    cosine_with_warmup,
    drop_modalities,
    parameter_groups,
)


def presence(rows: list[str], names: str = "abc") -> dict[str, torch.Tensor]:
    """{'a': tensor([...]), ...} from strings like 'ab' (the modalities present in each sample)."""
    return {n: torch.tensor([n in r for r in rows]) for n in names}


def random_presence(n: int, seed: int = 0, names: str = "abc") -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {name: torch.rand(n, generator=g) < 0.7 for name in names}


def matrix(present: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.stack([present[n] for n in sorted(present)], dim=1)


# -- drop_modalities -------------------------------------------------------------------------
def test_rate_one_always_hides_a_modality_unless_it_is_all_a_sample_has():
    present = presence(["abc", "ab", "ac", "a", "bc", "", "a"] * 50)
    g = torch.Generator().manual_seed(0)
    out = drop_modalities(present, {"a": 1.0}, generator=g)
    has_other = present["b"] | present["c"]
    assert not out["a"][has_other].any(), "'a' survived in a sample that had another modality"
    assert torch.equal(out["a"][~has_other], present["a"][~has_other]), "a sample lost its only modality"
    assert torch.equal(out["b"], present["b"]) and torch.equal(out["c"], present["c"])


@pytest.mark.parametrize("rates", [{}, {"a": 0.0, "b": 0.0, "c": 0.0}], ids=["no-rates", "zero-rates"])
def test_rate_zero_changes_nothing(rates):
    present = random_presence(500)
    out = drop_modalities(present, rates, generator=torch.Generator().manual_seed(1))
    assert sorted(out) == sorted(present)
    for name in present:
        assert torch.equal(out[name], present[name])


def test_a_sample_never_loses_all_its_modalities_and_never_gains_one():
    present = random_presence(4000, seed=2)
    out = drop_modalities(present, {"a": 1.0, "b": 1.0, "c": 0.9}, generator=torch.Generator().manual_seed(3))
    before, after = matrix(present), matrix(out)
    assert not (after & ~before).any(), "a modality appeared that the sample did not have"
    had_any = before.any(dim=1)
    assert bool(after[had_any].any(dim=1).all()), "a sample lost every modality"
    assert not after[~had_any].any(), "a sample without modalities gained one"


def test_with_every_rate_one_each_sample_keeps_exactly_one_of_its_modalities_at_random():
    present = presence(["abc"] * 6000 + ["ab"] * 6000)
    out = matrix(drop_modalities(present, {"a": 1.0, "b": 1.0, "c": 1.0}, generator=torch.Generator().manual_seed(4)))
    assert bool((out.sum(dim=1) == 1).all())
    three, two = out[:6000].float().mean(dim=0), out[6000:].float().mean(dim=0)
    torch.testing.assert_close(three, torch.full((3,), 1 / 3), atol=0.03, rtol=0)
    torch.testing.assert_close(two, torch.tensor([0.5, 0.5, 0.0]), atol=0.03, rtol=0)


def test_dropout_frequency_matches_the_rate():
    present = presence(["abc"] * 20000)
    out = drop_modalities(present, {"b": 0.3}, generator=torch.Generator().manual_seed(5))
    assert abs((~out["b"]).float().mean().item() - 0.3) < 0.015
    assert out["a"].all() and out["c"].all()


def test_the_generator_makes_dropout_reproducible():
    present = random_presence(1000, seed=6)
    rates = {"a": 0.5, "b": 0.5, "c": 0.5}
    first = drop_modalities(present, rates, generator=torch.Generator().manual_seed(7))
    again = drop_modalities(present, rates, generator=torch.Generator().manual_seed(7))
    other = drop_modalities(present, rates, generator=torch.Generator().manual_seed(8))
    assert all(torch.equal(first[n], again[n]) for n in present)
    assert not all(torch.equal(first[n], other[n]) for n in present)


# -- the training step -------------------------------------------------------------------------
class RecordingNet(nn.Module):
    """Stands in for MultimodalNet: returns fixed logits and records what it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(2))
        self.seen: list[dict[str, torch.Tensor]] = []

    def forward(self, inputs, present):
        self.seen.append({k: v.clone() for k, v in present.items()})
        return self.bias.expand(len(next(iter(present.values()))), 2)

    def forward_train(self, inputs, present):
        return NetOutput(self.forward(inputs, present), {})


def _module(rates: dict[str, float] | None) -> PolymodalModule:
    return PolymodalModule(RecordingNet(), TaskLoss("classification"), OptimSettings(1e-3, 0.0, "none", 0.0),
                           metrics=lambda outputs, target: {}, modality_dropout=rates)


def _batch() -> dict:
    present = presence(["ab"] * 64 + ["a"] * 8, names="ab")
    return {"inputs": {}, "present": present, "target": torch.zeros(72, dtype=torch.long)}


def _step(module: PolymodalModule, batch: dict) -> torch.Tensor:
    with warnings.catch_warnings():  # self.log outside a Trainer only warns
        warnings.simplefilter("ignore")
        return module.training_step(batch, 0)


def test_training_step_applies_modality_dropout():
    module, batch = _module({"a": 1.0, "b": 0.0}), _batch()
    loss = _step(module, batch)
    seen = module.net.seen[-1]
    assert not seen["a"][:64].any(), "rate 1.0 must hide 'a' wherever 'b' is there"
    assert seen["a"][64:].all(), "samples with only 'a' keep it"
    assert batch["present"]["a"].all(), "the batch itself is left untouched"
    torch.testing.assert_close(loss, torch.tensor(math.log(2.0)))


def test_training_step_without_dropout_passes_presence_through():
    module, batch = _module({"a": 0.0}), _batch()
    assert module.modality_dropout == {}
    _step(module, batch)
    assert all(torch.equal(module.net.seen[-1][n], batch["present"][n]) for n in "ab")


class PresenceNet(RecordingNet):
    """Logits that depend on whether 'a' is present: class 0 gets 2 when it is, else 0."""

    def forward(self, inputs, present):
        self.seen.append({k: v.clone() for k, v in present.items()})
        a = present["a"].float() * 2.0
        return torch.stack([a, torch.zeros_like(a)], dim=1) + self.bias


def _validate(module: PolymodalModule, batch: dict, batch_idx: int = 0) -> dict[str, torch.Tensor]:
    logged: dict[str, torch.Tensor] = {}
    module.log = lambda key, value, **_: logged.__setitem__(key, value)
    module.validation_step(batch, batch_idx)
    module._log_epoch_means("val")  # what the validation epoch's end does
    return logged


def test_epoch_means_are_weighted_by_batch_size_and_logged_once_per_epoch():
    module = _module({"a": 0.0})
    calls: list[tuple[str, torch.Tensor, dict]] = []
    module.log = lambda key, value, **kw: calls.append((key, value, kw))
    module.log_epoch_mean("train", {"train_loss": torch.tensor(1.0), "train_x": 4.0}, 2)
    module.log_epoch_mean("train", {"train_loss": torch.tensor(3.0), "train_x": 0.0}, 6)
    module.log_epoch_mean("train", {"train_loss": torch.tensor(0.5), "train_rare": 9.0}, 4)
    module.log_epoch_mean("val", {"val_loss": torch.tensor(7.0)}, 5)
    assert calls == [], "nothing reaches Lightning per batch"
    module._log_epoch_means("train")
    assert [c[0] for c in calls] == ["train_loss", "train_x", "train_rare"]
    torch.testing.assert_close(calls[0][1], torch.tensor(22 / 12))  # (2 * 1 + 6 * 3 + 4 * 0.5) / 12
    # a value some batches do not report averages over the rows of those that do
    torch.testing.assert_close(calls[1][1], torch.tensor(1.0))  # (2 * 4 + 6 * 0) / 8
    torch.testing.assert_close(calls[2][1], torch.tensor(9.0))
    assert calls[0][2]["batch_size"] == 12 and calls[0][2]["on_epoch"] and not calls[0][2]["on_step"]
    assert calls[1][2]["batch_size"] == 8 and calls[2][2]["batch_size"] == 4
    calls.clear()
    module._log_epoch_means("val")
    assert [c[0] for c in calls] == ["val_loss"]
    calls.clear()
    module._log_epoch_means("train")
    assert calls == [], "a logged epoch starts the next from zero"


def test_validation_metrics_see_whole_rows_and_the_loss_sees_the_training_dropout():
    """With modality dropout, val_loss (what selects the kept epoch) is the loss under the same
    dropout, with masks seeded by the batch; the outputs for the metrics come from whole rows."""
    module = PolymodalModule(PresenceNet(), TaskLoss("classification"), OptimSettings(1e-3, 0.0, "none", 0.0),
                             metrics=lambda outputs, target: {}, modality_dropout={"a": 1.0})
    batch = _batch()
    logged = _validate(module, batch)
    first, *draws = module.net.seen
    assert all(torch.equal(first[n], batch["present"][n]) for n in "ab"), "the metrics' pass sees whole rows"
    assert len(draws) == 4 and all(not d["a"][:64].any() and d["a"][64:].all() for d in draws)
    full = -torch.log_softmax(torch.tensor([2.0, 0.0]), 0)[0]  # 'a' present: logits (2, 0), target 0
    hidden = torch.tensor(math.log(2.0))  # 'a' hidden: logits (0, 0)
    torch.testing.assert_close(logged["val_full_loss"], full)
    torch.testing.assert_close(logged["val_loss"], (64 * hidden + 8 * full) / 72)
    torch.testing.assert_close(module._val_outputs[-1][0], torch.tensor([2.0, 0.0]))


def test_validation_dropout_masks_repeat_every_epoch():
    module = PolymodalModule(PresenceNet(), TaskLoss("classification"), OptimSettings(1e-3, 0.0, "none", 0.0),
                             metrics=lambda outputs, target: {}, modality_dropout={"a": 0.5, "b": 0.5})
    batch = _batch()
    first = _validate(module, batch, batch_idx=3)["val_loss"]
    masks = [d["a"] for d in module.net.seen[1:]]
    module.net.seen.clear()
    assert torch.equal(_validate(module, batch, batch_idx=3)["val_loss"], first)
    assert all(torch.equal(a, d["a"]) for a, d in zip(masks, module.net.seen[1:], strict=True))
    assert not all(torch.equal(masks[0], m) for m in masks[1:]), "the draws differ from each other"


def test_validation_loss_is_the_mean_over_rows_across_uneven_batches():
    module = PolymodalModule(PresenceNet(), TaskLoss("classification"), OptimSettings(1e-3, 0.0, "none", 0.0),
                             metrics=lambda outputs, target: {})
    logged: dict[str, torch.Tensor] = {}
    module.log = lambda key, value, **_: logged.__setitem__(key, value)
    three_with_a = {"inputs": {}, "present": presence(["ab"] * 3, names="ab"), "target": torch.zeros(3, dtype=torch.long)}
    one_without = {"inputs": {}, "present": presence(["b"], names="ab"), "target": torch.zeros(1, dtype=torch.long)}
    module.validation_step(three_with_a, 0)
    module.validation_step(one_without, 1)
    module._log_epoch_means("val")
    with_a = -torch.log_softmax(torch.tensor([2.0, 0.0]), 0)[0]
    without = torch.tensor(math.log(2.0))
    torch.testing.assert_close(logged["val_loss"], (3 * with_a + without) / 4)


def test_distributed_validation_counts_each_row_once(monkeypatch):
    """Under DDP every rank's validation outputs are gathered; the distributed sampler pads the set
    to a multiple of the world size by repeating rows, which the metrics must see once."""
    seen: dict[str, torch.Tensor] = {}

    def metrics(outputs, target):
        seen["outputs"], seen["target"] = torch.as_tensor(outputs), torch.as_tensor(target)
        return {}

    module = PolymodalModule(RecordingNet(), TaskLoss("classification"), OptimSettings(1e-3, 0.0, "none", 0.0),
                             metrics=metrics)
    rank0 = (torch.tensor([[0.0, 1.0], [2.0, 3.0]]), torch.tensor([0, 1]), torch.tensor([0, 2]))
    rank1 = (torch.tensor([[4.0, 5.0], [0.0, 1.0]]), torch.tensor([1, 0]), torch.tensor([1, 0]))  # row 0 again: padding
    module._val_outputs, module._val_targets, module._val_index = [rank0[0]], [rank0[1]], [rank0[2]]
    gathered = iter(torch.stack([a, b]) for a, b in zip(rank0, rank1, strict=True))
    monkeypatch.setattr(module, "all_gather", lambda tensor: next(gathered))
    monkeypatch.setattr(type(module), "trainer", property(lambda self: types.SimpleNamespace(world_size=2)))
    module.log = lambda *args, **kwargs: None
    module.on_validation_epoch_end()
    torch.testing.assert_close(seen["outputs"], torch.tensor([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]))
    assert seen["target"].tolist() == [0, 1, 1]


def test_validation_without_dropout_logs_the_plain_loss():
    module, batch = _module({"a": 0.0}), _batch()
    logged = _validate(module, batch)
    assert set(logged) == {"val_loss"} and len(module.net.seen) == 1


# -- schedule and optimiser groups -----------------------------------------------------------
def test_cosine_with_warmup():
    factor = cosine_with_warmup(total=110, warmup=10)
    assert factor(0) == pytest.approx(0.1)
    assert factor(4) == pytest.approx(0.5)
    assert factor(9) == pytest.approx(1.0)
    assert factor(10) == pytest.approx(1.0)
    assert factor(60) == pytest.approx(0.5)
    assert factor(110) == pytest.approx(0.0, abs=1e-12)
    assert factor(500) == pytest.approx(0.0, abs=1e-12)
    after = [factor(s) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(after, after[1:]))


def test_cosine_without_warmup_starts_at_full_rate():
    factor = cosine_with_warmup(total=100, warmup=0)
    assert factor(0) == pytest.approx(1.0)
    assert factor(50) == pytest.approx(0.5)


class TinyEncoder(Encoder):
    def __init__(self, *layers: nn.Module, pretrained: bool = False) -> None:
        super().__init__()
        self.layers = nn.Sequential(*layers)
        self.pretrained = pretrained


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        pretrained = TinyEncoder(nn.Linear(4, 4), nn.LayerNorm(4), pretrained=True)
        scratch = TinyEncoder(nn.Linear(4, 4))
        frozen = TinyEncoder(nn.Linear(4, 4))
        frozen.requires_grad_(False)
        self.encoders = nn.ModuleDict({"pre": pretrained, "new": scratch, "ice": frozen})
        self.head = nn.Linear(4, 2)


def test_parameter_groups():
    net = TinyNet()
    settings = OptimSettings(lr=1e-3, weight_decay=0.05, scheduler="none", warmup_epochs=0.0, encoder_lr_scale=0.1)
    groups = parameter_groups(net, net.encoders, settings)
    where = {}
    for group in groups:
        for p in group["params"]:
            assert id(p) not in where, "a parameter is in two groups"
            where[id(p)] = (group["lr"], group["weight_decay"])
    names = {id(p): n for n, p in net.named_parameters()}
    trainable = {id(p) for p in net.parameters() if p.requires_grad}
    assert set(where) == trainable, "frozen parameters must be left out, trainable ones all in"
    for pid, (lr, decay) in where.items():
        name = names[pid]
        assert lr == pytest.approx(1e-4 if name.startswith("encoders.pre") else 1e-3), name
        no_decay = name.endswith(".bias") or name == "encoders.pre.layers.1.weight"  # biases and norm weights
        assert decay == (0.0 if no_decay else 0.05), name


def test_what_a_pretrained_encoder_adds_from_scratch_trains_at_the_full_rate(tmp_path):
    import timm

    from polymodal.config.encoders import TimmConfig
    from polymodal.config.video import FrameCnnConfig
    from polymodal.models.registry import ENCODERS

    torch.save(timm.create_model("resnet18", num_classes=0).state_dict(), tmp_path / "r18.pth")
    image = ENCODERS.build(TimmConfig(arch="resnet18", weights=tmp_path / "r18.pth", dim=8, lora={"r": 2}),
                           kind="image", in_channels=3)
    video = ENCODERS.build(FrameCnnConfig(frame={"name": "timm", "arch": "resnet18", "weights": tmp_path / "r18.pth"},
                                          temporal="gru", dim=8), kind="video", in_channels=3, size=(32, 32), frames=4)
    net = nn.Module()
    net.encoders = nn.ModuleDict({"img": image, "vid": video})
    settings = OptimSettings(lr=1e-3, weight_decay=0.0, scheduler="none", warmup_epochs=0.0, encoder_lr_scale=0.1)
    groups = parameter_groups(net, net.encoders, settings)
    rate = {id(p): g["lr"] for g in groups for p in g["params"]}
    for name, p in net.named_parameters():
        if not p.requires_grad:  # the LoRA-adapted backbone's own weights: frozen, left out
            assert id(p) not in rate, name
            continue
        new = ".proj." in name or ".lora_" in name or name.startswith("encoders.vid.temporal.")  # made, not loaded
        assert rate[id(p)] == pytest.approx(1e-3 if new else 1e-4), name
    names = [n for n, p in net.named_parameters() if p.requires_grad]
    assert all(any(part in n for n in names) for part in (".proj.", ".lora_", ".temporal.", "vid.frame.backbone."))


def test_class_tokens_and_position_tables_are_not_decayed():
    """What a submodule's no_weight_decay() names (timm's ViT; our Transformers' class token) is
    left out of weight decay, every other weight matrix decayed."""
    from polymodal.config.encoders import TextTransformerConfig, TimmConfig
    from polymodal.models.registry import ENCODERS

    net = nn.Module()
    net.encoders = nn.ModuleDict({
        "img": ENCODERS.build(TimmConfig(arch="vit_tiny_patch16_224"), kind="image", in_channels=3),
        "txt": ENCODERS.build(TextTransformerConfig(pooling="cls"), kind="text", vocab_size=50, pad_id=0)})
    settings = OptimSettings(lr=1e-3, weight_decay=0.05, scheduler="none", warmup_epochs=0.0, encoder_lr_scale=1.0)
    decay = {id(p): g["weight_decay"] for g in parameter_groups(net, net.encoders, settings) for p in g["params"]}
    undecayed = {n for n, p in net.named_parameters() if p.dim() > 1 and decay[id(p)] == 0.0}
    assert undecayed == {"encoders.img.backbone.cls_token", "encoders.img.backbone.pos_embed", "encoders.txt.core.cls"}
