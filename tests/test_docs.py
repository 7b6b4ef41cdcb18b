"""The README's, the guides' (``docs/``) and the recipes' examples stay true: every YAML block is a
valid config (a fragment merged onto the README's first full config), every ``polymodal`` command
line names commands and options that exist, every Python block compiles, imports what exists and
calls methods the predictor has, and every relative link leads to a file and heading that exist."""

from __future__ import annotations

import ast
import copy
import re
import shlex
import textwrap
from pathlib import Path

import pytest
import typer
import yaml

from polymodal.cli import app
from polymodal.config import load_config
from polymodal.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "examples").glob("*/README.md")), *sorted((ROOT / "docs").glob("*.md"))]


def blocks(language: str) -> list[tuple[str, str]]:
    """(``file:line`` of the opening fence, body) of every fenced block of ``language``."""
    found = []
    for path in DOCUMENTS:
        lines = path.read_text(encoding="utf-8").splitlines()
        start = None
        for number, line in enumerate(lines, 1):
            if start is None and line.strip() == f"```{language}":
                start = number
            elif start is not None and line.strip() == "```":
                body = textwrap.dedent("\n".join(lines[start:number - 1]))  # a block inside a list is indented
                found.append((f"{path.relative_to(ROOT)}:{start}", body))
                start = None
    return found


def merged(base: dict, fragment: dict) -> dict:
    """``base`` with ``fragment``'s sections: a mapping section's entries (a modality, a train
    setting) replace those of the same name, the rest of the section stays."""
    out = copy.deepcopy(base)
    for key, value in fragment.items():
        out[key] = {**out[key], **value} if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


YAML_BLOCKS = blocks("yaml")
BASE = yaml.safe_load(YAML_BLOCKS[0][1])


def test_the_quick_start_config_is_the_readme_one():
    shipped = yaml.safe_load((ROOT / "examples" / "quickstart" / "config.yaml").read_text(encoding="utf-8"))
    assert shipped == BASE


def test_the_blocks_are_found():
    assert len(YAML_BLOCKS) >= 8 and len(blocks("python")) >= 4 and len(command_lines()) >= 40
    inline = [words for _, words in inline_command_lines()]
    assert len(inline) >= 50 and ["retrieve", "--same-modality"] in inline  # in docs/command-line.md's prose
    assert {"task", "target", "modalities"} <= set(BASE)


@pytest.mark.parametrize("where, text", YAML_BLOCKS, ids=[w for w, _ in YAML_BLOCKS])
def test_yaml_block_is_a_valid_config(where, text):
    load_config(merged(BASE, yaml.safe_load(text)))


def test_a_wrong_key_in_a_block_would_be_caught():
    with pytest.raises(ConfigError, match="fusion.dimm"):
        load_config(merged(BASE, {"fusion": {"name": "attention", "dimm": 3}}))


# ---------------------------------------------------------------- command lines


def command_lines() -> list[tuple[str, list[str]]]:
    """(where, words after ``polymodal``) of every ``polymodal`` command in the bash blocks, line
    continuations joined, comments and ``[...]`` brackets around optional parts removed."""
    found = []
    for where, text in blocks("bash"):
        for line in text.replace("\\\n", " ").splitlines():
            line = line.split("#", 1)[0].replace("[", " ").replace("]", " ")
            for part in re.split(r"^\s*polymodal\s|\s-m polymodal\.cli\s", line)[1:]:
                found.append((where, shlex.split(part)))
    return found


def inline_command_lines() -> list[tuple[str, list[str]]]:
    """(where, words after ``polymodal``) of every command in an inline code span of the prose:
    `` `polymodal train --resume` ``, or `` `train --resume` `` where the first word names a
    command (``[...]`` brackets and ``...`` removed)."""
    names = set(typer.main.get_command(app).commands)
    found = []
    for path in DOCUMENTS:
        text = path.read_text(encoding="utf-8")
        prose = re.sub(r"```.*?```", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)  # lines kept
        for match in re.finditer(r"`([^`\n]+)`", prose):
            span = match.group(1).removeprefix("polymodal ")
            if " " not in span or span.split(" ", 1)[0] not in names:
                continue
            where = f"{path.relative_to(ROOT)}:{prose.count(chr(10), 0, match.start()) + 1}"
            found.append((where, shlex.split(span.replace("[", " ").replace("]", " ").replace("...", " "))))
    return found


def resolve(words: list[str]):
    """The (typer's click) command the words name, groups followed, and the words after its name."""
    command = typer.main.get_command(app)
    while hasattr(command, "commands") and words and words[0] in command.commands:
        command, words = command.commands[words[0]], words[1:]
    return command, words


BLOCK_COMMANDS = command_lines()  # whole command lines, which a reader runs as written
COMMANDS = BLOCK_COMMANDS + inline_command_lines()


