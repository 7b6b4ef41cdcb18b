"""Encoder contract tests, driven by the ENCODERS registry (STYLE rule 16).

Every registered encoder config is built for every modality kind it declares (``kinds``), with its
defaults and with each other choice of its bool / Literal fields, and must honour the contract of
``polymodal.models.encoders.base``: ``forward(**inputs) -> EncoderOutput(pooled (B, D), tokens
(B, T, D) | None, token_mask (B, T) | None)`` with ``D == output_dim``, finite values, a gradient
for every trainable parameter, and configs that refuse unknown keys and out-of-range numbers.
"""

from __future__ import annotations

import typing

import pytest
import torch
import torchvision
from helpers_models import save_glove, save_tiny_bert
from safetensors.torch import save_file

import polymodal.models  # noqa: F401 - fills the registries
from polymodal.config import load_config
from polymodal.config.base import validate
from polymodal.config.encoders import (
    EmbeddingBagConfig,
    HfConfig,
    ImageCnnConfig,
    ResNetConfig,
    TimmConfig,
)
from polymodal.config.modalities import AnyModality
from polymodal.errors import ConfigError, EncoderSettingError
from polymodal.models.encoders.base import Encoder, EncoderOutput
from polymodal.models.registry import ENCODERS

from .helpers import (
    BATCH,
    CONTEXTS,
    LENGTHS,
    assert_all_parameters_get_gradients,
    component_name,
    make_inputs,
    param,
    perturb_parameters,
    random_projection_loss,
    required_file_fields,
    rows,
    variants,
)
from .test_component_configs import base, numeric_cases


def _modality_kind(modality_cls: type) -> str:
    return typing.get_args(modality_cls.model_fields["kind"].annotation)[0]


def _encoder_cases() -> list[tuple[str, type, str, dict]]:
    """(id, config class, kind, overrides) for every registered encoder, kind and variant."""
    return [(f"{impl.__name__}-{kind}-{variant_id}", cfg_cls, kind, overrides)
            for cfg_cls, impl in ENCODERS.items() for kind in cfg_cls.kinds
            for variant_id, overrides in variants(cfg_cls)]


ENCODER_CASES = _encoder_cases()


def _marks(cfg_cls: type, overrides: dict) -> list:
    """The deeper ResNets take seconds per pass on a small CPU: run them with ``-m slow``."""
    return [pytest.mark.slow] if cfg_cls is ResNetConfig and overrides.get("depth", 18) != 18 else []


ALL_CASES = [pytest.param(cfg_cls, kind, overrides, id=case_id, marks=_marks(cfg_cls, overrides))
             for case_id, cfg_cls, kind, overrides in ENCODER_CASES]


def build_encoder(cfg_cls: type, kind: str, overrides: dict) -> Encoder:
    files = required_file_fields(cfg_cls)
    if files:
        pytest.skip(f"{cfg_cls.__name__} needs a file or folder ({files}); tested below with a tiny saved model")
    torch.manual_seed(0)
    return ENCODERS.build(cfg_cls(**overrides), kind=kind, **CONTEXTS[kind])


def check_output(out: EncoderOutput, encoder: Encoder, kind: str) -> None:
    assert isinstance(out, EncoderOutput)
    assert out.pooled.shape == (BATCH, encoder.output_dim)
    assert out.pooled.is_floating_point() and torch.isfinite(out.pooled).all()
    if out.tokens is None:
        assert out.token_mask is None, "a token mask without tokens"
        return
    assert out.tokens.dim() == 3 and out.tokens.shape[0] == BATCH and out.tokens.shape[2] == encoder.output_dim
    assert torch.isfinite(out.tokens).all()
    if kind in LENGTHS:  # padded input: the padded steps must be marked invalid
        assert out.token_mask is not None, "tokens over padded input need a token_mask"
    if out.token_mask is not None:
        assert out.token_mask.dtype == torch.bool and out.token_mask.shape == out.tokens.shape[:2]
        valid = out.token_mask.sum(dim=1)
        assert bool((valid >= 1).all()), "every sample keeps at least one valid token"
        if kind in LENGTHS:
            assert valid[-1] < valid[0], "the shortest sample must have fewer valid tokens than the longest"


