"""Training options carried out by a real Lightning Trainer: the one-cycle learning-rate schedule,
TensorBoard logs in the run folder and gradient clipping (``train.grad_clip``)."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from polymodal.config.train import TrainConfig
from polymodal.models.model import NetOutput
from polymodal.models.objectives import TaskLoss
from polymodal.training.module import OptimSettings, PolymodalModule
from polymodal.training.trainer import fit_module

from .test_trainer import ScriptedModule, fit


def train_config(epochs: int, grad_clip: float | None = None) -> TrainConfig:
    return TrainConfig(epochs=epochs, progress=False, accelerator="cpu", early_stopping=None, grad_clip=grad_clip)


# -- one-cycle schedule ----------------------------------------------------------------------
class LinearNet(nn.Module):
    """Stands in for MultimodalNet: a linear layer over modality ``m``."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(3, 2)
        self.encoders = nn.ModuleDict()  # none: every parameter trains at the full rate

    def forward(self, inputs, present):
        return self.layer(inputs["m"]["x"])

    def forward_train(self, inputs, present):
        return NetOutput(self.forward(inputs, present), {})


class LearningRates(L.Callback):
    """The learning rate of the first parameter group before every training step."""

    def __init__(self) -> None:
        self.rates: list[float] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.rates.append(trainer.optimizers[0].param_groups[0]["lr"])


def batches(rows: int, batch_size: int) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(rows, 3, generator=g)
    y = (x[:, 0] > 0).long()

    def collate(items):
        xs, ys = zip(*items)
        present = torch.ones(len(xs), dtype=torch.bool)
        return {"inputs": {"m": {"x": torch.stack(xs)}}, "present": {"m": present}, "target": torch.stack(ys)}

    return DataLoader(TensorDataset(x, y), batch_size=batch_size, collate_fn=collate)


def test_onecycle_warms_up_to_the_configured_rate_then_anneals_every_step():
    lr, epochs, steps_per_epoch = 0.02, 5, 8
    recorder = LearningRates()
    module = PolymodalModule(LinearNet(), TaskLoss("classification"), OptimSettings(lr, 0.0, "onecycle", 0.0),
                             metrics=lambda outputs, target: {}, callbacks=[recorder])
    L.seed_everything(0, verbose=False)
    fit_module(module, batches(8 * steps_per_epoch, 8), batches(16, 8), train_config(epochs), run_dir=None,
               monitor="loss", mode="min")
    rates = recorder.rates
    assert len(rates) == epochs * steps_per_epoch, "the schedule steps once per batch, for every batch"
    peak = max(range(len(rates)), key=rates.__getitem__)
    assert rates[0] == pytest.approx(lr / 25) and rates[peak] == pytest.approx(lr)
    assert 0 < peak < len(rates) // 2, "the rise takes the first part of training (30%)"
    assert all(a < b for a, b in zip(rates[:peak], rates[1:peak + 1])), "rises step by step to the peak"
    assert all(a > b for a, b in zip(rates[peak:], rates[peak + 1:])), "then falls step by step"
    assert rates[-1] < lr / 1000
    reference = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)
    expected_schedule = torch.optim.lr_scheduler.OneCycleLR(reference, max_lr=lr, total_steps=len(rates))
    expected = []
    for _ in rates:
        expected.append(reference.param_groups[0]["lr"])
        reference.step()
        expected_schedule.step()
    assert rates == pytest.approx(expected)


# -- TensorBoard -------------------------------------------------------------------------------
def test_a_run_folder_gets_tensorboard_events_with_the_epoch_metrics(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    script = [3.0, 1.0, 2.0]
    result = fit(ScriptedModule(script), epochs=3, run_dir=tmp_path)
    events = list((tmp_path / "logs" / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1, f"expected one event file under logs/tensorboard, got {events}"
    log = EventAccumulator(str(events[0]))
    log.Reload()
    assert {"val_loss", "train_loss"} <= set(log.Tags()["scalars"])
    assert [e.value for e in log.Scalars("val_loss")] == pytest.approx(script)
    assert [e.value for e in log.Scalars("train_loss")] == pytest.approx(list(result.history["train_loss"]))


# -- gradient clipping -------------------------------------------------------------------------
class SteepModule(L.LightningModule):
    """A linear layer under a loss with gradients far larger than 1, trained with plain SGD at
    learning rate 1: each step moves the weights by exactly the (clipped) gradient. Records the
    gradient norm Lightning's clipping sees and the size of the step that follows."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(3, 1)
        self.grad_norms: list[float] = []
        self.step_sizes: list[float] = []
        self._before: torch.Tensor | None = None

    def _flat(self) -> torch.Tensor:
        return torch.cat([p.detach().flatten() for p in self.parameters()]).clone()

    def training_step(self, batch, batch_idx):
        x, y = batch
        return 100.0 * nn.functional.mse_loss(self.layer(x), y)

    def on_before_optimizer_step(self, optimizer):  # after backward, before clipping
        self.grad_norms.append(float(torch.cat([p.grad.flatten() for p in self.parameters()]).norm()))
        self._before = self._flat()

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.step_sizes.append(float((self._flat() - self._before).norm()))

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", torch.tensor(1.0))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=1.0)


def steep_loaders() -> tuple[DataLoader, DataLoader]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(24, 3, generator=g)
    y = 10.0 * x.sum(dim=1, keepdim=True) + 5.0
    return DataLoader(TensorDataset(x, y), batch_size=8), DataLoader(TensorDataset(x[:8], y[:8]), batch_size=8)


@pytest.mark.parametrize("clip", [0.5, None])
def test_grad_clip_bounds_the_gradient_norm_of_every_step(clip):
    module = SteepModule()
    train, valid = steep_loaders()
    L.seed_everything(0, verbose=False)
    fit_module(module, train, valid, train_config(1, grad_clip=clip), run_dir=None, monitor="loss", mode="min")
    assert len(module.step_sizes) == len(module.grad_norms) == 3
    assert min(module.grad_norms) > 20, "the loss must give gradients far above the clipping norm"
    if clip is None:
        assert module.step_sizes == pytest.approx(module.grad_norms, rel=1e-5)
    else:
        assert module.step_sizes == pytest.approx([clip] * 3, rel=1e-4)
