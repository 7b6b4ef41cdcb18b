"""The hardware a run trains on: ``train.accelerator``, ``devices``, ``strategy``, ``precision``
and ``num_workers`` checked against this machine before any data is read, and turned into
Lightning's strategy and precision."""

from __future__ import annotations

import functools
import os
import shutil
import socket
import stat
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import torch

from polymodal.config.train import TrainConfig
from polymodal.errors import ConfigError
from polymodal.utils.device import accelerators
from polymodal.utils.warn import warn_user

F = TypeVar("F", bound=Callable[..., Any])


def make_strategy(cfg: TrainConfig) -> Any:
    """Lightning strategy for ``train.strategy``: ``ddp``, and ``auto`` when several processes train
    (Lightning's own choice there would be a DDP that refuses idle parameters). DDP looks for unused
    parameters because some are legitimately idle in a step (a missing-embedding when every sample
    has its modality, token projections a pooled fusion does not read)."""
    if cfg.strategy == "ddp" or (cfg.strategy == "auto" and world_size(cfg) > 1):
        from lightning.pytorch.strategies import DDPStrategy

        return DDPStrategy(find_unused_parameters=True, start_method="popen")
    return cfg.strategy


def world_size(cfg: TrainConfig) -> int:
    """How many processes train together: ``devices`` per node (``auto``: every GPU, or one CPU
    process) times ``num_nodes``."""
    if isinstance(cfg.devices, int):
        per_node = cfg.devices
    else:
        per_node = torch.cuda.device_count() if accelerators()[0] and not on_cpu(cfg) else 1
    return max(1, per_node) * cfg.num_nodes


def secondary_process(cfg: TrainConfig) -> bool:
    """Whether this process is a distributed run's rank other than 0, as its launcher says
    (torchrun's ``RANK``, SLURM's ``SLURM_PROCID``, Lightning's own ``LOCAL_RANK`` / ``NODE_RANK``):
    known before training starts, so such a process leaves the run folder to rank 0. Never for a
    one-process ``cfg`` (``srun -n 4`` of independent fits: each is its own rank 0)."""
    if world_size(cfg) == 1:
        return False
    for name in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK"):
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) != 0:
            return True
    return False


def slurm_launched() -> bool:
    """Whether Lightning takes this process's ranks from SLURM (an ``srun`` job step, not an
    interactive shell where Lightning starts the processes itself)."""
    from lightning.fabric.plugins.environments import SLURMEnvironment

    return SLURMEnvironment.detect()


def interactive() -> bool:
    """Whether this program cannot be run again as a file: ``python -c``, a script on stdin, the
    interactive interpreter or a notebook (``sys.ps1``), ``python -i``."""
    return sys.argv[:1] in (["-c"], ["-"], [""]) or hasattr(sys, "ps1") or bool(sys.flags.interactive)


def launched_processes(cfg: TrainConfig) -> str | None:
    """How many processes a launcher started, as it says: torchrun's count always means processes
    started; SLURM's only where srun starts them for a distributed run (a plain command in a batch
    job with several tasks still runs once)."""
    return os.environ.get("WORLD_SIZE") or (os.environ.get("SLURM_NTASKS") if world_size(cfg) > 1
                                             and slurm_launched() else None)


def launcher_mismatch(cfg: TrainConfig) -> str | None:
    """The problem when a launcher started another number of processes than ``train`` asks for
    (each would then take itself for rank 0 of its own run), or None: the keys and their values,
    which launcher started how many, and that launcher's options to set."""
    launched, processes = launched_processes(cfg), world_size(cfg)
    if not (launched and launched.isdigit() and int(launched) != processes):
        return None
    per_node = processes // cfg.num_nodes
    devices = cfg.devices if isinstance(cfg.devices, int) else f"{cfg.devices!r} ({per_node} on this machine)"
    if os.environ.get("WORLD_SIZE"):
        launcher = f"torchrun (or another launcher setting WORLD_SIZE) started {launched}"
        advice = f"torchrun --nproc-per-node {per_node} --nnodes {cfg.num_nodes}"
    else:
        launcher = f"SLURM started {launched} task(s) (SLURM_NTASKS)"
        advice = (f"srun / #SBATCH --ntasks-per-node={per_node} --nodes={cfg.num_nodes} (one task per device; "
                  "SLURM's --ntasks counts them over every node)")
    return (f"train.devices: {devices} x train.num_nodes: {cfg.num_nodes} is {processes} process(es), but {launcher}; "
            f"make them agree: start them with {advice}, or set train.devices x train.num_nodes to the processes "
            "started")


