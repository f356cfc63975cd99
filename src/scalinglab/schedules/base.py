"""Learning-rate schedules as vectorised functions of the optimizer step.

Conventions, shared by every schedule:

- steps are 0-based optimizer updates; a run of ``total`` steps uses ``lr(0) … lr(total − 1)``;
  steps past the end keep the last value, steps before 0 the first;
- a warmup of ``warmup`` steps goes first: ``linear`` ramps from ``warmup_lr`` (default 0) at
  step 0 to ``peak`` at step ``warmup``; ``constant`` holds ``warmup_lr`` (which must then be
  positive) until step ``warmup``;
- after the warmup each kind defines its own shape, starting from ``peak``.

Learning rates are in the optimizer's own units (e.g. 3e-4 for AdamW).
"""

from __future__ import annotations

import difflib
import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from scalinglab.errors import InputError, SpecError
from scalinglab.schedules.areas import check_schedule_steps

FloatArray = NDArray[np.float64]

WARMUP_SHAPES = ("linear", "constant")
COOLDOWN_SHAPES = ("linear", "cosine", "exp", "sqrt")


class Schedule(ABC):
    """A learning rate for every optimizer step of a run of ``total`` steps."""

    #: number of optimizer steps in the run
    total: int
    #: the largest learning rate of the schedule
    peak: float

    @abstractmethod
    def lr(self, steps: ArrayLike) -> FloatArray:
        """Learning rate at each of ``steps`` (0-based optimizer updates), vectorised."""

    def array(self) -> FloatArray:
        """Learning rate of every step ``0 … total − 1``."""
        return self.lr(np.arange(self.total))

    @property
    def warmup_steps(self) -> int:
        """Index of the first step at the peak learning rate (the end of the warmup)."""
        return int(np.argmax(self.array()))


