"""Choose a schedule for a fixed number of steps, under any model of the final loss.

The model is a function ``lr (per step) → (final loss, d loss / d lr)``, e.g. a fitted curve
law's :meth:`~scalinglab.laws.curve.CurveLaw.final_loss`. Every candidate keeps the same
warmup, peak and floor (``final``): the WSD grid varies the cooldown's length and shape; the
free schedule is any non-increasing learning rate between the peak and the floor after the
warmup (as Luo et al. 2025 optimise it), parametrised by knots and optimised with L-BFGS-B
from the best WSD and from cosine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from scalinglab.errors import SpecError
from scalinglab.schedules.areas import check_schedule_steps
from scalinglab.schedules.base import (
    COOLDOWN_SHAPES,
    CosineSchedule,
    FloatArray,
    Schedule,
    TabulatedSchedule,
    WSDSchedule,
)

#: final loss and its gradient with respect to every step's learning rate
FinalLoss = Callable[[FloatArray], tuple[float, FloatArray]]

DEFAULT_FRACTIONS: tuple[float, ...] = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.8)
#: a sigmoid this close to 1 keeps the learning rate flat between two knots
_Z_BOUND = 20.0
#: the longest budget optimised: every candidate is a per-step array, evaluated hundreds of
#: times (about 100 bytes and, here, a few microseconds per step per evaluation)
MAX_OPTIMIZE_STEPS = 10_000_000


@dataclass(frozen=True)
class Candidate:
    """One schedule and the loss the model predicts after it."""

    name: str
    schedule: Schedule
    final_loss: float


@dataclass
class ScheduleChoice:
    """Predicted final losses of the baselines, the WSD grid and the optimised schedule."""

    cosine: Candidate
    wsd20: Candidate
    best_wsd: Candidate
    optimized: Candidate
    wsd_grid: list[dict[str, float | str]] = field(default_factory=list)
    knots: tuple[FloatArray, FloatArray] = (np.zeros(0), np.zeros(0))

    @property
    def recommended(self) -> Candidate:
        """The lower-loss of the best WSD and the optimised schedule."""
        return min((self.optimized, self.best_wsd), key=lambda c: c.final_loss)

    @property
    def candidates(self) -> list[Candidate]:
        """Baselines first, then the best WSD and the optimised schedule."""
        return [self.cosine, self.wsd20, self.best_wsd, self.optimized]

    def gain_over(self, baseline: Candidate, candidate: Candidate | None = None) -> float:
        """Predicted loss reduction (nats) of ``candidate`` (default: optimised) vs ``baseline``."""
        return baseline.final_loss - (candidate or self.optimized).final_loss


def wsd_grid(
    final_loss: FinalLoss,
    *,
    total: int,
    peak: float,
    warmup: int = 0,
    final: float = 0.0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    shapes: Sequence[str] = COOLDOWN_SHAPES,
) -> list[Candidate]:
    """Predicted final loss of WSD for every cooldown fraction × shape.

    ``exp`` needs a positive floor and is skipped when ``final`` is 0; fractions that would
    start the cooldown inside the warmup are skipped.
    """
    out = []
    for shape in shapes:
        if shape == "exp" and final <= 0:
            continue
        for fraction in fractions:
            if total - round(fraction * total) < warmup:
                continue
            sched = WSDSchedule(
                peak=peak, total=total, warmup=warmup, decay=fraction, shape=shape, final=final
            )
            loss, _ = final_loss(sched.array())
            out.append(Candidate(f"wsd {fraction:.0%} {shape}", sched, loss))
    if not out:
        raise SpecError("no WSD candidate fits: every cooldown starts inside the warmup")
    return out


class _Knots:
    """Non-increasing learning rate after the warmup from unconstrained numbers ``z``.

    Knot ``j`` has value ``final + (peak − final)·Π_{i≤j} σ(z_i)``; the learning rate is
    linear between knots, which are denser towards the end where schedules decay.
    """

    def __init__(self, template: Schedule, warmup: int, final: float, n_knots: int) -> None:
        self.base = template.array()
        self.total = self.base.size
        self.warmup, self.final, self.peak = warmup, final, template.peak
        span = self.total - 1 - warmup
        u = np.linspace(0.0, 1.0, n_knots)
        pos = np.unique(np.round(warmup + span * (1.0 - (1.0 - u) ** 2)).astype(np.int64))
        self.positions = pos
        steps = np.arange(warmup, self.total)
        seg = np.clip(np.searchsorted(pos, steps, side="right") - 1, 0, max(pos.size - 2, 0))
        width = np.maximum(pos[np.minimum(seg + 1, pos.size - 1)] - pos[seg], 1)
        self.seg = seg
        self.frac = np.where(pos.size > 1, (steps - pos[seg]) / width, 0.0)

    def values(self, z: FloatArray) -> FloatArray:
        from scipy.special import expit  # scipy is imported on use: CLI startup stays fast

        return self.final + (self.peak - self.final) * np.exp(np.cumsum(np.log(expit(z))))

    def lr(self, z: FloatArray) -> FloatArray:
        v = self.values(z)
        lr = self.base.copy()
        nxt = np.minimum(self.seg + 1, v.size - 1)
        lr[self.warmup :] = (1.0 - self.frac) * v[self.seg] + self.frac * v[nxt]
        return lr

    def grad(self, z: FloatArray, grad_lr: FloatArray) -> FloatArray:
        v = self.values(z)
        g = grad_lr[self.warmup :]
        n = v.size
        nxt = np.minimum(self.seg + 1, n - 1)
        dv = np.bincount(self.seg, g * (1.0 - self.frac), n) + np.bincount(nxt, g * self.frac, n)
        # v_j − final = (peak − final)·Π_{i≤j} σ(z_i), so d v_j / d z_i = (v_j − final)(1 − σ(z_i))
        tail = np.cumsum((dv * (v - self.final))[::-1])[::-1]
        from scipy.special import expit

        return np.asarray((1.0 - expit(z)) * tail, dtype=float)

    def z_from(self, schedule: Schedule) -> FloatArray:
        """Knot numbers that follow ``schedule`` at the knots."""
        above = np.maximum(schedule.lr(self.positions) - self.final, 0.0)
        prev = np.concatenate([[self.peak - self.final], above[:-1]])
        ratio = np.clip(above / np.maximum(prev, 1e-300), 1e-8, 1.0 - 1e-8)
        return np.clip(np.log(ratio) - np.log1p(-ratio), -_Z_BOUND, _Z_BOUND)


def optimize_monotone(
    final_loss: FinalLoss,
    *,
    total: int,
    peak: float,
    warmup: int = 0,
    final: float = 0.0,
    knots: int = 40,
    starts: Sequence[Schedule] = (),
    max_iter: int = 500,
) -> tuple[Candidate, tuple[FloatArray, FloatArray]]:
    """The non-increasing schedule (between ``peak`` and ``final``) with the lowest final loss.

    Parameters
    ----------
    final_loss
        Model of the final loss with its gradient in the per-step learning rate.
    total, peak, warmup, final
        Steps, peak learning rate, linear warmup length, and the floor.
    knots
        Number of knots of the piecewise-linear schedule after the warmup.
    starts
        Schedules to start the optimisation from (default: cosine to ``final``).
    max_iter
        Iteration cap of L-BFGS-B per start.

    Returns
    -------
    tuple
        The best schedule (a :class:`TabulatedSchedule`) and its knots ``(steps, lr)``.
    """
    if knots < 2:
        raise SpecError(f"knots={knots} must be at least 2")
    if knots > total - warmup:
        raise SpecError(f"knots={knots} is more than the {total - warmup} steps after the warmup")
    template = CosineSchedule(peak=peak, total=total, warmup=warmup, final=final)
    param = _Knots(template, warmup, final, knots)

    def objective(z: FloatArray) -> tuple[float, FloatArray]:
        loss, grad_lr = final_loss(param.lr(z))
        return loss, param.grad(z, grad_lr)

    from scipy.optimize import minimize

    best_z, best_loss = None, np.inf
    for start in starts or (template,):
        res = minimize(
            objective,
            param.z_from(start),
            jac=True,
            method="L-BFGS-B",
            bounds=[(-_Z_BOUND, _Z_BOUND)] * param.positions.size,
            options={"maxiter": max_iter},
        )
        if float(res.fun) < best_loss:
            best_z, best_loss = np.asarray(res.x, dtype=float), float(res.fun)
    if best_z is None:  # every start gave a loss of nan or inf
        raise SpecError(
            f"the law predicts no finite final loss for schedules from peak={peak:g} to "
            f"final={final:g} over {total} steps; are the rates in the optimizer's units "
            "(e.g. 3e-4)?"
        )
    sched = TabulatedSchedule(param.lr(best_z))
    loss, _ = final_loss(sched.array())
    return Candidate("optimized", sched, loss), (
        param.positions.astype(float),
        param.values(best_z),
    )


def choose_schedule(
    final_loss: FinalLoss,
    *,
    total: int,
    peak: float,
    warmup: int = 0,
    final: float = 0.0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    shapes: Sequence[str] = COOLDOWN_SHAPES,
    knots: int = 40,
) -> ScheduleChoice:
    """Compare cosine, WSD-20% (linear cooldown), the best WSD, and the optimised schedule.

    Parameters
    ----------
    final_loss
        Model of the final loss with its gradient in the per-step learning rate.
    total
        Number of optimizer steps (the budget).
    peak
        Peak learning rate, shared by every candidate.
    warmup
        Linear warmup (from 0) shared by every candidate.
    final
        Floor of every candidate: cosine and WSD decay to it, the free schedule stays above.
    fractions, shapes
        The WSD grid.
    knots
        Knots of the free schedule.

    Returns
    -------
    ScheduleChoice
    """
    check_schedule_steps(total, "total", MAX_OPTIMIZE_STEPS, "choosing a schedule")
    cosine_sched = CosineSchedule(peak=peak, total=total, warmup=warmup, final=final)
    cosine = Candidate("cosine", cosine_sched, final_loss(cosine_sched.array())[0])
    wsd20_sched = WSDSchedule(
        peak=peak, total=total, warmup=warmup, decay=0.2, shape="linear", final=final
    )
    wsd20 = Candidate("wsd 20% linear", wsd20_sched, final_loss(wsd20_sched.array())[0])
    grid = wsd_grid(
        final_loss,
        total=total,
        peak=peak,
        warmup=warmup,
        final=final,
        fractions=fractions,
        shapes=shapes,
    )
    best_wsd = min(grid, key=lambda c: c.final_loss)
    optimized, knot_values = optimize_monotone(
        final_loss,
        total=total,
        peak=peak,
        warmup=warmup,
        final=final,
        knots=knots,
        starts=(best_wsd.schedule, cosine_sched),
    )
    rows: list[dict[str, float | str]] = []
    for c in grid:
        assert isinstance(c.schedule, WSDSchedule)
        rows.append(
            {
                "fraction": float(c.schedule.decay or 0.0),
                "shape": c.schedule.shape,
                "final_loss": c.final_loss,
            }
        )
    return ScheduleChoice(cosine, wsd20, best_wsd, optimized, rows, knot_values)
