"""The deployment commands: export, serve (without binding a port) and the resumable predict."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from polymodal.cli import app
from polymodal.cli import deploy as commands
from polymodal.errors import OptionError
from polymodal.evaluation.data import sample_rows

runner = CliRunner()
real_check_address = commands.check_address


@pytest.fixture(autouse=True)
def no_port_probe(monkeypatch):
    """These tests never bind a port (the default 8000 may be taken on a test machine)."""
    monkeypatch.setattr(commands, "check_address", lambda host, port: None)


def test_an_address_that_cannot_be_served_is_refused_before_loading():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OptionError, match=rf"^--port: cannot listen on 127.0.0.1:{port}.*choose another --port"):
            real_check_address("127.0.0.1", port)
    with pytest.raises(OptionError, match="^--host: '999.1.1.1' is not an address"):
        real_check_address("999.1.1.1", 8000)


def test_serve_names_a_taken_port_or_a_bad_host_as_an_option_not_a_config(exported, monkeypatch):
    """No config file is involved: the message names the option, not an "Invalid config"."""
    monkeypatch.setattr(commands, "check_address", real_check_address)
    monkeypatch.setattr(commands, "run_server", lambda app, settings: pytest.fail("a refused address was served"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(app, ["serve", str(exported[0]), "--port", str(port)])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: --port: cannot listen on 127.0.0.1:{port} (")
    assert "Invalid config" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    result = runner.invoke(app, ["serve", str(exported[0]), "--host", "999.1.1.1"])
    assert result.exit_code == 2 and result.stderr.startswith("error: --host: '999.1.1.1' is not an address")
    assert "Invalid config" not in result.stderr


def test_every_address_a_host_name_resolves_to_is_probed(monkeypatch):
    """uvicorn listens on each address of a name (asyncio's create_server): a port taken on the
    second is refused too, and an address family the machine lacks is skipped."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.2", 0))
        taken.listen()
        port = taken.getsockname()[1]
        entry = (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "")
        monkeypatch.setattr(socket, "getaddrinfo", lambda host, p, **kw: [
            (*entry, ("127.0.0.1", p)), (*entry, ("127.0.0.2", p))])
        with pytest.raises(OptionError, match=rf"cannot listen on twohomes:{port}.*another program is using it"):
            real_check_address("twohomes", port)
        monkeypatch.setattr(socket, "getaddrinfo", lambda host, p, **kw: [
            (*entry, ("127.0.0.1", p)), (*entry, ("192.0.2.1", p))])  # TEST-NET: not this machine's
        real_check_address("twohomes", port)  # 127.0.0.1 is free; the absent address is skipped


def test_export_command_writes_and_reports(trained, dataset, tmp_path):
    _, run = trained
    out = tmp_path / "exp"
    result = runner.invoke(app, ["export", str(run), "--data", str(dataset["test"]), "--out", str(out), "--rows", "12"])
    assert result.exit_code == 0, result.output
    assert "parity on 12 manifest rows" in result.output and "numpy runtime + ONNX vs eager predictor" in result.output
    meta = json.loads((out / "deploy.json").read_text())
    assert meta["parity"]["rows"] == 24 and meta["graph"]["file"] == "model.onnx"


