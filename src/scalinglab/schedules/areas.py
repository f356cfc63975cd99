"""The learning-rate areas of Tissue et al. 2024 ("Scaling Laws with Learning Rate Annealing").

For per-step learning rates ``η_0, η_1, …``:

- forward area ``S1[i] = Σ_{j≤i} η_j``;
- annealing area ``S2[i] = Σ_{j≤i} m_j`` with momentum ``m_j = λ·m_{j−1} + (η_{j−1} − η_j)``,
  ``m_0 = 0``, ``λ`` the decay (0.999 in the paper).

Both are O(steps): a cumulative sum, and the momentum is a first-order linear recursion run by
``scipy.signal.lfilter`` in C.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from scalinglab.errors import SpecError
from scalinglab.schedules.base import FloatArray

#: the annealing momentum's decay λ used by Tissue et al.
DEFAULT_DECAY = 0.999


def lr_drops(lr: ArrayLike, *, anneal_start: int = 0) -> FloatArray:
    """Per-step decrease ``η_{j−1} − η_j`` (0 at step 0 and at steps ``j <= anneal_start``).

    Parameters
    ----------
    lr
        Learning rate of each step.
    anneal_start
        Decreases up to and including this step are ignored; pass the end of the warmup so
        that the warmup's increases do not count as negative annealing.
    """
    eta = np.asarray(lr, dtype=float).reshape(-1)
    drops = np.zeros_like(eta)
    drops[1:] = eta[:-1] - eta[1:]
    drops[: max(anneal_start, 0) + 1] = 0.0
    return drops


def lr_areas(
    lr: ArrayLike, decay: float = DEFAULT_DECAY, *, anneal_start: int = 0
) -> tuple[FloatArray, FloatArray]:
    """Forward area S1 and annealing area S2 after every step.

    Parameters
    ----------
    lr
        Learning rate of each step, shape ``(T,)``.
    decay
        Momentum decay λ in ``[0, 1)``: how long a decrease keeps adding to S2.
    anneal_start
        Step up to which decreases are ignored (see :func:`lr_drops`); 0 counts all of them.

    Returns
    -------
    tuple of numpy.ndarray
        ``S1`` and ``S2``, each of shape ``(T,)``, in learning-rate × steps.
    """
    if not 0 <= decay < 1:
        raise SpecError(f"annealing decay λ must be in [0, 1), got {decay}")
    # imported here: scipy.signal costs ~0.9 s, too much for every command that imports schedules
    from scipy.signal import lfilter

    eta = np.asarray(lr, dtype=float).reshape(-1)
    momentum = lfilter([1.0], [1.0, -decay], lr_drops(eta, anneal_start=anneal_start))
    return np.cumsum(eta), np.cumsum(momentum)


def warmup_end(lr: ArrayLike) -> int:
    """Index of the first step at the schedule's largest learning rate."""
    return int(np.argmax(np.asarray(lr, dtype=float)))
