"""scalinglab: forecast what a language-model training run will achieve, from small runs.

The fitting toolkit (``data``, ``laws``, ``fitting``, ``planning``, ``evaluation``,
``schedules``, ``report``) needs no torch; ``optim`` and ``training`` need the ``train`` extra.
"""

from scalinglab.errors import ConvergenceWarning, FitError, InputError, ScalingLabError, SpecError
from scalinglab.fitting import Fit, fit, fit_law
from scalinglab.laws import get_law

__version__ = "0.1.0"

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
