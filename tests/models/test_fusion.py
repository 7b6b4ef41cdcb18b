"""Fusion contract tests, driven by the FUSIONS registry (STYLE rule 16).

Every registered fusion config is built with its defaults and with each other choice of its bool /
Literal fields, for both ``missing: learned`` and ``missing: zero``, over three modalities (one with
a padded token sequence) where some samples lack some modalities. Contract
(``polymodal.models.fusion.base``): ``forward(features, present) -> FusedOutput(pooled (B, D),
tokens (B, T, D) | None, mask (B, T) | None)``, ``D == output_dim``; whatever an encoder produced
for an absent sample never reaches the output.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

import polymodal.models  # noqa: F401 - fills the registries
from polymodal.config import load_config
from polymodal.config.base import validate
from polymodal.config.model import AnyFusion, MlpHeadConfig
from polymodal.deploy.writers import OPSET
from polymodal.errors import ConfigError
from polymodal.models.encoders.base import EncoderOutput
from polymodal.models.fusion.base import FusedOutput, Fusion
from polymodal.models.fusion.tensor import LowRankFusion
from polymodal.models.registry import FUSIONS

from .helpers import (
    ABSENT,
    FUSION_BATCH,
    FUSION_DIMS,
    assert_all_parameters_get_gradients,
    assert_same,
    component_name,
    fill_absent,
    fusion_features,
    fusion_present,
    max_change,
    perturb_parameters,
    random_projection_loss,
    variants,
)

N_OUTPUTS = 3


def _cases() -> list:
    return [pytest.param(cfg_cls, {**overrides, "missing": missing}, id=f"{impl.__name__}-{variant_id}-{missing}")
            for cfg_cls, impl in FUSIONS.items()
            for variant_id, overrides in variants(cfg_cls, skip=("name", "missing"))
            for missing in ("learned", "zero")]


CASES = _cases()


def build_fusion(cfg_cls: type, overrides: dict, dims: dict[str, int] = FUSION_DIMS) -> Fusion:
    torch.manual_seed(0)
    return FUSIONS.build(cfg_cls(**overrides), dims=dims, n_outputs=N_OUTPUTS, head=MlpHeadConfig(hidden=[8]))


@pytest.mark.parametrize(("cfg_cls", "overrides"), CASES)
def test_forward_contract(cfg_cls, overrides):
    fusion = build_fusion(cfg_cls, overrides).eval()
    assert fusion.names == sorted(FUSION_DIMS)
    with torch.no_grad():
        out = fusion(fusion_features(), fusion_present())
    assert isinstance(out, FusedOutput)
    # what the config layer's validators assume of each fusion (heads need tokens; late has no shared head)
    assert fusion.produces_outputs == cfg_cls.produces_outputs
    assert (out.tokens is not None and not fusion.produces_outputs) == cfg_cls.makes_tokens
    expected_dim = N_OUTPUTS if fusion.produces_outputs else fusion.output_dim
    assert out.pooled.shape == (FUSION_BATCH, expected_dim)
    assert torch.isfinite(out.pooled).all()
    if out.tokens is None:
        assert out.mask is None
    else:
        assert out.tokens.dim() == 3 and out.tokens.shape[0] == FUSION_BATCH
        assert torch.isfinite(out.tokens).all()
        if out.mask is not None:
            assert out.mask.dtype == torch.bool and out.mask.shape == out.tokens.shape[:2]


@pytest.mark.parametrize(("cfg_cls", "overrides"), CASES)
def test_backward_reaches_every_parameter(cfg_cls, overrides):
    fusion = build_fusion(cfg_cls, overrides).train()
    perturb_parameters(fusion)
    features = {n: EncoderOutput(f.pooled.requires_grad_(), f.tokens.requires_grad_(), f.token_mask)
                for n, f in fusion_features().items()}
    out = fusion(features, fusion_present())
    random_projection_loss(out.pooled, out.tokens).backward()
    assert_all_parameters_get_gradients(fusion)
    for name, feat in features.items():  # every present sample's features (pooled or tokens) are used
        reach = torch.zeros(FUSION_BATCH)
        for grad in (feat.pooled.grad, feat.tokens.grad):
            if grad is not None:
                assert torch.isfinite(grad).all()
                reach += grad.abs().flatten(1).sum(dim=1)
        present_rows = fusion_present()[name]
        assert bool((reach[present_rows] > 0).all()), f"{name}: a present sample gets no gradient"


@pytest.mark.parametrize("value", [1e6, math.nan], ids=["large", "nan"])
@pytest.mark.parametrize(("cfg_cls", "overrides"), CASES)
def test_absent_modalities_do_not_leak(cfg_cls, overrides, value):
    fusion = build_fusion(cfg_cls, overrides).eval()
    features, present = fusion_features(), fusion_present()
    with torch.no_grad():
        clean = fusion(features, present)
        garbage = fusion(fill_absent(features, present, value), present)
    assert_same(clean.pooled, garbage.pooled)
    assert_same(clean.tokens, garbage.tokens)
    assert_same(clean.mask, garbage.mask)


@pytest.mark.parametrize(("cfg_cls", "overrides"), CASES)
def test_present_modality_changes_only_its_own_samples(cfg_cls, overrides):
    fusion = build_fusion(cfg_cls, overrides).eval()
    features, present = fusion_features(), fusion_present()
    changed = dict(features)
    txt = features["txt"]
    g = torch.Generator().manual_seed(5)  # random, not a constant shift (LayerNorm would remove that)
    changed["txt"] = EncoderOutput(txt.pooled + torch.randn(txt.pooled.shape, generator=g),
                                   txt.tokens + torch.randn(txt.tokens.shape, generator=g), txt.token_mask)
    with torch.no_grad():
        before = fusion(features, present).pooled
        after = fusion(changed, present).pooled
    for row in range(FUSION_BATCH):
        if row in ABSENT["txt"]:
            assert max_change(before[row], after[row]) == 0.0, f"row {row} lacks 'txt' but its output changed"
        else:
            scale = before[row].abs().max().item()
            assert max_change(before[row], after[row]) > 1e-3 * scale, f"row {row} has 'txt' but its output ignores it"


@pytest.mark.parametrize(("cfg_cls", "overrides"), CASES)
def test_result_does_not_depend_on_modality_order(cfg_cls, overrides):
    fusion = build_fusion(cfg_cls, overrides).eval()
    features, present = fusion_features(), fusion_present()
    reversed_features = dict(reversed(list(features.items())))
    reversed_present = dict(reversed(list(present.items())))
    with torch.no_grad():
        assert_same(fusion(features, present).pooled, fusion(reversed_features, reversed_present).pooled, atol=0.0)
    rebuilt = build_fusion(cfg_cls, overrides, dict(reversed(list(FUSION_DIMS.items())))).eval()
    assert rebuilt.names == fusion.names
    assert list(rebuilt.state_dict()) == list(fusion.state_dict())


@pytest.mark.parametrize(("cfg_cls", "overrides"), CASES)
def test_sample_with_no_modality_gets_finite_outputs(cfg_cls, overrides):
    """The fixture keeps a modality in every row; a row with none (all masked out under
    ``missing: zero``) must still give finite values, not a softmax or max over nothing."""
    fusion = build_fusion(cfg_cls, overrides).eval()
    present = {n: flags.clone().index_fill_(0, torch.tensor([4]), False) for n, flags in fusion_present().items()}
    with torch.no_grad():
        out = fusion(fusion_features(), present)
    assert torch.isfinite(out.pooled).all()
    if out.tokens is not None:
        assert torch.isfinite(out.tokens).all()


ZERO_CASES = [case for case in CASES if case.values[1]["missing"] == "zero"]


def _perturb_modality_parameters(fusion: Fusion, names: list[str]) -> int:
    """Add noise to every parameter that belongs to one of ``names`` (a ``<module>.<name>`` entry),
    except the rows of a low-rank factor that multiply the constant 1 of ``[1, z_m]``: that
    term is present for an absent modality by design (``polymodal.models.fusion.tensor``).
    Returns how many parameters were changed."""
    g = torch.Generator().manual_seed(3)
    changed = 0
    with torch.no_grad():
        for key, p in fusion.named_parameters():
            if not set(key.split(".")) & set(names):
                continue
            noise = torch.randn(p.shape, generator=g)
            if isinstance(fusion, LowRankFusion) and key.startswith("factors."):
                noise[:, 0] = 0.0
            p.add_(noise)
            changed += 1
    return changed


@pytest.mark.parametrize(("cfg_cls", "overrides"), ZERO_CASES)
def test_zero_missing_leaves_out_the_absent_modality(cfg_cls, overrides):
    """With ``missing: zero`` an absent modality is left out, not fed in as zeros: a sample's
    output does not depend on the fusion's parameters for the modalities it lacks (their
    projections, gates, heads, tokens), only on those of the modalities it has."""
    fusion = build_fusion(cfg_cls, overrides).eval()
    features, present = fusion_features(), fusion_present()
    only_img = [row for row in range(FUSION_BATCH) if row in ABSENT["aud"] and row in ABSENT["txt"]]
    assert only_img, "the fixture needs a sample with a single modality"
    with torch.no_grad():
        before = fusion(features, present).pooled
        changed = _perturb_modality_parameters(fusion, ["aud", "txt"])
        after = fusion(features, present).pooled
    assert_same(before[only_img], after[only_img], atol=1e-5)
    if not changed:  # no per-modality parameters (concat without projection): nothing else to check
        return
    both = [row for row in range(FUSION_BATCH) if row not in ABSENT["aud"] and row not in ABSENT["txt"]]
    assert max_change(before[both], after[both]) > 1e-3, "the perturbed parameters should matter where the modalities are present"


def test_masked_softmax_weights_only_the_masked_in_entries():
    logits = torch.tensor([[0.0, 1.0, 2.0], [3.0, -1.0, 0.5], [1.0, 1.0, 1.0]])
    mask = torch.tensor([[True, False, True], [False, True, False], [False, False, False]])
    weights = Fusion.masked_softmax(logits, mask)
    e0, e2 = math.exp(0.0), math.exp(2.0)
    expected = torch.tensor([[e0 / (e0 + e2), 0.0, e2 / (e0 + e2)], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(weights, expected)


def test_learned_missing_embedding_stands_in_for_an_absent_modality():
    cfg_cls = next(c for c, _ in FUSIONS.items() if component_name(c) == "concat")
    fusion = build_fusion(cfg_cls, {"missing": "learned"}).eval()
    features, present = fusion_features(), fusion_present()
    with torch.no_grad():
        out = fusion(features, present).pooled
    row = ABSENT["txt"][0]
    start = FUSION_DIMS["aud"] + FUSION_DIMS["img"]  # sorted: aud, img, txt, then presence flags
    torch.testing.assert_close(out[row, start:start + FUSION_DIMS["txt"]], fusion.missing["txt"].detach())
    flags = out[:, -len(FUSION_DIMS):]
    assert torch.equal(flags, torch.stack([present[n] for n in sorted(FUSION_DIMS)], dim=1).float())


class _FlatFusion(torch.nn.Module):
    """A fusion over flat tensors (per modality, sorted: pooled, tokens, token mask, present), as
    the exported graph calls it; returns the pooled output."""

    def __init__(self, fusion: Fusion):
        super().__init__()
        self.fusion = fusion

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        features, present = {}, {}
        for i, name in enumerate(sorted(FUSION_DIMS)):
            pooled, tokens, mask, flags = tensors[4 * i:4 * i + 4]
            features[name] = EncoderOutput(pooled, tokens, mask if name == "txt" else None)
            present[name] = flags
        return self.fusion(features, present).pooled


def _flat(features: dict[str, EncoderOutput], present: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    out = []
    for name in sorted(FUSION_DIMS):
        feat = features[name]
        mask = feat.token_mask if feat.token_mask is not None else torch.ones(feat.tokens.shape[:2], dtype=torch.bool)
        out += [feat.pooled, feat.tokens, mask, present[name]]
    return out


@pytest.mark.parametrize(("cfg_cls", "overrides"), CASES)
def test_onnx_export_runs_in_onnxruntime_like_eager(cfg_cls, overrides, tmp_path):
    """``polymodal export`` captures the fusion with torch.export into ONNX (``dynamo=True``, as
    :func:`polymodal.deploy.export.export_onnx` does) and runs it with onnxruntime, which lacks
    some kernels (``Where`` on bool tensors made every late-fusion export fail); the graph must
    load and match eager, also on a sample with no modality present."""
    ort = pytest.importorskip("onnxruntime")
    from polymodal.deploy.graph import exportable_ops

    fusion = build_fusion(cfg_cls, overrides).eval()
    features, present = fusion_features(), fusion_present()
    names = [f"i{k}" for k in range(4 * len(FUSION_DIMS))]
    with exportable_ops(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.export's notes about its internals
        torch.onnx.export(_FlatFusion(fusion).eval(), tuple(_flat(features, present)), str(tmp_path / "f.onnx"),
                          input_names=names, opset_version=OPSET, dynamo=True, external_data=False, verbose=False)
    session = ort.InferenceSession(str(tmp_path / "f.onnx"), providers=["CPUExecutionProvider"])
    taken = {i.name for i in session.get_inputs()}  # an exporter may drop inputs nothing reads
    none_present = {n: flags.clone().index_fill_(0, torch.tensor([4]), False) for n, flags in present.items()}
    for flags in (present, none_present):
        feeds = {n: t.numpy() for n, t in zip(names, _flat(features, flags), strict=True) if n in taken}
        with torch.no_grad():
            eager = fusion(features, flags).pooled
        torch.testing.assert_close(torch.from_numpy(session.run(None, feeds)[0]), eager, atol=1e-5, rtol=1e-5)


def test_late_fusion_weights_the_present_heads_else_the_filled_ones():
    """Late fusion's mask: the present modalities; on a sample with none, every head on its learned
    missing-embedding (``missing: learned``), or none (``missing: zero``, output 0)."""
    cfg_cls = next(c for c, _ in FUSIONS.items() if component_name(c) == "late")
    features = fusion_features()
    present = {n: flags.clone().index_fill_(0, torch.tensor([4]), False) for n, flags in fusion_present().items()}
    real = torch.stack([present[n] for n in sorted(FUSION_DIMS)], dim=1)
    for missing in ("learned", "zero"):
        fusion = build_fusion(cfg_cls, {"missing": missing}).eval()
        with torch.no_grad():
            out = fusion(features, present)
        expected = real.clone()
        expected[4] = missing == "learned"
        assert torch.equal(out.mask, expected), missing
        if missing == "zero":
            assert torch.equal(out.pooled[4], torch.zeros(N_OUTPUTS))
        else:
            torch.testing.assert_close(out.pooled[4], out.tokens[4].mean(dim=0))  # equal logits: equal weights


# -- configs ---------------------------------------------------------------------------------
def _config_classes() -> list:
    return [pytest.param(cfg_cls, id=cfg_cls.__name__) for cfg_cls, _ in FUSIONS.items()]


@pytest.mark.parametrize("cfg_cls", _config_classes())
def test_load_config_names_the_fusion_key_path(cfg_cls):
    base = {"target": "y", "modalities": {"m": {"kind": "tabular", "columns": ["x"]}}}
    assert type(load_config({**base, "fusion": {"name": component_name(cfg_cls)}}).fusion) is cfg_cls
    with pytest.raises(ConfigError) as info:
        load_config({**base, "fusion": {"name": component_name(cfg_cls), "dropout": 1.5}})
    assert any(p.startswith("fusion.dropout") for p in info.value.problems), info.value.problems


def test_every_fusion_in_the_schema_is_registered():
    import typing

    in_schema = set(typing.get_args(typing.get_args(AnyFusion)[0]))
    assert in_schema == {cfg_cls for cfg_cls, _ in FUSIONS.items()}


def _dim_cases() -> list:
    return [pytest.param(cfg_cls, id=cfg_cls.__name__) for cfg_cls, _ in FUSIONS.items()
            if "heads" in cfg_cls.model_fields and "dim" in cfg_cls.model_fields]


@pytest.mark.parametrize("cfg_cls", _dim_cases())
def test_config_refuses_dim_not_divisible_by_heads(cfg_cls):
    with pytest.raises(ConfigError, match="heads"):
        validate(cfg_cls, {"dim": 30, "heads": 4})
