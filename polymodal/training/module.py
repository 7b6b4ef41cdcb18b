"""The Lightning module: one training step, validation metrics, optimiser and schedule."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import nn

from polymodal.config.train import TrainConfig
from polymodal.models.encoders.base import Encoder
from polymodal.models.model import MultimodalNet
from polymodal.models.objectives import TaskLoss
from polymodal.models.objectives.multitask import MultiTaskLoss
from polymodal.training.terms import StepContext, SubsetTerm, TaskTerm, Term
from polymodal.training.unlabeled import forward_with_unlabeled
from polymodal.utils.device import move_to


@dataclass
class OptimSettings:
    """What the optimiser and schedule need (from ``train`` in the config)."""

    lr: float
    weight_decay: float
    scheduler: str
    warmup_epochs: float
    encoder_lr_scale: float = 1.0

    @classmethod
    def from_config(cls, train: TrainConfig) -> OptimSettings:
        return cls(train.lr, train.weight_decay, train.scheduler, train.warmup_epochs, train.encoder_lr_scale)


def drop_modalities(present: Mapping[str, torch.Tensor], rates: Mapping[str, float],
                    generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Hide each present modality of each sample with its probability in ``rates``.

    A sample never loses all its modalities: when every present one would be dropped, one of
    them, chosen at random, is kept.
    """
    names = sorted(present)
    original = torch.stack([present[n] for n in names], dim=1)  # (B, M)
    device = original.device
    probs = torch.tensor([rates.get(n, 0.0) for n in names], device=device)
    drop = torch.rand(original.shape, device=device, generator=generator) < probs
    kept = original & ~drop
    empty = ~kept.any(dim=1) & original.any(dim=1)
    if bool(empty.any()):
        scores = torch.rand(original.shape, device=device, generator=generator) * original.float()
        rescue = nn.functional.one_hot(scores.argmax(dim=1), len(names)).bool()
        kept = torch.where(empty.unsqueeze(1), rescue & original, kept)
    return {n: kept[:, i] for i, n in enumerate(names)}


VALIDATION_DROPOUT_DRAWS = 4  # modality-dropout masks per validation batch
VALIDATION_DROPOUT_SEED = 1_000_003