# -- forward / backward contract -------------------------------------------------------------
@pytest.mark.parametrize(("cfg_cls", "kind", "overrides"), ALL_CASES)
def test_forward_contract(cfg_cls, kind, overrides):
    encoder = build_encoder(cfg_cls, kind, overrides).eval()
    with torch.no_grad():
        out = encoder(**make_inputs(kind))
    check_output(out, encoder, kind)


@pytest.mark.parametrize(("cfg_cls", "kind", "overrides"), ALL_CASES)
def test_backward_reaches_every_parameter(cfg_cls, kind, overrides):
    encoder = build_encoder(cfg_cls, kind, overrides).train()
    perturb_parameters(encoder)
    out = encoder(**make_inputs(kind))
    random_projection_loss(out.pooled, out.tokens).backward()
    assert_all_parameters_get_gradients(encoder)


@pytest.mark.parametrize(("cfg_cls", "kind", "overrides"), [c for c in ALL_CASES if not c.values[2]])
def test_eval_output_of_a_sample_does_not_depend_on_the_rest_of_the_batch(cfg_cls, kind, overrides):
    encoder = build_encoder(cfg_cls, kind, overrides).eval()
    inputs = make_inputs(kind)
    with torch.no_grad():
        full = encoder(**inputs)
        for i in range(BATCH):
            alone = encoder(**rows(inputs, [i]))
            torch.testing.assert_close(alone.pooled[0], full.pooled[i], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("cfg_cls", "kind", "overrides"), [c for c in ALL_CASES if not c.values[2]])
def test_weights_fingerprint_follows_every_parameter_and_buffer(cfg_cls, kind, overrides):
    """It keys the frozen-feature cache: equal for equal weights, different when any tensor of the
    state differs, a batch-norm running statistic as much as a weight."""
    encoder = build_encoder(cfg_cls, kind, overrides)
    fingerprint = encoder.weights_fingerprint()
    assert build_encoder(cfg_cls, kind, overrides).weights_fingerprint() == fingerprint
    state = encoder.state_dict()
    floating = [key for key, value in state.items() if value.is_floating_point() and value.numel()]
    params = {name for name, _ in encoder.named_parameters()}
    chosen = [k for k in floating if k in params][:1] + [k for k in floating if k not in params]
    for key in chosen:
        original = state[key].clone()
        with torch.no_grad():
            state[key].add_(0.5)
        assert encoder.weights_fingerprint() != fingerprint, f"changing '{key}' left the fingerprint unchanged"
        with torch.no_grad():
            state[key].copy_(original)
    assert encoder.weights_fingerprint() == fingerprint


def _text_cases() -> list:
    cases = []
    for case_id, cfg_cls, kind, overrides in ENCODER_CASES:
        if kind != "text":
            continue
        cases.append(param(cfg_cls, kind, overrides, id=case_id))
    return cases


@pytest.mark.parametrize(("cfg_cls", "kind", "overrides"), _text_cases())
def test_text_encoding_ignores_trailing_padding(cfg_cls, kind, overrides):
    """Text batches are padded to their longest text, so padding must not change an encoding."""
    encoder = build_encoder(cfg_cls, kind, overrides).eval()
    pad = CONTEXTS["text"]["pad_id"]
    ids = torch.tensor([[5, 9, 3, 7, 2]])
    padded = torch.cat([ids, torch.full((1, 6), pad)], dim=1)
    with torch.no_grad():
        short = encoder(x=ids, mask=torch.ones_like(ids, dtype=torch.bool))
        long = encoder(x=padded, mask=padded != pad)
    torch.testing.assert_close(long.pooled, short.pooled, rtol=1e-4, atol=1e-5)
    if short.tokens is not None:
        torch.testing.assert_close(long.tokens[:, : ids.shape[1]], short.tokens, rtol=1e-4, atol=1e-5)


