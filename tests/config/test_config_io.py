"""YAML/JSON in and out, relative-path resolution, the JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from polymodal.config import Config, config_to_dict, json_schema, load_config, save_config
from polymodal.errors import ConfigError

RICH_YAML = """
task: classification
target: label
modalities:
  notes:
    kind: text
    column: report
    encoder: {name: hf, path: models/minilm}
  words:
    kind: text
    column: summary
    encoder: {name: embedding_bag, vectors: vectors/glove.txt}
  xray:
    kind: image
    column: image
    preprocess: {size: [32, 48], color: gray, mean: [0.5], std: [0.25], augment: {hflip: true, scale: [0.9, 1.1]}}
    encoder: {name: resnet, weights: /abs/resnet18.pth}
  spoken:
    kind: audio
    column: audio
    preprocess: {sample_rate: 8000, features: mfcc, n_mels: 40, n_mfcc: 20, frame_ms: 25, hop_ms: 10}
  vib:
    kind: signal
    column: vibration
    preprocess: {channels: [0, 2], spectrogram: {n_fft: 32, hop: 16}}
  labs:
    kind: tabular
    columns: [age]
    categorical: [sex]
fusion: {name: attention, dim: 64, tokens: true}
head: {name: rnn}
train: {epochs: 3, modality_dropout: {xray: 0.2}, precision: bf16-mixed}
data: {cache_dir: cache, on_error: skip}
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_yaml_gives_validated_objects(tmp_path):
    config = load_config(write(tmp_path / "c.yaml", RICH_YAML))
    assert isinstance(config, Config)
    assert config.modalities["xray"].preprocess.size == (32, 48)
    assert config.modalities["spoken"].preprocess.n_mfcc == 20
    assert config.modalities["vib"].preprocess.spectrogram.n_fft == 32
    assert config.train.modality_dropout == {"xray": 0.2}
    assert config.fusion.name == "attention" and config.fusion.tokens is True
    assert config.train.batch_size == 64  # unspecified keys take their defaults


def test_relative_paths_resolve_against_the_config_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the working directory must not matter
    folder = tmp_path / "experiments" / "one"
    config = load_config(write(folder / "c.yaml", RICH_YAML))
    assert config.modalities["notes"].encoder.path == folder / "models" / "minilm"
    assert config.modalities["notes"].preprocess.tokenizer_path == folder / "models" / "minilm"
    assert config.modalities["words"].encoder.vectors == folder / "vectors" / "glove.txt"
    assert config.data.cache_dir == folder / "cache"
    assert config.modalities["xray"].encoder.weights == Path("/abs/resnet18.pth")


def test_relative_paths_of_a_dict_resolve_against_the_working_folder_and_are_saved_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = yaml.safe_load(RICH_YAML)
    config = load_config(data)
    assert config.modalities["words"].encoder.vectors == tmp_path / "vectors" / "glove.txt"
    assert config.data.cache_dir == tmp_path / "cache"
    save_config(config, tmp_path / "run" / "config.yaml")  # as a run records it: read back from its own folder
    again = load_config(tmp_path / "run" / "config.yaml")
    assert again.modalities["words"].encoder.vectors == tmp_path / "vectors" / "glove.txt"
    with pytest.raises(ConfigError, match=r"modalities.words.encoder.vectors: not found: .*vectors/glove.txt"):
        load_config(data, check_files=True)  # named by key, as for a file


def test_a_missing_model_folder_is_one_problem_under_the_key_the_user_wrote(tmp_path):
    """The hf encoder's folder is also its text's tokenizer_path: reported once, as encoder.path."""
    data = {"task": "classification", "target": "label",
            "modalities": {"report": {"kind": "text", "column": "report",
                                      "encoder": {"name": "hf", "path": "models/minilm"}}}}
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path / "c.yaml", yaml.safe_dump(data)), check_files=True)
    assert info.value.problems == [f"modalities.report.encoder.path: not found: {tmp_path / 'models' / 'minilm'}"]
    data["modalities"]["notes"] = {**data["modalities"]["report"], "column": "notes"}  # another modality: its own
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path / "c.yaml", yaml.safe_dump(data)), check_files=True)
    assert sorted(p.split(":")[0] for p in info.value.problems) == ["modalities.notes.encoder.path",
                                                                    "modalities.report.encoder.path"]


