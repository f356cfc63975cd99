"""Plot of a loss-to-loss fit: the pairs and the fitted shifted power law."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from scalinglab.evaluation.transfer import TransferFit
from scalinglab.report.document import legend_outside


def plot_transfer(
    result: TransferFit,
    path: str | Path | None = None,
    *,
    held_out: pd.DataFrame | None = None,
) -> Figure:
    """Scatter of ``(L_x, L_y)`` pairs coloured by compute, with the fitted curve.

    Parameters
    ----------
    result
        A fitted loss-to-loss law (its ``pairs`` are drawn).
    path
        Write the figure here (format from the suffix, e.g. ``.png``, ``.pdf``).
    held_out
        More pairs (as from :func:`~scalinglab.evaluation.transfer.pair_losses`) that were
        not fitted, drawn hollow, e.g. the larger models of a backtest.

    Returns
    -------
    matplotlib.figure.Figure
        Built without pyplot, so it needs no display and leaves no global state.
    """
    fig = Figure(figsize=(6.5, 4.5))
    ax = fig.subplots()
    pairs = result.pairs
    frames = [pairs] if held_out is None else [pairs, held_out]
    flops = pd.concat([f["flops"] for f in frames]).to_numpy(float)
    norm = LogNorm(vmin=float(flops.min()), vmax=float(flops.max()))
    sc = ax.scatter(
        pairs["loss_x"],
        pairs["loss_y"],
        c=pairs["flops"],
        norm=norm,
        cmap="viridis",
        s=24,
        edgecolor="k",
        linewidth=0.3,
        label=f"fitted pairs ({len(pairs)})",
        zorder=3,
    )
    if held_out is not None:
        ax.scatter(
            held_out["loss_x"],
            held_out["loss_y"],
            c=held_out["flops"],
            norm=norm,
            cmap="viridis",
            s=40,
            marker="D",
            edgecolor="C3",
            linewidth=1.0,
            label=f"held out ({len(held_out)})",
            zorder=4,
        )
    fig.colorbar(sc, ax=ax, label="training compute (FLOPs)")
    p = result.params
    all_x = pd.concat([f["loss_x"] for f in frames]).to_numpy(float)
    # the curve runs a little past the data, but never to L_x <= E_x where it is undefined
    lo = max(float(all_x.min()) - 0.05 * float(np.ptp(all_x)), p["E_x"] + 1e-3)
    grid = np.linspace(lo, float(all_x.max()) + 0.05 * float(np.ptp(all_x)), 200)
    ax.plot(
        grid,
        result.predict(grid),
        color="C3",
        lw=2,
        label=f"K={p['K']:.3g}, κ={p['kappa']:.3g}, E_x={p['E_x']:.3g}, E_y={p['E_y']:.3g}",
    )
    ax.set_xlabel(f"loss on {result.x} (nats/token)")
    ax.set_ylabel(f"loss on {result.y} (nats/token)")
    ax.set_title(f"{result.setting.replace('_', '-')}: L_y = K·(L_x − E_x)^κ + E_y")
    ax.grid(True, alpha=0.3)
    legend_outside(ax, below=True)
    if path is not None:
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig
