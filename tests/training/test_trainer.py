"""``polymodal.training.trainer``: history, atomic checkpoints with best-weights restore, early
stopping and resuming, on a toy Lightning module whose validation score follows a script."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import lightning as L
import pandas as pd
import pytest
import torch
import yaml
from helpers_cli import as_terminal, not_a_terminal
from helpers_models import classification_config
from torch.utils.data import DataLoader, TensorDataset

from polymodal.config import load_config
from polymodal.config.train import TrainConfig
from polymodal.training.module import BatchModule
from polymodal.training.trainer import History, fit_module


class ScriptedModule(L.LightningModule):
    """Trains a linear layer; its validation score for epoch e is ``script[e]``. Keeps a copy of
    its weights at the end of every epoch (after validation, when checkpoints are taken)."""

    def __init__(self, script: list[float], metric: str = "loss", losses: list[float] | None = None):
        super().__init__()
        self.layer = torch.nn.Linear(3, 1)
        self.script = script
        self.metric = metric
        self.losses = losses  # val_loss per epoch beside another metric
        self.snapshots: dict[int, dict[str, torch.Tensor]] = {}

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.layer(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log(f"val_{self.metric}", torch.tensor(self.script[self.current_epoch]), on_epoch=True)
        if self.losses is not None:
            self.log("val_loss", torch.tensor(self.losses[self.current_epoch]), on_epoch=True)

    def on_validation_epoch_end(self):
        self.snapshots[self.current_epoch] = {k: v.detach().clone() for k, v in self.state_dict().items()}

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def loaders() -> tuple[DataLoader, DataLoader]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 3, generator=g)
    y = x.sum(dim=1, keepdim=True)
    return DataLoader(TensorDataset(x, y), batch_size=8), DataLoader(TensorDataset(x[:8], y[:8]), batch_size=8)


def train_config(epochs: int, patience: int | None = None) -> TrainConfig:
    stopping = None if patience is None else {"patience": patience}
    return TrainConfig(epochs=epochs, progress=False, accelerator="cpu", early_stopping=stopping, grad_clip=None)


def fit(module: ScriptedModule, epochs: int, run_dir=None, monitor="loss", mode="min", patience=None, resume=False):
    train, valid = loaders()
    L.seed_everything(0, verbose=False)
    return fit_module(module, train, valid, train_config(epochs, patience), run_dir=run_dir, monitor=monitor,
                      mode=mode, resume=resume)


def same_weights(module: torch.nn.Module, state: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(v, state[k]) for k, v in module.state_dict().items())


def test_history_checkpoints_and_best_weights(tmp_path):
    script = [3.0, 1.0, 2.0, 2.5]
    module = ScriptedModule(script)
    result = fit(module, epochs=4, run_dir=tmp_path)
    assert list(result.history["epoch"]) == [1, 2, 3, 4], "epochs counted from 1, as the progress bar counts"
    assert list(result.history["val_loss"]) == pytest.approx(script)
    assert (result.history["train_loss"] > 0).all() and (result.history["seconds"] >= 0).all()
    assert result.best_epoch == 2 and result.best_score == pytest.approx(1.0)
    assert same_weights(module, module.snapshots[1]), "the best epoch's weights are restored at the end"
    assert not same_weights(module, module.snapshots[3])
    on_disk = pd.read_csv(tmp_path / "history.csv")
    assert list(on_disk["val_loss"]) == pytest.approx(script)
    columns = list(on_disk.columns)  # one order however the metrics were logged (DDP's ranks differ)
    assert columns[0] == "epoch" and columns[-1] == "seconds"
    assert columns[1:-1] == sorted(columns[1:-1], key=lambda c: (not c.startswith("val_"), not c.startswith("train_"), c))
    history = History(None)
    history.rows = [{"train_loss": 1.0, "seconds": 2.0, "epoch": 0, "lr": 0.1, "val_loss": 3.0}]
    assert list(history.frame.columns) == ["epoch", "val_loss", "train_loss", "lr", "seconds"]
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file() and (tmp_path / "checkpoints" / "best.ckpt").is_file()
    assert not list(tmp_path.rglob("*.tmp")), "temporary checkpoint files are renamed, never left behind"
    assert (tmp_path / "logs" / "csv" / "metrics.csv").is_file()
    best = torch.load(tmp_path / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    assert best["epoch"] == 1
    assert all(torch.equal(v, module.snapshots[1][k]) for k, v in best["state_dict"].items())


def test_higher_is_better_metrics(tmp_path):
    module = ScriptedModule([0.5, 0.9, 0.7], metric="accuracy")
    result = fit(module, epochs=3, run_dir=tmp_path, monitor="accuracy", mode="max")
    assert result.best_epoch == 2 and result.best_score == pytest.approx(0.9)
    assert same_weights(module, module.snapshots[1])


@pytest.mark.parametrize(("script", "mode", "best"), [([float("nan"), 0.9, 0.5, 0.3], "min", 3),
                                                     ([0.9, float("nan"), 0.5], "min", 2),
                                                     ([float("nan"), 0.4, 0.8], "max", 2)])
def test_a_diverged_epoch_is_never_the_best(script, mode, best):
    """A NaN score compares false with everything: once best, it would stay best and its weights
    be restored."""
    module = ScriptedModule(script)
    result = fit(module, epochs=len(script), monitor="loss", mode=mode)
    assert result.best_epoch == best + 1 and same_weights(module, module.snapshots[best])


@pytest.mark.parametrize(("losses", "best"), [([1.0, 0.8, 0.4], 2), ([1.0, 0.4, 0.8], 1), ([1.0, 0.4, 0.4], 1)])
def test_a_tie_on_the_metric_is_broken_by_the_lower_validation_loss(losses, best):
    """Accuracy on a few hundred rows ties often; a full tie keeps the earlier epoch."""
    module = ScriptedModule([0.5, 0.9, 0.9], metric="accuracy", losses=losses)
    result = fit(module, epochs=3, monitor="accuracy", mode="max")
    assert result.best_epoch == best + 1
    assert same_weights(module, module.snapshots[best])


def test_without_a_run_folder_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    module = ScriptedModule([2.0, 1.0, 3.0])
    result = fit(module, epochs=3)
    assert len(result.history) == 3 and result.best_epoch == 2
    assert same_weights(module, module.snapshots[1])
    assert not list(tmp_path.iterdir()), f"files written without a run folder: {list(tmp_path.iterdir())}"


def test_early_stopping_after_patience_epochs_without_improvement(tmp_path):
    module = ScriptedModule([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    result = fit(module, epochs=6, run_dir=tmp_path, patience=2)
    assert list(result.history["epoch"]) == [1, 2, 3]
    assert result.best_epoch == 1 and same_weights(module, module.snapshots[0])


def test_resume_continues_from_the_last_checkpoint(tmp_path):
    first = ScriptedModule([1.0, 5.0, 5.0, 5.0])
    fit(first, epochs=2, run_dir=tmp_path)
    assert list(pd.read_csv(tmp_path / "history.csv")["epoch"]) == [1, 2]
    second = ScriptedModule([1.0, 5.0, 5.0, 5.0])
    result = fit(second, epochs=4, run_dir=tmp_path, resume=True)
    assert sorted(second.snapshots) == [2, 3], "the resumed run trains only the remaining epochs"
    assert list(result.history["epoch"]) == [1, 2, 3, 4], "the history of the first run is kept"
    assert list(pd.read_csv(tmp_path / "history.csv")["epoch"]) == [1, 2, 3, 4]
    assert result.best_epoch == 1 and result.best_score == pytest.approx(1.0)
    # The best epoch was in the first run: its weights come back from checkpoints/best.ckpt.
    assert same_weights(second, first.snapshots[0])


def test_a_resume_loads_its_checkpoint_as_tensors_and_plain_values_only(tmp_path, monkeypatch):
    """Lightning loads ``ckpt_path`` with torch's default ``weights_only``, which torch before 2.6
    and ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` turn off: every load of a resume asks for
    ``weights_only=True``, and the checkpoints training writes (callbacks' states, early
    stopping's, the optimiser's and the schedule's) resume under it."""
    fit(ScriptedModule([1.0, 5.0, 5.0, 5.0]), epochs=2, run_dir=tmp_path, patience=3)
    asked, load = [], torch.load

    def recorded(*args, **kwargs):
        asked.append(kwargs.get("weights_only"))
        return load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", recorded)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # overrides only a load that does not ask
    second = ScriptedModule([1.0, 5.0, 5.0, 5.0])
    result = fit(second, epochs=4, run_dir=tmp_path, patience=3, resume=True)
    assert sorted(second.snapshots) == [2, 3] and list(result.history["epoch"]) == [1, 2, 3, 4]
    assert len(asked) >= 2 and set(asked) == {True}, asked  # the bookkeeping read, Lightning's restore, best.ckpt


class RegroupedModule(ScriptedModule):
    """Its optimiser puts the bias in a group of its own, as a later version's grouping might."""

    def configure_optimizers(self):
        return torch.optim.SGD([{"params": [self.layer.weight]}, {"params": [self.layer.bias], "weight_decay": 0.0}],
                               lr=0.1)


def test_a_checkpoint_whose_optimiser_groups_parameters_otherwise_is_refused_naming_it(tmp_path):
    from polymodal.errors import RunFolderError

    fit(ScriptedModule([1.0, 5.0, 5.0, 5.0]), epochs=2, run_dir=tmp_path)
    with pytest.raises(RunFolderError, match=r"cannot resume from .*last.ckpt: its optimiser state holds other "
                                             r"parameter groups .*train the run again without --resume"):
        fit(RegroupedModule([1.0, 5.0, 5.0, 5.0]), epochs=4, run_dir=tmp_path, resume=True)


class SlowModule(ScriptedModule):
    """Takes 0.1 s a training step (4 a epoch): its session's time stands out from a fast one's."""

    def training_step(self, batch, batch_idx):
        time.sleep(0.1)
        return super().training_step(batch, batch_idx)


def test_a_resumed_fit_counts_the_training_time_of_its_earlier_sessions(tmp_path):
    first = fit(SlowModule([3.0, 2.0, 1.0, 0.5]), epochs=2, run_dir=tmp_path)
    assert first.earlier_seconds == 0.0 and first.total_seconds == first.seconds
    resumed = fit(ScriptedModule([3.0, 2.0, 1.0, 0.5]), epochs=4, run_dir=tmp_path, resume=True)
    # the first session, up to its last checkpoint: its 8 slow steps, within its whole fit's time
    assert 0.8 <= resumed.earlier_seconds <= first.seconds
    assert resumed.total_seconds == pytest.approx(resumed.earlier_seconds + resumed.seconds)
    assert resumed.total_seconds >= resumed.history["seconds"].sum()  # every epoch's time, not the last session's


def test_a_checkpoint_without_the_recorded_time_resumes_from_its_epochs_seconds(tmp_path):
    fit(SlowModule([3.0, 2.0, 1.0, 0.5]), epochs=2, run_dir=tmp_path)
    last = tmp_path / "checkpoints" / "last.ckpt"
    state = torch.load(last, map_location="cpu", weights_only=False)
    [history] = [v for k, v in state["callbacks"].items() if k.startswith("History")]
    del history["train_seconds"]  # as checkpoints written before it was recorded
    torch.save(state, last)
    resumed = fit(ScriptedModule([3.0, 2.0, 1.0, 0.5]), epochs=4, run_dir=tmp_path, resume=True)
    assert resumed.earlier_seconds == pytest.approx(sum(row["seconds"] for row in history["rows"]))
    assert resumed.earlier_seconds >= 0.8


def test_resume_watching_another_metric_does_not_compare_across_metrics(tmp_path):
    """A run started on validation accuracy (higher is better) and resumed on the loss must not
    compare a loss with the saved best accuracy: the best is chosen afresh."""
    first = ScriptedModule([0.9, 0.95, 0.0, 0.0], metric="accuracy")
    fit(first, epochs=2, run_dir=tmp_path, monitor="accuracy", mode="max")
    second = ScriptedModule([9.0, 9.0, 3.0, 2.0], metric="loss")
    result = fit(second, epochs=4, run_dir=tmp_path, resume=True)
    assert result.best_epoch == 4 and result.best_score == pytest.approx(2.0)
    assert same_weights(second, second.snapshots[3])


def test_resuming_a_run_early_stopping_ended_trains_no_further_with_the_same_patience(tmp_path):
    """A resume that only has a save to finish (a kill while the stopped run was saved) went on
    training: Lightning restores when early stopping stopped, not that it had."""
    script = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    first = fit(ScriptedModule(script), epochs=8, run_dir=tmp_path, patience=1)
    assert list(first.history["epoch"]) == [1, 2]
    resumed = ScriptedModule(script)
    again = fit(resumed, epochs=8, run_dir=tmp_path, patience=1, resume=True)
    assert list(again.history["epoch"]) == [1, 2] and again.best_epoch == 1
    assert resumed.snapshots == {}  # no epoch trained


def test_resume_with_more_patience_trains_until_the_new_patience_runs_out(tmp_path):
    """Early stopping ended the run (patience 1); resumed with patience 3, it waits 3 epochs
    without improvement, not the checkpoint's 1."""
    script = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    first = fit(ScriptedModule(script), epochs=8, run_dir=tmp_path, patience=1)
    assert list(first.history["epoch"]) == [1, 2]
    resumed = fit(ScriptedModule(script), epochs=8, run_dir=tmp_path, patience=3, resume=True)
    assert list(resumed.history["epoch"]) == [1, 2, 3, 4]  # epochs 2, 3 and 4 without improvement


class ScheduledModule(ScriptedModule):
    """A scripted module trained as every polymodal module is (AdamW under ``scheduler``, stepped
    every batch); ``stop_after``: it stops itself after that many epochs (an interrupted run)."""

    def __init__(self, script: list[float], scheduler: str = "cosine", stop_after: int | None = None):
        super().__init__(script)
        self.scheduler, self.stop_after = scheduler, stop_after

    def on_train_epoch_end(self):
        if self.stop_after is not None and self.current_epoch + 1 >= self.stop_after:
            self.trainer.should_stop = True

    def configure_optimizers(self):
        from polymodal.training.module import OptimSettings, configure_adamw

        return configure_adamw(self, {}, OptimSettings(0.01, 0.0, self.scheduler, 0.0), self.trainer)


@pytest.mark.parametrize("scheduler", ["cosine", "onecycle"])
@pytest.mark.parametrize("batch_size", [4, 16])
def test_a_resume_taking_another_number_of_steps_per_epoch_is_refused_before_its_first_step(tmp_path, scheduler,
                                                                                          batch_size):
    """8 epochs of 4 steps stopped after 3, resumed on another share of the rows per process (what
    train.devices changes): the schedule's length came from the new steps per epoch and its step
    count from the checkpoint, so a cosine schedule ended early (LR 0 for the last epochs) and a
    one-cycle one raised 'Tried to step N times' mid-run. A checkpoint written before the steps were
    recorded tells them by its step count and epochs."""
    from polymodal.errors import RunFolderError

    train, valid = loaders()  # 32 rows in batches of 8
    script = [1.0] * 8
    fit_module(ScheduledModule(script, scheduler, stop_after=3), train, valid, train_config(8), run_dir=tmp_path,
               monitor="loss", mode="min")
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 12
    other = DataLoader(train.dataset, batch_size=batch_size)
    for recorded in (True, False):
        if not recorded:
            last = tmp_path / "checkpoints" / "last.ckpt"
            state = torch.load(last, weights_only=True)
            del state["callbacks"]["StepsPerEpoch"]
            torch.save(state, last)
        resumed = ScheduledModule(script, scheduler)
        with pytest.raises(RunFolderError, match=f"resume=True: the run trained 4 optimiser steps per epoch.*; resumed, it "
                                                 f"would take {32 // batch_size}.*Resume with the settings it trained "
                                                 "with"):
            fit_module(resumed, other, valid, train_config(8), run_dir=tmp_path, monitor="loss", mode="min",
                       resume=True)
        assert resumed.snapshots == {}, "refused before the first resumed epoch"
    resumed = ScheduledModule(script, scheduler)  # the same steps per epoch: it resumes, and ends its schedule
    fit_module(resumed, train, valid, train_config(8), run_dir=tmp_path, monitor="loss", mode="min", resume=True)
    assert sorted(resumed.snapshots) == [3, 4, 5, 6, 7] and resumed.trainer.global_step == 32
    assert resumed.trainer.lr_scheduler_configs[0].scheduler.get_last_lr()[0] < 1e-4


def test_the_refusal_names_the_processes_and_settings_the_run_trained_with(tmp_path):
    from polymodal.errors import RunFolderError
    from polymodal.training.trainer import StepsPerEpoch

    train, valid = loaders()
    fit_module(ScheduledModule([1.0] * 4, stop_after=2), train, valid, train_config(4), run_dir=tmp_path,
               monitor="loss", mode="min")
    record = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["callbacks"]["StepsPerEpoch"]
    assert record == {"steps_per_epoch": 4, "world_size": 1, "devices": 1, "num_nodes": 1, "batch_size": 64}
    callback = StepsPerEpoch(train_config(4).model_copy(update={"devices": 2}))
    callback.load_state_dict(record)
    trainer = type("Trainer", (), {"estimated_stepping_batches": 8, "num_training_batches": 2,
                                   "accumulate_grad_batches": 1, "world_size": 2})()
    with pytest.raises(RunFolderError, match=r"trained 4 optimiser steps per epoch on each of 1 process\(es\) "
                                             r"\(train.devices: 1 x train.num_nodes: 1, train.batch_size: 64\); "
                                             r"resumed, it would take 2 on each of 2 process\(es\) \(train.devices: 2 "
                                             r"x .*Resume with the settings it trained with \(train.devices: 1\)"):
        callback.on_fit_start(trainer, None)


class DrawingModule(ScriptedModule):
    """Records a draw of torch's global generator at each training step, as modality dropout and
    ``nn.Dropout`` draw their masks."""

    def __init__(self, script: list[float]):
        super().__init__(script)
        self.draws: list[float] = []

    def training_step(self, batch, batch_idx):
        self.draws.append(torch.rand(()).item())
        return super().training_step(batch, batch_idx)


def test_each_rank_of_a_distributed_fit_draws_its_own_masks_and_rank_zero_draws_as_before(monkeypatch):
    """Every rank was seeded with train.seed, so every rank drew rank 0's dropout masks."""

    def draws(rank: int, offset: bool = True) -> list[float]:
        with monkeypatch.context() as patched:
            patched.setattr(L.Trainer, "global_rank", property(lambda self: rank))
            if not offset:
                from polymodal.training.trainer import RankSeed

                patched.setattr(RankSeed, "on_train_start", lambda self, trainer, module: None)
            module = DrawingModule([1.0, 1.0])
            fit(module, epochs=2)
        return module.draws

    zero, first, second = draws(0), draws(1), draws(2)
    assert len(zero) == 8 and not set(first) & set(zero) and not set(second) & set(first)
    assert draws(1) == first, "a seed still gives the same draws on each rank"
    assert draws(0, offset=False) == zero, "rank 0 (a one-process fit) draws as it did"


def test_resume_without_a_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint to resume from"):
        fit(ScriptedModule([1.0]), epochs=1, run_dir=tmp_path, resume=True)
    with pytest.raises(FileNotFoundError, match="no checkpoint to resume from"):
        fit(ScriptedModule([1.0]), epochs=1, run_dir=None, resume=True)


class MeanLoggingModule(BatchModule):
    """Logs each batch's mean input through ``log_epoch_mean``: the epoch value must be the mean
    over every row, whatever the batch sizes."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(3, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.log_epoch_mean("train", {"train_x": x.mean()}, len(x))
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def validation_step(self, batch, batch_idx):
        x, _ = batch
        self.log_epoch_mean("val", {"val_loss": x.mean()}, len(x))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_epoch_means_reach_history_and_loggers_weighted_by_rows(tmp_path):
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(20, 3, generator=g) + torch.arange(20.0)[:, None], torch.zeros(20, 1)
    train = DataLoader(TensorDataset(x, y), batch_size=8)  # batches of 8, 8 and 4
    valid = DataLoader(TensorDataset(x[:7], y[:7]), batch_size=3)  # 3, 3 and 1
    result = fit_module(MeanLoggingModule(), train, valid, train_config(2), run_dir=tmp_path, monitor="loss",
                        mode="min")
    assert list(result.history["train_x"]) == pytest.approx([x.mean().item()] * 2, rel=1e-6)
    assert list(result.history["val_loss"]) == pytest.approx([x[:7].mean().item()] * 2, rel=1e-6)
    logged = pd.read_csv(tmp_path / "logs" / "csv" / "metrics.csv")
    assert logged["train_x"].dropna().tolist() == pytest.approx([x.mean().item()] * 2, rel=1e-6)


def test_best_checkpoint_lands_before_the_last_that_names_it(tmp_path, monkeypatch):
    """A crash between the two renames must not leave a last.ckpt recording a best epoch whose
    best.ckpt is not on disk yet: on an improvement best.ckpt is replaced first."""
    renamed: list[str] = []
    real_replace = os.replace

    def replace(src, dst):
        if Path(dst).suffix == ".ckpt":
            renamed.append(Path(dst).name)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)  # every rename, wherever it is made
    fit(ScriptedModule([3.0, 1.0, 2.0]), epochs=3, run_dir=tmp_path)
    assert renamed == ["best.ckpt", "last.ckpt", "best.ckpt", "last.ckpt", "last.ckpt"]


class EpochScriptedModule(BatchModule):
    """Its training loss is each batch's mean input times (epoch + 1); its validation loss
    ``0.5 ** epoch``: every epoch's values differ, so a bar pairing two epochs shows."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(3, 1)
        self.shown: list[tuple[str, int, dict]] = []  # what the bar displays after each step / epoch

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.log_epoch_mean("train", {"train_loss": x.mean() * (self.current_epoch + 1)}, len(x))
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def validation_step(self, batch, batch_idx):
        x, _ = batch
        self.log_epoch_mean("val", {"val_loss": torch.tensor(0.5 ** self.current_epoch)}, len(x))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)

    def configure_callbacks(self):
        module = self

        class Recorder(L.Callback):  # runs after the progress bar's hooks (the trainer's callbacks come first)
            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                module.shown.append(("step", trainer.current_epoch, displayed(trainer)))

            def on_train_epoch_end(self, trainer, pl_module):
                module.shown.append(("end", trainer.current_epoch, displayed(trainer)))

        return [Recorder()]


def displayed(trainer: L.Trainer) -> dict[str, float]:
    """The metrics the rich progress bar's metrics column renders now."""
    return dict(trainer.progress_bar_callback._metric_component._metrics)


def fit_with_bar(tmp_path, monkeypatch, every_step: bool | None = None) -> tuple[EpochScriptedModule, pd.DataFrame]:
    import polymodal.training.trainer as trainer_module

    as_terminal(monkeypatch)
    if every_step is not None:  # the bar as it runs on an accelerator, throttled (here: never by time)
        bar = trainer_module.TrainingProgressBar
        monkeypatch.setattr(trainer_module, "TrainingProgressBar",
                            lambda monitor: bar(monitor, interval=3600.0, every_step=every_step))
    x = torch.arange(20.0)[:, None].repeat(1, 3)  # rows 0..19: batches of 8, 8 and 4 with means 3.5, 11.5, 17.5
    train = DataLoader(TensorDataset(x, torch.zeros(20, 1)), batch_size=8)
    valid = DataLoader(TensorDataset(x[:4], torch.zeros(4, 1)), batch_size=4)
    module = EpochScriptedModule()
    cfg = TrainConfig(epochs=3, progress=True, accelerator="cpu", grad_clip=None)
    fit_module(module, train, valid, cfg, run_dir=tmp_path, monitor="loss", mode="min")
    return module, pd.read_csv(tmp_path / "history.csv")


RUNNING = [3.5, 7.5, 9.5]  # the running mean of the batch means, weighted by rows, after each step


def test_progress_bar_shows_the_running_loss_of_the_epoch_beside_the_last_validation(tmp_path, monkeypatch):
    module, history = fit_with_bar(tmp_path, monkeypatch)
    assert list(history["train_loss"]) == pytest.approx([9.5, 19.0, 28.5])
    assert list(history["val_loss"]) == pytest.approx([1.0, 0.5, 0.25])
    expected = []
    for epoch in range(3):
        before = {} if epoch == 0 else {"val_loss": history["val_loss"][epoch - 1]}  # the latest validation
        expected += [("step", epoch, {"loss": mean * (epoch + 1), **before}) for mean in RUNNING]
        # the epoch's end: its own history.csv row, never a value of the epoch before
        expected.append(("end", epoch, {"loss": history["train_loss"][epoch], "val_loss": history["val_loss"][epoch]}))
    assert [(kind, epoch, sorted(shown)) for kind, epoch, shown in module.shown] == \
        [(kind, epoch, sorted(shown)) for kind, epoch, shown in expected]
    for (_, _, shown), (_, _, wanted) in zip(module.shown, expected, strict=True):
        assert shown == pytest.approx(wanted, abs=1e-4)


def test_a_throttled_progress_bar_still_reads_each_epochs_first_and_last_step(tmp_path, monkeypatch):
    """On an accelerator the running loss is read at most every ``interval`` seconds (it waits
    for the device), but an epoch never starts with the last epoch's loss nor ends with a stale one."""
    module, history = fit_with_bar(tmp_path, monkeypatch, every_step=False)
    losses = [(kind, epoch, shown["loss"]) for kind, epoch, shown in module.shown]
    expected = []
    for epoch in range(3):
        first, last = RUNNING[0] * (epoch + 1), RUNNING[2] * (epoch + 1)
        expected += [("step", epoch, first), ("step", epoch, first), ("step", epoch, last),
                     ("end", epoch, history["train_loss"][epoch])]
    assert [(kind, epoch) for kind, epoch, _ in losses] == [(kind, epoch) for kind, epoch, _ in expected]
    assert [loss for *_, loss in losses] == pytest.approx([loss for *_, loss in expected], abs=1e-4)
    assert [shown.get("val_loss") for kind, _, shown in module.shown if kind == "end"] == \
        pytest.approx(list(history["val_loss"]))


def test_the_csv_log_holds_one_row_per_epoch_with_training_and_validation_values(tmp_path, monkeypatch):
    _, history = fit_with_bar(tmp_path, monkeypatch)
    logged = pd.read_csv(tmp_path / "logs" / "csv" / "metrics.csv")
    assert list(logged["epoch"]) == [0, 1, 2]
    assert list(logged["train_loss"]) == pytest.approx(list(history["train_loss"]))
    assert list(logged["val_loss"]) == pytest.approx(list(history["val_loss"]))


def test_a_resumed_run_keeps_the_csv_rows_of_its_earlier_epochs(tmp_path):
    """Lightning's CSV logger empties ``metrics.csv`` when it starts; a resumed run keeps its rows."""
    fit(ScriptedModule([3.0, 2.0, 1.0, 0.5]), epochs=2, run_dir=tmp_path)
    fit(ScriptedModule([3.0, 2.0, 1.0, 0.5]), epochs=4, run_dir=tmp_path, resume=True)
    logged = pd.read_csv(tmp_path / "logs" / "csv" / "metrics.csv")
    epochs = logged.dropna(subset=["val_loss"])
    assert list(epochs["epoch"]) == [0, 1, 2, 3]
    assert list(epochs["val_loss"]) == pytest.approx([3.0, 2.0, 1.0, 0.5])



class FailingModule(ScriptedModule):
    """Fails at its first training step (a resumed run interrupted again at once)."""

    def training_step(self, batch, batch_idx):
        raise RuntimeError("interrupted")


def test_a_resume_interrupted_before_its_first_epoch_ends_keeps_the_earlier_csv_rows(tmp_path):
    fit(ScriptedModule([3.0, 2.0, 1.0, 0.5]), epochs=2, run_dir=tmp_path)
    with pytest.raises(RuntimeError, match="interrupted"):
        fit(FailingModule([3.0, 2.0, 1.0, 0.5]), epochs=4, run_dir=tmp_path, resume=True)
    logged = pd.read_csv(tmp_path / "logs" / "csv" / "metrics.csv")  # Lightning's logger had removed it
    assert list(logged.dropna(subset=["val_loss"])["epoch"]) == [0, 1]


def test_early_stopping_keeps_lightnings_checkpoint_key():
    """Checkpoints written by Lightning's own EarlyStopping resume with their count, and
    check_unfinished finds the state under that key."""
    from lightning.pytorch.callbacks import EarlyStopping

    from polymodal.training.trainer import ConfiguredEarlyStopping

    assert ConfiguredEarlyStopping("val_loss", mode="min").state_key == EarlyStopping("val_loss", mode="min").state_key

def test_deterministic_training_does_not_nan_fill_new_tensors(monkeypatch):
    """Deterministic kernels stay on (a seed gives the same model, see test_predictor); PyTorch's
    NaN-filling of every new tensor, a debugging aid costing several percent of a step, is off."""
    from polymodal.training.trainer import make_trainer

    monkeypatch.setattr(torch.utils.deterministic, "fill_uninitialized_memory", True)
    make_trainer(train_config(1), run_dir=None, monitor="loss", mode="min", steps_per_epoch=1)
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.utils.deterministic.fill_uninitialized_memory is False


@pytest.mark.parametrize(("max_epochs", "shown"), [(2, ["Epoch 1/2", "Epoch 2/2"]), (1, ["Epoch 1/1"]),
                                                   (-1, ["Epoch 1", "Epoch 2"])])
def test_progress_bar_counts_epochs_from_one(max_epochs, shown):
    """Lightning's description reads ``Epoch 0/0`` for a one-epoch run; users count from 1."""
    from types import SimpleNamespace

    from polymodal.training.progress import TrainingProgressBar

    bar = TrainingProgressBar("val_accuracy")
    bar.setup(SimpleNamespace(max_epochs=max_epochs, is_global_zero=True), MeanLoggingModule(), "fit")
    # the description Lightning's on_train_epoch_start gives the bar's training task
    assert [bar._get_train_description(epoch).strip() for epoch in range(len(shown))] == shown


def test_validation_data_without_a_row_is_refused():
    """Early stopping and the kept weights follow the validation rows; with none they would
    silently never act."""
    from polymodal.errors import ManifestError

    train, _ = loaders()
    empty = DataLoader(TensorDataset(torch.zeros(0, 3), torch.zeros(0, 1)), batch_size=8)
    with pytest.raises(ManifestError, match="the validation data holds no row"):
        fit_module(ScriptedModule([1.0]), train, empty, train_config(1, patience=1), run_dir=None, monitor="loss",
                   mode="min")


class InterruptedModule(ScriptedModule):
    """Ctrl-C (or another interrupt, such as the command line's SIGTERM) during the second epoch's training."""

    def __init__(self, script: list[float], interrupt: type[BaseException] = KeyboardInterrupt):
        super().__init__(script)
        self.interrupt = interrupt

    def training_step(self, batch, batch_idx):
        if self.current_epoch == 1:
            raise self.interrupt
        return super().training_step(batch, batch_idx)


def test_ctrl_c_stays_a_keyboard_interrupt_with_the_first_epoch_checkpointed(tmp_path):
    """Lightning turns Ctrl-C into sys.exit(1) after its shutdown and leaves SIGINT ignored; fit
    raises KeyboardInterrupt instead (the command line then says how to resume, exit status 130)
    and Ctrl-C works again afterwards."""
    import signal

    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        fit(InterruptedModule([3.0, 2.0, 1.0]), epochs=3, run_dir=tmp_path)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    signal.signal(signal.SIGINT, before)
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()


def test_a_log_gets_a_line_per_epoch_instead_of_the_bar(tmp_path, monkeypatch, capsys):
    """stderr redirected to a file: the bar would print its last state there as a line of text;
    one plain line per epoch says how training goes instead (none with progress off)."""
    not_a_terminal(monkeypatch)
    train, valid = loaders()
    result = fit_module(ScriptedModule([3.0, 2.0]), train, valid, TrainConfig(epochs=2, progress=True, accelerator="cpu"),
                        run_dir=tmp_path, monitor="loss", mode="min")
    err = capsys.readouterr().err
    assert "Epoch" not in err
    lines = [line for line in err.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in lines] == ["1/2", "2/2"]
    for line, (_, row) in zip(lines, result.history.iterrows(), strict=True):
        assert f"val_loss {row['val_loss']:.4f}" in line and line.endswith(" s)")
    fit_module(ScriptedModule([3.0, 2.0]), train, valid, TrainConfig(epochs=2, progress=False, accelerator="cpu"),
               run_dir=tmp_path / "quiet", monitor="loss", mode="min")
    assert "epoch " not in capsys.readouterr().err


def test_the_training_loss_shown_is_what_val_loss_measures():
    """val_loss is the task loss; the total adds the unimodal and other terms, so beside val_loss
    the bar and the epoch lines show the task term's loss where the run has one."""
    from polymodal.training.progress import training_loss

    assert training_loss({"train_loss": 2.0, "train_task_loss": 1.3}.get) == 1.3
    assert training_loss({"train_loss": 2.0}.get) == 2.0  # retrieval: no task term
    assert training_loss({}.get) is None
    # further tasks: val_loss is the main task's own loss; the task term adds the further tasks'
    assert training_loss({"train_loss": 4.6, "train_task_loss": 3.0, "train_main/loss": 2.2}.get) == 2.2


def test_an_epoch_line_shows_the_total_beside_the_task_loss_when_other_terms_add_to_it(capsys):
    from types import SimpleNamespace

    from polymodal.training.progress import EpochLines

    def line(**metrics):
        trainer = SimpleNamespace(is_global_zero=True, sanity_checking=False, current_epoch=0, max_epochs=2,
                                  callback_metrics={k: torch.tensor(v) for k, v in metrics.items()})
        EpochLines("accuracy").on_train_epoch_end(trainer, None)
        return capsys.readouterr().err

    assert "loss 0.6884 (total 1.6196 with unimodal, align)  val_loss 0.5000" in line(
        train_loss=1.6196, train_task_loss=0.6884, train_unimodal_loss=0.9, train_unimodal_de=0.8,
        train_align_loss=0.4, train_align_contrastive_loss=0.4, val_loss=0.5)
    plain = line(train_loss=0.6884, train_task_loss=0.6884, val_loss=0.5)
    assert "loss 0.6884  val_loss" in plain and "total" not in plain
    multi = {"train_loss": 4.6406, "train_task_loss": 3.0487, "train_main/loss": 2.2375, "train_value/loss": 1.6,
             "val_loss": 2.1185}
    assert "loss 2.2375 (total 4.6406 with further tasks, unimodal)  val_loss 2.1185" in line(
        **multi, train_unimodal_loss=1.59)
    assert "loss 2.2375 (total 3.0487 with further tasks)  val_loss 2.1185" in line(**multi | {"train_loss": 3.0487})
    # val_loss blending in dropped rows (modality dropout, subset loss): the whole rows' loss beside it
    assert "val_loss 1.6975 (whole rows 1.5570)  accuracy" in line(train_loss=2.0, val_loss=1.6975, val_full_loss=1.557,
                                                                   accuracy=0.8)


def test_a_long_epoch_in_a_log_says_how_many_batches_are_done(capsys, monkeypatch):
    """Where no bar is drawn, an epoch that outlasts LOG_EVERY prints the batches done, so that a
    log under nohup or SLURM shows the fit moving; a short one prints only its epoch line."""
    from types import SimpleNamespace

    from polymodal.training import progress

    trainer = SimpleNamespace(is_global_zero=True, current_epoch=0, max_epochs=2, num_training_batches=400)
    lines = progress.EpochLines("accuracy")
    lines.on_train_epoch_start(trainer, None)
    lines.on_train_batch_end(trainer, None, None, None, 119)
    assert capsys.readouterr().err == ""  # within LOG_EVERY seconds: nothing
    monkeypatch.setattr(progress, "LOG_EVERY", 0.0)
    lines.on_train_batch_end(trainer, None, None, None, 119)
    assert capsys.readouterr().err.startswith("epoch 1/2: 120/400 batches (30%), ")


def test_a_gpu_the_machine_lacks_is_refused_before_any_data_is_read(monkeypatch, tmp_path):
    from helpers_models import classification_config

    from polymodal import MultimodalPredictor
    from polymodal.errors import ConfigError
    from polymodal.training.devices import check_devices

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"train.accelerator: 'gpu', but torch finds no GPU"):
        check_devices(TrainConfig(accelerator="gpu"))
    check_devices(TrainConfig(accelerator="auto"))  # auto: the CPU, silently
    predictor = MultimodalPredictor.from_config(classification_config(accelerator="gpu"))
    with pytest.raises(ConfigError, match="train.accelerator"):  # not the manifest's "file not found"
        predictor.fit(tmp_path / "no such manifest.csv", out=tmp_path / "run")
    assert not (tmp_path / "run").exists()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match="train.devices: 4 GPUs asked for; this machine has 1"):
        check_devices(TrainConfig(accelerator="gpu", devices=4))


def test_half_precision_and_too_many_workers_on_this_machine_are_named(monkeypatch, tmp_path):
    from polymodal.training.devices import check_devices
    from polymodal.training.trainer import make_trainer

    monkeypatch.setattr(sys, "argv", ["train.py"])  # a program run from a file (a pytest-xdist worker's is '-c')
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    half = TrainConfig(accelerator="cpu", precision="16-mixed")
    with pytest.warns(UserWarning, match="train.precision: '16-mixed' needs a GPU; on the CPU this run trains in "
                                         "'bf16-mixed'"):
        check_devices(half)
    trainer, _, _ = make_trainer(half, run_dir=None, monitor="loss", mode="min", steps_per_epoch=1)
    assert trainer.precision == "bf16-mixed"
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    with pytest.warns(UserWarning, match="train.num_workers: 64 loader processes for 2 CPU cores"):
        check_devices(TrainConfig(num_workers=64))
    with pytest.warns(UserWarning, match="train.num_workers: 2 loader processes in each of 2 processes for 2 CPU"):
        check_devices(TrainConfig(num_workers=2, devices=2, strategy="ddp", accelerator="cpu"))
    with pytest.warns(UserWarning, match="train.devices: 4 CPU processes for 2 CPU cores"):
        check_devices(TrainConfig(devices=4, accelerator="cpu"))  # strategy auto: several processes all the same


def test_distributed_settings_that_cannot_work_are_refused_by_key(monkeypatch):
    from lightning.pytorch.strategies import DDPStrategy

    from polymodal.errors import ConfigError
    from polymodal.training.devices import check_devices, make_strategy, world_size

    monkeypatch.setattr(sys, "argv", ["train.py"])  # a program run from a file (a pytest-xdist worker's is '-c')
    for name in ("WORLD_SIZE", "SLURM_NTASKS", "SLURM_JOB_NAME", "RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="train.strategy: 'ddp_spawn' trains in child processes"):
        load_config({"target": "y", "modalities": {"t": {"kind": "tabular", "columns": ["x"]}},
                     "train": {"devices": 2, "strategy": "ddp_spawn"}})  # what config check runs, before any fit
    with pytest.raises(ConfigError, match="train.num_nodes: 2 needs every node started by a launcher"):
        check_devices(TrainConfig(devices=1, num_nodes=2, accelerator="cpu"))
    monkeypatch.setenv("WORLD_SIZE", "2")  # torchrun --nproc-per-node 2 with a one-process config
    with pytest.raises(ConfigError, match=r"train.devices: 1 x train.num_nodes: 1 is 1 process\(es\), but torchrun "
                                          r".* started 2; make them agree: start them with torchrun --nproc-per-node 1"):
        check_devices(TrainConfig(accelerator="cpu"))
    check_devices(TrainConfig(devices=2, accelerator="cpu"))  # they agree
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.setenv("SLURM_NTASKS", "4")  # a batch job's plain command runs once: not a mismatch
    check_devices(TrainConfig(accelerator="cpu"))
    monkeypatch.setenv("SLURM_JOB_NAME", "train")  # srun started 4 processes for a 2-process config
    with pytest.raises(ConfigError, match=r"train.devices: 2 x train.num_nodes: 1 is 2 process\(es\), but SLURM started "
                                          r"4 task\(s\) \(SLURM_NTASKS\); make them agree: start them with srun / #SBATCH "
                                          r"--ntasks-per-node=2 --nodes=1"):
        check_devices(TrainConfig(devices=2, accelerator="cpu"))
    monkeypatch.setenv("SLURM_JOB_NAME", "bash")  # an interactive shell: Lightning starts the processes itself
    check_devices(TrainConfig(devices=2, accelerator="cpu"))
    monkeypatch.delenv("SLURM_NTASKS")
    for argv in (["-c"], ["-"], [""]):  # python -c '...fit()', stdin, the REPL: nothing to run again
        monkeypatch.setattr(sys, "argv", argv)
        with pytest.raises(ConfigError, match="'python -c' command or a script on stdin cannot be"):
            check_devices(TrainConfig(devices=2, accelerator="cpu"))
    monkeypatch.setattr(sys, "argv", ["/usr/lib/python3/ipykernel_launcher.py"])
    monkeypatch.setattr(sys, "ps1", ">>> ", raising=False)  # a notebook: interactive, though argv names a file
    with pytest.raises(ConfigError, match="an interactive session"):
        check_devices(TrainConfig(devices=2, accelerator="cpu"))
    monkeypatch.delattr(sys, "ps1")
    check_devices(TrainConfig(accelerator="cpu"))  # one process: nothing to start again
    assert world_size(TrainConfig(devices=2, num_nodes=3)) == 6
    assert isinstance(make_strategy(TrainConfig(devices=2, accelerator="cpu")), DDPStrategy), \
        "several processes under strategy auto get the DDP that tolerates idle parameters"
    assert make_strategy(TrainConfig(accelerator="cpu")) == "auto"


def test_a_launcher_count_the_config_disagrees_with_is_named_before_the_run_folders_lock(monkeypatch, tmp_path):
    """torchrun --nproc-per-node 2 with a one-process config: each process takes itself for rank 0
    of its own run, so the second found the first's lock and said another fit held the folder."""
    from polymodal import MultimodalPredictor
    from polymodal.errors import ConfigError
    from polymodal.utils.io import exclusive_lock

    for name in ("SLURM_NTASKS", "SLURM_JOB_NAME", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    predictor = MultimodalPredictor.from_config(classification_config(epochs=1))
    with exclusive_lock(tmp_path / "run", lambda held: AssertionError(f"locked twice: {held}")):  # rank 0's lock
        with pytest.raises(ConfigError, match=r"train.devices: 1 x train.num_nodes: 1 is 1 process\(es\), but torchrun "
                                              r"\(or another launcher setting WORLD_SIZE\) started 2"):
            predictor.fit("train.csv", out=tmp_path / "run")


def test_a_slurm_step_of_fewer_tasks_than_devices_is_named_with_the_config_file_and_srun_options(monkeypatch,
                                                                                                 tmp_path):
    """srun of 1 task with devices: 2 said 'Invalid config' without the file, and only torchrun's
    options."""
    from helpers_cli import assert_user_error, invoke

    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.setenv("SLURM_JOB_NAME", "train")
    config = tmp_path / "ddp.yaml"
    config.write_text(yaml.safe_dump(classification_config(devices=2, accelerator="cpu")), encoding="utf-8")
    result = invoke("train", config, "--train", tmp_path / "train.csv", "--out", tmp_path / "run")
    assert_user_error(result, f"Invalid config in {config}", "train.devices: 2 x train.num_nodes: 1 is 2 process(es), "
                      "but SLURM started 1 task(s) (SLURM_NTASKS)", "--ntasks-per-node=2 --nodes=1")
    assert not (tmp_path / "run").exists()


def test_a_distributed_runs_other_ranks_are_told_by_their_launchers_variables(monkeypatch):
    from polymodal.training.devices import secondary_process

    for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)
    ddp, single = TrainConfig(devices=2, accelerator="cpu"), TrainConfig(accelerator="cpu")
    assert not secondary_process(ddp)
    for name, value, secondary in (("LOCAL_RANK", "0", False), ("RANK", "3", True), ("SLURM_PROCID", "1", True),
                                   ("NODE_RANK", "1", True), ("LOCAL_RANK", "1", True)):
        monkeypatch.setenv(name, value)
        assert secondary_process(ddp) is secondary, (name, value)
        assert not secondary_process(single), "srun -n 4 of one-process fits: each is its own rank 0"
        monkeypatch.delenv(name)


def test_only_rank_zero_of_a_distributed_fit_warns(monkeypatch):
    import warnings

    from polymodal.training.devices import across_ranks
    from polymodal.utils.warn import warn_user

    class Fit:
        def __init__(self, devices: int) -> None:
            self.config = load_config({**classification_config(), "train": {"devices": devices, "accelerator": "cpu"}})

        @across_ranks
        def fit(self) -> str:
            warn_user("a manifest problem every rank reads alike")
            return "fitted"

    for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)
    for rank, devices, warns in (("0", 2, True), ("1", 2, False), ("1", 1, True)):  # 1 process: its own rank 0
        monkeypatch.setenv("LOCAL_RANK", rank)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert Fit(devices).fit() == "fitted"
        assert bool(caught) is warns, (rank, devices)


def test_sigterm_during_training_stays_a_termination_not_a_ctrl_c(tmp_path):
    """Lightning's shutdown swallowed which interrupt it was: a SIGTERM'd fit exited 130
    ('interrupted') instead of 143 ('terminated')."""
    import signal

    from polymodal.cli.common import Terminated

    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(Terminated):
        fit(InterruptedModule([3.0, 2.0, 1.0], interrupt=Terminated), epochs=3, run_dir=tmp_path)
    signal.signal(signal.SIGINT, before)
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()


def test_max_minutes_stops_before_an_epoch_it_would_not_finish_and_keeps_the_best(tmp_path, monkeypatch):
    """A clock that moves 10 s per reading: each epoch 'takes' 10 s. With 35 s, after epoch 3
    (30 s) a fourth would end at 40 s: the run stops there, whole epochs only, the best kept."""
    from polymodal.training.trainer import TimeLimit

    ticks = iter(range(0, 10_000, 10))
    monkeypatch.setattr(TimeLimit, "clock", staticmethod(lambda: float(next(ticks))))
    train, valid = loaders()
    module = ScriptedModule([3.0, 1.0, 2.0] + [0.5] * 47)  # epoch 4 would have been the best: never reached
    cfg = train_config(50).model_copy(update={"max_minutes": 35 / 60})
    with pytest.warns(UserWarning, match=r"train.max_minutes \(0.583333\) would run out in the next epoch: training "
                                         r"stopped after epoch 3 of 50 and keeps its best \(2\); resume=True with a new limit"):
        result = fit_module(module, train, valid, cfg, run_dir=tmp_path, monitor="loss", mode="min")
    assert list(result.history["epoch"]) == [1, 2, 3] and result.best_epoch == 2
    assert same_weights(module, module.snapshots[1])  # the best epoch's weights, restored
    ticks = iter(range(0, 10_000, 10))  # resumed: the limit afresh, three more epochs
    with pytest.warns(UserWarning, match="stopped after epoch 6 of 50"):
        resumed = fit_module(ScriptedModule([3.0, 1.0, 2.0] + [0.5] * 47), train, valid, train_config(50).model_copy(
            update={"max_minutes": 35 / 60}), run_dir=tmp_path, monitor="loss", mode="min", resume=True)
    assert list(resumed.history["epoch"]) == [1, 2, 3, 4, 5, 6] and resumed.best_epoch == 4
