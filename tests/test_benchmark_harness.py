"""benchmarks/run.py: what it runs for the words and options it is given (no benchmark is run)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def load_run():
    sys.path.insert(0, str(BENCHMARKS))  # run.py's own imports
    try:
        spec = importlib.util.spec_from_file_location("benchmarks_run", BENCHMARKS / "run.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_an_options_value_is_never_read_as_a_benchmark_name():
    run = load_run()
    assert run.split_arguments(["--repeats", "3", "preprocess", "--work", "/w"]) == (
        ["preprocess"], ["--repeats", "3", "--work", "/w"], [])
    assert run.split_arguments(["--repeats", "3", "nosuch"]) == ([], ["--repeats", "3"], ["nosuch"])
    assert run.split_arguments(["transfer_digits", "--methods", "DANN", "CORAL", "--quick", "cache"]) == (
        ["transfer_digits", "cache"], ["--methods", "DANN", "CORAL", "--quick"], [])
    assert run.split_arguments(["--work", "cache", "preprocess"]) == (["preprocess"], ["--work", "cache"], [])
    assert run.split_arguments(["pneumonia_transfer", "--skip", "cache", "overhead"]) == (
        ["pneumonia_transfer", "overhead"], ["--skip", "cache"], [])  # cache: a --skip choice, overhead: a name


def test_a_variant_keeps_its_own_options_after_those_passed_through():
    run = load_run()
    runs = run.invocations(["scaling"], ["--epochs", "2", "--manifest", "csv"])
    assert runs == [("scaling", ["--epochs", "2", "--manifest", "csv"]),
                    ("scaling", ["--epochs", "2", "--manifest", "csv", "--manifest", "arrow"])]


def test_results_measured_on_a_busy_machine_say_so_in_benchmarks_md(tmp_path, monkeypatch):
    import json

    run = load_run()
    monkeypatch.setattr(run, "HERE", tmp_path)
    (tmp_path / "results").mkdir()
    machine = {"cores": 2, "cpu": "x", "torch_threads": 2, "gpu": None, "versions": {}}
    for name, load in (("calm", {"start": 0.3, "end": 0.9}), ("loaded", {"start": 0.4, "end": 3.1})):
        (tmp_path / "results" / f"{name}.json").write_text(json.dumps({
            "title": name, "command": f"python benchmarks/{name}.py", "date": "2026-12-06",
            "machine": {**machine, "load_average": load}, "tables": {}, "notes": []}))
    sections = run.render().split("## ")
    calm, loaded = (next(s for s in sections if s.startswith(name)) for name in ("calm", "loaded"))
    assert "Other work held the machine" not in calm
    assert "Other work held the machine** (load average 0.4 at the start, 3.1 at the end)" in loaded