def test_export_user_errors_exit_2(trained, tmp_path):
    _, run = trained
    result = runner.invoke(app, ["export", str(run), "--format", "tflite", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "unknown export format 'tflite'" in result.output
    result = runner.invoke(app, ["export", str(tmp_path / "missing")])
    assert result.exit_code == 2 and f"run folder not found: {tmp_path / 'missing'}" in result.output


def test_export_refuses_what_no_data_can_fix_before_naming_the_manifest(trained, retrieval_run, tmp_path):
    """A task without an exported graph, or an ``--out`` holding other files, is refused before the
    recorded manifest is announced (and read)."""
    _, run = trained
    result = runner.invoke(app, ["export", str(retrieval_run)])
    assert result.exit_code == 2 and "export is not available for task 'retrieval'" in result.stderr
    assert "checking the export" not in result.output
    assert not (retrieval_run / "export").exists()
    result = runner.invoke(app, ["export", str(run), "--out", str(run / "plots")])
    assert result.exit_code == 2 and "holds files that are not part of an export" in result.stderr
    assert "checking the export" not in result.output
    result = runner.invoke(app, ["export", str(run), "--format", "torchscript", "--quantize", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "--quantize needs --format onnx" in result.stderr
    assert "checking the export" not in result.output and not (tmp_path / "x").exists()


@pytest.mark.parametrize("inside", [False, True])
def test_export_into_a_file_is_refused_as_every_out_is_before_the_manifest(trained, tmp_path, inside):
    """``--out base.yaml/exp`` said "File exists: base.yaml" (making the staging folder); both
    ways now read as predict's "--out: base.yaml is a file, not a folder"."""
    _, run = trained
    taken = tmp_path / "base.yaml"
    taken.write_text("mine")
    result = runner.invoke(app, ["export", str(run), "--out", str(taken / "exp" if inside else taken)])
    assert result.exit_code == 2, result.output
    assert result.stderr == f"error: --out: {taken} is a file, not a folder\n"
    assert "checking the export" not in result.output and taken.read_text() == "mine"


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc, where no file can be made")
def test_export_into_a_folder_that_cannot_be_written_names_the_option(trained):
    """It named the hidden staging folder: "No such file or directory: /proc/.tmp-<hex>-exp"."""
    _, run = trained
    result = runner.invoke(app, ["export", str(run), "--out", "/proc/exp"])
    assert result.exit_code == 2, result.output
    assert result.stderr == "error: --out: the folder /proc cannot be written (No such file or directory)\n"
    assert "checking the export" not in result.output


def test_predict_resume_of_a_finished_prediction_and_an_unwritable_out_are_one_line(trained, dataset, tmp_path):
    _, run = trained
    out = tmp_path / "preds.csv"
    args = ["predict", str(run), "--data", str(dataset["test"]), "--out", str(out)]
    assert runner.invoke(app, args).exit_code == 0
    result = runner.invoke(app, [*args, "--resume"])
    assert result.exit_code == 2, result.output
    assert result.stderr == (f"error: --resume: {out} is finished (every row predicted); nothing to resume: give "
                             "--overwrite to predict again\n")
    if Path("/proc/self").is_dir():
        result = runner.invoke(app, [*args[:-1], "/proc/p.csv"])
        assert result.exit_code == 2, result.output
        assert result.stderr == "error: --out: the folder /proc cannot be written (No such file or directory)\n"


def test_serve_refuses_a_run_without_an_exported_graph_naming_serving(retrieval_run, monkeypatch):
    monkeypatch.setattr(commands, "run_server", lambda app, settings: pytest.fail("a retrieval run was served"))
    result = runner.invoke(app, ["serve", str(retrieval_run)])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: serving is not available for task 'retrieval': a task 'retrieval' model "
                                    "maps rows into a shared space and makes no predictions")
    assert "export is not available" not in result.stderr and "checking the export" not in result.output



def test_serve_quantized_exports_the_int8_graph_and_names_a_cluttered_export_folder(late_run, tmp_path, monkeypatch):
    import shutil

    served = []
    monkeypatch.setattr(commands, "run_server", lambda app, settings: served.append(app))
    _, run = late_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("export"))
    result = runner.invoke(app, ["serve", str(copy), "--quantized"])
    assert result.exit_code == 0, result.output
    assert served and (copy / "export" / "model.int8.onnx").is_file()  # exported with its int8 graph, then served
    (copy / "export" / "model.int8.onnx").unlink()  # as an export made without --quantize
    for target, advice in ((copy, f"'polymodal export {copy} --quantize'"),  # the run, or its export folder
                           (copy / "export", "an export made with --quantize")):
        result = runner.invoke(app, ["serve", str(target), "--quantized"])
        said = " ".join(result.stderr.split())
        assert result.exit_code == 2 and "--quantized serves the int8 graph, and" in said and advice in said, said
    shutil.rmtree(copy / "export")
    (copy / "export").mkdir()
    (copy / "export" / "notes.txt").write_text("mine")
    result = runner.invoke(app, ["serve", str(copy)])
    assert result.exit_code == 2 and "serving exports the run into it" in result.stderr
    assert "--out must name" not in result.stderr  # serve has no --out of its own

def test_an_export_onnxruntime_cannot_run_is_one_line_not_a_traceback(late_run, tmp_path, monkeypatch):
    from polymodal.models.fusion.late import LateFusion

    from .test_export import _late_forward_with_where_on_bools

    _, run = late_run
    monkeypatch.setattr(LateFusion, "forward", _late_forward_with_where_on_bools)
    result = runner.invoke(app, ["export", str(run), "--out", str(tmp_path / "exp")])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    assert result.stderr.startswith("error: onnxruntime cannot run the exported graph: [ONNXRuntimeError]")
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "exp").exists()


def test_a_late_fusion_run_exports_from_the_command_line(late_run, tmp_path):
    _, run = late_run
    result = runner.invoke(app, ["export", str(run), "--out", str(tmp_path / "exp")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "exp" / "deploy.json").read_text())["parity"]["graph_max_abs_diff"] <= 1e-4


def test_serve_binds_loopback_and_reads_the_token_from_the_environment(exported, monkeypatch):
    folder, _ = exported
    started = {}
    monkeypatch.setattr(commands, "run_server", lambda app, settings: started.update(app=app, settings=settings))
    result = runner.invoke(app, ["serve", str(folder.parent)], env={"POLYMODAL_TOKEN": "abc"})
    assert result.exit_code == 0, result.output
    settings = started["settings"]
    assert settings.host == "127.0.0.1" and settings.port == 8000 and settings.token == "abc"
    assert "serving" in result.output and str(folder) in result.output
    result = runner.invoke(app, ["serve", str(folder), "--host", "0.0.0.0"], env={"POLYMODAL_TOKEN": ""})
    assert "without a token (--token-file, POLYMODAL_TOKEN)" in result.output


def test_serve_reads_the_token_from_a_file_and_warns_of_one_on_the_command_line(exported, monkeypatch, tmp_path):
    """A --token on the command line is in ps for every local user; POLYMODAL_TOKEN and
    --token-file keep it out."""
    folder, _ = exported
    started = {}
    monkeypatch.setattr(commands, "run_server", lambda app, settings: started.update(settings=settings))
    secret = tmp_path / "token"
    secret.write_text("  s3cret \nnot the token\n")
    for env in ({}, {"POLYMODAL_TOKEN": "from-env"}):  # the file given on the command line wins
        result = runner.invoke(app, ["serve", str(folder), "--token-file", str(secret)], env=env)
        assert result.exit_code == 0, result.output
        assert started.pop("settings").token == "s3cret" and "warning:" not in result.output
    secret.write_text("\ufeffs3cret\n", encoding="utf-8")  # a byte-order mark a Windows editor wrote
    runner.invoke(app, ["serve", str(folder), "--token-file", str(secret)])
    assert started.pop("settings").token == "s3cret"
    result = runner.invoke(app, ["serve", str(folder)], env={"POLYMODAL_TOKEN": "from-env"})
    assert started.pop("settings").token == "from-env" and "warning:" not in result.output
    result = runner.invoke(app, ["serve", str(folder), "--token", "typed"])
    assert result.exit_code == 0 and started.pop("settings").token == "typed"
    warned = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warned == ["warning: --token on the command line is shown to every user of this machine (ps, /proc); set "
                      "POLYMODAL_TOKEN or give --token-file instead"]


@pytest.mark.parametrize(("content", "said"), [
    (None, "--token-file: cannot read {path}: No such file or directory"),
    ("", "--token-file: the first line of {path} is empty"),
    ("   \nsecond line\n", "--token-file: the first line of {path} is empty"),
    (b"\xff\xfe\n", "--token-file: cannot read {path}: 'utf-8' codec can't decode"),
    ("folder", "--token-file: cannot read {path}: Is a directory"),
])
def test_serve_refuses_a_token_file_it_cannot_use_before_loading_the_model(exported, monkeypatch, tmp_path, content,
                                                                           said):
    folder, _ = exported
    monkeypatch.setattr(commands, "run_server", lambda app, settings: pytest.fail("served"))
    path = tmp_path / "token"
    if content == "folder":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    result = runner.invoke(app, ["serve", str(folder), "--token-file", str(path)])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: " + said.format(path=path)), result.stderr
    both = runner.invoke(app, ["serve", str(folder), "--token", "t", "--token-file", str(path)])
    assert both.exit_code == 2 and "--token and --token-file both give the token; give one of them" in both.stderr


def test_serve_rejects_bad_limits(exported, monkeypatch):
    folder, _ = exported
    monkeypatch.setattr(commands, "run_server", lambda app, settings: None)
    result = runner.invoke(app, ["serve", str(folder), "--max-batch", "0"])
    assert result.exit_code == 2 and "--max-batch" in result.output and "got 0" in result.output
    assert result.stderr.startswith("error: --max-batch: ") and "Invalid config" not in result.stderr


def forget_manifests(run) -> None:
    """Make ``run`` a run fitted on DataFrames: its metrics.json records no manifest."""
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["training"] = {k: v for k, v in metrics["training"].items() if not k.endswith("_manifest")}
    (run / "metrics.json").write_text(json.dumps(metrics))


def copy_run(run, to):
    shutil.copytree(run, to, ignore=shutil.ignore_patterns("export", "checkpoints", "logs", "plots", "report.html"))
    return to


def test_torchscript_goes_beside_the_onnx_export_that_serve_runs(trained, dataset, tmp_path, monkeypatch):
    """``export --format torchscript`` replaced RUN/export, and 'serve RUN' then found no ONNX graph;
    its default folder is RUN/export_torchscript, and the module it writes is for inference."""
    import numpy as np
    import torch

    from polymodal.deploy.runtime import Runtime

    run = copy_run(trained[1], tmp_path / "run")
    for fmt in ("onnx", "torchscript"):
        result = runner.invoke(app, ["export", str(run), "--format", fmt, "--data", str(dataset["test"]), "--rows", "6"])
        assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (run / "export").iterdir()) == ["deploy.json", "model.onnx"]
    assert sorted(p.name for p in (run / "export_torchscript").iterdir()) == ["deploy.json", "model.torchscript.pt"]
    served = []
    monkeypatch.setattr(commands, "run_server", lambda app, settings: served.append(app))
    result = runner.invoke(app, ["serve", str(run)])
    assert result.exit_code == 0 and served, result.output
    meta = json.loads((run / "export_torchscript" / "deploy.json").read_text())
    names = [i["name"] for i in meta["graph"]["inputs"]]  # the module's arguments, in order
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated, not removed
        module = torch.jit.load(str(run / "export_torchscript" / meta["graph"]["torchscript_file"]))
    runtime = Runtime.load(run / "export")
    feeds = runtime.transform([{"notes": "blue large", "labs": {"x1": 2.0, "color": "red"}}, {"notes": "red small"}])
    tensors = {n: torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in names}
    positional = module(*tensors.values())  # grad mode on, as a caller's default
    by_keyword = module(**{n.replace(".", "_"): t for n, t in tensors.items()})
    assert torch.is_grad_enabled() and not positional.requires_grad and positional.grad_fn is None
    assert torch.equal(positional, by_keyword)
    np.testing.assert_allclose(positional.numpy(), runtime.run(feeds), atol=1e-4)
    assert all(p.requires_grad for p in trained[0].net.parameters())  # the predictor still trains


