"""Reading user YAML safely: the one loader for specs, exports, ensembles and ``start_from``.

A file is refused before it is parsed when it is not a regular file, too large or not UTF-8,
and while it is parsed when it nests too deep, has too many nodes (an alias bomb) or carries a
tag that would build a Python object. The line of every key path comes back beside the data,
so a later check can say where a value was written; keys given twice are problems, not a
silent "last one wins".
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml
from finesweep.search.spec.problems import KeyPath, Problem, SpecError

MAX_SPEC_BYTES = 1 << 20
# Bounds the work of walking a spec whose aliases expand exponentially ("billion laughs"), and of
# composing a huge one: PyYAML needs seconds for 1 MiB of keys. A real spec has a few hundred nodes.
MAX_SPEC_NODES = 20_000
# A spec nests about five levels (space -> param -> when -> values). PyYAML's scanner slows
# quadratically with flow nesting and its composer recurses, so deeper input is refused early.
MAX_SPEC_DEPTH = 32

# The first line of the spec copy a run directory keeps: the folder of the spec it was copied from.
SPEC_DIR_RECORD = "#% spec_dir: "


def load_yaml(path: str | os.PathLike[str]) -> tuple[Any, dict[KeyPath, int]]:
    """Safely load a YAML file and the line of every key path; raise SpecError on bad YAML."""
    data, marks, duplicates = parse_yaml_text(str(path), read_text(path))
    if duplicates:
        raise SpecError(str(path), duplicates)
    return data, marks


def read_text(path: str | os.PathLike[str]) -> str:
    """The text of a YAML file, within the size limit and as UTF-8; SpecError otherwise."""
    source = str(path)
    try:
        # Check the file type before opening: opening a FIFO blocks until a writer comes.
        other = _other_file_kind(os.stat(path).st_mode)
        if other is not None:
            raise SpecError(source, [Problem((), "a regular YAML file", other)])
        with open(path, "rb") as file:
            # Read one byte past the limit rather than trusting the size: a FIFO or /dev/zero has none.
            raw = file.read(MAX_SPEC_BYTES + 1)
    except OSError as error:
        raise SpecError(source, [Problem((), "a readable YAML file", error.strerror or str(error))]) from None
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError(source, [Problem((), f"a spec of at most {MAX_SPEC_BYTES} bytes",
                                         f"more than {MAX_SPEC_BYTES} bytes",
                                         "a sweep spec is a short text file")])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SpecError(source, [Problem((), "UTF-8 text", "binary data")]) from None


def parse_yaml_text(source: str, text: str) -> tuple[Any, dict[KeyPath, int], list[Problem]]:
    """YAML text parsed with the spec loader's limits (size, depth, aliases, safe tags only);
    the line of every key path and the keys given twice come back beside the data."""
    try:
        _check_size(source, text)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        marks: dict[KeyPath, int] = {}
        duplicates: list[Problem] = []
        if node is not None:
            marks, duplicates, within_budget = _line_marks(node)
            if not within_budget:
                raise SpecError(source, [Problem((), f"at most {MAX_SPEC_NODES} YAML nodes",
                                                 "more (aliases expanding without bound?)",
                                                 "write the spec out without nested aliases")])
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark else None
        reason = " ".join(str(part) for part in (error.context, error.problem) if part)
        if "could not determine a constructor" in reason:
            reason += "; YAML tags that build Python objects are never loaded"
        raise SpecError(source, [Problem((), "valid YAML", reason, line=line)]) from None
    except yaml.YAMLError as error:
        raise SpecError(source, [Problem((), "valid YAML", str(error))]) from None
    except RecursionError:  # Not expected past _check_size; kept so no input gives a traceback.
        raise SpecError(source, [Problem((), f"YAML nested at most {MAX_SPEC_DEPTH} levels deep",
                                         "deeper nesting", "a sweep spec needs only a handful of levels")]) from None
    return data, marks, duplicates


def spec_dir_of(path: str | os.PathLike[str], text: str) -> Path:
    """The folder a spec's relative paths and modules are relative to: its own, or, for the copy
    a run directory keeps, the original spec's (recorded in a ``#% spec_dir:`` line)."""
    for line in text.splitlines():
        if line.startswith(SPEC_DIR_RECORD):
            return Path(line[len(SPEC_DIR_RECORD):].strip())
    return Path(path).resolve().parent


def _other_file_kind(mode: int) -> str | None:
    """What a path is when it is not a regular file ("a directory", "a FIFO", ...); None when it is."""
    if stat.S_ISREG(mode):
        return None
    for test, kind in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a regular file"


def _check_size(source: str, text: str) -> None:
    """Refuse a spec too deep or with too many nodes from the event stream, before composing it."""
    nodes = depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_SPEC_DEPTH:
                raise SpecError(source, [Problem((), f"YAML nested at most {MAX_SPEC_DEPTH} levels deep",
                                                 "deeper nesting", "a sweep spec needs only a handful of levels",
                                                 event.start_mark.line + 1)])
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
        if isinstance(event, (yaml.ScalarEvent, yaml.CollectionStartEvent)):
            nodes += 1
            if nodes > MAX_SPEC_NODES:
                raise SpecError(source, [Problem((), f"at most {MAX_SPEC_NODES} YAML nodes", "more",
                                                 "a sweep spec has a few hundred")])


def _line_marks(root: yaml.Node) -> tuple[dict[KeyPath, int], list[Problem], bool]:
    """The line of every key path, keys given twice, and whether the walk stayed within
    MAX_SPEC_NODES. Iterative, so a deeply nested file cannot exhaust Python's stack; aliases
    are walked at every place they are used, so an alias bomb runs out of budget quickly."""
    marks: dict[KeyPath, int] = {}
    duplicates: list[Problem] = []
    budget = MAX_SPEC_NODES
    stack: list[tuple[yaml.Node, KeyPath]] = [(root, ())]
    while stack:
        node, path = stack.pop()
        budget -= 1
        if budget < 0:
            return marks, duplicates, False
        marks.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, value_node in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
                line = key_node.start_mark.line + 1
                if key in seen and key != "<<":
                    # safe_load would keep the last value silently; a half-edited spec often has two.
                    duplicates.append(Problem((*path, key), "each key once", f"a second `{key}:` "
                                              f"(the first is on line {seen[key]})",
                                              "remove or merge one of them", line))
                seen.setdefault(key, line)
                marks.setdefault((*path, key), line)
                stack.append((value_node, (*path, key)))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, (*path, index)) for index, item in enumerate(node.value))
    return marks, duplicates, True
