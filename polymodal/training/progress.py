"""How a fit shows its progress: a rich bar on a terminal (the epoch's running training loss
beside the latest validation value), one line per epoch elsewhere (a log, a pipe, CI)."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, RichProgressBar

from polymodal.config.tasks import MAIN_TASK_LOSS
from polymodal.utils.progress import LOG_EVERY


class TrainingProgressBar(RichProgressBar):
    """A rich progress bar showing the epoch's running training loss and the monitored value of
    the latest validation, so that at an epoch's end the two are that epoch's (its
    ``history.csv`` row) and, while the next epoch trains, its running loss beside the validation
    before it.

    The running loss is read at every training step when ``every_step`` (None: when the module is
    on the CPU); else, as on an accelerator, where reading it waits for the device, at most every
    ``interval`` seconds, and always at an epoch's first and last step."""

    def __init__(self, monitor: str, interval: float = 0.5, every_step: bool | None = None):
        super().__init__(refresh_rate=10, leave=False, console_kwargs={"stderr": True})  # stdout stays the command's
        self.monitor = monitor
        self.interval = interval
        self.every_step = every_step
        self._loss: float | None = None
        self._value: float | None = None
        self._read_at = -math.inf

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._read_at = -math.inf  # the epoch's first step replaces the last epoch's loss
        super().on_train_epoch_start(trainer, module)

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        # before the module's own hook, which hands the epoch's sums to Lightning after its last step
        running = getattr(module, "running_mean", None)
        every_step = module.device.type == "cpu" if self.every_step is None else self.every_step
        now = time.monotonic()
        if running is not None and (every_step or trainer.is_last_batch or now - self._read_at >= self.interval):
            self._read_at = now
            loss = training_loss(lambda key: running("train", key))
            self._loss = self._loss if loss is None else round(loss, 4)
        super().on_train_batch_end(trainer, module, outputs, batch, batch_idx)

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if getattr(module, "running_mean", None) is None:  # a module logging through Lightning alone
            loss = training_loss(lambda key: self._read(trainer, key, None))  # the epoch's mean, known from now on
            self._loss = self._loss if loss is None else loss
        super().on_train_epoch_end(trainer, module)

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._value = self._read(trainer, self.monitor, self._value)
        super().on_validation_end(trainer, module)

    @staticmethod
    def _read(trainer: L.Trainer, key: str, default: float | None) -> float | None:
        value = trainer.callback_metrics.get(key)
        return default if value is None else round(float(value), 4)

    def get_metrics(self, trainer: L.Trainer, module: L.LightningModule) -> dict[str, Any]:
        """What the bar shows: ``loss`` and the monitored value, once known (read in the hooks above)."""
        return {k: v for k, v in (("loss", self._loss), (self.monitor, self._value)) if v is not None}

    def _get_train_description(self, current_epoch: int) -> str:
        # Lightning counts from 0 ("Epoch 0/0" for one epoch); show "Epoch 1/1", padded as Lightning pads it
        description = f"Epoch {current_epoch + 1}"
        if self.trainer.max_epochs is not None and self.trainer.max_epochs > 0:  # -1: no limit
            description += f"/{self.trainer.max_epochs}"
        return f"{description:{len(self.validation_description)}}"


def training_loss(read: Callable[[str], float | None]) -> float | None:
    """The training loss to show beside ``val_loss``, the same loss on the training rows: with
    further ``tasks``, the main task's own (``train_main/loss``: ``val_loss`` is the main task's
    loss, while the task term adds the further tasks' weighted losses); else the task term's
    (``train_task_loss``) where the run has one; else the total (``train_loss``), which adds the
    unimodal, alignment and transfer terms."""
    for key in (MAIN_TASK_LOSS, "train_task_loss", "train_loss"):
        value = read(key)
        if value is not None:
            return value
    return None


def other_terms(metrics: Mapping[str, Any]) -> str:
    """What the total adds to the loss shown (:func:`training_loss`): ``further tasks`` in a
    multi-task run, then the loss terms besides the task's, by name, as the training metrics log
    each term's loss (``train_unimodal_loss``, ``train_align_loss``: a term's name holds no
    underscore, unlike the figures a term logs beside its loss): ``further tasks, unimodal, align``."""
    names = [k[len("train_"):-len("_loss")] for k in metrics if k.startswith("train_") and k.endswith("_loss")]
    names = ["further tasks"] * (MAIN_TASK_LOSS in metrics) + [n for n in names if n and n != "task" and "_" not in n]
    return ", ".join(names) or "the other terms"


def _of(trainer: L.Trainer) -> str:
    """``/N`` for N planned epochs (nothing when the epochs are not counted)."""
    return f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""


class EpochLines(Callback):
    """One line per epoch on stderr where no bar is drawn (a log, a pipe, CI): the epoch, its
    training loss (:func:`training_loss`; with the total of every term beside it, naming what it
    adds (:func:`other_terms`), when the run has further tasks or more terms than the task's),
    validation loss (with the whole rows' beside it, ``val_full_loss``, where the kept epoch's
    loss blends in rows under modality dropout or single modalities),
    the monitored metric and seconds; within an epoch that runs long, a line every ``LOG_EVERY``
    seconds with the batches done (``epoch 1/2: 120/400 batches (30%), 31 s``), so that a log
    under nohup or a scheduler shows the work moving."""

    def __init__(self, monitor: str):
        self.monitor = monitor
        self._start = self._said = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._start = self._said = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        now = time.perf_counter()
        if now - self._said < LOG_EVERY or not trainer.is_global_zero:
            return
        self._said = now
        planned = trainer.num_training_batches
        done = f"{batch_idx + 1:,}/{planned:,} batches ({100 * (batch_idx + 1) / planned:.0f}%)" \
            if isinstance(planned, int) and planned > 0 else f"{batch_idx + 1:,} batches"
        print(f"epoch {trainer.current_epoch + 1}{_of(trainer)}: {done}, {now - self._start:.0f} s",
              file=sys.stderr, flush=True)

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if not trainer.is_global_zero or trainer.sanity_checking:
            return
        metrics = trainer.callback_metrics

        def read(key: str) -> float | None:
            return float(metrics[key]) if key in metrics and metrics[key].numel() == 1 else None

        shown = {"loss": training_loss(read), "val_loss": read("val_loss"), self.monitor: read(self.monitor)}
        values = "  ".join(f"{k} {v:.4f}" for k, v in shown.items() if v is not None)
        total = read("train_loss")
        if (read("train_task_loss") is not None or read(MAIN_TASK_LOSS) is not None) and total is not None \
                and total != shown["loss"]:
            values = values.replace(f"loss {shown['loss']:.4f}", f"loss {shown['loss']:.4f} (total {total:.4f} "
                                    f"with {other_terms(metrics)})", 1)
        whole = read("val_full_loss")
        if whole is not None and shown["val_loss"] is not None:  # val_loss blends in dropped rows or single modalities
            values = values.replace(f"val_loss {shown['val_loss']:.4f}",
                                    f"val_loss {shown['val_loss']:.4f} (whole rows {whole:.4f})", 1)
        print(f"epoch {trainer.current_epoch + 1}{_of(trainer)}  {values}  ({time.perf_counter() - self._start:.1f} s)",
              file=sys.stderr, flush=True)
