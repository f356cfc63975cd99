"""The learning-rate areas of Tissue et al. 2024 ("Scaling Laws with Learning Rate Annealing").

For per-step learning rates ``η_0, η_1, …``:

- forward area ``S1[i] = Σ_{j≤i} η_j``;
- annealing area ``S2[i] = Σ_{j≤i} m_j`` with momentum ``m_j = λ·m_{j−1} + (η_{j−1} − η_j)``,
  ``m_0 = 0``, ``λ`` the decay (0.999 in the paper).

Both are O(steps) in time: a cumulative sum, and the momentum is a first-order linear
recursion run by ``scipy.signal.lfilter`` in C. In memory they are O(chunk + points): the
learning rates are read :data:`CHUNK_STEPS` at a time (from an array, or from a
:class:`~scalinglab.schedules.Schedule` evaluated chunk by chunk, so a schedule of 100 million
steps is never held whole), the running sums carried from chunk to chunk, and only the values
at the requested steps kept. Schedules longer than :data:`MAX_SCHEDULE_STEPS` are refused
with a clear error (:func:`check_schedule_steps`) rather than summed for minutes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, TypeAlias, cast

import numpy as np
from numpy.typing import ArrayLike, NDArray

from scalinglab.errors import SpecError

if TYPE_CHECKING:
    from scalinglab.schedules.base import Schedule

FloatArray = NDArray[np.float64]
#: per-step learning rates: an array (one value per update), or a schedule read lazily
LearningRates: TypeAlias = "ArrayLike | Schedule"

#: the annealing momentum's decay λ used by Tissue et al.
DEFAULT_DECAY = 0.999
#: the longest schedule, in optimizer steps, that areas and curves are computed for
#: (about two seconds per pass over it here; a real run has at most a few million steps)
MAX_SCHEDULE_STEPS = 100_000_000
#: learning rates read per chunk (2 MiB per float array; a pass holds about a dozen)
CHUNK_STEPS = 1 << 18


def check_schedule_steps(
    steps: float,
    what: str = "total",
    limit: int = MAX_SCHEDULE_STEPS,
    purpose: str = "learning-rate schedules",
) -> int:
    """Refuse a schedule longer than ``limit`` steps, naming ``what``, the value and the limit.

    Raises
    ------
    SpecError
        ``steps`` above ``limit`` (or not a number).
    """
    if not steps <= limit:
        raise SpecError(
            f"{what}={steps:,.0f} steps is beyond the limit of {limit:,} steps for {purpose}"
        )
    return int(steps)


def _as_schedule(lr: LearningRates) -> Schedule | None:
    from scalinglab.schedules.base import Schedule  # base imports this module

    return lr if isinstance(lr, Schedule) else None


def lr_length(lr: LearningRates) -> int:
    """Number of steps the learning rates cover (a schedule's ``total``)."""
    schedule = _as_schedule(lr)
    return schedule.total if schedule is not None else int(np.size(cast("ArrayLike", lr)))


def lr_chunks(lr: LearningRates, n: int | None = None) -> Iterator[tuple[int, FloatArray]]:
    """The learning rates of updates ``0 … n − 1`` as ``(first step, values)`` chunks.

    A schedule is evaluated chunk by chunk (steps past its end keep its last value); an
    array must cover the ``n`` steps.
    """
    schedule = _as_schedule(lr)
    n = lr_length(lr) if n is None else int(n)
    check_schedule_steps(n, "steps")
    if schedule is not None:
        for start in range(0, n, CHUNK_STEPS):
            stop = min(start + CHUNK_STEPS, n)
            yield start, np.asarray(schedule.lr(np.arange(start, stop)), dtype=float)
        return
    values = np.asarray(cast("ArrayLike", lr), dtype=float).reshape(-1)
    if values.size < n:
        raise SpecError(f"{values.size} learning rates cover fewer than the {n} steps needed")
    for start in range(0, n, CHUNK_STEPS):
        yield start, values[start : start + CHUNK_STEPS]


def peak_step(lr: LearningRates, n: int | None = None) -> tuple[int, float]:
    """First step at the largest learning rate among updates ``0 … n − 1``, and that rate."""
    best_step, best = 0, -np.inf
    for start, eta in lr_chunks(lr, n):
        i = int(np.argmax(eta))
        if eta[i] > best:
            best_step, best = start + i, float(eta[i])
    return best_step, best


def warmup_end(lr: LearningRates, n: int | None = None) -> int:
    """Index of the first step at the schedule's largest learning rate (of the first ``n``)."""
    return peak_step(lr, n)[0]


def lr_drops(lr: ArrayLike, *, anneal_start: int = 0) -> FloatArray:
    """Per-step decrease ``η_{j−1} − η_j`` (0 at step 0 and at steps ``j <= anneal_start``).

    Parameters
    ----------
    lr
        Learning rate of each step.
    anneal_start
        Decreases up to and including this step are ignored; pass the end of the warmup so
        that the warmup's increases do not count as negative annealing.
    """
    eta = np.asarray(lr, dtype=float).reshape(-1)
    return _chunk_drops(eta, 0, None, anneal_start)


def _chunk_drops(
    eta: FloatArray, start: int, previous: float | None, anneal_start: int
) -> FloatArray:
    """``lr_drops`` of the chunk of steps ``start …`` whose previous step had ``previous``."""
    drops = np.empty_like(eta)
    if drops.size:
        drops[0] = 0.0 if previous is None else previous - eta[0]
        drops[1:] = eta[:-1] - eta[1:]
        drops[: max(anneal_start - start + 1, 0)] = 0.0
    return drops


class _Sampler:
    """Picks, chunk by chunk, the values of running sums at requested indices."""

    def __init__(self, at: ArrayLike) -> None:
        self.at = np.asarray(at, dtype=np.int64).reshape(-1)
        self.order = np.argsort(self.at, kind="stable")
        self.sorted = self.at[self.order]

    def take(
        self, start: int, stop: int, out: Mapping[str, FloatArray], sums: Mapping[str, FloatArray]
    ) -> None:
        """Copy ``sums[name][i − start]`` into ``out[name]`` for each requested ``i`` in
        ``[start, stop)``."""
        lo, hi = np.searchsorted(self.sorted, [start, stop])
        if hi > lo:
            rows = self.order[lo:hi]
            local = self.at[rows] - start
            for name, values in sums.items():
                out[name][rows] = values[local]


def _running_sum(carry: float, values: FloatArray) -> FloatArray:
    """``carry + cumsum(values)``, added in the same order as one cumsum over everything."""
    return np.cumsum(np.concatenate([[carry], values]))[1:]


def lr_areas_at(
    lr: LearningRates,
    at: ArrayLike,
    decay: float | None = DEFAULT_DECAY,
    *,
    anneal_start: int = 0,
    s1_start: int = 0,
) -> tuple[FloatArray, FloatArray]:
    """Forward area S1 and annealing area S2 after the updates ``at`` (0-based indices).

    Memory O(:data:`CHUNK_STEPS` + ``len(at)``), whatever the schedule's length.

    Parameters
    ----------
    lr
        Learning rates: an array covering ``max(at) + 1`` steps, or a schedule.
    at
        Update indices (any order, repeats allowed).
    decay
        Momentum decay λ in ``[0, 1)``; ``None`` computes S1 only (S2 is returned as zeros).
    anneal_start
        Step up to which decreases are ignored (see :func:`lr_drops`).
    s1_start
        First step counted in S1 (0: all of them).

    Returns
    -------
    tuple of numpy.ndarray
        ``S1`` and ``S2`` at each of ``at``, in learning-rate × steps.
    """
    if decay is not None and not 0 <= decay < 1:
        raise SpecError(f"annealing decay λ must be in [0, 1), got {decay}")
    # imported here: scipy.signal costs ~0.9 s, too much for every command that imports schedules
    from scipy.signal import lfilter

    sampler = _Sampler(at)
    out = {"s1": np.zeros(sampler.at.size), "s2": np.zeros(sampler.at.size)}
    if sampler.at.size == 0:
        return out["s1"], out["s2"]
    if sampler.sorted[0] < 0:
        raise SpecError(f"update index {int(sampler.sorted[0])} is negative")
    s1_sum = s2_sum = momentum = 0.0
    previous: float | None = None
    for start, eta in lr_chunks(lr, int(sampler.sorted[-1]) + 1):
        forward = (
            eta
            if start >= s1_start
            else np.where(np.arange(start, start + eta.size) >= s1_start, eta, 0.0)
        )
        sums = {"s1": _running_sum(s1_sum, forward)}
        s1_sum = float(sums["s1"][-1])
        if decay is not None:
            drops = _chunk_drops(eta, start, previous, anneal_start)
            m, _ = lfilter([1.0], [1.0, -decay], drops, zi=np.array([decay * momentum]))
            momentum = float(m[-1])
            sums["s2"] = _running_sum(s2_sum, m)
            s2_sum = float(sums["s2"][-1])
        previous = float(eta[-1])
        sampler.take(start, start + eta.size, out, sums)
    return out["s1"], out["s2"]


def lr_areas(
    lr: LearningRates, decay: float = DEFAULT_DECAY, *, anneal_start: int = 0
) -> tuple[FloatArray, FloatArray]:
    """Forward area S1 and annealing area S2 after every step.

    Parameters
    ----------
    lr
        Learning rate of each step, shape ``(T,)`` (or a schedule: its ``total`` steps).
    decay
        Momentum decay λ in ``[0, 1)``: how long a decrease keeps adding to S2.
    anneal_start
        Step up to which decreases are ignored (see :func:`lr_drops`); 0 counts all of them.

    Returns
    -------
    tuple of numpy.ndarray
        ``S1`` and ``S2``, each of shape ``(T,)``, in learning-rate × steps.
    """
    return lr_areas_at(lr, np.arange(lr_length(lr)), decay, anneal_start=anneal_start)


def drop_sums_at(
    lr: LearningRates, index: ArrayLike, *, anneal_start: int, floor: float
) -> dict[str, FloatArray]:
    """Sums over updates ``k < i`` of the learning-rate drops, for the multi-power law.

    For each ``i`` of ``index`` (in ``0 … max(index)``), with ``d_k`` the drop at step ``k``
    (:func:`lr_drops`), ``A_k = Σ_{j<k} η_j`` the area before it and ``η̃_k = max(η_k, floor)``:
    ``lr`` = Σ η_k, ``drop`` = Σ d_k, ``size`` = Σ |d_k|, ``size_log_lr`` = Σ |d_k| log η̃_k,
    ``size_area`` = Σ |d_k| A_k. Memory O(:data:`CHUNK_STEPS` + ``len(index)``).

    Returns
    -------
    dict
        Name → values at each of ``index``.
    """
    names = ("lr", "drop", "size", "size_log_lr", "size_area")
    sampler = _Sampler(index)
    out = {name: np.zeros(sampler.at.size) for name in names}
    if sampler.at.size == 0:
        return out
    n = int(sampler.sorted[-1])
    carry = dict.fromkeys(names, 0.0)
    previous: float | None = None
    # the sums before step i are those of steps 0 … i − 1: a chunk of steps [start, stop)
    # gives the sums at i in [start + 1, stop]; i = 0 is always 0
    for start, eta in lr_chunks(lr, n):
        drops = _chunk_drops(eta, start, previous, anneal_start)
        size = np.abs(drops)
        area = _running_sum(carry["lr"], eta)
        before = np.concatenate([[carry["lr"]], area[:-1]])  # A_k
        terms = {
            "lr": eta,
            "drop": drops,
            "size": size,
            "size_log_lr": size * np.log(np.maximum(eta, floor)),
            "size_area": size * before,
        }
        sums = {}
        for name, values in terms.items():
            sums[name] = _running_sum(carry[name], values)
            carry[name] = float(sums[name][-1])
        previous = float(eta[-1])
        sampler.take(start + 1, start + eta.size + 1, out, sums)
    return out
