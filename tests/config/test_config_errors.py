"""ConfigError messages: full key path, what is allowed, what was given; every problem at once."""

from __future__ import annotations

from typing import Any, get_args

import pytest

from polymodal.config import load_config
from polymodal.config.modalities import AnyModality
from polymodal.config.model import AnyFusion
from polymodal.config.preprocess import AudioPreprocess
from polymodal.errors import ConfigError

from .helpers import BASE, with_changes


def config_with(**changes: Any) -> dict[str, Any]:
    """BASE with dotted-path overrides, e.g. ``config_with(**{"train.lr": 0})``."""
    return with_changes(BASE, changes)


def problems_of(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(data)
    # the message lists every problem, so a user sees the same lines as `problems`
    for line in info.value.problems:
        assert line in str(info.value)
    return info.value.problems


def test_base_config_is_valid():
    config = load_config(BASE)
    assert config.modalities["spoken"].preprocess.n_mels == 40
    assert config.modality_names == ["digit_image", "spoken"]


def test_unknown_key_names_path_lists_allowed_keys_and_suggests_closest():
    problems = problems_of(config_with(**{"modalities.spoken.preprocess.n_mel": 64}))
    assert len(problems) == 1
    line = problems[0]
    assert line.startswith("modalities.spoken.preprocess.n_mel:")
    assert "'n_mel'" in line
    assert "did you mean 'n_mels'" in line
    allowed = line.split("allowed keys:")[1]
    assert sorted(k.strip() for k in allowed.split(",")) == sorted(AudioPreprocess.model_fields)


def test_unknown_key_inside_discriminated_encoder_uses_the_users_path():
    problems = problems_of(config_with(**{"modalities.spoken.encoder": {"name": "rnn", "hiden": 64}}))
    assert len(problems) == 1
    assert problems[0].startswith("modalities.spoken.encoder.hiden:")
    assert "'hiden'" in problems[0] and "did you mean 'hidden'" in problems[0]
    assert "rnn." not in problems[0]  # the union tag pydantic inserts is not part of the user's path


def test_wrong_type_names_full_path_and_the_value_given():
    problems = problems_of(config_with(**{"modalities.spoken.preprocess.n_mels": "forty"}))
    assert len(problems) == 1
    assert problems[0].startswith("modalities.spoken.preprocess.n_mels:")
    assert "integer" in problems[0]
    assert "(got 'forty')" in problems[0]


@pytest.mark.parametrize("value", ["some", 2.5])
def test_a_word_or_number_field_given_neither_is_one_problem_naming_both(value):
    problems = problems_of(config_with(**{"modalities.spoken.encoder": {"name": "mel_cnn", "freeze": value}}))
    assert problems == [f"modalities.spoken.encoder.freeze: Input should be 'none' or 'all', or an integer "
                        f"(got {value!r})"]


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("modalities.spoken.preprocess.n_mels", 0, "greater than 0"),
        ("modalities.spoken.preprocess.frame_ms", 500, "less than or equal to 200"),
        ("train.early_stopping.patience", 0, "greater than 0"),
        ("fusion", {"name": "attention", "dim": -1}, "greater than 0"),
        ("task", "multi", "'classification', 'multilabel', 'regression', 'retrieval' or 'anomaly'"),
    ],
)
def test_out_of_range_value_names_path_allowed_range_and_value(key, value, allowed):
    problems = problems_of(config_with(**{key: value}))
    path = key if not isinstance(value, dict) else f"{key}.dim"
    given = value if not isinstance(value, dict) else value["dim"]
    assert len(problems) == 1
    assert problems[0].startswith(f"{path}:")
    assert allowed in problems[0]
    assert f"(got {given!r})" in problems[0]


def test_list_items_are_addressed_by_index():
    problems = problems_of(config_with(**{"modalities.digit_image.encoder": {"name": "cnn", "channels": [32, -1]}}))
    assert [p.split(":")[0] for p in problems] == ["modalities.digit_image.encoder.channels.1"]


