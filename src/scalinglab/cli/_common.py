"""What every command shares: the error boundary (exit 2, one line), JSON or rich output.

The boundary (:func:`user_errors` on every command, :class:`OneLineErrors` on the app) is
where a user's mistake becomes one line on stderr and exit status 2: a
:class:`~scalinglab.errors.ScalingLabError` from the library, an operating-system error on a
file the user named (a folder where a file was expected, no permission, a full disk), a
non-finite number given to an option, or a usage mistake Typer finds (an unknown option,
``--bootstrap abc``). Anything else is a bug and keeps its traceback. Warnings are one line
too: scalinglab's own are printed as ``warning: …`` once the command has done its work (a
command that fails prints its one error line only); those of other libraries (numpy's
floating-point warnings, torch's advice) are not shown unless ``SCALINGLAB_DEBUG=1``, which
also shows the traceback behind a user error.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import numpy as np
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from scalinglab._format import fmt
from scalinglab.errors import ScalingLabError, SpecError
from scalinglab.user_input import check_figure_file, check_output_dir, check_output_file

try:  # Typer >= 0.20 carries its own copy of click
    from typer._click.exceptions import ClickException, UsageError
except ImportError:  # pragma: no cover - older Typer uses click itself
    from click.exceptions import ClickException, UsageError  # type: ignore[assignment]

P = ParamSpec("P")
R = TypeVar("R")

console = Console()
err_console = Console(stderr=True)

#: exit status for a user mistake (bad input, bad option)
USAGE_ERROR = 2
#: set to 1 to see tracebacks behind user errors and other libraries' warnings
DEBUG_ENV = "SCALINGLAB_DEBUG"
_PACKAGE_DIR = str(Path(__file__).resolve().parents[1])


def _debug() -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def _print_error(message: str) -> None:
    """One line on stderr, never wrapped, never read as rich markup."""
    line = " ".join(message.splitlines())
    err_console.print(Text("error: ", style="bold red") + Text(line), soft_wrap=True)


def _print_warning(message: str) -> None:
    line = " ".join(message.splitlines())
    err_console.print(Text("warning: ", style="yellow") + Text(line), soft_wrap=True)


def os_error_message(err: OSError) -> str:
    """One line for an operating-system error on a named file."""
    name = os.fsdecode(err.filename)
    if isinstance(err, FileNotFoundError):
        return f"no such file or folder: {name}"
    if isinstance(err, IsADirectoryError):
        return f"'{name}' is a folder; a file was expected"
    if isinstance(err, NotADirectoryError):
        return f"'{name}': a part of this path is a file, not a folder"
    if isinstance(err, FileExistsError):
        return f"'{name}' already exists and is not a folder"
    if isinstance(err, PermissionError):
        return f"permission denied: {name}"
    reason = err.strerror or type(err).__name__
    if err.filename2 is not None:
        return f"{reason}: {name} -> {os.fsdecode(err.filename2)}"
    return f"{reason}: {name}"


def _check_finite_options(values: Mapping[str, Any]) -> None:
    """Every number given on the command line is finite (Typer reads 'nan' and 'inf')."""
    for key, value in values.items():
        items = value if isinstance(value, list | tuple) else [value]
        for item in items:
            if isinstance(item, float) and not math.isfinite(item):
                raise SpecError(f"--{key.replace('_', '-')}: {item} is not a finite number")


def _warned_by_scalinglab() -> bool:
    """Whether the code that called ``warnings.warn`` is scalinglab's (not the module its
    ``stacklevel`` blames: matplotlib, for one, blames its caller)."""
    frame = sys._getframe(2)  # above show() and _showwarnmsg
    while frame is not None and frame.f_code.co_filename == warnings.__file__:
        frame = frame.f_back  # type: ignore[assignment]
    return frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR)


@contextlib.contextmanager
def _one_line_warnings() -> Iterator[list[str]]:
    """Collect scalinglab's warnings (each once) for :func:`user_errors` to print as
    ``warning: …`` lines; other libraries' are hidden."""
    debug, collected = _debug(), []
    original = warnings.showwarning

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: Any = None,
        line: str | None = None,
    ) -> None:
        ours = issubclass(category, UserWarning) and _warned_by_scalinglab()
        if not ours:
            if debug:
                original(message, category, filename, lineno, file, line)
            return
        text = str(message)
        if text not in collected:
            collected.append(text)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield collected


def user_errors(func: Callable[P, R]) -> Callable[P, R]:
    """The error boundary of a command: a user's mistake is one line on stderr and exit 2.

    Catches :class:`ScalingLabError` and operating-system errors that name a file (a bug
    raising neither keeps its traceback), checks that every float option is finite, and
    routes warnings through :func:`_one_line_warnings`.
    """

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with _one_line_warnings() as collected:
            error = None
            try:
                _check_finite_options(kwargs)
                return func(*args, **kwargs)
            except ScalingLabError as err:
                if _debug():
                    raise
                error = str(err)
            except OSError as err:
                if err.filename is None or _debug():
                    raise
                error = os_error_message(err)
            finally:
                # a failed command says one line; the warnings of one that ran come after it
                if error is None:
                    for text in collected:
                        _print_warning(text)
        _print_error(error or "failed")
        sys.exit(USAGE_ERROR)

    return wrapper


def check_outputs(
    *,
    files: Mapping[str, Path | None] | None = None,
    figures: Mapping[str, Path | None] | None = None,
    folders: Mapping[str, Path | None] | None = None,
    stores: Mapping[str, Path | None] | None = None,
) -> None:
    """Check a command's output paths (option → path; None: not given) before its work.

    A folder given as ``--out`` or an unknown image suffix must not cost a whole fit.
    ``files`` and ``figures`` go in existing folders; ``folders`` and ``stores`` (run stores)
    make theirs.
    """
    for option, path in (files or {}).items():
        if path is not None:
            check_output_file(path, option)
    for option, path in (stores or {}).items():
        if path is not None:
            check_output_file(path, option, make_folders=True)
    for option, path in (figures or {}).items():
        if path is not None:
            check_figure_file(path, option)
    for option, path in (folders or {}).items():
        if path is not None:
            check_output_dir(path, option)


class OneLineErrors(TyperGroup):
    """The app's command group: a usage mistake Typer finds is one line with exit 2 too.

    (Typer would print a five-line box; ``scalinglab fit --bootstrap abc`` now says
    ``error: scalinglab fit: Invalid value for '--bootstrap': 'abc' is not a valid integer.``)
    A group called without a command prints its help.
    """

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except UsageError as err:
            if type(err).__name__ == "NoArgsIsHelpError" and err.ctx is not None:
                typer.echo(err.ctx.get_help())
                sys.exit(0)
            where = f"{err.ctx.command_path}: " if err.ctx is not None else ""
            hint = f" (see '{err.ctx.command_path} --help')" if err.ctx is not None else ""
            _print_error(f"{where}{err.format_message()}{hint}")
            sys.exit(USAGE_ERROR)
        except ClickException as err:
            _print_error(err.format_message())
            sys.exit(err.exit_code)
        except typer.Abort:
            _print_error("aborted")
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


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
        console.print(Text(f"{title or ''} (no rows)"))
        return
    cols = list(columns) if columns is not None else list(rows[0].keys())
    # run ids, families and datasets are the user's text: never read as rich markup
    table = Table(title=Text(title) if title is not None else None)
    for c in cols:
        table.add_column(Text(c))
    for r in rows:
        table.add_row(*(Text(fmt(r.get(c, ""))) for c in cols))
    console.print(table)
