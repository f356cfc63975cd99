"""Rebuild a per-step schedule from learning rates logged at some steps.

Training logs rarely hold the learning rate of every update. A row ``(step, lr)`` may be
logged every few hundred steps (sparse), the log may start long after the run did (mid-run),
and trainers differ on which update the logged rate belongs to: the next one (``"before"``
the update: Hugging Face, Lightning, nanoGPT, Luo et al.'s curves) or the one just done
(``"after"``: scalinglab's trainer, whose row of step ``s`` holds the rate that produced the
weights measured there). :func:`read_logged_lr` reads such a log piece by piece:

- between two rows with the same rate, the rate held;
- a change between rows whose neighbours do not change (a step drop or a short cooldown
  between two logged rows) is a step, not a ramp: linear interpolation would smear a sudden
  drop over the whole gap. The log cannot pin where the step was, which is reported; it is
  put at the roundest update number in the gap when one is rounder than all others
  (schedules are set in round numbers), else in the middle;
- where the neighbouring pieces change faster (the end of a warmup, the start of a decay)
  the faster trend is followed to the kink, then the rate is held;
- elsewhere (a cosine or linear decay logged sparsely) linear interpolation;
- before the first row: a warmup ramp seen in the first rows is extrapolated back to 0;
  otherwise the history is unknown, which is reported, and a linear warmup from 0 ending at
  the first row is assumed (right for a log that starts where its warmup ended).

``convention="auto"`` reads a row logged at step 0 as ``"before"`` (no update precedes it);
otherwise the reading that puts the log's sudden changes at rounder update numbers wins
(schedules are set in round numbers: a drop at update 8000 logged every 64 steps shows first
in the row of step 8000 read before, of 8064 read after); else ``"before"``. Off by one
update a smooth schedule hardly changes: the reading matters around sudden changes, which
decide it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from scalinglab.errors import InputError, SpecError
from scalinglab.schedules.areas import MAX_SCHEDULE_STEPS, check_schedule_steps
from scalinglab.schedules.base import FloatArray, TabulatedSchedule, check_learning_rates

LrConvention = Literal["auto", "before", "after"]
LR_CONVENTIONS: tuple[str, ...] = ("auto", "before", "after")

#: a neighbouring piece changing more than this many times faster marks a kink
_KINK_RATIO = 1.5
#: a change with no neighbour changing at least 1/this as fast (same direction) is a step
_ISOLATED_RATIO = 8.0


@dataclass(frozen=True)
class LoggedSchedule:
    """A schedule read from a logged learning rate, and what the log could not pin.

    Attributes
    ----------
    schedule
        The learning rate of every update.
    convention
        How the rows were read: ``"before"`` (a row's rate is that of the next update) or
        ``"after"`` (of the update just done).
    interval
        The median number of steps between logged rows (1: every step).
    notes
        One line for each assumption the log could not check (where a step in the rate
        happened, what came before the first row).
    """

    schedule: TabulatedSchedule
    convention: str
    interval: int
    notes: tuple[str, ...]


def read_logged_lr(
    lr: ArrayLike,
    steps: ArrayLike,
    *,
    convention: LrConvention = "auto",
    total: int | None = None,
    source: str | None = None,
) -> LoggedSchedule:
    """Read a logged ``lr`` column into the learning rate of every update.

    Parameters
    ----------
    lr
        Logged learning rates (non-negative).
    steps
        Step of each logged value (distinct whole numbers, any order): the number of updates
        done when it was logged.
    convention
        ``"before"``: the rate logged at step ``s`` is that of update ``s`` (0-based, the
        next one); ``"after"``: of update ``s − 1`` (the one just done); ``"auto"``: decide
        from the log (see the module docstring).
    total
        Length of the rebuilt schedule; default one past the last logged update.
    source
        Name of the data, for error messages.

    Returns
    -------
    LoggedSchedule
    """
    if convention not in LR_CONVENTIONS:
        raise SpecError(f"convention={convention!r} is not one of {', '.join(LR_CONVENTIONS)}")
    values = np.asarray(lr, dtype=float).reshape(-1)
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
    far = np.flatnonzero(at > MAX_SCHEDULE_STEPS)
    if far.size:
        raise InputError(
            f"step is beyond the limit of {MAX_SCHEDULE_STEPS:,} steps",
            source=source,
            row=int(far[0]) + 1,
            column="step",
            value=float(at[far[0]]),
        )
    order = np.argsort(at, kind="stable")
    at, values = at[order].astype(np.int64), values[order]
    dup = np.flatnonzero(np.diff(at) == 0)
    if dup.size:
        raise InputError(
            "step logged twice",
            source=source,
            row=int(order[dup[0] + 1]) + 1,
            column="step",
            value=int(at[dup[0]]),
        )
    if not values.max() > 0:
        raise InputError("every logged learning rate is zero", source=source, column="lr")
    tol = 1e-9 * float(values.max())
    read = _convention(at, values, tol) if convention == "auto" else convention
    if read == "after" and at[0] == 0:
        raise InputError(
            "a rate logged after the update cannot be at step 0 (no update precedes it)",
            source=source,
            column="step",
            value=0,
        )
    updates = at - 1 if read == "after" else at
    length = int(updates[-1]) + 1 if total is None else int(total)
    if length < int(updates[-1]) + 1:
        raise InputError(
            f"total={total} ends before the last logged update ({int(updates[-1])})",
            source=source,
        )
    check_schedule_steps(length, "total" if total is not None else "the log's length")
    per_step = np.empty(length)
    notes: list[str] = []
    ramp = _fill_before(per_step, updates, values, tol, notes)
    _fill_between(per_step, updates, values, tol, notes, ramp)
    per_step[updates[-1] :] = values[-1]
    interval = int(np.median(np.diff(at))) if at.size > 1 else 1
    return LoggedSchedule(TabulatedSchedule(per_step, source=source), read, interval, tuple(notes))


def schedule_from_lr(
    lr: ArrayLike,
    steps: ArrayLike | None = None,
    *,
    total: int | None = None,
    convention: LrConvention = "auto",
    source: str | None = None,
) -> TabulatedSchedule:
    """A per-step schedule from a logged ``lr`` column (see :func:`read_logged_lr`).

    ``steps=None``: ``lr`` already holds the rate of every update ``0 … len(lr) − 1``.
    """
    if steps is None:
        return TabulatedSchedule(lr, source=source)
    return read_logged_lr(lr, steps, convention=convention, total=total, source=source).schedule


def _convention(steps: np.ndarray, values: FloatArray, tol: float) -> str:
    """``"before"`` unless the log's sudden changes fall on rounder updates read ``"after"``.

    A sudden change between rows ``a`` and ``b`` took effect at an update in ``(a, b]`` read
    before, in ``[a, b)`` read after; schedules are set in round numbers of steps.
    """
    if steps[0] == 0:
        return "before"
    score = {"before": 0, "after": 0}
    rates = np.diff(values) / np.diff(steps)
    for j in range(rates.size):
        if abs(values[j + 1] - values[j]) <= tol or not _isolated(rates, j, tol):
            continue
        lo, hi = int(steps[j]), int(steps[j + 1])
        score["before"] += _roundness(_roundest(lo + 1, hi))
        score["after"] += _roundness(_roundest(lo, hi - 1))
    return "after" if score["after"] > score["before"] else "before"


def _roundness(n: int) -> int:
    """Trailing decimal zeros of ``n`` (schedules are set in round numbers of steps)."""
    if n <= 0:
        return 0
    zeros = 0
    while n % 10 == 0:
        n //= 10
        zeros += 1
    return zeros


def _roundest(lo: int, hi: int) -> int:
    """The number in ``[lo, hi]`` with the most trailing zeros if only one has that many,
    else the middle (``(lo + hi) // 2``): where two equally round numbers fit, the log
    cannot tell them apart, and the middle errs least either way."""
    for zeros in range(len(str(hi)), 0, -1):
        unit = 10**zeros
        first = -(-lo // unit) * unit
        if first <= hi:
            return first if first + unit > hi else (lo + hi) // 2
    return (lo + hi) // 2


def _isolated(rates: FloatArray, j: int, tol: float) -> bool:
    """Whether piece ``j`` changes with no neighbour changing the same way."""
    for k in (j - 1, j + 1):
        if 0 <= k < rates.size and rates[k] * rates[j] > 0:
            if abs(rates[k]) * _ISOLATED_RATIO >= abs(rates[j]) and abs(rates[k]) > tol:
                return False
    return True


def _fill_before(
    out: FloatArray, updates: np.ndarray, values: FloatArray, tol: float, notes: list[str]
) -> float:
    """Updates before the first logged one; returns the rate of change assumed there."""
    first = int(updates[0])
    if first == 0:
        return 0.0
    idx = np.arange(first)
    slope = (values[1] - values[0]) / (updates[1] - updates[0]) if updates.size > 1 else 0.0
    if slope * first >= values[0] * (1 - 1e-9) and values[0] > 0:
        # a warmup from 0 in progress: its ramp, extrapolated back to 0
        out[:first] = np.maximum(values[0] - slope * (first - idx), 0.0)
        return float(slope)
    # the history is unknown: the usual linear warmup from 0, ending at the first row (right
    # for a log that starts where its warmup ended; a resumed log needs its schedule)
    out[:first] = values[0] * idx / first
    if first > max(1, 0.01 * int(updates[-1])):
        notes.append(
            f"the log starts at step {first} (lr {values[0]:.4g}); what came before is unknown "
            f"(assumed a linear warmup from 0 over {first} steps)"
        )
    return float(values[0] / first)


def _fill_between(
    out: FloatArray,
    updates: np.ndarray,
    values: FloatArray,
    tol: float,
    notes: list[str],
    ramp: float,
) -> None:
    """Updates from the first logged one to the last, piece by piece.

    ``ramp`` is the rate of change assumed before the first row: the first piece's
    neighbour (a warmup that ends between the first two rows is a kink, not a step).
    """
    gaps = np.diff(updates)
    # the pieces' rates, with the one before the first row in front
    rates = np.r_[ramp, np.diff(values) / np.where(gaps > 0, gaps, 1)]
    for j in range(gaps.size):
        lo, hi = int(updates[j]), int(updates[j + 1])
        v0, v1 = float(values[j]), float(values[j + 1])
        out[lo] = v0
        span = np.arange(lo + 1, hi)
        if span.size == 0:
            continue
        if abs(v1 - v0) <= tol:
            out[span] = v0
            continue
        rate = rates[j + 1]
        before = rates[j] if rates[j] * rate > 0 else 0.0
        after = rates[j + 2] if j + 2 < rates.size and rates[j + 2] * rate > 0 else 0.0
        starts_ramp = j == 0 and v0 <= tol  # a warmup from 0 logged by its two ends
        if _isolated(rates, j + 1, tol) and not starts_ramp:
            step = _roundest(lo + 1, hi)
            out[span] = np.where(span < step, v0, v1)
            notes.append(
                f"the lr changes from {v0:.4g} to {v1:.4g} between updates {lo} and {hi}; the "
                f"log cannot pin where (assumed at update {step})"
            )
        elif abs(before) > _KINK_RATIO * abs(rate):
            # the trend so far goes on until it reaches the next value, then holds
            out[span] = _clip_between(v0 + before * (span - lo), v0, v1)
        elif abs(after) > _KINK_RATIO * abs(rate):
            # held, then the next trend, so as to arrive at the next value
            out[span] = _clip_between(v1 - after * (hi - span), v0, v1)
        else:
            out[span] = v0 + rate * (span - lo)


def _clip_between(x: ArrayLike, a: float, b: float) -> FloatArray:
    return np.asarray(np.clip(x, min(a, b), max(a, b)), dtype=float)