def choices(union: Any, key: str) -> list[str]:
    """The names a discriminated union of config sections offers at ``key`` (each section's literal)."""
    sections = get_args(get_args(union)[0])
    names = [name for section in sections for name in get_args(section.model_fields[key].annotation)]
    assert len(names) >= 6, names  # read from the union, not an empty list that would check nothing
    return names


def test_unknown_discriminator_value_is_reported_at_its_own_key_and_lists_allowed_names():
    problems = problems_of(config_with(fusion={"name": "bogus"}))
    assert len(problems) == 1
    assert problems[0].startswith("fusion.name: must be one of [")
    assert problems[0].endswith("; got 'bogus'")
    for name in choices(AnyFusion, "name"):
        assert f"'{name}'" in problems[0]
    problems = problems_of(config_with(**{"modalities.digit_image.kind": "imag"}))
    assert len(problems) == 1
    assert problems[0].startswith("modalities.digit_image.kind: must be one of [")
    assert problems[0].endswith("; got 'imag'")
    for kind in choices(AnyModality, "kind"):
        assert f"'{kind}'" in problems[0]


def test_missing_required_key():
    problems = problems_of({"target": "label"})
    assert problems == ["modalities: required key is missing"]


def test_all_problems_in_separate_sections_are_reported_at_once():
    data = config_with(**{
        "modalities.spoken.preprocess.n_mels": 0,
        "modalities.digit_image.preprocess.size": "big",
        "train.lr": "fast",
        "train.batch_size": 0,
        "fusion": {"name": "attention", "dimm": 64},
    })
    paths = {p.split(":")[0] for p in problems_of(data)}
    assert paths == {
        "modalities.spoken.preprocess.n_mels",
        "modalities.digit_image.preprocess.size",
        "train.lr",
        "train.batch_size",
        "fusion.dimm",
    }


def test_unknown_key_and_bad_value_in_the_same_section_are_both_reported():
    data = config_with(**{"modalities.spoken.preprocess.n_mels": 0, "modalities.spoken.preprocess.colour": 1})
    problems = problems_of(data)
    assert any(p.startswith("modalities.spoken.preprocess") and "colour" in p for p in problems)  # the unknown key
    assert any(p.startswith("modalities.spoken.preprocess.n_mels:") for p in problems)  # the out-of-range value


def test_modality_dropout_mapping_value_error_names_the_users_path():
    problems = problems_of(config_with(**{"train.modality_dropout": {"spoken": 1.5}}))
    assert any(p.startswith("train.modality_dropout.spoken:") and "(got 1.5)" in p for p in problems)
    assert not any("constrained-float" in p for p in problems)


@pytest.mark.parametrize(("value", "key", "hidden"), [
    (1.0, "train.modality_dropout", "every modality"),
    ({"spoken": 1.0}, "train.modality_dropout.spoken", "modality 'spoken'"),
    ({"spoken": 0.2, "digit_image": 1}, "train.modality_dropout.digit_image", "modality 'digit_image'"),
])
def test_a_modality_dropout_of_one_is_refused_as_it_never_trains_that_modality(value, key, hidden):
    """At 1.0 a modality is hidden from every training sample that holds another one; at 1.0 for
    every modality no sample keeps more than one and whole rows never train."""
    problems = problems_of(config_with(**{"train.modality_dropout": value}))
    assert problems == [f"{key}: 1.0 hides {hidden} from every training sample that holds another one, so the model "
                        "never trains on it (with every modality at 1.0 no sample keeps more than one and whole rows "
                        "never train); must be in [0, 1) (0.3, or {modality: rate} for some); got 1.0"]


