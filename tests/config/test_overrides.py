"""``--set KEY=VALUE``: dotted config keys set before validation, values read as YAML 1.2.

The messages checked here are the command line's (``--set KEY``): each test runs as a command
does (:func:`~polymodal.errors.command_line`). In a Python call the same problems name
``overrides 'KEY'`` (``tests/test_python_api.py``).
"""

from __future__ import annotations

import pytest
import yaml
from helpers_models import classification_config

from polymodal.config import load_config
from polymodal.config.overrides import parse_overrides
from polymodal.errors import ConfigError, OptionError, command_line


@pytest.fixture(autouse=True)
def _as_a_command():
    with command_line():
        yield


def test_values_are_read_as_yaml():
    assert parse_overrides(["train.epochs=1", "train.deterministic=true", "fusion.name=late", "head.hidden=[16, 8]",
                            "train.early_stopping=null", "data.cache_dir="]) == {
        "train.epochs": 1, "train.deterministic": True, "fusion.name": "late", "head.hidden": [16, 8],
        "train.early_stopping": None, "data.cache_dir": None}
    assert parse_overrides(["train.seed=on"]) == {"train.seed": "on"}  # YAML 1.2: 'on' is text


@pytest.mark.parametrize(("item", "fragment"), [("train.epochs", "expected KEY=VALUE"), ("=1", "expected KEY=VALUE"),
                                                ("train..epochs=1", "expected KEY=VALUE"),
                                                ("head.hidden=[1, 2", "--set head.hidden: the value")])
def test_malformed_items_are_option_errors(item, fragment):
    with pytest.raises(OptionError, match=fragment.replace("[", r"\[")):
        parse_overrides([item])


def test_a_file_with_overrides_keeps_its_relative_paths_and_validates_the_result(tmp_path):
    spec = classification_config(epochs=5)
    spec["data"] = {"cache_dir": "cache"}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    config = load_config(tmp_path / "c.yaml", overrides={"train.epochs": 1, "train.lr": 0.5})
    assert (config.train.epochs, config.train.lr) == (1, 0.5)
    assert config.data.cache_dir == (tmp_path / "cache").resolve()  # still the file's folder
    with pytest.raises(ConfigError, match="train.epochs"):
        load_config(tmp_path / "c.yaml", overrides={"train.epochs": 0})  # the schema's range applies
    with pytest.raises(ConfigError, match="--set train.epochs.x: 'epochs' is not a section"):
        load_config(tmp_path / "c.yaml", overrides={"train.epochs.x": 1})


def test_a_dict_is_edited_as_a_copy():
    spec = classification_config(epochs=5)
    assert load_config(spec, overrides={"train.epochs": 2}).train.epochs == 2
    assert spec["train"]["epochs"] == 5


def test_setting_a_component_name_starts_that_component_from_its_defaults(tmp_path):
    spec = classification_config()
    spec["fusion"] = {"name": "attention", "dim": 128}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    late = load_config(tmp_path / "c.yaml", overrides=parse_overrides(["fusion.name=late"]))
    assert late.fusion.name == "late"  # attention's dim belongs to attention: not carried over
    same = load_config(tmp_path / "c.yaml", overrides=parse_overrides(["fusion.name=attention", "fusion.heads=2"]))
    assert (same.fusion.dim, same.fusion.heads) == (128, 2)  # the same component keeps its settings


def test_a_key_inside_a_section_left_at_its_default_component_adjusts_that_component():
    spec = {"target": "label", "modalities": {"image": {"kind": "image", "column": "image"},
                                              "clip": {"kind": "video", "column": "clip"}}}
    config = load_config(spec, overrides={"head.dropout": 0.5, "modalities.image.encoder.dim": 32,
                                          "modalities.clip.encoder.frame.channels": [4], "fusion.heads": 2})
    assert (config.head.name, config.head.dropout) == ("mlp", 0.5)  # the default head, adjusted
    assert (config.modalities["image"].encoder.name, config.modalities["image"].encoder.dim) == ("cnn", 32)
    assert config.modalities["clip"].encoder.frame.channels == [4]
    assert (config.fusion.name, config.fusion.heads) == ("attention", 2)
    assert "head" not in spec and "encoder" not in spec["modalities"]["image"]  # the caller's dict untouched
    rnn = load_config(spec, overrides={"head.name": "rnn", "head.dropout": 0.3})
    assert (rnn.head.name, rnn.head.dropout) == ("rnn", 0.3)
    with pytest.raises(ConfigError, match=r"--set head.dropuot: unknown key 'dropuot' \(did you mean 'dropout'"):
        load_config(spec, overrides={"head.dropuot": 0.5})


