"""Downstream evaluations as one validated table: per run its compute and validation loss,
per (run, task) its top-1 error.

Two layouts are read:

- **wide**: one row per run, one column per task (accuracy or error), beside the run's
  ``run_id``, ``params``/``tokens`` (or ``flops`` and ``multiplier``) and validation loss;
- **long**: one row per (run, task) with ``run_id``, ``task`` and ``value``, optionally
  ``chance`` or ``random_baseline`` (chance accuracy), ``num_examples`` and ``in_<group>``
  flags that name task averages (``in_avg17`` → the average ``avg17``). The runs' sizes and
  losses come from the same rows (equal on every row of a run) or from a separate runs table.

Every value is checked; a mistake is one :class:`~scalinglab.errors.InputError` naming the
file, row, column and value. Empty cells of a wide table are evaluations that were not made.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from scalinglab.data.loaders import _rename, read_table
from scalinglab.errors import InputError
from scalinglab.laws.base import FloatArray

Metric = Literal["accuracy", "error"]
#: columns of a long table: one row per (run, task)
LONG_COLUMNS = ("run_id", "task", "value")
#: names a long table may give its chance accuracy (fraction) under, first match wins
CHANCE_COLUMNS = ("chance", "random_baseline")
#: names a long table may give the number of examples of a task under
EXAMPLES_COLUMNS = ("num_examples", "n_examples")
#: prefix of a long table's boolean columns that put a task in a named average
GROUP_PREFIX = "in_"
#: per-run columns the table may carry besides the validation loss (never tasks)
RUN_COLUMNS = (
    "run_id",
    "family",
    "params",
    "params_nonembedding",
    "tokens",
    "flops",
    "multiplier",
    "step",
    "seed",
    "lr",
    "dataset",
    "loss",
)
_POSITIVE = ("params", "tokens", "flops", "multiplier")


@dataclass
class DownstreamTable:
    """Runs with their compute and validation loss, and each task's error per run.

    Attributes
    ----------
    runs
        One row per run, indexed by ``run_id``: ``loss`` (the validation loss, nats),
        ``flops`` and ``multiplier`` (tokens per parameter) when known, ``params``,
        ``tokens``, ``family`` when given, and ``source_row``.
    errors
        Top-1 error in [0, 1], index ``run_id``, one column per task; NaN where a run was
        not evaluated on a task.
    chance
        Task → chance error (1 − chance accuracy), or ``None`` when unknown.
    examples
        Task → number of examples, or ``None`` when unknown.
    averages
        Average name → its member tasks (the average error is their plain mean).
    loss_column
        The user's name of the validation loss.
    source
        Where the table came from (file name), for messages.
    notes
        What reading left out and why (an average whose tasks were not all chosen).
    """

    runs: pd.DataFrame
    errors: pd.DataFrame
    chance: dict[str, float | None]
    examples: dict[str, float | None]
    averages: dict[str, tuple[str, ...]] = field(default_factory=dict)
    loss_column: str = "loss"
    source: str = "<DataFrame>"
    notes: list[str] = field(default_factory=list)

    @property
    def tasks(self) -> list[str]:
        """Task names, in the order of the table."""
        return [str(c) for c in self.errors.columns]

    @property
    def targets(self) -> list[str]:
        """Everything a forecast is made for: the tasks, then the averages."""
        return [*self.tasks, *self.averages]

    @property
    def has_compute(self) -> bool:
        """Whether every run has ``flops`` and ``multiplier`` (needed by compute → error)."""
        return (
            {"flops", "multiplier"} <= set(self.runs.columns)
            and bool(self.runs["flops"].notna().all())
            and bool(self.runs["multiplier"].notna().all())
        )

    def error(self, target: str) -> pd.Series:
        """Error of a task or an average per run (NaN where not measured)."""
        if target in self.averages:
            return self.errors[list(self.averages[target])].mean(axis=1, skipna=False)
        if target not in self.errors.columns:
            raise InputError(
                f"no task or average named '{target}'; the table has {', '.join(self.targets)}",
                source=self.source,
            )
        return self.errors[target]

    def chance_error(self, target: str) -> float | None:
        """Chance error of a task, or the mean of an average's members (``None``: unknown)."""
        if target in self.averages:
            members = [self.chance.get(t) for t in self.averages[target]]
            if any(m is None for m in members):
                return None
            return float(np.mean([float(m) for m in members if m is not None]))
        return self.chance.get(target)

    def effective_examples(self, target: str) -> float | None:
        """Examples behind one measured error: a task's count; for an average, the count
        that gives its mean the same binomial variance (``m² / Σ 1/n_i``)."""
        if target in self.averages:
            counts = [self.examples.get(t) for t in self.averages[target]]
            if any(c is None for c in counts):
                return None
            inverse = sum(1.0 / float(c) for c in counts if c is not None)
            return len(counts) ** 2 / inverse
        return self.examples.get(target)

    def subset(self, run_ids: Sequence[str] | pd.Index) -> DownstreamTable:
        """The same table restricted to some runs (in their given order)."""
        index = pd.Index(run_ids)
        return DownstreamTable(
            runs=self.runs.loc[index],
            errors=self.errors.loc[index],
            chance=dict(self.chance),
            examples=dict(self.examples),
            averages=dict(self.averages),
            loss_column=self.loss_column,
            source=self.source,
            notes=list(self.notes),
        )

    def summary(self) -> dict[str, object]:
        """Counts for messages and JSON."""
        return {
            "source": self.source,
            "runs": len(self.runs),
            "tasks": len(self.tasks),
            "averages": {k: list(v) for k, v in self.averages.items()},
            "loss_column": self.loss_column,
            "has_compute": self.has_compute,
            "notes": list(self.notes),
        }