def test_a_modality_dropout_just_below_one_or_of_a_one_modality_model_is_accepted():
    assert load_config(config_with(**{"train.modality_dropout": {"spoken": 0.99}})).train.modality_dropout == {
        "spoken": 0.99}
    one = config_with(**{"train.modality_dropout": 1.0})
    one["modalities"] = {"spoken": one["modalities"]["spoken"]}  # its only modality is always kept: nothing dropped
    assert load_config(one).train.modality_dropout == 1.0


def test_a_saved_run_with_a_modality_dropout_of_one_still_loads_with_a_warning(tmp_path):
    import yaml

    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config_with(**{"train.modality_dropout": 1.0})), "utf-8")
    with pytest.warns(UserWarning, match=r"this run's train.modality_dropout would be refused for a new run: "
                                         r"train.modality_dropout: 1.0 hides every modality"):
        assert load_config(tmp_path / "config.yaml", saved_run=True).train.modality_dropout == 1.0


def several_targets(monitor: str, target: str | list[str] = ("load", "rpm")) -> dict[str, Any]:
    """:func:`~helpers_models.unit_targets_config`, its target(s) ``target``, monitoring ``monitor``."""
    from helpers_models import unit_targets_config

    config = unit_targets_config(early_stopping={"monitor": monitor})
    config["target"] = list(target) if not isinstance(target, str) else target
    return config


@pytest.mark.parametrize("monitor", ["rmse_per_target.rpm", "mae_per_target.load", "r2_per_target.rpm", "r2",
                                     "loss"])
def test_early_stopping_may_monitor_one_target_of_several_quietly(monitor):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # unit-free, or one target's own: nothing to warn about
        assert load_config(several_targets(monitor)).train.early_stopping.monitor == monitor


@pytest.mark.parametrize(("monitor", "target"), [("rmse_per_target.torque", ["load", "rpm"]),
                                                 ("rmse_per_target.load", "load"),  # one target: its rmse
                                                 ("rmse_per_rpm", ["load", "rpm"])])
def test_a_monitored_target_that_is_not_one_of_several_is_refused_with_the_allowed_names(monitor, target):
    problems = problems_of(several_targets(monitor, target))
    assert len(problems) == 1 and problems[0].startswith("train.early_stopping.monitor") and f"'{monitor}'" in problems[0]
    assert "['loss', 'mae', 'rmse', 'r2']" in problems[0]
    if isinstance(target, list):
        assert "rmse_per_target.T" in problems[0] and "where T is a target of ['load', 'rpm']" in problems[0]
    else:
        assert "per_target.T" not in problems[0]


@pytest.mark.parametrize("monitor", ["rmse", "mae"])
def test_monitoring_the_mixed_average_of_several_targets_is_warned_but_not_for_one_or_a_saved_run(monitor, tmp_path):
    import warnings

    import yaml

    with pytest.warns(UserWarning, match=rf"train.early_stopping.monitor: '{monitor}' averages the {monitor} of "
                                         rf"targets \['load', 'rpm'\], which mixes their units .*'{monitor}_per_target.load'"):
        load_config(several_targets(monitor))
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(several_targets(monitor)), "utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_config(several_targets(monitor, "load"))  # one target: one unit
        load_config(tmp_path / "config.yaml", saved_run=True)  # trained so already: not said at every load


def test_missing_discriminator_is_reported_at_its_own_key_and_lists_the_allowed_values():
    problems = problems_of(config_with(**{"modalities.spoken": {"column": "audio_path"}}))
    assert len(problems) == 1
    assert problems[0].startswith("modalities.spoken.kind: required key is missing; must be one of [")
    for kind in ("image", "text", "audio", "signal", "tabular"):
        assert kind in problems[0]


