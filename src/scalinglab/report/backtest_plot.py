"""Heatmap of backtest ARE over the number of training sizes k and the fraction p seen."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from scalinglab.errors import InputError
from scalinglab.evaluation.backtest import BacktestReport

#: ARE levels marked in the colour bar: enough to compare pretraining choices, still useful
ARE_MARKS: tuple[float, ...] = (0.04, 0.20)


def are_grid(
    report: BacktestReport | pd.DataFrame,
    *,
    choice: str = "default",
    target_fraction: float = 0.0,
) -> pd.DataFrame:
    """Median ARE over families for each (k, p): rows k, columns p.

    Parameters
    ----------
    report
        A backtest report, or its :meth:`~scalinglab.evaluation.backtest.BacktestReport.table`.
    choice
        Which fitting choice to show.
    target_fraction
        Which fraction of the target's own run was seen.

    Raises
    ------
    InputError
        If no result of that choice and target fraction has an ARE.
    """
    table = report.table() if isinstance(report, BacktestReport) else report
    part = table[
        (table["choice"] == choice)
        & np.isclose(table["target_fraction"].to_numpy(dtype=float), target_fraction)
    ].dropna(subset=["are"])
    if part.empty:
        choices = ", ".join(sorted(map(str, table["choice"].unique())))
        raise InputError(
            f"no backtest result with an ARE for choice '{choice}' at target fraction "
            f"{target_fraction:g} (choices present: {choices})"
        )
    return part.pivot_table(index="k", columns="fraction", values="are", aggfunc="median")


def plot_are_heatmap(
    report: BacktestReport | pd.DataFrame,
    path: str | Path | None = None,
    *,
    choice: str = "default",
    target_fraction: float = 0.0,
    title: str | None = None,
) -> Figure:
    """Heatmap of the median ARE (over families) by training sizes k and fraction p seen.

    Parameters
    ----------
    report
        A backtest report or its table.
    path
        Write the figure here (format from the suffix, e.g. ``.png``, ``.pdf``).
    choice, target_fraction
        Which results to show (see :func:`are_grid`).
    title
        Figure title; by default names the choice and target fraction.

    Returns
    -------
    matplotlib.figure.Figure
        Built without pyplot, so it needs no display and leaves no global state.
    """
    grid = are_grid(report, choice=choice, target_fraction=target_fraction)
    values = grid.to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    fig = Figure(figsize=(1.2 * grid.shape[1] + 2.5, 0.6 * grid.shape[0] + 2.0))
    ax = fig.subplots()
    lo, hi = max(float(finite.min()), 1e-4), max(float(finite.max()), 1e-3)
    norm = LogNorm(vmin=lo, vmax=hi)
    image = ax.imshow(
        np.ma.masked_invalid(values), cmap="viridis_r", norm=norm, aspect="auto", origin="lower"
    )
    bar = fig.colorbar(image, ax=ax, label="ARE (median over families)")
    for mark in ARE_MARKS:
        if lo <= mark <= hi:
            bar.ax.axhline(mark, color="k", lw=1)
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            if np.isfinite(values[i, j]):
                ax.text(
                    j,
                    i,
                    f"{100 * values[i, j]:.1f}%",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="w" if values[i, j] > np.sqrt(lo * hi) else "k",
                )
    ax.set_xticks(range(grid.shape[1]), [f"{p:g}" for p in grid.columns])
    ax.set_yticks(range(grid.shape[0]), [str(k) for k in grid.index])
    ax.set_xlabel("fraction p of each training run seen")
    ax.set_ylabel("training model sizes k")
    ax.set_title(title or f"Backtest ARE, choice '{choice}', target fraction {target_fraction:g}")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
