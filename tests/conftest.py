"""Suite-wide test settings.

The tests train and run tiny models: one intra-op torch thread is faster than several (and much
faster when other processes share the cores) and changes no result any test checks. Module scope,
so it also covers the module-scoped fixtures that train models. No test takes a feature cache from
the developer's environment (``POLYMODAL_CACHE_DIR``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

# Under pytest-xdist (``-n``, as the default run does) each worker builds the fixtures of the tests
# it runs: a test file's tests go to one worker together (its module-scoped fixtures are built
# once), and so do those of a folder that shares session-scoped fixtures.
SHARED_FIXTURE_FOLDERS = {"deploy"}


def pytest_collection_modifyitems(config, items):
    tests = Path(__file__).parent
    for item in items:
        if not Path(item.path).is_relative_to(tests):  # e.g. --doctest-modules polymodal: no group
            continue
        path = Path(item.path).relative_to(tests)
        group = path.parts[0] if path.parts[0] in SHARED_FIXTURE_FOLDERS else path.as_posix()
        item.add_marker(pytest.mark.xdist_group(group))


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
