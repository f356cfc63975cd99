"""The fitting engine: robust objective, batched multi-start optimisation, the ``Fit``."""

from scalinglab.fitting.engine import LawObjective, fit, fit_law, select_dataset
from scalinglab.fitting.objective import RobustLoss
from scalinglab.fitting.result import Fit

__all__ = ["Fit", "LawObjective", "RobustLoss", "fit", "fit_law", "select_dataset"]
