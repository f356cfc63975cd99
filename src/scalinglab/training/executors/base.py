"""What every executor shares: the interface, the outcome of a run, and the function that
trains one run wherever an executor puts it.

Resumability is the run store's job, whatever the executor: a run the store marks finished
is never started, and any other run resumes from the checkpoint in its ``out_dir``. An
executor only decides *where* :func:`execute_run` is called, and stops its runs as Ctrl-C
does when the sweep is interrupted (the store then marks them ``interrupted``).
"""

from __future__ import annotations

import os
import socket
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from scalinglab.errors import SpecError
from scalinglab.training.config import TrainConfig


@dataclass
class RunOutcome:
    """One run of a sweep: ``finished``, ``skipped`` (finished before), ``failed`` (it raised)
    or ``interrupted`` (stopped, or its process died: it resumes from its checkpoint)."""

    run_id: str
    status: str
    params: int | None = None
    tokens: int | None = None
    final_loss: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    resumed_from: int | None = None
    error: str | None = None


#: called in the sweep's process as each run ends
OnOutcome = Callable[[RunOutcome], None]


class Executor(ABC):
    """Runs a sweep's training runs somewhere: local processes, a Slurm job array, Ray tasks.

    Subclasses implement :meth:`run`. Everything before it (validating the spec, preparing the
    corpora, skipping finished runs) is :func:`~scalinglab.training.sweep.run_sweep`'s.
    """

    #: the name ``--executor`` and the sweep TOML's ``executor`` use
    name: ClassVar[str]

    @property
    def remote(self) -> bool:
        """Whether runs may land on other hosts (a SQLite store is then unsafe)."""
        return False

    @abstractmethod
    def run(self, configs: Sequence[TrainConfig], on_outcome: OnOutcome) -> None:
        """Train every run of ``configs`` and report each outcome as it ends.

        Parameters
        ----------
        configs
            Runs the store does not mark finished, most expensive first.
        on_outcome
            Called in this process once per run.

        Raises
        ------
        KeyboardInterrupt
            When interrupted (Ctrl-C, SIGTERM), after the runs in progress were stopped and
            marked ``interrupted``, and no further run was started.
        """


class SettingsTable:
    """One TOML table of executor settings (``[slurm]``, ``[ray]``), read key by key.

    Every mistake is a :class:`SpecError` naming the file, the table and the key.
    """

    def __init__(self, data: Mapping[str, Any], known: Iterable[str], where: str) -> None:
        self.data, self.where = data, where
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise SpecError(
                f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )

    def _fail(self, key: str, what: str) -> SpecError:
        return SpecError(f"{self.where}.{key} must be {what}, got {self.data[key]!r}")

    def text(self, key: str) -> str | None:
        """A non-empty string, or ``None`` when absent."""
        value = self.data.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            raise self._fail(key, "a non-empty string")
        return value

    def integer(self, key: str, least: int) -> int | None:
        """An integer ``>= least``, or ``None`` when absent."""
        value = self.data.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < least
        ):
            raise self._fail(key, f"an integer >= {least}")
        return value

    def number(self, key: str, *, zero: bool = False) -> float | None:
        """A positive number (or non-negative with ``zero``), or ``None`` when absent."""
        value = self.data.get(key)
        if value is None:
            return None
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok or value < 0 or (value == 0 and not zero):
            raise self._fail(key, "a non-negative number" if zero else "a positive number")
        return float(value)


