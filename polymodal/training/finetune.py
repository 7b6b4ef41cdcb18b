"""Fine-tuning schedules: gradual unfreezing of pretrained encoders.

With ``encoder: {freeze: N | all, unfreeze: {start, every, blocks}}`` an encoder starts with its
last N blocks trainable (none for ``all``); from epoch ``start``, every ``every`` epochs,
``blocks`` more trailing blocks join, until the whole encoder trains (ULMFiT's gradual unfreezing,
Howard & Ruder 2018). The blocks still frozen are in the optimiser from the start (with no
gradient they are not updated, nor decayed), so the learning-rate schedule covers them; batch-norm
layers of frozen blocks stay in eval mode until their block unfreezes.

Other strategies are settings rather than code: ``freeze: all`` with a linear head is a linear
probe (``cache: true`` makes it skip the encoder), ``train.encoder_lr_scale`` gives pretrained
encoders their own learning rate, ``lora`` adds low-rank adapters (``polymodal.models.lora``).
"""

from __future__ import annotations

import sys
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from polymodal.config.finetune import UnfreezeConfig
from polymodal.models.encoders.base import Encoder


def trainable_blocks(freeze: str | int, schedule: UnfreezeConfig, epoch: int, n_blocks: int) -> int:
    """How many trailing blocks train at ``epoch`` (0-based)."""
    base = 0 if freeze == "all" else n_blocks if freeze == "none" else int(freeze)
    if epoch < schedule.start:
        return min(base, n_blocks)
    steps = 1 + (epoch - schedule.start) // schedule.every
    return min(base + steps * schedule.blocks, n_blocks)


class GradualUnfreezing(Callback):
    """Unfreezes encoder blocks at the start of each epoch, following each encoder's schedule.

    Args:
        plans: ``{modality: (encoder, freeze spec, schedule)}``.
        announce: say on stderr when blocks join (``train.progress``).
    """

    def __init__(self, plans: dict[str, tuple[Encoder, str | int, UnfreezeConfig]], announce: bool = True):
        self.plans = plans
        self.announce = announce
        self.trainable: dict[str, int] = {}
        for encoder, _, schedule in plans.values():
            encoder.unfreeze_schedule = schedule  # its frozen blocks join the optimiser from the start

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        for name, (encoder, freeze, schedule) in self.plans.items():
            count = trainable_blocks(freeze, schedule, trainer.current_epoch, len(encoder.blocks()))
            if count != self.trainable.get(name):
                encoder.freeze(count)
                # re-applies the modes: an encoder frozen whole was put in eval mode, and its
                # unfrozen blocks must train (batch-norm statistics, dropout) from now on
                encoder.train(module.training)
                if name in self.trainable and self.announce and trainer.is_global_zero:  # a change, not the start
                    print(f"{name}: {count} of {len(encoder.blocks())} encoder blocks train from epoch "
                          f"{trainer.current_epoch + 1} (gradual unfreezing)", file=sys.stderr, flush=True)
                self.trainable[name] = count


def finetune_callbacks(config: Any, net: Any) -> list[Callback]:
    """The callbacks a config's fine-tuning settings need (gradual unfreezing, when any encoder
    has an ``unfreeze`` schedule)."""
    plans = {name: (net.encoders[name], modality.encoder.freeze, modality.encoder.unfreeze)
             for name, modality in config.modalities.items() if modality.encoder.unfreeze is not None}
    return [GradualUnfreezing(plans, announce=config.train.progress)] if plans else []
