"""Weights: reading pretrained ones from local files (never from a hub, never by unpickling
objects), and the digest that names a network's weights wherever they came from."""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch

from polymodal.errors import DecodeError, EncoderSettingError
from polymodal.utils.io import WEIGHT_SUFFIXES as WEIGHT_FILE_SUFFIXES

_WRAPPERS = ("state_dict", "model", "model_state_dict", "module")


def load_state_dict_file(path: str | Path, drop_prefixes: Sequence[str] = ("module.",)) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or a PyTorch file (loaded with ``weights_only=True``).

    Common wrappers (``{"state_dict": ...}``) are unwrapped and ``drop_prefixes`` stripped from keys.

    Raises:
        FileNotFoundError: no such file.
        IsADirectoryError: a folder.
        DecodeError: the file is not a state dict.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give the weights file itself (.pth, .pt, .bin, .safetensors)")
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except SafetensorError as err:
            raise DecodeError(f"not a safetensors file ({err})", path=str(path)) from None
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:  # a pickled model object, or not a PyTorch file at all
            raise DecodeError("not a PyTorch state-dict file: it is another format, or holds objects other than "
                              "tensors (a whole pickled model?), which are never unpickled; save "
                              "`model.state_dict()` with torch.save or safetensors", path=str(path)) from None
        except (RuntimeError, OSError, ValueError) as err:
            raise DecodeError(f"not a PyTorch state-dict file ({type(err).__name__}: {err})", path=str(path)) from None
        except Exception:  # noqa: BLE001 - the unpickler on bytes that are no pickle (KeyError: 101, IndexError...)
            raise DecodeError("not a PyTorch state-dict file (its bytes do not read as one)", path=str(path)) from None
    while isinstance(state, dict) and len(state) == 1 and next(iter(state)) in _WRAPPERS:
        state = next(iter(state.values()))
    for key in _WRAPPERS:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DecodeError("expected a mapping of parameter names to tensors", path=str(path))
    out = {}
    for key, value in state.items():
        for prefix in drop_prefixes:
            if key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


WEIGHT_SUFFIXES = frozenset(WEIGHT_FILE_SUFFIXES)


@contextmanager
def reading_setting(key: str) -> Iterator[None]:
    """Report a file an encoder setting names (``weights``, ``vectors``) that is missing, a folder
    or not what was expected as an :class:`EncoderSettingError` of that ``key``, so that the
    config key is named."""
    try:
        yield
    except (DecodeError, OSError) as err:
        raise EncoderSettingError(key, str(err)) from None


def load_matching(module: torch.nn.Module, state: dict[str, torch.Tensor]) -> tuple[list[str], list[str]]:
    """``module.load_state_dict(state, strict=False)`` once every tensor both hold has one shape.

    Returns:
        The missing and the unexpected keys.

    Raises:
        ValueError: naming the tensors whose shapes differ (the file is another architecture's).
    """
    own = module.state_dict()
    differ = [f"{k} {list(v.shape)} in the file, {list(own[k].shape)} in the model" for k, v in state.items()
              if k in own and own[k].shape != v.shape]
    if differ:
        more = f" (and {len(differ) - 3} more)" if len(differ) > 3 else ""
        raise ValueError(f"{len(differ)} tensors differ in shape: {'; '.join(differ[:3])}{more}")
    missing, unexpected = module.load_state_dict(state, strict=False)
    return list(missing), list(unexpected)


def small_files(folder: str | Path) -> list[str]:
    """Files of a model folder other than weights (configs, tokenizer, vocabularies), relative to it."""
    root = Path(folder)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.is_file() and p.suffix.lower() not in WEIGHT_SUFFIXES and not p.name.startswith("."))


def state_digest(module: torch.nn.Module, salt: str = "") -> str:
    """A hash of everything a network's outputs depend on in its state: every tensor's name, dtype,
    shape and bytes (parameters and buffers; a module's extra state by its repr), after ``salt``
    (e.g. the class name). A fitted network and the same one loaded from its run folder agree."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(salt.encode())
    for key, value in sorted(module.state_dict().items()):
        digest.update(key.encode())
        if not isinstance(value, torch.Tensor):
            digest.update(repr(value).encode())
            continue
        digest.update(str(value.dtype).encode())
        digest.update(repr(tuple(value.shape)).encode())
        digest.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
