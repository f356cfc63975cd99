"""The contract every law satisfies, so that one fitting engine serves them all.

A law is a functional form ``loss = f(x; θ)``. It declares its parameters (names, bounds, an
initial grid, and whether the optimiser should work on their logarithm) and computes
``log f`` for many parameter vectors at once, optionally with the gradient with respect to θ
in natural units. The engine (:mod:`scalinglab.fitting`) owns everything else.
"""

from __future__ import annotations

import functools
import itertools
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, overload

import numpy as np
from numpy.typing import NDArray

from scalinglab.errors import FitError, InputError

if TYPE_CHECKING:
    import pandas as pd

FloatArray = NDArray[np.float64]
Features = Mapping[str, FloatArray]


@dataclass(frozen=True)
class Parameter:
    """One parameter of a law, in the style of lmfit's ``Parameter``.

    Parameters
    ----------
    name
        Name used in fits, JSON and tables (``E``, ``A``, ``alpha``...).
    lower, upper
        Bounds in natural units (``-inf``/``inf`` for none).
    grid
        Initial values the multi-start grid takes for this parameter.
    log_scale
        Optimise ``log(value)`` instead of the value (requires ``lower >= 0``); right for
        scale coefficients that span orders of magnitude.
    description
        One line, with units.
    """

    name: str
    lower: float = -math.inf
    upper: float = math.inf
    grid: tuple[float, ...] = ()
    log_scale: bool = False
    description: str = ""


