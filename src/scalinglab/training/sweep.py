"""Sweeps: model sizes × budgets × schedules × optimizers × seeds, run by an executor.

A sweep spec is a TOML file (or a preset from :mod:`scalinglab.training.presets`)::

    name = "my-sweep"
    executor = "local"       # where runs train: local (default), slurm or ray
    workers = 2              # parallel worker processes of the local executor
    threads = 1              # torch threads per run
    seeds = [0, 1]
    optimizers = ["adamw", "mars-adamw"]
    tokens = [262144, 1048576]   # token budgets; or
    # flops = [1e12, 4e12]       # isoFLOP budgets: tokens = flops / (6 N), N total params

    [base]                   # TrainConfig settings shared by every run
    context = 64
    batch_size = 16

    [models]                 # named sizes: settings layered over [base]
    xs = { d_model = 32, layers = 2, heads = 2 }
    s = { d_model = 48, layers = 3, heads = 3 }

    [schedules]              # named schedule specs (total= is filled in per run)
    cosine = "cosine:peak=3e-3,warmup=0.05,final=3e-4"

    [optimizer_kwargs]       # optional, per optimizer
    mars-adamw = { gamma = 0.025 }

    [slurm]                  # optional: the slurm executor's settings (and [ray], the ray
    partition = "gpu"        # executor's); see scalinglab.training.executors

Each run is named ``<sweep>-<model>-<budget>-<schedule>-<optimizer>-s<seed>`` and belongs to
the family ``<sweep>-<schedule>-<optimizer>`` (runs that differ only in scale). Everything is
validated, and every corpus prepared, before the first run starts. The run store is the
record of what is done: runs marked finished there are skipped, others start or resume from
their checkpoint in ``<out_dir>/<run_id>``, whichever executor runs them.
"""

from __future__ import annotations

import math
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scalinglab.data.loaders import store_url
from scalinglab.errors import SpecError
from scalinglab.schedules import MAX_SCHEDULE_STEPS
from scalinglab.training.config import TrainConfig, read_toml
from scalinglab.training.executors import EXECUTORS, Executor, make_executor
from scalinglab.training.executors.base import RunOutcome, finished_runs
from scalinglab.training.executors.local import STOP_GRACE_S
from scalinglab.training.executors.ray import RaySettings
from scalinglab.training.executors.slurm import SlurmSettings
from scalinglab.training.presets import PRESETS
from scalinglab.user_input import check_name, check_seed

__all__ = [
    "STOP_GRACE_S",
    "RunOutcome",
    "SweepResult",
    "SweepSpec",
    "load_sweep",
    "run_sweep",
    "summarize",
]

_SPEC_KEYS = {
    "name", "workers", "threads", "seeds", "optimizers", "tokens", "flops", "base", "models",
    "schedules", "optimizer_kwargs", "executor", "slurm", "ray",
}  # fmt: skip


