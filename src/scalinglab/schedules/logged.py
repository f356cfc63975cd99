"""Rebuild a per-step schedule from learning rates logged at some steps."""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from scalinglab.errors import InputError
from scalinglab.schedules.areas import MAX_SCHEDULE_STEPS
from scalinglab.schedules.base import TabulatedSchedule, check_learning_rates


def schedule_from_lr(
    lr: ArrayLike,
    steps: ArrayLike | None = None,
    *,
    total: int | None = None,
    before_first: Literal["warmup", "constant"] = "warmup",
    source: str | None = None,
) -> TabulatedSchedule:
    """A per-step schedule from a logged ``lr`` column.

    Parameters
    ----------
    lr
        Logged learning rates (non-negative).
    steps
        Optimizer step of each logged value (distinct, any order). ``None``: ``lr`` already
        holds every step ``0 … len(lr) − 1``.
    total
        Length of the rebuilt schedule; default one past the last logged step.
    before_first
        What happened before the first logged step: ``"warmup"`` (a linear ramp from 0, the
        usual warmup) or ``"constant"`` (the first logged value throughout).
    source
        Name of the data, for error messages.

    Returns
    -------
    TabulatedSchedule
        Between logged steps the learning rate is interpolated linearly; after the last one
        it stays at the last value.
    """
    values = np.asarray(lr, dtype=float).reshape(-1)
    if steps is None:
        return TabulatedSchedule(values, source=source)
    at = np.asarray(steps, dtype=float).reshape(-1)
    if at.size != values.size:
        raise InputError(f"{at.size} steps for {values.size} learning rates", source=source)
    if at.size == 0:
        raise InputError("no logged learning rates", source=source, column="lr")
    check_learning_rates(values, source)
    bad = np.flatnonzero(~np.isfinite(at) | (at < 0) | (at != np.round(at)))
    if bad.size:
        raise InputError(
            "step must be a non-negative whole number",
            source=source,
            row=int(bad[0]) + 1,
            column="step",
            value=float(at[bad[0]]),
        )
    order = np.argsort(at, kind="stable")
    at, values = at[order], values[order]
    dup = np.flatnonzero(np.diff(at) == 0)
    if dup.size:
        raise InputError(
            "step logged twice",
            source=source,
            row=int(order[dup[0] + 1]) + 1,
            column="step",
            value=int(at[dup[0]]),
        )
    length = int(at[-1]) + 1 if total is None else int(total)
    if length < 1:
        raise InputError(f"total={total} must be at least 1 step", source=source)
    if length > MAX_SCHEDULE_STEPS:
        raise InputError(
            f"a schedule of {length:,} steps is beyond the limit of {MAX_SCHEDULE_STEPS:,}",
            source=source,
            column="step",
            value=int(at[-1]),
        )
    if at[0] > 0 and before_first == "warmup":
        at, values = np.concatenate([[0.0], at]), np.concatenate([[0.0], values])
    return TabulatedSchedule(np.interp(np.arange(length), at, values), source=source)
