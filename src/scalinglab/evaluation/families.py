"""Model families for backtests: runs that share a recipe and differ in size.

A backtest fits the smaller models of a family and forecasts the largest, so a family needs
at least :data:`MIN_SIZES` distinct model sizes. Collections such as ColPret mix loss units
by family (OPT reports perplexity), so families are selected, and perplexities converted,
before the rows are validated as Observations.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from scalinglab.data import SOURCE_ROW, load_observations
from scalinglab.data.loaders import read_table
from scalinglab.data.schema import MAX_PLAUSIBLE_LOSS_NATS, LossUnit
from scalinglab.errors import InputError
from scalinglab.fitting import select_dataset

#: distinct model sizes a family needs: at least two to fit on, one to forecast
MIN_SIZES = 3

Perplexity = Literal["auto"] | Collection[str] | None


def convert_perplexity(
    frame: pd.DataFrame,
    families: Literal["auto"] | Collection[str],
    *,
    family_column: str = "family",
    loss_column: str = "loss",
    source: str | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """Replace perplexity by its logarithm (nats) in the rows of some families.

    Parameters
    ----------
    frame
        Raw rows (before validation); ``loss_column`` may still hold text, left untouched.
    families
        ``"auto"``: every family with a value above
        :data:`~scalinglab.data.schema.MAX_PLAUSIBLE_LOSS_NATS` (no loss in nats is that
        high); otherwise the names of the families to convert.
    family_column, loss_column
        Column names in ``frame``.
    source
        Name of the data's origin, for error messages.

    Returns
    -------
    tuple
        The converted copy and the sorted names of the families converted.

    Raises
    ------
    InputError
        If a named family is not in the table.
    """
    labels = frame[family_column].astype(str).to_numpy()
    loss = pd.to_numeric(frame[loss_column], errors="coerce").to_numpy(dtype=float)
    if families == "auto":
        chosen = set(labels[loss > MAX_PLAUSIBLE_LOSS_NATS])
    else:
        chosen = set(families)
        unknown = sorted(chosen - set(labels))
        if unknown:
            raise InputError(
                f"cannot convert the perplexity of unknown family {', '.join(unknown)}",
                source=source,
                column=family_column,
            )
    mask = np.isin(labels, sorted(chosen)) & (loss > 0)
    out = frame.copy()
    if mask.any():
        converted = out[loss_column].astype(object)
        converted[mask] = np.log(loss[mask])
        out[loss_column] = converted
    return out, sorted(chosen)


def _implausible_losses(
    raw: pd.DataFrame, fam_col: str, loss_col: str, source: str
) -> dict[str, InputError]:
    """Per family, an error naming the first loss too high to be in nats (a perplexity?)."""
    loss = pd.to_numeric(raw[loss_col], errors="coerce").to_numpy(dtype=float)
    labels = raw[fam_col].astype(str).to_numpy()
    rows = raw[SOURCE_ROW].to_numpy()
    out: dict[str, InputError] = {}
    for i in np.flatnonzero(loss > MAX_PLAUSIBLE_LOSS_NATS):
        fam = str(labels[i])
        if fam in out:
            continue
        top = float(np.nanmax(loss[labels == fam]))
        out[fam] = InputError(
            f"family '{fam}' has losses up to {top:.4g}, above {MAX_PLAUSIBLE_LOSS_NATS:g} nats "
            "per token: they look like perplexities; convert them with perplexity='auto' or "
            f"perplexity=['{fam}'] (CLI: --perplexity auto or --perplexity '{fam}')",
            source=source,
            row=int(rows[i]),
            column=loss_col,
            value=float(loss[i]),
        )
    return out


def load_families(
    source: str | Path | pd.DataFrame,
    *,
    family: str | None = None,
    columns: Mapping[str, str] | None = None,
    perplexity: Perplexity = None,
    loss_unit: LossUnit = "nats",
    dataset: str | None = None,
    min_sizes: int = MIN_SIZES,
) -> pd.DataFrame:
    """Load the families of a table that a backtest can use, as validated Observations.

    Parameters
    ----------
    source
        A file (any format :func:`scalinglab.data.load_observations` reads) or a DataFrame.
    family
        Keep only this family (an error if it has fewer than ``min_sizes`` sizes).
    columns
        The user's column names → ours (``{"model_name": "run_id"}``).
    perplexity
        Families whose ``loss`` column holds perplexity: ``"auto"`` or their names.
    loss_unit
        Unit of every other loss value (see :func:`~scalinglab.data.load_observations`).
    dataset
        Which dataset's losses to use when the table holds several.
    min_sizes
        Families with fewer distinct model sizes are left out (and listed).

    Returns
    -------
    pandas.DataFrame
        Observations of the usable families. A table without a ``family`` column is one
        family named after its source. ``attrs``: ``source``, ``skipped_families``
        (family → reason), ``perplexity_families`` (converted), ``rows_without_family``.

    Raises
    ------
    InputError
        Unreadable data, an unknown or too small ``family``, no usable family at all, or a
        loss of ``family`` that still looks like a perplexity (named by row and value);
        without ``family``, such families are skipped with that message.
    """
    if isinstance(source, pd.DataFrame):
        name = str(source.attrs.get("source", "<DataFrame>"))
        raw = source.copy()
        if SOURCE_ROW not in raw.columns:
            raw[SOURCE_ROW] = np.arange(1, len(raw) + 1)
    else:
        name = Path(source).name
        raw = read_table(Path(source))
        raw[SOURCE_ROW] = np.arange(1, len(raw) + 1)
    theirs = {ours: str(their) for their, ours in (columns or {}).items()}
    fam_col, params_col = theirs.get("family", "family"), theirs.get("params", "params")
    loss_col = theirs.get("loss", "loss")
    for col in (params_col, loss_col):
        if col not in raw.columns:
            raise InputError(
                f"a backtest needs column '{col}'; the data have "
                f"{', '.join(map(str, raw.columns))}",
                source=name,
            )
    if fam_col not in raw.columns:
        raw[fam_col] = name
    no_family = raw[fam_col].isna() | (raw[fam_col].astype(str).str.strip() == "")
    raw = raw[~no_family]
    known = sorted(map(str, raw[fam_col].unique()))
    if family is not None:
        if family not in known:
            shown = ", ".join(known[:30]) + (" ..." if len(known) > 30 else "")
            raise InputError(f"no family '{family}'; the data have {shown}", source=name)
        raw = raw[raw[fam_col].astype(str) == family]
    sizes = (
        pd.to_numeric(raw[params_col], errors="coerce").groupby(raw[fam_col].astype(str)).nunique()
    )
    skipped = {
        str(f): f"{n} model size(s); a backtest needs at least {min_sizes}"
        for f, n in sizes.items()
        if n < min_sizes
    }
    if family is not None and family in skipped:
        values = sorted(pd.to_numeric(raw[params_col], errors="coerce").dropna().unique())
        raise InputError(
            f"family '{family}' has {len(values)} model size(s) "
            f"({', '.join(f'{v:.3g}' for v in values)} params); a backtest fits the smaller "
            f"sizes and forecasts the largest, so it needs at least {min_sizes}",
            source=name,
        )
    raw = raw[~raw[fam_col].astype(str).isin(skipped)]
    if raw.empty:
        raise InputError(
            f"no family has {min_sizes} or more model sizes "
            f"({len(skipped)} famil{'y' if len(skipped) == 1 else 'ies'} checked)",
            source=name,
        )
    converted: list[str] = []
    if perplexity is not None:
        raw, converted = convert_perplexity(
            raw, perplexity, family_column=fam_col, loss_column=loss_col, source=name
        )
    if loss_unit == "nats":
        implausible = _implausible_losses(raw, fam_col, loss_col, name)
        if family is not None and family in implausible:
            raise implausible[family]
        skipped.update({f: str(err) for f, err in implausible.items()})
        raw = raw[~raw[fam_col].astype(str).isin(implausible)]
        if raw.empty:
            raise next(iter(implausible.values()))
    raw.attrs["source"] = name
    obs = load_observations(raw, columns=columns, loss_unit=loss_unit)
    obs = select_dataset(obs, dataset)
    obs.attrs.update(
        source=name,
        skipped_families=skipped,
        perplexity_families=converted,
        rows_without_family=int(no_family.sum()),
    )
    return obs
