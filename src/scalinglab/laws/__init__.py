"""Functional forms (laws); importing this package registers every law by name."""

from scalinglab.laws.base import Law, Parameter, available_laws, get_law, register

__all__ = ["Law", "Parameter", "available_laws", "get_law", "register"]

# Importing a law module registers its laws.
from scalinglab.laws import compute as _compute  # noqa: F401
from scalinglab.laws import curve as _curve  # noqa: F401
from scalinglab.laws import downstream as _downstream  # noqa: F401
from scalinglab.laws import overtraining as _overtraining  # noqa: F401
from scalinglab.laws import transfer as _transfer  # noqa: F401
