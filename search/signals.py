"""Ctrl-C and SIGTERM during a sweep: the first asks for a graceful stop, the second stops at once;
and how a command's process ends (:func:`run_command`).

A graceful stop hands out no new trial, leaves the running ones RUNNING in the study (so a
resume runs them again with the same parameters and seed, as after a crash), writes the
exports of what finished, and exits 128 + the signal number. Finished trials are committed
to the study as they end, so even the immediate stop loses none of them.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any, NoReturn

HANDLED = (signal.SIGINT, signal.SIGTERM)


class StopRequested:
    """The sweep's stop flag, set by the first SIGINT/SIGTERM; the second raises KeyboardInterrupt."""

    def __init__(self, message: Callable[[int], str] | None = None) -> None:
        self.event = threading.Event()
        self.signum: int | None = None
        self._message = message
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.event.is_set()

    @property
    def exit_code(self) -> int:
        return 128 + int(self.signum or signal.SIGINT)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.event.is_set():
            # A second signal: stop now. What finished is already committed to the study.
            raise KeyboardInterrupt
        self.signum = signum
        self.event.set()
        if self._message is not None:
            sys.stderr.write(self._message(signum) + "\n")
            sys.stderr.flush()

    def install(self) -> None:
        """(Re)install the handlers; ray.init replaces SIGTERM's, so call again after it."""
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in HANDLED:
            previous = signal.signal(signum, self._handle)
            self._previous.setdefault(signum, previous)

    def restore(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def __enter__(self) -> StopRequested:
        self.install()
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()


def stop_on_ctrl_c() -> None:
    """Let Ctrl-C (SIGINT) stop this process through KeyboardInterrupt, whatever it inherited: a
    script's shell starts a background job (`launch.py tensorboard ... &`) with SIGINT ignored,
    a process may start this one with SIGINT ignored or blocked, and a server that prints
    "Ctrl-C stops it" would then not stop (seen in the test suite's full runs)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def signal_name(signum: int) -> str:
    return "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name


def run_command(main: Callable[[], int] | None = None) -> NoReturn:
    """The process's entry point (``launch.py`` and the installed ``finesweep`` command): run
    the command line's ``main`` (finesweep's CLI unless given), then end the process with its
    status without the interpreter's teardown.

    That teardown frees every module and object of torch, Lightning and Ray one by one and
    writes nothing: 1.4 s of a 1-trial sweep's 15 s on 2 cores, paid after the last line was
    printed. Every file a command writes is closed by the time it returns, and the study is
    committed. What is registered with :mod:`atexit` still runs (Ray's shutdown, temporary
    folders' removal, logging's flush): the handler that ends the process is registered here,
    before finesweep's modules are imported, so it runs after every later one.
    """
    status = [1]  # An exception escaping main: Python prints it, the status is 1 as usual.
    atexit.register(_end_now, status)
    try:
        if main is None:
            # Imported after the registration above, so that every handler the CLI's modules
            # (and the libraries they bring) register runs before the process ends.
            from finesweep.search.cli import main
        status[0] = main()
    except SystemExit as stop:  # argparse: --help (0), a usage error (2)
        status[0] = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        raise
    except KeyboardInterrupt:  # Ctrl-C before the CLI catches it (while importing)
        status[0] = 128 + signal.SIGINT
        raise
    raise SystemExit(status[0])


def _end_now(status: list[int]) -> None:
    # logging registered its own flush before this handler when it was imported first.
    if "logging" in sys.modules:
        sys.modules["logging"].shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # A closed pipe or stream: nothing more can reach it.
            pass
    os._exit(status[0])
