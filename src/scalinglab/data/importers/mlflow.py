"""MLflow runs, read through MLflow's own client from any tracking URI.

``sqlite:///mlflow.db`` (MLflow's default backend), the legacy ``mlruns/`` file store, or a
tracking server (``http://…``). Every metric's full history comes from
``MlflowClient.get_metric_history`` (all points, with their steps and timestamps; written
order is timestamp order); a run's params become its config.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scalinglab.data.importers.base import RawRun, points_frame, require
from scalinglab.errors import InputError

EXTRA = "mlflow"
#: MLflow tables that tell an MLflow SQLite backend from other SQLite files
MLFLOW_TABLES = frozenset({"experiments", "runs", "metrics", "params"})


def tracking_uri(source: str | Path) -> str:
    """A tracking URI for a path (a ``.db`` file or an ``mlruns`` folder) or a URI.

    Raises
    ------
    InputError
        For a path that does not exist.
    """
    text = str(source)
    if "://" in text or text.startswith("file:"):
        return text
    path = Path(text).resolve()
    if not path.exists():  # MLflow would create an empty database there
        raise InputError(f"no such file or folder: {text}")
    if path.is_dir():
        return path.as_uri()
    return f"sqlite:///{path}"


def _param(value: str) -> Any:
    """MLflow keeps params as text: numbers and JSON values are read back as such."""
    try:
        return json.loads(value)
    except (json.JSONDecodeError, TypeError):
        return value


def read_mlflow(source: str | Path, experiments: Sequence[str] | None = None) -> list[RawRun]:
    """Runs of every (or the named) experiment at a tracking URI.

    Raises
    ------
    InputError
        When the URI cannot be read or holds no runs; an unknown experiment name.
    """
    require("mlflow", EXTRA, "reading MLflow runs")
    from mlflow.entities import ViewType
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    uri = tracking_uri(source)
    if uri.startswith("file:"):
        # MLflow 3 refuses the legacy file store unless asked; reading it is what was asked
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=uri)
    try:
        found = list(client.search_experiments(view_type=ViewType.ACTIVE_ONLY))
        if experiments:
            known = {e.name: e for e in found}
            unknown = [n for n in experiments if n not in known]
            if unknown:
                raise InputError(
                    f"no MLflow experiment {', '.join(map(repr, unknown))} at {uri}; it has "
                    f"{', '.join(sorted(known))}"
                )
            found = [known[n] for n in experiments]
        runs = []
        for experiment in found:
            token = None
            while True:
                page = client.search_runs(
                    [experiment.experiment_id],
                    run_view_type=ViewType.ACTIVE_ONLY,
                    max_results=1000,
                    page_token=token,
                )
                runs += [(experiment.name, run) for run in page]
                token = page.token
                if not token:
                    break
        out = []
        for experiment_name, run in runs:
            run_id = run.info.run_name or run.info.run_id
            metric, step, value = [], [], []
            for key in sorted(run.data.metrics):
                history = client.get_metric_history(run.info.run_id, key)
                for point in sorted(history, key=lambda m: (m.timestamp, m.step)):
                    metric.append(key)
                    step.append(point.step)
                    value.append(point.value)
            config = {k: _param(v) for k, v in run.data.params.items()}
            config["mlflow"] = {
                "run_id": run.info.run_id,
                "experiment": experiment_name,
                "status": run.info.status,
            }
            points = points_frame(metric, step, value)
            out.append(
                RawRun(run_id=run_id, source=uri, points=points, config=config, uid=run.info.run_id)
            )
    except MlflowException as err:
        raise InputError(f"cannot read MLflow runs at {uri}: {err.message}") from None
    if not out:
        raise InputError(f"no MLflow runs at {uri}")
    return out
