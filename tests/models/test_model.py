"""``MultimodalNet`` and ``build_model``: encoders -> fusion -> head, end to end.

The networks have one modality of every kind. Every fusion (each variant, both ``missing``
modes) with every head the config accepts for it is built from a config; in eval mode the inputs of
a modality marked absent must not matter (large values, NaN), while a present modality's must.
"""

from __future__ import annotations

import math

import pytest
import torch
import torchvision

from polymodal.config import load_config
from polymodal.errors import ConfigError
from polymodal.models import MultimodalNet, build_model
from polymodal.models.encoders.base import EncoderOutput
from polymodal.models.registry import FUSIONS, HEADS

from .helpers import BATCH, CONTEXTS, component_name, make_inputs, max_change, param, rows, small, variants

N_OUTPUTS = 3
MODALITIES = {
    "aud": {"kind": "audio", "column": "a", "encoder": {"name": "mel_cnn", "dim": 16, "channels": [4]}},
    "img": {"kind": "image", "column": "i", "encoder": {"name": "cnn", "dim": 16, "channels": [4]}},
    "sig": {"kind": "signal", "column": "s", "encoder": {"name": "cnn1d", "dim": 16, "channels": [4]}},
    "tab": {"kind": "tabular", "columns": ["x"], "categorical": ["c", "d"], "encoder": {"dim": 8, "hidden": [8]}},
    "txt": {"kind": "text", "column": "t", "encoder": {"name": "transformer", "dim": 16, "ff": 16, "layers": 1}},
}
CONTEXT = {name: CONTEXTS[m["kind"]] for name, m in MODALITIES.items()}
# Who is absent (every sample keeps something; 'img' is absent from a sample and present in others).
ABSENT = {"aud": [1], "img": [0, 2], "sig": [3], "tab": [0], "txt": [2, 3]}


def config_dict(fusion: dict, head: dict, modalities: dict = MODALITIES) -> dict:
    return {"task": "classification", "target": "y", "modalities": modalities, "fusion": fusion, "head": head}


def _fusion(fusion_cls: type, overrides: dict, missing: str) -> dict:
    fusion = {**small(fusion_cls), **overrides, "missing": missing, "name": component_name(fusion_cls)}
    if "factor_dim" in fusion_cls.model_fields:  # tensor fusion: (factor_dim + 1) ** 5 must stay small
        fusion["factor_dim"] = 3
    return fusion


def _accepted(fusion: dict, head: dict) -> bool:
    try:
        load_config(config_dict(fusion, head))
    except ConfigError:
        return False  # the config refuses this pairing (e.g. a sequence head on a vector fusion)
    return True


def _cases() -> list:
    """Every fusion variant in both missing modes with the mlp head; then every other head with
    every fusion variant the config accepts it with (missing: zero)."""
    cases = []
    mlp = next(c for c, _ in HEADS.items() if component_name(c) == "mlp")
    for fusion_cls, fusion_impl in FUSIONS.items():
        for variant_id, overrides in variants(fusion_cls, skip=("name", "missing")):
            for head_cls, head_impl in HEADS.items():
                head = {**small(head_cls), "name": component_name(head_cls)}
                for missing in ("learned", "zero") if head_cls is mlp else ("zero",):
                    fusion = _fusion(fusion_cls, overrides, missing)
                    if _accepted(fusion, head):
                        case_id = f"{fusion_impl.__name__}-{variant_id}-{missing}-{head_impl.__name__}"
                        cases.append((case_id, fusion, head))
    return cases


CASES = [pytest.param(fusion, head, id=case_id) for case_id, fusion, head in _cases()]
# Present / batch tests: the default missing mode with the mlp head, and every other head.
SOME_CASES = [param(fusion, head, id=case_id)
              for case_id, fusion, head in _cases() if head["name"] != "mlp" or fusion["missing"] == "learned"]


def test_cases_cover_every_fusion_and_head():
    fusions = {c.values[0]["name"] for c in CASES}
    heads = {c.values[1]["name"] for c in CASES}
    assert fusions == {component_name(c) for c, _ in FUSIONS.items()}
    assert heads == {component_name(c) for c, _ in HEADS.items()}


def build(fusion: dict, head: dict) -> MultimodalNet:
    torch.manual_seed(0)
    return build_model(load_config(config_dict(fusion, head)), CONTEXT, N_OUTPUTS)


