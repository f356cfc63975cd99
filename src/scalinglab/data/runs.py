"""Runs within an Observations table: which rows belong together, and each run's last one."""

from __future__ import annotations

import pandas as pd


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