def check_devices(cfg: TrainConfig) -> None:
    """Check ``train``'s hardware settings against this machine, before any data is read (Lightning
    would refuse a missing GPU only once the data is prepared, with its own words).

    Raises:
        ConfigError: ``accelerator`` names a GPU this machine lacks, or more GPUs than it has;
            ``num_nodes`` > 1 without a launcher; a launcher that started
            another number of processes than ``devices`` x ``num_nodes``.
    """
    cuda, mps = accelerators()
    processes = world_size(cfg)
    problems = []
    launched = launched_processes(cfg)
    if (mismatch := launcher_mismatch(cfg)) is not None:
        problems.append(mismatch)
    elif processes > 1 and not launched and not secondary_process(cfg) and interactive():
        problems.append(f"train.devices: {processes} processes start by running this program again, which an "
                        "interactive session, a 'python -c' command or a script on stdin cannot be: put the code in a "
                        "file (python train.py) or use the polymodal command")
    elif cfg.num_nodes > 1 and not launched:
        problems.append(f"train.num_nodes: {cfg.num_nodes} needs every node started by a launcher (torchrun or SLURM's "
                        "srun, see docs/performance.md); started as a plain command it would wait for the other nodes forever")
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
    ranks = processes // cfg.num_nodes if on_cpu(cfg) else 1  # CPU processes on this machine
    if cores and ranks > cores:
        warn_user(f"train.devices: {ranks} CPU processes for {cores} CPU cores: each trains slower than one process "
                  "alone would")
    elif cfg.num_workers and cores and cfg.num_workers * ranks > cores:  # each CPU process starts its own
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


@contextmanager
def cache_shared_with_ranks(config: Any) -> Iterator[None]:
    """Around a fit whose other ranks Lightning starts from this process (several processes, no
    torchrun or SLURM) and whose ``config`` names no feature cache (``data.cache_dir``, or
    ``POLYMODAL_CACHE_DIR``): encode into a temporary cache (in ``$TMPDIR``, :func:`new_ranks_cache`),
    named in ``POLYMODAL_RANKS_CACHE`` for the ranks started later with this environment, so that
    they read what this process decoded and fitted instead of doing it again each; removed after
    the fit (that of a killed fit, by the next distributed fit to start: :func:`sweep_ranks_caches`).
    In such a rank, the variable is dropped when its fit returns: what its script does next
    (``evaluate`` on every rank) keeps nothing in the folder its first process removes."""
    from polymodal.data.cache import CACHE_ENV, RANKS_CACHE_ENV

    if os.environ.get(RANKS_CACHE_ENV) and secondary_process(config.train):  # a rank the first process started
        try:
            yield
        finally:
            os.environ.pop(RANKS_CACHE_ENV, None)
        return
    launched = os.environ.get("WORLD_SIZE") or secondary_process(config.train) or (
        world_size(config.train) > 1 and slurm_launched())
    if config.data.cache_dir is not None or os.environ.get(CACHE_ENV) or world_size(config.train) == 1 or launched:
        yield
        return
    folder = new_ranks_cache()
    os.environ[RANKS_CACHE_ENV] = folder
    try:
        yield
    finally:
        os.environ.pop(RANKS_CACHE_ENV, None)
        shutil.rmtree(folder, ignore_errors=True)


RANKS_CACHE_PREFIX = "polymodal-ranks-cache-"  # then the machine, the process that made it and mkdtemp's letters


