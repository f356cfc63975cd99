"""The ``scalinglab`` command: thin wrappers that parse, call the library and print."""

from __future__ import annotations

import signal
from types import FrameType

import typer

from scalinglab.cli._common import OneLineErrors

app = typer.Typer(
    name="scalinglab",
    cls=OneLineErrors,
    help="Forecast what a language-model training run will achieve, from small runs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# Sub-command modules register themselves on import; one line each.
from scalinglab.cli import backtest as _backtest  # noqa: E402,F401
from scalinglab.cli import compute as _compute  # noqa: E402,F401
from scalinglab.cli import curve as _curve  # noqa: E402,F401
from scalinglab.cli import example as _example  # noqa: E402,F401
from scalinglab.cli import planning as _planning  # noqa: E402,F401
from scalinglab.cli import runs as _runs  # noqa: E402,F401
from scalinglab.cli import study as _study  # noqa: E402,F401
from scalinglab.cli import train as _train  # noqa: E402,F401
from scalinglab.cli import transfer as _transfer  # noqa: E402,F401


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main() -> None:
    """Entry point of the ``scalinglab`` console script."""
    # `kill` stops a run as Ctrl-C does: the store marks it interrupted (not left "running")
    # and a sweep stops its workers' runs the same way
    signal.signal(signal.SIGTERM, _interrupt)
    app()