def test_export_without_data_checks_the_rows_of_the_manifest_the_run_recorded(trained, dataset, tmp_path):
    _, run = trained
    metrics = json.loads((run / "metrics.json").read_text())["training"]
    assert metrics["train_manifest"] == str(dataset["train"].resolve())
    assert metrics["valid_manifest"] == str(dataset["test"].resolve()) and "test_manifest" not in metrics
    result = runner.invoke(app, ["export", str(run), "--out", str(tmp_path / "exp"), "--rows", "8"])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())  # rich wraps long lines
    assert f"checked the export on the run's valid manifest {dataset['test'].resolve()}" in output
    assert "parity on 8 manifest rows" in output and "numpy runtime + ONNX vs eager predictor" in output
    assert "synthetic" not in output


def test_a_recorded_manifest_that_changed_since_the_fit_is_named_in_a_warning(trained, dataset, tmp_path):
    _, run = trained
    copy = copy_run(run, tmp_path / "run")
    held_out = tmp_path / "valid.csv"
    shutil.copy(dataset["test"], held_out)
    metrics = json.loads((copy / "metrics.json").read_text())
    assert metrics["training"]["valid_manifest_key"] == metrics["training"]["valid_manifest_key"].lower()
    metrics["training"]["valid_manifest"] = str(held_out)  # the same content: no warning
    (copy / "metrics.json").write_text(json.dumps(metrics))
    from polymodal import MultimodalPredictor

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert MultimodalPredictor.load(copy).recorded_manifest() == ("valid", held_out)
    frame = pd.read_csv(held_out)
    frame.iloc[:-1].to_csv(held_out, index=False)  # regenerated: one row fewer
    with pytest.warns(UserWarning, match=r"valid manifest .*valid.csv changed since the fit"):
        assert MultimodalPredictor.load(copy).recorded_manifest() == ("valid", held_out)


