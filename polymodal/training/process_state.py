"""Process-wide settings a fit changes for its own sake, put back afterwards.

Training seeds every global random generator (``train.seed``), turns on deterministic kernels
(``train.deterministic``) and quietens Lightning's loggers. Those are the caller's settings too:
after a ``fit`` decorated with ``@kept_process_state()`` returns, ``np.random.rand()`` continues
the caller's stream, and ``torch.are_deterministic_algorithms_enabled()`` is what it was before.
The ranks of a distributed fit, seeded alike, draw apart once training starts (:func:`seed_rank`).
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

# what Lightning's seeding sets, and the thread count its DDP launch sets. Not the launcher's own
# variables (LOCAL_RANK, MASTER_PORT...): a second DDP fit in the process finds its processes by them
ENVIRONMENT = ("PL_GLOBAL_SEED", "PL_SEED_WORKERS", "CUBLAS_WORKSPACE_CONFIG", "OMP_NUM_THREADS")
LOGGERS = ("lightning.pytorch", "lightning.fabric")


@contextmanager
def kept_process_state() -> Iterator[None]:
    """Within the block (or the function it decorates), change the global random generators,
    deterministic-kernel switches, Lightning's seeding variables and log levels at will: they are
    restored on the way out."""
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    saved = {
        "random": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if cuda else None,
        "deterministic": (torch.are_deterministic_algorithms_enabled(),
                          torch.is_deterministic_algorithms_warn_only_enabled()),
        "fill": torch.utils.deterministic.fill_uninitialized_memory,
        "cudnn": (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic),
        "environment": {name: os.environ.get(name) for name in ENVIRONMENT},
        "levels": {name: logging.getLogger(name).level for name in LOGGERS},
        "threads": torch.get_num_threads(),
    }
    try:
        yield
    finally:
        random.setstate(saved["random"])
        np.random.set_state(saved["numpy"])
        torch.set_rng_state(saved["torch"])
        if saved["cuda"] is not None:
            torch.cuda.set_rng_state_all(saved["cuda"])
        enabled, warn_only = saved["deterministic"]
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
        torch.utils.deterministic.fill_uninitialized_memory = saved["fill"]
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved["cudnn"]
        for name, value in saved["environment"].items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        for name, level in saved["levels"].items():
            logging.getLogger(name).setLevel(level)
        torch.set_num_threads(saved["threads"])


def seed_rank(rank: int) -> None:
    """Give rank ``rank`` of a distributed fit random draws of its own. Every rank was seeded with
    ``train.seed`` and would draw what rank 0 draws: the same modality-dropout and ``nn.Dropout``
    masks, augmentations and samples on every rank's batch. A rank other than 0 reseeds Python's,
    numpy's and torch's global generators (every GPU's too) from torch's current state and its
    rank: deterministic for a seed, and another stream per rank (per training phase too). Rank 0,
    and so a one-process fit, keeps its streams untouched."""
    if rank == 0:
        return
    state = torch.get_rng_state().numpy().tolist()  # its bytes, read without drawing
    python, numpy, torch_seed = np.random.SeedSequence(state, spawn_key=(rank,)).generate_state(3)
    random.seed(int(python))
    np.random.seed(int(numpy))
    torch.manual_seed(int(torch_seed))  # CPU and every CUDA device