def load_downstream(
    data: str | Path | pd.DataFrame,
    *,
    loss: str,
    runs: str | Path | pd.DataFrame | None = None,
    tasks: Sequence[str] | None = None,
    metric: Metric = "accuracy",
    chance: Mapping[str, float] | None = None,
    averages: Mapping[str, Sequence[str]] | None = None,
    family: str | None = None,
    columns: Mapping[str, str] | None = None,
) -> DownstreamTable:
    """Read and check a table of downstream evaluations.

    Parameters
    ----------
    data
        A file (CSV, TSV, Parquet, JSONL, JSON) or DataFrame, wide (task columns) or long
        (``run_id``, ``task``, ``value`` rows); see the module docstring.
    loss
        Column with each run's validation loss (nats per token), the loss the error is
        forecast from, e.g. ``"loss_c4_val"``.
    runs
        A separate table of runs (one row per ``run_id``) with sizes and the loss column;
        needed when ``data`` is long and does not repeat them.
    tasks
        Task columns of a wide table, or the tasks to keep from a long one. Default: every
        column of a wide table that is not a run column (see :data:`RUN_COLUMNS`), every
        task of a long one.
    metric
        Whether the values are ``"accuracy"`` (error = 1 − value) or ``"error"``.
    chance
        Chance accuracy per task (fraction), overriding the table's chance column.
    averages
        Named averages of tasks, e.g. ``{"core": ["arc_easy", "piqa"]}``, added to those a
        long table's ``in_<name>`` columns define.
    family
        Keep only the runs of this ``family`` (required when the runs hold several).
    columns
        The user's column names → ours, e.g. ``{"train_dataset": "family"}``.

    Returns
    -------
    DownstreamTable

    Raises
    ------
    InputError
        Unreadable file, missing column, a value that is not a number in [0, 1], a run
        without size or loss, conflicting duplicates, several families without a choice.
    """
    if metric not in ("accuracy", "error"):
        raise InputError(f"metric must be 'accuracy' or 'error', got '{metric}'")
    raw, name = _read(data)
    raw_runs = None if runs is None else _read(runs)
    mapping = dict(columns or {})
    tables = [raw] + ([] if raw_runs is None else [raw_runs[0]])
    absent = [c for c in mapping if all(c not in t.columns for t in tables)]
    if absent:
        have = dict.fromkeys(str(c) for t in tables for c in t.columns if c != "source_row")
        raise InputError(
            f"columns= names {', '.join(map(repr, absent))}, which the data lack; the data "
            f"have columns {', '.join(have)}",
            source=name,
        )
    frame = _rename_present(raw, mapping, name)
    long = {"task", "value"} <= set(frame.columns)
    if raw_runs is not None:
        run_frame, run_source = _rename_present(raw_runs[0], mapping, raw_runs[1]), raw_runs[1]
    elif long:
        run_frame, run_source = _runs_from_long(frame, loss, name), name
    else:
        run_frame, run_source = frame, name
    run_table = _check_runs(run_frame, loss, run_source)
    if long:
        parsed = _long_errors(frame, name, tasks, metric)
    else:
        parsed = _wide_errors(frame, loss, name, tasks, metric)
    errors, chance_acc, examples, groups = (
        parsed.errors,
        parsed.chance,
        parsed.examples,
        parsed.groups,
    )
    unknown = [r for r in errors.index if r not in run_table.index]
    if unknown:
        raise InputError(
            f"run '{unknown[0]}' has evaluations but no row in the runs ({run_source}): its "
            "size and loss are unknown",
            source=name,
        )
    if family is not None or "family" in run_table.columns:
        run_table = _select_family(run_table, family, run_source)
    errors = errors.reindex(run_table.index)
    for task, value in (chance or {}).items():
        if task not in errors.columns:
            raise InputError(
                f"chance given for '{task}', which is not a task here; tasks: "
                f"{', '.join(map(str, errors.columns))}"
            )
        if not (math.isfinite(value) and 0.0 <= value < 1.0):
            raise InputError(f"chance accuracy of '{task}' must be in [0, 1)", value=value)
        chance_acc[task] = float(value)
    for group, members in (averages or {}).items():
        groups[str(group)] = tuple(map(str, members))
    _check_groups(groups, list(errors.columns), name)
    names = [str(t) for t in errors.columns]
    chance_error: dict[str, float | None] = {}
    for t in names:
        accuracy = chance_acc.get(t)
        chance_error[t] = None if accuracy is None else 1.0 - accuracy
    table = DownstreamTable(
        runs=run_table,
        errors=errors,
        chance=chance_error,
        examples={t: examples.get(t) for t in names},
        averages=groups,
        loss_column=loss,
        source=name,
        notes=parsed.notes,
    )
    if table.errors.shape[1] == 0:
        raise InputError("no task columns found; name them with tasks=", source=name)
    return table


