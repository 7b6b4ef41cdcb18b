"""Micro-batching: concurrent requests share one run of the network.

Each request featurises its own row (in a worker thread) and submits the feeds; one asyncio task
takes every request waiting (up to ``max_batch``), runs the graph once on the concatenated feeds
and hands every request its own row of the outputs. Requests that arrive while a batch runs wait
for it and form the next one, so batches grow with the load by themselves and a lone request
runs at once (the default, as Triton's dynamic batcher with no queue delay). ``max_wait_ms``
can hold a batch open longer for more requests: larger batches, each request up to that much later.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

Feeds = Mapping[str, np.ndarray]


@dataclass
class BatchStats:
    """Counters for ``/health``: batches run and requests served."""

    batches: int = 0
    requests: int = 0
    largest: int = 0


class MicroBatcher:
    """Collects submitted feeds into batches for ``run``.

    Args:
        run: the graph, feeds (B, ...) -> outputs (B, K); called in a worker thread.
        max_batch: most rows per run.
        max_wait_ms: how long a batch stays open for more requests after taking those waiting
            (0: not at all).
    """

    def __init__(self, run: Callable[[Feeds], np.ndarray], max_batch: int, max_wait_ms: float):
        self.run = run
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.stats = BatchStats()
        self._queue: asyncio.Queue[tuple[Feeds, asyncio.Future[np.ndarray]]] | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass  # the loop ends by cancellation; its batch in hand was cancelled by the loop itself
            self._task = None
        while self._queue is not None and not self._queue.empty():  # requests queued behind it: cancelled too
            _, future = self._queue.get_nowait()
            future.cancel()

    async def submit(self, feeds: Feeds) -> np.ndarray:
        """Outputs (K,) for one row of feeds (each array with a leading axis of 1)."""
        if self._queue is None:
            raise RuntimeError("MicroBatcher.start() was not called (the app's lifespan starts it)")
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        await self._queue.put((feeds, future))
        return await future

    async def _loop(self) -> None:
        items: list[tuple[Feeds, asyncio.Future[np.ndarray]]] = []
        try:
            await self._batches(items)
        finally:  # stopped (cancelled) with a batch in hand: its requests end instead of waiting forever
            for _, future in items:
                future.cancel()

    async def _batches(self, items: list[tuple[Feeds, asyncio.Future[np.ndarray]]]) -> None:
        queue, loop = self._queue, asyncio.get_running_loop()
        while True:
            items.clear()
            items.append(await queue.get())
            while len(items) < self.max_batch and not queue.empty():  # those that came during the last run
                items.append(queue.get_nowait())
            deadline = time.monotonic() + self.max_wait
            while len(items) < self.max_batch:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    items.append(await asyncio.wait_for(queue.get(), left))
                except asyncio.TimeoutError:  # noqa: UP041 - a distinct class on Python 3.10
                    break
            feeds = {k: np.concatenate([f[k] for f, _ in items]) for k in items[0][0]}
            try:
                outputs = await loop.run_in_executor(None, self.run, feeds)
            except Exception as err:  # noqa: BLE001 - handed to every waiting request, which re-raises it
                for _, future in items:
                    if not future.done():
                        future.set_exception(err)
                continue
            self.stats.batches += 1
            self.stats.requests += len(items)
            self.stats.largest = max(self.stats.largest, len(items))
            for i, (_, future) in enumerate(items):
                if not future.done():
                    future.set_result(outputs[i])