def present(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` without the settings a table left out (``None``): those keep defaults."""
    return {k: v for k, v in values.items() if v is not None}


def job_label(kind: str, job_id: str | None = None) -> str:
    """Where this process runs, for the store's ``job`` column: ``slurm 12_3 host=n7 pid=9``."""
    ident = f" {job_id}" if job_id else ""
    return f"{kind}{ident} host={socket.gethostname()} pid={os.getpid()}"


def execute_run(config: TrainConfig, job: str | None = None) -> RunOutcome:
    """Train (or resume) one run in this process; an exception becomes a ``failed`` outcome.

    Parameters
    ----------
    config
        The run.
    job
        Where it runs (see :func:`job_label`), recorded in the store before training starts.
    """
    from scalinglab.data import RunStore
    from scalinglab.training.lock import RunLockedError
    from scalinglab.training.trainer import train

    tick = time.perf_counter()
    try:
        if job is not None and config.store is not None:
            RunStore(config.store).add_run(
                config.name, config.to_dict(), family=config.family, status="running", job=job
            )
        result = train(config)
    except RunLockedError as err:  # another process trains it: its status is not ours to set
        return RunOutcome(config.name, "busy", error=str(err))
    except Exception as err:  # one failed run must not stop the others
        if config.store is not None:
            RunStore(config.store).set_status(config.name, "failed")
        return RunOutcome(config.name, "failed", error=f"{type(err).__name__}: {err}")
    return RunOutcome(
        config.name,
        "finished",
        params=result.params,
        tokens=result.tokens,
        final_loss=result.final_loss,
        seconds=time.perf_counter() - tick,
        resumed_from=result.resumed_from,
    )


def finished_runs(store: str | None) -> dict[str, dict[str, float]]:
    """Runs the store marks finished, with their last loss on each dataset."""
    from scalinglab.data import RunStore
    from scalinglab.data.loaders import store_url

    if store is None or (store_url(store) is None and not os.path.exists(store)):
        return {}
    runs_store = RunStore(store)
    runs = runs_store.runs()
    done = runs.loc[runs["status"] == "finished", "run_id"].astype(str).tolist()
    if not done:
        return {}
    obs = runs_store.observations(run_ids=done)
    # observations come ordered by run, dataset, step: the last row of each pair is the final
    last = obs.groupby(["run_id", "dataset"], sort=False).tail(1)
    finals: dict[str, dict[str, float]] = {run: {} for run in done}
    for run, dataset, loss in last[["run_id", "dataset", "loss"]].itertuples(index=False):
        finals[str(run)][str(dataset)] = float(loss)
    return finals


def settle(configs: Iterable[TrainConfig], error: str) -> list[RunOutcome]:
    """Outcomes of runs whose process ended without reporting (killed, cancelled, lost).

    The store decides: a run it marks finished did finish (only its report was lost), one it
    marks failed failed; any other is marked ``interrupted`` (running the sweep again resumes
    it from its checkpoint), and its outcome carries ``error``, why it stopped.
    """
    from scalinglab.data import RunStore

    configs = list(configs)
    finals: dict[str, dict[str, float]] = {}
    statuses: dict[str, str] = {}
    for store in {c.store for c in configs if c.store is not None}:
        finals.update(finished_runs(store))
        runs = RunStore(store).runs()
        statuses.update(zip(runs["run_id"].astype(str), runs["status"].astype(str), strict=True))
    outcomes = []
    for config in configs:
        if config.name in finals:
            outcomes.append(RunOutcome(config.name, "finished", final_loss=finals[config.name]))
        elif statuses.get(config.name) == "failed":
            outcomes.append(RunOutcome(config.name, "failed", error=error))
        else:
            mark_interrupted([config])
            outcomes.append(RunOutcome(config.name, "interrupted", error=error))
    return outcomes


def mark_interrupted(configs: Iterable[TrainConfig]) -> None:
    """Mark ``interrupted`` every run of ``configs`` that the store still marks ``running``.

    For runs whose process was killed or cancelled before it could say so itself; a run that
    never started (absent from the store) is left alone.
    """
    from scalinglab.data import RunStore

    by_store: dict[str, list[str]] = {}
    for config in configs:
        if config.store is not None:
            by_store.setdefault(config.store, []).append(config.name)
    for store, run_ids in by_store.items():
        RunStore(store).replace_status(run_ids, "running", "interrupted")