# -- reading --------------------------------------------------------------------------------


@dataclass
class _Parsed:
    """Errors and per-task facts read from the evaluations."""

    errors: pd.DataFrame
    chance: dict[str, float | None]
    examples: dict[str, float | None]
    groups: dict[str, tuple[str, ...]]
    notes: list[str]


def _read(data: str | Path | pd.DataFrame) -> tuple[pd.DataFrame, str]:
    if isinstance(data, pd.DataFrame):
        name = str(data.attrs.get("source", "<DataFrame>"))
        raw = data.reset_index(drop=True)
    else:
        path = Path(data)
        name = path.name
        raw = read_table(path)
    if raw.empty:
        raise InputError("no data rows", source=name)
    raw = raw.copy()
    raw["source_row"] = np.arange(1, len(raw) + 1)
    return raw, name


def _rename_present(frame: pd.DataFrame, mapping: Mapping[str, str], source: str) -> pd.DataFrame:
    """The user's renames that apply to this table (a runs table and an evaluations table
    share one mapping)."""
    return _rename(frame, {k: v for k, v in mapping.items() if k in frame.columns}, source)[0]


def _runs_from_long(frame: pd.DataFrame, loss: str, source: str) -> pd.DataFrame:
    """One row per run of a long table, checking that run columns agree within a run."""
    if "run_id" not in frame.columns:
        raise InputError("a long table needs a 'run_id' column", source=source)
    present = [c for c in (*RUN_COLUMNS, loss) if c in frame.columns and c != "run_id"]
    first = frame.drop_duplicates("run_id", keep="first")
    for col in dict.fromkeys(present):
        values = frame[["run_id", col]].astype({col: "object"})
        counts = values.drop_duplicates().groupby("run_id", sort=False).size()
        if (counts > 1).any():
            run = str(counts.index[np.flatnonzero(counts.to_numpy() > 1)[0]])
            rows = frame.loc[frame["run_id"].astype(str) == run]
            row = rows.iloc[np.flatnonzero(rows[col].to_numpy() != rows[col].iloc[0])[0]]
            raise InputError(
                f"run '{run}' has different values of '{col}' on different rows (the "
                "run's own columns must repeat on every row, or come from runs=)",
                source=source,
                row=int(row["source_row"]),
                column=col,
                value=row[col],
            )
    return first.reset_index(drop=True)