class Law(ABC):
    """Base class for all laws.

    Subclasses set :attr:`name`, :attr:`inputs`, return their :meth:`parameters`, and
    implement :meth:`log_predict`. Constructor arguments are the law's configuration and must
    be returned by :meth:`config` so that a fitted law round-trips through JSON.
    """

    #: registry key, e.g. ``"chinchilla"``
    name: ClassVar[str]
    #: names of the feature arrays the law reads (columns of Observations by default)
    inputs: ClassVar[tuple[str, ...]]
    #: name of the irreducible-loss parameter, if the law has one (used by ``cap_irreducible``)
    irreducible: ClassVar[str | None] = None

    @abstractmethod
    def parameters(self) -> tuple[Parameter, ...]:
        """The law's parameters, in the order of θ."""

    @overload
    def log_predict(
        self, theta: FloatArray, x: Features, *, grad: Literal[False] = ...
    ) -> FloatArray: ...
    @overload
    def log_predict(
        self, theta: FloatArray, x: Features, *, grad: Literal[True]
    ) -> tuple[FloatArray, FloatArray]: ...

    def log_predict(
        self, theta: FloatArray, x: Features, *, grad: bool = False
    ) -> FloatArray | tuple[FloatArray, FloatArray]:
        """Log of the predicted loss for ``k`` parameter vectors at ``n`` points.

        Parameters
        ----------
        theta
            Array of shape ``(k, p)`` in natural units, columns in :meth:`parameters` order.
        x
            Feature arrays of shape ``(n,)`` (see :attr:`inputs`).
        grad
            Also return ``d log f / d θ`` of shape ``(k, n, p)``.

        Returns
        -------
        numpy.ndarray or tuple
            ``log f`` of shape ``(k, n)``, and the gradient when ``grad`` is true.
        """
        return self._log_predict(np.atleast_2d(theta), x, grad=grad)

    @abstractmethod
    def _log_predict(
        self, theta: FloatArray, x: Features, *, grad: bool
    ) -> FloatArray | tuple[FloatArray, FloatArray]:
        """What :meth:`log_predict` computes; the one method of the form a law implements."""

    # -- conveniences shared by all laws -------------------------------------------------

    def config(self) -> dict[str, Any]:
        """Constructor arguments that recreate this law (JSON-serialisable)."""
        return {}

    @functools.cached_property
    def param_names(self) -> tuple[str, ...]:
        """Parameter names in θ order."""
        # cached: the optimiser's inner loop looks parameters up by name on every evaluation
        return tuple(p.name for p in self.parameters())

    def linear_coefficients(self) -> tuple[str, ...]:
        """Parameters that multiply additive terms of the loss itself, if any.

        A law returns them when it can be written ``L = Σ_j c_j · φ_j(x; ν)`` with the basis
        ``φ`` independent of the coefficients ``c`` (Chinchilla: ``E·1 + A·N^−α + B·D^−β``);
        the engine then solves for ``c`` exactly at each start (variable projection) and only
        searches over ``ν``. Such a law also implements :meth:`linear_basis`. Default: none.
        """
        return ()

    def linear_basis(self, theta: FloatArray, x: Features) -> FloatArray:
        """The basis ``φ_j(x; ν)`` of :meth:`linear_coefficients`, shape ``(k, n, m)``.

        ``theta`` has shape ``(k, p)``; only its non-linear entries matter.
        """
        raise NotImplementedError(f"law '{self.name}' has no linear coefficients")

    def floors(self) -> dict[str, str]:
        """Floor parameters and what each must stay below: ``"loss"`` or an input's name.

        The fit's diagnostics flag a floor that collapsed far below, or rose above, the values
        it bounds. Default: the :attr:`irreducible` loss below the observed loss.
        """
        return {} if self.irreducible is None else {self.irreducible: "loss"}

    def extrapolation_scale(self, x: Features) -> FloatArray | None:
        """How far out each point is, in the units forecasts are extrapolated along.

        The ratio of a forecast's scale to the largest fitted one is its extrapolation ratio.
        Default: training compute (``flops``, or ``6·N·D`` from ``params`` and ``tokens``),
        else whichever of ``params`` or ``tokens`` the law reads; ``None`` for laws with
        no such axis.
        """
        if "flops" in x:
            return np.asarray(x["flops"], dtype=float)
        if "params" in x and "tokens" in x:
            return 6.0 * np.asarray(x["params"], dtype=float) * np.asarray(x["tokens"], float)
        for name in ("params", "tokens"):
            if name in self.inputs:
                return np.asarray(x[name], dtype=float)
        return None

    def features(self, observations: pd.DataFrame) -> dict[str, FloatArray]:
        """Extract the feature arrays this law needs from an Observations table."""
        missing = [c for c in self.inputs if c not in observations.columns]
        if missing:
            raise InputError(
                f"law '{self.name}' needs column(s) {', '.join(missing)}; "
                f"the table has {', '.join(map(str, observations.columns))}"
            )
        return {c: observations[c].to_numpy(dtype=float) for c in self.inputs}

    def initial_grid(self) -> FloatArray:
        """Cartesian product of the parameters' grids, shape ``(m, p)``."""
        grids = [p.grid for p in self.parameters()]
        if any(len(g) == 0 for g in grids):
            names = [p.name for p in self.parameters() if not p.grid]
            raise FitError(f"law '{self.name}' has no initial grid for {', '.join(names)}")
        return np.array(list(itertools.product(*grids)), dtype=float)

    def predict(self, theta: FloatArray | Mapping[str, float], x: Features) -> FloatArray:
        """Predicted loss (nats) at the points ``x`` for one parameter vector.

        ``theta`` is an array of shape ``(p,)`` or a mapping from parameter name to value.
        """
        vec = self.theta_vector(theta)
        return np.exp(self.log_predict(vec[None, :], x)[0])

    def theta_vector(self, theta: FloatArray | Mapping[str, float]) -> FloatArray:
        """θ as an array in parameter order, from an array or a name → value mapping."""
        if isinstance(theta, Mapping):
            try:
                return np.array([float(theta[n]) for n in self.param_names])
            except KeyError as err:
                raise FitError(f"law '{self.name}' needs parameter {err.args[0]}") from None
        vec = np.asarray(theta, dtype=float).reshape(-1)
        if vec.size != len(self.param_names):
            raise FitError(
                f"law '{self.name}' has {len(self.param_names)} parameters, got {vec.size}"
            )
        return vec

    def __repr__(self) -> str:
        cfg = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({cfg})"


_REGISTRY: dict[str, type[Law]] = {}


def register(cls: type[Law]) -> type[Law]:
    """Class decorator: make a law available by name (``get_law``, JSON round-trip)."""
    _REGISTRY[cls.name] = cls
    return cls


def get_law(name: str, **config: Any) -> Law:
    """Instantiate a registered law by name.

    Raises
    ------
    FitError
        If no law has that name (the message lists the known ones).
    """
    # importing the law modules registers them
    from scalinglab import laws as _laws  # noqa: F401

    try:
        cls = _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise FitError(f"unknown law '{name}'; known laws: {known}") from None
    return cls(**config)


def available_laws() -> list[str]:
    """Names of all registered laws."""
    from scalinglab import laws as _laws  # noqa: F401

    return sorted(_REGISTRY)
