"""What every command shares: error handling (exit 2, one message), JSON or rich output."""

from __future__ import annotations

import functools
import json
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ParamSpec, TypeVar

import numpy as np
from rich.console import Console
from rich.table import Table
from rich.text import Text

from scalinglab._format import fmt
from scalinglab.errors import ScalingLabError

P = ParamSpec("P")
R = TypeVar("R")

console = Console()
err_console = Console(stderr=True)

#: exit status for a user mistake (bad input, bad option)
USAGE_ERROR = 2


def _print_error(message: str) -> None:
    """One line on stderr, never wrapped, never read as rich markup."""
    err_console.print(Text("error: ", style="bold red") + Text(message), soft_wrap=True)


def user_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn a :class:`ScalingLabError` into one line on stderr and exit status 2."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except ScalingLabError as err:
            _print_error(str(err))
            sys.exit(USAGE_ERROR)
        except FileNotFoundError as err:
            _print_error(f"no such file: {err.filename}")
            sys.exit(USAGE_ERROR)

    return wrapper


def to_jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays and non-finite floats into plain JSON values."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def print_json(obj: Any) -> None:
    """Print ``obj`` as indented JSON on stdout (the ``--json`` output of every command)."""
    sys.stdout.write(json.dumps(to_jsonable(obj), indent=2) + "\n")


def print_table(
    rows: Sequence[Mapping[str, Any]],
    title: str | None = None,
    columns: Sequence[str] | None = None,
) -> None:
    """Print a list of records as a rich table."""
    if not rows:
        console.print(f"{title or ''} (no rows)")
        return
    cols = list(columns) if columns is not None else list(rows[0].keys())
    table = Table(title=title)
    for c in cols:
        table.add_column(c)
    for r in rows:
        table.add_row(*(fmt(r.get(c, "")) for c in cols))
    console.print(table)
