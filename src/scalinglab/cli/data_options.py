"""The options every data-reading command shares: ``--column``, ``--dataset``, ``--loss-unit``.

Defined once so that each command reads a table the same way and an error that recommends
one of these options (a missing column, a loss that looks like a perplexity) is right
wherever it is raised.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from scalinglab.errors import SpecError

if TYPE_CHECKING:
    # imported on use: the data package loads pandas, which `scalinglab laws` does without
    import pandas as pd

    from scalinglab.data.schema import LossUnit

ColumnOpt = Annotated[
    list[str] | None,
    typer.Option(help="Map a column: THEIRS=ours (e.g. 'Model Size=params'); repeatable."),
]
DatasetOpt = Annotated[
    str | None, typer.Option(help="Dataset whose loss to use (when the data hold several).")
]
LossUnitOpt = Annotated[
    str, typer.Option(help="Unit of the data's losses: nats, bits or perplexity.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
StoreOpt = Annotated[
    str | None,
    typer.Option(
        help="Run store: .sqlite file or postgresql://user@host/db URL "
        "(default: $SCALINGLAB_STORE, else <out-dir>/runs.sqlite)."
    ),
]


def loss_unit(value: str) -> LossUnit:
    """The ``--loss-unit`` value, checked."""
    from scalinglab.data.schema import LOSS_UNITS

    if value not in LOSS_UNITS:
        raise SpecError(f"--loss-unit must be one of {', '.join(LOSS_UNITS)}, got '{value}'")
    unit: LossUnit = value  # type: ignore[assignment]
    return unit


def column_map(column: Sequence[str] | None) -> dict[str, str] | None:
    """``--column THEIRS=ours`` options as a mapping (``None`` when none were given)."""
    from scalinglab.cli.compute import parse_assignments

    return parse_assignments(list(column or []), "--column") or None


def read_data(
    path: Path,
    column: Sequence[str] | None = None,
    unit: str = "nats",
    *,
    wide: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Observations from a file or run store, with the shared options applied.

    A run store's runs also get their learning-rate ``schedule`` column (see
    :func:`scalinglab.study.load`), which ``--schedule`` filters and curve laws read.
    """
    from scalinglab.data import file_format, load_observations

    if not wide and path.suffix and file_format(path) == "sqlite":
        from scalinglab.study import load

        return load(path, columns=column_map(column), loss_unit=loss_unit(unit))
    return load_observations(
        path, columns=column_map(column), wide=wide or None, loss_unit=loss_unit(unit)
    )
