"""Loss-to-loss prediction (Brandfonbrener et al. 2024): pair losses, fit, predict, translate.

A *loss* is named by a :class:`LossRef`: the runs trained on one ``family`` (training corpus)
measured on one ``dataset``. Two losses are paired model by model when they share the family
(train-to-test: one model, two datasets) and by identical ``(params, tokens)`` otherwise
(train-to-train and test-to-test: two models of the same size and data budget trained on two
corpora). The pairs are fitted with the shifted power law
``L_y = K · (L_x − E_x)^κ + E_y`` (:class:`scalinglab.laws.transfer.ShiftedPowerLaw`).

By default (``irreducible="joint"``) ``E_x`` and ``E_y`` are fitted with ``K`` and ``κ``, each
bounded above by the irreducible loss of its own compute fit: every loss the law will be asked
to translate lies above the compute law's floor, so the fit stays valid for them, while the
pairs choose how much of the floor the relation between the two losses needs. The paper's
method holds them *at* the compute fits' floors (``irreducible="kaplan_lse"``). Chosen on the
training budgets only (see ``benchmarks/transfer.py``): on the Brandfonbrener et al. sweep,
fitted up to 2.1e18 and 4.6e18 FLOPs and scored on the next budget, the bounded joint fit
halved the held-floor fit's error.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from scalinglab.data.runs import final_rows
from scalinglab.errors import FitError, InputError
from scalinglab.evaluation.metrics import are
from scalinglab.evaluation.transfer_bootstrap import (
    BELOW_LOWEST,
    ConfigResamples,
    Floor,
    compute_replicates,
    pair_replicates,
)
from scalinglab.fitting import Diagnostic, Fit, fit, fit_law
from scalinglab.fitting.result import IntervalKind
from scalinglab.laws.base import FloatArray, get_law
from scalinglab.laws.transfer import ShiftedPowerLaw
from scalinglab.user_input import read_json

#: dataset name of a run's loss on its own training corpus (the paper's "train loss")
OWN_DATASET = "train"
#: compute laws whose irreducible loss can serve as E_x, E_y
ComputeLaw = Literal["kaplan_lse", "chinchilla"]
COMPUTE_LAWS: tuple[str, ...] = ("kaplan_lse", "chinchilla")
#: how the irreducible losses E_x, E_y are obtained: fitted below the compute fits' floors
#: ("joint"), or held at them (a compute law's name, the paper's method)
Irreducible = Literal["joint", "kaplan_lse", "chinchilla"]
IRREDUCIBLE_CHOICES: tuple[str, ...] = ("joint", "kaplan_lse", "chinchilla")
DEFAULT_IRREDUCIBLE: Irreducible = "joint"
#: starts of a free E_x or E_y, as fractions of its upper bound
JOINT_START_FRACTIONS: tuple[float, ...] = (0.0, 0.3, 0.6, 0.9, 0.99)
#: significant digits to which (params, tokens) must agree for two runs to pair
PAIR_DIGITS = 6

Setting = Literal["train_to_train", "train_to_test", "test_to_test", "cross"]


@dataclass(frozen=True)
class LossRef:
    """One loss: runs trained on ``family``, measured on ``dataset``.

    ``family=None`` takes every run (tables without a ``family`` column).
    """

    family: str | None
    dataset: str = OWN_DATASET

    @classmethod
    def parse(cls, text: str, default_dataset: str = OWN_DATASET) -> LossRef:
        """Read ``FAMILY``, ``FAMILY:DATASET`` or ``:DATASET`` (every run).

        Raises
        ------
        InputError
            If the text is empty or has an empty dataset after the colon.
        """
        family, sep, dataset = text.strip().partition(":")
        if not sep:
            dataset = default_dataset
        if not dataset or (not family and not sep):
            raise InputError("a loss is written FAMILY, FAMILY:DATASET or :DATASET", value=text)
        return cls(family or None, dataset)

    def __str__(self) -> str:
        return f"{self.family or ''}:{self.dataset}"


def setting_of(x: LossRef, y: LossRef, own_dataset: str = OWN_DATASET) -> Setting:
    """Which of the paper's settings a pair of losses is.

    Same family: ``train_to_test`` (one model, two datasets). Different families on the same
    dataset: ``train_to_train`` when that is the runs' own corpus, else ``test_to_test``.
    Anything else is ``cross``.
    """
    if x.family == y.family:
        return "train_to_test"
    if x.dataset == y.dataset:
        return "train_to_train" if x.dataset == own_dataset else "test_to_test"
    return "cross"


# -- selecting and pairing -----------------------------------------------------------------


def _require(observations: pd.DataFrame, columns: Sequence[str], why: str) -> None:
    missing = [c for c in columns if c not in observations.columns]
    if missing:
        raise InputError(
            f"{why} needs column(s) {', '.join(missing)}; the table has "
            f"{', '.join(map(str, observations.columns))}"
        )


def _known(values: pd.Series) -> str:
    return ", ".join(sorted(map(str, values.dropna().unique())))


def select_losses(
    observations: pd.DataFrame, ref: LossRef, *, final_only: bool = True
) -> pd.DataFrame:
    """Rows of ``observations`` holding the loss ``ref`` names.

    Parameters
    ----------
    observations
        Long Observations table (``run_id``, ``params``, ``tokens``, ``dataset``, ``loss``,
        and ``family`` unless ``ref.family`` is ``None``).
    ref
        The loss to select.
    final_only
        Keep only each run's last measurement (largest ``tokens``), as the paper does.

    Raises
    ------
    InputError
        Unknown family or dataset (the message lists the known ones), or no run of the family
        measured on the dataset.
    """
    _require(observations, ("run_id", "params", "tokens", "dataset", "loss"), "loss pairing")
    rows = observations
    if ref.family is not None:
        _require(observations, ("family",), f"loss '{ref}'")
        rows = rows[rows["family"].astype(str) == ref.family]
        if rows.empty:
            raise InputError(
                f"no runs of family '{ref.family}'; known families: "
                f"{_known(observations['family'])}",
                column="family",
                value=ref.family,
            )
    picked = rows[rows["dataset"].astype(str) == ref.dataset]
    if picked.empty:
        where = f" for family '{ref.family}'" if ref.family is not None else ""
        raise InputError(
            f"no losses on dataset '{ref.dataset}'{where}; known datasets{where}: "
            f"{_known(rows['dataset'])}",
            column="dataset",
            value=ref.dataset,
        )
    if final_only:
        picked = final_rows(picked)
    return picked


def flops_of(rows: pd.DataFrame) -> pd.Series:
    """Training compute per row: the ``flops`` column where present, else 6·N·D."""
    six_nd = 6.0 * rows["params"].astype(float) * rows["tokens"].astype(float)
    if "flops" not in rows.columns:
        return six_nd
    return rows["flops"].astype(float).fillna(six_nd)


def _config_key(values: pd.Series) -> pd.Series:
    return values.map(lambda v: f"{float(v):.{PAIR_DIGITS - 1}e}")


def pair_losses(
    observations: pd.DataFrame,
    x: LossRef,
    y: LossRef,
    *,
    final_only: bool = True,
) -> pd.DataFrame:
    """Pair the loss ``x`` with the loss ``y`` model by model.

    Same family: pairs are one run's two losses at the same ``tokens``. Different families:
    pairs are runs with identical ``params`` and ``tokens`` (to :data:`PAIR_DIGITS` digits);
    repeated runs of one configuration (seeds) are averaged.

    Returns
    -------
    pandas.DataFrame
        One row per pair: ``run_id_x``, ``run_id_y``, ``params``, ``tokens``, ``flops``
        (the table's ``flops`` where present, else 6·N·D), ``loss_x``, ``loss_y`` (nats),
        sorted by ``flops``.

    Raises
    ------
    InputError
        ``x`` and ``y`` name the same loss, a name is unknown, or nothing pairs.
    """
    if x == y:
        raise InputError(f"x and y are the same loss '{x}'")
    sides = []
    for ref, tag in ((x, "x"), (y, "y")):
        rows = select_losses(observations, ref, final_only=final_only)
        side = pd.DataFrame(
            {
                "run_id": rows["run_id"].astype(str).to_numpy(),
                "params": rows["params"].astype(float).to_numpy(),
                "tokens": rows["tokens"].astype(float).to_numpy(),
                "flops": flops_of(rows).to_numpy(),
                "loss": rows["loss"].astype(float).to_numpy(),
            }
        )
        side["key_n"] = _config_key(side["params"])
        side["key_d"] = _config_key(side["tokens"])
        sides.append(side.add_suffix(f"_{tag}"))
    left, right = sides
    if x.family == y.family:
        on_x, on_y = ["run_id_x", "key_d_x"], ["run_id_y", "key_d_y"]
    else:
        on_x, on_y = ["key_n_x", "key_d_x"], ["key_n_y", "key_d_y"]
    merged = left.merge(right, left_on=on_x, right_on=on_y, how="inner")
    if merged.empty:
        how = "run and tokens" if x.family == y.family else "(params, tokens) configuration"
        raise InputError(
            f"no pairs: no {how} has both loss '{x}' ({len(left)} rows) and loss '{y}' "
            f"({len(right)} rows)"
        )
    pairs = (
        merged.groupby(on_x, sort=False)
        .agg(
            run_id_x=("run_id_x", lambda s: "+".join(sorted(set(s)))),
            run_id_y=("run_id_y", lambda s: "+".join(sorted(set(s)))),
            params=("params_x", "mean"),
            tokens=("tokens_x", "mean"),
            flops=("flops_x", "mean"),
            loss_x=("loss_x", "mean"),
            loss_y=("loss_y", "mean"),
        )
        .reset_index(drop=True)
    )
    return pairs.sort_values(["flops", "params"], kind="stable").reset_index(drop=True)


def train_to_train(
    observations: pd.DataFrame, x_family: str, y_family: str, *, dataset: str = OWN_DATASET
) -> pd.DataFrame:
    """Pairs of own-corpus losses of models trained on two corpora (see :func:`pair_losses`)."""
    return pair_losses(observations, LossRef(x_family, dataset), LossRef(y_family, dataset))


def train_to_test(
    observations: pd.DataFrame,
    family: str,
    test_dataset: str,
    *,
    train_dataset: str = OWN_DATASET,
) -> pd.DataFrame:
    """Pairs of one model's own-corpus loss and its loss on ``test_dataset``."""
    return pair_losses(observations, LossRef(family, train_dataset), LossRef(family, test_dataset))


def test_to_test(
    observations: pd.DataFrame, x_family: str, y_family: str, test_dataset: str
) -> pd.DataFrame:
    """Pairs of ``test_dataset`` losses of models trained on two corpora."""
    return pair_losses(
        observations, LossRef(x_family, test_dataset), LossRef(y_family, test_dataset)
    )


# -- compute fits for the irreducible losses ----------------------------------------------


def compute_fit(
    observations: pd.DataFrame,
    ref: LossRef,
    *,
    law: str = "kaplan_lse",
    final_only: bool = True,
    cache: MutableMapping[LossRef, Fit] | None = None,
) -> Fit:
    """Fit a compute law ``L(N, D)`` to the loss ``ref`` (its irreducible loss is E).

    Parameters
    ----------
    observations
        Long Observations table.
    ref
        Which loss.
    law
        ``"kaplan_lse"`` (``E + ((A/N)^(α/β) + B/D)^β``, the paper's form) or
        ``"chinchilla"`` (``E + A/N^α + B/D^β``), or any registered law with an
        irreducible-loss parameter.
    final_only
        Fit only each run's last measurement.
    cache
        Fits already made, by loss; a new fit is stored in it (one compute fit then serves
        every pair the loss takes part in).
    """
    if cache is not None and ref in cache:
        return cache[ref]
    law_obj = get_law(law)
    if law_obj.irreducible is None:
        raise FitError(f"law '{law}' has no irreducible loss to take E from")
    result = fit(select_losses(observations, ref, final_only=final_only), law=law_obj)
    if cache is not None:
        cache[ref] = result
    return result


def irreducible_of(result: Fit) -> float:
    """The irreducible loss E (nats) of a compute fit."""
    name = result.law.irreducible
    if name is None:
        raise FitError(f"law '{result.law.name}' has no irreducible loss")
    return float(result.params[name])


# -- the transfer fit ----------------------------------------------------------------------


@dataclass
class TransferFit:
    """A fitted loss-to-loss law from loss ``x`` to loss ``y``.

    Attributes
    ----------
    x, y
        The two losses.
    fit
        The shifted power law fit (parameters ``K``, ``kappa``, ``E_x``, ``E_y``).
    irreducible
        Where ``E_x``, ``E_y`` came from: a compute law's name, or ``"joint"``.
    pairs
        The pairs that were fitted (see :func:`pair_losses`).
    compute_fits
        ``{"x": Fit, "y": Fit}`` when the irreducible losses came from compute fits.
    """

    x: LossRef
    y: LossRef
    fit: Fit
    irreducible: str
    pairs: pd.DataFrame
    compute_fits: dict[str, Fit] = field(default_factory=dict)

    @property
    def params(self) -> dict[str, float]:
        """``K``, ``kappa``, ``E_x``, ``E_y``."""
        return dict(self.fit.params)

    @property
    def setting(self) -> Setting:
        """``train_to_train``, ``train_to_test``, ``test_to_test`` or ``cross``."""
        return setting_of(self.x, self.y)

    def predict(self, loss_x: ArrayLike) -> FloatArray:
        """Predicted loss on ``y`` (nats) of models whose loss on ``x`` is ``loss_x``.

        Raises
        ------
        InputError
            If a ``loss_x`` is not above ``E_x`` (``L_x − E_x`` must be positive).
        """
        values = np.atleast_1d(np.asarray(loss_x, dtype=float))
        check_domain(values, self.fit.params["E_x"], what=f"loss on '{self.x}'")
        return self.fit.predict({"loss_x": values})

    def predict_interval(
        self,
        loss_x: ArrayLike,
        level: float = 0.95,
        *,
        kind: IntervalKind = "prediction",
    ) -> tuple[FloatArray, FloatArray]:
        """Bootstrap interval of the loss on ``y`` (nats) at ``loss_x``.

        ``"confidence"``: the law's uncertainty (its replicates, floors refitted in each);
        ``"prediction"``: a new model's loss, the law's uncertainty plus the scatter of models
        about it (see :meth:`scalinglab.fitting.Fit.predict_interval`). A replicate whose
        ``E_x`` is not below a loss cannot translate it and is left out there.

        Raises
        ------
        FitError
            If the fit has no bootstrap replicates.
        InputError
            If a ``loss_x`` is not above ``E_x``, or ``kind`` is unknown.
        """
        values = np.atleast_1d(np.asarray(loss_x, dtype=float))
        check_domain(values, self.fit.params["E_x"], what=f"loss on '{self.x}'")
        if kind not in ("confidence", "prediction"):
            raise InputError("kind must be 'confidence' or 'prediction'", value=kind)
        return self.fit.predict_interval({"loss_x": values}, level, kind=kind)

    def in_sample_are(self) -> float:
        """Mean absolute relative error of the fit on its own pairs."""
        pred = self.fit.predict({"loss_x": self.pairs["loss_x"].to_numpy()})
        return are(pred, self.pairs["loss_y"].to_numpy())

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form, restored by :meth:`from_dict`."""
        return {
            "scalinglab_transfer": 1,
            "x": str(self.x),
            "y": str(self.y),
            "setting": self.setting,
            "irreducible": self.irreducible,
            "fit": self.fit.to_dict(),
            "compute_fits": {k: v.to_dict() for k, v in self.compute_fits.items()},
            "pairs": self.pairs.to_dict(orient="list"),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> TransferFit:
        """Rebuild a transfer fit written by :meth:`to_dict`."""
        try:
            return cls(
                x=LossRef.parse(str(data["x"])),
                y=LossRef.parse(str(data["y"])),
                fit=Fit.from_dict(data["fit"], source=source),
                irreducible=str(data["irreducible"]),
                pairs=pd.DataFrame(dict(data["pairs"])),
                compute_fits={
                    k: Fit.from_dict(v, source=source)
                    for k, v in dict(data.get("compute_fits") or {}).items()
                },
            )
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as err:
            raise InputError(
                f"not a scalinglab transfer fit ({type(err).__name__}: {err})", source=source
            ) from None

    def save(self, path: str | Path) -> None:
        """Write the transfer fit as JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> TransferFit:
        """Read a transfer fit written by :meth:`save`."""
        data = read_json(path, "transfer fit file")
        if not isinstance(data, dict) or "scalinglab_transfer" not in data:
            raise InputError(
                "not a scalinglab transfer fit (no 'scalinglab_transfer' key)", source=str(path)
            )
        return cls.from_dict(data, source=str(path))


def check_domain(loss: FloatArray, irreducible: float, *, what: str, run_ids: Any = None) -> None:
    """Raise :class:`InputError` if any ``loss − irreducible`` is not positive.

    Parameters
    ----------
    loss
        Losses (nats).
    irreducible
        The irreducible loss E they must exceed.
    what
        Names the loss in the message.
    run_ids
        Optional run identifiers aligned with ``loss``, to name the offending run.
    """
    bad = np.flatnonzero(~(loss - irreducible > 0))
    if bad.size == 0:
        return
    i = int(bad[0])
    run = f", e.g. run {np.asarray(run_ids)[i]}" if run_ids is not None else ""
    raise InputError(
        f"{what}: {bad.size} value(s) not above the irreducible loss E = {irreducible:.4g}"
        f"{run}; the shifted power law needs L − E > 0",
        value=float(loss[i]),
    )


def fit_pairs(
    pairs: pd.DataFrame,
    *,
    e_x: float | None = None,
    e_y: float | None = None,
    e_x_max: float | None = None,
    e_y_max: float | None = None,
    what: str = "loss_x",
    bootstrap: int = 0,
    seed: int = 0,
) -> Fit:
    """Fit the shifted power law to pairs, with ``E_x``/``E_y`` fixed where given.

    A free ``E_x`` is bounded above by ``e_x_max`` (when given) and a relative 1e-6 below the
    smallest ``loss_x``, a free ``E_y`` likewise, and each is started at fractions
    (:data:`JOINT_START_FRACTIONS`) of its upper bound.

    Parameters
    ----------
    pairs
        ``loss_x``, ``loss_y`` (nats), ``run_id_x``, ``run_id_y`` (see :func:`pair_losses`).
    e_x, e_y
        Hold the irreducible loss at this value.
    e_x_max, e_y_max
        Upper bound of a free irreducible loss (e.g. its compute fit's floor).
    what
        Names ``loss_x`` in error messages.
    bootstrap, seed
        Pair-resampled refits with the floors as given (:func:`fit_transfer` also refits
        the compute fits that give them).

    Raises
    ------
    InputError
        If a ``loss_x`` is not above a given ``e_x``.
    """
    law = ShiftedPowerLaw()
    loss_x = pairs["loss_x"].to_numpy(dtype=float)
    loss_y = pairs["loss_y"].to_numpy(dtype=float)
    fixed: dict[str, float] = {}
    bounds: dict[str, tuple[float, float]] = {}
    grid: dict[str, Sequence[float]] = {}
    for name, value, cap, losses in (("E_x", e_x, e_x_max, loss_x), ("E_y", e_y, e_y_max, loss_y)):
        if value is not None:
            if name == "E_x":
                check_domain(losses, value, what=what, run_ids=pairs["run_id_x"].to_numpy())
            fixed[name] = value
            continue
        top = float(losses.min()) * (1.0 - BELOW_LOWEST)
        if cap is not None:
            top = min(top, max(float(cap), 0.0))
        if top > 0:
            bounds[name] = (0.0, top)
            grid[name] = [f * top for f in JOINT_START_FRACTIONS]
        else:
            fixed[name] = 0.0  # a compute fit whose floor collapsed to 0 leaves no room
    return fit_law(
        law,
        {"loss_x": loss_x},
        loss_y,
        groups=(pairs["run_id_x"] + "|" + pairs["run_id_y"]).to_numpy(),
        fixed=fixed,
        bounds=bounds,
        grid=grid,
        bootstrap=bootstrap,
        seed=seed,
    )


def fit_transfer(
    observations: pd.DataFrame,
    x: LossRef | str,
    y: LossRef | str,
    *,
    irreducible: Irreducible = DEFAULT_IRREDUCIBLE,
    compute_law: ComputeLaw = "kaplan_lse",
    final_only: bool = True,
    compute_fits: MutableMapping[LossRef, Fit] | None = None,
    bootstrap: int = 0,
    seed: int = 0,
    resamples: ConfigResamples | None = None,
) -> TransferFit:
    """Fit the loss-to-loss law from loss ``x`` to loss ``y``.

    Parameters
    ----------
    observations
        Long Observations table with ``family`` (training corpus) and ``dataset``.
    x, y
        The losses, as :class:`LossRef` or ``"FAMILY[:DATASET]"`` text.
    irreducible
        ``"joint"`` (default): E_x and E_y fitted with K and κ, each at most the irreducible
        loss of ``compute_law`` fitted to its loss alone; ``"kaplan_lse"`` or
        ``"chinchilla"``: E_x and E_y held at that compute law's irreducible losses (the
        paper's method).
    compute_law
        The compute law whose floors bound the joint fit's E_x and E_y.
    final_only
        Use only each run's last measurement.
    compute_fits
        Cache of compute fits by loss (see :func:`compute_fit`).
    bootstrap, seed
        Replicates for intervals: model configurations are resampled, and in every replicate
        the compute fits of x and y are refitted before K, κ (and a joint fit's E_x, E_y),
        so that the intervals carry the floors' uncertainty (see
        :mod:`scalinglab.evaluation.transfer_bootstrap`).
    resamples
        Draws to use instead of drawing ``bootstrap`` new ones (to share them, and the
        compute fits' replicates they cache, across pairs).

    Raises
    ------
    InputError
        Unknown names, nothing pairs, or ``L_x − E_x`` not positive for some pair.
    """
    x_ref = LossRef.parse(x) if isinstance(x, str) else x
    y_ref = LossRef.parse(y) if isinstance(y, str) else y
    if irreducible not in IRREDUCIBLE_CHOICES:
        raise InputError(
            f"irreducible must be one of {', '.join(IRREDUCIBLE_CHOICES)}", value=irreducible
        )
    law = compute_law if irreducible == "joint" else irreducible
    if law not in COMPUTE_LAWS:
        raise InputError(f"compute_law must be one of {', '.join(COMPUTE_LAWS)}", value=law)
    pairs = pair_losses(observations, x_ref, y_ref, final_only=final_only)
    cache = compute_fits if compute_fits is not None else {}
    fits: dict[str, Fit] = {}
    notes: list[Diagnostic] = []
    for tag, ref in (("x", x_ref), ("y", y_ref)):
        try:
            fits[tag] = compute_fit(observations, ref, law=law, final_only=final_only, cache=cache)
        except FitError as err:
            if irreducible != "joint":
                raise
            # the joint fit can do without: its floor is then bounded by the data alone
            notes.append(
                Diagnostic(
                    "note",
                    f"E_{tag} is bounded by the lowest observed loss only (no {law} fit of "
                    f"'{ref}': {err}); losses below it cannot be translated",
                    f"add runs of '{ref}' so that its compute law can be fitted",
                    f"E_{tag}",
                )
            )
    floor = {tag: irreducible_of(f) for tag, f in fits.items()}
    joint = irreducible == "joint"
    result = fit_pairs(
        pairs,
        e_x=None if joint else floor["x"],
        e_y=None if joint else floor["y"],
        e_x_max=floor.get("x"),
        e_y_max=floor.get("y"),
        what=f"loss on '{x_ref}'",
    )
    if joint:
        _explain_free_floors(result)
    result.diagnostics.extend(notes)
    if bootstrap or resamples is not None:
        draws = resamples or ConfigResamples.draw(observations, bootstrap, seed)
        _bootstrap_transfer(
            result, observations, pairs, x_ref, y_ref, fits, joint, draws, final_only
        )
    return TransferFit(x_ref, y_ref, result, irreducible, pairs, fits)


#: the engine's flags that, for the joint fit, only restate that the pairs do not pin the floors
RIDGE_FLAGS = ("floor_collapsed", "at_bound", "ill_conditioned", "near_ties")


def _explain_free_floors(result: Fit) -> None:
    """Replace the flags of the joint fit's expected ridge by one note that says what to do.

    The pairs fit about equally well anywhere from "no floors" to the compute fits' floors (a
    flat valley that the engine reports as collapsed floors, a bound, an ill-conditioned
    direction, near ties). The default keeps them free because that forecasts larger models
    best; what the user needs to know is the spread it leaves in forecasts.
    """
    ridge = [
        d
        for d in result.diagnostics
        if d.code in RIDGE_FLAGS and d.parameter in (None, "E_x", "E_y")
    ]
    if not ridge:
        return
    result.diagnostics = [d for d in result.diagnostics if d not in ridge]
    p = result.params
    result.diagnostics.append(
        Diagnostic(
            "note",
            f"the pairs do not pin the floors (E_x = {p['E_x']:.3g}, E_y = {p['E_y']:.3g}): "
            "values from 0 to the compute fits' floors fit about as well",
            "fit with --bootstrap to see the spread this leaves in forecasts, or hold the "
            "floors at the compute fits' with --irreducible kaplan_lse",
        )
    )


def _bootstrap_transfer(
    result: Fit,
    observations: pd.DataFrame,
    pairs: pd.DataFrame,
    x_ref: LossRef,
    y_ref: LossRef,
    fits: Mapping[str, Fit],
    joint: bool,
    draws: ConfigResamples,
    final_only: bool,
) -> None:
    """Fill ``result``'s bootstrap replicates, the compute fits refitted in each."""
    floors: dict[str, Floor] = {}
    for tag, ref in (("x", x_ref), ("y", y_ref)):
        if tag not in fits:
            floors[tag] = Floor(np.full(draws.n_boot, np.inf), free=True)
            continue
        key = (str(ref), fits[tag].law.name, final_only)
        if key not in draws.fitted:
            rows = select_losses(observations, ref, final_only=final_only)
            replicates = compute_replicates(fits[tag], rows, draws)
            name = fits[tag].law.irreducible or ""
            draws.fitted[key] = replicates[:, fits[tag].law.param_names.index(name)]
        floors[tag] = Floor(draws.fitted[key], free=joint)
    weights = draws.weights(pairs["params"], pairs["tokens"])
    theta = pair_replicates(
        pairs["loss_x"].to_numpy(dtype=float),
        pairs["loss_y"].to_numpy(dtype=float),
        weights,
        floors["x"],
        floors["y"],
    )
    ok = np.all(np.isfinite(theta), axis=1)
    if not ok.all():
        result.diagnostics.append(
            Diagnostic(
                "bootstrap_failed",
                f"{int(np.sum(~ok))} of {draws.n_boot} bootstrap replicates kept too few runs "
                "to refit and were left out",
                "add runs, or read the intervals as slightly too narrow",
            )
        )
    result.bootstrap_params = theta[ok]
    result.options.update(
        bootstrap=draws.n_boot,
        seed=draws.seed,
        bootstrap_kind="configurations; compute fits of x and y refitted in each replicate",
    )


# -- translating a compute law --------------------------------------------------------------


@dataclass
class Translation:
    """A compute law for loss ``y`` translated from loss ``x``'s law through a few ``y`` runs.

    ``L_y(N, D) = K · (L_x(N, D) − E_x)^κ + E_y``, with ``L_x`` the compute law fitted on every
    ``x`` run, ``E_x`` its irreducible loss, and ``K``, ``κ``, ``E_y`` fitted to the few ``y``
    runs. :attr:`direct` is the same compute law fitted to those few runs alone, the baseline
    the paper compares with.

    Attributes
    ----------
    x, y
        The two losses.
    x_fit
        Compute law fitted on ``x``.
    transfer
        Shifted power law from ``x``'s predicted loss to ``y``'s observed loss.
    direct
        Compute law fitted on the few ``y`` runs alone.
    y_runs
        The ``y`` runs used.
    """

    x: LossRef
    y: LossRef
    x_fit: Fit
    transfer: Fit
    direct: Fit
    y_runs: list[str]

    def predict(self, params: ArrayLike, tokens: ArrayLike) -> FloatArray:
        """Translated law: loss on ``y`` (nats) of a model with ``params`` and ``tokens``."""
        loss_x = self.x_fit.predict({"params": params, "tokens": tokens})
        return self.transfer.predict({"loss_x": loss_x})

    def predict_direct(self, params: ArrayLike, tokens: ArrayLike) -> FloatArray:
        """Baseline: the compute law fitted to the few ``y`` runs alone."""
        return self.direct.predict({"params": params, "tokens": tokens})

    def evaluate(self, observations: pd.DataFrame) -> dict[str, float]:
        """ARE of the translated and the direct law on every ``y`` run not used to fit.

        Raises
        ------
        InputError
            If no held-out ``y`` run remains.
        """
        rows = select_losses(observations, self.y)
        held = rows[~rows["run_id"].astype(str).isin(self.y_runs)]
        if held.empty:
            raise InputError(f"every run of loss '{self.y}' was used to translate; none is left")
        n, d = held["params"].to_numpy(float), held["tokens"].to_numpy(float)
        observed = held["loss"].to_numpy(float)
        return {
            "n_heldout": float(len(held)),
            "are_translated": are(self.predict(n, d), observed),
            "are_direct": are(self.predict_direct(n, d), observed),
        }


def near_optimal_runs(rows: pd.DataFrame, x_fit: Fit) -> list[str]:
    """One run per FLOP budget: the one ``x_fit`` predicts the lowest loss for.

    Under the paper's finding that the compute-optimal size barely moves between corpora,
    these are the runs one would train on a new corpus to translate a law cheaply.
    """
    predicted = x_fit.predict(
        {"params": rows["params"].to_numpy(float), "tokens": rows["tokens"].to_numpy(float)}
    )
    frame = pd.DataFrame(
        {
            "run_id": rows["run_id"].astype(str).to_numpy(),
            "budget": _config_key(flops_of(rows)).to_numpy(),
            "predicted": predicted,
        }
    )
    best = frame.loc[frame.groupby("budget", sort=False)["predicted"].idxmin()]
    return best["run_id"].tolist()


def translate_law(
    observations: pd.DataFrame,
    x: LossRef | str,
    y: LossRef | str,
    *,
    y_runs: Sequence[str] | None = None,
    law: str = "kaplan_lse",
) -> Translation:
    """Translate ``x``'s compute law to ``y`` using a few ``y`` runs.

    Parameters
    ----------
    observations
        Long Observations table.
    x, y
        Source and target losses (:class:`LossRef` or ``"FAMILY[:DATASET]"``).
    y_runs
        Run ids of the few ``y`` runs to use; default: one per FLOP budget, the run closest
        to compute-optimal under ``x``'s law (:func:`near_optimal_runs`).
    law
        Compute law fitted on ``x`` (and on the few ``y`` runs for the baseline).

    Raises
    ------
    InputError
        Unknown names or run ids.
    FitError
        Too few ``y`` runs for the baseline law.
    """
    x_ref = LossRef.parse(x) if isinstance(x, str) else x
    y_ref = LossRef.parse(y) if isinstance(y, str) else y
    if x_ref == y_ref:
        raise InputError(f"x and y are the same loss '{x_ref}'")
    x_fit = compute_fit(observations, x_ref, law=law)
    rows = select_losses(observations, y_ref)
    chosen = list(y_runs) if y_runs is not None else near_optimal_runs(rows, x_fit)
    unknown = sorted(set(chosen) - set(rows["run_id"].astype(str)))
    if unknown:
        raise InputError(
            f"run(s) {', '.join(unknown)} have no loss '{y_ref}'", column="run_id", value=unknown[0]
        )
    few = rows[rows["run_id"].astype(str).isin(chosen)]
    pairs = pd.DataFrame(
        {
            "run_id_x": few["run_id"].astype(str).to_numpy(),
            "run_id_y": few["run_id"].astype(str).to_numpy(),
            "loss_x": x_fit.predict(
                {"params": few["params"].to_numpy(float), "tokens": few["tokens"].to_numpy(float)}
            ),
            "loss_y": few["loss"].to_numpy(float),
        }
    )
    transfer = fit_pairs(pairs, e_x=irreducible_of(x_fit), what=f"predicted loss on '{x_ref}'")
    direct = fit(few, law=law)
    return Translation(x_ref, y_ref, x_fit, transfer, direct, chosen)