# --- cross-field validators ----------------------------------------------------------------------
CROSS_FIELD_CASES = {
    "hop longer than frame": (
        {"modalities.spoken.preprocess.hop_ms": 30, "modalities.spoken.preprocess.frame_ms": 20},
        "modalities.spoken.preprocess", ["hop_ms (30.0)", "frame_ms (20.0)"]),
    "more mfcc than mels": (
        {"modalities.spoken.preprocess.features": "mfcc", "modalities.spoken.preprocess.n_mfcc": 50},
        "modalities.spoken.preprocess", ["n_mfcc (50)", "n_mels (40)"]),
    "fmax above nyquist": (
        {"modalities.spoken.preprocess.fmax": 5000}, "modalities.spoken.preprocess", ["fmax", "4000"]),
    "mel_cnn on waveform": (
        {"modalities.spoken.preprocess.features": "waveform"}, "modalities.spoken", ["mel_cnn", "waveform"]),
    "frequency masks on a waveform": (
        {"modalities.spoken.preprocess.features": "waveform", "modalities.spoken.encoder": {"name": "rnn"},
         "modalities.spoken.preprocess.augment": {"freq_masks": 1}}, "modalities.spoken.preprocess.augment",
        ["features 'waveform'", "set freq_masks: 0", "got freq_masks 1"]),
    "tabular without columns": (
        {"modalities.fields": {"kind": "tabular"}}, "modalities.fields", ["columns", "categorical"]),
    "tabular column in both lists": (
        {"modalities.fields": {"kind": "tabular", "columns": ["age"], "categorical": ["age"]}},
        "modalities.fields", ["['age']"]),
    "rnn head with concat fusion": (
        {"head": {"name": "rnn"}, "fusion": {"name": "concat"}}, "head.name",
        ["head 'rnn'", "'stack' or 'attention'", "fusion is 'concat'"]),
    "transformer head heads not dividing the fusion dim": (
        {"head": {"name": "transformer", "heads": 3}, "fusion": {"name": "stack", "dim": 10}}, "head.heads",
        ["fusion dim (10)", "got 3"]),
    "modality_dropout names unknown modality": (
        {"train.modality_dropout": {"speech": 0.2}}, "train.modality_dropout",
        ["names unknown modalities ['speech']", "['digit_image', 'spoken']"]),
    "modality names not identifiers": (
        {"modalities.1st": {"kind": "image", "column": "a"}, "modalities.x-ray": {"kind": "image", "column": "b"}},
        "modalities", ["identifiers", "'1st'", "'x-ray'"]),
    "target read as an input": ({"target": "image_path"}, "target", ["['image_path']"]),
    "class weights on regression": (
        {"task": "regression", "loss.class_weights": "balanced"}, "loss.class_weights", ["'regression'"]),
    "multilabel class weights of the wrong length": (
        {"task": "multilabel", "target": ["a", "b", "c"], "loss.class_weights": [1.0, 2.0]}, "loss.class_weights",
        ["one positive weight per target column (3: ['a', 'b', 'c'])", "got 2 values [1.0, 2.0]"]),
    "label smoothing on regression": (
        {"task": "regression", "loss.label_smoothing": 0.1}, "loss.label_smoothing",
        ["'classification' and 'multilabel'", "task is 'regression'", "got 0.1"]),
    "label smoothing on regression with further regression tasks": (
        {"task": "regression", "loss.label_smoothing": 0.1, "tasks": {"age": {"task": "regression", "target": "age"}}},
        "loss.label_smoothing", ["task is 'regression', as are its further tasks"]),
    "classification with two targets": ({"target": ["a", "b"]}, "target", ["one target column", "['a', 'b']"]),
    "regression target listed twice": (
        {"task": "regression", "target": ["load", "rpm", "load"]}, "target",
        ["column(s) ['load'] more than once", "got ['load', 'rpm', 'load']"]),
    "multilabel target listed twice": (
        {"task": "multilabel", "target": ["same", "same", "other", "other"]}, "target",
        ["column(s) ['same', 'other'] more than once"]),
    "classification target listed twice": ({"target": ["label", "label"]}, "target", ["['label'] more than once"]),
    "gray image with rgb mean": (
        {"modalities.digit_image.preprocess.mean": [0.1, 0.2, 0.3], "modalities.digit_image.preprocess.std": [0.5]},
        "modalities.digit_image.preprocess",
        ["mean must have 1 value", "got 3"]),
    "resample_to without sample_rate": (
        {"modalities.vib": {"kind": "signal", "column": "v", "preprocess": {"resample_to": 100}}},
        "modalities.vib.preprocess", ["resample_to needs sample_rate"]),
    "stem_stride on a text encoder": (
        {"modalities.notes": {"kind": "text", "column": "t", "encoder": {"name": "transformer", "stem_stride": 4}}},
        "modalities.notes.encoder.stem_stride", ["4 shortens audio and signal sequences", "preprocess.max_tokens"]),
    "tokenizer_path without pretrained": (
        {"modalities.notes": {"kind": "text", "column": "t", "preprocess": {"tokenizer_path": "tok"}}},
        "modalities.notes.preprocess", ["tokenizer_path", "'word'"]),
    "hf encoder with a word tokenizer": (
        {"modalities.notes": {"kind": "text", "column": "t", "encoder": {"name": "hf", "path": "/m"},
                              "preprocess": {"tokenizer": "word"}}},
        "modalities.notes", ["encoder 'hf'", "tokenizer 'word'"]),
    "regression with fixmatch": (
        {"task": "regression", "transfer": [{"method": "coral"}, {"method": "fixmatch"}]}, "transfer.1.method",
        ["'fixmatch' needs class predictions", "got 'regression'"]),
    "further task on the main target": (
        {"tasks": {"speaker": {"task": "classification", "target": "label"}}}, "tasks.speaker",
        ["target column 'label'", "already the target of target"]),
    "two further tasks on one column": (
        {"tasks": {"age": {"task": "regression", "target": "years"}, "band": {"task": "regression", "target": "years"}}},
        "tasks.band", ["target column 'years'", "already the target of tasks.age"]),
    "further task listing its column twice": (
        {"tasks": {"wear": {"task": "regression", "target": ["depth", "depth"]}}}, "tasks.wear.target",
        ["column(s) ['depth'] more than once", "got ['depth', 'depth']"]),
    "learned task weights with a weight set to its default": (
        {"tasks": {"speaker": {"target": "who", "weight": 1.0}}, "loss.task_weighting": "uncertainty"},
        "tasks.speaker.weight", ["'uncertainty' learns the weights"]),
}


