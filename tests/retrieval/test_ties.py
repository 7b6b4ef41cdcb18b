"""The tie warning's view of a gallery's inputs: tied rows whose inputs (a file's content, a
folder of frames) are the same are copies; others were collapsed by the model."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd

from polymodal.config.modalities import VideoModality
from polymodal.data.manifest import read_manifest
from polymodal.retrieval import search


def test_inputs_are_told_apart_by_content_for_files_and_folders_of_frames(tmp_path):
    for name, content in (("a.png", b"one"), ("b.png", b"one"), ("c.png", b"two")):
        (tmp_path / name).write_bytes(content)
    for folder, frames in (("clip1", [b"x", b"y"]), ("clip2", [b"x", b"y"]), ("clip3", [b"x", b"z"])):
        (tmp_path / folder).mkdir()
        for i, frame in enumerate(frames):
            (tmp_path / folder / f"{i}.png").write_bytes(frame)
    digest = {name: search._input_key(str(tmp_path / name), True) for name in ("a.png", "b.png", "c.png", "clip1",
                                                                               "clip2", "clip3")}
    assert digest["a.png"] == digest["b.png"] != digest["c.png"]  # a copy under another name is a copy
    assert digest["clip1"] == digest["clip2"] != digest["clip3"]
    assert search._input_key(str(tmp_path / "gone.png"), True).startswith("unreadable")
    assert search._input_key((1.0, "red"), False) == search._input_key((1.0, "red"), False) != \
        search._input_key((1.0, "blue"), False)  # a table's cells


def test_a_collapsed_video_gallery_of_frame_folders_counts_distinct_inputs(tmp_path):
    """Four clips (folders of frames) embedded onto one point: two are copies of each other, so
    every row ties, and all four have a twin whose frames differ."""
    for folder, frame in (("c0", b"a"), ("c1", b"a"), ("c2", b"b"), ("c3", b"c")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "0.png").write_bytes(frame)
    manifest = read_manifest(pd.DataFrame({"clip": ["c0", "c1", "c2", "c3"]}), root=tmp_path)
    predictor = SimpleNamespace(config=SimpleNamespace(modalities={"v": VideoModality(kind="video", column="clip")}))
    gallery = pd.DataFrame(np.ones((4, 3)), index=[0, 1, 2, 3])
    ties = search._gallery_ties(predictor, manifest, "v", gallery, np.arange(4.0))
    assert ties == (4, 4, 4)
    copies = search._gallery_ties(predictor, manifest, "v", gallery.iloc[:2], np.arange(4.0))
    assert copies == (2, 2, 0)  # the two copies tie, and nothing the model did made them alike