# -- freezing --------------------------------------------------------------------------------
def _default_cases() -> list:
    return [param(cfg_cls, kind, id=case_id) for case_id, cfg_cls, kind, overrides in ENCODER_CASES if not overrides]


@pytest.mark.parametrize(("cfg_cls", "kind"), _default_cases())
def test_freeze_all_and_last_block(cfg_cls, kind):
    encoder = build_encoder(cfg_cls, kind, {})
    blocks = encoder.blocks()
    assert blocks, "blocks() lists at least one layer"
    encoder.freeze(1)
    trainable = {id(p) for p in encoder.parameters() if p.requires_grad}
    assert trainable == {id(p) for p in blocks[-1].parameters()}
    encoder.freeze("all")
    assert not any(p.requires_grad for p in encoder.parameters())
    with pytest.raises(ValueError, match="blocks"):
        encoder.freeze(len(blocks) + 1)


@pytest.mark.parametrize(("cfg_cls", "kind"), _default_cases())
def test_a_frozen_encoder_in_train_mode_computes_as_at_inference(cfg_cls, kind):
    """No dropout and no batch-statistics update in a wholly frozen encoder: training a head over it
    sees the features the frozen-feature cache would store."""
    overrides = {"dropout": 0.5} if "dropout" in cfg_cls.model_fields else {}
    encoder = build_encoder(cfg_cls, kind, overrides)
    encoder.freeze("all")
    encoder.train()
    buffers = {k: v.clone() for k, v in encoder.state_dict().items()}
    inputs = make_inputs(kind)
    with torch.no_grad():
        torch.manual_seed(1)
        first = encoder(**inputs).pooled
        torch.manual_seed(2)
        second = encoder(**inputs).pooled
        expected = encoder.eval()(**inputs).pooled
    torch.testing.assert_close(first, second)
    torch.testing.assert_close(first, expected)
    assert all(torch.equal(v, buffers[k]) for k, v in encoder.state_dict().items())


@pytest.mark.parametrize(("cfg_cls", "kind", "overrides"), ALL_CASES)
def test_freezing_as_many_blocks_as_there_are_trains_everything(cfg_cls, kind, overrides):
    """Training the last len(blocks) blocks trains every parameter, those no block holds (a
    Transformer's class token with ``pooling: cls``) with the first; the first block alone
    stays frozen with one block fewer."""
    encoder = build_encoder(cfg_cls, kind, overrides)
    blocks = encoder.blocks()
    encoder.freeze(len(blocks))
    frozen = [n for n, p in encoder.named_parameters() if not p.requires_grad]
    assert not frozen, f"parameters left frozen with every block training: {frozen}"
    encoder.freeze(len(blocks) - 1)
    first = {id(p) for p in blocks[0].parameters()}
    assert all(not p.requires_grad for p in encoder.parameters() if id(p) in first)


def test_a_vits_class_token_and_position_table_train_with_its_first_block():
    """timm keeps them on the backbone itself, outside its stem, stages and head."""
    encoder = ENCODERS.build(TimmConfig(arch="vit_tiny_patch16_224"), kind="image", in_channels=3)
    encoder.freeze(len(encoder.blocks()) - 1)
    assert not encoder.backbone.cls_token.requires_grad and not encoder.backbone.pos_embed.requires_grad
    encoder.freeze(len(encoder.blocks()))
    assert encoder.backbone.cls_token.requires_grad and encoder.backbone.pos_embed.requires_grad
    assert all(p.requires_grad for p in encoder.parameters())


# -- configs ---------------------------------------------------------------------------------
def _config_classes() -> list:
    return [pytest.param(cfg_cls, id=cfg_cls.__name__) for cfg_cls, _ in ENCODERS.items()]


