"""User-facing errors: every mistake in the user's input ends in one of these.

The CLI prints the message of a :class:`ScalingLabError` and exits with status 2; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

from typing import Any


class ScalingLabError(Exception):
    """Base class for errors caused by user input or an impossible request."""


class InputError(ScalingLabError, ValueError):
    """Bad input data, located as precisely as possible.

    Parameters
    ----------
    message
        What is wrong, in words.
    source
        File name (or ``"<DataFrame>"``) the data came from.
    row
        1-based data row number as the user sees it (for a CSV: the line after the header is row 1).
    column
        Column name.
    value
        The offending value.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        row: int | None = None,
        column: str | None = None,
        value: Any = None,
    ) -> None:
        # numpy scalars print as np.float64(...): show the plain number the user typed
        if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
            value = value.item()
        self.reason = message
        self.source = source
        self.row = row
        self.column = column
        self.value = value
        where = []
        if source is not None:
            where.append(str(source))
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column '{column}'")
        prefix = ", ".join(where)
        text = f"{prefix}: {message}" if prefix else message
        if value is not None:
            text += f" (value: {value!r})"
        super().__init__(text)


class SpecError(ScalingLabError, ValueError):
    """A malformed specification string or configuration (schedule spec, sweep file, option)."""


class MissingDependencyError(ScalingLabError, ImportError):
    """An optional library that a request needs is not installed (the message names the extra)."""


class FitError(ScalingLabError):
    """A fit that cannot be made (too few points, no finite objective at any start)."""


class ConvergenceWarning(UserWarning):
    """The optimiser stopped before meeting its convergence criteria."""