@dataclass(frozen=True)
class SweepSpec:
    """A parsed sweep: the grid and how to run it.

    Attributes
    ----------
    name
        Prefix of run ids and families.
    models
        Model name -> TrainConfig settings for that size.
    budget_kind
        ``"tokens"`` or ``"flops"``.
    budgets
        Token or FLOP budgets.
    schedules
        Schedule name -> spec.
    optimizers
        Optimizer names.
    seeds
        Seeds.
    base
        Settings shared by every run.
    optimizer_kwargs
        Optimizer name -> its extra keyword arguments.
    workers, threads
        Parallel worker processes (of the local executor), torch threads per run.
    executor
        Where the runs train: ``local``, ``slurm`` or ``ray``.
    slurm, ray
        Settings of the Slurm and Ray executors (their ``[slurm]`` and ``[ray]`` tables).
    """

    name: str
    models: Mapping[str, Mapping[str, Any]]
    budget_kind: str
    budgets: tuple[float, ...]
    schedules: Mapping[str, str]
    optimizers: tuple[str, ...] = ("adamw",)
    seeds: tuple[int, ...] = (0,)
    base: Mapping[str, Any] = field(default_factory=dict)
    optimizer_kwargs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    workers: int = 1
    threads: int | None = 1
    executor: str = "local"
    slurm: SlurmSettings = field(default_factory=SlurmSettings)
    ray: RaySettings = field(default_factory=RaySettings)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "sweep") -> SweepSpec:
        """Parse the TOML structure described in the module docstring.

        Raises
        ------
        SpecError
            Unknown keys, missing sections, or wrong types, naming the file and the key.
        """
        unknown = sorted(set(data) - _SPEC_KEYS)
        if unknown:
            raise SpecError(
                f"{source}: unknown key(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(_SPEC_KEYS))}"
            )
        has_tokens, has_flops = "tokens" in data, "flops" in data
        if has_tokens == has_flops:
            raise SpecError(f"{source}: give exactly one of 'tokens' or 'flops' budgets")
        kind = "tokens" if has_tokens else "flops"
        budgets = _number_list(data[kind], kind, source)
        models = data.get("models")
        if not isinstance(models, Mapping) or not models:
            raise SpecError(f"{source}: [models] must name at least one model size")
        for model_name, settings in models.items():
            if not isinstance(settings, Mapping):
                raise SpecError(f"{source}: models.{model_name} must be a table of settings")
        schedules = data.get("schedules")
        if not isinstance(schedules, Mapping) or not schedules:
            raise SpecError(f"{source}: [schedules] must name at least one schedule spec")
        for sched_name, spec in schedules.items():
            if not isinstance(spec, str):
                raise SpecError(f"{source}: schedules.{sched_name} must be a spec string")
        optimizers = data.get("optimizers", ["adamw"])
        seeds = data.get("seeds", [0])
        if not isinstance(optimizers, list) or not all(isinstance(o, str) for o in optimizers):
            raise SpecError(f"{source}: optimizers must be a list of names")
        if not isinstance(seeds, list) or not seeds:
            raise SpecError(f"{source}: seeds must be a non-empty list of integers")
        for seed in seeds:
            check_seed(seed, f"{source}: seeds")
        # these names make up run ids, which name checkpoint folders
        name = check_name(str(data.get("name", Path(source).stem)), f"{source}: name")
        for key, entries in (("models", models), ("schedules", schedules)):
            for entry in entries:
                check_name(entry, f"{source}: {key}.{entry}")
        base = data.get("base", {})
        extra = data.get("optimizer_kwargs", {})
        if not isinstance(base, Mapping) or not isinstance(extra, Mapping):
            raise SpecError(f"{source}: [base] and [optimizer_kwargs] must be tables")
        workers, threads = data.get("workers", 1), data.get("threads", 1)
        if not isinstance(workers, int) or workers < 1:
            raise SpecError(f"{source}: workers must be a positive integer, got {workers!r}")
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise SpecError(f"{source}: threads must be a positive integer, got {threads!r}")
        executor = data.get("executor", "local")
        if executor not in EXECUTORS:
            raise SpecError(
                f"{source}: executor must be one of {', '.join(EXECUTORS)}, got {executor!r}"
            )
        for table in ("slurm", "ray"):
            if not isinstance(data.get(table, {}), Mapping):
                raise SpecError(f"{source}: [{table}] must be a table")
        return cls(
            name=name,
            models=dict(models),
            budget_kind=kind,
            budgets=tuple(budgets),
            schedules=dict(schedules),
            optimizers=tuple(optimizers),
            seeds=tuple(seeds),
            base=dict(base),
            optimizer_kwargs={k: dict(v) for k, v in extra.items()},
            workers=workers,
            threads=threads,
            executor=executor,
            slurm=SlurmSettings.from_dict(data.get("slurm", {}), source=source),
            ray=RaySettings.from_dict(data.get("ray", {}), source=source),
        )

    def configs(self, *, out_dir: str | Path, store: str | Path) -> list[TrainConfig]:
        """Every run of the sweep as a validated :class:`TrainConfig`.

        Raises
        ------
        SpecError
            A bad setting in any run (naming the run), or an isoFLOP budget that leaves a
            model less than one batch of tokens.
        """
        configs = []
        for model_name, model_settings in self.models.items():
            for budget in self.budgets:
                for sched_name, schedule in self.schedules.items():
                    for optimizer in self.optimizers:
                        for seed in self.seeds:
                            run_id = (
                                f"{self.name}-{model_name}-{self._budget_label(budget)}-"
                                f"{sched_name}-{optimizer}-s{seed}"
                            )
                            settings = {
                                **self.base,
                                **model_settings,
                                "schedule": schedule,
                                "optimizer": optimizer,
                                "optimizer_kwargs": self.optimizer_kwargs.get(optimizer, {}),
                                "seed": seed,
                                "run_id": run_id,
                                "family": f"{self.name}-{sched_name}-{optimizer}",
                                "store": str(store),
                                "out_dir": str(Path(out_dir) / run_id),
                                "threads": self.threads,
                            }
                            configs.append(self._with_budget(settings, budget, run_id))
        return configs

    def _budget_label(self, budget: float) -> str:
        if self.budget_kind == "flops":
            return f"C{budget:.3g}".replace("+", "")
        return f"D{_si(budget)}"

    def _with_budget(self, settings: dict[str, Any], budget: float, run_id: str) -> TrainConfig:
        if self.budget_kind == "tokens":
            return TrainConfig.from_dict({**settings, "tokens": int(budget)}, source=run_id)
        # N decides the tokens; any long placeholder budget validates the rest of the config
        probe = TrainConfig.from_dict({**settings, "steps": MAX_SCHEDULE_STEPS}, source=run_id)
        from scalinglab.training.trainer import param_count, tokenizer_for

        params = param_count(probe, tokenizer_for(probe).vocab_size).total
        tokens = int(budget / (6.0 * params))
        if tokens < probe.tokens_per_step:
            raise SpecError(
                f"{run_id}: FLOP budget {budget:.3g} gives {tokens} tokens for {params} "
                f"parameters, less than one batch ({probe.tokens_per_step} tokens)"
            )
        return probe.replace(steps=None, tokens=tokens)


