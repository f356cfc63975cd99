"""Over-training laws: loss as a function of training compute C and tokens per parameter M.

Gadre et al. 2024 ("Language models scale reliably with over-training and on downstream
tasks") write the loss of a model trained with ``C = 6·N·D`` FLOPs at ``M = D/N`` tokens per
parameter as

    L(C, M) = E + (a·M^η + b·M^(−η))·C^(−η).

Along a fixed ``M`` it is a power law in compute with one exponent for every ``M``, and only
the scale ``a·M^η + b·M^(−η)`` moves with over-training. With ``N = (C/(6M))^½`` and
``D = (C·M/6)^½`` it is Chinchilla's ``E + A/N^α + B/D^β`` with tied exponents
``α = β = 2η`` (``A = a·6^(−η)``, ``B = b·6^(−η)``). The same substitution evaluates
Chinchilla's own form (free α, β) along fixed ``M``; both are laws of ``flops`` and
``multiplier`` here, so that ``Fit.predict({"flops": C, "multiplier": 200})`` answers "what
loss at budget C and M = 200?".

Both laws are linear in ``E``, ``a``, ``b`` (``A``, ``B``): the engine solves for those by
variable projection and searches over the exponents only.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from scalinglab.errors import InputError
from scalinglab.laws.base import Features, FloatArray, Law, Parameter, register
from scalinglab.laws.compute import _LOG_E_GRID, _LOG_SCALE_GRID, Chinchilla, _lse_weights

if TYPE_CHECKING:
    import pandas as pd  # annotations only: `scalinglab laws` starts without pandas

#: name of the tokens-per-parameter feature (a column of that name, or tokens / params)
MULTIPLIER = "multiplier"
#: ``η`` grid: the exponent of compute of every published fit lies well inside (0, 1)
_ETA_GRID = tuple(np.round(np.arange(0.02, 0.62, 0.04), 2))


def overtraining_features(observations: pd.DataFrame) -> dict[str, FloatArray]:
    """``flops`` and ``multiplier`` (M = D/N) from an Observations table.

    Each is the table's own column when it has one, else ``6·params·tokens`` and
    ``tokens / params``.
    """
    columns = set(observations.columns)
    if "flops" in columns:
        flops = observations["flops"].to_numpy(dtype=float)
    elif {"params", "tokens"} <= columns:
        flops = 6.0 * (observations["params"] * observations["tokens"]).to_numpy(dtype=float)
    else:
        raise InputError(
            "the over-training laws need a 'flops' column (or params and tokens: "
            f"C = 6·N·D); the table has {', '.join(map(str, observations.columns))}"
        )
    if MULTIPLIER in observations.columns:
        multiplier = observations[MULTIPLIER].to_numpy(dtype=float)
    elif {"params", "tokens"} <= set(observations.columns):
        multiplier = (observations["tokens"] / observations["params"]).to_numpy(dtype=float)
    else:
        raise InputError(
            "the over-training laws need tokens per parameter: a 'multiplier' column, or "
            "'params' and 'tokens'"
        )
    bad = np.flatnonzero(~(np.isfinite(multiplier) & (multiplier > 0)))
    if bad.size:
        raise InputError(
            "tokens per parameter must be positive and finite",
            row=int(bad[0]) + 1,
            column=MULTIPLIER,
            value=float(multiplier[bad[0]]),
        )
    return {"flops": flops, MULTIPLIER: multiplier}


@register
class Overtraining(Law):
    """Gadre et al. 2024: ``L(C, M) = E + (a·M^η + b·M^(−η))·C^(−η)`` (C FLOPs, M = D/N)."""

    name = "overtraining"
    inputs = ("flops", MULTIPLIER)
    irreducible = "E"

    def parameters(self) -> tuple[Parameter, ...]:
        return (
            Parameter(
                "E",
                0.0,
                math.inf,
                _LOG_E_GRID,
                log_scale=True,
                description="irreducible loss, nats",
            ),
            Parameter(
                "a",
                0.0,
                math.inf,
                _LOG_SCALE_GRID,
                log_scale=True,
                description="scale of the M^η C^−η term (the model-size term), nats",
            ),
            Parameter(
                "b",
                0.0,
                math.inf,
                _LOG_SCALE_GRID,
                log_scale=True,
                description="scale of the M^−η C^−η term (the data term), nats",
            ),
            Parameter("eta", 1e-3, 2.0, _ETA_GRID, description="exponent of compute"),
        )

    def features(self, observations: pd.DataFrame) -> dict[str, FloatArray]:
        return overtraining_features(observations)

    @staticmethod
    def _log_terms(x: Features) -> tuple[FloatArray, FloatArray]:
        """``log C`` and ``log M`` as rows, shape ``(1, n)``."""
        log_c = np.log(np.asarray(x["flops"], dtype=float))[None, :]
        log_m = np.log(np.asarray(x[MULTIPLIER], dtype=float))[None, :]
        return log_c, log_m

    def _log_predict(
        self, theta: FloatArray, x: Features, *, grad: bool
    ) -> FloatArray | tuple[FloatArray, FloatArray]:
        theta = np.atleast_2d(theta)
        e, a, b, eta = (theta[:, i, None] for i in range(4))
        log_c, log_m = self._log_terms(x)
        u = eta * (log_m - log_c)  # log of M^η C^−η
        v = -eta * (log_m + log_c)  # log of M^−η C^−η
        log_e = np.broadcast_to(np.log(e), u.shape)
        value, (w_e, w_a, w_b) = _lse_weights([log_e, np.log(a) + u, np.log(b) + v])
        if not grad:
            return value
        g = np.empty((*value.shape, 4))
        g[..., 0] = w_e / e
        g[..., 1] = w_a / a
        g[..., 2] = w_b / b
        g[..., 3] = w_a * (log_m - log_c) - w_b * (log_m + log_c)
        return value, g

    def linear_coefficients(self) -> tuple[str, ...]:
        """``E``, ``a`` and ``b``: the loss is linear in them."""
        return ("E", "a", "b")

    def linear_basis(self, theta: FloatArray, x: Features) -> FloatArray:
        """``[1, M^η C^−η, M^−η C^−η]`` per parameter row, shape ``(k, n, 3)``."""
        theta = np.atleast_2d(theta)
        eta = theta[:, 3, None]
        log_c, log_m = self._log_terms(x)
        size = np.exp(eta * (log_m - log_c))
        data = np.exp(-eta * (log_m + log_c))
        return np.stack([np.ones_like(size), size, data], axis=2)


@register
class ChinchillaAlongM(Law):
    """Chinchilla's ``E + A/N^α + B/D^β`` as a law of compute and M: N = (C/kM)^½, D = M·N."""

    name = "chinchilla_m"
    inputs = ("flops", MULTIPLIER)
    irreducible = "E"

    def __init__(self, flops_per_token_param: float = 6.0) -> None:
        if not (flops_per_token_param > 0 and math.isfinite(flops_per_token_param)):
            raise InputError("flops_per_token_param must be positive", value=flops_per_token_param)
        self.flops_per_token_param = float(flops_per_token_param)
        self._chinchilla = Chinchilla()

    def config(self) -> dict[str, Any]:
        return {"flops_per_token_param": self.flops_per_token_param}

    def parameters(self) -> tuple[Parameter, ...]:
        return self._chinchilla.parameters()

    def features(self, observations: pd.DataFrame) -> dict[str, FloatArray]:
        return overtraining_features(observations)

    def params_tokens(self, x: Features) -> dict[str, FloatArray]:
        """``params`` N and ``tokens`` D of the points ``x`` (flops, multiplier)."""
        flops = np.asarray(x["flops"], dtype=float)
        multiplier = np.asarray(x[MULTIPLIER], dtype=float)
        params = np.sqrt(flops / (self.flops_per_token_param * multiplier))
        return {"params": params, "tokens": multiplier * params}

    def _log_predict(
        self, theta: FloatArray, x: Features, *, grad: bool
    ) -> FloatArray | tuple[FloatArray, FloatArray]:
        return self._chinchilla._log_predict(theta, self.params_tokens(x), grad=grad)

    def linear_coefficients(self) -> tuple[str, ...]:
        return self._chinchilla.linear_coefficients()

    def linear_basis(self, theta: FloatArray, x: Features) -> FloatArray:
        return self._chinchilla.linear_basis(theta, self.params_tokens(x))
