"""One sweep per run directory, and per study: who holds it, and taking over from the dead.

The run directory's lock is an ``flock`` on a file inside it, taken before anything else is
written there and held by the open file for the driver's whole life. The kernel drops it
when the process ends however it ends (SIGKILL included), so a lock left by a dead driver
is simply free again; the pid and host written in the file only name a live holder.

A study in a shared database (PostgreSQL) can be reached from other run directories and
other machines, where no file lock reaches: the driver records itself in the study as
its owner with a lease it renews while it runs, and a second driver refuses a study whose
owner is alive (same host: its pid exists) or whose lease has not run out (another host).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from finesweep.search.run_dir import LOCK_FILE

if TYPE_CHECKING:
    import optuna

OWNER_ATTR = "driver"
# A driver renews its lease at least this often while the sweep runs (from the Tune loop).
LEASE_S = 120.0


class LockError(RuntimeError):
    """The run directory or the study is held by another live sweep."""


@dataclass(frozen=True)
class Holder:
    pid: int
    host: str

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}"


def this_process() -> Holder:
    return Holder(os.getpid(), socket.gethostname())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # Someone else's process, but it exists.
    return True


class RunLock:
    """The exclusive lock of one run directory; ``acquire`` raises LockError naming a live holder."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None

    def check_free(self) -> None:
        """Raise LockError, as ``acquire`` would, when a live sweep holds the lock now; takes
        nothing (a resume asks before spending seconds importing the spec's classes)."""
        try:  # Non-blocking: opening a planted FIFO for reading would wait for a writer.
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return  # No lock file (or a planted link): acquire() decides.
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise self._busy(fd) from None
        finally:
            os.close(fd)

    def _busy(self, fd: int) -> LockError:
        holder = _read_holder(fd)
        who = holder.describe() if holder else "another process"
        return LockError(f"{self.path.parent} is in use by a running sweep ({who}); "
                         "wait for it to end, or stop it first")

    def acquire(self) -> None:
        # Owner-only: the file names this machine and process. Never through a symbolic link
        # (a planted one would have its target truncated).
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as error:
            raise LockError(f"cannot take the lock {self.path}: {error.strerror} (a symbolic link?)") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            busy = self._busy(fd)
            os.close(fd)
            raise busy from None
        # Whatever a dead holder wrote is replaced; flock guarantees it is no longer running.
        me = this_process()
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": me.pid, "host": me.host, "since": time.time()}).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # Closing drops the flock; the file stays for the next holder.
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_holder(fd: int) -> Holder | None:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"null")
        return Holder(int(data["pid"]), str(data["host"]))
    except (ValueError, TypeError, KeyError, OSError):
        return None


# ---- the study's owner, for storage shared beyond one run directory -----------------------

def owner_is_live(owner: Any, now: float, me: Holder) -> bool:
    """Whether the recorded owner of a study may still be running (a plain decision, tested
    without a database): one that released the study is not; on this host its pid decides;
    elsewhere only its lease can."""
    if not isinstance(owner, dict):
        return False
    try:
        holder = Holder(int(owner["pid"]), str(owner["host"]))
        lease_until = float(owner["lease_until"])
    except (KeyError, TypeError, ValueError):
        return False
    if holder == me or lease_until <= 0:
        return False  # This process, or an owner that ended and released the study.
    if holder.host == me.host:
        return _alive(holder.pid)
    return lease_until > now


def claim_study(study: optuna.Study) -> None:
    """Record this driver as the study's owner, or raise LockError naming a live one."""
    me = this_process()
    owner = study.user_attrs.get(OWNER_ATTR)
    if owner_is_live(owner, time.time(), me):
        raise LockError(f"study {study.study_name!r} is in use by a running sweep "
                        f"(pid {owner['pid']} on {owner['host']}); wait for it to end, or stop it first")
    renew_study(study)


def renew_study(study: optuna.Study) -> None:
    me = this_process()
    study.set_user_attr(OWNER_ATTR, {"pid": me.pid, "host": me.host, "lease_until": time.time() + LEASE_S})


def release_study(study: optuna.Study) -> None:
    """Mark the lease run out (Optuna cannot delete a study attribute)."""
    me = this_process()
    study.set_user_attr(OWNER_ATTR, {"pid": me.pid, "host": me.host, "lease_until": 0.0})
