"""The hardware a run trains on: ``train.accelerator``, ``devices``, ``strategy``, ``precision``
and ``num_workers`` checked against this machine before any data is read, and turned into
Lightning's strategy and precision."""

from __future__ import annotations

import os
from typing import Any

import torch

from polymodal.config.train import TrainConfig
from polymodal.errors import ConfigError
from polymodal.utils.warn import warn_user


def make_strategy(name: str) -> Any:
    """Lightning strategy for ``train.strategy``. DDP looks for unused parameters because some are
    legitimately idle in a step (a missing-embedding when every sample has its modality, token
    projections a pooled fusion does not read)."""
    if name in ("ddp", "ddp_spawn"):
        from lightning.pytorch.strategies import DDPStrategy

        return DDPStrategy(find_unused_parameters=True, start_method="spawn" if name == "ddp_spawn" else "popen")
    return name


def accelerators() -> tuple[bool, bool]:
    """Whether torch can use a CUDA GPU, and an Apple MPS one, on this machine."""
    mps = getattr(torch.backends, "mps", None)
    return torch.cuda.is_available(), bool(mps is not None and mps.is_available())


def check_devices(cfg: TrainConfig) -> None:
    """Check ``train``'s hardware settings against this machine, before any data is read (Lightning
    would refuse a missing GPU only once the data is prepared, with its own words).

    Raises:
        ConfigError: ``accelerator`` names a GPU this machine lacks, or more GPUs than it has.
    """
    cuda, mps = accelerators()
    problems = []
    if cfg.accelerator == "gpu" and not (cuda or mps):  # Lightning's 'gpu' is CUDA or MPS
        problems.append("train.accelerator: 'gpu', but torch finds no GPU on this machine (CUDA or MPS); use "
                        "'auto' (a GPU when there is one) or 'cpu'")
    elif cfg.accelerator == "mps" and not mps:
        problems.append("train.accelerator: 'mps', but torch finds no Apple GPU (MPS) on this machine; use 'auto' "
                        "or 'cpu'")
    elif cfg.accelerator in ("gpu", "auto") and cuda and isinstance(cfg.devices, int) \
            and cfg.devices > torch.cuda.device_count():  # per node
        problems.append(f"train.devices: {cfg.devices} GPUs asked for; this machine has "
                        f"{torch.cuda.device_count()} (several CPU processes: accelerator: cpu)")
    if problems:
        raise ConfigError(problems)
    if cfg.precision == "16-mixed" and on_cpu(cfg):
        warn_user("train.precision: '16-mixed' needs a GPU; on the CPU this run trains in 'bf16-mixed' (as "
                  "Lightning substitutes)")
    cores = os.cpu_count()
    ranks = cfg.devices if isinstance(cfg.devices, int) and cfg.strategy != "auto" and on_cpu(cfg) else 1
    if cfg.num_workers and cores and cfg.num_workers * ranks > cores:  # each CPU process starts its own
        each = f" in each of {ranks} processes" if ranks > 1 else ""
        warn_user(f"train.num_workers: {cfg.num_workers} loader processes{each} for {cores} CPU cores compete with "
                  "each other and with training (null: chosen from the cores)")


def on_cpu(cfg: TrainConfig) -> bool:
    """Whether ``train`` trains on the CPU on this machine (``cpu``, or ``auto`` without a GPU)."""
    cuda, mps = accelerators()
    return cfg.accelerator == "cpu" or (cfg.accelerator == "auto" and not (cuda or mps))


def lightning_precision(cfg: TrainConfig) -> str:
    """The precision Lightning is given: ``16-mixed`` on the CPU trains in ``bf16-mixed``, as
    Lightning itself would substitute (:func:`check_devices` warns, by key)."""
    return "bf16-mixed" if cfg.precision == "16-mixed" and on_cpu(cfg) else cfg.precision