def test_a_key_given_again_counts_in_its_last_place():
    overrides = parse_overrides(["head.hidden.0=4", "head.hidden=[8]", "head.hidden.0=5"])
    assert list(overrides.items()) == [("head.hidden", [8]), ("head.hidden.0", 5)]
    assert load_config(classification_config(), overrides=overrides).head.hidden == [5]


def test_problems_at_keys_set_on_the_command_line_say_so(tmp_path):
    """``--set train.epoch=1`` is not the file's mistake: the message must not send the user to it."""
    spec = classification_config(epochs=5)
    spec["train"]["lr"] = -1.0  # the file's own mistake stays the file's
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "c.yaml", overrides={"train.epoch": 1, "train.batch_size": 0})
    problems = sorted(info.value.problems)
    assert problems[0].startswith("--set train.batch_size: ") and problems[1].startswith("--set train.epoch: unknown key")
    assert problems[2].startswith("train.lr: ") and info.value.source == str(tmp_path / "c.yaml")
    with pytest.raises(ConfigError, match=f"^Invalid config in {tmp_path / 'c.yaml'} \\(3 problem"):
        load_config(tmp_path / "c.yaml", overrides={"train.epoch": 1, "train.batch_size": 0})  # the file's too
    with pytest.raises(ConfigError, match="^Invalid --set values \\(1 problem\\(s\\)\\):\n  - --set train.epochs: "):
        load_config(spec | {"train": {"epochs": 1}}, overrides={"train.epochs": "abc"})
    (tmp_path / "fine.yaml").write_text(yaml.safe_dump(classification_config()), encoding="utf-8")
    with pytest.raises(ConfigError, match=f"^Invalid --set values for {tmp_path / 'fine.yaml'} \\(1 problem"):
        load_config(tmp_path / "fine.yaml", overrides={"train.epoch": 1})  # the file is not at fault: not said to be
    with pytest.raises(ConfigError, match=f"^Invalid --set values for {tmp_path / 'fine.yaml'} \\(1 problem"):
        load_config(tmp_path / "fine.yaml", overrides={"train.epochs.x": 1})  # found while setting, not validating


def test_a_check_of_several_keys_names_the_set_values_it_read(tmp_path):
    """``unfreeze`` needs ``freeze`` set: a problem found at their section, of the file's freeze: 3
    changed by ``--set ...freeze=none``, was blamed on the file alone."""
    spec = classification_config()
    spec["modalities"]["img"]["encoder"]["freeze"] = 1
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "c.yaml", overrides={"modalities.img.encoder.freeze": "none",
                                                   "modalities.img.encoder.unfreeze": {"start": 1}, "train.epochs": 2})
    (problem,) = info.value.problems
    assert problem.startswith("modalities.img.encoder: unfreeze gradually trains frozen blocks")
    assert problem.endswith("(with --set modalities.img.encoder.freeze, modalities.img.encoder.unfreeze)")


def test_a_section_a_set_key_creates_is_named_by_that_key(tmp_path):
    """``--set trian.epochs=1`` made a section ``trian``, reported as the file's ``trian: unknown key``."""
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(classification_config()), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "c.yaml", overrides={"trian.epochs": 1, "train.early_stoping.patience": 2})
    assert sorted(p.split(";")[0] for p in info.value.problems) == [
        "--set train.early_stoping.patience: unknown key 'early_stoping' (did you mean 'early_stopping'?)",
        "--set trian.epochs: unknown key 'trian' (did you mean 'train'?)"]
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "c.yaml", overrides={"align.dim": 16})
    assert info.value.problems == ["--set align.dim: align.objective: required key is missing; must be one of "
                                   "['contrastive', 'triplet', 'cca', 'vae'] (the config has no section align: --set "
                                   "made it)"]


