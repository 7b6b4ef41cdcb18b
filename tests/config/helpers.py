"""Building configs for the config tests."""

from __future__ import annotations

import copy
from typing import Any

# an audio + image config the error tests change one key at a time
BASE: dict[str, Any] = {
    "target": "label",
    "modalities": {
        "spoken": {"kind": "audio", "column": "audio_path",
                   "preprocess": {"sample_rate": 8000, "n_mels": 40, "frame_ms": 25, "hop_ms": 10}},
        "digit_image": {"kind": "image", "column": "image_path", "preprocess": {"size": 28, "color": "gray"}},
    },
}


def with_changes(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of ``base`` with dotted-path overrides, e.g. ``{"train.lr": 0}``."""
    data = copy.deepcopy(base)
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = data
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return data
