"""docs/layout.md names every module of the package, so a newcomer finds each one there."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_every_module_has_a_line_in_the_layout() -> None:
    layout = (ROOT / "docs" / "layout.md").read_text(encoding="utf-8")
    sections = layout.split("\n## `polymodal/")
    listed = {}
    for section in sections[1:]:
        folder = section.split("`", 1)[0]
        listed[folder] = {line.split("`")[1] for line in section.splitlines() if line.startswith("| `")}
    missing = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "polymodal").rglob("*.py"))
               if p.name not in listed.get(f"{p.parent.relative_to(ROOT / 'polymodal')}/".replace("./", ""), set())]
    if missing:
        pytest.fail(f"modules without a line in docs/layout.md: {missing}")


# The layers of docs/layout.md, lowest first: a module imports from its own layer or lower ones.
LAYER = {"errors": 0, "utils": 0, "registry": 0, "pretrained": 0, "run_files": 0, "__version__": 0, "config": 1, "data": 2,
         "metrics": 2, "models": 3, "assets": 3, "training": 4, "runfolder": 5, "resume": 5, "estimator": 5, "multitask": 5,
         "fewshot": 5, "decision": 5, "predictor": 5, "anomaly": 6, "evaluation": 6, "retrieval": 6, "tune": 6, "compare": 6, "demo": 6,
         "deploy": 7, "cli": 8, "__init__": 9, "__main__": 9}
FACADE = "polymodal/predictor.py"  # MultimodalPredictor's methods that call the layer above, lazily:
FACADE_METHODS = {"from_config", "load", "fit", "_write_report", "explain", "embed", "evaluate_retrieval", "zero_shot"}


def _part(module: str) -> str:
    return module.split(".")[1] if "." in module else "__init__"


def test_no_module_imports_a_layer_above_its_own() -> None:
    upward = []
    for path in sorted((ROOT / "polymodal").rglob("*.py")):
        rel = path.relative_to(ROOT)
        source = _part(".".join(rel.with_suffix("").parts))
        tree = ast.parse(path.read_text(encoding="utf-8"))
        facade = {id(node) for method in ast.walk(tree) if isinstance(method, ast.FunctionDef)
                  and method.name in FACADE_METHODS for node in ast.walk(method)} if str(rel) == FACADE else set()
        facade |= {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)  # annotations only
                   and isinstance(block.test, ast.Name) and block.test.id == "TYPE_CHECKING" for node in ast.walk(block)}
        for node in ast.walk(tree):
            if not (isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("polymodal")):
                continue
            targets = [node.module] if node.module != "polymodal" else [f"polymodal.{a.name}" for a in node.names]
            for target in targets:
                if LAYER[_part(target)] <= LAYER[source]:
                    continue
                if id(node) in facade:
                    continue
                upward.append(f"{rel}:{node.lineno} imports {target}")
    assert not upward, upward


# What docs/layout.md says imports no torch: the numpy runtime ships without it, and the config
# and file helpers are read by it.
TORCH_FREE = ["polymodal.errors", "polymodal.run_files", "polymodal.config", "polymodal.deploy.runtime",
              "polymodal.deploy.requests", "polymodal.deploy.server", "polymodal.deploy.settings",
              "polymodal.deploy.microbatch", "polymodal.deploy.errors", "polymodal.deploy.origins",
              "polymodal.deploy.tasks"]
TORCH_FREE_PACKAGES = {"utils": {"device"}, "config": set(), "deploy/features": set()}


def test_the_torch_free_side_imports_without_torch() -> None:
    import subprocess
    import sys

    modules = list(TORCH_FREE)
    for package, allowed in TORCH_FREE_PACKAGES.items():
        modules += [f"polymodal.{package.replace('/', '.')}.{p.stem}" for p in sorted((ROOT / "polymodal" / package).glob("*.py"))
                    if p.stem not in allowed and p.stem != "__init__"]
    script = ("import importlib, sys\nsys.modules['torch'] = None\n"  # any 'import torch' now raises ImportError
              f"for name in {modules!r}:\n    importlib.import_module(name)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(modules) > 20  # the packages were found