def test_every_encoder_config_has_numeric_fields_to_check():
    with_numbers = {c.values[0] for c in numeric_cases([c for c, _ in ENCODERS.items()])}
    without = [c.__name__ for c, _ in ENCODERS.items() if c not in with_numbers and c is not HfConfig]
    assert not without, f"no numeric field found for {without}; the range test would not cover them"


def _kind_cases() -> list:
    return [pytest.param(cfg_cls, kind, id=f"{cfg_cls.__name__}-{kind}") for cfg_cls, _ in ENCODERS.items()
            for kind in cfg_cls.kinds]


def _modality_block(kind: str, encoder: dict) -> dict:
    if kind == "tabular":
        return {"kind": kind, "columns": ["x"], "encoder": encoder}
    return {"kind": kind, "column": "x", "encoder": encoder}


@pytest.mark.parametrize(("cfg_cls", "kind"), _kind_cases())
def test_load_config_names_the_encoder_key_path(cfg_cls, kind):
    good = {"name": component_name(cfg_cls), **base(cfg_cls)} if "name" in cfg_cls.model_fields else base(cfg_cls)
    config = load_config({"target": "y", "modalities": {"m": _modality_block(kind, good)}})
    assert type(config.modalities["m"].encoder) is cfg_cls
    with pytest.raises(ConfigError) as info:
        load_config({"target": "y", "modalities": {"m": _modality_block(kind, {**good, "bogus": 1})}})
    assert any(p.startswith("modalities.m.encoder") and "bogus" in p for p in info.value.problems), info.value.problems


def test_every_encoder_in_the_schema_is_registered_for_its_kind():
    """The config unions (what users can write) and the registry (what can be built) agree, and
    each config's ``kinds`` lists exactly the modality kinds that accept it."""
    in_schema: dict[type, set[str]] = {}
    for modality_cls in typing.get_args(typing.get_args(AnyModality)[0]):
        kind = _modality_kind(modality_cls)
        annotation = modality_cls.model_fields["encoder"].annotation
        members = typing.get_args(annotation) or (annotation,)
        for cfg_cls in members:
            in_schema.setdefault(cfg_cls, set()).add(kind)
    registered = {cfg_cls: set(cfg_cls.kinds) for cfg_cls, _ in ENCODERS.items()}
    assert in_schema == registered


# -- pretrained components from local files ---------------------------------------------------
@pytest.fixture(scope="module")
def resnet18_state(tmp_path_factory):
    torch.manual_seed(1)
    state = torchvision.models.resnet18(weights=None).state_dict()
    folder = tmp_path_factory.mktemp("resnet")
    torch.save(state, folder / "resnet18.pth")
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "resnet18.safetensors"))
    return state, folder


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_resnet_loads_local_weights(resnet18_state, suffix):
    state, folder = resnet18_state
    encoder = ENCODERS.build(ResNetConfig(weights=folder / f"resnet18{suffix}", dim=8), kind="image", in_channels=3)
    assert encoder.pretrained
    assert torch.equal(encoder.stem[0].weight, state["conv1.weight"])
    assert torch.equal(encoder.layers[3][1].conv2.weight, state["layer4.1.conv2.weight"])
    assert torch.equal(encoder.stem[1].running_mean, state["bn1.running_mean"])


def test_resnet_adapts_rgb_weights_to_one_channel(resnet18_state):
    state, folder = resnet18_state
    encoder = ENCODERS.build(ResNetConfig(weights=folder / "resnet18.pth"), kind="image", in_channels=1)
    torch.testing.assert_close(encoder.stem[0].weight, state["conv1.weight"].sum(dim=1, keepdim=True))
    out = encoder(x=torch.rand(2, 1, 32, 32))
    assert out.pooled.shape == (2, 512) and encoder.output_dim == 512


