"""Validation of an Observations table: row-level errors, loss units, derived columns.

Every check is vectorised (one numpy pass per column and check) and reports the first
offending row with its 1-based ``source_row``, the user's column name and the value; or,
with ``on_invalid="drop"``, removes the offending rows and says so (a warning and
``df.attrs["dropped"]``). Rows are never removed without one of those two.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from scalinglab.data.schema import (
    CANONICAL_COLUMNS,
    DEFAULT_DATASET,
    DEFAULT_REQUIRED,
    INTEGER_COLUMNS,
    LOSS_UNITS,
    MAX_PLAUSIBLE_LOSS_NATS,
    NONNEGATIVE_COLUMNS,
    NUMERIC_COLUMNS,
    POSITIVE_COLUMNS,
    SOURCE_ROW,
    LossUnit,
    OnInvalid,
)
from scalinglab.errors import FitError, InputError, SpecError

BoolArray = NDArray[np.bool_]
FloatArray = NDArray[np.float64]

#: columns whose distinct values define one run when the source has no run_id
RUN_KEY_COLUMNS: tuple[str, ...] = ("family", "params", "params_nonembedding", "seed")
#: how many dropped rows a warning lists by number
_ROWS_LISTED = 10


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds (for readable error messages)."""
    return value.item() if isinstance(value, np.generic) else value


class _Checker:
    """Collects value checks: raise on the first offending row, or mark rows to drop."""

    def __init__(
        self,
        rows: NDArray[np.int64],
        source: str,
        labels: Mapping[str, str],
        loss_labels: Sequence[str] | None,
        on_invalid: OnInvalid,
    ) -> None:
        self.rows = rows
        self.source = source
        self.labels = labels
        self.loss_labels = loss_labels
        self.on_invalid = on_invalid
        self.dropped: BoolArray = np.zeros(len(rows), dtype=bool)
        self.reasons: dict[str, int] = {}

    def label(self, column: str, pos: int | None = None) -> str:
        """The user's name for ``column`` (for melted wide losses: that row's source column)."""
        if column == "loss" and self.loss_labels is not None:
            return (
                self.loss_labels[pos]
                if pos is not None
                else "/".join(dict.fromkeys(self.loss_labels))
            )
        return self.labels.get(column, column)

    def flag(self, mask: BoolArray, column: str, reason: str, values: Any) -> None:
        """Report the rows where ``mask`` is true (values: array-like indexed by position)."""
        mask = mask & ~self.dropped
        if not mask.any():
            return
        if self.on_invalid == "raise":
            pos = int(np.argmax(mask))
            raise InputError(
                reason,
                source=self.source,
                row=int(self.rows[pos]),
                column=self.label(column, pos),
                value=_plain(values[pos]),
            )
        self.dropped |= mask
        key = f"column '{self.label(column)}': {reason}"
        self.reasons[key] = self.reasons.get(key, 0) + int(mask.sum())


def _to_float(raw: pd.Series, column: str, checker: _Checker) -> FloatArray:
    """Numeric values of a column; text that is not a number is reported."""
    if pd.api.types.is_numeric_dtype(raw.dtype):
        return raw.to_numpy(dtype=float, na_value=np.nan)
    try:
        coerced = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    except OverflowError:  # a whole number beyond float range: infinite, reported as such
        coerced = np.array([_float_or_nan(v) for v in raw], dtype=float)
    text = raw.notna().to_numpy() & np.isnan(coerced)
    checker.flag(text, column, "not a number", raw.to_numpy())
    return coerced


def _float_or_nan(value: Any) -> float:
    """``value`` as a float: ±inf beyond float range, NaN for what is not a number."""
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _text(values: pd.Series) -> pd.Series:
    """A text column: every present value as ``str``, missing ones NaN."""
    return values.astype(str).where(values.notna())


def _number_label(value: float) -> str:
    """Exact, short text for a number (integral values without a decimal point)."""
    if value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value)


