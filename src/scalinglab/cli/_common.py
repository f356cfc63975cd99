"""What every command shares: the error boundary (exit 2, one line), output and progress.

The boundary (:func:`user_errors` on every command; the root group in ``main.py`` for
Typer's usage errors) is where a user's mistake becomes one line on stderr and exit status
2: a :class:`~scalinglab.errors.ScalingLabError` from the library, an operating-system error
on a file the user named (a folder where a file was expected, no permission, a full disk), a
non-finite number given to an option, or a usage mistake Typer finds (an unknown option,
``--bootstrap abc``). Anything else is a bug and keeps its traceback. Warnings are one line
too: scalinglab's own are printed as ``warning: …`` once the command has done its work (a
command that fails prints its one error line only); those of other libraries (numpy's
floating-point warnings, torch's advice) are not shown unless ``SCALINGLAB_DEBUG=1``, which
also shows the traceback behind a user error.

Output: the shared consoles read no rich markup and no emoji codes, so user text (run ids,
dataset names, file names: ``starcoder:train:`` or ``lr[warmup]``) prints as it is; styled
labels go through :func:`note` and :func:`markup`, which escape what they interpolate. Tables
go through :func:`print_table`, which follows the command's ``--format`` (table, csv, tsv,
json) and, when stdout is not a terminal, prints a table at its full width: no value is
ever cut to fit 80 columns. Long work reports through :func:`progress_bar`, on stderr.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import inspect
import json
import math
import os
import string
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from scalinglab._format import Interval, Percent, fmt
from scalinglab.errors import ScalingLabError, SpecError
from scalinglab.user_input import check_figure_file, check_output_dir, check_output_file

P = ParamSpec("P")
R = TypeVar("R")

# markup and emoji codes off: every string prints as written (styles via note/markup)
# soft wrap: a long line is never broken into several (the terminal wraps it, a log keeps it)
console = Console(markup=False, emoji=False, highlight=False, soft_wrap=True)
err_console = Console(stderr=True, markup=False, emoji=False, highlight=False, soft_wrap=True)

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
        return f"no such file or directory: {name}"
    if isinstance(err, IsADirectoryError):
        return f"'{name}' is a directory; a file was expected"
    if isinstance(err, NotADirectoryError):
        return f"'{name}': a part of this path is a file, not a directory"
    if isinstance(err, FileExistsError):
        return f"'{name}' already exists and is not a directory"
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


#: options renamed so that one name means one thing in every command (README "Option
#: names"): old name → new name; the old names stay as hidden aliases that print a note
RENAMED_OPTIONS = {
    "--out": "--out-dir",  # `study`, `report`: a folder (--out is a file everywhere else)
    "--report": "--report-dir",  # `downstream fit`: a folder
    "--params": "--run-params",  # `curve`, `import`: RUN=N sizes of the runs read
}


def renamed_option(old: str, new: str) -> Any:
    """A hidden option ``old`` that keeps working where ``new`` replaced it.

    Using it prints one line on stderr naming the new option; the command merges the two
    values (``new if old is None else old``).
    """
    assert RENAMED_OPTIONS.get(old) == new, f"add {old} → {new} to RENAMED_OPTIONS"

    def note(value: Any) -> Any:
        if value is not None and value != []:
            err_console.print(
                Text("deprecated: ", style="yellow")
                + Text(f"{old} is now {new} (the old name will be removed)"),
                soft_wrap=True,
            )
        return value

    return typer.Option(old, hidden=True, callback=note, show_default=False)


def check_outputs(
    *,
    files: Mapping[str, Path | None] | None = None,
    figures: Mapping[str, Path | None] | None = None,
    folders: Mapping[str, Path | None] | None = None,
    stores: Mapping[str, str | Path | None] | None = None,
) -> None:
    """Check a command's output paths (option → path; None: not given) before its work.

    A folder given as ``--out`` or an unknown image suffix must not cost a whole fit.
    ``files`` and ``figures`` go in existing folders; ``folders`` and ``stores`` (run-store
    files; a ``postgresql://`` URL is not a path) make theirs.
    """
    for option, path in (files or {}).items():
        if path is not None:
            check_output_file(path, option)
    for option, location in (stores or {}).items():
        if location is not None and "://" not in str(location):
            check_output_file(location, option, make_folders=True)
    for option, path in (figures or {}).items():
        if path is not None:
            check_figure_file(path, option)
    for option, path in (folders or {}).items():
        if path is not None:
            check_output_dir(path, option)


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
    sys.stdout.write(json.dumps(to_jsonable(obj), indent=2, ensure_ascii=False) + "\n")


# ---------------------------------------------------------------------------------------------
# Styled text that is safe with user text


def note(label: str, message: str, style: str = "yellow") -> None:
    """Print ``label: message`` with the label styled and the message exactly as written."""
    console.print(Text(f"{label}: ", style=style) + Text(message))


class _Escaping(string.Formatter):
    def format_field(self, value: Any, format_spec: str) -> str:
        return escape(super().format_field(value, format_spec))


def markup(template: str, /, *args: Any, **kwargs: Any) -> Text:
    """Rich markup whose ``{}`` fields are filled with escaped values.

    ``console.print(markup("recommended: [bold]{}[/]", name))`` shows ``name`` in bold even
    when it holds brackets or colons (``run[0]``, ``:train:``).
    """
    return Text.from_markup(_Escaping().format(template, *args, **kwargs), emoji=False)


# ---------------------------------------------------------------------------------------------
# Output formats


class OutputFormat(StrEnum):
    """How a command prints its results (``--format``)."""

    table = "table"
    csv = "csv"
    tsv = "tsv"
    json = "json"


FormatOpt = Annotated[
    OutputFormat,
    typer.Option(
        "--format",
        case_sensitive=False,
        help="table, csv, tsv (the tables only, on stdout; messages go to stderr) or json "
        "(as --json).",
    ),
]

_output_format: ContextVar[OutputFormat] = ContextVar("output_format", default=OutputFormat.table)
_tables_printed: ContextVar[int] = ContextVar("tables_printed", default=0)


def with_format_option(func: Callable[..., R]) -> Callable[..., R]:
    """Give a command with ``--json`` (parameter ``as_json``) the ``--format`` option too.

    ``--format json`` is ``--json``; ``csv`` and ``tsv`` make :func:`print_table` write
    delimited rows on stdout and send every other line the command prints to stderr, so that
    stdout can be piped into another program.
    """
    signature = inspect.signature(func, eval_str=True)
    if "as_json" not in signature.parameters or "output_format" in signature.parameters:
        return func
    added = inspect.Parameter(
        "output_format",
        inspect.Parameter.POSITIONAL_OR_KEYWORD,  # typer passes every option by name
        default=OutputFormat.table,
        annotation=FormatOpt,
    )
    params = list(signature.parameters.values())
    # before --json, so that the two read together in --help
    at = [p.name for p in params].index("as_json")

    @functools.wraps(func)
    def wrapper(*args: Any, output_format: OutputFormat = OutputFormat.table, **kwargs: Any) -> R:
        output_format = OutputFormat(output_format)
        if kwargs.get("as_json") and output_format not in (OutputFormat.table, OutputFormat.json):
            raise typer.BadParameter(
                f"--json and --format {output_format.value} ask for two outputs; give one",
                param_hint="--format",
            )
        if output_format is OutputFormat.json:
            kwargs["as_json"] = True
        with use_format(output_format):
            return func(*args, **kwargs)

    wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*params[:at], added, *params[at:]]
    )
    wrapper.__annotations__ = {
        **{p.name: p.annotation for p in params},
        "output_format": FormatOpt,
        "return": signature.return_annotation,
    }
    return wrapper


@contextlib.contextmanager
def use_format(output_format: OutputFormat) -> Iterator[None]:
    """Print tables in ``output_format`` inside the block (what ``--format`` does)."""
    format_token = _output_format.set(output_format)
    count_token = _tables_printed.set(0)
    # rich's Console follows sys.stdout while its private _file is None (as under CliRunner);
    # there is no public way back to that state, so the attribute is saved and restored
    stdout_file = console._file
    if output_format in (OutputFormat.csv, OutputFormat.tsv):
        console.file = sys.stderr
    try:
        yield
    finally:
        console._file = stdout_file
        _tables_printed.reset(count_token)
        _output_format.reset(format_token)


def _columns(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None) -> list[str]:
    if columns is not None:
        return list(columns)
    cols: list[str] = []
    for r in rows:
        cols.extend(c for c in r if c not in cols)
    return cols


def _raw(value: Any) -> Any:
    """A cell of a delimited or JSON table: the full value (shortest repr that round-trips)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _interval_part(row: Mapping[str, Any], column: str, part: str) -> Any:
    value = row.get(column)
    if isinstance(value, Interval):
        return getattr(value, part)
    return value if part == "value" else None


def _in_percent(row: Mapping[str, Any], column: str) -> Any:
    value = row.get(column)
    return float(value) if isinstance(value, Percent) else value


def _plain(row: Mapping[str, Any], column: str) -> Any:
    return row.get(column)


def _machine_rows(
    rows: Sequence[Mapping[str, Any]], cols: list[str]
) -> tuple[list[str], list[list[Any]]]:
    """Rows for a program: an interval becomes three columns (``x``, ``x_lo``, ``x_hi``) and
    a percentage its number, under a header that says ``(%)``."""
    names: list[str] = []
    cells: list[Callable[[Mapping[str, Any]], Any]] = []
    for c in cols:
        values = [r.get(c) for r in rows]
        if any(isinstance(v, Interval) for v in values):
            for suffix, part in (("", "value"), ("_lo", "lo"), ("_hi", "hi")):
                names.append(c + suffix)
                cells.append(functools.partial(_interval_part, column=c, part=part))
        elif any(isinstance(v, Percent) for v in values):
            names.append(c if "%" in c else f"{c} (%)")
            cells.append(functools.partial(_in_percent, column=c))
        else:
            names.append(c)
            cells.append(functools.partial(_plain, column=c))
    return names, [[_raw(cell(r)) for cell in cells] for r in rows]


def print_table(
    rows: Sequence[Mapping[str, Any]],
    title: str | None = None,
    columns: Sequence[str] | None = None,
) -> None:
    """Print a list of records in the command's output format.

    ``table``: a rich table, numbers compact (:func:`~scalinglab._format.fmt`); on a terminal
    it fits the window, elsewhere (a pipe, a log file) it is as wide as its longest values,
    never cut. ``csv``/``tsv``: a header and the full values on stdout, the title on stderr,
    consecutive tables separated by a blank line. ``json``: a list of records.
    """
    output_format = _output_format.get()
    cols = _columns(rows, columns)
    if output_format is OutputFormat.json:
        names, values = _machine_rows(rows, cols)
        print_json([dict(zip(names, v, strict=True)) for v in values])
        return
    if output_format in (OutputFormat.csv, OutputFormat.tsv):
        if title:
            err_console.print(f"# {title}" + ("" if rows else " (no rows)"))
        if _tables_printed.get():
            sys.stdout.write("\n")
        _tables_printed.set(_tables_printed.get() + 1)
        delimiter = "," if output_format is OutputFormat.csv else "\t"
        writer = csv.writer(sys.stdout, delimiter=delimiter, lineterminator="\n")
        names, values = _machine_rows(rows, cols)
        if names:
            writer.writerow(names)
        writer.writerows(["" if v is None else v for v in row] for row in values)
        sys.stdout.flush()
        return
    if not rows:
        console.print(f"{title or ''} (no rows)")
        return
    table = Table(title=title)
    for c in cols:
        table.add_column(c)
    for r in rows:
        table.add_row(*(fmt(r.get(c, "")) for c in cols))
    _print_full_width(table)


def _print_full_width(table: Table) -> None:
    if console.is_terminal:
        console.print(table, soft_wrap=False)
        return
    from rich.measure import Measurement

    width = Measurement.get(console, console.options.update(max_width=1_000_000), table).maximum
    narrow = console.width
    console.width = max(width, narrow)
    try:
        console.print(table, soft_wrap=False)
    finally:
        console.width = narrow


# ---------------------------------------------------------------------------------------------
# Progress

#: ``callback(done, total)``: what long work reports (the engine's ``progress=`` contract)
ProgressCallback = Callable[[int, int], None]


class _DelayedBar:
    """A rich progress bar on stderr that appears only once the work has run ``delay`` s."""

    def __init__(self, description: str, delay: float) -> None:
        self._description = description
        self._lock = threading.Lock()
        self._done, self._total = 0, 0
        self._bar: Any = None
        self._task: Any = None
        self._closed = False
        self._timer = threading.Timer(delay, self._show)
        self._timer.daemon = True
        self._timer.start()

    def _show(self) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        with self._lock:
            if self._closed:
                return
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("left"),
                TimeRemainingColumn(),
                console=err_console,
                transient=True,
            )
            self._task = self._bar.add_task(
                self._description, total=self._total or None, completed=self._done
            )
            self._bar.start()

    def __call__(self, done: int, total: int) -> None:
        with self._lock:
            self._done, self._total = done, total
            if self._bar is not None:
                self._bar.update(self._task, completed=done, total=total or None)

    def close(self) -> None:
        self._timer.cancel()
        with self._lock:
            self._closed = True
            if self._bar is not None:
                self._bar.stop()


def _ignore_progress(done: int, total: int) -> None:
    """Progress where no bar is shown (stderr is not a terminal)."""


@contextlib.contextmanager
def progress_bar(description: str, *, delay: float = 1.0) -> Iterator[ProgressCallback]:
    """A progress bar for long work, as a ``callback(done, total)`` to hand to the library.

    The bar goes to stderr, only when stderr is a terminal (never into a pipe or a log), and
    only once the work has run ``delay`` seconds: quick commands stay quiet. It disappears
    when the block ends.

    Examples
    --------
    >>> with progress_bar("backtesting families") as progress:  # doctest: +SKIP
    ...     report = backtest_all(observations, progress=progress)
    """
    if not err_console.is_terminal:
        yield _ignore_progress
        return
    bar = _DelayedBar(description, delay)
    try:
        yield bar
    finally:
        bar.close()
