"""Self-contained run folders: a saved run loads without the files its pretrained encoders came from.

Weights are in the run's ``model.safetensors``; what else an encoder needs to be rebuilt (a
transformers model's ``config.json`` and tokenizer, ONNX graphs; see ``Encoder.assets``) and any
folder the preprocessing reads (a pretrained tokenizer) is copied into ``assets/<modality>/<key>/``
and listed in ``assets/assets.json``. Loading points the config at those copies and builds the
encoders with ``restore=True``, which skips reading weight files (``weights``, ``vectors``), so a
moved or deleted source folder, or an uninstalled weights package, does not matter.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from polymodal.models.weights import small_files
from polymodal.run_files import ASSETS_DIR
from polymodal.utils.io import atomic_write_json

INDEX = "assets.json"


def _copy(source: Path, names: list[str], target: Path) -> None:
    if source.resolve() == target.resolve():  # a loaded run saved back into its own folder: already there
        return
    if target.exists():
        shutil.rmtree(target)
    for name in names:
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / name, destination)


def save_assets(config: Any, encoders: Any, run: Path) -> dict[str, dict[str, str]]:
    """Copy every modality's encoder assets and preprocessing folders into ``run/assets``.

    Args:
        encoders: the network's encoders by modality name.

    Returns:
        ``{modality: {"encoder.<field>" | "preprocess.<field>": path relative to run}}`` (also
        written to ``assets/assets.json``).
    """
    index: dict[str, dict[str, str]] = {}
    for name in config.modality_names:
        entries: dict[str, str] = {}
        encoder = encoders[name]
        for field, (folder, names) in encoder.assets().items():
            relative = f"{ASSETS_DIR}/{name}/encoder.{field}"
            _copy(Path(folder), names, run / relative)
            entries[f"encoder.{field}"] = relative
        preprocess = getattr(config.modalities[name], "preprocess", None)
        for field in type(preprocess).model_fields if preprocess is not None else ():
            value = getattr(preprocess, field)
            if isinstance(value, Path) and value.is_dir():  # e.g. a pretrained tokenizer folder
                relative = f"{ASSETS_DIR}/{name}/preprocess.{field}"
                _copy(value, small_files(value), run / relative)
                entries[f"preprocess.{field}"] = relative
        if entries:
            index[name] = entries
    if index:
        atomic_write_json(run / ASSETS_DIR / INDEX, index)
    return index


def localize_assets(config: Any, run: Path) -> Any:
    """A copy of ``config`` whose asset paths point into ``run/assets`` (unchanged when the run has
    none)."""
    index_file = run / ASSETS_DIR / INDEX
    if not index_file.is_file():
        return config
    index = json.loads(index_file.read_text(encoding="utf-8"))
    config = config.model_copy(deep=True)
    for name, entries in index.items():
        modality = config.modalities[name]
        for key, relative in entries.items():
            section, field = key.split(".", 1)
            # set without re-validating the modality: a copied folder stands in for the original
            object.__setattr__(getattr(modality, section), field, (run / relative).resolve())
    return config


def restore_contexts(contexts: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Encoder build contexts for a saved run: encoders skip reading weight files (``restore``)."""
    return {name: {**context, "restore": True} for name, context in contexts.items()}
