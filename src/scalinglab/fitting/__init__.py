"""The fitting engine: robust objective, batched multi-start optimisation, the ``Fit``."""

from scalinglab.fitting.diagnostics import Diagnostic
from scalinglab.fitting.engine import LawObjective, bootstrap_fits, fit, fit_law, select_dataset
from scalinglab.fitting.objective import RobustLoss
from scalinglab.fitting.result import Fit
from scalinglab.fitting.uncertainty import Noise

__all__ = [
    "Diagnostic",
    "Fit",
    "LawObjective",
    "Noise",
    "RobustLoss",
    "bootstrap_fits",
    "fit",
    "fit_law",
    "select_dataset",
]