@dataclass(frozen=True, kw_only=True)
class ParametricSchedule(Schedule):
    """A schedule given by a few numbers, written and read as a spec string.

    Subclasses set :attr:`kind`, declare their options as dataclass fields (they become the
    spec's keys) and implement :meth:`_after_warmup`.
    """

    kind: ClassVar[str]
    #: one line for ``--help`` and error messages
    summary: ClassVar[str]

    peak: float
    total: int
    warmup: int = 0
    warmup_shape: str = "linear"
    warmup_lr: float = 0.0

    def __post_init__(self) -> None:
        self._check_lr("peak", self.peak, positive=True)
        self._check_lr("warmup_lr", self.warmup_lr)
        if self.total < 1:
            raise SpecError(f"{self.kind}: total={self.total} must be at least 1 step")
        check_schedule_steps(self.total, f"{self.kind}: total")
        if not 0 <= self.warmup < self.total:
            raise SpecError(
                f"{self.kind}: warmup={self.warmup} must be in [0, total) (total={self.total})"
            )
        self._check_choice("warmup_shape", self.warmup_shape, WARMUP_SHAPES)
        if self.warmup_shape == "constant" and self.warmup > 0 and self.warmup_lr <= 0:
            raise SpecError(f"{self.kind}: a constant warmup needs warmup_lr > 0")
        if self.warmup_lr > self.peak:
            raise SpecError(f"{self.kind}: warmup_lr={self.warmup_lr} is above peak={self.peak}")

    def _check_lr(self, key: str, value: float, *, positive: bool = False) -> None:
        if not math.isfinite(value):
            raise SpecError(f"{self.kind}: {key}={value} is not a finite learning rate")
        if value < 0:
            raise SpecError(f"{self.kind}: {key}={value} is negative; learning rates must be >= 0")
        if positive and value == 0:
            raise SpecError(f"{self.kind}: {key} must be positive, got 0")

    def _check_choice(self, key: str, value: str, options: tuple[str, ...]) -> None:
        if value not in options:
            close = difflib.get_close_matches(value, options, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise SpecError(
                f"{self.kind}: {key}={value!r} is not one of {', '.join(options)}{hint}"
            )

    def _check_floor(self, key: str, value: float) -> None:
        self._check_lr(key, value)
        if value > self.peak:
            raise SpecError(f"{self.kind}: {key}={value} is above peak={self.peak}")

    def _check_step(self, key: str, value: int) -> None:
        """A step inside the post-warmup part of the run."""
        if value >= self.total:
            raise SpecError(
                f"{self.kind}: {key}={value} is past the end of the run (total={self.total})"
            )
        if value < self.warmup:
            raise SpecError(
                f"{self.kind}: {key}={value} is inside the warmup (warmup={self.warmup})"
            )

    @abstractmethod
    def _after_warmup(self, s: FloatArray) -> FloatArray:
        """Learning rate at steps ``s >= warmup`` (floats, already clamped to the run)."""

    def lr(self, steps: ArrayLike) -> FloatArray:
        s = np.clip(np.asarray(steps, dtype=float), 0, self.total - 1)
        out = self._after_warmup(np.maximum(s, self.warmup))
        if self.warmup > 0:
            if self.warmup_shape == "linear":
                ramp = self.warmup_lr + (self.peak - self.warmup_lr) * s / self.warmup
            else:
                ramp = np.full_like(s, self.warmup_lr)
            out = np.where(s < self.warmup, ramp, out)
        return np.asarray(out, dtype=float)

    def spec(self) -> str:
        """The spec string that :func:`~scalinglab.schedules.parse_schedule` reads back."""
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if not f.init or (f.name not in ("peak", "total") and value == f.default):
                continue
            if isinstance(value, tuple):
                text = "/".join(_number(v) for v in value)
            else:
                text = _number(value)
            parts.append(f"{f.name}={text}")
        return f"{self.kind}:" + ",".join(parts)

    def __str__(self) -> str:
        return self.spec()


def _number(value: Any) -> str:
    if isinstance(value, float):
        return repr(value) if value != int(value) or abs(value) >= 1e16 else str(int(value))
    return str(value)


def _progress(s: FloatArray, start: float, end: float) -> FloatArray:
    """Fraction of the way from ``start`` to ``end`` (0 … 1)."""
    return np.clip((s - start) / max(end - start, 1.0), 0.0, 1.0)


def _cosine(p: FloatArray, high: float, low: float) -> FloatArray:
    return low + (high - low) * 0.5 * (1.0 + np.cos(math.pi * p))


@dataclass(frozen=True, kw_only=True)
class ConstantSchedule(ParametricSchedule):
    """Constant ``peak`` after the warmup."""

    kind: ClassVar[str] = "constant"
    summary: ClassVar[str] = "constant: peak after the warmup"

    def _after_warmup(self, s: FloatArray) -> FloatArray:
        return np.full_like(s, self.peak)


@dataclass(frozen=True, kw_only=True)
class CosineSchedule(ParametricSchedule):
    """Half a cosine from ``peak`` at the end of the warmup to ``final`` at step ``total``."""

    kind: ClassVar[str] = "cosine"
    summary: ClassVar[str] = "cosine: half cosine from peak to final at total"
    final: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_floor("final", self.final)

    def _after_warmup(self, s: FloatArray) -> FloatArray:
        return _cosine(_progress(s, self.warmup, self.total), self.peak, self.final)


@dataclass(frozen=True, kw_only=True)
class LinearSchedule(ParametricSchedule):
    """Straight line from ``peak`` at the end of the warmup to ``final`` at step ``total``."""

    kind: ClassVar[str] = "linear"
    summary: ClassVar[str] = "linear: straight line from peak to final at total"
    final: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_floor("final", self.final)

    def _after_warmup(self, s: FloatArray) -> FloatArray:
        p = _progress(s, self.warmup, self.total)
        return self.peak + (self.final - self.peak) * p


@dataclass(frozen=True, kw_only=True)
class WSDSchedule(ParametricSchedule):
    """Warmup-stable-decay: ``peak`` until ``decay_start``, then a cooldown to ``final``.

    The cooldown reaches ``final`` at step ``total``; its ``shape`` is ``linear``, ``cosine``,
    ``exp`` (geometric interpolation, needs ``final > 0``) or ``sqrt`` (``1 − √progress``).
    Give ``decay_start`` (a step) or ``decay`` (the cooldown's fraction of ``total``).
    """

    kind: ClassVar[str] = "wsd"
    summary: ClassVar[str] = (
        "wsd: peak until decay_start (or the last `decay` fraction), then cooldown "
        "(shape=linear|cosine|exp|sqrt) to final"
    )
    decay_start: int | None = None
    decay: float | None = None
    shape: str = "linear"
    final: float = 0.0
    _start: int = field(init=False, repr=False, compare=False, default=0)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_floor("final", self.final)
        self._check_choice("shape", self.shape, COOLDOWN_SHAPES)
        if self.shape == "exp" and self.final <= 0:
            raise SpecError("wsd: an exp cooldown needs final > 0 (it interpolates geometrically)")
        if (self.decay_start is None) == (self.decay is None):
            raise SpecError("wsd: give exactly one of decay_start (a step) or decay (a fraction)")
        if self.decay is not None:
            if not 0 < self.decay <= 1:
                raise SpecError(f"wsd: decay={self.decay} must be a fraction in (0, 1]")
            start = self.total - round(self.decay * self.total)
        else:
            assert self.decay_start is not None
            start = self.decay_start
        self._check_step("decay_start", start)
        object.__setattr__(self, "_start", start)

    @property
    def cooldown_start(self) -> int:
        """First step of the cooldown."""
        return self._start

    def _after_warmup(self, s: FloatArray) -> FloatArray:
        p = _progress(s, self._start, self.total)
        if self.shape == "linear":
            out = self.peak + (self.final - self.peak) * p
        elif self.shape == "cosine":
            out = _cosine(p, self.peak, self.final)
        elif self.shape == "exp":
            out = self.peak * (self.final / self.peak) ** p
        else:
            out = self.final + (self.peak - self.final) * (1.0 - np.sqrt(p))
        return np.asarray(out, dtype=float)


@dataclass(frozen=True, kw_only=True)
class MultiStepSchedule(ParametricSchedule):
    """Piecewise constant: ``peak``, then a new value at each milestone step.

    The values are ``values`` (one per milestone) or ``peak · gamma^j`` after the j-th
    milestone. Two-stage schedules are the one-milestone case.
    """

    kind: ClassVar[str] = "multistep"
    summary: ClassVar[str] = (
        "multistep: peak, then values (a/b/…) or peak·gamma^j at milestones (m1/m2/…)"
    )
    milestones: tuple[int, ...]
    gamma: float = 0.1
    values: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.milestones:
            raise SpecError("multistep: milestones needs at least one step (e.g. milestones=8000)")
        for m in self.milestones:
            self._check_step("milestones", m)
        if any(b <= a for a, b in zip(self.milestones, self.milestones[1:], strict=False)):
            raise SpecError(f"multistep: milestones {self.milestones} must be increasing")
        self._check_lr("gamma", self.gamma)
        if self.values:
            if len(self.values) != len(self.milestones):
                raise SpecError(
                    f"multistep: {len(self.values)} values for {len(self.milestones)} milestones"
                )
            for v in self.values:
                self._check_floor("values", v)

    def _after_warmup(self, s: FloatArray) -> FloatArray:
        levels = (
            np.array((self.peak, *self.values))
            if self.values
            else self.peak * self.gamma ** np.arange(len(self.milestones) + 1)
        )
        return np.asarray(levels[np.searchsorted(self.milestones, s, side="right")], dtype=float)


@dataclass(frozen=True, kw_only=True)
class InverseSqrtSchedule(ParametricSchedule):
    """``peak · √(τ / (τ + s − warmup))`` after the warmup, ``τ`` = ``timescale``.

    The default ``timescale`` is the warmup length (the Transformer's ``peak·√(warmup/s)``),
    or 1 step without warmup.
    """

    kind: ClassVar[str] = "invsqrt"
    summary: ClassVar[str] = "invsqrt: peak·sqrt(timescale/(timescale + steps after warmup))"
    timescale: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.timescale is not None and not self.timescale > 0:
            raise SpecError(f"invsqrt: timescale={self.timescale} must be positive")

    def _after_warmup(self, s: FloatArray) -> FloatArray:
        tau = self.timescale if self.timescale is not None else max(self.warmup, 1)
        return np.asarray(self.peak * np.sqrt(tau / (tau + s - self.warmup)), dtype=float)


@dataclass(frozen=True, kw_only=True)
class CyclicCosineSchedule(ParametricSchedule):
    """Cosine cycles of ``period`` steps from the peak to ``final`` (SGDR-style restarts).

    The amplitude above ``final`` is multiplied by ``cycle_decay`` at each restart.
    """

    kind: ClassVar[str] = "cyclic"
    summary: ClassVar[str] = "cyclic: cosine cycles of `period` steps, amplitude × cycle_decay"
    period: int
    final: float = 0.0
    cycle_decay: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_floor("final", self.final)
        if self.period < 1:
            raise SpecError(f"cyclic: period={self.period} must be at least 1 step")
        if not 0 < self.cycle_decay <= 1:
            raise SpecError(f"cyclic: cycle_decay={self.cycle_decay} must be in (0, 1]")

    def _after_warmup(self, s: FloatArray) -> FloatArray:
        cycle, within = np.divmod(s - self.warmup, self.period)
        amplitude = (self.peak - self.final) * self.cycle_decay**cycle
        return self.final + amplitude * 0.5 * (1.0 + np.cos(math.pi * within / self.period))


#: every parametric kind, by spec name
SCHEDULE_KINDS: dict[str, type[ParametricSchedule]] = {
    cls.kind: cls
    for cls in (
        ConstantSchedule,
        CosineSchedule,
        LinearSchedule,
        WSDSchedule,
        MultiStepSchedule,
        InverseSqrtSchedule,
        CyclicCosineSchedule,
    )
}


def check_learning_rates(
    values: FloatArray,
    source: str | None = None,
    row_of: Callable[[int], int] | None = None,
) -> None:
    """Raise an InputError naming the first learning rate that is not finite and >= 0.

    ``row_of`` maps a position in ``values`` to the user's 1-based row; by default rows count
    from 1 in the order given (the user's rows, before any sorting).
    """
    bad = np.flatnonzero(~np.isfinite(values) | (values < 0))
    if bad.size:
        first = int(bad[0])
        raise InputError(
            "learning rate must be finite and >= 0",
            source=source,
            row=first + 1 if row_of is None else row_of(first),
            column="lr",
            value=float(values[bad[0]]),
        )


class TabulatedSchedule(Schedule):
    """A schedule given by its learning rate at every step (e.g. rebuilt from training logs).

    Parameters
    ----------
    values
        Learning rate of steps ``0 … len(values) − 1``; non-negative, finite, not all zero.
    source
        Where the values came from, for error messages.
    """

    def __init__(self, values: ArrayLike, *, source: str | None = None) -> None:
        arr = np.array(values, dtype=float).reshape(-1)
        if arr.size == 0:
            raise InputError("a schedule needs at least one learning rate", source=source)
        check_learning_rates(arr, source)
        if not arr.max() > 0:
            raise InputError("every learning rate is zero", source=source, column="lr")
        arr.setflags(write=False)
        self.values = arr
        self.total = int(arr.size)
        self.peak = float(arr.max())

    def lr(self, steps: ArrayLike) -> FloatArray:
        idx = np.clip(np.asarray(steps, dtype=np.int64), 0, self.total - 1)
        return np.asarray(self.values[idx], dtype=float)

    def array(self) -> FloatArray:
        return np.array(self.values)

    def __repr__(self) -> str:
        return f"TabulatedSchedule(total={self.total}, peak={self.peak:g})"
