"""Distributed data-parallel training with 2 CPU processes (gloo) matches the single process."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
from helpers_models import classification_config, make_dataset, train_in_subprocess, write_splits

from polymodal.training.module import first_occurrences


def test_first_occurrences_drops_the_padding_duplicates():
    import torch

    index = torch.tensor([4, 7, 1, 4, 9, 1])
    assert first_occurrences(index).tolist() == [0, 1, 2, 4]


@pytest.mark.slow  # a single-process run and a 2-process one (about 45 s): make test-slow, which .ci/run runs
def test_two_process_ddp_matches_the_single_process_run(tmp_path):
    paths = write_splits(tmp_path, make_dataset(tmp_path, n=235))  # 47 validation rows: odd
    # 2 processes x batch 8 take the same optimiser steps as 1 process x batch 16
    single = train_in_subprocess(classification_config(epochs=4, batch_size=16), paths, tmp_path / "single")
    ddp = train_in_subprocess(classification_config(epochs=4, batch_size=8, devices=2, strategy="ddp",
                                                    accelerator="cpu"), paths, tmp_path / "ddp")
    # the distributed sampler pads 47 rows to 2 x 24; the duplicate must be counted once
    assert ddp["valid"]["rows"] == single["valid"]["rows"] == 47
    assert ddp["valid"]["accuracy"] >= 0.85
    assert abs(ddp["valid"]["accuracy"] - single["valid"]["accuracy"]) <= 0.07
    ddp_history = pd.read_csv(tmp_path / "ddp" / "history.csv")
    single_history = pd.read_csv(tmp_path / "single" / "history.csv")
    assert len(ddp_history) == 4  # rank 0 wrote one row per epoch; no second writer
    # same optimisation, same data: the validation loss after the last epoch agrees
    assert ddp_history["val_loss"].iloc[-1] == pytest.approx(single_history["val_loss"].iloc[-1], abs=0.2)


@pytest.mark.slow  # two more 2-process runs (about 25 s each): make test-slow
def test_two_process_ddp_trains_a_prototypical_network_on_episodes(tmp_path):
    """The episode sampler shares its episodes out between the ranks itself (Lightning cannot put a
    distributed sampler in front of it); each rank then scores the whole validation set, counted once."""
    paths = write_splits(tmp_path, make_dataset(tmp_path, n=235))
    config = classification_config(epochs=3, devices=2, strategy="ddp", accelerator="cpu")
    config["transfer"] = {"method": "protonet", "shots": 3, "queries": 4, "dim": 16}
    metrics = train_in_subprocess(config, paths, tmp_path / "ddp")
    assert metrics["valid"]["rows"] == 47
    assert metrics["valid"]["accuracy"] >= 0.8
    assert len(pd.read_csv(tmp_path / "ddp" / "history.csv")) == 3


@pytest.mark.slow  # two more 2-process runs (about 25 s each): make test-slow
def test_two_processes_under_strategy_auto_train_a_set_smaller_than_a_batch_per_rank(tmp_path):
    """24 training rows over 2 ranks leave each 12, fewer than batch_size 16: the short batch is
    kept (dropping it left the epochs without a step, and an untrained model saved as trained),
    and strategy auto with 2 devices gets the DDP that tolerates idle parameters."""
    paths = write_splits(tmp_path, make_dataset(tmp_path, n=40))
    metrics = train_in_subprocess(classification_config(epochs=2, batch_size=16, devices=2, accelerator="cpu"), paths,
                    tmp_path / "small")
    history = pd.read_csv(tmp_path / "small" / "history.csv")
    assert list(history["epoch"]) == [1, 2] and history["train_loss"].notna().all()
    assert metrics["training"]["epochs_run"] == 2


def test_keeping_the_short_batch_depends_on_each_ranks_share():
    from polymodal.data.dataset import drops_short_batch

    assert drops_short_batch(24, 16) and not drops_short_batch(24, 16, ranks=2)
    assert drops_short_batch(100, 16, ranks=4) and not drops_short_batch(16, 16)


def test_ranks_lightning_starts_share_one_temporary_cache_removed_after_the_fit(monkeypatch, tmp_path):
    """Ranks started by this process (after it preprocessed) read its cache instead of decoding
    every file again; never where a cache is named, torchrun started the ranks, or one process
    trains. A started rank drops the variable when its fit returns, and a removed folder is never
    made again (what a rank's script does after fit kept writing into it, left in /tmp)."""
    import tempfile

    from polymodal.config import load_config
    from polymodal.data.cache import CACHE_ENV, RANKS_CACHE_ENV, cache_root
    from polymodal.training.devices import cache_shared_with_ranks

    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID", CACHE_ENV, RANKS_CACHE_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again
    ddp = load_config(classification_config(devices=2, strategy="ddp", accelerator="cpu"))
    with cache_shared_with_ranks(ddp):
        shared = os.environ[RANKS_CACHE_ENV]
        assert Path(shared).parent == tmp_path and cache_root(ddp.data.cache_dir) == shared
        with monkeypatch.context() as rank:  # a rank Lightning started inherits the variable
            rank.setenv("LOCAL_RANK", "1")
            with cache_shared_with_ranks(ddp):
                assert cache_root(None) == shared
            assert RANKS_CACHE_ENV not in os.environ  # dropped when its fit returned
            rank.setenv(RANKS_CACHE_ENV, shared)
    assert RANKS_CACHE_ENV not in os.environ and not Path(shared).exists()
    monkeypatch.setenv(RANKS_CACHE_ENV, shared)  # a stale name of a removed folder: no cache, none made
    assert cache_root(None) is None
    monkeypatch.delenv(RANKS_CACHE_ENV)
    for config, env in ((load_config(classification_config()), {}),  # one process
                        (ddp, {"WORLD_SIZE": "2"}),  # torchrun started every rank at once
                        (ddp, {CACHE_ENV: str(tmp_path / "users")}),  # the user's cache serves every rank
                        (load_config({**classification_config(devices=2, strategy="ddp", accelerator="cpu"),
                                      "data": {"cache_dir": str(tmp_path / "mine")}}), {})):
        with monkeypatch.context() as patched:
            for name, value in env.items():
                patched.setenv(name, value)
            with cache_shared_with_ranks(config):
                assert RANKS_CACHE_ENV not in os.environ


def test_the_ranks_caches_killed_fits_left_are_swept_by_the_next_distributed_fit(monkeypatch, tmp_path):
    """A fit killed before it removed its ranks cache (SIGKILL, a job's time limit) left it in
    $TMPDIR forever. Swept: this machine's whose process ended; where the process cannot be asked
    (an earlier version's name), those in which nothing changed for a week. Another machine's are
    left to it (a fit there may run for days, reading its cache without writing it); a running fit's
    stays."""
    import socket
    import subprocess
    import sys
    import tempfile
    import time

    from polymodal.config import load_config
    from polymodal.data.cache import CACHE_ENV, RANKS_CACHE_ENV
    from polymodal.training.devices import RANKS_CACHE_PREFIX, cache_shared_with_ranks, sweep_ranks_caches

    host = socket.gethostname()
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()  # its process id names no process now

    def folder(name: str, days: float = 0.0) -> Path:
        path = tmp_path / f"{RANKS_CACHE_PREFIX}{name}"
        (path / "segments").mkdir(parents=True)
        (path / "segments" / "rows.npy").write_bytes(b"0")
        then = time.time() - days * 24 * 3600
        for changed in (path / "segments" / "rows.npy", path / "segments", path):
            os.utime(changed, (then, then))
        return path

    killed = folder(f"{host}-{ended.pid}-ab12cd34")
    running = folder(f"{host}-{os.getpid()}-ef56gh78", days=30)  # this process: running, however old
    old_name, new_name = folder("k2j4h5g6", days=8), folder("z9y8x7w6", days=2)  # an earlier version's names
    touched = folder("t5u6v7w8", days=8)
    os.utime(touched / "segments" / "rows.npy")  # a file deep inside changed now: in use
    elsewhere_old = folder(f"other-node-{ended.pid}-aaaa1111", days=30)
    (tmp_path / f"{RANKS_CACHE_PREFIX}notes").write_text("a file, not a cache")
    assert sorted(sweep_ranks_caches(tmp_path)) == sorted([killed, old_name])
    assert all(path.exists() for path in (running, new_name, touched, elsewhere_old,
                                          tmp_path / f"{RANKS_CACHE_PREFIX}notes"))
    assert not any(path.exists() for path in (killed, old_name))

    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID", CACHE_ENV, RANKS_CACHE_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again
    stale = folder(f"{host}-{ended.pid}-cd34ef56")
    with cache_shared_with_ranks(load_config(classification_config(devices=2, strategy="ddp", accelerator="cpu"))):
        shared = Path(os.environ[RANKS_CACHE_ENV])
        assert shared.parent == tmp_path and shared.name.startswith(f"{RANKS_CACHE_PREFIX}{host}-{os.getpid()}-")
        assert not stale.exists(), "swept as the next distributed fit starts"
        assert sweep_ranks_caches(tmp_path) == [], "a running fit's folder is never swept"
    assert not shared.exists()
