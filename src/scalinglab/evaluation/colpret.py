"""What scalinglab ships from ColPret, so that users need no reference data of their own.

Two small tables, derived from ``../shared/data/colpret`` (Choshen, Zhang & Andreas 2024's
collection of published training runs, MIT licence) by ``scripts/build_expected_errors.py``:

- ``colpret_backtests.csv``: every backtest of the standard grid with a forecast (each
  family's largest model forecast from its smaller ones by each fitting choice), with its
  compute extrapolation ratio and realized ARE: the evidence behind every expected error
  (:mod:`scalinglab.evaluation.expected_error`);
- ``colpret_collection.csv``: the Chinchilla law fitted to each family (all checkpoints after
  1e10 tokens): the collection that the parameter-borrowing choices (``fixed_exponents``,
  ``relations``, ``pca``) learn from when the user gives no reference data.
"""

from __future__ import annotations

import functools
from importlib import resources

import pandas as pd

BACKTESTS_FILE = "colpret_backtests.csv"
COLLECTION_FILE = "colpret_collection.csv"


@functools.cache
def _read(name: str, index_col: str | None) -> pd.DataFrame:
    path = resources.files("scalinglab.evaluation") / "data" / name
    with resources.as_file(path) as file:
        return pd.read_csv(file, index_col=index_col)


def colpret_backtests() -> pd.DataFrame:
    """The shipped backtest cases (a copy): ``family``, ``method``, ``k``, ``fraction``,
    ``target_fraction``, ``extrapolation``, ``are``, ``plausible``."""
    return _read(BACKTESTS_FILE, None).copy()


def colpret_collection() -> pd.DataFrame:
    """The shipped per-family Chinchilla fits (a copy), indexed by ``family``."""
    return _read(COLLECTION_FILE, "family").copy()
