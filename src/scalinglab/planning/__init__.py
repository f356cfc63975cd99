"""Planning: compute-optimal allocation, isoFLOP analysis, parameter and FLOP counting."""

from scalinglab.planning.conversion import (
    embedding_gamma,
    implied_allocation_exponent,
    kaplan_exponent_from_chinchilla,
    nonembedding_from_total,
    total_from_nonembedding,
    total_param_slope,
)
from scalinglab.planning.counting import (
    FlopCount,
    LayerParams,
    ModelShape,
    ParamCount,
    count_params,
)
from scalinglab.planning.isoflop import IsoFlopResult, PowerLawFit, isoflop_analysis
from scalinglab.planning.optimal import Plan, allocation_exponents, compute_optimal

__all__ = [
    "FlopCount",
    "IsoFlopResult",
    "LayerParams",
    "ModelShape",
    "ParamCount",
    "Plan",
    "PowerLawFit",
    "allocation_exponents",
    "compute_optimal",
    "count_params",
    "embedding_gamma",
    "implied_allocation_exponent",
    "isoflop_analysis",
    "kaplan_exponent_from_chinchilla",
    "nonembedding_from_total",
    "total_from_nonembedding",
    "total_param_slope",
]
