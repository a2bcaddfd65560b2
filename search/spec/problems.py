"""What a spec check reports: located problems, the error that lists them, and their wording.

A :class:`Problem` says where (file, line, key path), what was expected, what was found and,
where it helps, a hint ("did you mean `learning_rate`?"). Every reader of user YAML (the spec,
exports, ensembles) reports through these, so each message reads the same way.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

KeyPath = tuple[Any, ...]

# A string YAML 1.1 did not read as a number although it looks like one ("1e-3", "'0.5'").
NUMBER_LIKE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


@dataclass(frozen=True)
class Problem:
    path: KeyPath
    expected: str
    found: str
    hint: str = ""
    line: int | None = None

    def render(self, source: str) -> str:
        where = f"{source}:{self.line}" if self.line else source
        key = format_path(self.path) or "(top level)"
        text = f"{where}: {key}: expected {self.expected}, found {self.found}"
        return f"{text} (hint: {self.hint})" if self.hint else text


class SpecError(Exception):
    """A spec that cannot run; ``problems`` lists every reason, not just the first."""

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.source = source
        self.problems = list(problems)
        count = len(self.problems)
        lines = [f"{source}: {count} problem{'s' if count != 1 else ''} in the sweep spec:"]
        lines += [f"  - {p.render(source)}" for p in self.problems]
        super().__init__("\n".join(lines))


def format_path(path: KeyPath) -> str:
    """``("space", "lr", "choices", 0)`` -> ``space.lr.choices[0]``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def describe(value: Any) -> str:
    """A found value as a message shows it: short, and saying what YAML made of it."""
    if isinstance(value, str):
        return clip(f"{value!r} (a string)")
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"{value} (a boolean)"
    if isinstance(value, (dict, list)):
        return f"a {type(value).__name__} {clip(str(value))}"
    return clip(repr(value))


def bound_text(value: float) -> str:
    # `:g` keeps 6 digits: an integer bound such as 2**31 - 1 would read 2.14748e+09.
    return str(value) if isinstance(value, int) else f"{value:g}"


def clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def did_you_mean(word: Any, options: Sequence[str]) -> str:
    """A "did you mean" hint, or nothing: for messages whose `expected` already lists the options."""
    close = difflib.get_close_matches(str(word), list(options), n=1, cutoff=0.6)
    return f"did you mean `{close[0]}`?" if close else ""


def suggest(word: Any, options: Sequence[str]) -> str:
    """A "did you mean" hint, else the valid options."""
    if not options:
        return ""
    return did_you_mean(word, options) or f"valid: {', '.join(map(str, options))}"


def is_number(value: Any) -> bool:
    """A finite int or float, not a boolean."""
    if isinstance(value, bool):
        return False
    # An int is always finite; math.isfinite would overflow on one too large for a float.
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def number_text_hint(text: str) -> str:
    """Why a number-like string is a string, and how to write it as a number."""
    text = text.strip()
    if is_number(yaml.safe_load(text)):
        return "a quoted number is a string: remove the quotes"
    mantissa, exponent = re.split("[eE]", text)
    sign = mantissa[0] if mantissa[0] in "+-" else ""
    mantissa = mantissa.lstrip("+-")
    if mantissa.startswith("."):
        mantissa = "0" + mantissa
    if "." not in mantissa:
        mantissa += ".0"
    if exponent[0] not in "+-":
        exponent = "+" + exponent
    return (f"PyYAML reads `{text}` as a string (YAML 1.1 wants a dot in the mantissa and a sign "
            f"in the exponent): write {sign}{mantissa}e{exponent}")
