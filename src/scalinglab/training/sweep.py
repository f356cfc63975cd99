"""Sweeps: model sizes × budgets × schedules × optimizers × seeds, run by worker processes.

A sweep spec is a TOML file (or a preset from :mod:`scalinglab.training.presets`)::

    name = "my-sweep"
    workers = 2              # parallel worker processes
    threads = 1              # torch threads per worker
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

Each run is named ``<sweep>-<model>-<budget>-<schedule>-<optimizer>-s<seed>`` and belongs to
the family ``<sweep>-<schedule>-<optimizer>`` (runs that differ only in scale). Everything is
validated, and every corpus prepared, before the first run starts. The run store is the
record of what is done: runs marked finished there are skipped, others start or resume from
their checkpoint in ``<out_dir>/<run_id>``.
"""

from __future__ import annotations

import _thread
import concurrent.futures as cf
import math
import multiprocessing
import os
import signal
import threading
import time
import tomllib
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scalinglab.errors import SpecError
from scalinglab.schedules import MAX_SCHEDULE_STEPS
from scalinglab.training.config import TrainConfig, read_toml
from scalinglab.training.presets import PRESETS
from scalinglab.user_input import check_name, check_seed

_SPEC_KEYS = {
    "name", "workers", "threads", "seeds", "optimizers", "tokens", "flops", "base", "models",
    "schedules", "optimizer_kwargs",
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
        Parallel worker processes, torch threads per worker.
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
        for key, table in (("models", models), ("schedules", schedules)):
            for entry in table:
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
class RunOutcome:
    """One run of a sweep: ``finished``, ``skipped`` (finished before) or ``failed``."""

    run_id: str
    status: str
    params: int | None = None
    tokens: int | None = None
    final_loss: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    resumed_from: int | None = None
    error: str | None = None


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


def _finished_runs(store_path: str | Path) -> dict[str, dict[str, float]]:
    """Runs the store marks finished, with their last loss on each dataset."""
    from scalinglab.data import RunStore

    if not Path(store_path).exists():
        return {}
    store = RunStore(store_path)
    runs = store.runs()
    done = runs.loc[runs["status"] == "finished", "run_id"].astype(str).tolist()
    if not done:
        return {}
    obs = store.observations(run_ids=done)
    # observations come ordered by run, dataset, step: the last row of each pair is the final
    last = obs.groupby(["run_id", "dataset"], sort=False).tail(1)
    finals: dict[str, dict[str, float]] = {run: {} for run in done}
    for run, dataset, loss in last[["run_id", "dataset", "loss"]].itertuples(index=False):
        finals[str(run)][str(dataset)] = float(loss)
    return finals


#: seconds a worker's interrupted run gets to record its status before the worker exits
STOP_GRACE_S = 30.0
#: whether this worker process is training a run now (set by _worker_run)
_busy = threading.Event()
#: the sweep's stop event and process id, in a worker process (set by its initializer)
_stop: Any = None
_parent_pid: int | None = None


def _stop_with_parent(parent_pid: int, stop: Any) -> None:
    """Pool initializer: stop this worker when the sweep stops or is gone.

    ``stop`` is set by a sweep that is interrupted (Ctrl-C, or SIGTERM through the CLI); a
    killed sweep sets nothing, and its disappearance has the same effect. A run in progress
    is interrupted as by Ctrl-C, so the store marks it interrupted (it resumes from its
    checkpoint next time); queued runs are not started; the worker then exits.
    """
    global _stop, _parent_pid
    _stop, _parent_pid = stop, parent_pid
    if os.environ.get("SCALINGLAB_DEBUG", "") in ("", "0"):
        # the workers share the terminal: no library warning is printed raw there
        warnings.simplefilter("ignore")

    def watch() -> None:
        while not stop.wait(1.0) and os.getppid() == parent_pid:
            pass
        if _busy.is_set():
            _thread.interrupt_main(signal.SIGINT)
            deadline = time.monotonic() + STOP_GRACE_S
            while _busy.is_set() and time.monotonic() < deadline:
                time.sleep(0.1)
        os._exit(1)

    # a sweep started in the background inherits SIGINT ignored, and then the interruption
    # above would do nothing
    signal.signal(signal.SIGINT, signal.default_int_handler)
    threading.Thread(target=watch, name="stop-with-parent", daemon=True).start()


def _worker_run(config: TrainConfig) -> RunOutcome:
    from scalinglab.training.lock import RunLockedError
    from scalinglab.training.trainer import train

    # a run queued before the sweep stopped, or whose sweep is gone (killed): not started
    if _stop is not None and (_stop.is_set() or os.getppid() != _parent_pid):
        return RunOutcome(config.name, "interrupted")
    tick = time.perf_counter()
    _busy.set()
    try:
        result = train(config)
    except RunLockedError as err:  # another process trains it: its status is not ours to set
        return RunOutcome(config.name, "busy", error=str(err))
    except Exception as err:  # one failed run must not stop the others
        from scalinglab.data import RunStore

        if config.store is not None:
            RunStore(config.store).set_status(config.name, "failed")
        return RunOutcome(config.name, "failed", error=f"{type(err).__name__}: {err}")
    finally:
        _busy.clear()
    return RunOutcome(
        config.name,
        "finished",
        params=result.params,
        tokens=result.tokens,
        final_loss=result.final_loss,
        seconds=time.perf_counter() - tick,
        resumed_from=result.resumed_from,
    )


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
    on_run: Callable[[RunOutcome, int, int], None] | None = None,
) -> SweepResult:
    """Run every run of ``spec`` that the store does not mark finished.

    Parameters
    ----------
    spec
        The sweep.
    store
        Run-store SQLite file (created if absent); every observation goes there.
    out_dir
        Folder holding one checkpoint folder per run.
    workers
        Parallel worker processes (default: the spec's); each uses ``spec.threads`` threads.
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
    configs = spec.configs(out_dir=out_dir, store=store)
    data_keys = {
        (c.train_data, c.eval_data, c.tokenizer, c.val_fraction, c.context): c for c in configs
    }
    for config in data_keys.values():
        prepare_data(config)  # checks every corpus now, and fills the token cache for the workers
    finished = _finished_runs(store)
    outcomes: list[RunOutcome] = []
    total = len(configs)
    for config in configs:
        if config.name in finished:
            outcomes.append(RunOutcome(config.name, "skipped", final_loss=finished[config.name]))
            if on_run is not None:
                on_run(outcomes[-1], len(outcomes), total)
    todo = sorted((c for c in configs if c.name not in finished), key=_estimated_cost, reverse=True)
    n_workers = max(1, min(workers or spec.workers, len(todo) or 1))
    if todo:
        context = multiprocessing.get_context("spawn")
        stop = context.Event()
        pool = cf.ProcessPoolExecutor(
            max_workers=n_workers,
            mp_context=context,
            initializer=_stop_with_parent,
            initargs=(os.getpid(), stop),
        )
        try:
            pending = {pool.submit(_worker_run, c) for c in todo}
            while pending:
                # wake up every second: a signal that the OS delivered to another thread is
                # only handled once the main thread runs again
                done, pending = cf.wait(pending, timeout=1.0, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    outcome = future.result()
                    outcomes.append(outcome)
                    if on_run is not None:
                        on_run(outcome, len(outcomes), total)
        except BaseException:
            # interrupted: start no new run and stop the running ones (they are marked
            # interrupted and resume from their checkpoints on the next call)
            stop.set()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
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