@pytest.mark.parametrize("key", ["name", "kind", "method"])
def test_a_top_level_key_named_like_a_selector_is_an_unknown_key_of_the_set(tmp_path, key):
    """``--set name=x`` wrote a section '' and was reported as the file's ``<root>: unknown key ''``."""
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(classification_config()), encoding="utf-8")
    with pytest.raises(ConfigError, match="^Invalid --set values for .*c.yaml \\(1 problem") as info:
        load_config(tmp_path / "c.yaml", overrides={key: "x"})
    assert info.value.problems[0].startswith(f"--set {key}: unknown key '{key}'")


def test_a_key_inside_a_modality_the_config_lacks_names_the_one_meant(tmp_path):
    """``--set modalities.imag.preprocess.size=32`` silently made a modality 'imag', reported as the
    file's ``modalities.imag.kind: required key is missing``."""
    spec = classification_config()
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "c.yaml", overrides={"modalities.imgg.preprocess.size": 32})
    assert str(info.value).startswith(f"Invalid --set values for {tmp_path / 'c.yaml'} (1 problem(s))")
    (problem,) = info.value.problems
    assert problem.startswith("--set modalities.imgg.preprocess.size: the config has no modality 'imgg' (did you mean "
                              f"'img'?); it has {sorted(spec['modalities'])}; a new modality is given whole (--set "
                              "modalities.imgg={kind: ..., column: ...}), and 'imgg' lacks: modalities.imgg.kind: "
                              "required key is missing")
    added = load_config(tmp_path / "c.yaml", overrides={"modalities.img2.kind": "image",
                                                        "modalities.img2.column": "image"})
    assert added.modalities["img2"].column == "image"  # a new modality set key by key is still possible


def test_a_problem_inside_a_section_a_new_selector_replaced_says_why(tmp_path):
    """``--set modalities.img.kind=text`` dropped the file's ``column`` with the rest of the section,
    and the message blamed the file: ``modalities.img.column: required key is missing``."""
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(classification_config()), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "c.yaml", overrides={"modalities.img.kind": "text"})
    assert info.value.problems == ["--set modalities.img.kind=text: modalities.img.column: required key is missing; "
                                   "a new kind starts modalities.img from its defaults (the file's settings of kind "
                                   "'image' do not carry over): set the keys it needs with --set too"]
    assert str(info.value).startswith("Invalid --set values for ")
    config = load_config(tmp_path / "c.yaml", overrides={"modalities.img.kind": "text",
                                                         "modalities.img.column": "image"})
    assert config.modalities["img"].kind == "text"


def test_null_removes_a_modality_for_a_single_modality_baseline():
    spec = classification_config()
    names = list(spec["modalities"])
    kept = load_config(spec, overrides=parse_overrides([f"modalities.{names[0]}=null"]))
    assert list(kept.modalities) == names[1:]
    assert list(load_config(spec).modalities) == names  # the given config keeps all of them
    with pytest.raises(ConfigError, match=rf"--set modalities.{names[0]}x: null removes a modality, but the config has "
                                          rf"no modality '{names[0]}x' \(did you mean '{names[0]}'\?\); it has"):
        load_config(spec, overrides={f"modalities.{names[0]}x": None})
    spec["train"]["modality_dropout"] = {n: 0.3 for n in names}  # per modality: the removed one's entry goes too
    assert load_config(spec, overrides={f"modalities.{names[0]}": None}).train.modality_dropout == {names[1]: 0.3}
    with pytest.raises(ConfigError, match="modalities"):  # every one removed: the schema's own error
        load_config(spec, overrides={f"modalities.{n}": None for n in names})


def test_a_target_column_set_twice_on_the_command_line_is_refused_naming_it():
    spec = {**classification_config(), "task": "regression", "target": "y"}
    with pytest.raises(ConfigError) as info:
        load_config(spec, overrides=parse_overrides(["target=[load, load]"]))
    assert info.value.problems == ["--set target: lists column(s) ['load'] more than once; each target column is one "
                                   "output and may appear once; got ['load', 'load']"]
