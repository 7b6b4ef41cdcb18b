"""Builders shared by the model-layer tests: encoder inputs per modality kind, config variants
derived from the config classes themselves, and fake encoder outputs for fusions and heads.

Everything is derived from the registries and the config classes, so that a newly registered
component (or a new choice in a config) is covered without editing the tests (STYLE rule 16).
"""

from __future__ import annotations

import math
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import BaseModel

from polymodal.config.base import validate
from polymodal.models.encoders.base import EncoderOutput
from polymodal.models.fusion.base import FusedOutput

BATCH = 4

# What each kind's fitted preprocessor tells its encoder (see Preprocessor.encoder_context).
CONTEXTS: dict[str, dict[str, Any]] = {
    "image": {"in_channels": 3, "size": (16, 16)},
    "text": {"vocab_size": 40, "pad_id": 0, "max_tokens": 12, "vocab": None},
    "audio": {"n_features": 12, "n_frames": 20},
    "signal": {"in_channels": 2, "length": 32},
    "tabular": {"n_numeric": 3, "cardinalities": [4, 5]},
    "video": {"in_channels": 3, "size": (16, 16), "frames": 5},
}
# Valid steps per sample for the sequence kinds: one full sample, the others padded.
LENGTHS = {"text": [12, 7, 3, 1], "audio": [20, 13, 6, 2], "signal": [32, 21, 9, 3], "video": [5, 4, 2, 1]}


def length_mask(lengths: list[int], steps: int) -> torch.Tensor:
    return torch.arange(steps)[None, :] < torch.tensor(lengths)[:, None]  # (B, T)


