"""Curve laws fitted from logged learning rates, as real training logs give them (issue #14, 3).

Luo et al.'s curves (``../shared/data/lr_schedules``) are turned into the logs a user brings:
as published (a row every 128 steps from the warmup's end, the rate of the next update),
thinned to a row every 2048 steps (about a tenth of a 24k-step run, what a trainer that
evaluates ten times per run logs), thinned and logged after the update (a row's rate is that
of the update just done, as scalinglab's trainer logs it), and started mid-run (rows from
step 6000 on). For each, the default curve law is fitted on constant_24000 +
cosine_24000 and predicts the other seven curves, with the schedules

- exact: rebuilt from the curve names (what ``--schedule RUN=SPEC`` gives);
- naive: the previous reading of a logged lr (linear between rows, a linear warmup from 0
  before the first, every rate read as the next update's);
- read: :func:`scalinglab.schedules.read_logged_lr` (the default).

Also counted: the one-line warnings the reading gives (where the log cannot pin the schedule).

Run: ``.venv/bin/python benchmarks/schedules_logs.py``.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from _common import record
from scalinglab.fitting import fit
from scalinglab.laws.curve import (
    ScheduleWarning,
    curve_errors,
    default_curve_law,
    reference_shape,
)
from scalinglab.schedules import TabulatedSchedule, parse_schedule
from schedules_accuracy import DATA, SIZES, TRAIN, load_size

#: name → how a log is made from a published curve (its rows, and the schedule)
LOGS: dict[str, Callable[[pd.DataFrame, Any], pd.DataFrame]] = {
    "as published": lambda rows, sched: rows,
    "every 2048 steps": lambda rows, sched: rows.iloc[::16],
    "every 2048 steps, logged after the update": lambda rows, sched: rows.iloc[::16].assign(
        lr=sched.lr(rows.iloc[::16]["step"].to_numpy() - 1)
    ),
    "from step 6000 (mid-run)": lambda rows, sched: rows[rows["step"] >= 6000],
}


def make_log(table: pd.DataFrame, how: Callable[[pd.DataFrame, Any], pd.DataFrame]) -> pd.DataFrame:
    parts = []
    for _, rows in table.groupby("run_id", sort=False):
        parts.append(how(rows, parse_schedule(str(rows["schedule"].iloc[0]))))
    return pd.concat(parts, ignore_index=True)


def naive(rows: pd.DataFrame) -> TabulatedSchedule:
    """Linear interpolation from a rate of 0 at step 0 through the logged rows."""
    steps = np.r_[0, rows["step"].to_numpy(dtype=float)]
    lr = np.r_[0.0, rows["lr"].to_numpy(dtype=float)]
    return TabulatedSchedule(np.interp(np.arange(int(steps[-1]) + 1), steps, lr))


def held_out_errors(log: pd.DataFrame, reading: str) -> tuple[dict[str, float], list[str]]:
    """Fit the default law on the two training curves of ``log``, score the other seven."""
    table = log if reading == "exact" else log.drop(columns="schedule")
    if reading == "naive":
        table = table.copy()
        table.attrs["schedules"] = {
            str(run): naive(rows) for run, rows in table.groupby("run_id", sort=False)
        }
    law = default_curve_law()
    train = table[table["run_id"].isin(TRAIN)]
    test = table[~table["run_id"].isin(TRAIN)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ScheduleWarning)
        result = fit(train, law, fixed=reference_shape(law))
        errors = curve_errors(result, test)
    notes = sorted({str(w.message) for w in caught if isinstance(w.message, ScheduleWarning)})
    return {
        "mean": float(errors["mean_rel_error"].mean()),
        "mean_of_max": float(errors["max_rel_error"].mean()),
        "max": float(errors["max_rel_error"].max()),
    }, notes


def main() -> int:
    if not DATA.is_dir():
        print(f"no reference data at {DATA}: skipped")
        return 0
    result: dict[str, Any] = {"load_average": os.getloadavg(), "logs": {}}
    parts = []
    for size in SIZES:
        data = load_size(size)
        for name, how in LOGS.items():
            log = make_log(data, how)
            case: dict[str, Any] = {}
            for reading in ("exact", "naive", "read"):
                scores, notes = held_out_errors(log, reading)
                case[reading] = scores | {"warnings": len(notes), "warning_lines": notes}
            result["logs"][f"{size}M, {name}"] = case
            line = (
                f"{size}M {name}: exact {case['exact']['mean']:.3%}/{case['exact']['max']:.2%}, "
                f"read {case['read']['mean']:.3%}/{case['read']['max']:.2%} "
                f"({case['read']['warnings']} warnings), naive {case['naive']['mean']:.3%}/"
                f"{case['naive']['max']:.2%}"
            )
            print(line, flush=True)
            parts.append(line)
    record(
        "schedules_logs",
        result,
        "default curve law from logged lr, held-out mean/max: " + "; ".join(parts),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