def test_class_weights_and_label_smoothing_that_apply_are_accepted():
    multilabel = {"task": "multilabel", "target": ["a", "b", "c"]}
    assert load_config(config_with(**multilabel, **{"loss.class_weights": "balanced"})).loss.class_weights == "balanced"
    assert load_config(config_with(**multilabel, **{"loss.class_weights": [1, 2, 3]})).loss.class_weights == [1, 2, 3]
    assert load_config(config_with(**multilabel, **{"loss.label_smoothing": 0.1})).loss.label_smoothing == 0.1
    further = {"task": "regression", "loss.label_smoothing": 0.1, "tasks": {"kind": {"target": "kind"}}}
    assert load_config(config_with(**further)).loss.label_smoothing == 0.1  # a further classification task uses it


def test_a_saved_runs_ignored_label_smoothing_loads_with_a_warning():
    with pytest.warns(UserWarning, match="loss.label_smoothing would be refused for a new run"):
        config = load_config(config_with(**{"task": "regression", "loss.label_smoothing": 0.1}), saved_run=True)
    assert config.loss.label_smoothing == 0.1


@pytest.mark.parametrize(("changes", "path", "fragments"), CROSS_FIELD_CASES.values(), ids=CROSS_FIELD_CASES.keys())
def test_cross_field_validators(changes, path, fragments):
    problems = problems_of(config_with(**changes))
    assert len(problems) == 1
    assert problems[0].startswith(f"{path}:")
    for fragment in fragments:
        assert fragment in problems[0]


