"""Schedule-aware loss-curve laws: the whole training curve from the learning-rate schedule.

- ``annealing`` (Tissue et al. 2024, "Scaling Laws with Learning Rate Annealing"):
  ``L(s) = L0 + A·S1^(−α) − C·S2``, with the forward area ``S1`` and annealing area ``S2`` of
  :func:`scalinglab.schedules.lr_areas` (momentum decay λ, default 0.999).
- ``annealing_size``: its model-size extension ``L(s, N) = L0 + A·S1^(−α) + B·N^(−β) − C·S2``.
- ``multipower`` (Luo et al. 2025, "A Multi-Power Law for Loss Curve Prediction Across Learning
  Rate Schedules"): ``L(t) = L0 + A·S1(t)^(−α) − LD(t)`` with the loss drop
  ``LD(t) = B Σ_k (η_{k−1} − η_k)·G(η_k^(−γ) S_k(t))``, ``S_k(t) = Σ_{τ=k..t} η_τ`` and
  ``G(x) = 1 − (C x + 1)^(−β)``. (Luo et al. write ``S1 + S_W`` with ``S_W`` the warmup area;
  here ``S1`` already includes it.)

Conventions. The loss logged at step ``s`` is measured after ``s`` optimizer updates, which used
``lr[0] … lr[s−1]``; so a drop of the learning rate at step ``s`` shows in the loss from step
``s + 1`` on. Learning rates are in the optimizer's units (Luo et al.'s parameters are for
AdamW learning rates around 3e-4).

Warmup (option ``warmup``): ``"s1"`` (default, as both papers) counts the warmup's area in
``S1`` but not its increases as negative annealing; ``"both"`` counts the warmup in both terms
(what Luo et al.'s code does); ``"neither"`` starts ``S1`` and the annealing terms at the end
of the warmup (the first step at the peak learning rate); ``"fit"`` is ``"s1"`` plus a fitted
area ``S0 >= 0`` added to ``S1``: the warmup may count for more than its area (after a short
warmup the loss falls faster than a power law of the area says), never less; ``S0 = 0`` is
``"s1"``.

Each run's per-step learning rate comes from its ``schedule`` column (a spec string, see
:func:`scalinglab.schedules.parse_schedule`) when it has one, else from its logged ``lr``
column (:func:`scalinglab.schedules.read_logged_lr`: sparse logs, logs that start mid-run and
the two conventions of which update a logged rate belongs to; ``observations.attrs
["lr_convention"]`` may set the convention). What a log cannot pin (where a step in the rate
happened, what came before its first row) is said in a :class:`ScheduleWarning`, with the fix:
the run's schedule spec.
"""

from __future__ import annotations

import math
import warnings
from abc import abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, cast

import numpy as np
from numpy.typing import ArrayLike, NDArray

from scalinglab.errors import FitError, InputError, SpecError
from scalinglab.laws.base import Features, FloatArray, Law, Parameter, register
from scalinglab.schedules import (
    DEFAULT_DECAY,
    MAX_SCHEDULE_STEPS,
    LearningRates,
    Schedule,
    check_learning_rates,
    check_schedule_steps,
    drop_sums_at,
    lr_areas_at,
    lr_drops,
    parse_schedule,
    peak_step,
    read_logged_lr,
    warmup_end,
)
from scalinglab.user_input import check_finite

if TYPE_CHECKING:
    # pandas is imported where it is used: `scalinglab laws` starts without it
    import pandas as pd

WarmupMode = Literal["s1", "both", "neither", "fit"]
WARMUP_MODES: tuple[str, ...] = ("s1", "both", "neither", "fit")
#: learning rates below this fraction of the peak count as this fraction in η^(−γ), so that a
#: schedule decaying to exactly 0 keeps a finite multi-power loss drop
_LR_FLOOR_FRACTION = 1e-8
#: the most steps one call of predict_curve predicts (pass fewer steps, e.g. every 100th)
MAX_CURVE_POINTS = 1_000_000
#: features held at once while predicting (points × bins): predictions go in blocks of points
_BLOCK_VALUES = 1 << 21


