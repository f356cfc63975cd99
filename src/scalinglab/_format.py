"""Number formatting shared by tables in the terminal and in reports.

Two value types keep a table's meaning when it is printed anywhere: an :class:`Interval`
prints as ``value [lo, hi]`` (one column instead of three) and a :class:`Percent` holds a
relative error as a fraction and prints it in percent, so that no table mixes fractions and
percentages.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Interval:
    """A value with its interval, printed ``value [lo, hi]``; sorts by ``value``."""

    value: float
    lo: float
    hi: float

    def __float__(self) -> float:
        return float(self.value)


@dataclass(frozen=True)
class Percent:
    """A fraction (a relative error: 0.0117) printed in percent (``1.17%``)."""

    fraction: float

    def __float__(self) -> float:
        return 100.0 * float(self.fraction)


def fmt(value: Any, digits: int = 4) -> str:
    """Format a number compactly for tables: ``digits`` significant digits, scientific
    notation for large and small magnitudes (Python's ``g`` format).

    An :class:`Interval` prints as ``value [lo, hi]`` (counts of 10,000 and more with
    :func:`si` suffixes: ``59.8k [33.9k, 112k]``) and a :class:`Percent` with three
    significant digits and a ``%`` sign; ``None`` and NaN print as ``–`` in intervals and
    percentages (nothing was measured) and as themselves elsewhere.
    """
    if isinstance(value, Interval):
        if not all(math.isfinite(v) for v in (value.lo, value.hi)):
            return fmt(value.value, digits)
        parts = (value.value, value.lo, value.hi)
        one = si if min(abs(v) for v in parts) >= 1e4 else functools.partial(fmt, digits=digits)
        return f"{one(value.value)} [{one(value.lo)}, {one(value.hi)}]"
    if isinstance(value, Percent):
        pct = float(value)
        return "–" if not math.isfinite(pct) else f"{pct:.3g}%"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        v = float(value)
        return str(v) if not math.isfinite(v) else f"{v:.{digits}g}"
    return str(value)


def si(value: float, digits: int = 3) -> str:
    """A count with a suffix: ``59.8k``, ``41.9M``, ``7B``, ``1.4T`` (``digits`` significant)."""
    v = float(value)
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= scale:
            return f"{v / scale:.{digits}g}{suffix}"
    return f"{v:.{digits}g}"


def sort_key(value: Any) -> float | str:
    """What a sortable table sorts a cell by: the number behind it, else its text."""
    if isinstance(value, Interval | Percent):
        return float(value)
    if isinstance(value, bool | np.bool_):
        return float(value)
    if isinstance(value, int | float | np.integer | np.floating):
        return float(value)
    return str(value)


_SEPARATORS = re.compile(r"(?<=[-_/.:= ])")


def short_labels(names: Iterable[str]) -> dict[str, str]:
    """Labels for a legend: each name without the parts every name shares.

    Names are split after separators (``- _ / . : = space``); the longest common prefix and
    suffix of whole parts are dropped (``cpu-tiny-l-D512K-wsd-adamw-s0`` and
    ``cpu-tiny-l-D512K-cosine-adamw-s0`` become ``wsd`` and ``cosine``). A name that would
    become empty, or two that would become equal, keep their full text.
    """
    full = list(dict.fromkeys(str(n) for n in names))
    if len(full) < 2:
        return {n: n for n in full}
    parts = [_SEPARATORS.split(n) for n in full]
    prefix = 0
    while all(len(p) > prefix + 1 for p in parts) and len({p[prefix] for p in parts}) == 1:
        prefix += 1
    suffix = 0
    while (
        all(len(p) > prefix + suffix + 1 for p in parts)
        and len({p[-1 - suffix] for p in parts}) == 1
    ):
        suffix += 1
    short = ["".join(p[prefix : len(p) - suffix]).strip("-_/.:= ") for p in parts]
    if any(not s for s in short) or len(set(short)) < len(short):
        return {n: n for n in full}
    return dict(zip(full, short, strict=True))
