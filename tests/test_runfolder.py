"""Run folder reading: keys a saved config lacks take the behaviour the run was trained with."""

from __future__ import annotations

from polymodal.config import load_config, save_config
from polymodal.runfolder import CONFIG_FILE, read_config

AUDIO = {"target": "label", "modalities": {"audio": {"kind": "audio", "column": "audio",
                                                     "encoder": {"name": "mel_cnn", "dim": 8}}}}


def test_a_saved_key_is_kept_and_a_missing_one_takes_the_predated_default(tmp_path):
    save_config(load_config(AUDIO), tmp_path / CONFIG_FILE)  # today's default, frequency: flatten, written out
    assert read_config(tmp_path).modalities["audio"].encoder.frequency == "flatten"
    text = (tmp_path / CONFIG_FILE).read_text(encoding="utf-8")
    assert "frequency: flatten" in text
    (tmp_path / CONFIG_FILE).write_text("\n".join(line for line in text.splitlines() if "frequency:" not in line),
                                        encoding="utf-8")  # as written before the key existed
    assert read_config(tmp_path).modalities["audio"].encoder.frequency == "mean"