class CurveLaw(Law):
    """A law of the loss along one training run, driven by its learning-rate schedule.

    Subclasses compute their features from a run's per-step learning rate
    (:meth:`curve_features`) and the loss after the last step with its gradient with respect
    to every step's learning rate (:meth:`final_loss`), which the schedule optimiser uses.
    """

    irreducible: ClassVar[str | None] = "L0"
    pinned_by_runs: ClassVar[bool] = False

    def __init__(self, warmup: WarmupMode = "s1") -> None:
        if warmup not in WARMUP_MODES:
            raise SpecError(f"warmup={warmup!r} is not one of {', '.join(WARMUP_MODES)}")
        self.warmup: WarmupMode = warmup

    def config(self) -> dict[str, Any]:
        return {"warmup": self.warmup}

    # -- features ------------------------------------------------------------------------

    @abstractmethod
    def curve_features(
        self, lr: LearningRates, steps: NDArray[np.int64], *, model_params: float | None = None
    ) -> dict[str, FloatArray]:
        """Features of the points at ``steps`` of one run with per-step learning rate ``lr``.

        ``lr`` is an array that covers every update before the last step
        (``len(lr) >= max(steps)``), or a schedule (read chunk by chunk: memory does not grow
        with the number of steps).
        """

    def feature_width(self, n_steps: int) -> int:
        """Feature values per point for runs of up to ``n_steps`` (memory per point)."""
        return 1

    def features(self, observations: pd.DataFrame) -> dict[str, FloatArray]:
        """Per-point features, computed run by run from each run's learning-rate schedule."""
        df = observations
        source = str(df.attrs.get("source", "<DataFrame>"))
        if "step" not in df.columns:
            raise InputError(f"law '{self.name}' needs a 'step' column", source=source)
        if "lr" not in df.columns and "schedule" not in df.columns:
            raise InputError(
                f"law '{self.name}' needs each run's learning rate: an 'lr' column or a "
                "'schedule' column of spec strings",
                source=source,
            )
        if "params" in self.inputs and "params" not in df.columns:
            raise InputError(f"law '{self.name}' needs a 'params' column", source=source)
        steps_all = _whole_steps(df, source)
        runs = df["run_id"].astype(str).to_numpy() if "run_id" in df.columns else None
        out: dict[str, FloatArray] = {}
        for rows in _run_rows(runs, len(df)):
            run_df = df.iloc[rows]
            run_name = str(runs[rows[0]]) if runs is not None else "the run"
            steps = steps_all[rows]
            model_params = None
            if "params" in self.inputs:
                model_params = _one_value(run_df, "params", run_name, source)
            try:
                feats = self.curve_features(
                    run_schedule(run_df, source=source), steps, model_params=model_params
                )
            except InputError as err:
                raise InputError(
                    f"run {run_name}: {err.reason}",
                    source=err.source or source,
                    row=err.row,
                    column=err.column,
                    value=err.value,
                ) from None
            for name, values in feats.items():
                if name not in out:
                    out[name] = np.zeros((len(df), *values.shape[1:]))
                elif out[name].shape[1:] != values.shape[1:]:
                    # per-run bin counts differ: pad the narrower with empty bins
                    width = max(out[name].shape[1], values.shape[1])
                    out[name] = _pad(out[name], width)
                    values = _pad(values, width)
                out[name][rows] = values
        return out

    def _checked_s1(self, s1: FloatArray, t: NDArray[np.int64]) -> FloatArray:
        """The forward area at updates ``t``, checked to be positive and finite."""
        if not np.all(np.isfinite(s1)):
            bad = int(t[np.flatnonzero(~np.isfinite(s1))[0]]) + 1
            raise InputError(
                f"the learning rates add up to more than the largest number by step {bad}; "
                "are they in the optimizer's units (e.g. 3e-4)?",
                column="lr",
            )
        if np.any(s1 <= 0):
            bad = int(t[np.flatnonzero(s1 <= 0)[0]]) + 1
            raise InputError(
                f"no learning-rate area before step {bad}: curve laws need points after "
                "updates with a positive learning rate"
                + (
                    " (and after the warmup, with warmup='neither')"
                    if self.warmup == "neither"
                    else ""
                )
            )
        return np.asarray(s1, dtype=float)

    def _anneal_start(self, lr: LearningRates, n: int | None = None) -> int:
        """Step up to which learning-rate changes are not annealing (the warmup)."""
        return 0 if self.warmup == "both" else warmup_end(lr, n)

    def _s1_start(self, lr: LearningRates, n: int | None = None) -> int:
        return warmup_end(lr, n) if self.warmup == "neither" else 0

    def _warmup_parameters(self) -> tuple[Parameter, ...]:
        """``S0`` with ``warmup="fit"`` (the last parameter of every curve law)."""
        if self.warmup != "fit":
            return ()
        return (
            Parameter("S0", 0.0, math.inf, (0.0,), bound_is_natural=True,
                      description="forward area the warmup counts for beyond its own, lr x steps"),
        )  # fmt: skip

    def _log_s1(self, theta: FloatArray, x: Features) -> FloatArray:
        """``log S1`` of every point, ``(1, n)``, or ``(k, n)`` with a fitted ``S0``."""
        s1 = np.asarray(x["s1"], dtype=float)[None, :]
        if self.warmup == "fit":
            s1 = s1 + theta[:, -1, None]
        return np.asarray(np.log(s1), dtype=float)

    def _final_s1(self, theta: FloatArray, lr: FloatArray) -> tuple[float, FloatArray]:
        """S1 after the last update and ``d S1 / d lr``."""
        mask = self._s1_mask(lr)
        s1 = float(np.dot(mask, lr)) + (float(theta[-1]) if self.warmup == "fit" else 0.0)
        return s1, mask

    def _s1_mask(self, lr: FloatArray) -> FloatArray:
        """d S1 / d lr: which steps count towards S1."""
        mask = np.ones_like(lr)
        mask[: self._s1_start(lr)] = 0.0
        return mask

    # -- the loss after a whole schedule, for choosing schedules -------------------------

    @abstractmethod
    def final_loss(
        self, theta: Mapping[str, float], lr: FloatArray, *, model_params: float | None = None
    ) -> tuple[float, FloatArray]:
        """Loss after ``len(lr)`` updates and its gradient with respect to each ``lr[i]``.

        Exact (no binning); O(len(lr)).
        """


def _pad(values: FloatArray, width: int) -> FloatArray:
    extra = width - values.shape[1]
    if extra <= 0:
        return values
    return np.concatenate([values, np.zeros((values.shape[0], extra))], axis=1)


def _whole_steps(df: pd.DataFrame, source: str) -> NDArray[np.int64]:
    import pandas as pd

    raw = pd.to_numeric(df["step"], errors="coerce").to_numpy(dtype=float)
    bad = np.flatnonzero(~np.isfinite(raw) | (raw < 1) | (raw != np.round(raw)))
    if bad.size:
        raise InputError(
            "step must be a whole number >= 1 (the loss after that many updates)",
            source=source,
            row=_row(df, int(bad[0])),
            column="step",
            value=df["step"].iloc[bad[0]],
        )
    bad = np.flatnonzero(raw > MAX_SCHEDULE_STEPS)
    if bad.size:
        raise InputError(
            f"step is beyond the limit of {MAX_SCHEDULE_STEPS:,} steps for curve laws",
            source=source,
            row=_row(df, int(bad[0])),
            column="step",
            value=df["step"].iloc[bad[0]],
        )
    return raw.astype(np.int64)


