"""The checks on what a user gives: paths, structured files, names and values.

Every function here raises a :class:`~scalinglab.errors.ScalingLabError` whose message is one
line naming the option (or file) and the value, so that the command line can report it with
exit status 2 and the Python API gets the same message. Nothing here reads more than a stated
limit: a file too large or nested too deeply for its kind is refused, not parsed.

- Paths: :func:`check_input_file`, :func:`check_output_file`, :func:`check_output_dir`,
  :func:`check_figure_file` (before any work, so a typo never costs a whole fit).
- Structured files: :func:`read_text`, :func:`read_json`, :func:`read_toml`.
- Names that become parts of paths (run ids, sweep and model names): :func:`check_name`.
- Values: :func:`check_seed`, :func:`check_finite`.
"""

from __future__ import annotations

import json
import math
import os
import re
import tomllib
from pathlib import Path
from typing import Any

from scalinglab.errors import InputError, SpecError

#: the largest JSON file read (a fit with 10,000 bootstrap replicates is ~2 MB)
MAX_JSON_BYTES = 256 * 2**20
#: the largest TOML file read (configs and sweep specs are a few KB)
MAX_TOML_BYTES = 16 * 2**20
#: the deepest nesting of lists and tables accepted in a JSON or TOML file
MAX_NESTING = 64
#: the largest seed: every random generator used (numpy, torch) accepts 0 … 2**32 − 1
MAX_SEED = 2**32 - 1
#: the longest name, in UTF-8 bytes (a file name may have 255)
MAX_NAME_BYTES = 200

# a letter, digit or underscore first (so no ".", "..", hidden or option-like names), then
# those and . - + = @ , ; never a path separator
_NAME = re.compile(r"\w[\w.+=@,-]*\Z")


def _shown(path: str | os.PathLike[str]) -> str:
    return os.fspath(path)


# -- paths ---------------------------------------------------------------------------------


def check_input_file(path: str | os.PathLike[str], what: str = "input") -> Path:
    """An existing, readable file (not a folder).

    Parameters
    ----------
    path
        The path the user gave.
    what
        The option or argument, for the message (``"--config"``, ``"fit file"``).

    Returns
    -------
    pathlib.Path

    Raises
    ------
    InputError
        Missing, a folder, or not readable.
    """
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{what}: '{_shown(path)}' is a directory; give a file")
    if not p.exists():
        raise InputError(f"{what}: no such file: {_shown(path)}")
    if not os.access(p, os.R_OK):
        raise InputError(f"{what}: cannot read '{_shown(path)}' (permission denied)")
    return p


def _writable_ancestor(p: Path, what: str, shown: str) -> None:
    """The first existing folder above ``p`` must be a folder we may create things in."""
    for parent in p.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"{what}: cannot write '{shown}': '{parent}' is a file")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise InputError(f"{what}: cannot write '{shown}': '{parent}' is read-only")
            return


def check_output_file(
    path: str | os.PathLike[str], what: str = "--out", *, make_folders: bool = False
) -> Path:
    """A file that can be written: not a folder, in a folder that exists (or, with
    ``make_folders``, that can be made: run stores make theirs).

    Raises
    ------
    InputError
        The path is a folder, a read-only file, below a file or a read-only folder, or in
        a folder that does not exist.
    """
    p, shown = Path(path), _shown(path)
    if p.is_dir():
        raise InputError(f"{what}: '{shown}' is a directory; give a file name")
    if p.exists() and not os.access(p, os.W_OK):
        raise InputError(f"{what}: cannot write '{shown}' (permission denied)")
    _writable_ancestor(p, what, shown)
    if not make_folders and not p.absolute().parent.is_dir():
        raise InputError(
            f"{what}: cannot write '{shown}': folder '{p.parent}' does not exist (make it first)"
        )
    return p


def check_output_dir(path: str | os.PathLike[str], what: str = "--out") -> Path:
    """A folder that exists or can be made (not an existing file).

    Raises
    ------
    InputError
        The path is a file, or a read-only folder, or below a file.
    """
    p, shown = Path(path), _shown(path)
    if p.exists() and not p.is_dir():
        raise InputError(f"{what}: '{shown}' is a file; give a directory")
    if p.is_dir():
        if not os.access(p, os.W_OK | os.X_OK):
            raise InputError(f"{what}: cannot write in '{shown}' (permission denied)")
        return p
    _writable_ancestor(p, what, shown)
    return p


def figure_formats() -> tuple[str, ...]:
    """Image suffixes matplotlib can write (``png``, ``pdf``, ``svg``, …)."""
    from matplotlib.figure import Figure

    return tuple(sorted(Figure().canvas.get_supported_filetypes()))


def check_figure_file(path: str | os.PathLike[str], what: str = "--plot") -> Path:
    """A writable image file whose suffix matplotlib knows.

    Raises
    ------
    InputError
        No suffix or an unknown one (the message lists the known ones), or not writable.
    """
    p = check_output_file(path, what)
    suffix = p.suffix.lower().lstrip(".")
    formats = figure_formats()
    if suffix not in formats:
        got = f"'.{suffix}'" if suffix else "no suffix"
        raise InputError(
            f"{what}: '{_shown(path)}' has {got}; an image file ends in one of "
            + ", ".join(f".{f}" for f in formats)
        )
    return p


