"""The README's commands, paths and links are real (fast: no sweep, no Ray).

Every repository path the README (and docs/) names exists; every `launch.py SUBCOMMAND` it shows
is a subcommand of the CLI's parser and every `--flag` after it is one of that subcommand's
flags; every spec it names parses; every relative Markdown link resolves, anchors included.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
import yaml
from finesweep.search.cli import _parser
from finesweep.search.spec import parse_spec

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
MAX_README_LINES = 250

# A repository path: spaces/..., examples/..., benchmarks/..., docs/..., and the code's own
# folders (not part of a longer path such as runs/x/spaces, nor a module path like benchmarks.overhead).
REPO_PATH = re.compile(r"(?<![\w./-])((?:spaces|examples|benchmarks|docs|search|models|scripts|tests|\.ci)/[\w./-]*)")
COMMAND = re.compile(r"launch\.py\s+([\w-]+)")
FLAG = re.compile(r"(?<![\w-])(--[a-z][\w-]*)")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _paths(text: str) -> set[str]:
    return {match.rstrip(".") for match in REPO_PATH.findall(text)}


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = _parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _commands(text: str) -> list[tuple[str, str, str]]:
    """(subcommand, its arguments, the line) for every `launch.py SUB ...` in the text. The
    arguments end at a shell comment, a closing backtick or the line's end; a trailing
    backslash continues them on the next line."""
    lines = text.splitlines()
    found = []
    for number, line in enumerate(lines):
        for match in COMMAND.finditer(line):
            rest = line[match.end():]
            follow = number
            while rest.rstrip().endswith("\\") and follow + 1 < len(lines):
                follow += 1
                rest = rest.rstrip()[:-1] + " " + lines[follow]
            rest = re.split(r"\s#|`", rest, maxsplit=1)[0]
            found.append((match.group(1), rest, line.strip()))
    return found


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    return {_slug(line.lstrip("#")) for line in _text(path).splitlines() if line.startswith("#")}


def test_readme_is_under_the_line_limit():
    lines = len(_text(README).splitlines())
    assert lines < MAX_README_LINES, f"README.md has {lines} lines; keep it under {MAX_README_LINES}"


@pytest.mark.parametrize("document", [README, *DOCS], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_repository_path_named_exists(document):
    missing = sorted(p for p in _paths(_text(document)) if not (ROOT / p).exists())
    assert not missing, f"{document.name} names paths that do not exist: {missing}"


def test_readme_shows_commands_and_every_one_is_a_real_subcommand_with_real_flags():
    subcommands = _subcommands()
    commands = _commands(_text(README))
    shown = {name for name, _, _ in commands}
    assert {"sweep", "status", "tensorboard", "export", "train", "init"} <= shown
    problems = _unknown_commands_and_flags(commands, subcommands)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("document", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_docs_commands_are_real_subcommands_with_real_flags(document):
    problems = _unknown_commands_and_flags(_commands(_text(document)), _subcommands())
    assert not problems, "\n".join(problems)


def _unknown_commands_and_flags(commands, subcommands) -> list[str]:
    problems = []
    for name, arguments, line in commands:
        if name not in subcommands:
            problems.append(f"unknown subcommand {name!r} in: {line}")
            continue
        known = set(subcommands[name]._option_string_actions)
        problems += [f"{name} has no {flag} (in: {line})" for flag in FLAG.findall(arguments) if flag not in known]
    return problems


def test_every_spec_the_readme_names_parses():
    specs = sorted(p for p in _paths(_text(README)) if p.endswith((".yaml", ".yml")) and not p.startswith("docs/"))
    assert "spaces/digits_cnn.yaml" in specs and "examples/wine/sweep.yaml" in specs
    for spec in specs:
        parse_spec(ROOT / spec)  # raises SpecError listing every problem


def test_the_spec_shown_for_your_own_model_is_the_wine_example():
    """The README's YAML block that starts with `name: wine_mlp` is examples/wine/sweep.yaml
    (comments aside), so the two cannot drift apart."""
    blocks = re.findall(r"```yaml\n(.*?)```", _text(README), flags=re.S)
    shown = [yaml.safe_load(b) for b in blocks if b.startswith("name: wine_mlp")]
    assert shown, "README shows no spec starting with `name: wine_mlp`"
    assert shown[0] == yaml.safe_load(_text(ROOT / "examples/wine/sweep.yaml"))


@pytest.mark.parametrize("document", [README, *DOCS], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(document):
    problems = []
    for target in LINK.findall(_text(document)):
        if "://" in target or target.startswith("mailto:"):
            continue
        file_part, _, anchor = target.partition("#")
        path = (document.parent / file_part).resolve() if file_part else document
        if not path.exists():
            problems.append(f"{target}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
            problems.append(f"{target}: no heading with anchor #{anchor} in {path.name}")
    assert not problems, f"{document.name}: " + "; ".join(problems)


def test_readme_links_every_docs_file():
    linked = {(README.parent / t.partition("#")[0]).resolve() for t in LINK.findall(_text(README))}
    assert DOCS and {d.resolve() for d in DOCS} <= linked


def test_the_setup_commands_are_make_targets():
    makefile = _text(ROOT / "Makefile")
    for target in ("demo", "test", "test-fast"):
        assert f"make {target}" in _text(README)
        assert re.search(rf"^{target}:", makefile, flags=re.M), f"Makefile has no `{target}` target"