def _row(df: pd.DataFrame, pos: int) -> int:
    """The user's 1-based row number of position ``pos``."""
    if "source_row" in df.columns:
        return int(df["source_row"].iloc[pos])
    return pos + 1


def _run_rows(runs: NDArray[Any] | None, n: int) -> list[NDArray[np.intp]]:
    import pandas as pd

    if runs is None:
        return [np.arange(n)]
    codes, _ = pd.factorize(runs)
    order = np.argsort(codes, kind="stable")
    splits = np.flatnonzero(np.diff(codes[order])) + 1
    return list(np.split(order, splits))


def _one_value(run_df: pd.DataFrame, column: str, run: str, source: str) -> float:
    import pandas as pd

    values = pd.to_numeric(run_df[column], errors="coerce").to_numpy(dtype=float)
    if not np.all(np.isfinite(values) & (values > 0)):
        pos = int(np.flatnonzero(~(np.isfinite(values) & (values > 0)))[0])
        raise InputError(
            f"run {run}: '{column}' must be positive",
            source=source,
            row=_row(run_df, pos),
            column=column,
            value=run_df[column].iloc[pos],
        )
    if np.ptp(values) > 0:
        raise InputError(f"run {run}: '{column}' changes within the run", source=source)
    return float(values[0])


class ScheduleWarning(UserWarning):
    """A logged learning rate that cannot pin a run's schedule: what was assumed, and the fix.

    Attributes
    ----------
    run
        The run.
    note
        What the log could not pin and what was assumed (one line).
    """

    def __init__(self, run: str, note: str) -> None:
        self.run = run
        self.note = note
        super().__init__(f"run {run}: {note}; give its schedule spec in a 'schedule' column")


def run_schedule(
    run: pd.DataFrame, *, source: str = "<DataFrame>", name: str | None = None
) -> Schedule:
    """The learning-rate schedule of one run: its ``schedule`` spec, else its logged ``lr``.

    A schedule given in ``run.attrs["schedules"]`` (run id → :class:`Schedule`) comes first.
    A logged ``lr`` is read by :func:`scalinglab.schedules.read_logged_lr` with the
    convention ``run.attrs["lr_convention"]`` (default ``"auto"``); what it cannot pin is
    reported as a :class:`ScheduleWarning`.

    Parameters
    ----------
    run
        The run's rows (``step`` and ``lr``, or a ``schedule`` column with one spec).
    source
        Name of the data, for error messages.
    name
        The run's name, for warnings (default: its ``run_id``).
    """
    import pandas as pd

    if name is None and "run_id" in run.columns and len(run):
        name = str(run["run_id"].iloc[0])
    given = run.attrs.get("schedules", {})
    if name in given:
        return cast(Schedule, given[name])
    if "schedule" in run.columns:
        specs = run["schedule"].dropna().astype(str).str.strip()
        specs = specs[specs != ""]
        if len(specs):
            if specs.nunique() > 1:
                raise InputError(
                    f"run has {specs.nunique()} different schedules: {', '.join(specs.unique())}",
                    source=source,
                    column="schedule",
                )
            return parse_schedule(specs.iloc[0])
    if "lr" not in run.columns:
        raise InputError("no 'schedule' spec and no 'lr' column for the run", source=source)
    steps = pd.to_numeric(run["step"], errors="coerce").to_numpy(dtype=float)
    lr = pd.to_numeric(run["lr"], errors="coerce").to_numpy(dtype=float)
    keep = ~np.isnan(lr)
    if not keep.any():
        raise InputError("the run has no logged learning rate", source=source, column="lr")
    if not keep.all():  # never interpolated over silently
        missing = int(np.flatnonzero(~keep)[0])
        raise InputError(
            "missing learning rate (the run logs one at other steps); fill it in, or give "
            "the run's schedule spec (--schedule RUN=SPEC)",
            source=source,
            row=_row(run, missing),
            column="lr",
        )
    kept = np.flatnonzero(keep)
    check_learning_rates(lr[keep], source, row_of=lambda i: _row(run, int(kept[i])))
    steps, lr = steps[keep], lr[keep]
    # losses on several datasets repeat a step: keep one learning rate per step
    uniq, first = np.unique(steps, return_index=True)
    if uniq.size < steps.size:
        if not np.allclose(lr, lr[first][np.searchsorted(uniq, steps)], rtol=1e-9, atol=0):
            raise InputError("two learning rates logged for one step", source=source, column="lr")
        steps, lr = uniq, lr[first]
    reading = read_logged_lr(
        lr, steps, convention=run.attrs.get("lr_convention", "auto"), source=source
    )
    for note in reading.notes:
        warnings.warn(ScheduleWarning(name or "the run", note), stacklevel=2)
    return reading.schedule


def run_lr(run: pd.DataFrame, n_steps: int, *, source: str = "<DataFrame>") -> FloatArray:
    """Learning rate of updates ``0 … n_steps − 1`` of one run (see :func:`run_schedule`)."""
    check_schedule_steps(n_steps, "n_steps")
    return run_schedule(run, source=source).lr(np.arange(n_steps))


# -- the annealing law (Tissue et al. 2024) ----------------------------------------------


def _log_loss(
    value: FloatArray, partials: list[FloatArray], grad: bool
) -> FloatArray | tuple[FloatArray, FloatArray]:
    """``log L`` (NaN where L <= 0) and ``d log L / dθ`` from ``L`` and its partials."""
    positive = value > 0
    safe = np.where(positive, value, 1.0)
    log_l = np.where(positive, np.log(safe), np.nan)
    if not grad:
        return log_l
    return log_l, np.stack(partials, axis=-1) / safe[..., None]


