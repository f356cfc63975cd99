"""The ``Fit``: fitted parameters, their uncertainty, and how the fit went."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scalinglab.errors import FitError, InputError
from scalinglab.laws.base import Features, FloatArray, Law, get_law
from scalinglab.user_input import read_json


@dataclass
class Fit:
    """A fitted law.

    Attributes
    ----------
    law
        The law that was fitted (with its configuration).
    params
        Best parameter values, name → value, natural units.
    objective
        Objective at ``params`` (sum of weighted robust losses on log residuals).
    converged
        Whether the optimiser met its convergence criteria at the best start.
    n_points, n_groups
        Points used, and independent groups (runs) among them.
    n_starts, n_starts_converged, n_starts_dropped
        Starts in the multi-start grid, how many converged (or merged into one that did),
        and how many the fast search set aside without running them to convergence (racing,
        or the starts that variable projection made redundant).
    near_ties
        Other solutions whose objective is within a relative 1e-3 of the best but whose
        parameters differ by more than 1% — a sign that the data do not identify the law.
    bootstrap_params
        ``(B, p)`` parameter vectors refitted on run-resampled data, or ``None``.
    warnings
        Human-readable caveats (non-convergence, parameters at a bound, ties...).
    options
        The fitting options used (loss, delta, fixed, tie, bounds, bootstrap, seed...).
    """

    law: Law
    params: dict[str, float]
    objective: float
    converged: bool
    n_points: int
    n_groups: int
    n_starts: int
    n_starts_converged: int = 0
    n_starts_dropped: int = 0
    near_ties: list[dict[str, float]] = field(default_factory=list)
    bootstrap_params: FloatArray | None = None
    warnings: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)

    # -- prediction ----------------------------------------------------------------------

    @property
    def theta(self) -> FloatArray:
        """Best parameters as an array in ``law.param_names`` order."""
        return self.law.theta_vector(self.params)

    def predict(self, x: Features | Mapping[str, Any]) -> FloatArray:
        """Predicted loss (nats) at the points ``x`` (feature name → array)."""
        return self.law.predict(self.theta, _as_features(x))

    def predict_samples(self, x: Features | Mapping[str, Any]) -> FloatArray:
        """Predictions of every bootstrap replicate, shape ``(B, n)``."""
        if self.bootstrap_params is None or len(self.bootstrap_params) == 0:
            raise FitError("this fit has no bootstrap replicates; refit with bootstrap > 0")
        return np.exp(self.law.log_predict(self.bootstrap_params, _as_features(x)))

    def predict_interval(
        self, x: Features | Mapping[str, Any], level: float = 0.95
    ) -> tuple[FloatArray, FloatArray]:
        """Percentile bootstrap interval of the predicted loss at ``x``."""
        samples = self.predict_samples(x)
        lo, hi = _percentiles(level)
        return np.percentile(samples, lo, axis=0), np.percentile(samples, hi, axis=0)

    # -- uncertainty ---------------------------------------------------------------------

    def param_samples(self) -> dict[str, FloatArray]:
        """Bootstrap replicates of each parameter, name → array of shape ``(B,)``."""
        if self.bootstrap_params is None:
            raise FitError("this fit has no bootstrap replicates; refit with bootstrap > 0")
        return {n: self.bootstrap_params[:, i] for i, n in enumerate(self.law.param_names)}

    def ci(self, level: float = 0.95) -> dict[str, tuple[float, float]]:
        """Percentile bootstrap confidence interval of each parameter."""
        lo, hi = _percentiles(level)
        return {
            n: (float(np.percentile(s, lo)), float(np.percentile(s, hi)))
            for n, s in self.param_samples().items()
        }

    # -- serialisation -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable description that :meth:`from_dict` restores exactly."""
        out: dict[str, Any] = {
            "scalinglab_fit": 1,
            "law": self.law.name,
            "law_config": self.law.config(),
            "params": dict(self.params),
            "objective": self.objective,
            "converged": self.converged,
            "n_points": self.n_points,
            "n_groups": self.n_groups,
            "n_starts": self.n_starts,
            "n_starts_converged": self.n_starts_converged,
            "n_starts_dropped": self.n_starts_dropped,
            "near_ties": self.near_ties,
            "warnings": list(self.warnings),
            "options": self.options,
            "bootstrap_params": None
            if self.bootstrap_params is None
            else self.bootstrap_params.tolist(),
        }
        if self.bootstrap_params is not None:
            out["ci95"] = {k: list(v) for k, v in self.ci().items()}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> Fit:
        """Rebuild a fit written by :meth:`to_dict`."""
        try:
            law = get_law(str(data["law"]), **dict(data.get("law_config") or {}))
            boot = data.get("bootstrap_params")
            return cls(
                law=law,
                params={k: float(v) for k, v in data["params"].items()},
                objective=float(data["objective"]),
                converged=bool(data["converged"]),
                n_points=int(data["n_points"]),
                n_groups=int(data["n_groups"]),
                n_starts=int(data["n_starts"]),
                n_starts_converged=int(data.get("n_starts_converged", 0)),
                n_starts_dropped=int(data.get("n_starts_dropped", 0)),
                near_ties=[dict(t) for t in data.get("near_ties", [])],
                bootstrap_params=None if boot is None else np.asarray(boot, dtype=float),
                warnings=list(data.get("warnings", [])),
                options=dict(data.get("options", {})),
            )
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as err:
            raise InputError(
                f"not a scalinglab fit ({type(err).__name__}: {err})", source=source
            ) from None

    def save(self, path: str | Path) -> None:
        """Write the fit as JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Fit:
        """Read a fit written by :meth:`save`."""
        data = read_json(path, "fit file")
        if not isinstance(data, dict) or "scalinglab_fit" not in data:
            raise InputError("not a scalinglab fit (no 'scalinglab_fit' key)", source=str(path))
        return cls.from_dict(data, source=str(path))

    # -- explanation ---------------------------------------------------------------------

    def summary(self) -> str:
        """A few lines: the law, parameters with CIs, objective and diagnostics."""
        cis = self.ci() if self.bootstrap_params is not None else {}
        lines = [f"law: {self.law.name}  points: {self.n_points}  groups: {self.n_groups}"]
        for n, v in self.params.items():
            ci = f"  [{cis[n][0]:.4g}, {cis[n][1]:.4g}]" if n in cis else ""
            lines.append(f"  {n} = {v:.6g}{ci}")
        lines.append(
            f"objective: {self.objective:.6g}  converged: {self.converged}  {self.search_summary()}"
        )
        lines.extend(f"warning: {w}" for w in self.warnings)
        return "\n".join(lines)

    def search_summary(self) -> str:
        """How the start grid was searched, in one phrase."""
        search = self.options.get("search", "grid")
        run = self.n_starts - self.n_starts_dropped
        return (
            f"{search} search over {self.n_starts} starts: {run} run to the end "
            f"({self.n_starts_converged} converged), {self.n_starts_dropped} set aside"
        )


def _percentiles(level: float) -> tuple[float, float]:
    if not 0 < level < 1:
        raise FitError(f"confidence level must be between 0 and 1, got {level}")
    tail = 50.0 * (1.0 - level)
    return tail, 100.0 - tail


def _as_features(x: Features | Mapping[str, Any]) -> dict[str, FloatArray]:
    return {k: np.atleast_1d(np.asarray(v, dtype=float)) for k, v in x.items()}
