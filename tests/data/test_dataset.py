"""MultimodalDataset batches, collate, and DataLoader workers."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from polymodal.data.dataset import MultimodalDataset, collate
from polymodal.data.manifest import read_manifest
from polymodal.data.pipeline import DataPipeline

from .helpers import MULTIMODAL, as_tensors, assert_nested_equal, make_config, write_multimodal_manifest


@pytest.fixture
def fitted(tmp_path):
    """(pipeline, encoded table, targets) for the 10-row multimodal manifest."""
    pipe = DataPipeline(make_config(MULTIMODAL))
    table, targets = pipe.fit(read_manifest(write_multimodal_manifest(tmp_path)))
    return pipe, table, targets


def expected_batch(pipe, table, targets, rows):
    """What a batch of ``rows`` must hold, built directly from the encoded arrays."""
    rows = np.asarray(rows)
    inputs = {name: pipe.preprocessors[name].to_batch(as_tensors({k: v[rows] for k, v in mod.arrays.items()}), False)
              for name, mod in table.modalities.items()}
    present = {name: torch.from_numpy(mod.present[rows]) for name, mod in table.modalities.items()}
    return {"inputs": inputs, "present": present, "index": torch.from_numpy(rows),
            "target": torch.from_numpy(targets[rows])}


def test_batch_holds_inputs_presence_targets_and_row_numbers(fitted):
    pipe, table, targets = fitted
    dataset = pipe.dataset(table, targets)
    rows = [6, 2, 5, 0]  # unsorted on purpose: the batch keeps the requested order
    batch = dataset.__getitems__(rows)
    assert batch["present"]["img"].tolist() == [True, True, False, True]
    assert batch["present"]["notes"].tolist() == [True, False, True, True]
    assert batch["present"]["labs"].tolist() == [False, True, True, True]
    assert batch["target"].tolist() == [0, 0, 1, 0]
    assert batch["target"].dtype == torch.long
    assert_nested_equal(batch, expected_batch(pipe, table, targets, rows))


def test_text_inputs_are_trimmed_per_batch(fitted):
    pipe, table, targets = fitted
    dataset = pipe.dataset(table, targets)
    short = dataset.__getitems__([0, 1])  # texts of 1 and 2 words
    assert short["inputs"]["notes"]["x"].shape == (2, 2)
    assert short["inputs"]["notes"]["mask"].tolist() == [[True, False], [True, True]]


def test_dataset_without_targets(fitted):
    pipe, table, _ = fitted
    batch = pipe.dataset(table).__getitems__([0, 1])
    assert "target" not in batch and batch["index"].tolist() == [0, 1]


def test_targets_must_match_the_table(fitted):
    _, table, targets = fitted
    with pytest.raises(ValueError, match="targets has 9 rows"):
        MultimodalDataset(table, {}, targets[:9])


def test_collate_of_single_items_equals_a_fetched_batch(fitted):
    pipe, table, targets = fitted
    dataset = pipe.dataset(table, targets)
    rows = [3, 0, 4, 2]
    assert_nested_equal(collate([dataset[i] for i in rows]), dataset.__getitems__(rows))
    whole = dataset.__getitems__([1, 2])
    assert collate(whole) is whole


def loader_batches(dataset, workers: int) -> list[dict]:
    loader = DataLoader(dataset, batch_size=3, shuffle=False, num_workers=workers, collate_fn=collate)
    return list(loader)


def test_worker_processes_yield_the_same_batches(fitted):
    pipe, table, targets = fitted
    dataset = pipe.dataset(table, targets)
    serial, parallel = loader_batches(dataset, 0), loader_batches(dataset, 2)
    assert [len(b["index"]) for b in serial] == [3, 3, 3, 1]
    assert len(parallel) == len(serial)
    for a, b in zip(serial, parallel):
        assert_nested_equal(a, b)
    assert torch.cat([b["index"] for b in serial]).tolist() == list(range(10))


def test_dataset_survives_pickling_for_spawned_workers(fitted):
    pipe, table, targets = fitted
    dataset = pipe.dataset(table, targets)
    clone = pickle.loads(pickle.dumps(dataset))
    assert_nested_equal(clone.__getitems__([0, 1, 2]), dataset.__getitems__([0, 1, 2]))


class _FrozenProbe(torch.utils.data.Dataset):
    """Each item: how many objects the worker holds out of garbage collection."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> int:
        import gc

        return gc.get_freeze_count()


def test_loader_workers_never_collect_the_objects_they_inherit():
    """A parent's uncollected PyAV filter graph, freed by a forked worker's garbage collection,
    waited for ever on threads the worker does not have: workers freeze what they inherit. Every
    loader with workers does it (training, unlabelled, episodes, encoding)."""
    import gc

    from polymodal.data.dataset import data_loader
    from polymodal.data.encode import freeze_inherited_objects

    loader = data_loader(_FrozenProbe(), 1, train=False, workers=1)
    assert loader.worker_init_fn is freeze_inherited_objects
    assert all(int(count) > 0 for count in loader)
    assert gc.get_freeze_count() == 0  # the parent's own objects are collected as before