@register
class AnnealingLaw(CurveLaw):
    """``L(s) = L0 + A·S1^(−α) − C·S2`` (Tissue et al. 2024).

    Parameters
    ----------
    decay
        Momentum decay λ of the annealing area (0.999 in the paper; larger remembers
        learning-rate drops longer).
    warmup
        ``"s1"``, ``"both"`` or ``"neither"`` (see the module docstring).
    """

    name = "annealing"
    inputs: ClassVar[tuple[str, ...]] = ("s1", "s2")

    def __init__(self, decay: float = DEFAULT_DECAY, warmup: WarmupMode = "s1") -> None:
        super().__init__(warmup)
        if not 0 <= decay < 1:
            raise SpecError(f"decay={decay} must be in [0, 1)")
        self.decay = float(decay)

    def config(self) -> dict[str, Any]:
        return {"decay": self.decay, **super().config()}

    def parameters(self) -> tuple[Parameter, ...]:
        return (
            Parameter("L0", 0.0, math.inf, (1.5, 3.0), log_scale=True,
                      description="loss after infinite training at constant lr, nats/token"),
            Parameter("A", 0.0, math.inf, (0.3, 1.0, 3.0), log_scale=True,
                      description="scale of the forward-area term, nats/token"),
            Parameter("alpha", 0.0, 3.0, (0.3, 0.6), description="exponent of the forward area"),
            Parameter("C", 0.0, math.inf, (0.1, 1.0, 10.0), log_scale=True,
                      description="loss drop per unit of annealing area, nats/token"),
            *self._warmup_parameters(),
        )  # fmt: skip

    def curve_features(
        self, lr: LearningRates, steps: NDArray[np.int64], *, model_params: float | None = None
    ) -> dict[str, FloatArray]:
        t = np.asarray(steps, dtype=np.int64) - 1
        n = int(t.max()) + 1
        s1, s2 = lr_areas_at(
            lr,
            t,
            self.decay,
            anneal_start=self._anneal_start(lr, n),
            s1_start=self._s1_start(lr, n),
        )
        out = {"s1": self._checked_s1(s1, t), "s2": s2}
        if model_params is not None:
            out["params"] = np.full(t.shape, float(model_params))
        return out

    def _log_predict(
        self, theta: FloatArray, x: Features, *, grad: bool
    ) -> FloatArray | tuple[FloatArray, FloatArray]:
        theta = np.atleast_2d(theta)
        l0, a, alpha, c = (theta[:, i, None] for i in range(4))
        log_s1 = self._log_s1(theta, x)
        s2 = np.asarray(x["s2"], dtype=float)[None, :]
        forward = np.exp(-alpha * log_s1)
        value = l0 + a * forward - c * s2
        partials = [
            np.ones_like(value),
            np.broadcast_to(forward, value.shape),
            -a * forward * log_s1,
            np.broadcast_to(-s2, value.shape),
        ]
        if self.warmup == "fit":
            partials.append(-alpha * a * forward / np.exp(log_s1))
        return _log_loss(value, partials, grad)

    def _annealing_weights(self, lr: FloatArray) -> FloatArray:
        """``c_k``: how much a drop at step ``k`` adds to S2 after the last update."""
        n = lr.size
        k = np.arange(n)
        weights = np.asarray((1.0 - self.decay ** (n - k)) / (1.0 - self.decay), dtype=float)
        weights[: self._anneal_start(lr) + 1] = 0.0
        return weights

    def _s2_and_grad(self, lr: FloatArray) -> tuple[float, FloatArray]:
        c = self._annealing_weights(lr)
        s2 = float(np.dot(c, lr_drops(lr, anneal_start=self._anneal_start(lr))))
        # d_k = lr[k−1] − lr[k]: lr[j] enters d_{j+1} with +1 and d_j with −1
        grad = -c.copy()
        grad[:-1] += c[1:]
        return s2, grad

    def final_loss(
        self, theta: Mapping[str, float], lr: FloatArray, *, model_params: float | None = None
    ) -> tuple[float, FloatArray]:
        p = self.theta_vector(theta)
        l0, a, alpha, c = p[:4]
        lr = np.asarray(lr, dtype=float)
        s1, mask = self._final_s1(p, lr)
        s2, ds2 = self._s2_and_grad(lr)
        loss = l0 + a * s1**-alpha - c * s2
        grad = -alpha * a * s1 ** (-alpha - 1) * mask - c * ds2
        return float(loss), grad


