"""Evaluation tests train tiny models in module-scoped fixtures: one intra-op thread is faster than
several (and much faster when other processes share the cores) and changes no checked result.
Module scope, so it also covers those fixtures."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