class BatchModule(L.LightningModule):
    """A LightningModule with the two cheap paths every training here takes.

    Batches (tensors in nested dicts) move to the device with
    :func:`~polymodal.utils.device.move_to`: Lightning's generic collection walk costs a few
    milliseconds per step on these batches, a tenth of a small model's step on CPU.

    Per-batch values (losses) are summed here by :meth:`log_epoch_mean` and handed to Lightning
    once per epoch, each as its mean over the rows of the batches that reported it: each
    ``self.log`` call walks Lightning's result collection, about a millisecond on CPU, so several
    per step cost more than the optimiser. The training means are logged at the epoch's last
    batch, before validation and the epoch-end callbacks read them; the validation means when the
    validation epoch ends. The validation values (:meth:`log_validation`) reach the callbacks
    (early stopping, the history) then, but the loggers only with the training epoch's values at
    its end, so that ``logs/`` holds one row per epoch rather than a validation row and a
    training row.
    """

    def __init__(self) -> None:
        super().__init__()
        # per stage: metric name -> (sum of value x rows, rows)
        self._epoch_sums: dict[str, dict[str, tuple[torch.Tensor, int]]] = {"train": {}, "val": {}}
        self._validation_keys: set[str] = set()  # logged for the callbacks, not yet for the loggers

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        return move_to(batch, device)

    def log_epoch_mean(self, stage: str, values: Mapping[str, torch.Tensor | float], size: int) -> None:
        """Add one batch of ``size`` rows to the epoch means of ``values`` (full metric names); a
        value some batches do not report (a loss term with nothing to score) averages over the
        batches that do."""
        sums = self._epoch_sums[stage]
        for key, value in values.items():
            value = torch.as_tensor(value).detach().float() * size
            total, rows = sums.get(key, (0.0, 0))
            sums[key] = (value + total, rows + size)

    def running_mean(self, stage: str, key: str) -> float | None:
        """The mean of ``key`` over the batches of the epoch so far (None before the first)."""
        total, rows = self._epoch_sums[stage].get(key, (None, 0))
        return float(total / rows) if rows else None

    def log_validation(self, key: str, value: torch.Tensor | float, **kwargs: Any) -> None:
        """``self.log`` a validation epoch value for the callbacks now; the loggers get it with the
        training epoch's values, in the same row (see :meth:`on_train_epoch_end`)."""
        self.log(key, value, logger=False, **kwargs)
        self._validation_keys.add(key)

    def _log_epoch_means(self, stage: str) -> None:
        # under DDP the epoch value is the mean over every rank's rows: sums and row counts are added
        # up over the ranks (a mean of the ranks' means would weigh a rank's short last batch like a
        # full one)
        log = self.log if stage == "train" else self.log_validation
        trainer = self._trainer  # None outside a fit
        distributed = trainer is not None and trainer.world_size > 1
        sums = self._epoch_sums[stage]
        keys = list(sums)
        if distributed:  # every rank reduces the same keys in the same order (a rank may lack one)
            gathered: list[Any] = [None] * trainer.world_size
            torch.distributed.all_gather_object(gathered, keys)
            keys = sorted(set().union(*gathered))
        for key in keys:
            total, rows = sums.get(key, (0.0, 0))
            both = torch.stack([torch.as_tensor(total, dtype=torch.float32), torch.tensor(float(rows))]).to(self.device)
            if distributed:
                both = trainer.strategy.reduce(both, reduce_op="sum")
            log(key, both[0] / both[1], on_step=False, on_epoch=True, batch_size=int(both[1]), sync_dist=False)
        self._epoch_sums[stage] = {}

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        for module in self.modules():  # parameters held within bounds after each step (a learned temperature)
            constrain = getattr(module, "constrain", None)
            if callable(constrain):
                constrain()
        if self.trainer.is_last_batch:
            self._log_epoch_means("train")

    def on_train_epoch_end(self) -> None:
        # Only when the loader never announced its last batch: the means then still reach the
        # loggers and early stopping, but not the callbacks Lightning runs before this hook
        # (the history), so every loader here reports its end.
        self._log_epoch_means("train")
        # the epoch's validation values, as the callbacks saw them (already reduced over ranks),
        # now reach the loggers beside the training means
        seen = self.trainer.callback_metrics
        values = {key: seen[key] for key in sorted(self._validation_keys) if key in seen}
        self._validation_keys = set()
        if values:
            self.log_dict(values, on_step=False, on_epoch=True, sync_dist=False)

    def on_validation_epoch_end(self) -> None:
        self._log_epoch_means("val")