def _si(value: float) -> str:
    """Compact binary-ish label for token counts: 262144 -> 256K, 1048576 -> 1M."""
    for unit, size in (("G", 2**30), ("M", 2**20), ("K", 2**10)):
        if value >= size and value % size == 0:
            return f"{int(value // size)}{unit}"
    return f"{value:.3g}".replace("+", "")


def _number_list(value: Any, key: str, source: str) -> list[float]:
    if not isinstance(value, list) or not value:
        raise SpecError(f"{source}: {key} must be a non-empty list of numbers")
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int | float) or not item > 0:
            raise SpecError(f"{source}: {key} must hold positive numbers, got {item!r}")
        if not math.isfinite(item):
            raise SpecError(f"{source}: {key} must be finite, got {item!r}")
    return [float(v) for v in value]


def load_sweep(source: str | Path) -> SweepSpec:
    """A sweep spec from a preset name or a TOML file.

    Raises
    ------
    SpecError
        Neither a preset nor a readable TOML sweep spec.
    """
    if str(source) in PRESETS:
        return SweepSpec.from_dict(tomllib.loads(PRESETS[str(source)]), source=str(source))
    path = Path(source)
    if not path.exists():
        raise SpecError(
            f"sweep spec '{source}' is neither a file nor a preset ({', '.join(sorted(PRESETS))})"
        )
    return SweepSpec.from_dict(read_toml(path, "sweep spec"), source=str(path))


@dataclass
class SweepResult:
    """What :func:`run_sweep` did."""

    name: str
    store: str
    runs: list[RunOutcome]
    seconds: float

    @property
    def failed(self) -> list[RunOutcome]:
        """Runs that raised."""
        return [r for r in self.runs if r.status == "failed"]

    @property
    def unfinished(self) -> list[RunOutcome]:
        """Runs that failed or were interrupted (running the sweep again resumes them)."""
        return [r for r in self.runs if r.status in ("failed", "interrupted")]


