"""Build an optimizer from a name and options, as configuration files and the trainer do."""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.optimizer import ParamsT

from scalinglab.errors import SpecError
from scalinglab.optim.mars import MARSAdamW, MARSLion, MARSShampoo

__all__ = ["OPTIMIZERS", "make_optimizer"]

#: optimizer name -> class; every name :func:`make_optimizer` accepts
OPTIMIZERS: dict[str, type[Optimizer]] = {
    "adamw": torch.optim.AdamW,
    "mars-adamw": MARSAdamW,
    "mars-lion": MARSLion,
    "mars-shampoo": MARSShampoo,
}


def make_optimizer(name: str, params: ParamsT, **options: Any) -> Optimizer:
    """Create the optimizer called ``name`` over ``params``.

    Parameters
    ----------
    name
        One of ``"adamw"`` (``torch.optim.AdamW``), ``"mars-adamw"``, ``"mars-lion"``,
        ``"mars-shampoo"``; case-insensitive.
    params
        Parameters or parameter groups.
    **options
        Constructor keyword arguments of that optimizer (``lr``, ``betas``, ``weight_decay``,
        ``gamma``, ``mode``...).

    Returns
    -------
    torch.optim.Optimizer
        The optimizer.

    Raises
    ------
    SpecError
        Unknown name, an option the optimizer does not take, or an out-of-range value.
    """
    key = name.strip().lower()
    if key not in OPTIMIZERS:
        raise SpecError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    cls = OPTIMIZERS[key]
    accepted = [n for n in inspect.signature(cls).parameters if n != "params"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise SpecError(
            f"optimizer {key!r} takes no option {', '.join(map(repr, unknown))}; "
            f"it takes {', '.join(accepted)}"
        )
    try:
        return cls(params, **options)
    except SpecError:
        raise
    except ValueError as exc:  # torch's own range checks (AdamW)
        raise SpecError(f"optimizer {key!r}: {exc}") from exc