def derive_run_ids(df: pd.DataFrame) -> pd.Series:
    """One run id per distinct (family, params, params_nonembedding, seed) combination.

    Used when a source has no ``run_id`` column: rows that agree on those columns (the ones
    present) are taken to be checkpoints of one run. The id spells the values out, e.g.
    ``"gpt2/N=124000000/seed=0"``; with none of the columns present every row is run ``"run"``.

    Parameters
    ----------
    df
        Observations with canonical column names.

    Returns
    -------
    pandas.Series
        Run id (str) per row, aligned with ``df``.
    """
    keys = [c for c in RUN_KEY_COLUMNS if c in df.columns and df[c].notna().any()]
    if not keys or df.empty:
        return pd.Series(["run"] * len(df), index=df.index, dtype=object).astype(str)
    codes = df.groupby(keys, dropna=False, sort=False).ngroup().to_numpy()
    _, first = np.unique(codes, return_index=True)
    names = []
    for pos in first:
        parts = []
        for col in keys:
            value = df[col].iloc[pos]
            if pd.isna(value):
                continue
            if col == "family":
                parts.append(str(value))
            else:
                prefix = {"params": "N", "params_nonembedding": "Nne", "seed": "seed"}[col]
                parts.append(f"{prefix}={_number_label(float(value))}")
        names.append("/".join(parts) or "run")
    return pd.Series(np.asarray(names, dtype=object)[codes], index=df.index).astype(str)


def _point_key(df: pd.DataFrame) -> list[str]:
    """Columns that identify one measurement: run, dataset, and tokens (else step)."""
    for col in ("tokens", "step"):
        if col in df.columns and df[col].notna().any():
            return ["run_id", col, "dataset"]
    return ["run_id", "dataset"]


def _collapse_duplicates(df: pd.DataFrame, source: str) -> tuple[pd.DataFrame, int]:
    """Collapse identical repeated measurements; raise on repeats with different losses."""
    key = _point_key(df)
    if not df.duplicated(key, keep=False).any():
        return df, 0
    copies = df.duplicated([*key, "loss"], keep="first").to_numpy()
    rest = df[~copies]
    conflict = rest.duplicated(key, keep=False).to_numpy()
    if conflict.any():
        sub = rest[conflict]
        group = sub.groupby(key, dropna=False, sort=False).ngroup().to_numpy()
        first, second = sub[group == group[0]].iloc[:2].itertuples(index=False)
        a, b = first._asdict(), second._asdict()
        where = ", ".join(
            f"{c} {a[c]:.6g}" if isinstance(a[c], float) else f"{c} {a[c]!r}" for c in key
        )
        raise InputError(
            f"rows {a[SOURCE_ROW]} and {b[SOURCE_ROW]} both give the loss of {where} but "
            f"disagree ({a['loss']:.6g} vs {b['loss']:.6g} nats); remove one, or map a "
            "column that tells the runs apart to run_id (command line: --column NAME=run_id; "
            "Python: columns={'NAME': 'run_id'})",
            source=source,
            row=int(b[SOURCE_ROW]),
            column="loss",
        )
    return rest, int(copies.sum())


def _check_options(loss_unit: str, on_invalid: str) -> None:
    if loss_unit not in LOSS_UNITS:
        raise SpecError(f"loss_unit must be one of {', '.join(LOSS_UNITS)}; got {loss_unit!r}")
    if on_invalid not in ("raise", "drop"):
        raise SpecError(f"on_invalid must be 'raise' or 'drop'; got {on_invalid!r}")


def _check_loss(values: FloatArray, unit: LossUnit, checker: _Checker) -> FloatArray:
    """Check the loss column in its unit and convert it to nats per token."""
    present = ~np.isnan(values)
    if unit == "perplexity":
        checker.flag(present & (values <= 1), "loss", "a perplexity must be > 1", values)
        with np.errstate(divide="ignore", invalid="ignore"):
            nats = np.log(values)
    else:
        checker.flag(present & (values <= 0), "loss", "must be positive", values)
        nats = values * math.log(2) if unit == "bits" else values
    if unit == "perplexity":
        reason = f"perplexity implausibly high (> e^{MAX_PLAUSIBLE_LOSS_NATS:g})"
    else:
        reason = (
            f"a loss above {MAX_PLAUSIBLE_LOSS_NATS:g} nats per token is implausible; "
            "if the column holds perplexities, pass loss_unit='perplexity'"
        )
    checker.flag(present & (nats > MAX_PLAUSIBLE_LOSS_NATS), "loss", reason, values)
    return nats


