"""Where else the trainer writes: TensorBoard, MLflow and W&B (offline), beside the run store.

Each evaluation becomes one logged row at its step: ``DATASET/loss`` per evaluated dataset
(nats per token), ``lr`` (the rate of the update that produced the weights) and ``tokens``
(seen so far). The run's settings and parameter counts are its hyper-parameters / params /
config, so ``scalinglab import`` reads the logs back into the same observations the store
holds. Files go beside the store (``tensorboard/RUN``, ``mlflow.db``, ``wandb/``), or beside
the run's checkpoint folder without a store. A resumed run appends to its own logs: the
importers' restart rule keeps the later points.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from scalinglab.data.importers.base import flatten_config, require
from scalinglab.errors import MissingDependencyError, SpecError

#: the loggers ``TrainConfig.log_to`` may name
LOGGERS: tuple[str, ...] = ("tensorboard", "mlflow", "wandb")


class RunLogger(Protocol):
    """One logging destination of one run."""

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        """Record the metrics measured after ``step`` updates."""

    def close(self, status: str) -> None:
        """Flush and close; ``status`` is the store's (finished, failed, interrupted)."""


def check_loggers(names: tuple[str, ...]) -> None:
    """Check logger names, and that their libraries are installed, before any training.

    Raises
    ------
    SpecError
        For a name that is not one of :data:`LOGGERS`.
    MissingDependencyError
        For a logger whose library is missing (the message names the extra).
    """
    unknown = [n for n in names if n not in LOGGERS]
    if unknown:
        raise SpecError(f"log_to: unknown logger {', '.join(unknown)}; choose from {LOGGERS}")
    for name in names:
        if importlib.util.find_spec(name) is None:  # the extra is named as its library
            raise MissingDependencyError(
                f"log_to {name} needs the '{name}' package: pip install 'scalinglab[{name}]'"
            )


def _hparams(config: Mapping[str, Any]) -> dict[str, float | str | bool]:
    """Settings as flat scalars (TensorBoard's hparams and MLflow's params take no lists)."""
    out: dict[str, float | str | bool] = {}
    for key, value in flatten_config(config).items():
        if value is None:
            continue
        out[key] = value if isinstance(value, bool | int | float | str) else str(value)
    return out


class _TensorBoard:
    def __init__(self, folder: Path, run_id: str, config: Mapping[str, Any]) -> None:
        require("tensorboard", "tensorboard", "logging to TensorBoard")
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        self.writer = SummaryWriter(str(folder / "tensorboard" / run_id))
        # hparams into the run's own file (add_hparams would open a sub-run)
        file_writer = self.writer._get_file_writer()
        for summary in hparams(_hparams(config), {}):
            file_writer.add_summary(summary)

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        for name, value in metrics.items():
            # double precision: token counts past 2**24 are not exact in float32
            self.writer.add_scalar(name, value, step, new_style=True, double_precision=True)

    def close(self, status: str) -> None:
        self.writer.close()


class _MLflow:
    def __init__(self, folder: Path, run_id: str, config: Mapping[str, Any]) -> None:
        require("mlflow", "mlflow", "logging to MLflow")
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=f"sqlite:///{(folder / 'mlflow.db').resolve()}")
        name = str(config.get("family") or "scalinglab")
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = (
            experiment.experiment_id if experiment else self.client.create_experiment(name)
        )
        found = self._find(experiment_id, run_id)
        if found is not None:  # a resumed run continues its MLflow run
            self.run_id = found
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            self.run_id = self.client.create_run(experiment_id, run_name=run_id).info.run_id
            params = [Param(k, str(v)) for k, v in _hparams(config).items()]
            self.client.log_batch(self.run_id, params=params)

    def _find(self, experiment_id: str, name: str) -> str | None:
        """The MLflow run named ``name`` (compared here: a name may hold any character)."""
        token = None
        while True:
            page = self.client.search_runs([experiment_id], max_results=1000, page_token=token)
            for run in page:
                if run.info.run_name == name:
                    return str(run.info.run_id)
            token = page.token
            if not token:
                return None

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        self.client.log_batch(self.run_id, metrics=batch)

    def close(self, status: str) -> None:
        self.client.set_terminated(
            self.run_id, {"finished": "FINISHED", "interrupted": "KILLED"}.get(status, "FAILED")
        )


class _WandB:
    def __init__(self, folder: Path, run_id: str, config: Mapping[str, Any]) -> None:
        wandb = require("wandb", "wandb", "logging to W&B")
        (folder / "wandb").mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            mode="offline",
            dir=str(folder),
            project=str(config.get("family") or "scalinglab"),
            name=run_id,
            id=hashlib.sha256(run_id.encode()).hexdigest()[:16],
            resume="allow",
            config=dict(config),
            reinit="create_new",
            settings=wandb.Settings(silent=True, console="off", x_disable_stats=True),
        )

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        self.run.log(dict(metrics), step=step)

    def close(self, status: str) -> None:
        self.run.finish(exit_code=0 if status == "finished" else 1)


_MAKERS: dict[str, Callable[[Path, str, Mapping[str, Any]], RunLogger]] = {
    "tensorboard": _TensorBoard,
    "mlflow": _MLflow,
    "wandb": _WandB,
}


class RunLoggers:
    """The loggers a run's ``log_to`` names, fed at every evaluation.

    Parameters
    ----------
    names
        Logger names (:data:`LOGGERS`).
    folder
        Where the logs go (the run store's folder).
    run_id
        The run's name in every logger.
    config
        The run's settings and parameter counts, logged as hyper-parameters.
    """

    def __init__(
        self, names: tuple[str, ...], folder: Path, run_id: str, config: Mapping[str, Any]
    ) -> None:
        check_loggers(names)
        self.loggers: list[RunLogger] = [_MAKERS[n](folder, run_id, config) for n in names]

    def log_eval(self, step: int, tokens: float, lr: float, losses: Mapping[str, float]) -> None:
        """Record one evaluation: the loss per dataset, the learning rate and tokens seen."""
        metrics = {f"{name}/loss": value for name, value in losses.items()}
        metrics |= {"lr": lr, "tokens": tokens}
        for logger in self.loggers:
            logger.log(step, metrics)

    def close(self, status: str) -> None:
        """Close every logger with the run's final status."""
        for logger in self.loggers:
            logger.close(status)


def open_run_loggers(config: Any, params: int, params_nonembedding: int) -> RunLoggers | None:
    """The loggers of a :class:`~scalinglab.training.config.TrainConfig`, or ``None``."""
    if not config.log_to:
        return None
    folder = Path(config.store).parent if config.store else Path(config.checkpoint_dir).parent
    settings = config.to_dict() | {
        "params": params,
        "params_nonembedding": params_nonembedding,
        "tokens_per_step": config.tokens_per_step,
    }
    return RunLoggers(tuple(config.log_to), folder, config.name, settings)