def test_export_of_a_run_without_manifests_warns_that_only_synthetic_arrays_were_checked(trained, tmp_path):
    _, run = trained
    copy = copy_run(run, tmp_path / "run")
    forget_manifests(copy)
    with pytest.warns(UserWarning, match=r"the export was checked on synthetic arrays only .*give held-out rows "
                                         r"\(--data\) to check both"):
        result = runner.invoke(app, ["export", str(copy), "--out", str(tmp_path / "exp"), "--rows", "8"])
    assert result.exit_code == 0, result.output
    assert "parity on synthetic arrays" in " ".join(result.output.split())


def test_export_reads_only_the_rows_its_checks_use(trained, dataset, tmp_path):
    _, run = trained
    frame = pd.read_csv(dataset["test"])
    for column in ("image", "audio"):
        frame[column] = [str(dataset["root"] / p) if isinstance(p, str) else p for p in frame[column]]
    unchecked = sorted(set(range(len(frame))) - set(sample_rows(len(frame), 8, seed=0).tolist()))[-1]
    frame.loc[unchecked, "image"] = str(tmp_path / "gone.png")  # not among the --rows checked: never decoded
    frame.to_csv(tmp_path / "held_out.csv", index=False)
    result = runner.invoke(app, ["export", str(run), "--data", str(tmp_path / "held_out.csv"), "--out",
                                 str(tmp_path / "exp"), "--rows", "8"])
    assert result.exit_code == 0, result.output
    assert "parity on 8 manifest rows" in " ".join(result.output.split())


