"""Number formatting shared by tables in the terminal and in reports."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def fmt(value: Any, digits: int = 4) -> str:
    """Format a number compactly for tables (scientific outside 1e-3..1e5)."""
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        v = float(value)
        if not math.isfinite(v):
            return str(v)
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
            return f"{v:.{digits - 1}e}"
        return f"{v:.{digits}g}"
    return str(value)
