"""Reading pretrained weights files: anything that is not a state dict is refused with an error
that names the file, never a bare KeyError / UnpicklingError from the loaders underneath."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from polymodal.errors import DecodeError
from polymodal.models.weights import load_state_dict_file


def test_a_state_dict_in_a_wrapper_loads_without_its_prefix(tmp_path):
    path = tmp_path / "w.pth"
    torch.save({"state_dict": {"module.fc.weight": torch.ones(2, 2)}}, path)
    state = load_state_dict_file(path)
    assert list(state) == ["fc.weight"] and torch.equal(state["fc.weight"], torch.ones(2, 2))


def _whole_model(path):
    torch.save(torch.nn.Linear(2, 2), path)


def _numpy_array(path):
    with open(path, "wb") as handle:
        np.save(handle, np.zeros(3))


def _text(path):
    path.write_text("not a weights file\n")


@pytest.mark.parametrize("write", [_whole_model, _numpy_array, _text], ids=["whole-model", "numpy", "text"])
def test_a_file_that_is_not_a_torch_state_dict_is_a_decode_error_naming_it(tmp_path, write):
    path = tmp_path / "weights.pth"
    write(path)
    with pytest.raises(DecodeError, match=r"file .*weights\.pth: not a PyTorch state-dict file"):
        load_state_dict_file(path)


def test_a_broken_safetensors_file_is_a_decode_error_naming_it(tmp_path):
    path = tmp_path / "weights.safetensors"
    path.write_bytes(b"garbage")
    with pytest.raises(DecodeError, match=r"file .*weights\.safetensors: not a safetensors file"):
        load_state_dict_file(path)
