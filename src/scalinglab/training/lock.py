"""One process trains a run at a time: an advisory lock on the run's checkpoint folder.

:func:`run_lock` takes ``fcntl.flock`` on ``<out_dir>/.lock`` without waiting; a second
process that tries to train the same run (same folder) gets :class:`RunLockedError`, one
line naming the process that holds it. The operating system releases the lock when its
holder exits, however it exits (``kill -9`` included), so a lock is never left stale. The
file keeps the holder's pid and host for the message; it is not removed (removing it would
let a third process lock a new file while the second still holds the old one).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from scalinglab.errors import ScalingLabError

LOCK_NAME = ".lock"


class RunLockedError(ScalingLabError):
    """Another process is training this run now."""


@contextlib.contextmanager
def run_lock(out_dir: str | Path, run_id: str) -> Iterator[None]:
    """Hold the training lock of the run whose checkpoints live in ``out_dir``.

    Raises
    ------
    RunLockedError
        When another process holds it (the message names that process).
    """
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            raise RunLockedError(
                f"run '{run_id}' is being trained by {holder} (lock {path}); wait for it to "
                "finish, or stop it, then run again"
            ) from None
        since = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        note = f"pid {os.getpid()} on {socket.gethostname()} since {since}".encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, note, 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
