"""Suite-wide test settings.

The tests train and run tiny models: one intra-op torch thread is faster than several (and much
faster when other processes share the cores) and changes no result any test checks. Module scope,
so it also covers the module-scoped fixtures that train models. No test takes a feature cache from
the developer's environment (``POLYMODAL_CACHE_DIR``).
"""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)



@pytest.fixture(autouse=True)
def _no_cache_from_the_environment(monkeypatch):
    """A POLYMODAL_CACHE_DIR of the developer's shell would give every test a feature cache."""
    from polymodal.data.cache import CACHE_ENV, RANKS_CACHE_ENV

    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.delenv(RANKS_CACHE_ENV, raising=False)
