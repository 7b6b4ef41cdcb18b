"""Config YAML is read with YAML 1.2 booleans: ``on:`` is a key, ``true``/``false`` are booleans,
and boolean fields still accept ``yes``."""

from __future__ import annotations

from polymodal.config import load_config, save_config
from polymodal.config.parsing import load_yaml

DANN_ON_ONE_MODALITY = """
task: classification
target: label
modalities:
  mic: {kind: audio, column: audio}
  cam: {kind: image, column: image, encoder: {name: cnn, cache: no}}
transfer: {method: dann, on: [mic]}
train: {progress: off, deterministic: true}
"""


def test_only_true_and_false_are_booleans():
    assert load_yaml("{on: 1, off: 2, yes: 3, no: 4, y: 5, n: 6}") == {"on": 1, "off": 2, "yes": 3, "no": 4,
                                                                     "y": 5, "n": 6}
    assert load_yaml("[true, True, TRUE, false, False, FALSE]") == [True] * 3 + [False] * 3
    assert load_yaml("[1, 1.5, null, '2026-01-01', text]") == [1, 1.5, None, "2026-01-01", "text"]


def test_transfer_on_a_chosen_modality_reads_from_yaml_and_round_trips(tmp_path):
    path = tmp_path / "dann.yaml"
    path.write_text(DANN_ON_ONE_MODALITY, encoding="utf-8")
    config = load_config(path)
    assert config.transfer.method == "dann" and config.transfer.on == ["mic"]
    assert config.modalities["cam"].encoder.cache is False  # "no" is still False for a boolean field
    assert config.train.progress is False and config.train.deterministic is True
    save_config(config, tmp_path / "saved.yaml")
    assert load_config(tmp_path / "saved.yaml") == config


def test_a_list_of_transfer_methods_resolves_paths_and_round_trips(tmp_path):
    text = DANN_ON_ONE_MODALITY.replace("transfer: {method: dann, on: [mic]}",
                                        "transfer: [{method: dann, on: [mic]}, {method: fixmatch, unlabeled: t.csv}]")
    path = tmp_path / "dann_fixmatch.yaml"
    path.write_text(text, encoding="utf-8")
    config = load_config(path)
    assert [m.method for m in config.transfers] == ["dann", "fixmatch"]
    assert config.transfers[1].unlabeled == (tmp_path / "t.csv").resolve()  # relative to the config file
    save_config(config, tmp_path / "saved.yaml")
    assert load_config(tmp_path / "saved.yaml") == config


def test_the_image_cnns_pool_left_unset_follows_the_image_size(tmp_path):
    """At the default 224 px, ``pool: flatten`` made a 25.7-million-weight projection; the pool
    chosen is recorded, so the saved config builds the same encoder."""
    def pool(**modality):
        config = load_config({"target": "y", "modalities": {"x": {"kind": "image", "column": "x", **modality}}})
        save_config(config, tmp_path / "saved.yaml")
        assert load_config(tmp_path / "saved.yaml").modalities["x"].encoder.pool == config.modalities["x"].encoder.pool
        return config.modalities["x"].encoder.pool

    assert pool() == "avg"
    assert pool(preprocess={"size": 32}) == "flatten"
    assert pool(preprocess={"size": [24, 40]}) == "avg"
    assert pool(encoder={"name": "cnn", "pool": "flatten"}) == "flatten"  # as written, at any size
    assert pool(preprocess={"size": 64}, encoder={"name": "cnn", "pool": "avg"}) == "avg"