def batch(seed: int = 0) -> tuple[dict, dict]:
    g = torch.Generator().manual_seed(seed)
    inputs = {name: make_inputs(m["kind"], g) for name, m in MODALITIES.items()}
    present = {}
    for name in MODALITIES:
        flags = torch.ones(BATCH, dtype=torch.bool)
        flags[ABSENT[name]] = False
        present[name] = flags
    return inputs, present


def spoil_absent(inputs: dict, present: dict, value: float) -> dict:
    """Inputs whose absent rows hold ``value`` (float arrays) or other random ids / categories."""
    g = torch.Generator().manual_seed(11)
    out = {}
    for name, kwargs in inputs.items():
        absent = ~present[name]
        spoiled = {}
        for key, tensor in kwargs.items():
            tensor = tensor.clone()
            if key == "mask":
                pass
            elif tensor.is_floating_point():
                tensor[absent] = value
            elif key == "cat":
                cards = CONTEXTS["tabular"]["cardinalities"]
                tensor[absent] = torch.stack([torch.randint(0, c, (int(absent.sum()),), generator=g) for c in cards], 1)
            else:  # token ids: other words, same padding
                other = torch.randint(1, CONTEXTS["text"]["vocab_size"], tensor.shape, generator=g)
                is_pad = tensor[absent] == CONTEXTS["text"]["pad_id"]
                tensor[absent] = torch.where(is_pad, tensor[absent], other[absent])
            spoiled[key] = tensor
        out[name] = spoiled
    return out


@pytest.mark.parametrize(("fusion", "head"), CASES)
def test_inputs_of_absent_modalities_do_not_matter(fusion, head):
    """Large numbers and NaN in absent inputs, whether encoders see only present samples (the
    default) or every row (``encode_present_only = False``, as export does)."""
    net = build(fusion, head).eval()
    assert net.names == sorted(MODALITIES) and list(net.encoders) == sorted(MODALITIES)
    assert (net.head is None) == net.fusion.produces_outputs
    inputs, present = batch()
    with torch.no_grad():
        clean = net(inputs, present)
        assert clean.shape == (BATCH, N_OUTPUTS) and torch.isfinite(clean).all()
        for encode_present_only in (True, False):
            net.encode_present_only = encode_present_only
            for value in (1e6, math.nan):
                spoiled = net(spoil_absent(inputs, present, value), present)
                assert torch.isfinite(spoiled).all(), (encode_present_only, value)
                torch.testing.assert_close(spoiled, clean, rtol=0.0, atol=1e-5, msg=f"{encode_present_only}, {value}")


@pytest.mark.parametrize(("fusion", "head"), [pytest.param(*c.values, id=c.id) for c in SOME_CASES])
def test_inputs_of_a_present_modality_matter_for_its_samples_only(fusion, head):
    net = build(fusion, head).eval()
    inputs, present = batch()
    changed = dict(inputs)
    changed["img"] = {"x": torch.rand(inputs["img"]["x"].shape, generator=torch.Generator().manual_seed(9))}
    with torch.no_grad():
        before, after = net(inputs, present), net(changed, present)
    for row in range(BATCH):
        if present["img"][row]:
            assert max_change(before[row], after[row]) > 1e-6, f"sample {row} has an image but ignores it"
        else:
            assert max_change(before[row], after[row]) == 0.0, f"sample {row} has no image yet its output changed"


@pytest.mark.parametrize(("fusion", "head"), SOME_CASES)
def test_eval_output_of_a_sample_does_not_depend_on_the_rest_of_the_batch(fusion, head):
    net = build(fusion, head).eval()
    inputs, present = batch()
    with torch.no_grad():
        full = net(inputs, present)
        for i in range(BATCH):
            alone = net({n: rows(kw, [i]) for n, kw in inputs.items()}, {n: p[[i]] for n, p in present.items()})
            torch.testing.assert_close(alone[0], full[i], rtol=1e-4, atol=1e-5)


# -- encoding only the present samples --------------------------------------------------------
def _net() -> MultimodalNet:
    return build({"name": "attention", "dim": 16, "tokens": True}, {"name": "mlp"}).eval()


def test_encode_runs_each_encoder_on_its_present_samples_only():
    net = _net()
    inputs, present = batch()
    with torch.no_grad():
        encoded = net.encode(inputs, present)
        for name in MODALITIES:
            full = net.encoders[name](**inputs[name])
            keep = present[name]
            torch.testing.assert_close(encoded[name].pooled[keep], full.pooled[keep], rtol=1e-4, atol=1e-5)
            assert torch.equal(encoded[name].pooled[~keep], torch.zeros_like(encoded[name].pooled[~keep]))
            if encoded[name].tokens is not None:
                assert not encoded[name].token_mask[~keep].any(), f"{name}: absent samples have valid tokens"


