"""Where a sweep's runs train: local worker processes (the default), Slurm, or Ray.

Chosen by the sweep TOML's ``executor`` (with its ``[slurm]`` or ``[ray]`` table) or by
``scalinglab sweep --executor local|slurm|ray``. Every executor calls
:func:`~scalinglab.training.executors.base.execute_run` for each run; the run store decides
what is left to do, so a sweep is resumable whatever ran it. Slurm needs the ``slurm`` extra
(submitit), Ray the ``ray`` extra; both are imported only when used.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from scalinglab.errors import SpecError
from scalinglab.training.executors.base import Executor, OnOutcome, RunOutcome, execute_run
from scalinglab.training.executors.local import LocalExecutor
from scalinglab.training.executors.ray import RayExecutor
from scalinglab.training.executors.slurm import SlurmExecutor, SlurmSettings

if TYPE_CHECKING:
    from scalinglab.training.sweep import SweepSpec

#: the executors by name
EXECUTORS: tuple[str, ...] = ("local", "slurm", "ray")


def make_executor(
    spec: SweepSpec,
    *,
    out_dir: str | Path,
    name: str | None = None,
    workers: int | None = None,
    ray_address: str | None = None,
) -> Executor:
    """The executor a sweep runs on.

    Parameters
    ----------
    spec
        The sweep (its ``executor``, ``workers``, ``threads`` and ``[slurm]``/``[ray]`` tables).
    out_dir
        The sweep's checkpoint folder (Slurm keeps its job files in ``<out_dir>/slurm``).
    name
        ``local``, ``slurm`` or ``ray``, overriding the spec's (``--executor``).
    workers
        Worker processes of the local executor, overriding the spec's (``--workers``).
    ray_address
        A running Ray cluster, overriding ``[ray] address`` (implies ``ray``).

    Raises
    ------
    SpecError
        An unknown executor, or options that do not belong to it.
    """
    chosen = name or ("ray" if ray_address else spec.executor)
    if chosen not in EXECUTORS:
        raise SpecError(f"unknown executor {chosen!r}; choose one of {', '.join(EXECUTORS)}")
    if ray_address is not None and chosen != "ray":
        raise SpecError(f"--ray-address is for the ray executor, not {chosen}")
    if chosen == "slurm":
        return SlurmExecutor(
            spec.slurm, folder=Path(out_dir) / "slurm", threads=spec.threads, job_name=spec.name
        )
    if chosen == "ray":
        settings = spec.ray
        if ray_address is not None:
            settings = dataclasses.replace(settings, address=ray_address)
        return RayExecutor(settings, threads=spec.threads)
    return LocalExecutor(workers or spec.workers)


__all__ = [
    "EXECUTORS",
    "Executor",
    "LocalExecutor",
    "OnOutcome",
    "RayExecutor",
    "RaySettings",
    "RunOutcome",
    "SlurmExecutor",
    "SlurmSettings",
    "execute_run",
    "make_executor",
]