def test_json_config_file(tmp_path):
    data = yaml.safe_load(RICH_YAML)
    config = load_config(write(tmp_path / "sub" / "c.json", json.dumps(data)))
    assert config.modalities["words"].encoder.vectors == tmp_path / "sub" / "vectors" / "glove.txt"


def test_errors_from_a_file_name_the_file(tmp_path):
    path = write(tmp_path / "c.yaml", RICH_YAML.replace("n_mfcc: 20", "n_mfcc: 0"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.source == str(path)
    assert str(path) in str(info.value)
    assert info.value.problems[0].startswith("modalities.spoken.preprocess.n_mfcc:")


@pytest.mark.parametrize(
    ("name", "text", "fragment"),
    [
        ("missing.yaml", None, "config file not found"),
        ("broken.yaml", "target: [label\nmodalities: {", 'cannot parse broken.yaml(.|\n)*in "broken.yaml", line'),
        ("empty.yaml", "", "empty.yaml is empty; a config needs at least 'modalities'"),
        ("list.yaml", "- a\n- b\n", "expected a mapping of keys; got list"),
        ("broken.json", "{\"target\": ", "cannot parse broken.json"),
    ],
)
def test_unreadable_config_files(tmp_path, name, text, fragment):
    path = tmp_path / name
    if text is not None:
        write(path, text)
    with pytest.raises(ConfigError, match=fragment):
        load_config(path)


def test_save_then_load_round_trips_exactly(tmp_path):
    config = load_config(write(tmp_path / "in" / "c.yaml", RICH_YAML))
    save_config(config, tmp_path / "out" / "config.yaml")
    again = load_config(tmp_path / "out" / "config.yaml")
    assert again == config
    assert config_to_dict(again) == config_to_dict(config)
    save_config(again, tmp_path / "out2.yaml")
    assert (tmp_path / "out2.yaml").read_text() == (tmp_path / "out" / "config.yaml").read_text()


def test_saved_config_spells_out_defaults(tmp_path):
    config = load_config({"target": "y", "modalities": {"img": {"kind": "image", "column": "x"}}})
    save_config(config, tmp_path / "c.yaml")
    saved = yaml.safe_load((tmp_path / "c.yaml").read_text())
    assert saved["train"]["epochs"] == config.train.epochs
    assert saved["modalities"]["img"]["preprocess"]["size"] == 224
    assert saved["modalities"]["img"]["encoder"]["name"] == "cnn"


# --- JSON Schema -------------------------------------------------------------------------------
def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if "$ref" in node else []
        for key, value in node.items():
            if key == "discriminator":
                found += list(value.get("mapping", {}).values())
            else:
                found += _refs(value)
        return found
    if isinstance(node, list):
        return [ref for item in node for ref in _refs(item)]
    return []


def test_json_schema_describes_the_top_level_keys():
    schema = json.loads(json.dumps(json_schema()))  # serialisable as JSON
    assert schema["type"] == "object"
    assert set(schema["properties"]) == set(Config.model_fields)
    assert set(schema["properties"]) >= {"task", "target", "modalities", "fusion", "head", "train", "data"}
    assert set(schema["required"]) == {"modalities"}  # target is optional for task 'retrieval'
    assert schema["additionalProperties"] is False


def test_json_schema_references_resolve_and_sections_forbid_unknown_keys():
    schema = json_schema()
    definitions = schema["$defs"]
    refs = _refs(schema)
    assert refs, "the schema should reference its section definitions"
    for ref in refs:
        assert ref.startswith("#/$defs/")
        assert ref.removeprefix("#/$defs/") in definitions
    for name, definition in definitions.items():
        if definition.get("type") == "object":
            assert definition.get("additionalProperties") is False, name


def test_json_schema_lists_the_modality_kinds():
    modalities = json_schema()["properties"]["modalities"]["additionalProperties"]
    assert modalities["discriminator"]["propertyName"] == "kind"
    assert set(modalities["discriminator"]["mapping"]) == {"image", "text", "audio", "signal", "tabular", "video"}


def _models(model: type, seen: dict[str, type] | None = None) -> dict[str, type]:
    """Every config model reachable from ``model`` through its fields' annotations, by class name
    (the names of the schema's ``$defs``)."""
    from typing import get_args

    from pydantic import BaseModel

    seen = {} if seen is None else seen
    if isinstance(model, type) and issubclass(model, BaseModel):
        if model.__name__ in seen:
            return seen
        seen[model.__name__] = model
        for field in model.model_fields.values():
            _models(field.annotation, seen)
        return seen
    for arg in get_args(model):
        _models(arg, seen)
    return seen


def test_json_schema_gives_every_default_a_default_factory_makes():
    """``config schema`` promises every key's default, but pydantic leaves out those of sections
    made by a default factory (train, head, train.early_stopping...)."""
    from pydantic_core import to_jsonable_python

    schema = json_schema()
    models = _models(Config)
    checked = []
    for name, model in models.items():
        properties = schema["properties"] if model is Config else schema["$defs"][name]["properties"]
        for key, field in model.model_fields.items():
            if field.default_factory is not None:
                made = to_jsonable_python(field.get_default(call_default_factory=True))
                assert properties[key].get("default") == made, f"{name}.{key}"
                checked.append(f"{name}.{key}")
    assert {"Config.train", "Config.head", "Config.fusion", "TrainConfig.early_stopping",
            "ImageModality.encoder", "AnomalyConfig.normal"} <= set(checked)
    assert schema["properties"]["train"]["default"]["epochs"] == Config.model_fields["train"].default_factory().epochs
    assert schema["$defs"]["TrainConfig"]["properties"]["early_stopping"]["default"]["patience"] == 5


def test_json_schema_describes_a_default_the_rest_of_the_config_decides():
    schema = json_schema()
    fusion = schema["properties"]["fusion"]
    assert fusion["default"]["name"] == "attention"
    assert "concat for a config of one modality whose head is mlp" in fusion["description"]
    base = {"target": "y"}  # what the description says, checked against what loading does
    assert load_config({**base, "modalities": _tables("a")}).fusion.name == "concat"
    assert load_config({**base, "modalities": _tables("a"), "head": {"name": "transformer"}}).fusion.name == "attention"
    image = schema["$defs"]["ImageModality"]["properties"]["preprocess"]
    assert "follow a pretrained encoder" in image["description"] and image["default"]["size"] == 224


def _tables(*names: str) -> dict[str, Any]:
    return {name: {"kind": "tabular", "columns": [f"{name}_x"]} for name in names}


def test_one_modality_without_a_named_fusion_gets_concat_and_a_named_one_is_kept(tmp_path):
    base = {"task": "classification", "target": "y"}
    assert load_config({**base, "modalities": _tables("a")}).fusion.name == "concat"
    assert load_config({**base, "modalities": _tables("a", "b")}).fusion.name == "attention"  # the default
    named = load_config({**base, "modalities": _tables("a"), "fusion": {"name": "attention", "dim": 32}})
    assert named.fusion.name == "attention" and named.fusion.dim == 32
    tokens = load_config({**base, "modalities": _tables("a"), "head": {"name": "transformer"}})
    assert tokens.fusion.name == "attention"  # a head over fused tokens keeps the fusion that makes them
    dropped = load_config({**base, "modalities": _tables("a", "b")}, overrides={"modalities.b": None})
    assert dropped.fusion.name == "concat"
    save_config(named, tmp_path / "config.yaml")  # a saved run spells its fusion out: it loads as trained
    assert load_config(tmp_path / "config.yaml", saved_run=True).fusion.name == "attention"