@pytest.mark.parametrize("present_rows", [1, 2])
def test_batch_norm_trains_on_a_modality_present_in_one_row(present_rows):
    """A ResNet on 28 px images ends on a 1x1 map: batch statistics of one row do not exist, so its
    batch norms use their running statistics for that call, and are training again after it."""
    from polymodal.models.encoders.image import ResNetEncoder
    from polymodal.models.fusion.simple import ConcatFusion
    from polymodal.models.heads import MlpHead

    encoder = ResNetEncoder(1, 18, 16)
    fusion = ConcatFusion({"img": 16})
    net = MultimodalNet({"img": encoder}, fusion, MlpHead(fusion.output_dim, 3)).train()
    present = {"img": torch.arange(4) < present_rows}
    before = encoder.stem[1].running_mean.clone()
    out = net.forward_train({"img": {"x": torch.randn(4, 1, 28, 28)}}, present)
    assert torch.isfinite(out.outputs).all()
    norms = [m for m in encoder.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(m.training for m in norms)
    assert torch.equal(encoder.stem[1].running_mean, before) == (present_rows == 1)  # one row: stats untouched


def test_a_modality_absent_from_the_whole_batch_is_not_encoded():
    net = _net()
    inputs, present = batch()
    present["img"] = torch.zeros(BATCH, dtype=torch.bool)

    def fail(*args, **kwargs):
        raise AssertionError("the image encoder ran on a batch without images")

    net.encoders["img"].forward = fail
    with torch.no_grad():
        encoded = net.encode(inputs, present)
        out = net(inputs, present)
    assert torch.equal(encoded["img"].pooled, torch.zeros(BATCH, net.encoders["img"].output_dim))
    assert isinstance(encoded["img"], EncoderOutput) and encoded["img"].tokens is None
    assert torch.isfinite(out).all()


# -- build_model from configs -----------------------------------------------------------------
def test_build_model_applies_each_encoder_freeze_setting():
    modalities = {name: {**m, "encoder": {**m["encoder"]}} for name, m in MODALITIES.items()}
    modalities["img"]["encoder"]["freeze"] = "all"
    modalities["sig"]["encoder"]["freeze"] = 1
    with pytest.warns(UserWarning) as said:
        net = build_model(load_config(config_dict({"name": "concat"}, {"name": "mlp"}, modalities)), CONTEXT, N_OUTPUTS)
    random = [str(w.message) for w in said if "whose weights are random" in str(w.message)]
    assert len(random) == 2 and random[0].startswith("modalities.img.encoder.freeze: 'all' freezes")
    # a cnn has no 'weights' to set: the advice names what would load pretrained weights instead
    assert all(m.endswith("otherwise freeze: none, or an encoder that loads pretrained weights (docs/transfer.md)")
               for m in random)
    assert not any(p.requires_grad for p in net.encoders["img"].parameters())
    last_block = {id(p) for p in net.encoders["sig"].blocks()[-1].parameters()}
    assert {id(p) for p in net.encoders["sig"].parameters() if p.requires_grad} == last_block
    for name in ("aud", "tab", "txt"):
        assert all(p.requires_grad for p in net.encoders[name].parameters())
    assert all(p.requires_grad for p in net.fusion.parameters()) and all(p.requires_grad for p in net.head.parameters())


def test_the_freeze_warning_names_the_key_that_loads_pretrained_weights():
    from polymodal.models.model import pretrained_source

    config = load_config({"task": "classification", "target": "y", "modalities": {
        "clip": {"kind": "video", "column": "v", "encoder": {"name": "frame_cnn", "frame": {"name": "resnet"}}},
        "words": {"kind": "text", "column": "w", "encoder": {"name": "embedding_bag"}},
        "scan": {"kind": "image", "column": "i", "encoder": {"name": "timm", "arch": "resnet18"}},
        "own": {"kind": "image", "column": "j", "encoder": {"name": "cnn"}}}})
    assert {n: pretrained_source(m.encoder) for n, m in config.modalities.items()} == {
        "clip": "frame.weights", "words": "vectors", "scan": "weights", "own": None}


def test_freezing_more_blocks_than_an_encoder_has_names_the_config_key():
    modalities = {name: {**m, "encoder": {**m["encoder"]}} for name, m in MODALITIES.items()}
    modalities["img"]["encoder"]["freeze"] = 50
    config = load_config(config_dict({"name": "concat"}, {"name": "mlp"}, modalities))
    with pytest.raises(ConfigError, match=r"modalities\.img\.encoder\.freeze: 50 trailing blocks .* has 2; use a number "
                                          r"from 0 to 2"):
        build_model(config, CONTEXT, N_OUTPUTS)


def test_build_model_reads_weights_relative_to_the_config_file(tmp_path):
    torch.manual_seed(3)
    state = torchvision.models.resnet18(weights=None).state_dict()
    (tmp_path / "weights").mkdir()
    torch.save(state, tmp_path / "weights" / "r18.pth")
    (tmp_path / "config.yaml").write_text(
        "target: y\n"
        "modalities:\n"
        "  img: {kind: image, column: i, preprocess: {size: 16}, encoder: {name: resnet, weights: weights/r18.pth, dim: 8}}\n"
        "fusion: {name: concat}\n"
        "head: {name: mlp, hidden: [8]}\n", encoding="utf-8")
    net = build_model(load_config(tmp_path / "config.yaml"), {"img": {"in_channels": 3, "size": (16, 16)}}, 2)
    assert net.encoders["img"].pretrained
    assert torch.equal(net.encoders["img"].stem[0].weight, state["conv1.weight"])
    out = net({"img": {"x": torch.rand(2, 3, 16, 16)}}, {"img": torch.ones(2, dtype=torch.bool)})
    assert out.shape == (2, 2)


@pytest.mark.parametrize("missing", ["zero", "learned"])
def test_late_fusion_averages_the_heads_of_the_present_modalities(missing):
    """With learned missing-embeddings too: an absent modality's head does not vote (only a row
    with nothing present falls back on the missing-embeddings' heads)."""
    net = build({"name": "late", "missing": missing}, {"name": "mlp", "hidden": [8]}).eval()
    assert net.head is None
    assert sorted(net.fusion.heads) == sorted(MODALITIES)
    inputs, present = batch()
    for name in MODALITIES:  # row 0 has nothing present
        present[name][0] = False
    present[sorted(MODALITIES)[0]][1] = True
    with torch.no_grad():
        fused = net.fuse(inputs, present)
        out = net(inputs, present)
    assert fused.tokens.shape == (BATCH, len(MODALITIES), N_OUTPUTS)
    names = sorted(MODALITIES)
    for row in range(BATCH):
        used = torch.stack([present[n][row] for n in names])
        if not used.any() and missing == "learned":
            used = torch.ones_like(used)
        assert torch.equal(fused.mask[row], used)
        weights = torch.softmax(net.fusion.logits.detach()[used], dim=0)
        expected = (weights[:, None] * fused.tokens[row, used]).sum(dim=0)
        torch.testing.assert_close(out[row], expected)


def test_config_refuses_a_tensor_fusion_too_wide_for_its_modalities():
    with pytest.raises(ConfigError, match="factor_dim"):
        load_config(config_dict({"name": "tensor"}, {"name": "mlp"}))


# -- freezing an encoder that starts from random weights ------------------------------------------
def _frozen_image_config(freeze, **encoder) -> dict:
    modalities = {"img": {**MODALITIES["img"], "encoder": {**MODALITIES["img"]["encoder"], "freeze": freeze, **encoder}},
                  "tab": MODALITIES["tab"]}
    return config_dict({"name": "concat"}, {"name": "mlp", "hidden": [8]}, modalities)


@pytest.mark.parametrize("freeze", ["all", 0])
def test_freezing_a_randomly_initialised_encoder_warns_with_its_key(freeze):
    config = load_config(_frozen_image_config(freeze))
    with pytest.warns(UserWarning, match=r"modalities\.img\.encoder\.freeze: .* encoder 'cnn', whose weights are "
                                         r"random"):
        build_model(config, {n: CONTEXT[n] for n in ("img", "tab")}, N_OUTPUTS)


@pytest.mark.parametrize(("freeze", "encoder", "restore"), [
    ("none", {}, False),                                                    # nothing frozen
    ("all", {}, True),                                                      # a saved run rebuilt to load its weights
    ("all", {"unfreeze": {"start": 1, "every": 1, "blocks": 1}}, False),    # it trains later
])
def test_no_warning_where_random_weights_are_not_frozen_for_good(freeze, encoder, restore, recwarn):
    config = load_config(_frozen_image_config(freeze, **encoder))
    contexts = {n: {**CONTEXT[n], **({"restore": True} if restore else {})} for n in ("img", "tab")}
    build_model(config, contexts, N_OUTPUTS)
    assert not [w for w in recwarn if "weights are random" in str(w.message)]
