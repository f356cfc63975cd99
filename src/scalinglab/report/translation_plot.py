"""Plot of a translated compute law: forecasts of held-out runs against what they measured."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from scalinglab.evaluation.transfer import Translation, select_losses
from scalinglab.report.document import legend_outside


def plot_translation(translation: Translation, observations: pd.DataFrame) -> Figure:
    """Observed loss of every ``y`` run against the translated and the direct law's forecast.

    Points on the diagonal are perfect forecasts; the runs used to translate are marked.
    """
    rows = select_losses(observations, translation.y)
    n, d = rows["params"].to_numpy(float), rows["tokens"].to_numpy(float)
    observed = rows["loss"].to_numpy(float)
    used = rows["run_id"].astype(str).isin(translation.y_runs).to_numpy()
    fig = Figure(figsize=(6.5, 5))
    ax = fig.subplots()
    for label, predicted, marker, color in (
        ("translated from x's law", translation.predict(n, d), "o", "C0"),
        ("fitted on the few y runs alone", translation.predict_direct(n, d), "x", "C1"),
    ):
        ax.scatter(
            observed[~used],
            predicted[~used],
            marker=marker,
            color=color,
            s=22,
            label=f"{label} (held-out runs)",
        )
    ax.scatter(
        observed[used],
        translation.predict(n[used], d[used]),
        marker="*",
        s=120,
        color="C3",
        edgecolor="k",
        label="runs used to translate",
        zorder=4,
    )
    lo, hi = float(observed.min()), float(observed.max())
    pad = 0.05 * (hi - lo)
    ax.plot(
        [lo - pad, hi + pad],
        [lo - pad, hi + pad],
        color="k",
        lw=1,
        ls=":",
        label="perfect forecast",
    )
    ax.set_xlabel(f"observed loss on {translation.y.dataset} (nats/token)")
    ax.set_ylabel("forecast loss (nats/token)")
    ax.set_title(f"Translated law: {translation.x.dataset} → {translation.y.dataset}")
    ax.grid(alpha=0.3)
    legend_outside(ax)
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(lo - pad, max(hi + pad, float(np.nanmax(translation.predict(n, d)))))
    return fig
