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
    except Exception as err:  # torch raises several types for corrupt or foreign files
        raise SpecError(f"{path}: not a readable checkpoint ({err})") from None
    if not isinstance(state, dict) or "step" not in state:
        raise SpecError(f"{path}: not a scalinglab checkpoint (no 'step')")
    return state
