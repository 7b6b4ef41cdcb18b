"""The network as one exportable graph: featurised arrays + presence masks in, task outputs out.

The graph takes, for each modality in sorted order, the arrays its preprocessor's ``featurize``
produces (the cached form: image ``x`` uint8 (B, H, W, C); audio ``x`` (B, T, F) and ``length``;
text ``ids`` (B, max_tokens) and ``length``; tabular ``num`` and ``cat``; signal ``x`` and
``length``), then its presence mask (B,) bool. Inside, each preprocessor's own ``to_batch``
(eval mode: normalisation with fitted statistics, masks from lengths) and the network run, so
the exported file needs nothing of the batch-time code. Input names are ``<modality>.<array>``
and ``<modality>.present``; the output is ``outputs`` (B, K): the estimator's
:meth:`~polymodal.estimator.Estimator.output_network` outputs (raw logits or values of a
predictor, (B, 1) scores of an anomaly detector).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from polymodal.data.modalities import Preprocessor
from polymodal.models import MultimodalNet
from polymodal.models.encoders.base import Encoder

OUTPUT = "outputs"


@dataclass(frozen=True)
class GraphInput:
    """One input of the graph: ``name`` = ``<modality>.<key>``; ``shape`` excludes the batch axis."""

    modality: str
    key: str
    shape: tuple[int, ...]
    dtype: str

    @property
    def name(self) -> str:
        return f"{self.modality}.{self.key}"


def graph_inputs(preprocessors: Mapping[str, Preprocessor]) -> list[GraphInput]:
    """Every input in graph order: per modality (sorted) its arrays (sorted), then ``present``."""
    out = []
    for name in sorted(preprocessors):
        spec = preprocessors[name].spec()
        out += [GraphInput(name, key, tuple(spec[key].shape), spec[key].dtype) for key in sorted(spec)]
        out.append(GraphInput(name, "present", (), "bool"))
    return out


class ExportedGraph(nn.Module):
    """An estimator's output network preceded by the preprocessors' batch-time step (see the module docstring).

    Args:
        net: ``(inputs, present) -> (B, K)``, the trained network (trace it inside
            :func:`every_row_encoded`: no data-dependent shapes).
        preprocessors: the fitted preprocessors by modality name.
    """

    def __init__(self, net: nn.Module, preprocessors: Mapping[str, Preprocessor]):
        super().__init__()
        self.net = net
        self.preprocessors = dict(preprocessors)
        self.inputs = graph_inputs(preprocessors)

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        """Tensors in :func:`graph_inputs` order -> outputs (B, K)."""
        arrays: dict[str, dict[str, torch.Tensor]] = {}
        present: dict[str, torch.Tensor] = {}
        for spec, tensor in zip(self.inputs, tensors, strict=True):
            if spec.key == "present":
                present[spec.modality] = tensor
            else:
                arrays.setdefault(spec.modality, {})[spec.key] = tensor
        inputs = {name: self.preprocessors[name].to_batch(arrays[name], False) for name in sorted(arrays)}
        return self.net(inputs, present)


def tracing_reason(module: nn.Module) -> str | None:
    """Why the ONNX export of ``module`` must trace it (torch's legacy TorchScript-based exporter)
    instead of capturing it with ``torch.export``: the first encoder inside that says so
    (:attr:`~polymodal.models.encoders.base.Encoder.onnx_needs_tracing`), else None."""
    return next((f"{type(m).__name__}: {m.onnx_needs_tracing}" for m in module.modules()
                 if isinstance(m, Encoder) and m.onnx_needs_tracing is not None), None)


def example_feeds(inputs: Sequence[GraphInput], batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Synthetic feeds of the right shapes for tracing and graph-only parity checks.

    Lengths are full (text: ``max_tokens``), so that the batch-time trimming of padding is the
    identity while tracing and the graph keeps its full, fixed sequence length.
    """
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for spec in inputs:
        shape = (batch, *spec.shape)
        if spec.key == "present":
            feeds[spec.name] = np.ones(batch, bool)
        elif spec.key == "length":
            # the longest axis of the modality's other array: text (max_tokens,) -> max_tokens;
            # audio (T, F) and signal (C, L) masks only compare against it, so longer is full too
            full = next(s.shape for s in inputs if s.modality == spec.modality and s.key not in ("length", "present"))
            feeds[spec.name] = np.full(shape, max(full), np.int32)
        elif spec.dtype == "uint8":
            feeds[spec.name] = rng.integers(0, 256, shape).astype(np.uint8)
        elif spec.dtype.startswith("int"):
            feeds[spec.name] = np.zeros(shape, spec.dtype)
        else:
            feeds[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
    return feeds


def _adaptive_max_pool1d(x: torch.Tensor, output_size: int | Sequence[int], return_indices: bool = False
                         ) -> torch.Tensor:
    """``adaptive_max_pool1d`` as slices and maxima over its (static) bins, which ONNX can express."""
    if return_indices:
        raise NotImplementedError("return_indices is not supported while exporting")
    size = int(output_size[0] if isinstance(output_size, Sequence) else output_size)  # an int or a traced 0-d size
    steps = x.shape[-1]
    bins = [x[..., (i * steps) // size: -((-(i + 1) * steps) // size)].amax(dim=-1, keepdim=True) for i in range(size)]
    return torch.cat(bins, dim=-1)


def _adaptive_avg_pool1d(x: torch.Tensor, output_size: int | Sequence[int]) -> torch.Tensor:
    """``adaptive_avg_pool1d`` over static bins as differences of a float64 running sum (ONNX's
    own translation needs the length to be a multiple of the output size; the anomaly
    reconstruction target pools any length to ``recon_size``)."""
    size = int(output_size[0] if isinstance(output_size, Sequence) else output_size)
    steps = x.shape[-1]
    start = torch.tensor([(i * steps) // size for i in range(size)])
    stop = torch.tensor([-((-(i + 1) * steps) // size) for i in range(size)])
    running = x.double().cumsum(dim=-1)
    total = torch.cat([torch.zeros_like(running[..., :1]), running], dim=-1)  # (a pad exports as a reversed slice)
    sums = total.index_select(-1, stop) - total.index_select(-1, start)
    return (sums / (stop - start).double()).to(x.dtype)


@contextmanager
def exportable_ops() -> Iterator[None]:
    """While exporting, replace functional ops that the ONNX exporter cannot translate (adaptive max
    pooling, used to downsample masks; adaptive average pooling to a size that does not divide the
    length) by equivalent compositions of supported ones."""
    originals = nn.functional.adaptive_max_pool1d, nn.functional.adaptive_avg_pool1d
    nn.functional.adaptive_max_pool1d = _adaptive_max_pool1d
    nn.functional.adaptive_avg_pool1d = _adaptive_avg_pool1d
    try:
        yield
    finally:
        nn.functional.adaptive_max_pool1d, nn.functional.adaptive_avg_pool1d = originals


@contextmanager
def every_row_encoded(network: nn.Module) -> Iterator[None]:
    """Every encoder inside ``network`` runs on every row, present or not, while the context is
    open (no data-dependent shapes to trace; absent rows are still masked by the fusion)."""
    nets = [m for m in network.modules() if isinstance(m, MultimodalNet)]
    previous = [n.encode_present_only for n in nets]
    for n in nets:
        n.encode_present_only = False
    try:
        yield
    finally:
        for n, value in zip(nets, previous, strict=True):
            n.encode_present_only = value
