"""Runs from where they already live: TensorBoard, MLflow, W&B, Hugging Face Trainer, text logs.

:func:`import_runs` reads sources into one validated Observations table (the source kind is
detected or given); :func:`store_runs` writes it into a run store, idempotently. Each source
is a module here whose library is an optional extra, imported only when that source is read.
"""

from __future__ import annotations

import fnmatch
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scalinglab.data.importers.base import (
    ImportOptions,
    ImportReport,
    RawRun,
    RunReport,
    assemble,
    default_dataset,
    disambiguate,
)
from scalinglab.data.schema import CANONICAL_COLUMNS, SOURCE_ROW
from scalinglab.errors import InputError, SpecError

#: source kinds, as ``--from`` names them
KINDS: tuple[str, ...] = ("tensorboard", "mlflow", "wandb", "hf", "text")
_TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")

__all__ = [
    "KINDS",
    "ImportReport",
    "RunReport",
    "default_dataset",
    "detect_kind",
    "import_runs",
    "store_runs",
]


def _sqlite_tables(path: Path) -> set[str]:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as con:
            return {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
    except sqlite3.DatabaseError:
        return set()


def detect_kind(source: str | Path) -> str:
    """The kind of a source (one of :data:`KINDS`) from its name and contents.

    Raises
    ------
    InputError
        When nothing or several kinds are recognised (the message names ``--from``).
    """
    from scalinglab.data.importers.hf import STATE_FILE
    from scalinglab.data.importers.mlflow import MLFLOW_TABLES
    from scalinglab.data.importers.tensorboard import is_event_file
    from scalinglab.data.importers.text import TEXT_SUFFIXES

    text = str(source)
    if text.startswith("wandb://"):
        return "wandb"
    if "://" in text:
        return "mlflow"
    path = Path(text)
    if not path.exists():
        raise InputError(f"no such file or folder: {path}")
    if path.is_file():
        suffixes = [s.lower() for s in path.suffixes]
        if is_event_file(path):
            return "tensorboard"
        if path.name == STATE_FILE:
            return "hf"
        if path.suffix == ".wandb":
            return "wandb"
        if path.suffix.lower() in (".db", ".sqlite", ".sqlite3"):
            tables = _sqlite_tables(path)
            if MLFLOW_TABLES <= tables:
                return "mlflow"
            if {"runs", "observations"} <= tables:
                raise InputError(
                    f"{path.name} is a scalinglab run store: every command reads it as it is"
                )
            raise InputError(
                f"{path.name} is not an MLflow database (no {', '.join(MLFLOW_TABLES)})"
            )
        if any(s in _TABLE_SUFFIXES for s in suffixes):
            return "wandb"
        if path.suffix.lower() in TEXT_SUFFIXES:
            return "text"
        raise InputError(
            f"cannot tell what kind of log {path.name} is; name it with --from {'|'.join(KINDS)}"
        )
    found = set()
    for file in path.rglob("*"):
        if not file.is_file():
            continue
        if is_event_file(file):
            found.add("tensorboard")
        elif file.name == STATE_FILE:
            found.add("hf")
        elif file.suffix == ".wandb":
            found.add("wandb")
        elif file.name == "meta.yaml" and (
            (file.parent / "metrics").is_dir() or file.parent.parent == path
        ):
            found.add("mlflow")  # an experiment's or a run's meta.yaml in a file store
    if len(found) == 1:
        return found.pop()
    if not found:
        raise InputError(
            f"no TensorBoard event files, Trainer states, W&B runs or MLflow file store under "
            f"{path}; name the kind with --from {'|'.join(KINDS)}"
        )
    raise InputError(
        f"{path} holds runs of several kinds ({', '.join(sorted(found))}); choose one with --from"
    )


def _read(
    source: str | Path, kind: str, patterns: Sequence[str], experiments: Sequence[str] | None
) -> list[RawRun]:
    if kind == "tensorboard":
        from scalinglab.data.importers.tensorboard import read_tensorboard

        return read_tensorboard(Path(source))
    if kind == "mlflow":
        from scalinglab.data.importers.mlflow import read_mlflow

        return read_mlflow(source, experiments)
    if kind == "wandb":
        from scalinglab.data.importers import wandb

        text = str(source)
        if text.startswith("wandb://"):
            return wandb.read_online(text.removeprefix("wandb://"))
        path = Path(text)
        if path.is_file() and path.suffix != ".wandb":
            return wandb.read_export(path)
        files = wandb.offline_run_files(path)
        if not files:
            raise InputError(f"no W&B run files (run-*.wandb) under {path}")
        return wandb.read_offline_runs(files)
    if kind == "hf":
        from scalinglab.data.importers.hf import read_hf

        return read_hf(Path(source))
    if kind == "text":
        from scalinglab.data.importers.text import TEXT_SUFFIXES, read_text

        path = Path(source)
        if not path.is_dir():
            return [read_text(path, patterns)]
        logs = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES)
        if not logs:
            raise InputError(f"no text logs ({', '.join(TEXT_SUFFIXES)}) under {path}")
        return [read_text(log, patterns) for log in logs]
    raise SpecError(f"--from must be one of {', '.join(KINDS)}, got '{kind}'")