def test_a_weights_file_that_cannot_be_read_is_an_error_of_the_weights_setting(tmp_path):
    """Missing, a folder, or not a state dict: each names the setting (its config key, once the
    model builder adds the modality's path) and says what is wrong, without a reader's internals."""
    with pytest.raises(EncoderSettingError, match="^weights: weights file not found: .*nope.pth"):
        ENCODERS.build(ResNetConfig(weights=tmp_path / "nope.pth"), kind="image", in_channels=3)
    with pytest.raises(EncoderSettingError, match="^weights: .* is a folder; give the weights file itself"):
        ENCODERS.build(ResNetConfig(weights=tmp_path), kind="image", in_channels=3)
    text = tmp_path / "notes.pth"
    text.write_text("these are not weights\n")
    with pytest.raises(EncoderSettingError, match="^weights: .*notes.pth.*not a PyTorch state-dict file \\(its bytes do "
                                                  "not read as one\\)$"):
        ENCODERS.build(TimmConfig(arch="resnet18", weights=text), kind="image", in_channels=3)


def test_weights_of_another_architecture_with_shared_names_name_the_tensors_that_differ(resnet18_state,
                                                                                        timm_resnet18_file):
    """Names both architectures use (bn1) with other shapes: refused with the tensors named, not
    with load_state_dict's RuntimeError."""
    _, path = timm_resnet18_file
    with pytest.raises(EncoderSettingError, match="does not fit timm 'efficientnet_lite0': [0-9]+ tensors differ in "
                                                  "shape: bn1.weight \\[64\\] in the file, \\[32\\] in the model"):
        ENCODERS.build(TimmConfig(arch="efficientnet_lite0", weights=path), kind="image", in_channels=1)
    with pytest.raises(EncoderSettingError, match="does not fit torchvision resnet50: [0-9]+ tensors differ in shape: "
                                                  "layer1.0.conv1.weight \\[64, 64, 3, 3\\] in the file, "
                                                  "\\[64, 64, 1, 1\\] in the model; .* \\(and [0-9]+ more\\)"):
        ENCODERS.build(ResNetConfig(depth=50, weights=resnet18_state[1] / "resnet18.pth"), kind="image", in_channels=3)


def test_resnet_refuses_weights_that_do_not_fit(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"backbone.conv.weight": torch.zeros(4, 3, 3, 3)}, path)
    with pytest.raises(ValueError, match="does not fit"):
        ENCODERS.build(ResNetConfig(weights=path), kind="image", in_channels=3)


@pytest.fixture(scope="module")
def timm_resnet18_file(tmp_path_factory):
    import timm

    torch.manual_seed(2)
    state = timm.create_model("resnet18", pretrained=False).state_dict()  # with its classifier 'fc'
    path = tmp_path_factory.mktemp("timm") / "resnet18.pth"
    torch.save(state, path)
    return state, path


def test_timm_loads_local_weights_without_the_classifier(timm_resnet18_file):
    state, path = timm_resnet18_file
    encoder = ENCODERS.build(TimmConfig(arch="resnet18", weights=path, dim=8), kind="image", in_channels=3)
    assert encoder.pretrained
    assert torch.equal(encoder.backbone.conv1.weight, state["conv1.weight"])
    assert torch.equal(encoder.backbone.layer4[1].bn2.weight, state["layer4.1.bn2.weight"])
    assert encoder.data_config["input_size"] == (3, 224, 224)
    assert encoder(x=torch.rand(2, 3, 32, 32)).pooled.shape == (2, 8)


def test_timm_adapts_rgb_weights_to_one_channel(timm_resnet18_file):
    state, path = timm_resnet18_file
    encoder = ENCODERS.build(TimmConfig(arch="resnet18", weights=path), kind="image", in_channels=1)
    torch.testing.assert_close(encoder.backbone.conv1.weight, state["conv1.weight"].sum(dim=1, keepdim=True))


def test_timm_refuses_weights_of_another_architecture(resnet18_state, tmp_path):
    path = tmp_path / "partial.pth"
    torch.save({k: v for k, v in resnet18_state[0].items() if not k.startswith("layer4")}, path)
    with pytest.raises(ValueError, match="does not fit timm 'resnet18'"):
        ENCODERS.build(TimmConfig(arch="resnet18", weights=path), kind="image", in_channels=3)


