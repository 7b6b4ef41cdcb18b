"""The ``frame_cnn`` video encoder beyond the registry contract: padded frames never leak into the
output, the frame encoder's own ``freeze`` applies, and any image encoder can run per frame."""

from __future__ import annotations

import pytest
import torch

import polymodal.models  # noqa: F401 - fills the registries
from polymodal.config.video import FrameCnnConfig
from polymodal.models.registry import ENCODERS

CONTEXT = {"in_channels": 1, "size": (16, 16), "frames": 4}


def build(**cfg: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return ENCODERS.build(FrameCnnConfig(frame={"name": "cnn", "channels": [4], "dim": 8}, dim=8, **cfg),
                          kind="video", **CONTEXT).eval()


def test_padded_frames_do_not_change_the_output():
    mask = torch.tensor([[True, True, False, False], [True, True, True, True]])
    x = torch.rand(2, 4, 1, 16, 16)
    noisy = x.clone()
    noisy[0, 2:] = torch.rand(2, 1, 16, 16) * 100  # garbage where the clip has no frames
    for temporal in ("mean", "gru", "transformer"):
        encoder = build(temporal=temporal, heads=2)
        a, b = encoder(x, mask), encoder(noisy, mask)
        torch.testing.assert_close(a.pooled, b.pooled)  # the GRU packs its sequences, the others mask
        assert a.tokens.shape == (2, 4, encoder.output_dim)
        assert not a.tokens[0, 2:].any() and a.token_mask.tolist() == mask.tolist()


def test_padded_frames_stay_out_of_the_frame_encoders_batch_statistics_in_training():
    mask = torch.tensor([[True, False, False, False], [True, True, True, False]])
    x = torch.rand(2, 4, 1, 16, 16)
    noisy = x.clone()
    noisy[~mask] = torch.rand(int((~mask).sum()), 1, 16, 16) * 100
    outputs, stats = [], []
    for clip in (x, noisy):
        encoder = build(temporal="mean").train()
        outputs.append(encoder(clip, mask).pooled)
        norms = [m for m in encoder.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        assert norms  # the frame CNN normalises with batch statistics
        stats.append(torch.cat([torch.cat([m.running_mean, m.running_var]) for m in norms]))
    torch.testing.assert_close(outputs[0], outputs[1])
    torch.testing.assert_close(stats[0], stats[1])
    one = build(temporal="mean").train()  # one real frame in the whole batch: running statistics
    single = one(x[:1], mask[:1]).pooled
    assert torch.isfinite(single).all()


def test_temporal_models_see_frame_order():
    x = torch.rand(1, 4, 1, 16, 16)
    reversed_clip = x.flip(1)
    mean, gru = build(temporal="mean"), build(temporal="gru")
    torch.testing.assert_close(mean(x).pooled, mean(reversed_clip).pooled)  # order-free by design
    assert not torch.allclose(gru(x).pooled, gru(reversed_clip).pooled)


def test_frame_encoder_freeze_applies_and_any_image_encoder_works():
    frozen = ENCODERS.build(FrameCnnConfig(frame={"name": "cnn", "channels": [4], "dim": 8, "freeze": "all"}, dim=8),
                            kind="video", **CONTEXT)
    assert not any(p.requires_grad for p in frozen.frame.parameters())
    assert all(p.requires_grad for p in frozen.temporal.parameters())
    resnet = ENCODERS.build(FrameCnnConfig(frame={"name": "resnet", "dim": 8}, temporal="mean", dim=None),
                            kind="video", **CONTEXT)
    out = resnet(torch.rand(2, 4, 1, 16, 16))
    assert out.pooled.shape == (2, 8) and resnet.output_dim == 8


def video_config(encoder: dict, **preprocess: object) -> object:
    """A config with one video modality; a preprocess field given as None is left unset."""
    from polymodal.config import load_config

    preprocess = {k: v for k, v in {"size": 16, "color": "gray", **preprocess}.items() if v is not None}
    return load_config({"task": "classification", "target": "y", "modalities": {"v": {
        "kind": "video", "column": "v", "preprocess": preprocess, "encoder": encoder}}})


def test_an_image_encoder_on_a_video_is_frame_cnn_with_temporal_mean():
    from polymodal.config import config_to_dict

    for frame in ({"name": "cnn", "channels": [4], "dim": 8}, {"name": "resnet", "dim": 8}):
        config = video_config(frame)
        cfg = config.modalities["v"].encoder
        assert isinstance(cfg, FrameCnnConfig) and cfg.temporal == "mean" and cfg.dim is None
        stored = config_to_dict(config)["modalities"]["v"]["encoder"]
        assert stored["name"] == "frame_cnn" and stored["frame"]["name"] == frame["name"]
        assert stored["frame"]["dim"] == 8
        torch.manual_seed(0)
        encoder = ENCODERS.build(cfg, kind="video", **CONTEXT).eval()
        mask = torch.tensor([[True, True, True, False]])
        out = encoder(torch.rand(1, 4, 1, 16, 16), mask)
        assert out.pooled.shape == (1, 8) and encoder.output_dim == 8 and torch.isfinite(out.pooled).all()
        per_frame = encoder.frame_vectors(torch.rand(3, 1, 16, 16))
        assert per_frame.shape == (3, 8)  # the image encoder's own width: no projection


def test_a_video_encoder_name_that_is_no_image_encoder_is_refused():
    import pytest

    from polymodal.errors import ConfigError

    with pytest.raises(ConfigError, match=r"modalities\.v\.encoder: encoder 'rnn' is neither.*'frame_cnn'.*cnn, "
                                          r"resnet, timm.*got name: 'rnn'"):
        video_config({"name": "rnn"})
    with pytest.raises(ConfigError, match=r"modalities\.v\.encoder\.dpeth: unknown key 'dpeth'.*allowed keys: .*depth"):
        video_config({"name": "resnet", "dpeth": 18})


def problems_of(encoder: dict) -> list[str]:
    import pytest

    from polymodal.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        video_config(encoder)
    return info.value.problems


def test_each_problem_of_the_shorthand_is_reported_under_its_own_key():
    assert problems_of({"name": "cnn", "kernal": 3, "dim": 0, "channels": [4, 0]}) == [
        "modalities.v.encoder.dim: Input should be greater than 0 (got 0)",
        "modalities.v.encoder.channels.1: Input should be greater than 0 (got 0)",
        "modalities.v.encoder.kernal: unknown key 'kernal' (did you mean 'kernel'?); allowed keys: batch_norm, cache, "
        "channels, convs_per_stage, dim, dropout, freeze, kernel, name, pool, unfreeze"]
    # a rule of the image encoder names its key, relative to the encoder, with no "<root>", even a key the
    # shorthand does not write (freeze)
    assert problems_of({"name": "resnet", "cache": True}) == [
        "modalities.v.encoder.freeze: must be all for cache: true, which stores the outputs of a frozen encoder "
        "(without unfreeze or lora either); set freeze: all or drop cache (got freeze: 'none', unfreeze: None, "
        "lora: None)"]


def test_frame_cnn_keys_on_the_shorthand_point_to_the_explicit_form():
    assert problems_of({"name": "resnet", "temporal": "gru"}) == [
        "modalities.v.encoder.temporal: unknown key 'temporal' for image encoder 'resnet', which runs on every frame "
        "with temporal: mean; temporal is a frame_cnn key: write the explicit form "
        "{name: frame_cnn, frame: {name: resnet, ...}, temporal: gru}"]
    problems = problems_of({"name": "cnn", "layers": 2, "heads": 2, "dpeth": 1})
    assert [p.split(":")[0] for p in problems] == [f"modalities.v.encoder.{key}" for key in ("layers", "heads", "dpeth")]
    assert problems[0].endswith("write the explicit form {name: frame_cnn, frame: {name: cnn, ...}, temporal: gru, "
                                "layers: 2, heads: 2}")


def test_unfreeze_on_a_frame_encoder_is_refused_where_it_is_written():
    assert problems_of({"name": "resnet", "freeze": "none", "unfreeze": {"every": 2}}) == [
        "modalities.v.encoder.unfreeze: gradual unfreezing is scheduled on the whole video encoder, never on its "
        "frame encoder; write the explicit form {name: frame_cnn, frame: {name: resnet, ...}, freeze: none, "
        "unfreeze: {every: 2}}"]
    assert problems_of({"name": "frame_cnn", "frame": {"name": "resnet", "freeze": 1, "unfreeze": {}}}) == [
        "modalities.v.encoder.frame.unfreeze: gradual unfreezing is scheduled on the whole video encoder, never on "
        "its frame encoder; write unfreeze (and freeze) on frame_cnn itself; got frame.unfreeze: "
        "{start: 1, every: 1, blocks: 1}"]
    explicit = video_config({"name": "frame_cnn", "frame": {"name": "resnet", "dim": 8}, "freeze": 1,
                             "unfreeze": {"every": 2}}).modalities["v"].encoder
    assert explicit.unfreeze.every == 2 and explicit.frame.unfreeze is None


def test_cache_on_the_shorthand_caches_the_video_encoder():
    from polymodal.config import config_to_dict, load_config

    shorthand = video_config({"name": "resnet", "freeze": "all", "cache": True})
    cfg = shorthand.modalities["v"].encoder
    # the feature cache (attach_cached_features, check_feature_cache) reads the modality's encoder
    assert cfg.cache and cfg.freeze == "all" and not cfg.frame.cache and cfg.frame.freeze == "all"
    stored = config_to_dict(shorthand)
    assert stored["modalities"]["v"]["encoder"]["cache"] is True
    assert stored["modalities"]["v"]["encoder"]["frame"]["cache"] is False
    assert load_config(stored).modalities["v"].encoder == cfg
    # the stored form from before (frame.cache, nothing of frame_cnn's own to train) means the same
    written = video_config({"name": "frame_cnn", "temporal": "mean", "dim": None,
                            "frame": {"name": "resnet", "freeze": "all", "cache": True}})
    assert written.modalities["v"].encoder == cfg
    encoder = ENCODERS.build(cfg, kind="video", **CONTEXT)
    encoder.freeze(cfg.freeze)  # as MultimodalNet does
    assert not any(p.requires_grad for p in encoder.parameters())


def test_cache_refused_on_frame_cnn_names_frame_cnn_s_own_freeze_not_the_frame_s():
    """freeze: all written on the frame encoder does not freeze the temporal model; the refusal
    points at the key it means (modalities.v.encoder.freeze) and says what is cacheable."""
    problems = problems_of({"name": "frame_cnn", "cache": True, "temporal": "gru", "dim": 8,
                            "frame": {"name": "cnn", "channels": [4], "dim": 8, "freeze": "all"}})
    assert problems == [
        "modalities.v.encoder.freeze: must be all, this key (frame_cnn's own freeze, not frame.freeze), for cache: "
        "true, which stores the clip embeddings of the whole video encoder: the frame encoder and the temporal model "
        "(temporal: gru, dim: 8: weights of its own); frame.freeze: all freezes the frame encoder only. Set freeze: "
        "all beside cache (its temporal model then keeps its initial weights); or, to train the temporal model on "
        "cached per-frame vectors, write cache: true in frame (beside frame.freeze: all) instead of here (got "
        "freeze: 'none', frame.freeze: 'all')"]
    assert problems_of({"name": "frame_cnn", "cache": True, "freeze": "all", "unfreeze": {"every": 2},
                        "frame": {"name": "cnn", "channels": [4], "dim": 8}}) == [
        "modalities.v.encoder.unfreeze: cache: true stores the clip embeddings of the whole video encoder, which "
        "unfreeze would train again; drop unfreeze or cache (got unfreeze: {start: 1, every: 2, blocks: 1})"]
    cfg = video_config({"name": "frame_cnn", "cache": True, "freeze": "all", "temporal": "gru", "dim": 8,
                        "frame": {"name": "cnn", "channels": [4], "dim": 8}}).modalities["v"].encoder
    assert cfg.cache and cfg.freeze == "all"  # what the message asks for is accepted


FROZEN_FRAME = {"name": "cnn", "channels": [4], "dim": 8, "freeze": "all", "cache": True}


def test_frame_cache_under_a_trainable_temporal_model_caches_the_frame_vectors():
    """frame.cache beside a temporal model that trains: the frame encoder's per-frame vectors are
    cached (cached_stage), frame_cnn's own cache stays off, and nothing else is rewritten."""
    for extra in ({"temporal": "gru", "dim": 8}, {"temporal": "transformer", "dim": 8, "heads": 2, "freeze": 2},
                  {"temporal": "mean", "dim": 4}):
        cfg = video_config({"name": "frame_cnn", "frame": FROZEN_FRAME, **extra}).modalities["v"].encoder
        assert cfg.cached_stage() == ("frame", cfg.frame) and cfg.frame.cache and not cfg.cache, extra
        assert cfg.caches_features() and cfg.freeze == extra.get("freeze", "none")


def test_frame_cache_beside_a_cached_frame_cnn_is_the_clip_cache():
    """cache: true on a wholly frozen frame_cnn stores the clip embeddings, which hold what the frame
    vectors would give: frame.cache beside it is dropped, never a second cache."""
    cfg = video_config({"name": "frame_cnn", "temporal": "gru", "dim": 8, "freeze": "all", "cache": True,
                        "frame": FROZEN_FRAME}).modalities["v"].encoder
    assert cfg.cache and not cfg.frame.cache and cfg.cached_stage() is None


def test_frame_cache_is_refused_where_the_frame_encoder_or_nothing_would_train():
    # the frame encoder itself must be frozen: the refusal names frame.freeze
    assert problems_of({"name": "frame_cnn", "temporal": "gru", "dim": 8,
                        "frame": {"name": "cnn", "dim": 8, "cache": True}}) == [
        "modalities.v.encoder.frame.freeze: must be all for cache: true, which stores the outputs of a frozen "
        "encoder (without unfreeze or lora either); set freeze: all or drop cache (got freeze: 'none', unfreeze: "
        "None, lora: None)"]
    assert problems_of({"name": "frame_cnn", "temporal": "gru", "dim": 8, "frame": {
        "name": "timm", "arch": "test_resnet", "freeze": "all", "cache": True, "lora": {"r": 2}}}) == [
        "modalities.v.encoder.frame.cache: true stores the outputs of a frozen encoder; it needs freeze: all without "
        "unfreeze or lora (got freeze: 'all', unfreeze: None, lora: set)"]
    # nothing of frame_cnn's own (temporal: mean, dim: null), and freeze: 1 trains the frame encoder's last block
    assert problems_of({"name": "frame_cnn", "dim": None, "freeze": 1,
                        "frame": {"name": "resnet", "freeze": "all", "cache": True}}) == [
        "modalities.v.encoder.frame.cache: the feature cache stores the outputs of a frozen video encoder, but "
        "frame_cnn trains part of it (freeze: 1, unfreeze: None); drop frame.cache, or set freeze: all without "
        "unfreeze on frame_cnn"]
    # unfreeze reaches the frame encoder as epochs pass
    assert problems_of({"name": "frame_cnn", "temporal": "gru", "dim": 8, "freeze": 1, "unfreeze": {"every": 2},
                        "frame": FROZEN_FRAME}) == [
        "modalities.v.encoder.frame.cache: the frame encoder's cached per-frame vectors need it frozen for good, but "
        "frame_cnn's unfreeze trains its blocks, the frame encoder's too, as epochs pass; drop unfreeze (the "
        "temporal model trains with freeze: none) or frame.cache (got unfreeze: {start: 1, every: 2, blocks: 1})"]
    # freeze: all on frame_cnn freezes the temporal model: nothing would train on the vectors
    assert problems_of({"name": "frame_cnn", "temporal": "gru", "dim": 8, "freeze": "all",
                        "frame": FROZEN_FRAME}) == [
        "modalities.v.encoder.frame.cache: the frame encoder's per-frame vectors are cached for a temporal model "
        "that trains on them, but frame_cnn's freeze: 'all' freezes its temporal model (temporal: gru, dim: 8) "
        "too; set freeze: none on frame_cnn to train it, or write cache: true on frame_cnn to cache the clip "
        "embeddings of the whole frozen video encoder (got freeze: 'all', frame.cache: true)"]
    # freeze: 0 trains no block either
    assert problems_of({"name": "frame_cnn", "temporal": "gru", "dim": 8, "freeze": 0, "frame": FROZEN_FRAME})[0] \
        .startswith("modalities.v.encoder.frame.cache: the frame encoder's per-frame vectors are cached for a "
                    "temporal model that trains on them, but frame_cnn's freeze: 0 freezes its temporal model")
    # with nothing of frame_cnn's own, freeze: 0 is freeze: all: the clip embeddings are cached
    promoted = video_config({"name": "frame_cnn", "dim": None, "freeze": 0,
                             "frame": {"name": "resnet", "freeze": "all", "cache": True}}).modalities["v"].encoder
    assert promoted.cache and promoted.freeze == "all" and promoted.cached_stage() is None


def test_augmentation_is_refused_beside_cached_frame_vectors():
    """The rule the cache keeps (inputs stored once cannot be augmented per epoch) covers a cached
    stage too, and names its key."""
    from polymodal.errors import ConfigError

    staged = {"name": "frame_cnn", "temporal": "gru", "dim": 8, "frame": FROZEN_FRAME}
    with pytest.raises(ConfigError, match=r"modalities\.v: encoder\.frame\.cache stores each input's embedding once, "
                                          r"so it cannot follow preprocess\.augment"):
        video_config(staged, augment={"hflip": True})
    assert video_config(staged).modalities["v"].preprocess.augment is None  # no augmentation: accepted


@pytest.mark.filterwarnings("ignore:modalities.v.encoder.freeze. 1 freezes")  # random weights: a test
def test_a_frozen_frame_stage_that_freeze_n_would_train_is_refused_once_built():
    """freeze: N trains the last N blocks of frame_cnn: within the GRU (one block) the frame encoder
    stays frozen and its vectors cacheable; two blocks reach into it, named under freeze."""
    from polymodal.errors import ConfigError
    from polymodal.models.model import build_encoders

    contexts = {"v": CONTEXT}
    config = video_config({"name": "frame_cnn", "temporal": "gru", "dim": 8, "freeze": 1, "frame": FROZEN_FRAME})
    encoder = build_encoders(config, contexts)["v"]
    assert not any(p.requires_grad for p in encoder.cached_stage().module.parameters())
    assert all(p.requires_grad for p in encoder.temporal.parameters())
    config = video_config({"name": "frame_cnn", "temporal": "gru", "dim": 8, "freeze": 2, "frame": FROZEN_FRAME})
    with pytest.raises(ConfigError) as err:
        build_encoders(config, contexts)
    assert err.value.problems == [
        "modalities.v.encoder.freeze: 2 trains the last blocks of the encoder's 3, 2096 parameters of them in frame, "
        "whose outputs frame.cache stores once; train fewer blocks (freeze: none leaves frame to its own freeze: "
        "all), or drop frame.cache"]


@pytest.mark.parametrize("temporal", ["mean", "gru", "transformer"])
def test_the_temporal_model_on_cached_frame_vectors_gives_the_outputs_of_the_clips(temporal):
    """forward(frame_vectors=..., mask=...) on what the cached stage returns equals forward on the
    clips, short clips (padding) included, in training mode too (the frozen frame encoder runs as
    at inference), and the padding's vectors are stored as zeros."""
    mask = torch.tensor([[True, True, False, False], [True, True, True, True], [True, False, False, False]])
    x = torch.rand(3, 4, 1, 16, 16)
    x[~mask] = 0.0  # as decoded: zero padding
    torch.manual_seed(0)
    encoder = ENCODERS.build(FrameCnnConfig(frame=FROZEN_FRAME, temporal=temporal, dim=8, heads=2), kind="video",
                             **CONTEXT)
    stage = encoder.cached_stage()
    assert stage.module is encoder.frame
    for mode in (False, True):
        encoder.train(mode)
        torch.manual_seed(1)  # the same dropout draws in the temporal model
        with torch.no_grad():
            stored = stage.run(x, mask)
            torch.manual_seed(2)
            cached = encoder(**stored)
            torch.manual_seed(2)
            raw = encoder(x, mask)
        assert set(stored) == {"frame_vectors", "mask"} and stored["frame_vectors"].shape == (3, 4, 8)
        assert not stored["frame_vectors"][~mask].any() and torch.equal(stored["mask"], mask)
        torch.testing.assert_close(cached.pooled, raw.pooled, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(cached.tokens, raw.tokens, rtol=1e-5, atol=1e-6)


def test_a_pretrained_frame_encoder_loads_local_weights_and_brings_its_preprocessing(tmp_path):
    import timm

    torch.manual_seed(3)
    state = timm.create_model("test_resnet", pretrained=False).state_dict()
    torch.save(state, tmp_path / "tiny.pth")
    config = video_config({"name": "timm", "arch": "test_resnet", "weights": str(tmp_path / "tiny.pth")},
                          color="rgb", size=None)
    prep = config.modalities["v"].preprocess
    assert prep.size == 160 and prep.mean == [0.5, 0.5, 0.5]  # timm's data config of test_resnet
    encoder = ENCODERS.build(config.modalities["v"].encoder, kind="video", in_channels=3, size=(32, 32), frames=2)
    assert encoder.pretrained
    assert torch.equal(encoder.frame.backbone.conv1[0].weight, state["conv1.0.weight"])
    assert encoder(torch.rand(1, 2, 3, 32, 32)).pooled.shape == (1, encoder.output_dim)


def test_a_parameter_free_temporal_mean_adds_no_block_to_freeze_or_unfreeze():
    from polymodal.config.video import FrameCnnConfig as Cfg

    frame = {"name": "cnn", "channels": [4, 8], "dim": 8}
    mean = ENCODERS.build(Cfg(frame=frame, temporal="mean", dim=None), kind="video", **CONTEXT)
    projected = ENCODERS.build(Cfg(frame=frame, temporal="mean", dim=4), kind="video", **CONTEXT)
    assert len(projected.blocks()) == len(mean.blocks()) + 1 and len(mean.blocks()) == len(mean.frame.blocks())
    mean.freeze(1)  # the last frame block trains, as freeze: 1 says
    last = mean.frame.blocks()[-1]
    assert all(p.requires_grad for p in last.parameters())
    assert not any(p.requires_grad for b in mean.frame.blocks()[:-1] for p in b.parameters())


def test_freezing_more_frame_encoder_blocks_than_it_has_names_frame_freeze():
    from polymodal.errors import EncoderSettingError

    cfg = FrameCnnConfig(frame={"name": "cnn", "channels": [4], "dim": 8, "freeze": 50}, dim=8)
    with pytest.raises(EncoderSettingError, match=r"^frame\.freeze: 50 trailing blocks requested, but encoder ImageCnn has") as err:
        ENCODERS.build(cfg, kind="video", **CONTEXT)
    assert err.value.key == "frame.freeze"  # build_encoders prefixes modalities.<name>.encoder.
