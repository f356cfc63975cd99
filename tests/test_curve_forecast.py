"""The curve law's own forecast error: for choosing settings, and widening its intervals."""

from __future__ import annotations

import pytest

from scalinglab.errors import SpecError
from scalinglab.evaluation.curve_forecast import forecast_cv, with_forecast_noise
from scalinglab.examples import schedule_runs
from scalinglab.fitting import fit, fit_law
from scalinglab.laws import get_law


def test_forecast_noise_widens_the_prediction_interval() -> None:
    table = schedule_runs(noise=0.003)
    train = table[(table["dataset"] == "train") & (table["run_id"] != "example-wsd")]
    law = get_law("annealing")
    result = fit(train, law, bootstrap=30)
    widened = with_forecast_noise(result, train)
    assert result.noise is not None and widened.noise is not None
    assert widened.noise.sd_log > result.noise.sd_log
    assert widened.noise.source == "residuals+forecast"
    assert widened.bootstrap_params is result.bootstrap_params
    wsd = table[(table["dataset"] == "train") & (table["run_id"] == "example-wsd")]
    x = law.features(wsd)
    lo, hi = result.predict_interval(x)
    wide_lo, wide_hi = widened.predict_interval(x)
    assert (wide_hi - wide_lo > hi - lo).all()
    # the cross-validated error that chooses settings comes from the same held-out ends
    assert 0 < forecast_cv(law, train) < 0.05


def test_forecast_noise_needs_a_curve_law() -> None:
    table = schedule_runs()
    runs = table[table["dataset"] == "train"]
    compute = fit_law(get_law("tokens_only"), {"tokens": runs["tokens"]}, runs["loss"])
    with pytest.raises(SpecError, match="not a curve law"):
        with_forecast_noise(compute, runs)
    with pytest.raises(SpecError, match="holdout"):
        forecast_cv(get_law("annealing"), runs, holdout=1.5)
