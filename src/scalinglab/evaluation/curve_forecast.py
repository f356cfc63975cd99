"""How well a curve law forecasts its own curves: for choosing settings, and for its intervals.

Fitted on two or three training curves, a curve law's residuals say little about its error on
a schedule it has not seen: the law is smooth enough to follow any one curve, so what it gets
wrong is the *shape* of an annealing it must extrapolate. Holding out the end of each training
curve (where the annealing happens) and forecasting it from the rest measures that error on
the training curves alone: :func:`forecast_cv` scores it, :func:`with_forecast_noise` adds it
to a fit's run-to-run noise so that its prediction intervals carry it.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from scalinglab.errors import InputError, SpecError
from scalinglab.fitting import Fit, Noise, fit
from scalinglab.laws.curve import CurveLaw, curve_errors

#: share of each curve's steps held out at its end
DEFAULT_HOLDOUT = 0.25


def forecast_cv(
    law: CurveLaw,
    observations: pd.DataFrame,
    *,
    holdout: float = DEFAULT_HOLDOUT,
    **options: Any,
) -> float:
    """Mean relative error forecasting the last ``holdout`` of each curve from the rest.

    A cross-validation on training curves alone, to choose between curve-law settings: each
    run's points after ``(1 − holdout)`` of its last step are held out, the law is fitted on
    the others (``options`` go to :func:`scalinglab.fitting.fit`) and scored on them.
    """
    result, late = _fit_on_the_early_points(law, observations, holdout, options)
    return float(curve_errors(result, observations, score=late)["mean_rel_error"].mean())


def with_forecast_noise(
    result: Fit,
    observations: pd.DataFrame,
    *,
    holdout: float = DEFAULT_HOLDOUT,
    **options: Any,
) -> Fit:
    """``result`` with its noise widened by the law's error forecasting its curves' ends.

    The law is refitted with ``options`` (those ``result`` was fitted with) on each curve but
    its last ``holdout``, and the root-mean-square log error on the held-out ends is added in
    quadrature to the fit's run offset: prediction intervals then carry the law's error on a
    schedule it extrapolates, not only the scatter about the curves it was fitted to. Its
    degrees of freedom are the held-out points'.

    Raises
    ------
    InputError
        When the curves are too short to hold out their ends.
    """
    if not isinstance(result.law, CurveLaw):
        raise SpecError(f"law '{result.law.name}' is not a curve law")
    cv, late = _fit_on_the_early_points(result.law, observations, holdout, options)
    observed = observations["loss"].to_numpy(dtype=float)[late]
    predicted = cv.predict(result.law.features(observations))[late]
    sd = math.sqrt(float(np.mean(np.log(predicted / observed) ** 2)))
    held_out = int(late.sum())
    noise = result.noise
    if noise is None:
        widened = Noise(sd, sd, 0.0, held_out, "forecast")
    else:
        total = noise.sd_log**2 + sd**2
        spread = noise.sd_log**4 / noise.dof + sd**4 / held_out
        dof = max(1, int(total * total / spread))
        widened = Noise(math.sqrt(total), math.hypot(noise.sd_run, sd), noise.sd_point, dof,
                        f"{noise.source}+forecast")  # fmt: skip
    return replace(result, noise=widened, options=result.options | {"forecast_holdout": holdout})


def _fit_on_the_early_points(
    law: CurveLaw, observations: pd.DataFrame, holdout: float, options: dict[str, Any]
) -> tuple[Fit, NDArray[np.bool_]]:
    if not 0 < holdout < 1:
        raise SpecError(f"holdout={holdout} must be in (0, 1)")
    steps = pd.to_numeric(observations["step"], errors="coerce")
    if "run_id" in observations.columns:
        last = steps.groupby(observations["run_id"].astype(str)).transform("max")
    else:
        last = pd.Series(steps.max(), index=steps.index)
    late = (steps > (1 - holdout) * last).to_numpy()
    if late.all() or not late.any():
        raise InputError("too few points to hold out the end of each curve")
    weights = (~late).astype(float)
    given = options.pop("weights", None)
    if given is not None:
        weights = weights * np.asarray(given, dtype=float)
    # held-out points weigh nothing, so that each run's logged lr is still read whole
    return fit(observations, law, weights=weights, **options), late
