"""Sweeps on Slurm, through submitit (the ``slurm`` extra).

One job array per sweep (``map_array``): each array task trains one run, or a group of
``runs_per_job`` small runs (packed, to spare the scheduler thousands of tiny jobs; trained
``workers_per_job`` at a time inside the job). The array runs at most
``array_parallelism`` tasks at once, and a sweep larger than the site's maximum array size
(``max_array_size``; Slurm's ``MaxArraySize`` defaults to 1001) is split into several arrays.

Preemption and time limits follow submitit's checkpointing protocol: Slurm signals the job
(USR2) before stopping it; submitit calls :meth:`GroupRunner.checkpoint`, requeues the job and
exits, which interrupts the run in progress (the store marks it ``interrupted``). The
requeued job skips the runs the store marks finished and resumes the others from their
checkpoints. A job that dies without a word (killed, node lost) leaves its runs marked
``interrupted`` by the sweep, and running the sweep again resumes them.

``cluster = "local"`` runs the same jobs as local processes through submitit's local
executor (to try a spec on one machine; it is also how the tests exercise this code).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scalinglab.errors import SpecError
from scalinglab.training.config import TrainConfig
from scalinglab.training.executors.base import (
    Executor,
    OnOutcome,
    RunOutcome,
    SettingsTable,
    execute_run,
    finished_runs,
    job_label,
    mark_interrupted,
    present,
    settle,
)

_KEYS = {
    "partition", "account", "qos", "time", "gpus_per_task", "cpus_per_task", "mem_gb",
    "array_parallelism", "max_array_size", "runs_per_job", "workers_per_job", "folder",
    "setup", "additional", "max_timeouts", "cluster", "poll_s",
}  # fmt: skip
#: integer settings and their least value
_INTEGER_KEYS = (
    ("gpus_per_task", 0), ("cpus_per_task", 1), ("array_parallelism", 1), ("max_array_size", 1),
    ("runs_per_job", 1), ("workers_per_job", 1), ("max_timeouts", 0),
)  # fmt: skip


@dataclass(frozen=True)
class SlurmSettings:
    """The ``[slurm]`` table of a sweep TOML.

    Attributes
    ----------
    partition, account, qos
        Passed to sbatch as they are (``None``: the site's default).
    time_min
        Time limit of one job in minutes (TOML ``time``: minutes, or Slurm's
        ``[D-]HH:MM[:SS]``). A packed job must fit all its runs.
    gpus_per_task
        GPUs of one job (0: CPU only).
    cpus_per_task
        CPUs of one job (``None``: ``workers_per_job`` × the sweep's ``threads``).
    mem_gb
        Memory of one job (``None``: the site's default).
    array_parallelism
        Array tasks running at once (``%N`` of ``--array``), per array.
    max_array_size
        Most tasks in one array; larger sweeps are split into several arrays.
    runs_per_job
        Runs packed into one array task (1: one job per run).
    workers_per_job
        Runs of a packed job trained at the same time (worker processes inside the job).
    folder
        Where submitit keeps job scripts, pickles and logs (``None``: ``<out_dir>/slurm``).
    setup
        Shell lines run before the job starts (``module load``, activating an environment).
    additional
        Further sbatch options, e.g. ``{ constraint = "a100", mail-type = "END" }``.
    max_timeouts
        How many times a job that reached its time limit is requeued (preemptions are not
        counted).
    cluster
        ``"slurm"``, or ``"local"`` to run the jobs as local processes through submitit.
    poll_s
        Seconds between two looks at the jobs' states.
    """

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time_min: int = 60
    gpus_per_task: int = 0
    cpus_per_task: int | None = None
    mem_gb: float | None = None
    array_parallelism: int = 256
    max_array_size: int = 1000
    runs_per_job: int = 1
    workers_per_job: int = 1
    folder: str | None = None
    setup: tuple[str, ...] = ()
    additional: Mapping[str, Any] = field(default_factory=dict)
    max_timeouts: int = 3
    cluster: str = "slurm"
    poll_s: float = 5.0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "sweep") -> SlurmSettings:
        """Parse and check a ``[slurm]`` table.

        Raises
        ------
        SpecError
            An unknown key or a value of the wrong kind, naming the key.
        """
        where = f"{source}: slurm"
        table = SettingsTable(data, _KEYS, where)
        values = present(
            {key: table.text(key) for key in ("partition", "account", "qos", "folder")}
        )
        if "time" in data:
            values["time_min"] = slurm_minutes(data["time"], f"{where}.time")
        values |= present({key: table.integer(key, least) for key, least in _INTEGER_KEYS})
        values |= present({key: table.number(key) for key in ("mem_gb", "poll_s")})
        if "setup" in data:
            setup = data["setup"]
            if not isinstance(setup, list) or not all(isinstance(s, str) for s in setup):
                raise SpecError(f"{where}.setup must be a list of shell lines")
            values["setup"] = tuple(setup)
        if "additional" in data:
            if not isinstance(data["additional"], Mapping):
                raise SpecError(f"{where}.additional must be a table of sbatch options")
            values["additional"] = dict(data["additional"])
        if data.get("cluster", "slurm") not in ("slurm", "local"):
            raise SpecError(f"{where}.cluster must be 'slurm' or 'local', got {data['cluster']!r}")
        values |= present({"cluster": data.get("cluster")})
        return cls(**values)


_SLURM_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")


def slurm_minutes(value: Any, what: str = "time") -> int:
    """A Slurm time limit in whole minutes (rounded up).

    Accepts minutes as a number, or Slurm's forms ``MM``, ``MM:SS``, ``HH:MM:SS``,
    ``D-HH``, ``D-HH:MM`` and ``D-HH:MM:SS``.

    Raises
    ------
    SpecError
        Anything else, or a limit of zero.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        minutes = value
    elif isinstance(value, str) and (match := _SLURM_TIME.match(value.strip())):
        days, first, second, third = match.groups()
        if days is not None:  # D-HH[:MM[:SS]]
            seconds = int(days) * 86400 + int(first) * 3600
            seconds += int(second or 0) * 60 + int(third or 0)
        elif third is not None:  # HH:MM:SS
            seconds = int(first) * 3600 + int(second) * 60 + int(third)
        else:  # MM[:SS]
            seconds = int(first) * 60 + int(second or 0)
        minutes = seconds / 60
    else:
        raise SpecError(
            f"{what} must be minutes or a Slurm time such as '02:00:00' or '1-12:00', got {value!r}"
        )
    if not minutes > 0:
        raise SpecError(f"{what} must be longer than zero, got {value!r}")
    return int(-(-minutes // 1))


class RunGroup:
    """Some runs that one array task trains, ``workers`` at a time."""

    def __init__(self, configs: Sequence[TrainConfig], workers: int = 1) -> None:
        self.configs = list(configs)
        self.workers = workers

    def __call__(self) -> list[RunOutcome]:
        """Train the group's runs that the store does not mark finished."""
        import submitit

        env = submitit.JobEnvironment()
        kind = f"{'slurm' if env.cluster == 'slurm' else 'submitit-' + env.cluster} {env.job_id}"
        done: dict[str, dict[str, float]] = {}
        for store in {c.store for c in self.configs}:
            done.update(finished_runs(store))
        outcomes = [
            RunOutcome(c.name, "skipped", final_loss=done[c.name])
            for c in self.configs
            if c.name in done
        ]
        todo = [c for c in self.configs if c.name not in done]
        if self.workers > 1 and len(todo) > 1:
            from scalinglab.training.executors.local import LocalExecutor

            LocalExecutor(self.workers, job_kind=kind).run(todo, outcomes.append)
        else:
            outcomes += [execute_run(c, job=job_label(kind)) for c in todo]
        return outcomes


class GroupRunner:
    """The function of the job array: trains one :class:`RunGroup` per array task.

    It follows submitit's checkpointing protocol (a ``checkpoint`` method): when Slurm
    preempts a job or its time runs out, submitit calls :meth:`checkpoint` and requeues the
    same group. The trainer's own checkpoints are on disk already, and the requeued job
    resumes from them.
    """

    def __call__(self, group: RunGroup) -> list[RunOutcome]:
        return group()

    def checkpoint(self, group: RunGroup) -> Any:
        """What submitit requeues after a preemption or time-out: this same group."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, group)


def pack(configs: Sequence[TrainConfig], runs_per_job: int) -> list[list[TrainConfig]]:
    """Runs grouped ``runs_per_job`` to a job, with balanced costs.

    ``configs`` come most expensive first; dealing them out in snake order (0, 1, …, n−1,
    n−1, …, 0, …) gives every group a similar total, so that one time limit fits them all.
    """
    count = -(-len(configs) // runs_per_job)
    groups: list[list[TrainConfig]] = [[] for _ in range(count)]
    for index, config in enumerate(configs):
        lap, position = divmod(index, count)
        groups[position if lap % 2 == 0 else count - 1 - position].append(config)
    return groups


class SlurmExecutor(Executor):
    """Slurm job arrays through submitit.

    Parameters
    ----------
    settings
        The ``[slurm]`` table.
    folder
        Where submitit keeps its files when ``settings.folder`` is unset.
    threads
        Torch threads of one run (for the default ``cpus_per_task``).
    job_name
        Name of the jobs in the queue.
    """

    name = "slurm"

    def __init__(
        self,
        settings: SlurmSettings,
        *,
        folder: str | Path,
        threads: int | None = 1,
        job_name: str = "scalinglab",
    ) -> None:
        self.settings = settings
        self.folder = Path(settings.folder or folder)
        self.threads = threads or 1
        self.job_name = job_name

    @property
    def remote(self) -> bool:
        return self.settings.cluster == "slurm"

    def _executor(self) -> Any:
        try:
            import submitit
        except ImportError:
            raise SpecError(
                "the slurm executor needs submitit: pip install 'scalinglab[slurm]'"
            ) from None
        s = self.settings
        try:
            executor = submitit.AutoExecutor(
                folder=self.folder / "%j", cluster=s.cluster, slurm_max_num_timeout=s.max_timeouts
            )
        except RuntimeError as err:  # no srun on this machine
            raise SpecError(f"cannot submit to Slurm here: {err}") from None
        cpus = s.cpus_per_task or s.workers_per_job * self.threads
        executor.update_parameters(
            name=self.job_name,
            timeout_min=s.time_min,
            cpus_per_task=cpus,
            gpus_per_node=s.gpus_per_task,
            tasks_per_node=1,
            nodes=1,
            mem_gb=s.mem_gb,
            slurm_partition=s.partition,
            slurm_account=s.account,
            slurm_qos=s.qos,
            slurm_array_parallelism=s.array_parallelism,
            slurm_setup=list(s.setup) or None,
            slurm_additional_parameters=dict(s.additional) or None,
        )
        return executor

    def submit(self, configs: Sequence[TrainConfig]) -> list[tuple[Any, list[TrainConfig]]]:
        """Submit the runs as job arrays (split by ``max_array_size``); jobs and their runs."""
        executor = self._executor()
        runner_groups = pack(configs, self.settings.runs_per_job)
        size = self.settings.max_array_size
        submitted: list[tuple[Any, list[TrainConfig]]] = []
        for start in range(0, len(runner_groups), size):
            chunk = runner_groups[start : start + size]
            groups = [RunGroup(g, self.settings.workers_per_job) for g in chunk]
            jobs = executor.map_array(GroupRunner(), groups)
            submitted += list(zip(jobs, chunk, strict=True))
        return submitted

    def run(self, configs: Sequence[TrainConfig], on_outcome: OnOutcome) -> None:
        """Submit the runs and wait for them; see :meth:`Executor.run`."""
        if not configs:
            return
        pending = dict(enumerate(self.submit(configs)))
        try:
            while pending:
                for key in [k for k, (job, _) in pending.items() if job.done()]:
                    job, group = pending.pop(key)
                    for outcome in self._outcomes(job, group):
                        on_outcome(outcome)
                if pending:
                    time.sleep(self.settings.poll_s)
        except BaseException:
            try:
                for job, _ in pending.values():
                    job.cancel(check=False)
                time.sleep(min(self.settings.poll_s, 5.0))  # let the runs record it themselves
            finally:
                # a cancelled job may be killed before its run can say so: say it for them
                mark_interrupted(c for _, group in pending.values() for c in group)
            raise

    @staticmethod
    def _outcomes(job: Any, group: list[TrainConfig]) -> list[RunOutcome]:
        try:
            outcomes: list[RunOutcome] = job.result()
        except Exception as err:  # the job died: killed, cancelled, node lost, out of time
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            return settle(group, f"job {job.job_id} ended without finishing: {reason}")
        reported = {o.run_id for o in outcomes}
        return outcomes + settle(
            [c for c in group if c.name not in reported], f"job {job.job_id} did not report it"
        )
