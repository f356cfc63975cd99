"""Runs within an Observations table: which rows belong together, and each run's last one."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

import pandas as pd

from scalinglab.errors import InputError


def run_ids_trusted(observations: pd.DataFrame) -> bool:
    """Whether ``run_id`` groups the rows of one training run.

    Run ids the user gave are trusted. Ids the loader derived from the model size
    (``attrs["derived"]``) are trusted only on a table of checkpoints (it has steps); in a
    table of final losses they would lump the budgets of one size together, and there every
    row is its own run.
    """
    if "run_id" not in observations.columns:
        return False
    if "run_id" not in observations.attrs.get("derived", ()):
        return True
    return "step" in observations.columns and bool(observations["step"].notna().any())


def final_rows(observations: pd.DataFrame) -> pd.DataFrame:
    """The last measurement (most ``tokens``) of every run, in the table's order.

    Every dataset measured at a run's last checkpoint is kept. Without trusted run ids (see
    :func:`run_ids_trusted`) every row is a run and the table is returned whole.
    """
    if not run_ids_trusted(observations):
        return observations
    last = observations.groupby("run_id", sort=False)["tokens"].transform("max")
    return observations[observations["tokens"] == last]


@dataclass
class RunSelection:
    """Which rows a compute-law fit uses, and why, in plain words for the user."""

    rows: pd.DataFrame
    notes: list[str] = field(default_factory=list)


def select_runs(
    observations: pd.DataFrame,
    *,
    all_checkpoints: bool = False,
    run: str | None = None,
    schedule: str | None = None,
    family: str | None = None,
    min_tokens: float | None = None,
) -> RunSelection:
    """The rows a compute law is fitted to: by default each run's last measurement.

    A compute law ``L(N, D)`` describes fully trained runs of one recipe; intermediate
    checkpoints of a decaying schedule, and runs of another schedule or optimizer, would bend
    it. So, as the study report does, the default keeps each run's last measurement and, when
    the table holds several ``family`` recipes, the most measured one.

    Parameters
    ----------
    observations
        An Observations table (with a ``schedule`` column of specs when read from a run store).
    all_checkpoints
        Keep every checkpoint of the selected runs instead of the last.
    run
        Keep runs whose id matches this glob (``"*-cosine-*"``).
    schedule
        Keep runs whose schedule is of this kind (``cosine``, ``wsd``...): from the
        ``schedule`` column of specs.
    family
        Keep runs of this recipe; default: every family when ``run`` or ``schedule`` chose the
        runs, else the most measured one.
    min_tokens
        Drop rows measured before this many training tokens.

    Raises
    ------
    InputError
        When a filter names a column the table lacks, or leaves no rows.
    """
    rows = observations
    notes: list[str] = []
    source = str(observations.attrs.get("source", "the table"))
    if run is not None:
        if "run_id" not in rows.columns:
            raise InputError("--run: the table has no 'run_id' column", source=source)
        rows = rows[[fnmatch.fnmatchcase(str(r), run) for r in rows["run_id"]]]
        _not_empty(rows, f"no run id matches '{run}'", source)
    if schedule is not None:
        if "schedule" not in rows.columns:
            raise InputError(
                "--schedule: the table has no 'schedule' column (run stores have one)",
                source=source,
            )
        kinds = rows["schedule"].astype(str).str.partition(":")[0].str.strip()
        rows = rows[kinds == schedule]
        _not_empty(rows, f"no run has a '{schedule}' schedule", source)
    if family is not None:
        if "family" not in rows.columns:
            raise InputError("--family: the table has no 'family' column", source=source)
        rows = rows[rows["family"].astype(str) == family]
        _not_empty(rows, f"no run of family '{family}'", source)
    elif run is None and schedule is None and "family" in rows.columns:
        families = rows["family"].dropna().astype(str)
        if families.nunique() > 1:
            chosen = str(families.mode()[0])
            rows = rows[rows["family"].astype(str) == chosen]
            notes.append(
                f"fitted family '{chosen}', the most measured of {families.nunique()} "
                "(a compute law describes one recipe; choose with --family, --run or --schedule)"
            )
    if min_tokens is not None:
        rows = rows[rows["tokens"] >= min_tokens]
        _not_empty(rows, f"no measurement at {min_tokens:g} tokens or more", source)
    if not all_checkpoints and run_ids_trusted(rows):
        before = len(rows)
        rows = final_rows(rows)
        if len(rows) < before:
            notes.append(
                f"fitted the last measurement of each of {rows['run_id'].nunique()} runs "
                f"({before - len(rows)} earlier checkpoints left out; --all-checkpoints keeps them)"
            )
    return RunSelection(rows, notes)


def _not_empty(rows: pd.DataFrame, message: str, source: str) -> None:
    if rows.empty:
        raise InputError(message, source=source)