def _numbers(frame: pd.DataFrame, col: str, source: str) -> FloatArray:
    """A column as floats; text is an error naming its row."""
    values = pd.to_numeric(frame[col], errors="coerce")
    text = values.isna() & frame[col].notna()
    _reject_first(text, frame, "not a number", source, col, frame[col].to_numpy())
    return values.to_numpy(dtype=float)


def _reject_first(
    bad: Any, frame: pd.DataFrame, message: str, source: str, column: str, values: Any = None
) -> None:
    """Raise ``message`` at the first row flagged in ``bad``, if any: its source row,
    ``column`` and, when ``values`` (one per row) are given, the value there."""
    flagged = np.flatnonzero(np.asarray(bad, dtype=bool))
    if flagged.size:
        i = int(flagged[0])
        raise InputError(
            message,
            source=source,
            row=int(frame["source_row"].iloc[i]),
            column=column,
            value=None if values is None else values[i],
        )


def _user_columns(frame: pd.DataFrame) -> str:
    """The table's own columns, for messages (without the row numbers we added)."""
    return ", ".join(str(c) for c in frame.columns if c != "source_row")


def _check_runs(frame: pd.DataFrame, loss: str, source: str) -> pd.DataFrame:
    if "run_id" not in frame.columns:
        raise InputError(
            f"the runs need a 'run_id' column; the data have {_user_columns(frame)}",
            source=source,
        )
    if loss not in frame.columns:
        raise InputError(
            f"no validation-loss column '{loss}'; the data have {_user_columns(frame)}",
            source=source,
        )
    ids = frame["run_id"]
    blank = ids.isna() | (ids.astype(str).str.strip() == "")
    _reject_first(blank, frame, "empty run_id", source, "run_id")
    frame = frame.assign(run_id=ids.astype(str))
    _reject_first(
        frame["run_id"].duplicated(),
        frame,
        "run_id repeated in a table of runs (one row per run)",
        source,
        "run_id",
        frame["run_id"].to_numpy(),
    )
    out = pd.DataFrame(index=pd.Index(frame["run_id"], name="run_id"))
    out["source_row"] = frame["source_row"].to_numpy()
    loss_values = _numbers(frame, loss, source)
    _require_positive(loss_values, frame, loss, source, allow_empty=False)
    out["loss"] = loss_values
    for col in _POSITIVE:
        if col in frame.columns:
            values = _numbers(frame, col, source)
            _require_positive(values, frame, col, source, allow_empty=True)
            out[col] = values
    if "flops" not in out.columns and {"params", "tokens"} <= set(out.columns):
        out["flops"] = 6.0 * out["params"] * out["tokens"]
    if "multiplier" not in out.columns and {"params", "tokens"} <= set(out.columns):
        out["multiplier"] = out["tokens"] / out["params"]
    if "family" in frame.columns:
        out["family"] = frame["family"].astype(str).to_numpy()
    return out


