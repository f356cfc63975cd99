"""The ``Fit``: fitted parameters, their uncertainty, and how the fit went."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from scalinglab.errors import FitError, InputError
from scalinglab.fitting.diagnostics import Diagnostic, extrapolation_flag
from scalinglab.fitting.uncertainty import Noise
from scalinglab.laws.base import Features, FloatArray, Law, get_law
from scalinglab.user_input import read_json

#: version of the JSON a fit is saved as; older versions are read, newer ones refused
FORMAT_VERSION = 2
#: ``"confidence"``: the law's mean loss (parameter uncertainty only); ``"prediction"``: the
#: loss a new run will measure (parameter uncertainty and run-to-run noise)
IntervalKind = Literal["confidence", "prediction"]
#: relative slack on a law's bounds when a saved parameter is checked against them
BOUND_RTOL = 1e-9
#: largest fit file read (a fit with 100,000 bootstrap replicates is ~10 MB)
MAX_FIT_BYTES = 256 * 1024 * 1024
#: noise draws per bootstrap replicate for prediction intervals (at least this many in all)
PREDICTION_DRAWS = 4000


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
        ``(B, p)`` parameter vectors refitted on resampled data, or ``None``.
    diagnostics
        Flags on the fit (:class:`~scalinglab.fitting.Diagnostic`): parameters at a bound, a
        collapsed floor, non-identified directions, near ties, too few runs... each with what
        to do. A clean fit has none.
    noise
        Run-to-run scatter of log losses about the law (for prediction intervals), or
        ``None`` when the data leave no degrees of freedom to measure it.
    data_range
        ``[min, max]`` of the fitted losses, of each input, and of the law's extrapolation
        scale (``"scale"``, e.g. compute) when it has one.
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
    diagnostics: list[Diagnostic] = field(default_factory=list)
    noise: Noise | None = None
    data_range: dict[str, list[float]] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def warnings(self) -> list[str]:
        """The diagnostics as plain lines (what is wrong: what to do)."""
        return [str(d) for d in self.diagnostics]

    # -- prediction ----------------------------------------------------------------------

    @property
    def theta(self) -> FloatArray:
        """Best parameters as an array in ``law.param_names`` order."""
        return self.law.theta_vector(self.params)

    def predict(self, x: Features | Mapping[str, Any]) -> FloatArray:
        """Predicted loss (nats) at the points ``x`` (feature name → array)."""
        return self.law.predict(self.theta, _as_features(x))

    def predict_samples(
        self, x: Features | Mapping[str, Any], kind: IntervalKind = "confidence"
    ) -> FloatArray:
        """Bootstrap samples of the loss at ``x``, shape ``(S, n)``.

        ``kind="confidence"``: the law's prediction for every bootstrap replicate (``S = B``).
        ``kind="prediction"``: each replicate's prediction times the run-to-run noise
        (a t-distributed log offset with the measured scale), several draws per replicate.
        """
        if self.bootstrap_params is None or len(self.bootstrap_params) == 0:
            raise FitError("this fit has no bootstrap replicates; refit with bootstrap > 0")
        log_f = self.law.log_predict(self.bootstrap_params, _as_features(x))
        if kind == "confidence":
            return np.exp(log_f)
        if kind != "prediction":
            raise FitError(f"unknown interval kind '{kind}'; use 'confidence' or 'prediction'")
        if self.noise is None:
            raise FitError(
                "this fit cannot give prediction intervals: its data leave no degrees of "
                "freedom to measure run-to-run noise (add runs, or fix parameters)"
            )
        draws = max(1, math.ceil(PREDICTION_DRAWS / log_f.shape[0]))
        rng = np.random.default_rng(int(self.options.get("seed", 0)))
        offsets = self.noise.log_offsets(rng, (draws * log_f.shape[0], log_f.shape[1]))
        with np.errstate(over="ignore"):
            return np.exp(np.repeat(log_f, draws, axis=0) + offsets)

    def predict_interval(
        self,
        x: Features | Mapping[str, Any],
        level: float = 0.95,
        kind: IntervalKind = "prediction",
    ) -> tuple[FloatArray, FloatArray]:
        """Bootstrap interval of the loss at ``x``: ``(lower, upper)``.

        ``kind="prediction"`` (default) covers the loss a new run at ``x`` will measure
        (parameter uncertainty and run-to-run noise); ``kind="confidence"`` covers the law's
        mean loss there (parameter uncertainty only).
        """
        samples = self.predict_samples(x, kind)
        lo, hi = _percentiles(level)
        with np.errstate(all="ignore"):
            return np.nanpercentile(samples, lo, axis=0), np.nanpercentile(samples, hi, axis=0)

    def extrapolation_ratio(self, x: Features | Mapping[str, Any]) -> FloatArray | None:
        """How many times the largest fitted scale (e.g. compute) each point of ``x`` lies.

        ``None`` when the law has no extrapolation axis or the fit does not record its range.
        """
        scale = self.law.extrapolation_scale(_as_features(x))
        if scale is None or "scale" not in self.data_range:
            return None
        return scale / self.data_range["scale"][1]

    def forecast_diagnostics(self, x: Features | Mapping[str, Any]) -> list[Diagnostic]:
        """The fit's diagnostics plus a flag for forecasts far beyond the fitted range."""
        flags = list(self.diagnostics)
        ratio = self.extrapolation_ratio(x)
        if ratio is not None and ratio.size:
            far = extrapolation_flag(float(np.max(ratio)), _scale_name(self.law))
            if far is not None:
                flags.append(far)
        return flags

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
            "scalinglab_fit": FORMAT_VERSION,
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
            "diagnostics": [d.to_dict() for d in self.diagnostics],
            "warnings": self.warnings,
            "noise": None if self.noise is None else self.noise.to_dict(),
            "data_range": self.data_range,
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
        """Rebuild a fit written by :meth:`to_dict` (this version or an older one).

        Raises
        ------
        InputError
            When the content is not a fit this version can read: a newer format, a missing
            or non-finite parameter, a value outside the law's bounds, a malformed field.
        """
        version = data.get("scalinglab_fit")
        if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version:
            raise InputError(f"not a scalinglab fit (format version {version!r})", source=source)
        if version > FORMAT_VERSION:
            raise InputError(
                f"written by a newer scalinglab (fit format {version}; this version reads up "
                f"to {FORMAT_VERSION}): upgrade scalinglab",
                source=source,
            )
        try:
            law = get_law(str(data["law"]), **dict(data.get("law_config") or {}))
            params = {k: float(v) for k, v in dict(data["params"]).items()}
            boot = data.get("bootstrap_params")
            boot_arr = None if boot is None else np.asarray(boot, dtype=float)
            noise = data.get("noise")
            diagnostics = [Diagnostic.from_dict(d) for d in data.get("diagnostics", [])]
            if version == 1:
                diagnostics = [Diagnostic("note", str(w)) for w in data.get("warnings", [])]
            fit = cls(
                law=law,
                params=params,
                objective=float(data["objective"]),
                converged=bool(data["converged"]),
                n_points=int(data["n_points"]),
                n_groups=int(data["n_groups"]),
                n_starts=int(data["n_starts"]),
                n_starts_converged=int(data.get("n_starts_converged", 0)),
                n_starts_dropped=int(data.get("n_starts_dropped", 0)),
                near_ties=[dict(t) for t in data.get("near_ties", [])],
                bootstrap_params=boot_arr,
                diagnostics=diagnostics,
                noise=None if noise is None else Noise.from_dict(noise),
                data_range={
                    k: [float(v[0]), float(v[1])]
                    for k, v in dict(data.get("data_range") or {}).items()
                },
                options=dict(data.get("options", {})),
            )
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError) as err:
            raise InputError(
                f"not a scalinglab fit ({type(err).__name__}: {err})", source=source
            ) from None
        _check_params(fit, source)
        _check_options(fit.options, source)
        return fit

    def save(self, path: str | Path) -> None:
        """Write the fit as JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Fit:
        """Read a fit written by :meth:`save`."""
        data = read_json(path, "fit file", limit=MAX_FIT_BYTES)
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


def _check_options(options: Mapping[str, Any], source: str) -> None:
    """The saved options a loaded fit uses again: the seed of its prediction draws."""
    seed = options.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(
            "not a scalinglab fit: options.seed must be a whole number >= 0",
            source=source,
            column="options.seed",
            value=seed,
        )


def _check_params(fit: Fit, source: str) -> None:
    """Every parameter present, finite and within the law's bounds; replicates well shaped."""
    names = fit.law.param_names
    missing = [n for n in names if n not in fit.params]
    if missing:
        raise InputError(f"the fit has no value for {', '.join(missing)}", source=source)
    unknown = [n for n in fit.params if n not in names]
    if unknown:
        raise InputError(
            f"law '{fit.law.name}' has no parameter {', '.join(unknown)}", source=source
        )
    for spec in fit.law.parameters():
        value = fit.params[spec.name]
        # a log-scale parameter fitted at its bound comes back as exp(log bound): allow for it
        slack = BOUND_RTOL * max(
            abs(spec.lower), abs(spec.upper) if math.isfinite(spec.upper) else 0.0
        )
        if not math.isfinite(value) or not spec.lower - slack <= value <= spec.upper + slack:
            raise InputError(
                f"parameter '{spec.name}' must be finite and within "
                f"[{spec.lower:g}, {spec.upper:g}]",
                source=source,
                column=spec.name,
                value=value,
            )
    boot = fit.bootstrap_params
    if boot is not None and (boot.ndim != 2 or boot.shape[1] != len(names)):
        raise InputError(
            f"bootstrap_params must be a list of {len(names)}-value rows", source=source
        )


def _scale_name(law: Law) -> str:
    """What a law's extrapolation scale measures, for messages."""
    inputs = set(law.inputs)
    if "flops" in inputs or {"params", "tokens"} <= inputs:
        return "compute"
    return next((n for n in ("params", "tokens") if n in inputs), "scale")


def _percentiles(level: float) -> tuple[float, float]:
    if not 0 < level < 1:
        raise FitError(f"confidence level must be between 0 and 1, got {level}")
    tail = 50.0 * (1.0 - level)
    return tail, 100.0 - tail


def _as_features(x: Features | Mapping[str, Any]) -> dict[str, FloatArray]:
    return {k: np.atleast_1d(np.asarray(v, dtype=float)) for k, v in x.items()}
