"""Sweeps on Ray (the ``ray`` extra): each run is one Ray task.

A task asks for ``cpus_per_run`` CPUs and ``gpus_per_run`` GPUs; a fraction of a GPU
(``0.25``) packs several small runs onto one GPU. Ray is started on this machine
(``ray.init()``) unless an ``address`` of a running cluster is given (``"auto"``, or
``ray://head:10001``); a Ray that this process already started is used as it is. A task
whose worker dies (killed, node lost) is retried up to ``max_retries`` times, and resumes
from its checkpoint. Ctrl-C cancels the tasks: the running ones are interrupted as by
Ctrl-C (the store marks them ``interrupted``), the queued ones never start.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scalinglab.errors import SpecError
from scalinglab.training.config import TrainConfig
from scalinglab.training.executors.base import (
    Executor,
    OnOutcome,
    RunOutcome,
    SettingsTable,
    execute_run,
    job_label,
    mark_interrupted,
    present,
    settle,
)

_KEYS = {"address", "cpus_per_run", "gpus_per_run", "max_retries"}
#: seconds cancelled tasks get to record that they were interrupted
CANCEL_GRACE_S = 30.0
#: the environment variables a Ray worker needs from the driver
_FORWARDED_ENV = ("SCALINGLAB_CACHE", "SCALINGLAB_STORE")


@dataclass(frozen=True)
class RaySettings:
    """The ``[ray]`` table of a sweep TOML.

    Attributes
    ----------
    address
        A running cluster (``"auto"``, ``"ray://head:10001"``); ``None`` starts Ray here.
    cpus_per_run
        CPUs of one task (``None``: the sweep's ``threads``).
    gpus_per_run
        GPUs of one task; fractions pack several runs onto one GPU.
    max_retries
        Retries of a task whose worker died.
    """

    address: str | None = None
    cpus_per_run: float | None = None
    gpus_per_run: float = 0.0
    max_retries: int = 2

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "sweep") -> RaySettings:
        """Parse and check a ``[ray]`` table.

        Raises
        ------
        SpecError
            An unknown key or a value of the wrong kind, naming the key.
        """
        table = SettingsTable(data, _KEYS, f"{source}: ray")
        values = present(
            {
                "address": table.text("address"),
                "cpus_per_run": table.number("cpus_per_run"),
                "gpus_per_run": table.number("gpus_per_run", zero=True),
                "max_retries": table.integer("max_retries", 0),
            }
        )
        return cls(**values)


def _ray_task(config: TrainConfig) -> RunOutcome:
    import ray

    context = ray.get_runtime_context()
    return execute_run(config, job=job_label("ray", f"node={context.get_node_id()[:12]}"))


class RayExecutor(Executor):
    """Each run a Ray task.

    Parameters
    ----------
    settings
        The ``[ray]`` table (``address`` may come from ``--ray-address``).
    threads
        Torch threads of one run (the default ``cpus_per_run``).
    """

    name = "ray"

    def __init__(self, settings: RaySettings, *, threads: int | None = 1) -> None:
        self.settings = settings
        self.threads = threads or 1

    @property
    def remote(self) -> bool:
        return self.settings.address is not None

    def run(self, configs: Sequence[TrainConfig], on_outcome: OnOutcome) -> None:
        """Run every config as a task and wait for them; see :meth:`Executor.run`."""
        if not configs:
            return
        try:
            import ray
        except ImportError:
            raise SpecError("the ray executor needs Ray: pip install 'scalinglab[ray]'") from None
        started = not ray.is_initialized()
        if started:
            env = {k: os.environ[k] for k in _FORWARDED_ENV if k in os.environ}
            main = threading.current_thread() is threading.main_thread()
            on_sigterm = signal.getsignal(signal.SIGTERM) if main else None
            ray.init(
                address=self.settings.address,
                runtime_env={"env_vars": env} if env else None,
                include_dashboard=False,
                log_to_driver=False,
            )
            if main:
                # Ray's own handler kills the cluster at once: keep SIGTERM acting as Ctrl-C,
                # so that the runs are stopped and marked first
                signal.signal(signal.SIGTERM, on_sigterm)
        s = self.settings
        task = ray.remote(_ray_task).options(
            num_cpus=s.cpus_per_run or self.threads,
            num_gpus=s.gpus_per_run,
            max_retries=s.max_retries,
            retry_exceptions=False,
        )
        pending = {task.remote(c): c for c in configs}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                for ref in done:
                    config = pending.pop(ref)
                    for outcome in self._outcomes(ray, ref, config):
                        on_outcome(outcome)
        except BaseException:
            # not force: a running task gets a KeyboardInterrupt, so its run is marked
            # interrupted by the trainer; a queued one is dropped
            try:
                for ref in pending:
                    ray.cancel(ref, force=False)
                ray.wait(list(pending), num_returns=len(pending), timeout=CANCEL_GRACE_S)
            finally:
                mark_interrupted(pending.values())
            raise
        finally:
            if started:
                ray.shutdown()

    @staticmethod
    def _outcomes(ray: Any, ref: Any, config: TrainConfig) -> list[RunOutcome]:
        try:
            return [ray.get(ref)]
        except ray.exceptions.RayError as err:  # the worker died more often than retried
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            return settle([config], f"Ray task failed: {reason}")