class PolymodalModule(BatchModule):
    """Trains a :class:`MultimodalNet` on one task.

    Args:
        net: the network.
        loss: the task loss (validation loss; the task term of training when ``terms`` is None).
        optim: optimiser and schedule settings.
        metrics: ``(outputs, targets) -> dict`` computed on the whole validation set each epoch.
        modality_dropout: per-modality probability of hiding a present modality during training.
        terms: the loss terms summed at each training step (default: the task loss alone).
        callbacks: Lightning callbacks this training needs (e.g. gradual unfreezing).

    A training batch is either a labelled batch, or ``{"labeled": batch, "unlabeled": batch}``
    when the run has an unlabelled manifest (domain adaptation, semi-supervised learning).
    """

    def __init__(self, net: MultimodalNet, loss: TaskLoss, optim: OptimSettings,
                 metrics: Callable[[np.ndarray, np.ndarray], dict[str, Any]],
                 modality_dropout: Mapping[str, float] | None = None, terms: list[Term] | None = None,
                 callbacks: list[L.Callback] | None = None):
        super().__init__()
        self.net = net
        self.loss = loss
        self.terms = nn.ModuleList(terms if terms is not None else [TaskTerm(loss)])
        self._callbacks = list(callbacks or [])
        self.optim = optim
        self.metrics = metrics
        self.modality_dropout = {k: v for k, v in (modality_dropout or {}).items() if v > 0}
        self._val_outputs: list[torch.Tensor] = []
        self._val_targets: list[torch.Tensor] = []
        self._val_index: list[torch.Tensor] = []

    def configure_callbacks(self) -> list[L.Callback]:
        return list(self._callbacks)

    def forward(self, batch: Mapping[str, Any]) -> torch.Tensor:
        return self.net(batch["inputs"], batch["present"])

    @property
    def progress(self) -> float:
        """Fraction of the planned optimisation steps done."""
        total = self.trainer.estimated_stepping_batches if self._trainer is not None else 0
        return min(1.0, self.global_step / total) if total else 0.0

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        labeled, unlabeled = (batch["labeled"], batch.get("unlabeled")) if "labeled" in batch else (batch, None)
        present = labeled["present"]
        if self.modality_dropout:
            present = drop_modalities(present, self.modality_dropout)
        out, unlabeled, unlabeled_out = forward_with_unlabeled(self.net, labeled["inputs"], present, unlabeled,
                                                               self.terms)
        ctx = StepContext(self, labeled, present, out, unlabeled, self.progress, unlabeled_out)
        total, logs = None, {}
        for term in self.terms:
            result = term(ctx)
            total = result.loss * term.weight if total is None else total + result.loss * term.weight
            logs[f"{term.name}_loss"] = result.loss.detach()
            logs.update({k if term.name == "task" else f"{term.name}_{k}": v for k, v in result.logs.items()})
        self.log_epoch_mean("train", {"train_loss": total, **{f"train_{k}": v for k, v in logs.items()}},
                            out.outputs.shape[0])
        return total

    def _selection_loss(self, outputs: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """``val_loss`` (early stopping's default) and, for several tasks, the losses beside it: a
        multi-task run watches its main task's own loss."""
        result = self.loss(outputs, target)
        if not isinstance(self.loss, MultiTaskLoss):
            return {"val_loss": result.loss}
        return {"val_loss": self.loss.main_loss(result), "val_total_loss": result.loss,
                **{f"val_{k}": v for k, v in result.logs.items() if k.endswith("/loss")}}

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        subset = next((t for t in self.terms if isinstance(t, SubsetTerm)), None)
        if subset is None:
            outputs = self(batch)
        else:  # encoded once, fused again per modality below
            features = self.net.encode(batch["inputs"], batch["present"])
            outputs = self.net.outputs_from_features(features, batch["present"])
        losses = self._selection_loss(outputs, batch["target"])
        if self.modality_dropout:
            # the loss the model is trained for: its rows under the same modality dropout, with masks
            # seeded by the batch (the same every epoch); the metrics below still see whole rows
            losses["val_full_loss"] = losses["val_loss"]
            present = batch["present"]
            generator = torch.Generator(device=next(iter(present.values())).device)
            generator.manual_seed(VALIDATION_DROPOUT_SEED + batch_idx)
            draws = [self._selection_loss(self.net(batch["inputs"], drop_modalities(present, self.modality_dropout,
                                                                                     generator)), batch["target"])
                     for _ in range(VALIDATION_DROPOUT_DRAWS)]
            losses["val_loss"] = torch.stack([d["val_loss"] for d in draws]).mean()
        if subset is not None:
            # selection follows the subset objective too: each modality alone, on the rows that hold it
            losses.setdefault("val_full_loss", losses["val_loss"])
            present, target = batch["present"], batch["target"]
            alone = [self._selection_loss(out[present[name]], target[present[name]])["val_loss"]
                     for name, out in SubsetTerm.alone_outputs(self.net, features, present).items()]
            if alone:
                losses["val_subset_loss"] = torch.stack(alone).mean()
                losses["val_loss"] = (losses["val_loss"] + subset.weight * losses["val_subset_loss"]) / (1 + subset.weight)
        self.log_epoch_mean("val", losses, outputs.shape[0])
        self._val_outputs.append(outputs.detach().float())
        self._val_targets.append(batch["target"].detach())
        if "index" in batch:
            self._val_index.append(batch["index"].detach())

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        if not self._val_outputs:
            return
        outputs = torch.cat(self._val_outputs)
        targets = torch.cat(self._val_targets)
        index = torch.cat(self._val_index) if self._val_index else None
        self._val_outputs.clear()
        self._val_targets.clear()
        self._val_index.clear()
        if self.trainer.world_size > 1 and index is not None:
            # every rank scores the whole validation set; the distributed sampler pads it to a
            # multiple of the world size, so rows seen twice are counted once
            outputs = self.all_gather(outputs).flatten(0, 1)
            targets = self.all_gather(targets).flatten(0, 1)
            index = self.all_gather(index).flatten(0, 1)
            keep = first_occurrences(index)
            outputs, targets = outputs[keep], targets[keep]
        scores = self.metrics(outputs.cpu().numpy(), targets.cpu().numpy())
        for key, value in scores.items():  # undefined (None) or diverged (NaN, inf): NaN, never last epoch's value
            if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
                number = float("nan") if value is None or not math.isfinite(value) else float(value)
                self.log_validation(f"val_{key}", number, sync_dist=False)

    def configure_optimizers(self) -> dict[str, Any]:
        return configure_adamw(self, self.net.encoders, self.optim, self.trainer)


def first_occurrences(values: torch.Tensor) -> torch.Tensor:
    """Positions of the first occurrence of each distinct value in a 1-D tensor, in order."""
    order = torch.argsort(values, stable=True)
    sorted_values = values[order]
    first = torch.ones_like(sorted_values, dtype=torch.bool)
    first[1:] = sorted_values[1:] != sorted_values[:-1]
    return torch.sort(order[first]).values


def cosine_with_warmup(total: int, warmup: int) -> Callable[[int], float]:
    """LR multiplier: linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``total``."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(total - warmup, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def configure_adamw(module: nn.Module, encoders: Mapping[str, Encoder], optim: OptimSettings,
                    trainer: L.Trainer) -> dict[str, Any]:
    """Lightning's ``configure_optimizers`` answer for every module that trains: AdamW over
    ``module``'s :func:`parameter_groups` with ``optim.scheduler`` (``onecycle``, ``cosine`` with
    warm-up, or none) stepped every batch."""
    groups = parameter_groups(module, encoders, optim)
    optimizer = torch.optim.AdamW(groups, lr=optim.lr, weight_decay=optim.weight_decay)
    total = max(int(trainer.estimated_stepping_batches), 1)
    if optim.scheduler == "onecycle":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[g["lr"] for g in groups], total_steps=total)
    elif optim.scheduler == "cosine":
        warmup = int(total * optim.warmup_epochs / max(trainer.max_epochs or 1, 1))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_with_warmup(total, warmup))
    else:
        return {"optimizer": optimizer}
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def _declared_no_decay(module: nn.Module) -> set[str]:
    """The full names of the parameters submodules of ``module`` exempt from weight decay through
    a ``no_weight_decay()`` method (names relative to the submodule)."""
    names: set[str] = set()
    for prefix, sub in module.named_modules():
        declared = getattr(sub, "no_weight_decay", None)
        if callable(declared):
            names |= {f"{prefix}.{name}" if prefix else name for name in declared()}
    return names


def parameter_groups(module: nn.Module, encoders: Mapping[str, Encoder], optim: OptimSettings) -> list[dict[str, Any]]:
    """AdamW groups over ``module``'s trainable parameters: no weight decay on biases, norms and
    what a submodule's ``no_weight_decay()`` names (timm's convention: a ViT's class token and
    position table; our Transformers' class token);
    the weights ``encoders`` loaded from files at ``lr * encoder_lr_scale`` (what they add from
    scratch, a projection or LoRA adapters, at ``lr``). Frozen parameters are left out, except
    those a gradual-unfreezing schedule trains later (in the optimiser from the start)."""
    pretrained = {id(p) for enc in encoders.values() if enc.pretrained for p in enc.parameters()}
    pretrained -= {id(p) for enc in encoders.values() for p in enc.new_parameters()}
    pending = {id(p) for enc in encoders.values() for p in enc.pending_parameters()}
    undecayed = _declared_no_decay(module)
    buckets: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, param in module.named_parameters():
        if not param.requires_grad and id(param) not in pending:
            continue
        no_decay = param.dim() <= 1 or name.endswith(".bias") or name in undecayed
        buckets.setdefault((id(param) in pretrained, no_decay), []).append(param)
    groups = []
    for (is_pretrained, no_decay), params in sorted(buckets.items()):
        lr = optim.lr * (optim.encoder_lr_scale if is_pretrained else 1.0)
        groups.append({"params": params, "lr": lr, "weight_decay": 0.0 if no_decay else optim.weight_decay})
    return groups
