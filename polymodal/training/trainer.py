"""Lightning Trainer set-up: callbacks (history, atomic checkpoints with best-weights restore,
early stopping), loggers (CSV, TensorBoard), the progress display of
:mod:`polymodal.training.progress`; strategy and precision come from
:mod:`polymodal.training.devices`."""

from __future__ import annotations

import csv
import logging
import math
import shutil
import signal
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import pandas as pd
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.trainer.states import TrainerStatus

from polymodal.config.train import TrainConfig
from polymodal.errors import RunFolderError, option
from polymodal.run_files import BEST_CKPT, CHECKPOINTS_DIR, HISTORY_FILE, LAST_CHECKPOINT, LAST_CKPT, LOGS_DIR
from polymodal.training.checkpoints import checkpoint_state
from polymodal.training.devices import lightning_precision, make_strategy
from polymodal.training.process_state import seed_rank
from polymodal.training.progress import EpochLines, TrainingProgressBar
from polymodal.utils.io import atomic_write, durable_replace
from polymodal.utils.progress import watched
from polymodal.utils.warn import warn_user

# Lightning's advice about DataLoader workers and logging intervals is noise for small in-memory data
# (silenced while a fit runs, not in the caller's process at large)
NOISE = (r".*does not have many workers.*", r".*The number of training batches.*", r".*LeafSpec.*",
         r".*torch.distributed.nn.functional.all_gather is deprecated.*",
         r".*Grad strides do not match bucket view strides.*",  # DDP: a gradient's memory layout, a speed note
         # torch's, once per loader: train.num_workers above the cores is warned about once, by key, when the fit starts
         r".*This DataLoader will create \d+ worker processes in total.*")


class History(Callback):
    """Collects the epoch metrics into a table; writes ``history.csv`` atomically each epoch. Its
    rows (and checkpoints' state) keep Lightning's epoch, counted from 0; the table counts from 1,
    as the progress bar does. It also keeps the fit's training time across sessions: each
    checkpoint records the seconds trained up to it (``train_seconds``), which a resumed fit
    starts from (:attr:`earlier_seconds`; the time an interrupted session spent after its last
    checkpoint produced nothing kept, and is not counted)."""

    def __init__(self, path: Path | None):
        self.path = path
        self.rows: list[dict[str, Any]] = []
        self._start = 0.0
        self.earlier_seconds = 0.0  # trained before this session (a resumed fit), as its checkpoint recorded
        self._fit_start: float | None = None

    def on_fit_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._fit_start = time.perf_counter()  # after a resumed fit's checkpoint was restored

    @property
    def fit_seconds(self) -> float:
        """Seconds trained so far, the sessions before a resumed one included."""
        session = 0.0 if self._fit_start is None else time.perf_counter() - self._fit_start
        return self.earlier_seconds + session

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        """Runs after the epoch's validation, so train and validation metrics are both known."""
        row: dict[str, Any] = {"epoch": trainer.current_epoch}
        row.update({k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1})
        row["seconds"] = time.perf_counter() - self._start
        self.rows = [r for r in self.rows if r["epoch"] != row["epoch"]] + [row]
        if self.path is not None and trainer.is_global_zero:
            atomic_write(self.path, lambda tmp: self.frame.to_csv(tmp, index=False))

    @property
    def frame(self) -> pd.DataFrame:
        """The rows, epoch first, then the validation metrics, the training ones and the rest by
        name, seconds last: the same columns in the same order however the metrics were logged
        (DDP's ranks log them in another order than one process)."""
        frame = pd.DataFrame(self.rows)
        if "epoch" in frame:
            frame = frame.assign(epoch=frame["epoch"] + 1)
        return frame[sorted(frame.columns, key=_column_place)]

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "train_seconds": self.fit_seconds}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rows = list(state.get("rows", []))
        # a checkpoint written before the total was recorded: its epochs' own seconds (without
        # what ran between epochs), the closest it holds
        self.earlier_seconds = float(state.get("train_seconds", sum(row.get("seconds", 0.0) for row in self.rows)))


def _column_place(column: str) -> tuple[int, str]:
    """Where ``column`` goes in ``history.csv``: epoch, val_*, train_*, others, seconds."""
    group = (0 if column == "epoch" else 1 if column.startswith("val_") else 2 if column.startswith("train_")
             else 4 if column == "seconds" else 3)
    return group, column