def _select_family(runs: pd.DataFrame, family: str | None, source: str) -> pd.DataFrame:
    if "family" not in runs.columns:
        raise InputError(
            f"family '{family}' asked for, but the runs have no 'family' column "
            "(map one with columns=)",
            source=source,
        )
    names = sorted(map(str, runs["family"].dropna().unique()))
    if family is None:
        if len(names) > 1:
            raise InputError(
                f"the runs belong to {len(names)} families ({', '.join(names)}); laws are "
                "fitted per family: choose one with family=",
                source=source,
            )
        return runs
    if family not in names:
        raise InputError(
            f"no runs of family '{family}'; the families are {', '.join(names)}", source=source
        )
    return runs[runs["family"] == family]


def _require_positive(
    values: FloatArray, frame: pd.DataFrame, col: str, source: str, *, allow_empty: bool
) -> None:
    good = (values > 0) & np.isfinite(values)
    if allow_empty:
        good |= np.isnan(values)
    _reject_first(~good, frame, "must be positive and finite", source, col, values)


def _as_error(values: FloatArray, metric: Metric) -> FloatArray:
    return 1.0 - values if metric == "accuracy" else values


def _check_unit_interval(
    values: FloatArray, frame: pd.DataFrame, col: str, source: str, metric: Metric
) -> None:
    bad = ~np.isnan(values) & ~((values >= 0.0) & (values <= 1.0))
    _reject_first(bad, frame, f"{metric} must be a fraction in [0, 1]", source, col, values)


def _wide_errors(
    frame: pd.DataFrame, loss: str, source: str, tasks: Sequence[str] | None, metric: Metric
) -> _Parsed:
    known = {*RUN_COLUMNS, loss, "source_row"}
    if tasks is None:
        chosen = [str(c) for c in frame.columns if c not in known]
    else:
        chosen = [str(t) for t in tasks]
        absent = [t for t in chosen if t not in frame.columns]
        if absent:
            raise InputError(
                f"no task column(s) {', '.join(map(repr, absent))}; the data have "
                f"{_user_columns(frame)}",
                source=source,
            )
    errors = {}
    for task in chosen:
        values = _numbers(frame, task, source)
        _check_unit_interval(values, frame, task, source, metric)
        errors[task] = _as_error(values, metric)
    out = pd.DataFrame(errors, index=pd.Index(frame["run_id"].astype(str), name="run_id"))
    unknown: dict[str, float | None] = {t: None for t in chosen}
    return _Parsed(out, unknown, dict(unknown), {}, [])


def _per_task(frame: pd.DataFrame, col: str, source: str) -> dict[str, float | None]:
    """A per-task constant of a long table (chance, examples): one value per task."""
    values = _numbers(frame, col, source)
    out: dict[str, float | None] = {}
    for task, idx in frame.groupby("task", sort=False).indices.items():
        distinct = np.unique(values[idx][~np.isnan(values[idx])])
        if distinct.size > 1:
            i = int(idx[np.flatnonzero(values[idx] != values[idx][0])[0]])
            raise InputError(
                f"task '{task}' has different values of '{col}' on different rows",
                source=source,
                row=int(frame["source_row"].iloc[i]),
                column=col,
                value=float(values[i]),
            )
        out[str(task)] = float(distinct[0]) if distinct.size else None
    return out


