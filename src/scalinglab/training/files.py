"""Where the trainer keeps its caches, and how it writes files that must never be half-written."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def cache_dir() -> Path:
    """Cache folder for tokenized corpora and trained tokenizers.

    ``$SCALINGLAB_CACHE`` if set, else ``$XDG_CACHE_HOME/scalinglab``, else
    ``~/.cache/scalinglab``. Everything in it can be deleted; it is rebuilt on demand.
    """
    env = os.environ.get("SCALINGLAB_CACHE")
    if env:
        path = Path(env)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        path = Path(base) / "scalinglab"
    path.mkdir(parents=True, exist_ok=True)
    return path


def atomic_write(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a part.

    The bytes go to a temporary file in the same folder, are flushed and fsynced, then
    renamed over ``path`` (atomic on POSIX); the folder is fsynced so the rename survives a
    crash. Concurrent writers of the same content are harmless: the last rename wins.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
