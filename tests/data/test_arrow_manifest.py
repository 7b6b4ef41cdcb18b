"""Arrow IPC manifests: read memory-mapped (strings not copied into memory), converted from
Parquet row group by row group and from CSV as a config reads it, relative paths resolving against
the source's folder wherever the Arrow file is written."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from polymodal.cli import app
from polymodal.config.columns import csv_columns
from polymodal.data.arrow_manifest import convert_manifest
from polymodal.data.manifest import read_manifest
from polymodal.data.pipeline import DataPipeline
from polymodal.errors import ManifestError

from .helpers import MULTIMODAL, make_config, write_multimodal_manifest


def test_parquet_converts_row_group_by_row_group_and_paths_resolve_against_its_folder(tmp_path):
    source = tmp_path / "data" / "m.parquet"
    source.parent.mkdir()
    frame = pd.DataFrame({"image": [f"img/{i}.png" if i % 7 else None for i in range(1000)],
                          "x": np.arange(1000) / 4, "y": np.arange(1000) % 3})
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), source, row_group_size=128)
    assert pq.ParquetFile(source).num_row_groups == 8
    out = tmp_path / "elsewhere" / "m.arrow"
    out.parent.mkdir()
    assert convert_manifest(source, out) == 1000
    manifest = read_manifest(out)
    pd.testing.assert_frame_equal(manifest.frame, read_manifest(source).frame, check_dtype=False)
    assert manifest.root == source.parent.resolve()
    assert manifest.resolve(manifest.frame["image"][1]) == str(source.parent.resolve() / "img/1.png")
    assert manifest.resolve(manifest.frame["image"][0]) is None  # an empty cell is still missing
    assert read_manifest(out, root=tmp_path).root == tmp_path.resolve()  # an explicit root wins


def test_string_columns_are_memory_mapped_not_copied(tmp_path):
    n = 200_000
    frame = pd.DataFrame({"path": [f"images/sample_{i:09d}.png" for i in range(n)], "y": np.zeros(n, np.int8)})
    frame.to_parquet(tmp_path / "m.parquet")
    convert_manifest(tmp_path / "m.parquet", tmp_path / "m.arrow")
    string_bytes = len(frame) * len("images/sample_000000000.png")
    del frame
    before = pa.total_allocated_bytes()
    manifest = read_manifest(tmp_path / "m.arrow")
    assert manifest.frame["path"][n - 1] == f"images/sample_{n - 1:09d}.png"
    assert isinstance(manifest.frame["path"].array, pd.arrays.ArrowStringArray)  # not Python objects
    # Arrow allocated only the int8 labels (0.2 MB): the ~5 MB of paths are neither copied nor re-offset
    assert pa.total_allocated_bytes() - before < string_bytes / 20



def test_a_held_out_split_of_a_mapped_manifest_copies_no_paths(tmp_path):
    from polymodal.data.cells import Cells
    from polymodal.data.split import stratified_holdout
    from polymodal.data.targets import TargetEncoder

    n = 200_000
    frame = pd.DataFrame({"path": [f"images/sample_{i:09d}.png" for i in range(n)], "y": np.arange(n) % 4})
    frame.to_parquet(tmp_path / "m.parquet")
    convert_manifest(tmp_path / "m.parquet", tmp_path / "m.arrow")
    string_bytes = n * len("images/sample_000000000.png")
    del frame
    manifest = read_manifest(tmp_path / "m.arrow")
    before = pa.total_allocated_bytes()
    train, valid = stratified_holdout(manifest, 0.1, seed=0, label_column="y")
    assert pa.total_allocated_bytes() - before < string_bytes / 20  # both sides view the mapped table
    assert len(train) + len(valid) == n and len(valid) == n // 10
    rows = valid.source_rows
    cells = Cells(valid, ["path"], file_based=True)  # the subset's own rows, read through the view
    assert cells[[0, len(valid) - 1]] == [str(tmp_path / f"images/sample_{r:09d}.png") for r in rows[[0, -1]]]
    assert cells.subset(np.array([2]))[0] == str(tmp_path / f"images/sample_{rows[2]:09d}.png")
    encoder = TargetEncoder("classification", ["y"]).fit(train)
    np.testing.assert_array_equal(encoder.encode(valid, np.array([0, 5])), rows[[0, 5]] % 4)
    assert valid.where(3) == f"m.arrow row {rows[3]}"
    again = valid.subset(np.array([3, 1]))  # a view of a view names the table's rows
    assert list(again.source_rows) == [rows[3], rows[1]] and again.data is manifest.data
    assert again.frame["path"].tolist() == [f"images/sample_{r:09d}.png" for r in (rows[3], rows[1])]

def test_a_csv_converts_as_its_config_reads_it(tmp_path):
    path = write_multimodal_manifest(tmp_path / "data")
    frame = pd.read_csv(path)
    frame["colour"] = ["007" if i % 2 else "010" for i in range(len(frame))]  # category codes pandas would read as 7, 10
    frame.to_csv(path, index=False)
    config = make_config(MULTIMODAL)
    convert_manifest(path, tmp_path / "m.arrow", **csv_columns(config))
    pipeline = DataPipeline(config)
    arrow = pipeline.read(tmp_path / "m.arrow", require_target=True, training=True)
    csv = pipeline.read(path, require_target=True, training=True)
    assert arrow.frame["colour"].tolist() == csv.frame["colour"].tolist() == ["010", "007"] * 5
    table, targets = pipeline.fit(csv)
    again = pipeline.encode(arrow)
    np.testing.assert_array_equal(pipeline.encode_targets(arrow, again), targets)
    for name, encoded in table.modalities.items():
        for key, values in encoded.arrays.items():
            np.testing.assert_array_equal(again.modalities[name].arrays[key], values, err_msg=f"{name}.{key}")


def test_a_compressed_feather_file_is_read_too(tmp_path):
    frame = pd.DataFrame({"text": ["a", None, "c"], "y": [1, 2, 3]})
    frame.to_feather(tmp_path / "m.feather")  # lz4 by default: decompressed into memory
    assert read_manifest(tmp_path / "m.feather").frame["text"].tolist()[::2] == ["a", "c"]


def test_an_unreadable_arrow_file_is_named(tmp_path):
    (tmp_path / "bad.arrow").write_bytes(b"not arrow at all")
    with pytest.raises(ManifestError, match="cannot parse bad.arrow"):
        read_manifest(tmp_path / "bad.arrow")
    with pytest.raises(ManifestError, match="already an Arrow manifest"):
        convert_manifest(tmp_path / "bad.arrow", tmp_path / "again.arrow")


@pytest.mark.parametrize(("content", "looks"), [
    (b"image,audio,label\nimages/0.png,audio/0.wav,0\n", "; it looks like CSV text: name it .csv (or write an Arrow "
                                                          "manifest from it with 'polymodal manifest convert')"),
    (b'{"image": "a.png", "y": 0}\n', "; it looks like JSON-lines text: name it .jsonl (or write an Arrow manifest "
                                      "from it with 'polymodal manifest convert')"),
    (b"just some words\n", "; it looks like text"),
    (bytes(range(256)), ""),
])
def test_a_file_that_is_not_arrow_is_named_as_such_and_what_it_looks_like(tmp_path, content, looks):
    (tmp_path / "m.arrow").write_bytes(content)
    with pytest.raises(ManifestError) as info:
        read_manifest(tmp_path / "m.arrow")
    assert info.value.problems == ["cannot parse m.arrow: not an Arrow IPC file: it does not start with the Arrow "
                                   f"file signature 'ARROW1' or a stream message{looks}"]


def test_a_damaged_arrow_file_keeps_the_readers_reason(tmp_path):
    table = pa.table({"y": [0, 1, 0]})
    with pa.ipc.new_file(str(tmp_path / "whole.arrow"), table.schema) as writer:
        writer.write_table(table)
    data = (tmp_path / "whole.arrow").read_bytes()
    (tmp_path / "cut.arrow").write_bytes(data[: len(data) // 2])
    with pytest.raises(ManifestError) as info:
        read_manifest(tmp_path / "cut.arrow")
    assert "cannot parse cut.arrow" in info.value.problems[0] and "not an Arrow IPC file" not in info.value.problems[0]


def test_converting_to_a_path_under_a_file_names_the_output_not_the_source(tmp_path):
    from polymodal.errors import OptionError

    pd.DataFrame({"text": ["a"], "y": [0]}).to_csv(tmp_path / "m.csv", index=False)
    (tmp_path / "base.yaml").write_text("task: classification\n")
    out = tmp_path / "base.yaml" / "x.arrow"
    with pytest.raises(OptionError) as info:
        convert_manifest(tmp_path / "m.csv", out)
    assert info.value.problems == [f"output {out}: {tmp_path / 'base.yaml'} is a file, not a folder"]
    result = CliRunner().invoke(app, ["manifest", "convert", str(tmp_path / "m.csv"), str(out)])
    assert result.exit_code == 2 and "is a file, not a folder" in result.output and "m.csv" not in result.output


def test_the_convert_command(tmp_path):
    source = tmp_path / "m.parquet"
    pd.DataFrame({"text": ["a b", "c"], "y": [0, 1]}).to_parquet(source)
    runner = CliRunner()
    result = runner.invoke(app, ["manifest", "convert", str(source), str(tmp_path / "m.arrow")])
    assert result.exit_code == 0, result.output
    assert "wrote 2 rows" in result.output and read_manifest(tmp_path / "m.arrow").frame["text"].tolist() == ["a b", "c"]
    result = runner.invoke(app, ["manifest", "convert", str(source), str(tmp_path / "m.csv")])
    assert result.exit_code == 2 and "OUT: the converted manifest is an Arrow file, so its name must end in .arrow or " \
        ".feather; got 'm.csv'" in " ".join(result.output.split()) and "Invalid manifest" not in result.output


def test_the_manifest_and_its_arrow_file_can_move_together(tmp_path):
    data = tmp_path / "a" / "data"
    data.mkdir(parents=True)
    pd.DataFrame({"image": ["img/0.png"], "y": [1]}).to_parquet(data / "m.parquet")
    convert_manifest(data / "m.parquet", tmp_path / "a" / "m.arrow")
    (tmp_path / "a").rename(tmp_path / "b")
    manifest = read_manifest(tmp_path / "b" / "m.arrow")
    assert manifest.resolve("img/0.png") == str((tmp_path / "b" / "data" / "img/0.png").resolve())


def test_dictionary_parquet_columns_mixed_json_columns_and_arrow_streams_convert_or_read(tmp_path):
    table = pa.table({"colour": pa.array(["red", "blue", "red", "green"]).dictionary_encode(), "y": [0, 1, 0, 1]})
    pq.write_table(table, tmp_path / "d.parquet", row_group_size=2)  # a dictionary per row group
    convert_manifest(tmp_path / "d.parquet", tmp_path / "d.arrow")
    assert read_manifest(tmp_path / "d.arrow").frame["colour"].tolist() == ["red", "blue", "red", "green"]
    (tmp_path / "m.jsonl").write_text('{"code": 7, "y": 0}\n{"code": "A3", "y": 1}\n{"code": null, "y": 1}\n')
    convert_manifest(tmp_path / "m.jsonl", tmp_path / "m.arrow")  # numbers and text in one column: its text
    assert read_manifest(tmp_path / "m.arrow").frame["code"].tolist()[:2] == ["7", "A3"]
    assert read_manifest(tmp_path / "m.arrow").frame["code"].isna().tolist() == [False, False, True]
    with pa.ipc.new_stream(str(tmp_path / "s.arrow"), table.schema) as writer:  # the streaming format
        writer.write_table(table)
    assert read_manifest(tmp_path / "s.arrow").frame["y"].tolist() == [0, 1, 0, 1]


def test_converting_onto_a_folder_names_the_folder(tmp_path):
    pd.DataFrame({"text": ["a"], "y": [0]}).to_parquet(tmp_path / "m.parquet")
    (tmp_path / "taken.arrow").mkdir()
    with pytest.raises(IsADirectoryError, match="the Arrow manifest to write is a folder"):
        convert_manifest(tmp_path / "m.parquet", tmp_path / "taken.arrow")


def test_a_parquet_file_without_rows_is_refused_when_converted_not_when_read(tmp_path):
    from polymodal.errors import ManifestError

    pd.DataFrame({"text": pd.Series([], dtype=str), "y": pd.Series([], dtype=int)}).to_parquet(tmp_path / "e.parquet")
    with pytest.raises(ManifestError, match="e.parquet has no rows"):
        convert_manifest(tmp_path / "e.parquet", tmp_path / "e.arrow")
    assert not (tmp_path / "e.arrow").exists()


def test_converting_a_manifest_by_its_config_imports_no_torch():
    """`polymodal manifest convert` over a million rows should not pay torch's second and its memory."""
    import subprocess
    import sys

    code = ("import sys; from polymodal.config.columns import csv_columns; "
            "from polymodal.data.arrow_manifest import convert_manifest; import polymodal.cli.data; "
            "print('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
