"""Complexity facts: peak memory and inference latency (per sample and per batch of 64)."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from polymodal.data.encode import EncodedTable
from polymodal.utils.device import move_to
from polymodal.utils.progress import progress_bar

if TYPE_CHECKING:
    from polymodal.estimator import Estimator

LATENCY_BATCH = 64
LATENCY_BUDGET_MS = 2000.0  # timed calls per figure stop after this much time (at least one call is timed)


def peak_memory_mb(device: torch.device) -> dict[str, float | None]:
    """The process's peak resident memory so far (MB) and, when the model runs on a CUDA
    ``device``, that GPU's peak allocated memory (None otherwise)."""
    import resource  # POSIX only

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss_mb = peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux
    gpu = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {"peak_rss_mb": float(rss_mb), "peak_gpu_mb": gpu}


def _fastest_ms(fn: Any, repeats: int, device: torch.device, budget_ms: float = LATENCY_BUDGET_MS) -> float:
    """The fastest of up to ``repeats`` timed calls of ``fn`` after one that warms up: the call least
    disturbed by other work on the machine (a median still moves with a busy neighbour). Calls stop
    once they have taken ``budget_ms`` in all; a warm-up call that alone took longer is the
    measurement (a frozen backbone over 64 clips can take half a minute a call, and warming up is
    a small part of that)."""
    times: list[float] = []
    spent = 0.0
    for _ in range(repeats + 1):  # the first call warms up
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append((time.perf_counter() - started) * 1000.0)
        spent += times[-1]
        if spent > budget_ms:
            break
    return min(times[1:] or times)


def inference_latency(predictor: Estimator, table: EncodedTable, repeats: int = 5,
                      progress: bool = False) -> dict[str, Any]:
    """The fastest wall time (of up to ``repeats``, within :data:`LATENCY_BUDGET_MS`: see
    :func:`_fastest_ms`) of the network's forward pass (preprocessing excluded) for one sample and
    for a batch of 64 (rows of ``table`` repeated as needed), on the inference device; ``progress``:
    a bar (in a log, lines once it has run 10 s) over the two."""
    pipeline, _ = predictor.require_fitted()
    net = predictor.output_network()  # (inputs, present) -> outputs, whatever the task
    device = predictor.device
    net.to(device).eval()
    dataset = pipeline.dataset(table)

    def timed(size: int) -> float:
        batch = move_to(dataset.__getitems__(np.resize(np.arange(len(table)), size).tolist()), device)
        with torch.inference_mode():
            return _fastest_ms(lambda: net(batch["inputs"], batch["present"]), repeats, device)

    with progress_bar(2, "report: inference latency (a batch of 64, one sample)", enabled=progress,
                      min_total=1) as advance:
        per_batch = timed(LATENCY_BATCH)
        advance(1)
        per_sample = timed(1)
        advance(1)
    return {"device": device.type, "latency_ms_per_sample": per_sample, "latency_ms_per_batch_64": per_batch,
            "throughput_samples_per_s": LATENCY_BATCH / per_batch * 1000.0 if per_batch > 0 else None}
