"""PyTorch optimizers: the MARS family (Yuan et al. 2024) and a factory by name.

Needs torch (the ``train`` extra); nothing else in scalinglab imports this package.

>>> opt = MARSAdamW(model.parameters(), lr=3e-3)            # doctest: +SKIP
>>> opt = make_optimizer("mars-lion", model.parameters())    # doctest: +SKIP
"""

from scalinglab.optim.factory import OPTIMIZERS, make_optimizer
from scalinglab.optim.mars import MARS, MARSAdamW, MARSLion, MARSShampoo, Mode, Variant

__all__ = [
    "MARS",
    "OPTIMIZERS",
    "MARSAdamW",
    "MARSLion",
    "MARSShampoo",
    "Mode",
    "Variant",
    "make_optimizer",
]