def _per_run(value: float | Mapping[str, float] | None) -> dict[str, float]:
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return {str(k): float(v) for k, v in value.items()}
    return {"*": float(value)}


def import_runs(
    sources: str | Path | Sequence[str | Path],
    *,
    kind: str | None = None,
    metrics: Mapping[str, str] | None = None,
    params: float | Mapping[str, float] | None = None,
    tokens_per_step: float | Mapping[str, float] | None = None,
    step_metric: str | None = None,
    lr_metric: str | None = None,
    tokens_metric: str | None = None,
    patterns: Sequence[str] = (),
    experiments: Sequence[str] | None = None,
    family: str | None = None,
) -> pd.DataFrame:
    """Read training runs from the tools that logged them, as Observations.

    Parameters
    ----------
    sources
        TensorBoard event files or log folders, MLflow tracking URIs (``sqlite:///mlflow.db``,
        a ``.db`` file, an ``mlruns`` folder, ``http://…``), W&B offline run folders, ``.wandb``
        files, CSV/Parquet history exports or ``wandb://ENTITY/PROJECT[/RUN]``, Trainer
        ``trainer_state.json`` files or output folders, text logs.
    kind
        ``tensorboard``, ``mlflow``, ``wandb``, ``hf`` or ``text``; detected when ``None``.
    metrics
        Metric name → dataset (``{"train/loss": "train", "eval/loss": "val"}``); only these
        are imported. By default ``loss`` is ``train`` and ``X/loss``, ``X_loss``,
        ``loss/X`` are the loss on ``X``.
    params
        Total parameters N, for every run or by run name (``fnmatch`` patterns); overrides
        what the source says.
    tokens_per_step
        Training tokens per optimizer step (batch × context), for every run or by run name:
        ``tokens = step × tokens_per_step``; overrides a logged tokens-seen metric.
    step_metric, lr_metric, tokens_metric
        The logged metric that holds the optimizer step, the learning rate, the tokens seen
        (found by name when ``None``: ``global_step``; ``lr``, ``learning_rate``;
        ``num_input_tokens_seen``, ``tokens``...).
    patterns
        Line patterns of text logs, ``"iter {step}: loss {loss}"``.
    experiments
        MLflow experiment names to read (all when ``None``).
    family
        Family of every imported run (else the runs' config ``family``).

    Returns
    -------
    pandas.DataFrame
        The canonical Observations table (losses in nats), one row per (run, step, dataset),
        ordered by run, dataset and step. ``attrs["import_report"]`` is the
        :class:`ImportReport` (points read, kept, used and dropped with reasons, per run);
        ``attrs["run_configs"]`` maps each run to its config.

    Raises
    ------
    InputError
        An unreadable source, a missing quantity (the message names the option that gives
        it), conflicting metrics, or no loss at all.
    MissingDependencyError
        When the source's library is not installed (the message names the extra).
    """
    from scalinglab.data.loaders import load_observations

    items = [sources] if isinstance(sources, str | Path) else list(sources)
    if not items:
        raise SpecError("give at least one source to import")
    if kind is not None and kind not in KINDS:
        raise SpecError(f"--from must be one of {', '.join(KINDS)}, got '{kind}'")
    options = ImportOptions(
        metrics=dict(metrics) if metrics else None,
        params=_per_run(params),
        tokens_per_step=_per_run(tokens_per_step),
        step_metric=step_metric,
        lr_metric=lr_metric,
        tokens_metric=tokens_metric,
        family=family,
    )
    raw: list[RawRun] = []
    for item in items:
        raw += _read(item, kind or detect_kind(item), patterns, experiments)
    disambiguate(raw)
    for pattern in [*options.params, *options.tokens_per_step]:
        if not any(r.run_id == pattern or fnmatch.fnmatchcase(r.run_id, pattern) for r in raw):
            runs = ", ".join(r.run_id for r in raw)
            raise SpecError(f"'{pattern}' matches no imported run; the runs are {runs}")
    frames, reports = [], []
    for run in raw:
        rows, report = assemble(run, options)
        frames.append(rows)
        reports.append(report)
    table = (
        pd.concat([f for f in frames if len(f)], ignore_index=True)
        if any(len(f) for f in frames)
        else None
    )
    if table is None:
        names = ", ".join(sorted({m for r in raw for m in r.points["metric"].unique()}))
        raise InputError(
            f"no loss found in {', '.join(map(str, items))}: no metric maps to a dataset; "
            f"the metrics are {names or '(none)'}; map one with --metric NAME=DATASET"
        )
    table = table.sort_values(["run_id", "dataset", "step"], kind="stable", ignore_index=True)
    table[SOURCE_ROW] = np.arange(1, len(table) + 1)
    table.attrs["source"] = ", ".join(map(str, items))
    out = load_observations(table, required=("run_id", "params", "tokens", "step", "loss"))
    out.attrs["import_report"] = ImportReport(reports)
    out.attrs["run_configs"] = {r.run_id: r.config for r in raw}
    return out