def _long_errors(
    frame: pd.DataFrame, source: str, tasks: Sequence[str] | None, metric: Metric
) -> _Parsed:
    if "run_id" not in frame.columns:
        raise InputError("a long table needs a 'run_id' column", source=source)
    task = frame["task"]
    blank = task.isna() | (task.astype(str).str.strip() == "")
    _reject_first(blank, frame, "empty task name", source, "task")
    frame = frame.assign(task=task.astype(str), run_id=frame["run_id"].astype(str))
    groups: dict[str, tuple[str, ...]] = {}
    for col in frame.columns:
        if isinstance(col, str) and col.startswith(GROUP_PREFIX) and len(col) > len(GROUP_PREFIX):
            flags = frame[col].map(_flag)
            _reject_first(
                flags.isna(),
                frame,
                "a group flag must be true or false",
                source,
                col,
                frame[col].to_numpy(),
            )
            members = frame.loc[flags.astype(bool), "task"]
            if not members.empty:
                groups[col[len(GROUP_PREFIX) :]] = tuple(dict.fromkeys(members))
    notes: list[str] = []
    if tasks is not None:
        known = set(frame["task"])
        absent = [t for t in tasks if t not in known]
        if absent:
            raise InputError(
                f"no task(s) {', '.join(map(repr, absent))}; the table has "
                f"{', '.join(sorted(known))}",
                source=source,
            )
        frame = frame[frame["task"].isin(list(tasks))]
        for group, group_tasks in list(groups.items()):
            kept = [t for t in group_tasks if t in tasks]
            if len(kept) < len(group_tasks):
                del groups[group]
                notes.append(
                    f"average '{group}' left out: the chosen tasks include {len(kept)} of its "
                    f"{len(group_tasks)}"
                )
    values = _numbers(frame, "value", source)
    _reject_first(np.isnan(values), frame, "missing value", source, "value")
    _check_unit_interval(values, frame, "value", source, metric)
    frame = frame.assign(error=_as_error(values, metric))
    dup = frame.duplicated(["run_id", "task"], keep=False)
    if dup.any():
        conflicting = frame[dup].groupby(["run_id", "task"])["error"].nunique() > 1
        if conflicting.any():
            run, name = conflicting.index[np.flatnonzero(conflicting.to_numpy())[0]]
            rows = frame[dup & (frame["run_id"] == run) & (frame["task"] == name)]
            raise InputError(
                f"run '{run}' has different values for task '{name}'",
                source=source,
                row=int(rows["source_row"].iloc[1]),
                column="value",
                value=float(rows["value"].iloc[1]),
            )
        frame = frame.drop_duplicates(["run_id", "task"])
    order = list(dict.fromkeys(frame["task"]))
    errors = frame.pivot(index="run_id", columns="task", values="error")[order]
    errors.columns = pd.Index([str(c) for c in errors.columns])
    errors.columns.name = None
    unknown: dict[str, float | None] = {t: None for t in order}
    chance_col = next((c for c in CHANCE_COLUMNS if c in frame.columns), None)
    chance = _per_task(frame, chance_col, source) if chance_col else dict(unknown)
    for name, value in chance.items():
        if value is not None and not 0.0 <= value < 1.0:
            row = frame[frame["task"] == name].iloc[0]
            raise InputError(
                "chance accuracy must be a fraction in [0, 1)",
                source=source,
                row=int(row["source_row"]),
                column=chance_col,
                value=value,
            )
    examples_col = next((c for c in EXAMPLES_COLUMNS if c in frame.columns), None)
    examples = _per_task(frame, examples_col, source) if examples_col else dict(unknown)
    return _Parsed(errors, chance, examples, groups, notes)


def _flag(value: object) -> bool | None:
    text = str(value).strip().lower()
    if text in ("true", "1", "1.0", "yes"):
        return True
    if text in ("false", "0", "0.0", "no"):
        return False
    return None


def _check_groups(groups: Mapping[str, Sequence[str]], tasks: list[str], source: str) -> None:
    for group, members in groups.items():
        if not members:
            raise InputError(f"average '{group}' has no tasks", source=source)
        absent = [t for t in members if t not in tasks]
        if absent:
            raise InputError(
                f"average '{group}' names task(s) {', '.join(map(repr, absent))}, which the "
                f"table does not have",
                source=source,
            )
        if group in tasks:
            raise InputError(
                f"average '{group}' has the name of a task; give it another", source=source
            )
