"""Planning: compute-optimal allocation, isoFLOP analysis, parameter and FLOP counting."""

from scalinglab.planning.counting import (
    FlopCount,
    LayerParams,
    ModelShape,
    ParamCount,
    count_params,
)

__all__ = [
    "FlopCount",
    "LayerParams",
    "ModelShape",
    "ParamCount",
    "count_params",
]