# -- structured files ------------------------------------------------------------------------


def _read_bytes(path: str | os.PathLike[str], what: str, limit: int) -> bytes:
    p = check_input_file(path, what)
    size = p.stat().st_size
    if size > limit:
        raise InputError(
            f"{what}: '{_shown(path)}' is {size / 2**20:.1f} MiB; files of this kind are at "
            f"most {limit / 2**20:.0f} MiB"
        )
    try:
        return p.read_bytes()
    except OSError as err:
        raise InputError(f"{what}: cannot read '{_shown(path)}' ({err.strerror})") from None


def read_text(
    path: str | os.PathLike[str], what: str = "input", limit: int = MAX_JSON_BYTES
) -> str:
    """The UTF-8 text of a file of at most ``limit`` bytes.

    Raises
    ------
    InputError
        Missing, a folder, unreadable, too large, or not UTF-8 text (with the byte offset).
    """
    data = _read_bytes(path, what, limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(
            f"{what}: '{_shown(path)}' is not UTF-8 text (byte {err.start}: "
            f"{data[err.start : err.start + 1]!r}); is it the right file?"
        ) from None


def nesting_depth(value: Any) -> int:
    """How deeply lists and dicts nest in ``value`` (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth + 1)
        if deepest > MAX_NESTING:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _check_depth(value: Any, what: str, path: str | os.PathLike[str]) -> None:
    if nesting_depth(value) > MAX_NESTING:
        raise InputError(
            f"{what}: '{_shown(path)}' is nested too deeply (more than {MAX_NESTING} levels)"
        )


def read_json(
    path: str | os.PathLike[str], what: str = "JSON file", limit: int = MAX_JSON_BYTES
) -> Any:
    """Parse a JSON file, refusing files too large, not UTF-8, invalid or nested too deeply.

    ``NaN`` and ``Infinity`` are read as floats (Python writes them); checking values is
    the reader's job.

    Raises
    ------
    InputError
        With the file name and, for a syntax error, the line and column.
    """
    text = read_text(path, what, limit)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(
            f"{what}: '{_shown(path)}' is not valid JSON (line {err.lineno}, column "
            f"{err.colno}: {err.msg})"
        ) from None
    except RecursionError:
        raise InputError(
            f"{what}: '{_shown(path)}' is nested too deeply (more than {MAX_NESTING} levels)"
        ) from None
    _check_depth(value, what, path)
    return value


def read_toml(
    path: str | os.PathLike[str], what: str = "TOML file", limit: int = MAX_TOML_BYTES
) -> dict[str, Any]:
    """Parse a TOML file, refusing files too large, not UTF-8, invalid or nested too deeply.

    Raises
    ------
    SpecError
        With the file name and TOML's own description of a syntax error.
    """
    text = read_text(path, what, limit)
    try:
        value = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"{what}: invalid TOML in '{_shown(path)}' ({err})") from None
    except RecursionError:
        raise SpecError(
            f"{what}: '{_shown(path)}' is nested too deeply (more than {MAX_NESTING} levels)"
        ) from None
    _check_depth(value, what, path)
    return value


# -- names and values ----------------------------------------------------------------------


def check_name(name: Any, what: str = "name") -> str:
    """A name that is safe as one path component (run ids, sweep and model names).

    Letters, digits and ``_ . - + = @ ,``, starting with a letter, digit or ``_``; at most
    :data:`MAX_NAME_BYTES` bytes. So ``..``, ``a/b``, an absolute path or a hidden name can
    never take a write outside its folder.

    Raises
    ------
    SpecError
        Naming ``what`` and the value.
    """
    if not isinstance(name, str) or not name:
        raise SpecError(f"{what} must be a non-empty text, got {name!r}")
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise SpecError(f"{what} is longer than {MAX_NAME_BYTES} bytes: {name[:40]!r}…")
    if not _NAME.match(name):
        raise SpecError(
            f"{what} {name!r} is not a safe name: use letters, digits and _ . - + = @ , "
            "(starting with a letter, digit or _), no '/' or '..'"
        )
    return name


def check_seed(seed: Any, what: str = "seed") -> int:
    """A seed every random generator accepts: a whole number in 0 … 2**32 − 1.

    Raises
    ------
    SpecError
        Naming ``what`` and the value.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise SpecError(f"{what} must be a whole number from 0 to {MAX_SEED}, got {seed!r}")
    return seed


def check_finite(
    value: Any, what: str, *, positive: bool = False, nonnegative: bool = False
) -> float:
    """A finite number (optionally > 0 or >= 0), as a float.

    Raises
    ------
    SpecError
        Naming ``what`` and the value.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpecError(f"{what} must be a number, got {value!r}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise SpecError(f"{what} must be a finite number, got {value!r}")
    if positive and not number > 0:
        raise SpecError(f"{what} must be positive, got {value!r}")
    if nonnegative and number < 0:
        raise SpecError(f"{what} must not be negative, got {value!r}")
    return number + 0.0  # -0.0 becomes 0.0 (numpy refuses a scale of -0.0)
