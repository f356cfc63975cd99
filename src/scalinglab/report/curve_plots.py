"""Plots of loss curves: observed points against a curve law's predictions."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from scalinglab._format import short_labels
from scalinglab.report.document import legend_outside
from scalinglab.schedules import Schedule

#: the right-hand panel zooms on this last fraction of the steps, where schedules differ
ZOOM_FRACTION = 0.4


def plot_curves(
    predicted: Mapping[str, tuple[np.ndarray, np.ndarray]],
    observed: pd.DataFrame | None = None,
    *,
    title: str = "",
    schedules: Mapping[str, Schedule] | None = None,
    fitted: frozenset[str] = frozenset(),
) -> Figure:
    """Observed points and predicted curves (and, optionally, the schedules above them).

    The left panel shows every step, the early ones included; the right panel zooms on the
    last 40% of the steps, where the schedules' losses part (the start of training dwarfs
    those differences).

    Parameters
    ----------
    predicted
        ``run → (steps, loss)`` predicted by a curve law.
    observed
        Observations with ``run_id``, ``step``, ``loss`` drawn as points.
    title
        Title of the figure.
    schedules
        ``run → schedule`` drawn in a row above the losses.
    fitted
        Runs the law was fitted on (labelled "fitted"; the others "predicted").
    """
    fig = Figure(figsize=(11, 7.5 if schedules else 4.8))
    axes = fig.subplots(2 if schedules else 1, 2, sharex="col", squeeze=False)
    labels = short_labels(predicted)
    last = max(float(np.max(steps)) for steps, _ in predicted.values())
    start = (1 - ZOOM_FRACTION) * last
    zoomed: list[np.ndarray] = []
    for i, (name, (steps, loss)) in enumerate(predicted.items()):
        color = f"C{i % 10}"
        role = "fitted" if name in fitted else "predicted"
        rows = None
        if observed is not None:
            rows = observed[observed["run_id"].astype(str) == name]
        for ax in axes[-1]:
            ax.plot(
                steps,
                loss,
                color=color,
                lw=1.5,
                ls="-" if role == "predicted" else "--",
                label=f"{labels[name]} ({role})",
            )
            if rows is not None and len(rows):
                ax.plot(
                    rows["step"],
                    rows["loss"],
                    "o",
                    color=color,
                    ms=3,
                    label=f"{labels[name]} (observed)",
                )
        late = np.asarray(loss)[np.asarray(steps) >= start]
        if rows is not None and len(rows):
            late = np.concatenate([late, rows.loc[rows["step"] >= start, "loss"].to_numpy(float)])
        zoomed.append(late[np.isfinite(late)])
    whole, zoom = axes[-1]
    whole.set_title("every step")
    zoom.set_title(f"last {ZOOM_FRACTION:.0%} of the steps")
    zoom.set_xlim(start, last * 1.01)
    values = np.concatenate(zoomed) if zoomed else np.array([])
    if values.size:
        pad = 0.05 * max(float(np.ptp(values)), 1e-6)
        zoom.set_ylim(values.min() - pad, values.max() + pad)
    for ax in axes[-1]:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    whole.set_ylabel("loss (nats/token)")
    legend_outside(zoom)
    if schedules:
        for ax in axes[0]:
            for i, (name, sched) in enumerate(schedules.items()):
                ax.plot(sched.array(), color=f"C{i % 10}", lw=1.2, label=name)
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel("learning rate")
        legend_outside(axes[0][1])
    fig.suptitle(title)
    fig.tight_layout()
    return fig