def test_serve_falls_back_to_synthetic_arrays_when_the_recorded_files_moved(trained, dataset, tmp_path, monkeypatch):
    _, run = trained
    copy = copy_run(run, tmp_path / "run")
    frame = pd.read_csv(dataset["test"])
    frame["image"] = [str(tmp_path / "moved" / p) if isinstance(p, str) else p for p in frame["image"]]
    frame.to_csv(tmp_path / "valid.csv", index=False)
    metrics = json.loads((copy / "metrics.json").read_text())
    metrics["training"] = {**metrics["training"], "valid_manifest": str(tmp_path / "valid.csv")}
    (copy / "metrics.json").write_text(json.dumps(metrics))
    monkeypatch.setattr(commands, "run_server", lambda app, settings: None)
    with pytest.warns(UserWarning) as caught:
        result = runner.invoke(app, ["serve", str(copy)])
    assert result.exit_code == 0, result.output
    said = [str(w.message) for w in caught]
    assert any("valid manifest" in m and "changed since the fit" in m for m in said)  # another file than the fit's
    assert any(m.startswith(f"the run's valid manifest {tmp_path / 'valid.csv'} cannot be read any more") and
               "file not found" in m for m in said)
    assert any(m.startswith("the export was checked on synthetic arrays only") and "'polymodal export RUN --data "
               "HELD_OUT.csv' before serving it" in m for m in said)  # serve has no --data of its own
    assert (copy / "export" / "deploy.json").is_file()


