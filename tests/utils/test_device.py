"""The device a model runs on follows ``train.accelerator`` (never a GPU it was told not to use)."""

from __future__ import annotations

import sys

import pytest
import torch

from polymodal.utils.device import default_device, run_batches


@pytest.fixture
def two_gpus(monkeypatch):
    """This machine as polymodal's own code sees it: two CUDA GPUs (torch and Lightning still see
    none). A test that passes never touches them: this torch has no CUDA, so any move there fails."""
    real_available, real_count = torch.cuda.is_available, torch.cuda.device_count

    def ours() -> bool:
        return sys._getframe(2).f_globals.get("__name__", "").startswith("polymodal")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True if ours() else real_available())
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2 if ours() else real_count())
    monkeypatch.delenv("LOCAL_RANK", raising=False)


def test_the_device_follows_the_accelerator(two_gpus, monkeypatch):
    assert default_device("cpu") == torch.device("cpu")
    assert default_device("auto") == default_device("gpu") == torch.device("cuda")  # torch's current GPU
    monkeypatch.setenv("LOCAL_RANK", "1")  # the second process of a distributed launch uses its own GPU
    assert default_device() == torch.device("cuda", 1)
    assert default_device("cpu") == torch.device("cpu")  # CPU processes of a distributed launch stay there
    monkeypatch.setenv("LOCAL_RANK", "3")  # more processes than GPUs: they share them
    assert default_device() == torch.device("cuda", 1)
    monkeypatch.setenv("LOCAL_RANK", "x")  # not a rank: torch's current device
    assert default_device() == torch.device("cuda")


def test_gpu_means_an_apple_gpu_where_there_is_no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert default_device("gpu") == default_device("mps") == default_device() == torch.device("mps")
    assert default_device("cpu") == torch.device("cpu")


def test_accelerator_cpu_keeps_fitting_caching_and_predicting_on_the_cpu(two_gpus, tmp_path):
    """With a GPU in sight, ``accelerator: cpu`` must keep every step off it: here any move to
    CUDA fails, as this torch has no CUDA."""
    from helpers_models import classification_config, make_dataset, write_splits

    from polymodal import MultimodalPredictor

    paths = write_splits(tmp_path, make_dataset(tmp_path, n=40))
    config = classification_config(epochs=1, accelerator="cpu")
    config["modalities"]["img"]["encoder"].update(freeze="all", cache=True)  # the frozen-feature pass
    predictor = MultimodalPredictor.from_config(config)
    assert predictor.device == torch.device("cpu")
    predictor.fit(paths["train"], paths["valid"], out=tmp_path / "run")
    assert len(predictor.predict(paths["test"])) == 8


def test_run_batches_concatenates_each_output_without_autograd_and_restores_the_mode():
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Dropout(0.9))
    net.train()
    seen_modes = []

    def forward(batch):
        seen_modes.append(net.training)
        out = net(batch["x"])
        return out, batch["x"].double()

    batches = [{"x": torch.ones(2, 3)}, {"x": torch.zeros(1, 3)}]
    outputs, inputs = run_batches(net, batches, forward, torch.device("cpu"))
    assert seen_modes == [False, False]  # eval: dropout off, so equal rows give equal outputs
    assert outputs.shape == (3, 2) and torch.equal(outputs[0], outputs[1])
    assert not outputs.requires_grad and inputs.dtype == torch.float32
    assert torch.equal(inputs, torch.cat([torch.ones(2, 3), torch.zeros(1, 3)]))
    assert net.training  # restored
    assert run_batches(net, [], forward, torch.device("cpu")) == []


def test_run_batches_gives_every_submodule_its_own_mode_back():
    """A wrapper built for the call (in train mode, as a new module is) around a fitted network in
    eval mode: afterwards each is in the mode it had, not the wrapper's."""
    fitted = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Dropout(0.5)).eval()
    wrapper = torch.nn.Sequential(fitted)
    assert wrapper.training and not fitted.training
    run_batches(wrapper, [torch.ones(2, 3)], wrapper, torch.device("cpu"))
    assert wrapper.training and not fitted.training and not fitted[1].training