def store_runs(observations: pd.DataFrame, store: str | Path) -> ImportReport:
    """Write imported runs (from :func:`import_runs`) into a run store, idempotently.

    Rows are keyed by (run, step, dataset): importing the same source again rewrites the
    same rows and adds none. Runs new to the store get status ``imported`` and their config;
    a run already there keeps its own config and status.

    Returns
    -------
    ImportReport
        The import's report, with ``stored_new``, ``stored_unchanged`` and ``stored_changed``.
    """
    from scalinglab.data.store import RunStore

    report: ImportReport = observations.attrs["import_report"]
    configs: dict[str, Any] = observations.attrs.get("run_configs", {})
    run_store = RunStore(store)
    known = run_store.runs().set_index("run_id")
    ids = list(dict.fromkeys(observations["run_id"]))
    present = [r for r in ids if r in known.index]
    key = ["run_id", "step", "dataset"]
    values = ["params", "tokens", "flops", "lr", "loss"]
    before = run_store.observations(run_ids=present)[key + values] if present else None
    families = observations.groupby("run_id", sort=False)["family"].first()
    for run_id in ids:
        if run_id in known.index:  # a run the store has keeps its own config and status
            continue
        family = families.get(run_id)
        run_store.add_run(
            run_id,
            configs.get(run_id, {}),
            family=None if pd.isna(family) else str(family),
            status="imported",
        )
    run_store.add_observations(observations[list(CANONICAL_COLUMNS)])
    new = observations[key + values]
    if before is None or before.empty:
        report.stored_new, report.stored_unchanged, report.stored_changed = len(new), 0, 0
        return report
    merged = new.merge(before, on=key, how="left", suffixes=("", "_before"), indicator=True)
    old = merged["_merge"] == "both"
    same = np.ones(len(merged), dtype=bool)
    for column in values:
        a, b = merged[column].to_numpy(float), merged[f"{column}_before"].to_numpy(float)
        same &= (a == b) | (np.isnan(a) & np.isnan(b))
    report.stored_new = int((~old).sum())
    report.stored_unchanged = int((old & same).sum())
    report.stored_changed = int((old & ~same).sum())
    return report
