"""docs/layout.md names every module of the package, so a newcomer finds each one there."""

from __future__ import annotations

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
