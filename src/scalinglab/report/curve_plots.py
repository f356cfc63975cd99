"""Plots of loss curves: observed points against a curve law's predictions."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from scalinglab.schedules import Schedule


def plot_curves(
    predicted: Mapping[str, tuple[np.ndarray, np.ndarray]],
    observed: pd.DataFrame | None = None,
    *,
    title: str = "",
    schedules: Mapping[str, Schedule] | None = None,
    fitted: frozenset[str] = frozenset(),
) -> Figure:
    """Observed points and predicted curves (and, optionally, the schedules above them).

    Parameters
    ----------
    predicted
        ``run → (steps, loss)`` predicted by a curve law.
    observed
        Observations with ``run_id``, ``step``, ``loss`` drawn as points.
    title
        Title of the figure.
    schedules
        ``run → schedule`` drawn in a panel above the losses.
    fitted
        Runs the law was fitted on (labelled "fitted"; the others "predicted").
    """
    fig = Figure(figsize=(8, 7.5 if schedules else 5))
    axes = fig.subplots(2 if schedules else 1, 1, sharex=True, squeeze=False)[:, 0]
    ax = axes[-1]
    for i, (name, (steps, loss)) in enumerate(predicted.items()):
        color = f"C{i % 10}"
        role = "fitted" if name in fitted else "predicted"
        ax.plot(
            steps,
            loss,
            color=color,
            lw=1.5,
            ls="-" if role == "predicted" else "--",
            label=f"{name} ({role})",
        )
        if observed is not None:
            rows = observed[observed["run_id"].astype(str) == name]
            if len(rows):
                ax.plot(
                    rows["step"], rows["loss"], "o", color=color, ms=3.5, label=f"{name} (observed)"
                )
    losses = np.concatenate([loss for _, loss in predicted.values()])
    finite = losses[np.isfinite(losses)]
    if finite.size:
        # the start of training dwarfs the differences between schedules: zoom on the rest
        ax.set_ylim(finite.min() - 0.02 * np.ptp(finite), np.quantile(finite, 0.85))
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    if schedules:
        for i, (name, sched) in enumerate(schedules.items()):
            axes[0].plot(sched.array(), color=f"C{i % 10}", lw=1.2, label=name)
        axes[0].set_ylabel("learning rate")
        axes[0].legend(fontsize=7)
        axes[0].grid(alpha=0.3)
    axes[0].set_title(title)
    fig.tight_layout()
    return fig