@register
class AnnealingSizeLaw(AnnealingLaw):
    """``L(s, N) = L0 + A·S1^(−α) + B·N^(−β) − C·S2``: the annealing law across model sizes.

    ``N`` is the ``params`` column (one value per run).
    """

    name = "annealing_size"
    inputs: ClassVar[tuple[str, ...]] = ("s1", "s2", "params")

    def parameters(self) -> tuple[Parameter, ...]:
        l0, a, alpha, c, *warm = super().parameters()
        return (
            l0,
            a,
            alpha,
            Parameter("B", 0.0, math.inf, (1e2, 1e4), log_scale=True,
                      description="scale of the model-size term, nats/token"),
            Parameter("beta", 0.0, 3.0, (0.3,), description="exponent of the model size"),
            c,
            *warm,
        )  # fmt: skip

    def curve_features(
        self, lr: LearningRates, steps: NDArray[np.int64], *, model_params: float | None = None
    ) -> dict[str, FloatArray]:
        if model_params is None:
            raise InputError(f"law '{self.name}' needs the model size (params)")
        return super().curve_features(lr, steps, model_params=model_params)

    def _log_predict(
        self, theta: FloatArray, x: Features, *, grad: bool
    ) -> FloatArray | tuple[FloatArray, FloatArray]:
        theta = np.atleast_2d(theta)
        l0, a, alpha, b, beta, c = (theta[:, i, None] for i in range(6))
        log_s1 = self._log_s1(theta, x)
        log_n = np.log(np.asarray(x["params"], dtype=float))[None, :]
        s2 = np.asarray(x["s2"], dtype=float)[None, :]
        forward = np.exp(-alpha * log_s1)
        size = np.exp(-beta * log_n)
        value = l0 + a * forward + b * size - c * s2
        partials = [
            np.ones_like(value),
            np.broadcast_to(forward, value.shape),
            -a * forward * log_s1,
            np.broadcast_to(size, value.shape),
            -b * size * log_n,
            np.broadcast_to(-s2, value.shape),
        ]
        if self.warmup == "fit":
            partials.append(-alpha * a * forward / np.exp(log_s1))
        return _log_loss(value, partials, grad)

    def final_loss(
        self, theta: Mapping[str, float], lr: FloatArray, *, model_params: float | None = None
    ) -> tuple[float, FloatArray]:
        if model_params is None:
            raise FitError(f"law '{self.name}' needs the model size to predict a loss")
        p = self.theta_vector(theta)
        l0, a, alpha, b, beta, c = p[:6]
        base = {"L0": l0 + b * model_params**-beta, "A": a, "alpha": alpha, "C": c}
        if self.warmup == "fit":
            base["S0"] = p[6]
        return AnnealingLaw(self.decay, self.warmup).final_loss(base, lr)


# -- the multi-power law (Luo et al. 2025) -----------------------------------------------

#: the multi-power parameters that shape the loss drop (how it develops with time and with
#: training progress), as opposed to the backbone L0, A, alpha and the drop's depth B
SHAPE_PARAMETERS: tuple[str, ...] = ("C", "beta", "gamma", "delta")

#: The loss-drop shape of the default multi-power law (``progress=True``, ``warmup="fit"``)
#: measured on Luo et al.'s AdamW GPT curves (peak lr 3e-4): the mean of the shapes fitted
#: on all nine schedules of the 25M model (C 11.6, β 0.280, γ 0.414, δ 0.132) and of the 100M
#: model (6.37, 0.227, 0.472, 0.120), C geometrically. Curves whose learning rate decays
#: smoothly (constant, cosine) cannot show the shape; fitted with the 100M shape on the 25M
#: model's constant + cosine curves the law predicts its seven others within 0.106% mean
#: error, and the other way round 0.095% (``benchmarks/schedules_accuracy.py``, which
#: re-derives these values).
REFERENCE_SHAPE: Mapping[str, float] = {"C": 8.60, "beta": 0.254, "gamma": 0.443, "delta": 0.126}


