"""Functional forms (laws); importing this package registers every law by name."""

from scalinglab.laws.base import Law, Parameter, available_laws, get_law, register

__all__ = ["Law", "Parameter", "available_laws", "get_law", "register"]