def test_hf_encoder_makes_its_folder_the_pretrained_tokenizer():
    config = load_config(config_with(**{"modalities.notes": {
        "kind": "text", "column": "t", "encoder": {"name": "hf", "path": "/models/minilm"}}}))
    prep = config.modalities["notes"].preprocess
    assert prep.tokenizer == "pretrained"
    assert str(prep.tokenizer_path) == "/models/minilm"


def test_hf_encoder_keeps_an_explicit_pretrained_tokenizer_folder():
    config = load_config(config_with(**{"modalities.notes": {
        "kind": "text", "column": "t", "encoder": {"name": "hf", "path": "/models/minilm"},
        "preprocess": {"tokenizer": "pretrained", "tokenizer_path": "/tokenizers/other"}}}))
    assert str(config.modalities["notes"].preprocess.tokenizer_path) == "/tokenizers/other"


def test_config_error_is_a_value_error():
    with pytest.raises(ValueError, match="modalities"):
        load_config({"target": "label"})


# -- transfer: one method or a list of methods ----------------------------------------------------
def test_a_list_of_transfer_methods_validates_in_order():
    config = load_config(config_with(transfer=[{"method": "cdan"}, {"method": "fixmatch", "threshold": 0.9}]))
    assert [m.method for m in config.transfers] == ["cdan", "fixmatch"]
    assert config.transfers[1].threshold == 0.9
    assert load_config(config_with(transfer={"method": "mmd"})).transfers[0].method == "mmd"
    assert load_config(BASE).transfers == []


def test_an_error_inside_a_transfer_list_names_its_index_without_the_other_shape():
    problems = problems_of(config_with(transfer=[{"method": "cdan"}, {"method": "fixmatch", "threshold": 2}]))
    assert problems == ["transfer.1.threshold: Input should be less than 1 (got 2)"]
    problems = problems_of(config_with(transfer=[{"method": "dann"}, {"method": "nope"}]))
    assert len(problems) == 1 and problems[0].startswith("transfer.1.method: must be one of [")
    assert "'fixmatch'" in problems[0] and problems[0].endswith("got 'nope'")


def test_an_error_in_a_single_transfer_method_does_not_mention_lists():
    problems = problems_of(config_with(transfer={"method": "dann", "hidden": [0]}))
    assert problems == ["transfer.hidden.0: Input should be greater than 0 (got 0)"]
    # a value that is neither shape gets both shapes named
    problems = problems_of(config_with(transfer=5))
    assert len(problems) == 2 and any("valid list" in p for p in problems)


@pytest.mark.parametrize("methods, message", [
    ([{"method": "fixmatch"}, {"method": "fixmatch"}], "more than once"),
    ([{"method": "dann"}, {"method": "mmd"}], "several domain-adaptation methods ['dann', 'mmd']"),
    ([{"method": "protonet"}, {"method": "pseudo_label"}], "cannot be combined"),
    ([{"method": "coral", "unlabeled": "a.csv"}, {"method": "fixmatch", "unlabeled": "b.csv"}],
     "'unlabeled' values differ"),
])
def test_transfer_methods_that_do_not_combine_are_refused(methods, message):
    problems = problems_of(config_with(transfer=methods))
    assert len(problems) == 1 and message in problems[0]


def test_an_empty_transfer_list_is_one_problem_about_its_length():
    assert problems_of(config_with(transfer=[])) == [
        "transfer: List should have at least 1 item after validation, not 0 (got [])"]


def test_a_rule_broken_by_one_method_of_a_list_names_its_index():
    problems = problems_of(config_with(transfer=[{"method": "fixmatch"}, {"method": "coral", "on": ["camera"]}]))
    assert len(problems) == 1 and "transfer.1.on: must be 'fused' or a non-empty list" in problems[0]
    problems = problems_of(config_with(transfer=[{"method": "coral", "on": ["camera"]}]))  # a list of one
    assert len(problems) == 1 and "transfer.0.on: must be" in problems[0]