@register
class MultiPowerLaw(CurveLaw):
    """``L(t) = L0 + A·S1^(−α) − B Σ_k (η_{k−1} − η_k)·(1 − (C η_k^(−γ) S_k(t) + 1)^(−β))``.

    The loss-drop sum runs over every step; for fitting it is evaluated on bins of steps
    before each point: single steps for the last ``exact_steps`` updates, then bins whose
    width grows geometrically by ``bin_ratio`` (each bin's drops summed, their learning rate
    and area averaged). With the defaults the binned curve is within 2e-5 (relative) of the
    exact sum on Luo et al.'s schedules; :meth:`final_loss` is exact.

    ``beta`` is bounded below by 0.5 (0.1 with ``progress=True``, whose reference shape has
    β ≈ 0.25): curves without a sharp drop (constant, cosine) cannot
    tell the power saturation from its β → 0 limit (a logarithm, which keeps growing and
    over-predicts the drop after a sudden decay); Luo et al. find β ≈ 0.6 from 25M to 400M
    parameters. A fit at that bound is reported by the engine's warnings; widen it with
    ``bounds={"beta": (lo, hi)}`` when the curves include sudden drops.

    With ``progress=True`` the loss drop is scaled by ``S1(t)^(−δ)``: the benefit of annealing
    shrinks as training progresses. On Luo et al.'s curves a constant ``B`` cannot hold both
    their 24k- and 72k-step cosines (the same decay of the learning rate lowers the loss less
    in the longer run), whatever the shape of ``G``; fitted on all nine schedules of either
    model size, ``δ`` comes out 0.12–0.13.

    Parameters
    ----------
    warmup
        ``"s1"``, ``"both"`` or ``"neither"`` (see the module docstring).
    exact_steps
        Number of most recent updates that get a bin of their own.
    bin_ratio
        Growth of bin width with distance from the point (> 1).
    progress
        Add the parameter ``delta`` (the loss drop times ``S1^(−δ)``).
    """

    name = "multipower"
    inputs: ClassVar[tuple[str, ...]] = ("s1",)

    def __init__(
        self,
        warmup: WarmupMode = "s1",
        exact_steps: int = 8,
        bin_ratio: float = 1.3,
        progress: bool = False,
    ) -> None:
        super().__init__(warmup)
        if exact_steps < 1:
            raise SpecError(f"exact_steps={exact_steps} must be at least 1")
        if not bin_ratio > 1:
            raise SpecError(f"bin_ratio={bin_ratio} must be above 1")
        self.exact_steps = int(exact_steps)
        self.bin_ratio = float(bin_ratio)
        self.progress = bool(progress)
        self._terms_cache: tuple[Any, _DropTerms] | None = None

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "exact_steps": self.exact_steps,
            "bin_ratio": self.bin_ratio,
            "progress": self.progress,
        }

    def parameters(self) -> tuple[Parameter, ...]:
        return (
            Parameter("L0", 0.0, math.inf, (2.0, 3.5), log_scale=True,
                      description="loss after infinite training at constant lr, nats/token"),
            Parameter("A", 0.0, math.inf, (0.5,), log_scale=True,
                      description="scale of the forward-area term, nats/token"),
            Parameter("alpha", 0.0, 3.0, (0.3, 0.6), description="exponent of the forward area"),
            Parameter("B", 0.0, math.inf, (100.0, 1000.0), log_scale=True,
                      description="loss drop per unit of lr decrease, nats/token per lr"),
            Parameter("C", 0.0, math.inf, (2.0,), log_scale=True,
                      description="scale of the loss-drop saturation"),
            # with the progress term the drop's shape measures out at β ≈ 0.25 (REFERENCE_SHAPE)
            Parameter("beta", 0.1 if self.progress else 0.5, 5.0, (0.6,),
                      description="power of the loss-drop saturation"),
            Parameter("gamma", 0.0, 3.0, (0.4, 0.7),
                      description="learning-rate exponent in the loss-drop saturation"),
            *((
                Parameter("delta", 0.0, 3.0, (0.0, 0.2),
                          description="decline of the loss drop with the forward area, "
                                      "S1^(-delta)"),
            ) if self.progress else ()),
            *self._warmup_parameters(),
        )  # fmt: skip

    def _edges(self, n_steps: int) -> NDArray[np.int64]:
        """Bin edges in updates before the point: 0, 1, …, exact_steps, then geometric."""
        edges = list(range(self.exact_steps + 1))
        while edges[-1] < n_steps:
            edges.append(max(edges[-1] + 1, math.ceil(edges[-1] * self.bin_ratio)))
        return np.asarray(edges, dtype=np.int64)

    def feature_width(self, n_steps: int) -> int:
        return int(self._edges(n_steps).size) - 1

    def curve_features(
        self, lr: LearningRates, steps: NDArray[np.int64], *, model_params: float | None = None
    ) -> dict[str, FloatArray]:
        t = np.asarray(steps, dtype=np.int64) - 1
        n = int(t.max()) + 1
        peak_at, peak = peak_step(lr, n)
        anneal_start = 0 if self.warmup == "both" else peak_at
        s1_start = peak_at if self.warmup == "neither" else 0
        edges = self._edges(n)
        # bin j of the point at update t holds drops at k in (t − edges[j+1], t − edges[j]]:
        # sums over k < hi minus sums over k < lo
        hi = np.clip(t[:, None] - edges[None, :-1], -1, n - 1) + 1
        lo = np.clip(t[:, None] - edges[None, 1:] + 1, 0, None)
        lo = np.minimum(lo, hi)
        s1_from = np.full(1, s1_start, dtype=np.int64)
        index, where = np.unique(np.concatenate([hi.ravel(), lo.ravel(), t + 1, s1_from]),
                                 return_inverse=True)  # fmt: skip
        sums = drop_sums_at(lr, index, anneal_start=anneal_start, floor=_LR_FLOOR_FRACTION * peak)
        k = hi.size

        def at(name: str, part: slice) -> FloatArray:
            return sums[name][where[part]]

        def binned(name: str) -> FloatArray:
            return (at(name, slice(0, k)) - at(name, slice(k, 2 * k))).reshape(hi.shape)

        weight, mass = binned("drop"), binned("size")
        cum_t = at("lr", slice(2 * k, 2 * k + t.size))
        s1 = cum_t - at("lr", slice(2 * k + t.size, None))
        filled = mass > 0
        denom = np.where(filled, mass, 1.0)
        mean_log_lr = np.where(filled, binned("size_log_lr") / denom, 0.0)
        area = np.where(filled, cum_t[:, None] - binned("size_area") / denom, 0.0)
        return {
            "s1": self._checked_s1(s1, t),
            "ld_weight": np.where(filled, weight, 0.0),
            "ld_log_lr": mean_log_lr,
            "ld_area": np.maximum(area, 0.0),
        }

    def _log_predict(
        self, theta: FloatArray, x: Features, *, grad: bool
    ) -> FloatArray | tuple[FloatArray, FloatArray]:
        theta = np.atleast_2d(theta)
        l0, a, alpha, b, c, beta, gamma = (theta[:, i, None] for i in range(7))
        log_s1 = self._log_s1(theta, x)
        forward = np.exp(-alpha * log_s1)
        # the loss drop's decline with training progress, S1^(−δ) (1 without `progress`)
        decline = np.exp(-theta[:, 7, None] * log_s1) if self.progress else np.ones((1, 1))
        n = log_s1.shape[1]
        terms = self._drop_terms(x)
        w, log_lr, area = terms.weight, terms.log_lr, terms.area
        scaled = np.exp(-gamma * log_lr) * area  # η^(−γ) S_k(t)
        cx1 = 1.0 + c * scaled
        log_cx1 = np.log(cx1)
        power = np.exp(-beta * log_cx1)  # (C x + 1)^(−β)
        drop_sum = terms.per_point(w * (1.0 - power), n) * decline
        value = l0 + a * forward - b * drop_sum
        if not grad:
            return _log_loss(value, [], False)
        slope = w * beta * power / cx1  # w · G'(x) / C
        slope_x = slope * scaled
        b_decline = b * decline
        partials = [
            np.ones_like(value),
            np.broadcast_to(forward, value.shape),
            -a * forward * log_s1,
            -drop_sum,
            -b_decline * terms.per_point(slope_x, n),
            -b_decline * terms.per_point(w * power * log_cx1, n),
            b_decline * c * terms.per_point(slope_x * log_lr, n),
        ]
        if self.progress:
            partials.append(b * drop_sum * log_s1)
        if self.warmup == "fit":  # d / d S0 through S1, in the forward term and the decline
            delta = theta[:, 7, None] if self.progress else 0.0
            partials.append((-alpha * a * forward + delta * b * drop_sum) / np.exp(log_s1))
        return _log_loss(value, partials, True)

    def _drop_terms(self, x: Features) -> _DropTerms:
        """The bins that hold a learning-rate drop, flattened (cached for repeated calls)."""
        weight = x["ld_weight"]
        cached = self._terms_cache
        if cached is not None and cached[0] is weight:
            return cached[1]
        w = np.asarray(weight, dtype=float)
        rows, cols = np.nonzero(w)
        starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]]) if rows.size else rows
        terms = _DropTerms(
            rows=rows[starts],
            starts=starts,
            weight=w[rows, cols][None, :],
            log_lr=np.asarray(x["ld_log_lr"], dtype=float)[rows, cols][None, :],
            area=np.asarray(x["ld_area"], dtype=float)[rows, cols][None, :],
        )
        self._terms_cache = (weight, terms)
        return terms

    def final_loss(
        self, theta: Mapping[str, float], lr: FloatArray, *, model_params: float | None = None
    ) -> tuple[float, FloatArray]:
        p = self.theta_vector(theta)
        l0, a, alpha, b, c, beta, gamma = p[:7]
        delta = p[7] if self.progress else 0.0
        lr = np.asarray(lr, dtype=float)
        s1, mask = self._final_s1(p, lr)
        drops = lr_drops(lr, anneal_start=self._anneal_start(lr))
        floor = _LR_FLOOR_FRACTION * lr.max()
        eta = np.maximum(lr, floor)
        scale = eta**-gamma
        suffix = np.cumsum(lr[::-1])[::-1]  # S_k(t) = Σ_{τ=k..t} η_τ
        scaled = scale * suffix
        cx1 = 1.0 + c * scaled
        power = cx1**-beta
        g = 1.0 - power
        g_slope = beta * c * power / cx1  # G'(x)
        drop_sum = float(np.dot(drops, g))
        decline = s1**-delta
        loss = l0 + a * s1**-alpha - b * decline * drop_sum
        active = drops != 0
        # d LD / d η_j: through the drops d_j (−1) and d_{j+1} (+1), through S_k(t) for every
        # k <= j, and through η_j^(−γ) for k = j
        g_active = np.where(active, g, 0.0)
        d_ld = -g_active
        d_ld[:-1] += g_active[1:]
        d_ld += np.cumsum(drops * g_slope * scale)
        d_scale = np.where(lr > floor, -gamma * scaled / eta, 0.0)
        d_ld += drops * g_slope * d_scale
        d_s1 = -alpha * a * s1 ** (-alpha - 1) + b * delta * decline / s1 * drop_sum
        grad = d_s1 * mask - b * decline * d_ld
        return float(loss), grad


