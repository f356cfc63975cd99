"""Observations: loading, validation with row-level errors, and the SQLite run store.

One row of the Observations table is one loss (nats per token) measured for one model at one
point of its training on one dataset; see :mod:`scalinglab.data.schema` for the columns.
"""

from scalinglab.data.importers import import_runs, store_runs
from scalinglab.data.loaders import file_format, load_observations
from scalinglab.data.runs import RunSelection, final_rows, run_ids_trusted, select_runs
from scalinglab.data.schema import CANONICAL_COLUMNS, DEFAULT_DATASET, SOURCE_ROW
from scalinglab.data.store import STATUSES, RunStore
from scalinglab.data.validate import check_enough_points, derive_run_ids, validate_observations

__all__ = [
    "CANONICAL_COLUMNS",
    "DEFAULT_DATASET",
    "SOURCE_ROW",
    "STATUSES",
    "RunSelection",
    "RunStore",
    "check_enough_points",
    "derive_run_ids",
    "file_format",
    "final_rows",
    "import_runs",
    "load_observations",
    "run_ids_trusted",
    "select_runs",
    "store_runs",
    "validate_observations",
]
