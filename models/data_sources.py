"""Where task data comes from, and the error raised when a source is not on this machine.

Light on purpose (no torch): a spec check can ask whether a task's data exists in
milliseconds, before any worker starts.
"""

from __future__ import annotations

import os
from pathlib import Path


class MissingDataSource(RuntimeError):
    """A task's data is not on this machine. The message says how to install or build it;
    callers show it as is, without a traceback."""


def cache_root() -> Path:
    """Where built data sets live: ``$FINESWEEP_CACHE``, else ``~/.cache/finesweep``."""
    configured = os.environ.get("FINESWEEP_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "finesweep"


def resolve_path(value: str) -> Path:
    """A user-given path: absolute, or relative to the working directory of the command.

    Trial workers only ever see absolute paths: the spec makes every relative path argument
    absolute against the spec's folder when it is read (``search/spec/paths.py``), so nothing
    here depends on the directory a worker runs in.
    """
    return Path(value).expanduser()


def parse_classes(value: str) -> list[int]:
    """'0-4' -> [0, 1, 2, 3, 4]; '1,3,7' -> [1, 3, 7]; ranges and lists combine ('0-2,9')."""
    digits: set[int] = set()
    for part in value.replace(" ", "").split(","):
        low, _, high = part.partition("-")
        if not (low.isdigit() and (not high or high.isdigit())):
            raise ValueError(f"data.classes: expected digits such as 0-4 or 1,3,7, found {value!r}")
        digits.update(range(int(low), int(high or low) + 1))
    if not digits or max(digits) > 9 or len(digits) < 2:
        raise ValueError(f"data.classes: expected at least two digits from 0-9, found {value!r}")
    return sorted(digits)
