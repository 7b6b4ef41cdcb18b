"""The micro-batcher: requests waiting share a run, a lone one runs at once, errors reach every request."""

import asyncio

import numpy as np
import pytest

from polymodal.deploy.microbatch import MicroBatcher


def double(feeds):
    return feeds["x"] * 2.0


async def submit_together(batcher: MicroBatcher, n: int) -> list[np.ndarray]:
    # gather queues every submit before the batching task runs again: all n are waiting together
    return await asyncio.gather(*(batcher.submit({"x": np.full((1, 2), float(i))}) for i in range(n)))


@pytest.mark.parametrize("max_wait_ms", [0.0, 20.0])
def test_waiting_requests_share_a_run_up_to_max_batch(max_wait_ms):
    async def scenario():
        batcher = MicroBatcher(double, max_batch=4, max_wait_ms=max_wait_ms)
        batcher.start()
        outs = await submit_together(batcher, 10)
        await batcher.stop()
        return batcher.stats, outs

    stats, outs = asyncio.run(scenario())
    assert stats.requests == 10 and stats.largest == 4
    assert stats.batches == 3  # 4 + 4 + 2: no request ran alone while others waited
    np.testing.assert_array_equal(np.stack(outs), [[2.0 * i, 2.0 * i] for i in range(10)])  # each its own row


def test_a_request_runs_at_once_and_those_arriving_meanwhile_form_the_next_batch():
    """No wait for company (max_wait_ms 0): the first request runs alone at once; two that arrive
    while it runs wait for it, then share the next run."""
    import time

    def slow(feeds):
        time.sleep(0.2)
        return feeds["x"] * 2.0

    async def scenario():
        batcher = MicroBatcher(slow, max_batch=8, max_wait_ms=0.0)
        batcher.start()
        first = asyncio.ensure_future(batcher.submit({"x": np.ones((1, 2))}))
        await asyncio.sleep(0.05)  # the first run has started, alone
        later = [asyncio.ensure_future(batcher.submit({"x": np.zeros((1, 2))})) for _ in range(2)]
        await asyncio.gather(first, *later)
        await batcher.stop()
        return batcher.stats

    stats = asyncio.run(scenario())
    assert stats.requests == 3 and stats.batches == 2 and stats.largest == 2  # alone, then the two together


def test_max_wait_holds_a_batch_open_for_later_requests():
    async def scenario():
        batcher = MicroBatcher(double, max_batch=8, max_wait_ms=1000.0)
        batcher.start()
        early = asyncio.ensure_future(batcher.submit({"x": np.ones((1, 2))}))
        await asyncio.sleep(0.05)  # the batch has taken the first request and waits
        late = await batcher.submit({"x": np.zeros((1, 2))})
        await early
        await batcher.stop()
        return batcher.stats, late

    stats, late = asyncio.run(scenario())
    assert stats.batches == 1 and stats.largest == 2  # joined, though it came 50 ms after
    np.testing.assert_array_equal(late, [0.0, 0.0])


def test_a_failed_run_fails_every_request_in_it_and_the_batcher_goes_on():
    calls = []

    def flaky(feeds):
        calls.append(len(feeds["x"]))
        if len(calls) == 1:
            raise ValueError("graph failed")
        return feeds["x"]

    async def scenario():
        batcher = MicroBatcher(flaky, max_batch=8, max_wait_ms=0.0)
        batcher.start()
        failed = await asyncio.gather(*(batcher.submit({"x": np.ones((1, 1))}) for _ in range(3)),
                                      return_exceptions=True)
        after = await batcher.submit({"x": np.ones((1, 1))})
        await batcher.stop()
        return failed, after

    failed, after = asyncio.run(scenario())
    assert [type(e) for e in failed] == [ValueError] * 3 and calls[0] == 3
    np.testing.assert_array_equal(after, [1.0])