def new_ranks_cache() -> str:
    """A new folder for :func:`cache_shared_with_ranks` in ``$TMPDIR``, named after this machine and
    process (``polymodal-ranks-cache-HOST-PID-XXXXXXXX``), made after sweeping away the folders
    killed fits left there (:func:`sweep_ranks_caches`)."""
    root = tempfile.gettempdir()
    sweep_ranks_caches(Path(root))
    return tempfile.mkdtemp(prefix=f"{RANKS_CACHE_PREFIX}{socket.gethostname()}-{os.getpid()}-", dir=root)


def sweep_ranks_caches(root: Path) -> list[Path]:
    """Remove from ``root`` the ranks caches (:func:`new_ranks_cache`) of fits killed before they
    removed theirs (SIGKILL, a job's time limit): this user's folders made on this machine by a
    process that no longer runs and, where that cannot be told (made by an earlier version that
    named no process, or off POSIX), those in which no file changed for ``UNKNOWN_MAKER_STALE_S``
    (a week: a fit reads its cache without writing it). Another machine's folders (a ``$TMPDIR``
    shared over the network) are left to that machine's fits, whose processes only it can see.

    Returns:
        The folders removed.
    """
    removed = []
    now, host = time.time(), socket.gethostname()
    for folder in root.glob(f"{RANKS_CACHE_PREFIX}*"):
        try:
            info = folder.lstat()
            if not stat.S_ISDIR(info.st_mode) or (hasattr(os, "getuid") and info.st_uid != os.getuid()):
                continue  # another user's (or no folder): theirs to sweep
            made_by = _maker(folder.name, host)
            if made_by is None and _made_elsewhere(folder.name, host):
                continue
            stale = (made_by is False) or (made_by is None and now - _last_change(folder) > UNKNOWN_MAKER_STALE_S)
        except OSError:  # removed meanwhile, or unreadable
            continue
        if stale:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


UNKNOWN_MAKER_STALE_S = 7 * 24 * 3600  # a ranks cache whose maker cannot be asked: removed after a week unchanged


def _made_elsewhere(name: str, host: str) -> bool:
    """Whether the ranks cache ``name`` names a machine other than ``host`` as its maker."""
    machine, _, pid = name[len(RANKS_CACHE_PREFIX):].rpartition("-")[0].rpartition("-")
    return bool(machine) and pid.isdigit() and machine != host


def _last_change(folder: Path) -> float:
    """The newest modification time of ``folder`` and everything in it."""
    newest = folder.lstat().st_mtime
    for parent, folders, files in os.walk(folder):
        for name in (*folders, *files):
            newest = max(newest, os.lstat(os.path.join(parent, name)).st_mtime)
    return newest


def _maker(name: str, host: str) -> bool | None:
    """Whether the process that made the ranks cache ``name`` still runs: True or False when it
    ran on this machine (``host``) under POSIX, None when that cannot be told."""
    machine, _, pid = name[len(RANKS_CACHE_PREFIX):].rpartition("-")[0].rpartition("-")
    if machine != host or not pid.isdigit() or os.name != "posix":  # os.kill(pid, 0) is no probe on Windows
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # runs, as another user
        return True
    except OverflowError:
        return None
    return True


@contextmanager
def warning_on_rank_zero(cfg: TrainConfig) -> Iterator[None]:
    """Within the block, a rank other than 0 of a distributed run (:func:`secondary_process`)
    says none of the ``UserWarning``s rank 0 says too, once per process (every rank reads the same
    manifests and config); rank 0 and a one-process run warn as usual."""
    if not secondary_process(cfg):
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yield


def across_ranks(fit: F) -> F:
    """Decorate an estimator's ``fit`` for the ranks of a distributed run: they share one feature
    cache (:func:`cache_shared_with_ranks`) and only rank 0 warns (:func:`warning_on_rank_zero`)."""

    @functools.wraps(fit)
    def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
        with cache_shared_with_ranks(self.config), warning_on_rank_zero(self.config.train):
            return fit(self, *args, **kwargs)

    return wrapped  # type: ignore[return-value]