def validate_observations(
    df: pd.DataFrame,
    *,
    source: str = "<DataFrame>",
    required: Sequence[str] = DEFAULT_REQUIRED,
    loss_unit: LossUnit = "nats",
    dataset: str | None = None,
    on_invalid: OnInvalid = "raise",
    labels: Mapping[str, str] | None = None,
    loss_labels: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Validate a table that already uses canonical column names and has ``source_row``.

    This is the second half of :func:`scalinglab.data.load_observations` (which reads,
    renames and melts first); see there for the rules. Columns the source lacks are added
    (NaN), ``tokens`` is derived as ``flops / (6 params)`` when absent, ``flops`` defaults to
    ``6 params tokens``, and ``run_id`` is derived by :func:`derive_run_ids` when absent.

    Parameters
    ----------
    df
        Observations with canonical names and a 1-based ``source_row`` column.
    source
        Name of the source in error messages (a file name).
    required
        Columns that must be present with a value in every row.
    loss_unit
        Unit of ``loss`` in ``df``: ``"nats"`` per token, ``"bits"`` per token or
        ``"perplexity"``; the result is always in nats.
    dataset
        Dataset name for rows that have none (default ``"train"``).
    on_invalid
        ``"raise"`` an :class:`InputError` on the first invalid value, or ``"drop"`` the
        invalid rows with a warning and a summary in ``attrs["dropped"]``.
    labels
        Canonical column name → the user's name, for messages.
    loss_labels
        Per row, the user's column the loss came from (melted wide tables).

    Returns
    -------
    pandas.DataFrame
        Canonical columns, then ``source_row``, then the source's other columns.

    Raises
    ------
    InputError
        Missing required column, text in a numeric column, a missing, non-finite or
        out-of-range value, an implausible loss, conflicting duplicate rows.
    """
    _check_options(loss_unit, on_invalid)
    labels = dict(labels or {})
    present = set(df.columns)
    tokens_from_flops = "tokens" not in present and {"flops", "params"} <= present
    need = set(required)
    if tokens_from_flops and "tokens" in need:
        need |= {"flops", "params"}
    missing = [
        c for c in required if c not in present and not (c == "tokens" and tokens_from_flops)
    ]
    if missing:
        hint = (
            " (or give flops and params: tokens = flops / (6 params))"
            if "tokens" in missing
            else ""
        )
        have = ", ".join(str(labels.get(c, c)) for c in df.columns if c != SOURCE_ROW)
        raise InputError(
            f"missing required column(s) {', '.join(missing)}{hint}; the data have columns "
            f"{have}. Map yours with --column NAME={missing[0]} (Python: "
            f"columns={{'NAME': '{missing[0]}'}})",
            source=source,
        )

    rows = df[SOURCE_ROW].to_numpy(dtype=np.int64)
    checker = _Checker(rows, source, labels, loss_labels, on_invalid)
    numbers: dict[str, FloatArray] = {}
    for col in NUMERIC_COLUMNS:
        if col not in present:
            continue
        values = _to_float(df[col], col, checker)
        nan = np.isnan(values)
        if col in need:
            checker.flag(nan, col, "missing value", values)
        checker.flag(np.isinf(values), col, "not a finite number", values)
        if col in POSITIVE_COLUMNS:
            checker.flag(~nan & (values <= 0), col, "must be positive", values)
        if col in NONNEGATIVE_COLUMNS:
            checker.flag(~nan & (values < 0), col, "must not be negative", values)
        if col in INTEGER_COLUMNS:
            fractional = np.isfinite(values) & (values != np.round(values))
            checker.flag(fractional, col, "must be a whole number", values)
        if col == "loss":
            values = _check_loss(values, loss_unit, checker)
        numbers[col] = values
    for col in ("run_id", "family", "dataset"):
        if col in present and (col in need or col == "run_id"):
            checker.flag(df[col].isna().to_numpy(), col, "missing value", df[col].to_numpy())

    out = df.copy()
    derived: list[str] = []
    for col, values in numbers.items():
        out[col] = values
    if tokens_from_flops:
        with np.errstate(divide="ignore", invalid="ignore"):  # rows with params 0 are flagged
            out["tokens"] = numbers["flops"] / (6.0 * numbers["params"])
        derived.append("tokens")
    for col in ("params", "tokens"):
        if col not in out.columns:
            out[col] = np.nan
    six_nd = 6.0 * out["params"].to_numpy(dtype=float) * out["tokens"].to_numpy(dtype=float)
    if "flops" not in present:
        out["flops"] = six_nd
        if not np.isnan(six_nd).all():
            derived.append("flops")
    elif out["flops"].isna().any() and not np.isnan(six_nd).all():
        out["flops"] = out["flops"].fillna(pd.Series(six_nd, index=out.index))
        derived.append("flops")
    for col in CANONICAL_COLUMNS:
        if col not in out.columns and col not in ("run_id", "dataset"):
            out[col] = np.nan
    default_dataset = DEFAULT_DATASET if dataset is None else dataset
    if "dataset" in present:
        out["dataset"] = _text(out["dataset"]).fillna(default_dataset)
    else:
        out["dataset"] = default_dataset
    out["family"] = _text(out["family"])

    dropped = int(checker.dropped.sum())
    if dropped:
        out = out[~checker.dropped]
    if "run_id" in present:
        out["run_id"] = _text(out["run_id"])
    else:
        out["run_id"] = derive_run_ids(out)
        derived.append("run_id")
    out, collapsed = _collapse_duplicates(out, source)
    for col in INTEGER_COLUMNS:
        if out[col].notna().all() and col in present:
            out[col] = out[col].astype(np.int64)

    extras = [c for c in df.columns if c not in CANONICAL_COLUMNS and c != SOURCE_ROW]
    out = out[[*CANONICAL_COLUMNS, SOURCE_ROW, *extras]].reset_index(drop=True)
    out.attrs = {
        "source": source,
        "loss_unit": loss_unit,
        "derived": derived,
        "duplicates_collapsed": collapsed,
    }
    if dropped:
        first_rows = rows[checker.dropped][:_ROWS_LISTED].tolist()
        out.attrs["dropped"] = {
            "count": dropped,
            "reasons": dict(checker.reasons),
            "first_rows": first_rows,
        }
        detail = "; ".join(f"{k} ({n})" for k, n in checker.reasons.items())
        warnings.warn(
            f"{source}: dropped {dropped} invalid row(s): {detail}; first rows "
            f"{', '.join(map(str, first_rows))}",
            UserWarning,
            stacklevel=3,
        )
    return out


def check_enough_points(
    data: pd.DataFrame | int,
    n_parameters: int,
    law_name: str,
    *,
    inputs: Sequence[str] | None = None,
    source: str | None = None,
) -> int:
    """Refuse a fit with no more distinct points than free parameters.

    Parameters
    ----------
    data
        Observations, or a number of points already counted.
    n_parameters
        Number of free parameters of the law (after fixing/tying).
    law_name
        Law name for the message.
    inputs
        The law's input columns: a point is a distinct combination of them. ``None`` counts
        every row as a point.
    source
        Name of the data for the message (defaults to ``data.attrs["source"]``).

    Returns
    -------
    int
        The number of distinct points.

    Raises
    ------
    FitError
        When the points are too few.
    InputError
        When ``data`` lacks one of ``inputs``.
    """
    what = "points"
    if isinstance(data, pd.DataFrame):
        source = source if source is not None else data.attrs.get("source")
        if inputs is None:
            n_points = len(data)
        else:
            absent = [c for c in inputs if c not in data.columns]
            if absent:
                raise InputError(
                    f"law '{law_name}' needs column(s) {', '.join(absent)}; the data has "
                    f"{', '.join(map(str, data.columns))}",
                    source=source,
                )
            n_points = len(data[list(inputs)].drop_duplicates())
            what = f"({', '.join(inputs)}) points"
    else:
        n_points = int(data)
    if n_points <= n_parameters:
        where = f"{source} has" if source else "the data have"
        raise FitError(
            f"law '{law_name}' has {n_parameters} free parameter(s) but {where} only "
            f"{n_points} distinct {what}; a fit needs at least {n_parameters + 1}"
        )
    return n_points