@dataclass(frozen=True)
class _DropTerms:
    """Non-empty loss-drop bins of all points, flattened in point order."""

    rows: NDArray[np.intp]  # point of each run of consecutive entries
    starts: NDArray[np.intp]  # where each point's entries start
    weight: FloatArray  # (1, m) summed drops
    log_lr: FloatArray  # (1, m) mean log learning rate
    area: FloatArray  # (1, m) mean area S_k(t)

    def per_point(self, values: FloatArray, n: int) -> FloatArray:
        """Sum the entries (k, m) of each of ``n`` points, giving (k, n)."""
        out = np.zeros((values.shape[0], n))
        if self.starts.size:
            out[:, self.rows] = np.add.reduceat(values, self.starts, axis=1)
        return out


# -- the default setting --------------------------------------------------------------------

#: The default curve law: the multi-power law with the loss drop declining with progress,
#: the warmup counting for its area or more, and the reference loss-drop shape held fixed
#: (benchmarks/schedules_accuracy.py states the rule and measures it).
DEFAULT_CURVE_LAW = "multipower"
DEFAULT_CURVE_CONFIG: Mapping[str, Any] = {"progress": True, "warmup": "fit"}


def default_curve_law() -> CurveLaw:
    """The default curve law (see :data:`DEFAULT_CURVE_CONFIG`), unfitted."""
    return MultiPowerLaw(**DEFAULT_CURVE_CONFIG)


def reference_shape(law: CurveLaw) -> dict[str, float]:
    """The parameters of :data:`REFERENCE_SHAPE` that ``law`` has, to hold fixed in a fit.

    Only the multi-power law with ``progress=True`` takes the reference shape (it was measured
    with the progress term); other laws get none.
    """
    if isinstance(law, MultiPowerLaw) and law.progress:
        return dict(REFERENCE_SHAPE)
    return {}


# -- using a fitted curve law ------------------------------------------------------------


class FittedCurve(Protocol):
    """What predicting needs from a fit: the law and its parameters (a ``Fit`` has both)."""

    @property
    def law(self) -> Law: ...

    @property
    def params(self) -> Mapping[str, float]: ...


def curve_law(fit: FittedCurve) -> CurveLaw:
    """The fit's law, checked to be a curve law."""
    if not isinstance(fit.law, CurveLaw):
        raise FitError(
            f"law '{fit.law.name}' is not a loss-curve law; use one of annealing, "
            "annealing_size, multipower"
        )
    return fit.law


