"""Checkpoints: written atomically, read back with ``torch.load(weights_only=True)``.

A run keeps one file, ``<out_dir>/checkpoint.pt``, replaced at every checkpoint step by
:func:`~scalinglab.training.files.atomic_write` (temporary file, fsync, rename), so a run
killed at any moment leaves either the previous checkpoint or the new one, never a torn file.
It holds the model, the optimizer and the LR scheduler states, the step and the run's config;
with the batch of step ``s`` a pure function of ``(seed, s)``, that is all a resumed run needs
to continue exactly as if it had never stopped.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import torch

from scalinglab.errors import SpecError
from scalinglab.training.files import atomic_write

CHECKPOINT_NAME = "checkpoint.pt"


def checkpoint_path(out_dir: str | Path) -> Path:
    """Where a run writing to ``out_dir`` keeps its checkpoint."""
    return Path(out_dir) / CHECKPOINT_NAME


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Serialise ``state`` (tensors, numbers, strings, lists, dicts) and write it atomically."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write(path, buffer.getvalue())


def remove_stale_temp_files(path: str | Path) -> int:
    """Delete the temporary files that interrupted writes of the checkpoint ``path`` left.

    Call it only while holding the run's lock (:func:`scalinglab.training.lock.run_lock`):
    then no other process is writing one. Returns how many were removed.
    """
    target = Path(path)
    removed = 0
    for tmp in target.parent.glob(f".{target.name}.*.tmp"):
        tmp.unlink(missing_ok=True)
        removed += 1
    return removed


def load_checkpoint(path: str | Path) -> dict[str, Any] | None:
    """The state saved at ``path``, or ``None`` when there is no checkpoint.

    Raises
    ------
    SpecError
        When the file exists but cannot be read as a checkpoint.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's message advises weights_only=False, which would run code from the file
        raise SpecError(
            f"{path}: not a scalinglab checkpoint (it holds objects other than tensors, "
            "refused for safety); delete it or use another out_dir"
        ) from None
    except Exception as err:  # torch raises several types for corrupt or foreign files
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise SpecError(
            f"{path}: not a readable checkpoint ({first}); delete it to train the run from "
            "the start"
        ) from None
    if not isinstance(state, dict) or "step" not in state:
        raise SpecError(f"{path}: not a scalinglab checkpoint (no 'step')")
    return state