def test_timm_unknown_architecture_is_a_value_error():
    with pytest.raises(ValueError, match="no_such_net"):
        ENCODERS.build(TimmConfig(arch="no_such_net"), kind="image", in_channels=3)


@pytest.mark.parametrize("restore", [False, True])
def test_an_hf_folder_s_own_code_is_never_run(tmp_path, monkeypatch, restore):
    """transformers asks at a terminal whether to run a folder's own code (``auto_map``) when
    ``trust_remote_code`` is left unset: one "y" (or a script feeding stdin) ran it."""
    from helpers_models import save_custom_code_model

    from polymodal.models.encoders.text import HfEncoder

    asked = []
    monkeypatch.setattr("builtins.input", lambda prompt="": asked.append(prompt) or "y")
    folder = save_custom_code_model(tmp_path / "custom", marker := tmp_path / "ran")
    with pytest.raises(ValueError, match="custom code"):
        HfEncoder(folder, restore=restore)
    assert asked == [] and not marker.exists()


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    return save_tiny_bert(tmp_path_factory.mktemp("bert"))


def _hf_inputs() -> dict[str, torch.Tensor]:
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]], dtype=torch.bool)
    ids = torch.tensor([[2, 5, 7, 8, 6, 3], [2, 9, 3, 0, 0, 0]])
    return {"x": ids, "mask": mask}


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_hf_encoder_from_a_local_folder(tiny_bert, pooling):
    from transformers import BertModel

    encoder = ENCODERS.build(HfConfig(path=tiny_bert, pooling=pooling), kind="text", **CONTEXTS["text"]).eval()
    saved = BertModel.from_pretrained(str(tiny_bert))
    assert encoder.pretrained and encoder.output_dim == 32
    assert torch.equal(encoder.model.embeddings.word_embeddings.weight, saved.embeddings.word_embeddings.weight)
    inputs = _hf_inputs()
    with torch.no_grad():
        out = encoder(**inputs)
        hidden = saved.eval()(input_ids=inputs["x"], attention_mask=inputs["mask"].long()).last_hidden_state
    assert out.pooled.shape == (2, 32) and out.tokens.shape == (2, 6, 32)
    assert torch.equal(out.token_mask, inputs["mask"])
    mask = inputs["mask"]
    expected = hidden[:, 0] if pooling == "cls" else (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    torch.testing.assert_close(out.pooled, expected, rtol=1e-4, atol=1e-5)
    with torch.no_grad():  # padding does not change the shorter text's encoding
        short = encoder(x=inputs["x"][1:, :3], mask=inputs["mask"][1:, :3])
    torch.testing.assert_close(short.pooled[0], out.pooled[1], rtol=1e-4, atol=1e-5)


def test_hf_encoder_backward_reaches_every_parameter(tiny_bert):
    encoder = ENCODERS.build(HfConfig(path=tiny_bert), kind="text", **CONTEXTS["text"]).train()
    out = encoder(**_hf_inputs())
    random_projection_loss(out.pooled, out.tokens).backward()
    assert_all_parameters_get_gradients(encoder)


def test_hf_encoder_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="model folder not found"):
        ENCODERS.build(HfConfig(path=tmp_path / "nope"), kind="text", **CONTEXTS["text"])


VOCAB = ["<pad>", "<unk>", "cat", "dog", "fish"]
VECTORS = {"zebra": [9.0, 9.0, 9.0, 9.0], "cat": [0.5, -1.0, 2.0, 0.25], "dog": [1.5, 0.0, -0.5, 3.0]}


