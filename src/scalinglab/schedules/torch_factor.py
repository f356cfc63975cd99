"""Schedules as torch LR schedulers, for the trainer. torch is imported only when needed."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from scalinglab.schedules.base import Schedule

if TYPE_CHECKING:
    import torch


def torch_lambda(schedule: Schedule) -> Callable[[int], float]:
    """Multiplier ``lr(step) / peak`` for ``torch.optim.lr_scheduler.LambdaLR``.

    The optimizer's base learning rate must be the schedule's ``peak`` (see
    :func:`torch_scheduler`). Steps past the end keep the last value.
    """
    factors = schedule.array() / schedule.peak
    last = factors.size - 1

    def factor(step: int) -> float:
        return float(factors[min(max(int(step), 0), last)])

    return factor


def torch_scheduler(
    optimizer: torch.optim.Optimizer, schedule: Schedule
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` that drives ``optimizer`` along ``schedule``.

    Sets every param group's learning rate to the schedule's peak first, so that the
    optimizer's lr at update ``s`` (after ``s`` calls of ``scheduler.step()``) is
    ``schedule.lr(s)``.
    """
    from torch.optim.lr_scheduler import LambdaLR

    for group in optimizer.param_groups:
        group["lr"] = schedule.peak
        group.pop("initial_lr", None)
    return LambdaLR(optimizer, torch_lambda(schedule))