def predict_curve(
    fit: FittedCurve,
    schedule: Schedule | str,
    steps: ArrayLike | None = None,
    *,
    model_params: float | None = None,
) -> FloatArray:
    """Predicted loss (nats) along a run with the given schedule.

    Parameters
    ----------
    fit
        A fitted curve law (``Fit`` of ``annealing``, ``annealing_size`` or ``multipower``).
    schedule
        The schedule, or its spec string.
    steps
        Steps at which to predict (loss after that many updates); default every step
        ``1 … total``. At most :data:`MAX_CURVE_POINTS` of them, each at most
        :data:`~scalinglab.schedules.MAX_SCHEDULE_STEPS`.
    model_params
        Model size N, for ``annealing_size``.

    Returns
    -------
    numpy.ndarray
        Loss at each step.

    Notes
    -----
    Memory is bounded: the schedule is read chunk by chunk, and the points are predicted in
    blocks (each block one pass over the schedule up to its last step).
    """
    law = curve_law(fit)
    _check_model_params(law, model_params)
    sched = parse_schedule(schedule) if isinstance(schedule, str) else schedule
    if steps is None and sched.total > MAX_CURVE_POINTS:
        raise SpecError(
            f"predicting every one of {sched.total:,} steps is more than the "
            f"{MAX_CURVE_POINTS:,} points of one prediction; pass the steps to predict "
            "(e.g. every 100th)"
        )
    at = np.arange(1, sched.total + 1) if steps is None else np.asarray(steps, dtype=float)
    at = at.reshape(-1)
    if at.size == 0:
        return np.zeros(0)
    if at.size > MAX_CURVE_POINTS:
        raise SpecError(
            f"{at.size:,} steps to predict is more than the {MAX_CURVE_POINTS:,} points of "
            "one prediction; predict fewer (e.g. every 100th step)"
        )
    if np.any(~(at >= 1)) or np.any(at != np.round(at)):
        raise InputError("steps must be whole numbers >= 1", column="step")
    check_schedule_steps(float(at.max()), "step")
    at = at.astype(np.int64)
    order = np.argsort(at, kind="stable")
    block = max(1, _BLOCK_VALUES // law.feature_width(int(at.max())))
    loss = np.empty(at.size)
    for first in range(0, at.size, block):
        rows = order[first : first + block]
        x = law.curve_features(sched, at[rows], model_params=model_params)
        loss[rows] = law.predict(dict(fit.params), x)
    return loss


def _check_model_params(law: CurveLaw, model_params: float | None) -> None:
    """A model size is positive and finite, and given only to a law that uses it."""
    if model_params is None:
        return
    if "params" not in law.inputs:
        raise SpecError(
            f"law '{law.name}' does not depend on the model size; leave out model_params "
            "(--model-params)"
        )
    check_finite(model_params, "model_params (--model-params)", positive=True)


def curve_errors(
    fit: FittedCurve, observations: pd.DataFrame, *, score: ArrayLike | None = None
) -> pd.DataFrame:
    """Relative error of the fit's predictions on every run of ``observations``.

    Parameters
    ----------
    fit
        A fitted curve law.
    observations
        The runs (their rows give each run's schedule, from a spec or the logged lr).
    score
        Boolean mask of the rows to score (default all); the others still count for the
        runs' schedules.

    Returns
    -------
    pandas.DataFrame
        One row per run with scored points: ``run_id``, ``points``, ``mean_rel_error``,
        ``max_rel_error``, ``final_rel_error`` (signed, at its last scored step), as fractions.
    """
    import pandas as pd

    law = curve_law(fit)
    predicted = law.predict(dict(fit.params), law.features(observations))
    observed = observations["loss"].to_numpy(dtype=float)
    rel = predicted / observed - 1.0
    runs = (
        observations["run_id"].astype(str).to_numpy()
        if "run_id" in observations.columns
        else np.full(len(observations), "run")
    )
    steps = observations["step"].to_numpy(dtype=float)
    scored = np.ones(len(observations), bool) if score is None else np.asarray(score, bool)
    rows = []
    for every in _run_rows(runs, len(observations)):
        idx = every[scored[every]]
        if idx.size == 0:
            continue
        last = idx[np.argmax(steps[idx])]
        rows.append(
            {
                "run_id": runs[idx[0]],
                "points": int(idx.size),
                "mean_rel_error": float(np.mean(np.abs(rel[idx]))),
                "max_rel_error": float(np.max(np.abs(rel[idx]))),
                "final_rel_error": float(rel[last]),
            }
        )
    columns = ["run_id", "points", "mean_rel_error", "max_rel_error", "final_rel_error"]
    return pd.DataFrame(rows, columns=columns)


def predicted_curves(
    fit: FittedCurve, observations: pd.DataFrame, *, every: int = 16
) -> dict[str, tuple[NDArray[np.int64], FloatArray]]:
    """Predicted curve of every run of ``observations`` over its observed step range.

    Returns ``run_id → (steps, loss)``, with a point every ``every`` steps and at the last.
    """
    law = curve_law(fit)
    out = {}
    source = str(observations.attrs.get("source", "<DataFrame>"))
    for run, rows in observations.groupby(observations["run_id"].astype(str), sort=False):
        sched = run_schedule(rows, source=source)
        first, last = int(rows["step"].min()), int(rows["step"].max())
        steps = np.unique(np.r_[np.arange(first, last + 1, every), last]).astype(np.int64)
        n = float(rows["params"].iloc[0]) if "params" in law.inputs else None
        out[str(run)] = (steps, predict_curve(fit, sched, steps, model_params=n))
    return out


def final_loss_model(
    fit: FittedCurve, *, model_params: float | None = None
) -> Callable[[FloatArray], tuple[float, FloatArray]]:
    """The fit as a model of the final loss of any schedule, for the schedule optimiser.

    Returns a function ``lr (per step) → (loss after the last step, d loss / d lr)``.
    """
    law = curve_law(fit)
    _check_model_params(law, model_params)
    params = dict(fit.params)
    if "params" in law.inputs and model_params is None:
        raise FitError(f"law '{law.name}' needs the model size (params) to predict a loss")

    def model(lr: FloatArray) -> tuple[float, FloatArray]:
        return law.final_loss(params, lr, model_params=model_params)

    return model