def _estimated_cost(config: TrainConfig) -> float:
    """Relative cost of a run, to start the longest first (the sweep then ends sooner)."""
    from scalinglab.training.trainer import param_count, tokenizer_for

    params = param_count(config, tokenizer_for(config).vocab_size).total
    return float(params) * config.total_steps * config.tokens_per_step


def run_sweep(
    spec: SweepSpec,
    *,
    store: str | Path,
    out_dir: str | Path,
    workers: int | None = None,
    executor: str | Executor | None = None,
    ray_address: str | None = None,
    on_run: Callable[[RunOutcome, int, int], None] | None = None,
) -> SweepResult:
    """Run every run of ``spec`` that the store does not mark finished.

    Parameters
    ----------
    spec
        The sweep.
    store
        The run store (a SQLite file, created if absent, or a ``postgresql://`` URL); every
        observation goes there.
    out_dir
        Folder holding one checkpoint folder per run.
    workers
        Parallel worker processes of the local executor (default: the spec's); each run uses
        ``spec.threads`` threads.
    executor
        ``local``, ``slurm``, ``ray`` or an :class:`~scalinglab.training.executors.Executor`
        (default: the spec's ``executor``).
    ray_address
        A running Ray cluster (implies the ray executor).
    on_run
        Called in this process as each run ends: ``(outcome, done, total)``.

    Returns
    -------
    SweepResult
        Outcome of every run (skipped ones included).

    Raises
    ------
    SpecError
        Any bad setting or corpus, before the first run starts.
    """
    from scalinglab.training.trainer import prepare_data

    if workers is not None and (isinstance(workers, bool) or workers < 1):
        raise SpecError(f"workers must be at least 1, got {workers!r}")
    tick = time.perf_counter()
    runner = (
        executor
        if isinstance(executor, Executor)
        else make_executor(
            spec, out_dir=out_dir, name=executor, workers=workers, ray_address=ray_address
        )
    )
    if runner.name != "local":
        # jobs and tasks may start in another folder, or on another host
        out_dir = Path(out_dir).absolute()
        store = store if store_url(store) is not None else Path(store).absolute()
    configs = spec.configs(out_dir=out_dir, store=store)
    data_keys = {
        (c.train_data, c.eval_data, c.tokenizer, c.val_fraction, c.context): c for c in configs
    }
    for config in data_keys.values():
        prepare_data(config)  # checks every corpus now, and fills the token cache for the workers
    finished = finished_runs(str(store))
    outcomes: list[RunOutcome] = []
    total = len(configs)

    def collect(outcome: RunOutcome) -> None:
        outcomes.append(outcome)
        if on_run is not None:
            on_run(outcome, len(outcomes), total)

    for config in configs:
        if config.name in finished:
            collect(RunOutcome(config.name, "skipped", final_loss=finished[config.name]))
    todo = sorted((c for c in configs if c.name not in finished), key=_estimated_cost, reverse=True)
    runner.run(todo, collect)
    order = {c.name: i for i, c in enumerate(configs)}
    outcomes.sort(key=lambda o: order[o.run_id])
    return SweepResult(spec.name, str(store), outcomes, time.perf_counter() - tick)


def summarize(outcomes: Sequence[RunOutcome]) -> list[dict[str, Any]]:
    """One flat record per run (for tables and JSON)."""
    rows = []
    for o in outcomes:
        row: dict[str, Any] = {"run_id": o.run_id, "status": o.status, "params": o.params}
        row["tokens"] = o.tokens
        row.update({f"loss[{k}]": v for k, v in o.final_loss.items()})
        row["seconds"] = round(o.seconds, 1)
        row["resumed_from"] = o.resumed_from
        if o.error:
            row["error"] = o.error
        rows.append(row)
    return rows
