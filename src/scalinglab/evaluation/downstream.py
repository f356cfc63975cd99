"""Forecast downstream task error: compute → validation loss → error, with intervals.

:func:`fit_downstream` fits, on one family of runs,

1. an over-training law of the validation loss in compute ``C`` and tokens per parameter
   ``M`` (:mod:`scalinglab.laws.overtraining`), and
2. for every task and task average, each downstream form side by side
   (:mod:`scalinglab.laws.downstream`): ``exp`` (Gadre et al.'s ``ε − k·exp(−γL)``),
   ``sigmoid`` (the OLMo ladder's sigmoid of loss between chance and a ceiling) and
   ``compute`` (error straight from compute),

and, unless told not to, backtests every target (fit on the smaller-compute runs, forecast the
larger ones; :mod:`scalinglab.evaluation.downstream_backtest`) to state whether its error is
forecastable at all.

:meth:`DownstreamFit.forecast` chains the two steps. Its intervals carry the first step's
uncertainty into the second: each bootstrap replicate of the loss law gives losses, which the
same-numbered replicate of the error law maps to errors. A *prediction* interval adds, at each
step, the run-to-run noise the engine measured for that fit (``Fit.noise``: a t-distributed
log offset), widened to the scatter the verdict's backtest saw beyond the fitted runs when
that was larger; a *confidence* interval has parameter uncertainty only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from scalinglab.errors import FitError, InputError
from scalinglab.evaluation.downstream_data import DownstreamTable
from scalinglab.fitting import Fit, fit_law
from scalinglab.fitting.objective import LossName
from scalinglab.fitting.result import PREDICTION_DRAWS, IntervalKind
from scalinglab.laws import get_law
from scalinglab.laws.base import FloatArray
from scalinglab.laws.downstream import LOSS_FEATURE
from scalinglab.laws.overtraining import MULTIPLIER, overtraining_features
from scalinglab.user_input import read_json

if TYPE_CHECKING:
    from scalinglab.evaluation.downstream_backtest import Verdict, VerdictRules

#: the downstream forms by short name → law name
FORMS: dict[str, str] = {"exp": "error_exp", "sigmoid": "error_sigmoid", "compute": "error_compute"}
#: laws of the validation loss in (C, M)
LOSS_LAWS = ("overtraining", "chinchilla_m")
#: minimum multipliers the loss law's cross-validation chooses among (None: every run)
MIN_MULTIPLIER_CHOICES: tuple[float | None, ...] = (None, 10.0, 20.0)
#: an error of exactly 0 (every example right) enters the log objective as this share of one
#: example, or as ZERO_ERROR_FLOOR when the number of examples is unknown
ZERO_ERROR_FLOOR = 1e-3


@dataclass
class DownstreamFit:
    """Fitted laws from compute to loss to downstream error, per task and average.

    Attributes
    ----------
    loss_column
        The validation loss the errors are forecast from.
    loss_fit
        The over-training law of that loss in (flops, multiplier); ``None`` when the runs
        have no sizes (then only loss → error forecasts can be made).
    fits
        Target (task or average) → form (``exp``, ``sigmoid``, ``compute``) → its fit.
    loss_backtest_log_rmse
        The loss law's root-mean-square log error on the runs the verdict's backtest
        forecast (``None`` when not assessed); prediction intervals of the loss are at least
        this wide in log scale.
    chance
        Target → chance error (``None`` when unknown).
    averages
        Average name → member tasks.
    verdicts
        Target → whether its error is forecastable (empty when not assessed).
    options
        The settings used (forms, loss law, minimum multiplier, bootstrap, seed, objective).
    warnings
        Caveats (errors of zero raised to a floor, fits that did not converge...).
    data_range
        Ranges of the fitted runs (``loss``, ``flops``, ``multiplier``: ``[min, max]``).
    """

    loss_column: str
    loss_fit: Fit | None
    fits: dict[str, dict[str, Fit]]
    chance: dict[str, float | None]
    averages: dict[str, list[str]] = field(default_factory=dict)
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    data_range: dict[str, list[float]] = field(default_factory=dict)
    loss_backtest_log_rmse: float | None = None

    @property
    def targets(self) -> list[str]:
        """Tasks and averages, in fitted order."""
        return list(self.fits)

    def selected_form(self, target: str) -> str:
        """The form the backtest chose for a target (default: the first fitted form)."""
        verdict = self.verdicts.get(target)
        if verdict is not None and verdict.form is not None:
            return verdict.form
        return next(iter(self.fits[target]))

    # -- forecasting ---------------------------------------------------------------------

    def predict_loss_samples(
        self, flops: FloatArray, multiplier: FloatArray, kind: IntervalKind, seed: int
    ) -> FloatArray:
        """Loss draws ``(S, n)`` of the loss law at the points: its bootstrap replicates,
        with run-to-run noise for ``kind="prediction"`` (several draws per replicate)."""
        draws, _ = self._loss_draws(flops, multiplier, kind, np.random.default_rng(seed))
        return draws

    def _loss_draws(
        self,
        flops: FloatArray,
        multiplier: FloatArray,
        kind: IntervalKind,
        rng: np.random.Generator,
    ) -> tuple[FloatArray, NDArray[np.intp]]:
        """Loss draws and the bootstrap replicate each row comes from."""
        fit = self._require_loss_fit()
        conf = fit.predict_samples({"flops": flops, MULTIPLIER: multiplier}, "confidence")
        return _with_noise(conf, fit, self.loss_backtest_log_rmse or 0.0, kind, rng)

    def scatter_floor(self, target: str, form: str) -> float:
        """Log scatter a prediction interval of one target and form is at least as wide as:
        the verdict backtest's log RMSE beyond the fitted runs (0 when not assessed)."""
        verdict = self.verdicts.get(target)
        return 0.0 if verdict is None else verdict.backtest_log_rmse.get(form, 0.0)

    def forecast(
        self,
        *,
        flops: Sequence[float] | FloatArray | None = None,
        multiplier: Sequence[float] | FloatArray | None = None,
        loss: Sequence[float] | FloatArray | None = None,
        level: float = 0.95,
        kind: IntervalKind = "prediction",
        targets: Sequence[str] | None = None,
        seed: int = 0,
    ) -> pd.DataFrame:
        """Error of every target and form at some points, with intervals.

        Give either ``flops`` and ``multiplier`` (two steps: the loss law forecasts the
        loss, then each form the error; ``compute`` reads the flops directly), or ``loss``
        (one step, from a known validation loss; the ``compute`` form is then left out).

        Parameters
        ----------
        flops, multiplier
            Training compute (FLOPs) and tokens per parameter of each point.
        loss
            Validation loss (nats) of each point, instead of compute.
        level
            Level of the intervals.
        kind
            ``"prediction"`` (a new run: parameter uncertainty and run-to-run scatter) or
            ``"confidence"`` (the law's own uncertainty only).
        targets
            Tasks and averages to forecast (default: all).
        seed
            Seed of the scatter draws.

        Returns
        -------
        pandas.DataFrame
            One row per (point, target, form): ``point``, ``flops``, ``multiplier``,
            ``loss`` (given, or forecast with ``loss_low``/``loss_high``), ``target``,
            ``form``, ``error``, ``error_low``, ``error_high`` (NaN without bootstrap
            replicates), ``selected`` (the form the backtest chose), ``status`` (the
            target's verdict, ``"unassessed"`` without one).
        """
        if not 0 < level < 1:
            raise InputError("the interval level must be between 0 and 1", value=level)
        if kind not in ("prediction", "confidence"):
            raise InputError(f"kind must be 'prediction' or 'confidence', got '{kind}'")
        names = list(targets) if targets is not None else self.targets
        unknown = [t for t in names if t not in self.fits]
        if unknown:
            raise InputError(
                f"no fitted target {', '.join(map(repr, unknown))}; the fit has "
                f"{', '.join(self.targets)}"
            )
        points = _points(flops, multiplier, loss)
        two_step = "flops" in points
        has_boot = self._has_bootstrap(names, two_step)
        tail = 50.0 * (1.0 - level)
        flops_arr = points.get("flops", np.zeros(0))
        rng = np.random.default_rng(seed)
        loss_draws: tuple[FloatArray, NDArray[np.intp]] | None = None
        if two_step:
            mult_arr = points[MULTIPLIER]
            loss_point = self._require_loss_fit().predict(
                {"flops": flops_arr, MULTIPLIER: mult_arr}
            )
            if has_boot:
                loss_draws = self._loss_draws(flops_arr, mult_arr, kind, rng)
        else:
            loss_point = points[LOSS_FEATURE]
        base = pd.DataFrame({"point": np.arange(loss_point.size)})
        if two_step:
            base["flops"], base["multiplier"] = flops_arr, mult_arr
        base["loss"] = loss_point
        if loss_draws is not None:
            base["loss_low"] = np.percentile(loss_draws[0], tail, axis=0)
            base["loss_high"] = np.percentile(loss_draws[0], 100 - tail, axis=0)
        frames = []
        for target in names:
            chosen = self.selected_form(target)
            status = self.verdicts[target].status if target in self.verdicts else "unassessed"
            for form, fit in self.fits[target].items():
                if form == "compute" and not two_step:
                    continue
                x = {"flops": flops_arr} if form == "compute" else {LOSS_FEATURE: loss_point}
                rows = base.copy()
                rows["target"], rows["form"] = target, form
                rows["error"] = fit.predict(x)
                if has_boot:
                    draws = self._error_draws(fit, form, target, x, loss_draws, kind, rng)
                    rows["error_low"] = np.percentile(draws, tail, axis=0)
                    rows["error_high"] = np.percentile(draws, 100 - tail, axis=0)
                else:
                    rows["error_low"] = rows["error_high"] = np.nan
                rows["selected"] = form == chosen
                rows["status"] = status
                frames.append(rows)
        if not frames:
            raise InputError("nothing to forecast: the only fitted form needs flops")
        return pd.concat(frames, ignore_index=True)

    def _error_draws(
        self,
        fit: Fit,
        form: str,
        target: str,
        x: Mapping[str, FloatArray],
        loss_draws: tuple[FloatArray, NDArray[np.intp]] | None,
        kind: IntervalKind,
        rng: np.random.Generator,
    ) -> FloatArray:
        """Error draws ``(S, n)``; with loss draws, replicate b of the error law maps the loss
        draws of replicate b of the loss law (two steps)."""
        floor = self.scatter_floor(target, form)
        if loss_draws is None or form == "compute":
            conf = fit.predict_samples(x, "confidence")
            return _with_noise(conf, fit, floor, kind, rng)[0]
        losses, replicate = loss_draws
        reps = fit.bootstrap_params
        assert reps is not None
        log_err = np.empty_like(losses)
        for b in np.unique(replicate):
            rows = replicate == b
            theta = reps[int(b) % len(reps)][None, :]
            values = losses[rows]
            log_err[rows] = fit.law.log_predict(theta, {LOSS_FEATURE: values.reshape(-1)})[
                0
            ].reshape(values.shape)
        draws = np.exp(log_err)
        if kind == "prediction":
            draws = draws * np.exp(_log_noise(fit, floor, draws.shape, rng))
        return draws

    def _has_bootstrap(self, targets: Sequence[str], two_step: bool) -> bool:
        fits = [f for t in targets for f in self.fits[t].values()]
        if two_step:
            fits.append(self._require_loss_fit())
        return all(f.bootstrap_params is not None and len(f.bootstrap_params) for f in fits)

    def _require_loss_fit(self) -> Fit:
        if self.loss_fit is None:
            raise InputError(
                "this fit has no loss law (the runs had no sizes): forecast from a known "
                "validation loss with loss= instead of flops and multiplier"
            )
        return self.loss_fit

    # -- serialisation -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable description that :meth:`from_dict` restores."""
        return {
            "scalinglab_downstream_fit": 1,
            "loss_column": self.loss_column,
            "loss_fit": None if self.loss_fit is None else self.loss_fit.to_dict(),
            "fits": {
                t: {f: fit.to_dict() for f, fit in forms.items()} for t, forms in self.fits.items()
            },
            "loss_backtest_log_rmse": self.loss_backtest_log_rmse,
            "chance": self.chance,
            "averages": self.averages,
            "verdicts": {t: v.to_dict() for t, v in self.verdicts.items()},
            "options": self.options,
            "warnings": list(self.warnings),
            "data_range": self.data_range,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> DownstreamFit:
        """Rebuild a fit written by :meth:`to_dict`."""
        from scalinglab.evaluation.downstream_backtest import Verdict

        try:
            loss_fit = data.get("loss_fit")
            return cls(
                loss_column=str(data["loss_column"]),
                loss_fit=None if loss_fit is None else Fit.from_dict(loss_fit, source),
                fits={
                    str(t): {str(f): Fit.from_dict(d, source) for f, d in forms.items()}
                    for t, forms in data["fits"].items()
                },
                loss_backtest_log_rmse=opt_float(data.get("loss_backtest_log_rmse")),
                chance={str(k): None if v is None else float(v) for k, v in data["chance"].items()},
                averages={str(k): list(v) for k, v in data.get("averages", {}).items()},
                verdicts={
                    str(t): Verdict.from_dict(v) for t, v in data.get("verdicts", {}).items()
                },
                options=dict(data.get("options", {})),
                warnings=list(data.get("warnings", [])),
                data_range={k: list(v) for k, v in data.get("data_range", {}).items()},
            )
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise InputError(
                f"not a scalinglab downstream fit ({type(err).__name__}: {err})", source=source
            ) from None

    def save(self, path: str | Path) -> None:
        """Write the fit as JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> DownstreamFit:
        """Read a fit written by :meth:`save`."""
        data = read_json(path, "downstream fit file")
        if not isinstance(data, dict) or "scalinglab_downstream_fit" not in data:
            raise InputError(
                "not a scalinglab downstream fit (no 'scalinglab_downstream_fit' key; write one "
                "with `scalinglab downstream fit --out`)",
                source=str(path),
            )
        return cls.from_dict(data, source=str(path))


def fit_downstream(
    table: DownstreamTable,
    *,
    forms: Sequence[str] = tuple(FORMS),
    loss_law: str = "auto",
    min_multiplier: float | Literal["auto"] | None = "auto",
    targets: Sequence[str] | None = None,
    bootstrap: int = 0,
    seed: int = 0,
    error_loss: LossName = "squares",
    error_delta: float = 1e-3,
    assess: bool = True,
    rules: VerdictRules | None = None,
) -> DownstreamFit:
    """Fit the loss law and every downstream form, per target, on one family of runs.

    Parameters
    ----------
    table
        Runs with sizes, validation loss and task errors (:func:`load_downstream`).
    forms
        Which downstream forms to fit: ``exp``, ``sigmoid``, ``compute`` (see :data:`FORMS`).
    loss_law
        ``"overtraining"`` (Gadre et al.), ``"chinchilla_m"`` (Chinchilla along fixed M), or
        ``"auto"``: chosen by :func:`choose_loss_settings` (cross-validation in these runs).
    min_multiplier
        Fit the loss law only on runs with at least this many tokens per parameter (the
        shortest runs can sit off the law while their warmup is a large share of training);
        ``None``: every run; ``"auto"``: chosen with the law. The error laws use every run.
    targets
        Tasks and averages to fit (default: all).
    bootstrap
        Run-resampled refits of every law, for intervals (0: point forecasts only).
    seed
        Seed of the bootstrap (the same runs are resampled for every law).
    error_loss, error_delta
        Objective of the error laws on log residuals (``"squares"``, or ``"huber"`` with
        threshold ``error_delta``); the loss law keeps the engine's Huber default.
    assess
        Backtest every target and attach its verdict (:attr:`DownstreamFit.verdicts`).
    rules
        Thresholds of the verdicts (default :class:`VerdictRules`).

    Returns
    -------
    DownstreamFit
    """
    unknown = [f for f in forms if f not in FORMS]
    if unknown or not forms:
        raise InputError(
            f"unknown downstream form(s) {', '.join(map(repr, unknown)) or '(none given)'}; "
            f"choose from {', '.join(FORMS)}"
        )
    if loss_law not in (*LOSS_LAWS, "auto"):
        raise InputError(
            f"unknown loss law '{loss_law}'; choose from {', '.join(LOSS_LAWS)} or auto"
        )
    names = list(targets) if targets is not None else table.targets
    missing = [t for t in names if t not in table.targets]
    if missing:
        raise InputError(
            f"no task or average {', '.join(map(repr, missing))}; the table has "
            f"{', '.join(table.targets)}",
            source=table.source,
        )
    forms = list(dict.fromkeys(forms))
    if "compute" in forms and not table.has_compute:
        raise InputError(
            "the 'compute' form needs flops and tokens per parameter for every run "
            "(params and tokens, or flops and multiplier)",
            source=table.source,
        )
    runs = table.runs
    warnings: list[str] = list(table.notes)
    loss_fit = None
    chosen: list[dict[str, Any]] = []
    if table.has_compute:
        if loss_law == "auto" or min_multiplier == "auto":
            loss_law, min_multiplier, chosen, note = _auto_loss_settings(
                table, loss_law, min_multiplier
            )
            if note:
                warnings.append(note)
        assert min_multiplier != "auto"
        loss_fit = _fit_loss_law(table, loss_law, min_multiplier, bootstrap, seed)
        warnings += [f"loss law: {w}" for w in loss_fit.warnings]
    fits: dict[str, dict[str, Fit]] = {}
    for target in names:
        y, kept, note = _target_errors(table, target)
        if note:
            warnings.append(note)
        if kept.size < 4:
            raise FitError(
                f"'{target}' has {kept.size} evaluated runs; a downstream law needs at least 4"
            )
        fits[target] = {}
        chance = table.chance_error(target)
        for form in forms:
            if form == "compute":
                x = {"flops": runs["flops"].to_numpy(float)[kept]}
            else:
                x = {LOSS_FEATURE: runs["loss"].to_numpy(float)[kept]}
            fixed = {"chance": chance} if form != "exp" and chance is not None else None
            fit = fit_law(
                get_law(FORMS[form]),
                x,
                y,
                groups=runs.index.to_numpy()[kept],
                fixed=fixed,
                loss=error_loss,
                delta=error_delta,
                bootstrap=bootstrap,
                seed=seed,
            )
            fits[target][form] = fit
            warnings += [f"{target} ({form}): {w}" for w in fit.warnings]
    result = DownstreamFit(
        loss_column=table.loss_column,
        loss_fit=loss_fit,
        fits=fits,
        chance={t: table.chance_error(t) for t in names},
        averages={k: list(v) for k, v in table.averages.items() if k in names},
        options={
            "forms": forms,
            "loss_law": loss_law,
            "min_multiplier": min_multiplier,
            "loss_settings_cv": chosen,
            "bootstrap": bootstrap,
            "seed": seed,
            "error_loss": error_loss,
            "error_delta": error_delta,
        },
        warnings=warnings,
        data_range=_ranges(runs),
    )
    if assess:
        # the backtest refits through this function, so it is imported here, not at the top
        from scalinglab.evaluation.downstream_backtest import VerdictRules, assess_predictability

        rules = rules or VerdictRules()
        assessment = assess_predictability(table, result, rules=rules)
        result.verdicts = assessment.verdicts
        result.loss_backtest_log_rmse = assessment.loss_log_rmse
        result.options["rules"] = asdict(rules)
    return result


def choose_loss_settings(
    table: DownstreamTable,
    *,
    laws: Sequence[str] = LOSS_LAWS,
    min_multipliers: Sequence[float | None] = MIN_MULTIPLIER_CHOICES,
) -> tuple[str, float | None, list[dict[str, Any]]]:
    """Loss law and minimum multiplier by cross-validation inside ``table``.

    Two folds mirror the forecasts users make: hold out every run of the largest model size
    (extrapolating in size), and hold out the runs at the two largest multipliers
    (extrapolating in over-training). Each candidate is scored by the mean of the two folds'
    ARE of the validation loss; the lowest wins.

    Returns
    -------
    tuple
        ``(law, min_multiplier, scores)``, scores one record per candidate.

    Raises
    ------
    InputError
        Without ``params``, or with fewer than three sizes or multipliers.
    """
    runs = table.runs
    if "params" not in runs.columns or not table.has_compute:
        raise InputError("choosing the loss law needs params, tokens (or flops) for every run")
    sizes = np.unique(runs["params"].to_numpy(float))
    mults = np.unique(runs[MULTIPLIER].to_numpy(float))
    if sizes.size < 3 or mults.size < 3:
        raise InputError(
            f"choosing the loss law needs 3 model sizes and 3 multipliers; the runs have "
            f"{sizes.size} and {mults.size}"
        )
    folds = [
        runs["params"].to_numpy(float) >= sizes[-1],
        runs[MULTIPLIER].to_numpy(float) >= mults[-2],
    ]
    candidates: list[tuple[float, str, float | None]] = []
    for law in laws:
        for min_m in min_multipliers:
            fold_are = []
            for held in folds:
                train = ~held & (runs[MULTIPLIER].to_numpy(float) >= (min_m or 0.0))
                if train.sum() < 8:
                    fold_are.append(math.inf)
                    continue
                fold_are.append(_loss_are(table, law, train, held))
            candidates.append((float(np.mean(fold_are)), law, min_m))
    score, law, min_m = min(candidates, key=lambda c: c[0])
    if not math.isfinite(score):
        raise InputError("too few runs to cross-validate the loss law")
    scores = [{"law": c[1], "min_multiplier": c[2], "are": c[0]} for c in candidates]
    return law, min_m, scores


def _loss_are(table: DownstreamTable, law: str, train: np.ndarray, test: np.ndarray) -> float:
    runs = table.runs
    x = overtraining_features(runs)
    y = runs["loss"].to_numpy(float)
    fit = fit_law(get_law(law), {k: v[train] for k, v in x.items()}, y[train])
    predicted = fit.predict({k: v[test] for k, v in x.items()})
    return float(np.mean(np.abs(predicted - y[test]) / y[test]))


def _auto_loss_settings(
    table: DownstreamTable, loss_law: str, min_multiplier: float | str | None
) -> tuple[str, float | None, list[dict[str, Any]], str]:
    """Resolve ``"auto"`` settings by cross-validation; fall back to the defaults (with a
    note) when the runs cannot support it."""
    laws = LOSS_LAWS if loss_law == "auto" else (loss_law,)
    mins = MIN_MULTIPLIER_CHOICES if min_multiplier == "auto" else (min_multiplier,)
    try:
        law, min_m, scores = choose_loss_settings(table, laws=laws, min_multipliers=mins)  # type: ignore[arg-type]
    except InputError as err:
        law = laws[0]
        min_m = None if min_multiplier == "auto" else min_multiplier  # type: ignore[assignment]
        return law, min_m, [], f"loss law settings not cross-validated ({err}); using {law}"
    return law, min_m, scores, ""


def _fit_loss_law(
    table: DownstreamTable, law: str, min_multiplier: float | None, bootstrap: int, seed: int
) -> Fit:
    runs = table.runs
    keep = np.ones(len(runs), dtype=bool)
    if min_multiplier is not None:
        keep = runs["multiplier"].to_numpy(float) >= min_multiplier
    x = {k: v[keep] for k, v in overtraining_features(runs).items()}
    y = runs["loss"].to_numpy(float)[keep]
    if keep.sum() < 5:
        raise FitError(
            f"only {int(keep.sum())} runs have at least {min_multiplier} tokens per parameter; "
            "the loss law needs at least 5"
        )
    return fit_law(
        get_law(law), x, y, groups=runs.index.to_numpy()[keep], bootstrap=bootstrap, seed=seed
    )


def _target_errors(table: DownstreamTable, target: str) -> tuple[FloatArray, np.ndarray, str]:
    """A target's measured errors, the runs they belong to, and a note on zeros raised."""
    series = table.error(target)
    kept = np.flatnonzero(series.notna().to_numpy())
    y = series.to_numpy(float)[kept]
    zeros = y <= 0
    note = ""
    if zeros.any():
        examples = table.effective_examples(target)
        floor = 0.5 / examples if examples else ZERO_ERROR_FLOOR
        y = np.where(zeros, floor, y)
        note = (
            f"{target}: {int(zeros.sum())} run(s) with error 0 (every example right) entered "
            f"the fit as {floor:.3g} (the log objective needs a positive error)"
        )
    return y, kept, note


def _log_noise(
    fit: Fit, floor: float, shape: tuple[int, ...], rng: np.random.Generator
) -> FloatArray:
    """Log offsets of new runs about the law: the fit's run-to-run noise (t-distributed, as
    the engine's prediction intervals), widened to a log scatter of at least ``floor``."""
    if fit.noise is None:
        raise FitError(
            f"law '{fit.law.name}' cannot give prediction intervals: its data leave no degrees "
            "of freedom to measure run-to-run noise (add runs, or ask for confidence intervals)"
        )
    offsets = fit.noise.log_offsets(rng, shape)
    if floor > fit.noise.sd_log:
        offsets += math.sqrt(floor**2 - fit.noise.sd_log**2) * rng.standard_normal(shape)
    return offsets


def _with_noise(
    conf: FloatArray, fit: Fit, floor: float, kind: IntervalKind, rng: np.random.Generator
) -> tuple[FloatArray, NDArray[np.intp]]:
    """Bootstrap predictions ``(B, n)`` as draws, and each row's replicate: as they are for
    confidence; for prediction, several noisy draws per replicate."""
    replicate = np.arange(conf.shape[0])
    if kind == "confidence":
        return conf, replicate
    replicate = np.repeat(replicate, max(1, math.ceil(PREDICTION_DRAWS / conf.shape[0])))
    draws = conf[replicate]
    return draws * np.exp(_log_noise(fit, floor, draws.shape, rng)), replicate


def opt_float(value: Any) -> float | None:
    """``None`` stays ``None``; anything else becomes a float (JSON fields)."""
    return None if value is None else float(value)


def _points(
    flops: Sequence[float] | FloatArray | None,
    multiplier: Sequence[float] | FloatArray | None,
    loss: Sequence[float] | FloatArray | None,
) -> dict[str, FloatArray]:
    if loss is not None:
        if flops is not None or multiplier is not None:
            raise InputError("give either loss, or flops and multiplier, not both")
        given = {LOSS_FEATURE: loss}
    else:
        if flops is None or multiplier is None:
            raise InputError("give flops and multiplier (tokens per parameter), or loss")
        given = {"flops": flops, MULTIPLIER: multiplier}
    arrays = {k: np.atleast_1d(np.asarray(v, dtype=float)).reshape(-1) for k, v in given.items()}
    sizes = {a.size for a in arrays.values()}
    if len(sizes) > 1:
        raise InputError("give as many flops as multiplier values")
    for name, arr in arrays.items():
        bad = np.flatnonzero(~(np.isfinite(arr) & (arr > 0)))
        if bad.size or arr.size == 0:
            raise InputError(
                f"{name} must be positive and finite",
                value=float(arr[bad[0]]) if bad.size else None,
            )
    return arrays


def _ranges(runs: pd.DataFrame) -> dict[str, list[float]]:
    out = {}
    for col in ("loss", "flops", "multiplier"):
        if col in runs.columns and runs[col].notna().any():
            out[col] = [float(runs[col].min()), float(runs[col].max())]
    return out