@pytest.mark.parametrize("recorded", [True, False])
def test_serve_exports_a_run_without_export(trained, dataset, tmp_path, monkeypatch, recorded):
    _, run = trained
    copy = copy_run(run, tmp_path / "run")
    if not recorded:
        forget_manifests(copy)
    monkeypatch.setattr(commands, "run_server", lambda app, settings: None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = runner.invoke(app, ["serve", str(copy)])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert (copy / "export" / "deploy.json").is_file() and f"serving {copy / 'export'}" in output
    if recorded:
        assert f"the run's valid manifest {dataset['test'].resolve()}" in output and "manifest rows" in output
    synthetic = [w for w in caught if str(w.message).startswith("the export was checked on synthetic arrays only")]
    assert bool(synthetic) is not recorded


def test_serve_max_image_pixels_reaches_the_settings(exported, monkeypatch):
    folder, _ = exported
    started = {}
    monkeypatch.setattr(commands, "run_server", lambda app, settings: started.update(settings=settings))
    result = runner.invoke(app, ["serve", str(folder), "--max-image-pixels", "1024"])
    assert result.exit_code == 0, result.output
    assert started["settings"].max_image_pixels == 1024
    assert runner.invoke(app, ["serve", str(folder)]).exit_code == 0
    assert started["settings"].max_image_pixels == 4096 * 4096
    result = runner.invoke(app, ["serve", str(folder), "--max-image-pixels", "0"])
    assert result.exit_code == 2 and "--max-image-pixels" in result.output and "got 0" in result.output


def test_predict_command_streams_to_parquet(trained, dataset, tmp_path):
    _, run = trained
    out = tmp_path / "p.parquet"
    result = runner.invoke(app, ["predict", str(run), "--data", str(dataset["test"]), "--out", str(out),
                                 "--chunk-rows", "4"])
    assert result.exit_code == 0, result.output
    assert "18 predictions written" in result.output
    assert pd.read_parquet(out)["row"].tolist() == list(range(18))
    result = runner.invoke(app, ["predict", str(run), "--data", str(dataset["test"]), "--out", str(tmp_path / "p.txt")])
    assert result.exit_code == 2 and "got 'p.txt'" in result.output


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")


def test_replacing_a_run_removes_the_exports_the_command_line_wrote_into_it(trained, tmp_path):
    import shutil

    predictor, run = trained
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("export*"))
    for fmt in ("onnx", "torchscript"):
        result = runner.invoke(app, ["export", str(copy), "--format", fmt, "--rows", "4"])
        assert result.exit_code == 0, result.output
    exports = sorted(p.name for p in copy.glob("export*"))
    assert exports == ["export", "export_torchscript"]
    predictor.save(copy, overwrite=True)  # another model replaces the run: no export of the old one survives
    assert not list(copy.glob("export*"))


def test_serving_a_runs_export_that_predates_on_error_warns_when_the_run_reads_bad_numbers_as_missing(exported, tmp_path):
    """An export written before deploy.json recorded data.on_error refuses a table's '>200'; serving
    it for a run that reads such a cell as missing says so, and how to align them."""
    run = shutil.copytree(exported[0].parent, tmp_path / "run")
    meta_file = run / "export" / "deploy.json"
    meta = json.loads(meta_file.read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        commands.check_runs_export(run)  # the export records it: nothing to say
        meta_file.write_text(json.dumps({k: v for k, v in meta.items() if k != "on_error"}))
        commands.check_runs_export(run)  # data.on_error: raise, as the export does: nothing to say either
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("on_error: raise", "on_error: missing"))
    with pytest.warns(UserWarning, match=r"predates exports recording data.on_error: it refuses a table's cell that is "
                                         r"no number .*export it again \('polymodal export "):
        commands.check_runs_export(run)


def test_serving_a_runs_export_imports_no_torch(exported):
    """What `polymodal serve RUN` does before the server runs (the export found and checked against
    the run, the runtime loaded, the app built) needs neither torch nor the model: the service
    starts in a fraction of a second and a fraction of the memory."""
    run = exported[0].parent
    script = ("import sys; sys.modules['torch'] = None\n"  # any 'import torch' now raises ImportError
              "from pathlib import Path\n"
              "from polymodal.cli.deploy import export_folder\n"
              "from polymodal.deploy.runtime import Runtime\n"
              "from polymodal.deploy.server import create_app\n"
              "from polymodal.deploy.settings import ServeSettings\n"
              f"folder = export_folder(Path({str(run)!r}))\n"
              "create_app(Runtime.load(folder), ServeSettings())\n"
              "print(folder)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == str(run / "export")


def test_serve_refuses_a_token_no_header_carries_as_written_without_echoing_it(exported, monkeypatch, tmp_path):
    folder, _ = exported
    monkeypatch.setattr(commands, "run_server", lambda app, settings: pytest.fail("served"))
    secret = tmp_path / "token"
    secret.write_text("pässwort\n", encoding="utf-8")
    result = runner.invoke(app, ["serve", str(folder), "--token-file", str(secret)])
    assert result.exit_code == 2, result.output
    assert "--token: the bearer token must be printable ASCII without spaces" in result.stderr
    assert "pässwort" not in result.output
