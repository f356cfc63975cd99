"""Error metrics for forecasts of loss.

ARE (Choshen, Zhang & Andreas 2024) is the mean absolute relative error of predicted against
observed loss. About 4% is the precision needed to compare two pretraining choices; 20% is
still useful for planning.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from scalinglab.errors import InputError


def are(predicted_loss: ArrayLike, observed_loss: ArrayLike) -> float:
    """Mean absolute relative error, ``mean(|predicted − observed| / observed)``.

    Parameters
    ----------
    predicted_loss
        Forecast losses (any unit, the same as ``observed_loss``), shape ``(n,)``.
    observed_loss
        Measured losses, shape ``(n,)``, all > 0.

    Returns
    -------
    float
        The ARE as a fraction (0.04 is 4%).

    Raises
    ------
    InputError
        If the arrays differ in shape, are empty, or an observed loss is not positive.
    """
    pred = np.asarray(predicted_loss, dtype=float).reshape(-1)
    obs = np.asarray(observed_loss, dtype=float).reshape(-1)
    if pred.shape != obs.shape:
        raise InputError(
            f"ARE needs as many predictions as observations, got {pred.size} and {obs.size}"
        )
    if obs.size == 0:
        raise InputError("ARE of an empty set of observations is undefined")
    bad = np.flatnonzero(~(obs > 0))
    if bad.size:
        raise InputError(
            "ARE needs positive observed losses", row=int(bad[0]) + 1, value=float(obs[bad[0]])
        )
    return float(np.mean(np.abs(pred - obs) / obs))