def test_a_wrong_value_of_a_scalar_or_list_field_names_both_shapes():
    """``on: audio`` must say that a list would do; a wrong-shape hint is only dropped when the
    other shape found a problem deeper inside the value."""
    problems = problems_of(config_with(transfer={"method": "dann", "on": "spoken"}))
    assert any("'fused'" in p for p in problems) and any("valid list" in p for p in problems)
    problems = problems_of({**BASE, "tune": {"space": {"train.lr": {"choices": 3}}}})
    assert any(p.startswith("tune.space.train.lr.choices") and "valid list" in p for p in problems)


def test_a_new_projection_on_a_wholly_frozen_backbone_is_refused_but_a_saved_run_loads(tmp_path):
    from polymodal.config import load_config, save_config

    spec = {"target": "y", "modalities": {"i": {"kind": "image", "column": "i",
                                                "encoder": {"name": "timm", "arch": "resnet18", "dim": 16,
                                                            "freeze": "all"}}}}
    with pytest.raises(ConfigError, match="adds a projection after the backbone, which freeze: all would keep"):
        load_config(spec)
    without = load_config({**spec, "modalities": {"i": {**spec["modalities"]["i"], "encoder": {
        "name": "timm", "arch": "resnet18", "freeze": "all"}}}})
    save_config(without, tmp_path / "config.yaml")
    text = (tmp_path / "config.yaml").read_text(encoding="utf-8").replace("dim: null", "dim: 16")
    (tmp_path / "config.yaml").write_text(text, encoding="utf-8")
    assert load_config(tmp_path / "config.yaml", saved_run=True).modalities["i"].encoder.dim == 16  # trained so


@pytest.mark.parametrize("name", ["rnn", "transformer"])
def test_a_saved_run_whose_text_encoder_has_a_stem_stride_still_loads_with_a_warning(name):
    """A text encoder ignored stem_stride before it was refused: such a run trained without one."""
    from polymodal.config import load_config

    spec = {"task": "classification", "target": "y",
            "modalities": {"notes": {"kind": "text", "column": "t", "encoder": {"name": name, "stem_stride": 4}}}}
    with pytest.raises(ConfigError, match=r"modalities\.notes\.encoder\.stem_stride: 4 shortens"):
        load_config(spec)
    with pytest.warns(UserWarning, match="would be refused for a new run: stem_stride: 4 shortens"):
        assert load_config(spec, saved_run=True).modalities["notes"].encoder.stem_stride == 4


@pytest.mark.parametrize("key", ["lr", "weight_decay", "grad_clip"])
def test_an_infinite_number_is_refused_where_a_finite_one_is_meant(key):
    data = with_changes(BASE, {f"train.{key}": float("inf")})
    with pytest.raises(ConfigError, match=f"train.{key}: Input should be a finite number"):
        load_config(data)


def test_precision_32_written_as_a_number_is_the_default_precision():
    assert load_config(with_changes(BASE, {"train.precision": 32})).train.precision == "32"


def test_task_weights_settle_by_the_weighting_and_saved_runs_of_earlier_versions_load():
    from polymodal.config import config_to_dict, load_config

    fixed = load_config(config_with(tasks={"speaker": {"target": "who"}}))
    assert fixed.tasks["speaker"].weight == 1.0  # unset: 1 under fixed weighting
    learned = load_config(config_with(**{"tasks": {"speaker": {"target": "who"}}, "loss.task_weighting": "uncertainty"}))
    assert learned.tasks["speaker"].weight is None
    assert load_config(config_to_dict(learned)).tasks["speaker"].weight is None  # round trip
    earlier = config_to_dict(learned)
    earlier["tasks"]["speaker"]["weight"] = 1.0  # what a run saved before 2026-12-05 wrote
    assert load_config(earlier, saved_run=True).tasks["speaker"].weight is None
    with pytest.raises(ConfigError, match="learns the weights"):
        load_config(earlier)  # a user's config that sets it is still refused