@pytest.mark.parametrize("header", [False, True])
def test_embedding_bag_initialised_from_word_vectors(tmp_path, header):
    path = save_glove(tmp_path / "vectors.txt", VECTORS, header=header)
    encoder = ENCODERS.build(EmbeddingBagConfig(dim=4, vectors=path), kind="text", vocab_size=len(VOCAB), pad_id=0,
                             vocab=VOCAB)
    weight = encoder.embedding.weight
    assert torch.equal(weight[2], torch.tensor(VECTORS["cat"]))
    assert torch.equal(weight[3], torch.tensor(VECTORS["dog"]))
    assert encoder.pretrained and encoder.coverage == pytest.approx(2 / 5)
    out = encoder(x=torch.tensor([[2, 3, 0]]), mask=torch.tensor([[True, True, False]]))
    expected = (torch.tensor(VECTORS["cat"]) + torch.tensor(VECTORS["dog"])) / 2
    torch.testing.assert_close(out.pooled[0], expected)


def test_embedding_bag_word_vectors_frozen_when_asked(tmp_path):
    path = save_glove(tmp_path / "vectors.txt", VECTORS)
    encoder = ENCODERS.build(EmbeddingBagConfig(dim=4, vectors=path, train_vectors=False), kind="text",
                             vocab_size=len(VOCAB), pad_id=0, vocab=VOCAB)
    assert not encoder.embedding.weight.requires_grad
    encoder.freeze(1)  # its one block trains, but the vectors asked to stay fixed do
    assert not encoder.embedding.weight.requires_grad


def test_embedding_bag_word_vectors_of_another_width(tmp_path):
    path = save_glove(tmp_path / "vectors.txt", VECTORS)
    with pytest.raises(ValueError, match="4-d; set encoder.dim to 4"):
        ENCODERS.build(EmbeddingBagConfig(dim=8, vectors=path), kind="text", vocab_size=len(VOCAB), pad_id=0,
                       vocab=VOCAB)


def test_embedding_bag_word_vectors_need_a_word_vocabulary(tmp_path):
    path = save_glove(tmp_path / "vectors.txt", VECTORS)
    with pytest.raises(ValueError, match="tokenizer 'word'"):
        ENCODERS.build(EmbeddingBagConfig(dim=4, vectors=path), kind="text", vocab_size=len(VOCAB), pad_id=0,
                       vocab=None)


def _dim_heads_cases() -> list:
    return [pytest.param(cfg_cls, id=cfg_cls.__name__) for cfg_cls, _ in ENCODERS.items()
            if {"dim", "heads"} <= set(cfg_cls.model_fields)]


@pytest.mark.parametrize("cfg_cls", _dim_heads_cases())
def test_config_refuses_dim_not_divisible_by_heads(cfg_cls):
    with pytest.raises(ConfigError, match="heads"):
        validate(cfg_cls, {"dim": 30, "heads": 4})


@pytest.mark.parametrize("n_features", [13, 16, 40])
def test_mel_cnn_flatten_keeps_each_remaining_frequency_bin_apart(n_features):
    from polymodal.config.encoders import MelCnnConfig

    torch.manual_seed(0)
    encoder = ENCODERS.build(MelCnnConfig(channels=[4, 4, 4], dim=8), kind="audio", n_features=n_features, n_frames=20)
    bins = n_features
    for _ in range(3):  # each stage halves frequency, rounding up
        bins = -(-bins // 2)
    assert encoder.token_proj.in_features == 4 * bins  # channels x remaining bins, not channels alone
    out = encoder(torch.randn(2, 20, n_features))
    assert out.pooled.shape == (2, 8) and out.tokens.shape == (2, 3, 8)


def test_an_averaging_image_cnn_keeps_its_weights_as_the_image_grows():
    def weights(size: int, pool: str) -> int:
        cfg = ImageCnnConfig(channels=[8, 16], dim=32, pool=pool)
        encoder = ENCODERS.build(cfg, in_channels=3, size=(size, size))
        out = encoder(torch.randn(2, 3, size, size))
        assert out.pooled.shape == (2, 32) and out.tokens.shape == (2, (-(-size // 4)) ** 2, 32)
        return sum(p.numel() for p in encoder.parameters())

    assert weights(32, "avg") == weights(128, "avg")
    assert weights(128, "flatten") - weights(32, "flatten") == (32 * 32 - 8 * 8) * 16 * 32  # the flattened map's