class AtomicCheckpoint(Callback):
    """Keeps the best weights (by ``monitor``; ties broken by the lower validation loss) and, with
    a folder, writes ``last.ckpt`` (for ``--resume``) and ``best.ckpt`` through a temp file and
    rename, so an interrupted run never leaves a corrupt checkpoint. At the end of training the
    best weights are restored."""

    def __init__(self, folder: Path | None, monitor: str, mode: str):
        self.folder = folder
        self.monitor = monitor
        self.mode = mode
        self.best_score: float | None = None
        self.best_loss: float | None = None
        self.best_epoch: int | None = None
        self._best_state: dict[str, torch.Tensor] | None = None

    def _improved(self, score: float, loss: float | None) -> bool:
        """Whether an epoch's monitored ``score`` beats the best so far (a non-finite score, from a
        diverged epoch, never does; any finite one beats none)."""
        if not math.isfinite(score):
            return self.best_score is None
        if self.best_score is None or not math.isfinite(self.best_score):
            return True
        if score == self.best_score and loss is not None and self.best_loss is not None:
            return loss < self.best_loss  # coarse metrics such as accuracy tie often
        return score < self.best_score if self.mode == "min" else score > self.best_score

    def _save(self, trainer: L.Trainer, improved: bool) -> None:
        """Every rank calls save_checkpoint (it synchronises); rank 0 writes the epoch's checkpoint
        once, to a temp file, copies it onto ``best.ckpt`` after an improvement (temp file +
        rename), then renames it onto ``last.ckpt``: a ``last.ckpt`` that records a best epoch is
        never on disk before that epoch's ``best.ckpt``."""
        if self.folder is None:
            return
        tmp = self.folder / f".{LAST_CKPT}.tmp"
        trainer.save_checkpoint(tmp, weights_only=False)
        if trainer.is_global_zero:
            if improved:
                shutil.copyfile(tmp, self.folder / f".{BEST_CKPT}.tmp")
                durable_replace(self.folder / f".{BEST_CKPT}.tmp", self.folder / BEST_CKPT)
            durable_replace(tmp, self.folder / LAST_CKPT)

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        loss = trainer.callback_metrics.get("val_loss")
        loss = None if loss is None else float(loss)
        improved = value is not None and self._improved(float(value), loss)
        if improved:
            self.best_score, self.best_loss, self.best_epoch = float(value), loss, trainer.current_epoch
            self._best_state = {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}
        self._save(trainer, improved)

    def on_fit_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if self._best_state is not None:
            module.load_state_dict(self._best_state)
        elif self.folder is not None and (self.folder / BEST_CKPT).is_file():  # resumed after the best epoch
            state = torch.load(self.folder / BEST_CKPT, map_location="cpu", weights_only=True)["state_dict"]
            module.load_state_dict(state)

    def state_dict(self) -> dict[str, Any]:
        return {"monitor": self.monitor, "best_score": self.best_score, "best_loss": self.best_loss,
                "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("monitor", "val_accuracy") != self.monitor:  # saved watching another metric: start afresh
            return  # (checkpoints before the monitor was saved watched the then-default accuracy)
        self.best_score = state.get("best_score")
        self.best_loss = state.get("best_loss")
        self.best_epoch = state.get("best_epoch")


class ConfiguredEarlyStopping(EarlyStopping):
    """Lightning's early stopping, whose patience on ``--resume`` is the config's (Lightning's
    restores the checkpoint's, so a resumed run could not be given more). Made to check when
    validation ends, so that the epoch's checkpoint (taken when the training epoch ends) holds
    the epoch's own count of epochs without improvement."""

    @property
    def state_key(self) -> str:
        """Lightning's own key (it names the class): checkpoints written by ``EarlyStopping`` itself
        resume with their count, and :func:`~polymodal.resume.check_unfinished` finds it."""
        return self._generate_state_key(monitor=self.monitor, mode=self.mode).replace(type(self).__name__,
                                                                                      "EarlyStopping", 1)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        patience = self.patience
        super().load_state_dict(state_dict)
        # it stopped the run, and is given no more patience now: the resume only writes the run's
        # results (a save was interrupted); Lightning restores when it stopped, not that it did
        self.finished = self.stopped_epoch > 0 and patience <= state_dict.get("patience", patience)
        self.patience = patience

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if getattr(self, "finished", False):
            trainer.should_stop = True


class TimeLimit(Callback):
    """``train.max_minutes``: between epochs, stops the fit before an epoch it would not finish
    within the limit (judged by the mean length of this run's epochs so far), so an epoch is never
    cut short and the run ends within the limit unless one epoch alone is longer. Keeps no state
    in checkpoints: a resumed run gets the limit afresh. Rank 0 decides for every rank."""

    clock = staticmethod(time.perf_counter)

    def __init__(self, minutes: float):
        self.seconds = minutes * 60.0
        self.started = 0.0
        self.epochs = 0
        self.ran_out = False

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.started, self.epochs = self.clock(), 0

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.epochs += 1
        elapsed = self.clock() - self.started
        out = trainer.strategy.broadcast(elapsed + elapsed / self.epochs > self.seconds, src=0)
        if out and trainer.current_epoch + 1 < trainer.max_epochs and not trainer.should_stop:
            self.ran_out = trainer.should_stop = True


class RankSeed(Callback):
    """When training starts, a rank other than 0 of a distributed fit draws apart from rank 0
    (:func:`~polymodal.training.process_state.seed_rank`): its modality dropout, dropout masks and
    augmentations are its own. The model was built before, alike on every rank (DDP copies rank
    0's weights to the others as it starts), and the distributed sampler shares the rows out by
    its own seed; rank 0, and a one-process fit, draw as before."""

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        seed_rank(trainer.global_rank)


# why a resumed fit may not take another number of optimiser steps per epoch, with a learning-rate schedule or without
STEPS_SCHEDULED = ("Its learning-rate schedule and step count are laid out over each epoch's steps: the schedule would "
                   "end too early or too late (one-cycle: fail).")
STEPS_UNSCHEDULED = ("Its step count (and a transfer method's ramp) is laid out over each epoch's steps, and its "
                     "global batch would change mid-run.")


class StepsPerEpoch(Callback):
    """Records in each checkpoint the optimiser steps an epoch takes on each process and the
    processes that train (``train.devices`` x ``train.num_nodes``), and refuses a resumed fit that
    would take another number of steps per epoch as it starts, before its first step: the
    learning-rate schedule (its length, its warm-up) and the transfer methods' ramps are laid out
    over every epoch's steps, and the step count restored from the checkpoint would place the
    resumed epochs elsewhere in them (past a cosine schedule's end, at a rate of 0; beyond a
    one-cycle schedule's last step, an error). A checkpoint written before this record tells its
    steps per epoch by its step count and epochs."""

    def __init__(self, cfg: TrainConfig):
        self.settings = {"devices": cfg.devices, "num_nodes": cfg.num_nodes, "batch_size": cfg.batch_size}
        self.scheduled = cfg.scheduler != "none"
        self.steps: int | None = None  # this fit's, per epoch and process
        self.world_size = 1
        self.recorded: dict[str, Any] | None = None  # the checkpoint's a resumed fit started from

    def on_load_checkpoint(self, trainer: L.Trainer, module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        epochs, steps = checkpoint.get("epoch", -1) + 1, checkpoint.get("global_step", 0)
        if epochs > 0 and steps % epochs == 0:  # overridden by the record, in a checkpoint that holds one
            self.recorded = {"steps_per_epoch": steps // epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.recorded = dict(state)

    def state_dict(self) -> dict[str, Any]:
        return {"steps_per_epoch": self.steps, "world_size": self.world_size, **self.settings}

    def on_fit_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        trainer.estimated_stepping_batches  # noqa: B018 - the training loader set up, for its length
        self.steps = math.ceil(trainer.num_training_batches / trainer.accumulate_grad_batches)
        self.world_size = trainer.world_size
        before = self.recorded
        if before is None or before.get("steps_per_epoch") in (None, self.steps):
            return
        raise RunFolderError(f"{option('--resume')}: the run trained {before['steps_per_epoch']} optimiser steps per epoch"
                             f"{self._on(before)}; resumed, it would take {self.steps}"
                             f"{self._on({'world_size': self.world_size, **self.settings})}. "
                             + (STEPS_SCHEDULED if self.scheduled else STEPS_UNSCHEDULED)
                             + f" Resume with the settings it trained with ({self._keys(before)}), or start a new run")

    @staticmethod
    def _on(record: dict[str, Any]) -> str:
        """`` on each of 2 process(es) (train.devices: 2 x train.num_nodes: 1, train.batch_size: 8)``,
        as much of it as ``record`` holds."""
        if "world_size" not in record:
            return ""
        return (f" on each of {record['world_size']} process(es) (train.devices: {record['devices']} x "
                f"train.num_nodes: {record['num_nodes']}, train.batch_size: {record['batch_size']})")

    def _keys(self, before: dict[str, Any]) -> str:
        """The settings of ``before`` that differ from this fit's, as ``key: value``."""
        if "world_size" not in before:
            return "train.devices, train.num_nodes and train.batch_size"
        return ", ".join(f"train.{k}: {before.get(k)}" for k in self.settings if before.get(k) != self.settings[k]) \
            or "the same training rows"


class EpochCSVLogger(CSVLogger):
    """Lightning's CSV logger, writing ``logs/csv/metrics.csv``; a resumed run keeps the rows of the
    epochs before ``resume_epoch`` (Lightning's own logger empties the file when it starts): they
    are written back as soon as it has, so a resumed run interrupted again loses none of them."""

    def __init__(self, root: Path, *, resume_epoch: int | None = None):
        super().__init__(root, name="csv", version="")
        path = Path(self.log_dir) / "metrics.csv"
        self._earlier: list[dict[str, str]] = []
        if resume_epoch is not None and path.is_file():
            with path.open(newline="", encoding="utf-8") as file:
                self._earlier = [row for row in csv.DictReader(file)
                                 if row.get("epoch") and float(row["epoch"]) < resume_epoch]

    @property
    def experiment(self) -> Any:
        made = self._experiment is not None
        writer = super().experiment  # Lightning's writer removes metrics.csv when it is made
        if not made and self._earlier:
            for row in self._earlier:
                writer.log_metrics({k: v for k, v in row.items() if k != "step" and v not in ("", None)},
                                   int(row["step"]) if row.get("step") else None)
            writer.save()
        self._earlier = []
        return writer


@dataclass
class FitResult:
    history: pd.DataFrame
    best_epoch: int | None  # counted from 1, as history's epochs
    best_score: float | None
    seconds: float  # this session's (``trainer.fit``'s wall-clock time)
    rank: int = 0  # global rank of this process (0 when not distributed)
    earlier_seconds: float = 0.0  # a resumed fit's: trained in the sessions before, as its checkpoint recorded

    @property
    def total_seconds(self) -> float:
        """The whole fit's training time: this session's and, resumed, the earlier sessions'."""
        return self.earlier_seconds + self.seconds


def make_trainer(cfg: TrainConfig, *, run_dir: Path | None, monitor: str, mode: str, steps_per_epoch: int,
                 distributed_sampler: bool = True, resume_epoch: int | None = None
                 ) -> tuple[L.Trainer, History, AtomicCheckpoint]:
    """A Trainer configured from ``train`` settings; logs and checkpoints go under ``run_dir``.
    ``distributed_sampler=False``: under DDP, the loaders share out their rows themselves (every
    rank then scores the whole validation set, counted once). ``resume_epoch``: the first epoch of
    a resumed run (the CSV log keeps the rows of the epochs before it)."""
    for name in ("lightning.pytorch", "lightning.fabric"):  # keep Lightning's info chatter out of our output
        logging.getLogger(name).setLevel(logging.WARNING)
    history = History(run_dir / HISTORY_FILE if run_dir is not None else None)
    checkpoint = AtomicCheckpoint(run_dir / CHECKPOINTS_DIR if run_dir is not None else None, f"val_{monitor}", mode)
    callbacks: list[Callback] = [history, checkpoint, StepsPerEpoch(cfg), RankSeed()]
    if cfg.early_stopping is not None:
        callbacks.append(ConfiguredEarlyStopping(f"val_{monitor}", patience=cfg.early_stopping.patience, mode=mode,
                                                 min_delta=cfg.early_stopping.min_delta, check_finite=False,
                                                 check_on_train_epoch_end=False))
    if cfg.max_minutes is not None:
        callbacks.append(TimeLimit(cfg.max_minutes))
    show_bar = cfg.progress and watched()  # on a terminal: in a log, the bar's last state would be printed
    if show_bar:
        callbacks.append(TrainingProgressBar(f"val_{monitor}"))
    elif cfg.progress:  # a log: a line per epoch
        callbacks.append(EpochLines(f"val_{monitor}"))
    if cfg.deterministic:
        # deterministic kernels (Lightning turns them on below) without also filling every new
        # tensor with NaN, a debugging aid for kernels that read memory they did not write:
        # about 7% of a small CNN's training step on CPU
        torch.utils.deterministic.fill_uninitialized_memory = False
    loggers: list[Any] = False  # type: ignore[assignment]
    if run_dir is not None:
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers = [EpochCSVLogger(run_dir / LOGS_DIR, resume_epoch=resume_epoch),
                   TensorBoardLogger(run_dir / LOGS_DIR, name="tensorboard", version="", default_hp_metric=False)]
    trainer = L.Trainer(
        max_epochs=cfg.epochs,
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        num_nodes=cfg.num_nodes,
        strategy=make_strategy(cfg),
        precision=lightning_precision(cfg),
        gradient_clip_val=cfg.grad_clip,
        deterministic="warn" if cfg.deterministic else False,
        callbacks=callbacks,
        logger=loggers,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=show_bar,
        num_sanity_val_steps=0,
        use_distributed_sampler=distributed_sampler,
        log_every_n_steps=max(1, min(50, steps_per_epoch)),
        default_root_dir=str(run_dir) if run_dir is not None else None,
    )
    return trainer, history, checkpoint


def fit_interruptibly(trainer: L.Trainer, module: L.LightningModule, train_loader: Any, val_loader: Any,
                      ckpt: str | None) -> None:
    """``trainer.fit``, where Ctrl-C stays a ``KeyboardInterrupt``: Lightning turns it into
    ``sys.exit(1)`` after its own shutdown (and leaves SIGINT ignored), which would end the program
    without the command line's message and exit status 130 (see ``cli.common.user_errors``).
    The checkpoint ``ckpt`` (a resume's) is loaded with ``weights_only=True``: tensors and plain
    values only, never an object whose unpickling could run code (our checkpoints hold none;
    Lightning would leave it to torch's default, which ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` turns off)."""
    try:
        trainer.fit(module, train_loader, val_loader, ckpt_path=ckpt, weights_only=True)
    except ValueError as err:  # torch's words for an optimiser state of other parameter groups
        if ckpt is None or "parameter group" not in str(err):
            raise
        raise RunFolderError(f"cannot resume from {ckpt}: its optimiser state holds other parameter groups than this "
                             f"model's ({err}); the checkpoint was written by a version of polymodal that grouped "
                             "them otherwise (by weight decay and learning rate): train the run again without "
                             "--resume") from None
    except SystemExit as stop:
        if trainer.state.status != TrainerStatus.INTERRUPTED:
            raise
        signal.signal(signal.SIGINT, signal.default_int_handler)
        interrupt = stop.__context__  # what Lightning caught: Ctrl-C, or SIGTERM (cli.common.Terminated)
        raise (interrupt if isinstance(interrupt, KeyboardInterrupt) else KeyboardInterrupt()) from None


def fit_module(module: L.LightningModule, train_loader: Any, val_loader: Any, cfg: TrainConfig, *,
               run_dir: Path | None, monitor: str, mode: str, resume: bool = False) -> FitResult:
    """Train ``module``; restore its best weights; return the history."""
    from polymodal.errors import ManifestError

    if hasattr(val_loader, "__len__") and len(val_loader) == 0:
        raise ManifestError(["the validation data holds no row to evaluate; early stopping and the weights kept "
                             "at the end follow it"])
    shards_by_rank = getattr(getattr(train_loader, "batch_sampler", None), "shards_by_rank", False)  # episodes
    ckpt, resume_epoch = None, None
    if resume:
        last = run_dir / LAST_CHECKPOINT if run_dir is not None else None
        if last is None or not last.is_file():
            raise FileNotFoundError(f"{option('--resume')}: no checkpoint to resume from at {last}")
        ckpt = str(last)  # its CRCs were checked before any data was read (resume.check_out)
        resume_epoch = checkpoint_state(last)["epoch"] + 1
    trainer, history, checkpoint = make_trainer(cfg, run_dir=run_dir, monitor=monitor, mode=mode,
                                                steps_per_epoch=len(train_loader), distributed_sampler=not shards_by_rank,
                                                resume_epoch=resume_epoch)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module="lightning")
        for message in NOISE:
            warnings.filterwarnings("ignore", message=message)
        fit_interruptibly(trainer, module, train_loader, val_loader, ckpt)
    seconds = time.perf_counter() - start
    if trainer.global_step == 0:  # a model saved as trained when it never was: refused
        if trainer.num_training_batches == 0:
            raise ManifestError([f"no training step ran: the training loader gave no batch on this process (rank "
                                 f"{trainer.global_rank} of {trainer.world_size}; train.batch_size {cfg.batch_size}); "
                                 "give more training rows, a smaller batch_size or fewer train.devices"])
        raise RuntimeError("no training step ran: training stopped before its first step (a callback that stops "
                           "the fit at once?)")
    best_epoch = None if checkpoint.best_epoch is None else checkpoint.best_epoch + 1
    limit = next((c for c in trainer.callbacks if isinstance(c, TimeLimit)), None)
    if limit is not None and limit.ran_out and trainer.is_global_zero:
        warn_user(f"train.max_minutes ({cfg.max_minutes:g}) would run out in the next epoch: training stopped after "
                  f"epoch {len(history.rows)} of {cfg.epochs} and keeps its best ({best_epoch})"
                  + (f"; {option('--resume')} with a new limit continues it" if run_dir is not None else ""))
    return FitResult(history.frame, best_epoch, checkpoint.best_score, seconds, trainer.global_rank,
                     earlier_seconds=history.earlier_seconds)