def make_inputs(kind: str, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Encoder keyword inputs for a batch of ``BATCH`` samples of ``kind``, shaped like the
    preprocessors' ``to_batch`` output (padding zero / pad id, with a validity mask)."""
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    ctx = CONTEXTS[kind]
    if kind == "image":
        return {"x": torch.rand(BATCH, ctx["in_channels"], *ctx["size"], generator=g)}
    if kind == "text":
        steps = ctx["max_tokens"]
        mask = length_mask(LENGTHS["text"], steps)
        ids = torch.randint(1, ctx["vocab_size"], (BATCH, steps), generator=g)
        return {"x": ids.masked_fill(~mask, ctx["pad_id"]), "mask": mask}
    if kind == "audio":
        mask = length_mask(LENGTHS["audio"], ctx["n_frames"])
        x = torch.randn(BATCH, ctx["n_frames"], ctx["n_features"], generator=g)
        return {"x": x * mask.unsqueeze(-1), "mask": mask}
    if kind == "signal":
        mask = length_mask(LENGTHS["signal"], ctx["length"])
        x = torch.randn(BATCH, ctx["in_channels"], ctx["length"], generator=g)
        return {"x": x * mask.unsqueeze(1), "mask": mask}
    if kind == "tabular":
        cat = torch.stack([torch.randint(0, c, (BATCH,), generator=g) for c in ctx["cardinalities"]], dim=1)
        return {"x": torch.randn(BATCH, ctx["n_numeric"], generator=g), "cat": cat}
    if kind == "video":
        mask = length_mask(LENGTHS["video"], ctx["frames"])
        x = torch.rand(BATCH, ctx["frames"], ctx["in_channels"], *ctx["size"], generator=g)
        return {"x": x * mask[:, :, None, None, None], "mask": mask}
    raise AssertionError(f"no test inputs for modality kind '{kind}'; add them to tests/models/helpers.py")


def rows(inputs: dict[str, torch.Tensor], index: list[int]) -> dict[str, torch.Tensor]:
    return {k: v[index] for k, v in inputs.items()}


# -- config introspection --------------------------------------------------------------------
def literal_choices(annotation: Any) -> list[Any] | None:
    """The choices of a ``Literal`` annotation (also inside ``X | None``), else None."""
    if typing.get_origin(annotation) is typing.Literal:
        return list(typing.get_args(annotation))
    for member in typing.get_args(annotation):
        if typing.get_origin(member) is typing.Literal:
            return list(typing.get_args(member))
    return None


def required_file_fields(cfg_cls: type[BaseModel]) -> list[str]:
    """Required fields typed as a path (a model folder, a weights file...)."""
    return [n for n, f in cfg_cls.model_fields.items() if f.is_required() and _is_path(f.annotation)]


def _is_path(annotation: Any) -> bool:
    return annotation is Path or Path in typing.get_args(annotation)


def small(cfg_cls: type[BaseModel], width: int = 16) -> dict[str, Any]:
    """Overrides shrinking every integer size above ``width`` (and every list of sizes) so that
    variant tests stay fast; the defaults themselves are tested unshrunk."""
    out: dict[str, Any] = {}
    for name, field in cfg_cls.model_fields.items():
        default = field.default
        if isinstance(default, int) and not isinstance(default, bool) and default > width:
            out[name] = width
        elif isinstance(default, list) and default and all(isinstance(v, int) for v in default):
            out[name] = [min(v, width // 2) for v in default]
    return out


def variants(cfg_cls: type[BaseModel], skip: tuple[str, ...] = ("name", "freeze", "cache")) -> Iterator[tuple[str, dict]]:
    """(id, overrides): the defaults, then (on a :func:`small` config) one override per other
    choice of every bool or Literal field, one field at a time."""
    yield "default", {}
    base = small(cfg_cls)
    for name, field in cfg_cls.model_fields.items():
        if name in skip:
            continue
        if field.annotation is bool:
            yield f"{name}={not field.default}", {**base, name: not field.default}
            continue
        for choice in literal_choices(field.annotation) or []:
            if choice != field.default:
                yield f"{name}={choice}", {**base, name: choice}


def numeric_fields(cfg_cls: type[BaseModel], base: dict[str, Any]) -> list[str]:
    """Fields that accept the number 1 (bools excluded): all of them must refuse -1."""
    out = []
    for name, field in cfg_cls.model_fields.items():
        if field.annotation is bool or name == "name":
            continue
        try:
            validate(cfg_cls, {**base, name: 1})
        except ValueError:
            continue
        out.append(name)
    return out


def component_name(cfg_cls: type[BaseModel]) -> str:
    return cfg_cls.model_fields["name"].default


# -- checks ----------------------------------------------------------------------------------
def assert_all_parameters_get_gradients(module: torch.nn.Module) -> None:
    """Every trainable parameter has a finite gradient that is not identically zero."""
    problems = []
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        if param.grad is None:
            problems.append(f"{name}: no gradient")
        elif not torch.isfinite(param.grad).all():
            problems.append(f"{name}: non-finite gradient")
        elif not bool(param.grad.abs().sum() > 0):
            problems.append(f"{name}: gradient is all zeros")
    assert not problems, "parameters not trained by this loss:\n" + "\n".join(problems)


def perturb_parameters(module: torch.nn.Module, scale: float = 0.05, seed: int = 2) -> None:
    """Add small noise to every parameter: zero-initialised layers (timm's ``zero_init_last``
    residual norms, zero biases) would otherwise block gradients to earlier layers at init."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)


def random_projection_loss(*tensors: torch.Tensor | None, seed: int = 1) -> torch.Tensor:
    """A scalar depending on every element of every tensor through random weights (a plain
    sum can have zero gradient, e.g. right after a LayerNorm)."""
    g = torch.Generator().manual_seed(seed)
    total = torch.zeros(())
    for t in tensors:
        if t is not None:
            total = total + (t * torch.randn(t.shape, generator=g)).sum()
    return total


# -- fusion and head inputs ------------------------------------------------------------------
FUSION_DIMS = {"aud": 6, "img": 10, "txt": 8}
FUSION_TOKENS = {"aud": 5, "img": 4, "txt": 7}  # token counts; 'txt' also has a padding mask
FUSION_BATCH = 5
# Who is absent: every row keeps at least one modality.
ABSENT = {"aud": [0, 3], "img": [2], "txt": [1, 3]}


def fusion_features(generator: torch.Generator | None = None) -> dict[str, EncoderOutput]:
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    out = {}
    for name, dim in FUSION_DIMS.items():
        steps = FUSION_TOKENS[name]
        tokens = torch.randn(FUSION_BATCH, steps, dim, generator=g)
        mask = length_mask([steps, steps - 2, 1, steps, 3], steps) if name == "txt" else None
        out[name] = EncoderOutput(torch.randn(FUSION_BATCH, dim, generator=g), tokens, mask)
    return out


def fusion_present() -> dict[str, torch.Tensor]:
    present = {}
    for name in FUSION_DIMS:
        flags = torch.ones(FUSION_BATCH, dtype=torch.bool)
        flags[ABSENT[name]] = False
        present[name] = flags
    return present


def fill_absent(features: dict[str, EncoderOutput], present: dict[str, torch.Tensor], value: float
                ) -> dict[str, EncoderOutput]:
    """Copies of the features whose absent rows hold ``value`` everywhere (the mask is kept)."""
    out = {}
    for name, feat in features.items():
        absent = ~present[name]
        pooled = feat.pooled.clone()
        pooled[absent] = value
        tokens = None
        if feat.tokens is not None:
            tokens = feat.tokens.clone()
            tokens[absent] = value
        out[name] = EncoderOutput(pooled, tokens, feat.token_mask)
    return out


def fused_tokens(in_dim: int = 16, generator: torch.Generator | None = None) -> FusedOutput:
    """A fused sequence with invalid positions in the middle and at the end."""
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    tokens = torch.randn(FUSION_BATCH, 6, in_dim, generator=g)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 0, 1, 1, 0, 0], [0, 1, 1, 0, 1, 0], [1, 1, 1, 1, 1, 0],
                         [1, 0, 0, 0, 0, 0]], dtype=torch.bool)
    pooled = (tokens * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)
    return FusedOutput(pooled, tokens, mask)


def assert_same(a: torch.Tensor | None, b: torch.Tensor | None, atol: float = 1e-6) -> None:
    assert (a is None) == (b is None)
    if a is not None:
        assert torch.isfinite(b).all(), "non-finite values reached the output"
        torch.testing.assert_close(b, a, rtol=0.0, atol=atol)


def max_change(a: torch.Tensor, b: torch.Tensor) -> float:
    diff = (a - b).abs().max().item()
    return diff if not math.isnan(diff) else math.inf


def param(*values: Any, id: str, reason: str | None = None) -> Any:
    """pytest.param with an optional strict xfail (a known bug, reported to the maintainers)."""
    marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
    return pytest.param(*values, id=id, marks=marks)
