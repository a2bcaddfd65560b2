"""Ctrl-C and SIGTERM during a sweep: the first asks for a graceful stop, the second stops at once.

A graceful stop hands out no new trial, leaves the running ones RUNNING in the study (so a
resume runs them again with the same parameters and seed, as after a crash), writes the
exports of what finished, and exits 128 + the signal number. Finished trials are committed
to the study as they end, so even the immediate stop loses none of them.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

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
