"""Acceptance on Luo et al.'s published curves: fit two schedules, predict seven others.

Fit on constant_24000 + cosine_24000 of the 25M and 100M models, with the schedules rebuilt
from the curve names as ``../shared/data/lr_schedules`` documents, then predict the other seven
curves (constant and cosine to 72k steps, WSD with exponential and linear cooldowns, and three
two-stage schedules). Errors are relative: ``mean`` is the mean over the seven curves of each
curve's mean error, ``max`` the largest error at any point.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from scalinglab.fitting import Fit, fit
from scalinglab.laws import get_law
from scalinglab.laws.curve import curve_errors, final_loss_model
from scalinglab.schedules import choose_schedule
from scalinglab.schedules.reference import LUO2025_FINAL, LUO2025_PEAK, LUO2025_WARMUP, luo2025_spec

TRAIN = ("constant_24000", "cosine_24000")
#: the issue's floors (fractions), which a straightforward fit already reaches
FLOORS = {"annealing": (0.0020, 0.014), "multipower": (0.0017, 0.010)}


def load_size(shared_data: Path, size: int) -> pd.DataFrame:
    frames = []
    for path in sorted((shared_data / "lr_schedules" / f"csv_{size}").glob("*.csv")):
        df = pd.read_csv(path)
        frames.append(df.assign(run_id=path.stem, schedule=luo2025_spec(path.stem)))
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def fits(shared_data: Path) -> dict[tuple[int, str], tuple[Fit, pd.DataFrame]]:
    out = {}
    for size in (25, 100):
        data = load_size(shared_data, size)
        train = data[data["run_id"].isin(TRAIN)]
        test = data[~data["run_id"].isin(TRAIN)]
        for law in FLOORS:
            result = fit(train, get_law(law))
            out[(size, law)] = (result, curve_errors(result, test))
    return out


@pytest.mark.parametrize("size", [25, 100])
@pytest.mark.parametrize("law", list(FLOORS))
def test_two_curves_predict_seven_others(fits: dict, size: int, law: str) -> None:
    result, errors = fits[(size, law)]
    assert len(errors) == 7 and result.converged
    mean, worst = errors["mean_rel_error"].mean(), errors["max_rel_error"].max()
    print(f"\n{law} {size}M: mean {mean:.3%}, max {worst:.3%}\n{errors.to_string()}")
    mean_floor, max_floor = FLOORS[law]
    assert mean <= mean_floor, f"{law} {size}M mean relative error {mean:.3%}"
    assert worst <= max_floor, f"{law} {size}M max relative error {worst:.3%}"


def test_multipower_wins_on_the_worst_point(fits: dict) -> None:
    for size in (25, 100):
        worst = {law: fits[(size, law)][1]["max_rel_error"].max() for law in FLOORS}
        assert worst["multipower"] < worst["annealing"], f"{size}M: {worst}"


def test_optimised_schedule_beats_cosine_and_wsd20_for_100m(fits: dict) -> None:
    result, _ = fits[(100, "multipower")]
    choice = choose_schedule(
        final_loss_model(result),
        total=24000,
        peak=LUO2025_PEAK,
        warmup=LUO2025_WARMUP,
        final=LUO2025_FINAL,
    )
    best = choice.recommended
    gain_cosine = choice.gain_over(choice.cosine, best)
    gain_wsd = choice.gain_over(choice.wsd20, best)
    print(
        f"\n100M, 24000 steps: cosine {choice.cosine.final_loss:.4f}, "
        f"WSD-20% {choice.wsd20.final_loss:.4f}, best WSD ({choice.best_wsd.name}) "
        f"{choice.best_wsd.final_loss:.4f}, {best.name} {best.final_loss:.4f}: "
        f"{gain_cosine:.4f} nats below cosine, {gain_wsd:.4f} below WSD-20%"
    )
    assert gain_cosine > 0.01
    assert gain_wsd > 0