def problems(words: list[str]) -> list[str]:
    """What is wrong with ``polymodal WORDS...``: no such command, or options it does not have."""
    command, rest = resolve(words)
    known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    if hasattr(command, "commands") and not (rest and set(rest) <= known):  # a group's own option: --version
        return ["names no command"]
    options = [w.split("=", 1)[0] for w in rest if w.startswith("-") and not re.fullmatch(r"-\d.*", w)]
    return [f"{option} is not an option of it" for option in options if option not in known]


@pytest.mark.parametrize("where, words", COMMANDS, ids=[f"{w} {' '.join(c[:2])}" for w, c in COMMANDS])
def test_command_line_names_real_commands_and_options(where, words):
    assert not problems(words), f"{where}: 'polymodal {' '.join(words)}': {problems(words)}"


def test_datasets_prepared_exist():
    from polymodal.data.datasets import DATASETS

    named = [(where, words[2]) for where, words in BLOCK_COMMANDS if words[:2] == ["datasets", "prepare"]]
    assert len(named) >= 5
    for where, name in named:
        assert name in DATASETS, f"{where}: no built-in dataset '{name}'"


def test_a_document_prepares_another_dataset_into_a_folder_it_prepared_only_with_overwrite():
    """``datasets prepare`` refuses an --out holding an earlier preparation without --overwrite: a
    document that prepares two different datasets into one folder (the tune section's full
    av-digits into the quick start's 600 pairs) would stop its reader there."""
    prepared: dict[tuple[str, str], list[str]] = {}  # (document, --out) -> the first command's words
    clashes = []
    for where, words in BLOCK_COMMANDS:
        if words[:2] != ["datasets", "prepare"] or "--out" not in words:
            continue
        key = (where.split(":")[0], words[words.index("--out") + 1])
        first = prepared.setdefault(key, words)
        if first is not words and first != words and "--overwrite" not in words:
            clashes.append(f"{where}: --out {key[1]} was prepared before in {key[0]} by 'polymodal {' '.join(first)}'")
    assert not clashes, clashes


def test_a_wrong_command_or_option_would_be_caught():
    assert problems(["evaluate", "runs/x", "--robustnes", "--rows=3", "--seed", "-1"]) == ["--robustnes is not an option of it"]
    assert problems(["index", "runs/x"]) == ["names no command"]
    assert problems(["retrieve", "r", "--index", "i", "-k", "10", "--no-cca"]) == ["--no-cca is not an option of it"]


# ---------------------------------------------------------------- Python blocks

PYTHON_BLOCKS = blocks("python")


def root_name(node: ast.expr) -> str | None:
    """The name a chain of calls and attributes starts from (``C`` of ``C.load(p).fit(x)``)."""
    while isinstance(node, ast.Call | ast.Attribute):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


@pytest.mark.parametrize("where, text", PYTHON_BLOCKS, ids=[w for w, _ in PYTHON_BLOCKS])
def test_python_block_imports_and_calls_what_exists(where, text):
    """Imports resolve; a method called on an imported class, or on a name bound to one of its
    constructors (``pred = MultimodalPredictor.load(...)``), exists on that class. ``pred`` is a
    predictor where a block takes it from the one before."""
    import importlib
    import inspect

    from polymodal import MultimodalPredictor

    tree = ast.parse(text, filename=where)
    classes = {"pred": MultimodalPredictor}
    functions = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name), f"{where}: {node.module} has no {alias.name}"
                found = getattr(module, alias.name)
                if isinstance(found, type):
                    classes[alias.asname or alias.name] = found
                elif inspect.isfunction(found) and node.module.startswith("polymodal"):
                    functions[alias.asname or alias.name] = found
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            cls = classes.get(root_name(node.value))
            if cls is not None and root_name(node.value) != "pred":
                classes.update({t.id: cls for t in node.targets if isinstance(t, ast.Name)})
    checked = 0
    for node in ast.walk(tree):  # a polymodal function called with arguments it takes
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in functions:
            try:
                inspect.signature(functions[node.func.id]).bind(*node.args, **{k.arg: k.value for k in node.keywords})
            except TypeError as err:
                raise AssertionError(f"{where}: {node.func.id}(...) does not fit its signature: {err}") from None
            checked += 1
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in classes:
            cls = classes[node.value.id]
            assert hasattr(cls, node.attr), f"{where}: {cls.__name__} has no {node.attr}"
            checked += 1
    assert checked, f"{where}: no call on a known class to check"


