"""``polymodal.evaluation.complexity``: the latency figures' timing, on a fake clock."""

from __future__ import annotations

import torch

from polymodal.evaluation import complexity


class FakeClock:
    """``time.perf_counter`` that each call of the timed function moves on by ``step`` seconds."""

    def __init__(self, step: float):
        self.now, self.step, self.calls = 0.0, step, 0

    def __call__(self) -> float:
        return self.now

    def work(self) -> None:
        self.calls += 1
        self.now += self.step * (2 if self.calls == 1 else 1)  # warming up takes twice as long


def timed(monkeypatch, step: float, repeats: int = 5) -> tuple[float, int]:
    clock = FakeClock(step)
    monkeypatch.setattr(complexity.time, "perf_counter", clock)
    fastest = complexity._fastest_ms(clock.work, repeats, torch.device("cpu"))
    return fastest, clock.calls


def test_a_fast_network_is_timed_repeats_times_after_warming_up(monkeypatch):
    assert timed(monkeypatch, step=0.001) == (1.0, 6)


def test_a_slow_network_stops_at_the_budget(monkeypatch):
    """A frozen backbone over 64 clips at 0.5 s a call: warming up (1 s) and three timed calls pass
    the 2 s budget; not the five asked for."""
    assert timed(monkeypatch, step=0.5) == (500.0, 4)


def test_a_warm_up_longer_than_the_budget_is_the_measurement(monkeypatch):
    """30 s a call (60 s to warm up): one call, not six minutes of them."""
    assert timed(monkeypatch, step=30.0) == (60_000.0, 1)
