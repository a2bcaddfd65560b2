"""`launch.py tensorboard`: one TensorBoard over every trial of one or more sweeps.

It is served in this process, as `dashboard` is: a TensorBoard child kept serving its port when
a process manager sent SIGTERM to the command alone. Here TensorBoard's own SIGTERM handler
exits the process and Ctrl-C (SIGINT) ends it through KeyboardInterrupt; either way the
listening socket closes with the process, and there is no child to outlive it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from finesweep.search.run_dir import tensorboard_root


class BoardError(ValueError):
    """TensorBoard refused its settings (the message says which)."""


def missing_boards(run_dirs: Sequence[Path]) -> list[str]:
    """The folders among ``run_dirs`` without a tensorboard/ folder (not sweep run directories)."""
    return [str(d) for d in run_dirs if not tensorboard_root(d).is_dir()]


def board_labels(run_dirs: Sequence[Path]) -> dict[Path, str]:
    """A name per sweep folder for TensorBoard: the folder's own name, or as many of its
    parents as it takes to tell apart sweeps of the same name (runs/a/cnn vs runs/b/cnn)."""
    folders = list(dict.fromkeys(d.resolve() for d in run_dirs))
    labels = {}
    for folder in folders:
        others = [d for d in folders if d != folder]
        depth = 1
        while depth < len(folder.parts) and any(d.parts[-depth:] == folder.parts[-depth:] for d in others):
            depth += 1
        labels[folder] = "/".join(folder.parts[-depth:])
    return labels


def serve(run_dirs: Sequence[Path], *, host: str, port: int, reload_interval: float) -> int:
    """Serve TensorBoard over ``run_dirs`` until stopped; 0, or 1 when it cannot serve (the port
    is taken; TensorBoard says why). Raises :class:`BoardError` when it refuses the settings."""
    spec = ",".join(f"{label}:{tensorboard_root(d).resolve()}" for d, label in board_labels(run_dirs).items())
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Imported here: TensorBoard is slow to import.
    from tensorboard import default, main_lib, program
    from tensorboard.plugins.base_plugin import FlagsError

    main_lib.global_init()
    board = program.TensorBoard(plugins=default.get_plugins())
    try:
        board.configure(argv=["tensorboard", "--logdir_spec", spec, "--host", host, "--port", str(port),
                              "--reload_interval", str(reload_interval)])
    except FlagsError as error:
        raise BoardError(str(error)) from None
    # TensorBoard returns -1 when it cannot serve.
    return 0 if board.main() == 0 else 1