def test_the_runs_a_documents_python_blocks_fit_go_to_folders_of_their_own():
    """The blocks of a document, run in order in one folder, do not fit into the same ``out``
    (the second would be refused: the folder holds a run)."""
    for path in DOCUMENTS:
        found = [re.findall(r"\bout=[\"']([^\"']+)", text) for where, text in PYTHON_BLOCKS
                 if where.startswith(f"{path.relative_to(ROOT)}:")]
        outs = [out for block in found for out in block]
        assert len(outs) == len(set(outs)), f"{path.relative_to(ROOT)}: python blocks fit into the same out: {outs}"


def test_a_function_called_with_an_argument_it_does_not_take_would_be_caught():
    text = "from polymodal.data.modalities.signal import cut_windows\ncut_windows(rec, 'out', windw=2048)\n"
    with pytest.raises(AssertionError, match="cut_windows.*does not fit its signature"):
        test_python_block_imports_and_calls_what_exists("a block", text)


# ---------------------------------------------------------------- lists kept by hand


def test_the_docs_list_every_registered_fusion_and_corruption():
    """A fusion or corruption added to its registry must reach the README's list of fusions and the
    robustness guide's table of corruptions (and the other way)."""
    import polymodal.models.fusion  # noqa: F401  (registers the fusions)
    from polymodal.evaluation.corruptions import CORRUPTIONS
    from polymodal.models.registry import FUSIONS

    readme = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    fusions = {cfg.model_fields["name"].default for cfg, _ in FUSIONS.items()}
    for text in (readme, (ROOT / "examples" / "quickstart" / "config.yaml").read_text(encoding="utf-8").splitlines()):
        comment = next(line for line in text if line.startswith("fusion: {name:")).split("#")[1]
        assert {name.strip() for name in comment.split("|")} == fusions
    row = next(line for line in readme if line.startswith("| fusion |"))
    assert set(re.findall(r"`(\w+)`", row)) >= fusions
    guide = (ROOT / "docs" / "robustness-and-attribution.md").read_text(encoding="utf-8").splitlines()
    for kind in {c.kind for c in CORRUPTIONS}:
        row = next(line for line in guide if line.startswith(f"| {kind} | `"))
        assert set(re.findall(r"`(\w+)`", row)) == set(CORRUPTIONS.names(kind)), kind


# ---------------------------------------------------------------- links


def outside_code(path: Path) -> list[str]:
    """The lines of a Markdown file outside its fenced blocks."""
    lines, fenced = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text: lower case, formatting and punctuation other than ``-``
    and ``_`` dropped, each space a ``-``."""
    text = re.sub(r"`|\*\*|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of a Markdown file's headings (a repeated heading's second is ``slug-1``...)."""
    found, seen = set(), {}
    for line in outside_code(path):
        heading = re.match(r"#{1,6}\s+(.*?)\s*$", line)
        if heading:
            base = slug(heading[1])
            found.add(base if base not in seen else f"{base}-{seen[base]}")
            seen[base] = seen.get(base, 0) + 1
    return found


def relative_links(path: Path) -> list[str]:
    """The targets of the Markdown links outside code (fenced blocks and inline spans) that are not
    URLs: ``docs/x.md#anchor``, ``#anchor``, ``../../README.md``..."""
    text = re.sub(r"`[^`\n]*`", "", "\n".join(outside_code(path)))
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    return [t for t in targets if not re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:", t)]


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    """What is wrong with each relative link of ``path``: no such file, or no such heading in it."""
    problems = []
    for target in relative_links(path):
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.exists():
            problems.append(f"{path.relative_to(root)}: {target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            problems.append(f"{path.relative_to(root)}: {target}: no heading with that anchor in {dest.name}")
    return problems


def test_every_relative_link_resolves():
    """Every link of the README, the guides and the recipes' READMEs to another file or a heading
    leads somewhere: the guides moved out of the README, so its old anchors must not linger."""
    assert sum(len(relative_links(path)) for path in DOCUMENTS) >= 60
    problems = [problem for path in DOCUMENTS for problem in broken_links(path)]
    assert not problems, problems


def test_a_broken_link_would_be_caught(tmp_path):
    assert slug("Decision threshold (two-class classifiers, multilabel labels)") == (
        "decision-threshold-two-class-classifiers-multilabel-labels")
    assert slug("Setting keys from the command line (`--set`)") == "setting-keys-from-the-command-line---set"
    assert slug("Speed, scale and distributed training") == "speed-scale-and-distributed-training"
    page = tmp_path / "page.md"
    page.write_text("# A page\n\n## Its part\n\nSee [here](#its-part), [there](#its-parts), [gone](gone.md),\n"
                    "[`x`](page.md#a-page) and `[not a link](nowhere.md)`.\n\n```\n[code](nowhere.md)\n```\n",
                    encoding="utf-8")
    assert broken_links(page, root=tmp_path) == ["page.md: #its-parts: no heading with that anchor in page.md",
                                  "page.md: gone.md: no such file"]
