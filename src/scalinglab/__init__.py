"""scalinglab: forecast what a language-model training run will achieve, from small runs.

The fitting toolkit (``data``, ``laws``, ``fitting``, ``planning``, ``evaluation``,
``schedules``, ``report``) needs no torch; ``optim`` and ``training`` need the ``train`` extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from scalinglab.errors import ConvergenceWarning, FitError, InputError, ScalingLabError, SpecError

if TYPE_CHECKING:
    from scalinglab.fitting import Fit, fit, fit_law
    from scalinglab.laws import get_law

__version__ = "0.1.0"

# Imported on first use: training workers import scalinglab but never fit, and scipy costs
# them more than a second each.
_LAZY = {
    "Fit": "scalinglab.fitting",
    "fit": "scalinglab.fitting",
    "fit_law": "scalinglab.fitting",
    "get_law": "scalinglab.laws",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'scalinglab' has no attribute {name!r}")


__all__ = [
    "ConvergenceWarning",
    "Fit",
    "FitError",
    "InputError",
    "ScalingLabError",
    "SpecError",
    "__version__",
    "fit",
    "fit_law",
    "get_law",
]
