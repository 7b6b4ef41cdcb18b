"""Model tests run tiny tensors: one intra-op thread is faster than several (and much faster when
other processes share the cores), and does not change any result these tests check."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
