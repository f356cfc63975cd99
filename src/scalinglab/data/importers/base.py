"""What every importer shares: metric points per run, and their assembly into observations.

An importer reads its source into :class:`RawRun` objects: every scalar point it found
(metric name, step, value) in the order the source wrote them, the run's configuration, and
whatever the source says about the model (a parameter count, total FLOPs). :func:`assemble`
turns one raw run into observation rows by rules that are the same for every source:

* **Stitching.** Points are in write order. A point logged at step ``s`` supersedes every
  earlier point of the same metric at a step ``>= s``: the run restarted from a checkpoint at
  ``s`` and logged that stretch again (TensorBoard's own rule for out-of-order steps; for
  MLflow, W&B, Trainer logs and text logs, write order is timestamp, history and line order).
  A TensorBoard session restart at step ``s`` supersedes the points of every metric at steps
  ``>= s`` written before it.
* **Metrics → datasets.** ``--metric NAME=DATASET`` mappings, or, without them, the usual
  names: ``loss`` is the ``train`` loss; ``X/loss``, ``X_loss`` and ``loss/X`` are the loss on
  ``X`` (auxiliary losses such as ``aux_loss`` or ``router/z_loss`` excepted).
* **Tokens** from ``--tokens-per-step`` (× step), else a tokens-seen metric at the same step,
  else ``tokens_per_step`` in the run's config. **Parameters** from ``--run-params``, else the
  source's model config, else a parameter count in the run's config. **FLOPs** from the
  source's total (scaled by tokens) when it has one, else ``6·N·D``.
* **Learning rates**, when logged, fill the ``lr`` column at the same step.

Every point read is accounted for: it is kept (a loss row), used (the learning rate, tokens
or step of a row), or dropped with a reason (:class:`RunReport`).
"""

from __future__ import annotations

import fnmatch
import importlib
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd

from scalinglab.errors import InputError, MissingDependencyError

#: metric names (last path segment, lower case) that hold the learning rate
LR_NAMES = ("lr", "learning_rate", "learning-rate")
#: metric names (last path segment, lower case) that count training tokens seen so far
TOKENS_NAMES = (
    "num_input_tokens_seen",
    "tokens_seen",
    "tokens",
    "total_tokens",
    "consumed_tokens",
    "train_tokens",
)
#: config keys (last segment, lower case) that hold the total parameter count
PARAMS_KEYS = (
    "params",
    "n_params",
    "num_params",
    "num_parameters",
    "n_parameters",
    "total_params",
    "model_params",
)
#: config keys (last segment, lower case) that hold the non-embedding parameter count
PARAMS_NONEMBEDDING_KEYS = (
    "params_nonembedding",
    "non_embedding_params",
    "n_params_nonembedding",
    "num_params_nonembedding",
)
#: config keys that give the training tokens per optimizer step
TOKENS_PER_STEP_KEYS = ("tokens_per_step",)
#: words that mark an auxiliary loss (never read as a dataset's language-model loss)
_AUXILIARY = frozenset(
    {"aux", "z", "router", "balance", "load_balancing", "lb", "kl", "moe", "reg", "l2", "entropy"}
)
_LOSS_NAME = re.compile(r"^(?:(?P<before>.+?)[/_. -]+(?:lm[_-])?loss|loss/(?P<after>.+))$")
SUPERSEDED = "superseded: the run logged this metric again from an earlier or equal step (restart)"
NOT_FINITE = "not a finite number"
BEFORE_TRAINING = "measured before any training token (step 0): the laws need D > 0"
SAME_LOSS_TWICE = "the same loss at the same step under another mapped metric"
OTHER_METRIC = "other metrics (not a loss, learning rate, step or token count)"


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import an optional library, or fail in one line naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(
            f"{what} needs the '{module.split('.')[0]}' package: pip install 'scalinglab[{extra}]'"
        ) from None


@dataclass
class RawRun:
    """One run as a source holds it, before assembly into observations.

    Attributes
    ----------
    run_id
        Name of the run in the result.
    source
        Where it came from (a path or URI), for messages.
    points
        Columns ``metric`` (str), ``step`` (int64), ``value`` (float64), in write order.
    config
        The run's configuration (hyper-parameters), stored with the run.
    restarts
        ``(position, step)``: before row ``position`` of ``points`` the run restarted at
        ``step`` (TensorBoard's session-start events).
    params, params_nonembedding
        Parameter counts the source knows (e.g. from a model config), or ``None``.
    total_flops, total_flops_step
        The source's FLOP count of training up to ``total_flops_step`` (Trainer's
        ``total_flos``), or ``None``.
    dropped
        Points the importer itself dropped, by reason.
    step_candidates
        Names (last segment) of logged metrics that, when present, count the steps instead
        of the source's own step (W&B's ``_step`` counts ``log`` calls, not updates).
    uid
        The source's own unique id of the run (MLflow, W&B), which tells apart runs that
        share a display name.
    notes
        What the importer inferred, for the report.
    """

    run_id: str
    source: str
    points: pd.DataFrame
    config: dict[str, Any] = field(default_factory=dict)
    restarts: list[tuple[int, int]] = field(default_factory=list)
    params: float | None = None
    params_nonembedding: float | None = None
    total_flops: float | None = None
    total_flops_step: int | None = None
    dropped: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    step_candidates: tuple[str, ...] = ()
    uid: str | None = None


def points_frame(
    metric: Iterable[str], step: Iterable[int], value: Iterable[float]
) -> pd.DataFrame:
    """A :attr:`RawRun.points` table from three parallel sequences."""
    return pd.DataFrame(
        {
            "metric": pd.Series(list(metric), dtype=object),
            "step": np.asarray(list(step), dtype=np.int64),
            "value": np.asarray(list(value), dtype=np.float64),
        }
    )


@dataclass(frozen=True)
class ImportOptions:
    """How metrics map to observation columns (see :func:`scalinglab.data.import_runs`)."""

    metrics: Mapping[str, str] | None = None
    params: Mapping[str, float] = field(default_factory=dict)
    tokens_per_step: Mapping[str, float] = field(default_factory=dict)
    step_metric: str | None = None
    lr_metric: str | None = None
    tokens_metric: str | None = None
    family: str | None = None


@dataclass
class RunReport:
    """What the import did with one run's points (``read = kept + used + dropped``)."""

    run_id: str
    source: str
    read: int
    kept: int
    used: int
    dropped: dict[str, int]
    datasets: dict[str, str]
    tokens_from: str
    params_from: str
    lr_from: str | None
    ignored_metrics: list[str]
    notes: list[str]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return dict(self.__dict__)


@dataclass
class ImportReport:
    """Per-run reports of one import, and (once stored) what the store gained."""

    runs: list[RunReport]
    stored_new: int | None = None
    stored_unchanged: int | None = None
    stored_changed: int | None = None

    @property
    def read(self) -> int:
        """Points read over all runs."""
        return sum(r.read for r in self.runs)

    @property
    def kept(self) -> int:
        """Observation rows produced."""
        return sum(r.kept for r in self.runs)

    @property
    def dropped(self) -> dict[str, int]:
        """Points dropped over all runs, by reason."""
        total: Counter[str] = Counter()
        for run in self.runs:
            total.update(run.dropped)
        return dict(total)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        out: dict[str, Any] = {
            "read": self.read,
            "kept": self.kept,
            "used": sum(r.used for r in self.runs),
            "dropped": self.dropped,
            "runs": [r.to_dict() for r in self.runs],
        }
        if self.stored_new is not None:
            out["stored"] = {
                "new": self.stored_new,
                "unchanged": self.stored_unchanged,
                "changed": self.stored_changed,
            }
        return out


def disambiguate(runs: list[RawRun]) -> None:
    """Runs that share a name get the start of their source id appended, in place.

    Raises
    ------
    InputError
        When runs that share a name have no id to tell them apart.
    """
    by_name: dict[str, list[RawRun]] = {}
    for run in runs:
        by_name.setdefault(run.run_id, []).append(run)
    for name, same in by_name.items():
        if len(same) == 1:
            continue
        if any(run.uid is None for run in same):
            raise InputError(
                f"two sources give a run named '{name}' ({same[0].source} and {same[1].source}); "
                "import them separately, or rename one folder"
            )
        for run in same:
            run.run_id = f"{name}-{run.uid[:8]}"  # type: ignore[index]


def default_dataset(metric: str) -> str | None:
    """The dataset a metric's name says it is the loss on, or ``None`` if it is no loss."""
    name = metric.strip()
    if name.lower() == "loss":
        return "train"
    match = _LOSS_NAME.match(name)
    if match is None:
        return None
    dataset = match.group("before") or match.group("after")
    words = {w for w in re.split(r"[/_. -]+", dataset.lower()) if w}
    if not dataset or words & _AUXILIARY:
        return None
    return dataset


def _last_segment(name: str) -> str:
    return name.rsplit("/", 1)[-1].strip().lower()


def _pick_metric(
    given: str | None, names: Iterable[str], candidates: tuple[str, ...], option: str, what: str
) -> tuple[str | None, str | None]:
    """The metric to use for ``what``: the one given, or the only candidate present.

    Returns the metric (or ``None``) and a note when several candidates made it ambiguous.
    """
    names = list(names)
    if given is not None:
        if given not in names:
            raise InputError(f"no metric '{given}' ({option}); the run has {', '.join(names[:30])}")
        return given, None
    found = [n for n in names if _last_segment(n) in candidates]
    if len(found) == 1:
        return found[0], None
    if len(found) > 1:
        return None, f"several {what} metrics ({', '.join(found)}): choose one with {option}"
    return None, None


def _match_run(mapping: Mapping[str, float], run_id: str) -> float | None:
    """The value for ``run_id`` in a RUN-glob → value mapping (``*`` matches every run)."""
    for pattern, value in mapping.items():
        if pattern == run_id or fnmatch.fnmatchcase(run_id, pattern):
            return value
    return None


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts → ``{"a/b": value}`` (W&B and MLflow configs nest; TOML ones too)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            # W&B stores each config entry as {"value": v, "desc": ...}
            if set(value) <= {"value", "desc"} and "value" in value:
                out[name] = value["value"]
            else:
                out.update(flatten_config(value, f"{name}/"))
        else:
            out[name] = value
    return out


def config_number(
    config: Mapping[str, Any], keys: tuple[str, ...], *, minimum: float = 0.0
) -> tuple[float, str] | None:
    """The first number above ``minimum`` under one of ``keys`` (last segment) in a config."""
    flat = flatten_config(config)
    for wanted in keys:
        for name, value in flat.items():
            if _last_segment(name.replace(".", "/")) != wanted:
                continue
            try:
                number = float(value)
            except (TypeError, ValueError):
                continue
            if math.isfinite(number) and number > minimum:
                return number, name
    return None


def stitch(points: pd.DataFrame, restarts: list[tuple[int, int]]) -> np.ndarray:
    """Which points survive restarts: the mask of the rule in the module docstring."""
    keep = np.ones(len(points), dtype=bool)
    positions = np.arange(len(points))
    steps = points["step"].to_numpy(dtype=np.int64)
    restart_pos = np.asarray([p for p, _ in restarts], dtype=np.int64)
    restart_step = np.asarray([s for _, s in restarts], dtype=np.int64)
    for _, index in points.groupby("metric", sort=False, observed=True).indices.items():
        s = steps[index]
        # the smallest step written after each point (+inf after the last)
        later = np.minimum.accumulate(s[::-1])[::-1]
        after = np.append(later[1:], np.iinfo(np.int64).max)
        ok = s < after
        if restart_pos.size:
            pos = positions[index]
            for p, rs in zip(restart_pos, restart_step, strict=True):
                ok &= ~((pos < p) & (s >= rs))
        keep[index] = ok
    return keep


def assemble(run: RawRun, options: ImportOptions) -> tuple[pd.DataFrame, RunReport]:
    """Observation rows of one run (canonical columns) and the report of what was done.

    Raises
    ------
    InputError
        When a needed quantity (parameters, tokens) cannot be inferred: the message names
        the option that gives it; or when two metrics give one dataset's loss.
    """
    points = run.points.reset_index(drop=True)
    dropped: Counter[str] = Counter(run.dropped)
    read = len(points) + sum(run.dropped.values())
    notes = list(run.notes)
    used = 0
    names = list(dict.fromkeys(points["metric"]))

    step_metric, note = _pick_metric(
        options.step_metric, names, run.step_candidates, "--step-metric", "step"
    )
    if note:
        notes.append(note)
    if step_metric is not None:
        points, n_used, lost = _remap_steps(points, step_metric, run)
        used += n_used
        dropped.update(lost)
        names = [n for n in names if n != step_metric]

    finite = np.isfinite(points["value"].to_numpy())
    dropped[NOT_FINITE] += int((~finite).sum())
    keep = stitch(points, run.restarts) & finite
    dropped[SUPERSEDED] += int((finite & ~keep).sum())
    points = points[keep]

    lr_metric, note = _pick_metric(
        options.lr_metric, names, LR_NAMES, "--lr-metric", "learning-rate"
    )
    notes += [note] if note else []
    tokens_metric, note = _pick_metric(
        options.tokens_metric, names, TOKENS_NAMES, "--tokens-metric", "tokens-seen"
    )
    notes += [note] if note else []
    datasets = _datasets(names, options.metrics, {lr_metric, tokens_metric}, run)
    by_metric = points.groupby("metric", sort=False, observed=True)
    frames = []
    for metric, dataset in datasets.items():
        if metric not in by_metric.groups:
            continue
        part = by_metric.get_group(metric)
        frames.append(
            pd.DataFrame({"step": part["step"], "dataset": dataset, "loss": part["value"]})
        )
    ignored = [n for n in names if n not in datasets and n not in (lr_metric, tokens_metric)]
    unmapped_losses = [n for n in ignored if default_dataset(n) is not None or "loss" in n.lower()]
    for metric in unmapped_losses:
        dropped[f"loss metric '{metric}' not mapped to a dataset (--metric {metric}=DATASET)"] += (
            int((points["metric"] == metric).sum())
        )
    other = points["metric"].isin([n for n in ignored if n not in unmapped_losses])
    dropped[OTHER_METRIC] += int(other.sum())
    rows = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame({"step": pd.Series(dtype=np.int64), "dataset": [], "loss": []})
    )
    collapsed = len(rows)
    rows = _one_metric_per_dataset(rows, datasets, run)
    dropped[SAME_LOSS_TWICE] += collapsed - len(rows)
    rows = rows.sort_values(["dataset", "step"], kind="stable").reset_index(drop=True)
    steps = rows["step"].to_numpy(dtype=np.int64)

    def at_steps(metric: str | None) -> np.ndarray:
        if metric is None:
            return np.full(len(rows), np.nan)
        series = points.loc[points["metric"] == metric].drop_duplicates("step", keep="last")
        return series.set_index("step")["value"].reindex(steps).to_numpy(dtype=float)

    lr = at_steps(lr_metric)
    # learning-rate and token points describe the run even at steps without a loss
    used += int(points["metric"].isin([lr_metric, tokens_metric]).sum())
    if rows.empty:  # nothing to attach tokens or parameters to: nothing to ask for
        tokens, tokens_from = np.zeros(0), "-"
        params, params_ne, params_from = math.nan, math.nan, "-"
    else:
        tokens, tokens_from = _tokens(run, options, points, tokens_metric, steps)
        params, params_ne, params_from = _params(run, options)
    flops = np.full(len(rows), np.nan)
    if run.total_flops is not None and run.total_flops_step is not None:
        try:
            end = _tokens(run, options, points, tokens_metric, np.asarray([run.total_flops_step]))
        except InputError:
            end = (np.asarray([np.nan]), "")
        if np.isfinite(end[0][0]) and end[0][0] > 0:
            flops = tokens * (run.total_flops / end[0][0])
            notes.append(
                f"flops: the source's total ({run.total_flops:.4g} at step "
                f"{run.total_flops_step}) in proportion to tokens"
            )
    untrained = ~(tokens > 0)
    if untrained.any():
        dropped[BEFORE_TRAINING] += int(untrained.sum())
        rows, steps, lr, tokens, flops = (
            rows[~untrained], steps[~untrained], lr[~untrained], tokens[~untrained],
            flops[~untrained],
        )  # fmt: skip
    seed = config_number(run.config, ("seed",), minimum=-1)
    out = pd.DataFrame(
        {
            "run_id": run.run_id,
            "family": options.family or _family(run.config),
            "params": params,
            "params_nonembedding": params_ne,
            "tokens": tokens,
            "step": steps,
            "flops": flops,
            "lr": lr,
            "dataset": rows["dataset"].astype(str).to_numpy(),
            "loss": rows["loss"].to_numpy(dtype=float),
            "seed": seed[0] if seed is not None and float(seed[0]).is_integer() else np.nan,
        }
    )
    report = RunReport(
        run_id=run.run_id,
        source=run.source,
        read=read,
        kept=len(out),
        used=used,
        dropped={k: v for k, v in dropped.items() if v},
        datasets={m: d for m, d in datasets.items() if m in by_metric.groups},
        tokens_from=tokens_from,
        params_from=params_from,
        lr_from=lr_metric,
        ignored_metrics=[n for n in ignored if n not in unmapped_losses],
        notes=notes,
    )
    if report.read != report.kept + report.used + sum(report.dropped.values()):
        raise AssertionError(f"import of {run.run_id} lost count of its points")  # a bug
    return out, report


def _remap_steps(
    points: pd.DataFrame, step_metric: str, run: RawRun
) -> tuple[pd.DataFrame, int, Counter[str]]:
    """Replace the source's step by a logged step metric (W&B's ``train/global_step``)."""
    is_step = (points["metric"] == step_metric).to_numpy()
    table = points[is_step].drop_duplicates("step", keep="last").set_index("step")["value"]
    values = table.to_numpy()
    if not np.all(np.isfinite(values) & (values >= 0) & (values == np.round(values))):
        bad = values[~(np.isfinite(values) & (values >= 0) & (values == np.round(values)))][0]
        raise InputError(
            f"run '{run.run_id}': step metric '{step_metric}' holds {bad!r}, not a step count; "
            "choose another with --step-metric",
            source=run.source,
        )
    rest = points[~is_step]
    mapped = table.reindex(rest["step"].to_numpy()).to_numpy()
    lost: Counter[str] = Counter()
    missing = np.isnan(mapped)
    if missing.any():
        lost[f"no value of the step metric '{step_metric}' in the same row"] = int(missing.sum())
    out = rest[~missing].copy()
    out["step"] = mapped[~missing].astype(np.int64)
    return out.reset_index(drop=True), int(is_step.sum()), lost


def _datasets(
    names: list[str], given: Mapping[str, str] | None, taken: set[str | None], run: RawRun
) -> dict[str, str]:
    """Metric → dataset for one run: the user's mapping, or the names' own."""
    if given:
        return {m: d for m, d in given.items() if m in names}
    out = {}
    for name in names:
        if name in taken:
            continue
        dataset = default_dataset(name)
        if dataset is not None:
            out[name] = dataset
    by_dataset: dict[str, list[str]] = {}
    for metric, dataset in out.items():
        by_dataset.setdefault(dataset, []).append(metric)
    for dataset, metrics in by_dataset.items():
        if len(metrics) > 1:
            raise InputError(
                f"run '{run.run_id}': metrics {', '.join(map(repr, metrics))} all read as the "
                f"loss on '{dataset}'; choose with --metric, e.g. --metric {metrics[0]}={dataset}",
                source=run.source,
            )
    return out


def _one_metric_per_dataset(
    rows: pd.DataFrame, datasets: Mapping[str, str], run: RawRun
) -> pd.DataFrame:
    """Rows with one loss per (dataset, step): two mapped metrics that give the same value
    there collapse into one row; different values are a conflict."""
    clash = rows.duplicated(["dataset", "step"], keep=False)
    if not clash.any():
        return rows
    sub = rows[clash]
    if sub.groupby(["dataset", "step"])["loss"].nunique().max() <= 1:
        return rows.drop_duplicates(["dataset", "step"])
    dataset, step = sub.iloc[0]["dataset"], int(sub.iloc[0]["step"])
    metrics = [m for m, d in datasets.items() if d == dataset]
    raise InputError(
        f"run '{run.run_id}': metrics {', '.join(map(repr, metrics))} give different losses "
        f"on '{dataset}' at step {step}; map only one of them with --metric",
        source=run.source,
    )


def _tokens(
    run: RawRun,
    options: ImportOptions,
    points: pd.DataFrame,
    tokens_metric: str | None,
    steps: np.ndarray,
) -> tuple[np.ndarray, str]:
    """Tokens at ``steps`` and where they came from."""
    per_step = _match_run(options.tokens_per_step, run.run_id)
    if per_step is not None:
        return steps * per_step, f"step × {per_step:g} (--tokens-per-step)"
    if tokens_metric is not None:
        series = points.loc[points["metric"] == tokens_metric].drop_duplicates("step", keep="last")
        values = series.set_index("step")["value"].reindex(steps).to_numpy(dtype=float)
        missing = np.isnan(values)
        if missing.any():
            raise InputError(
                f"run '{run.run_id}': no '{tokens_metric}' value at step "
                f"{int(steps[missing][0])}, where a loss was logged; give the tokens per step "
                f"with --tokens-per-step {run.run_id}=BATCHxCONTEXT",
                source=run.source,
            )
        return values, f"metric '{tokens_metric}'"
    found = config_number(run.config, TOKENS_PER_STEP_KEYS)
    if found is not None:
        return steps * found[0], f"step × {found[0]:g} (config '{found[1]}')"
    raise InputError(
        f"run '{run.run_id}': cannot tell the tokens seen (no tokens-seen metric, no "
        f"tokens_per_step in its config); give --tokens-per-step {run.run_id}=BATCHxCONTEXT "
        "(or --tokens-metric NAME)",
        source=run.source,
    )


def _params(run: RawRun, options: ImportOptions) -> tuple[float, float, str]:
    """Total and non-embedding parameters of a run, and where the total came from."""
    given = _match_run(options.params, run.run_id)
    nonembedding = run.params_nonembedding
    if nonembedding is None:
        found_ne = config_number(run.config, PARAMS_NONEMBEDDING_KEYS)
        nonembedding = found_ne[0] if found_ne is not None else None
    ne = float(nonembedding) if nonembedding is not None else math.nan
    if given is not None:
        return given, math.nan, "--run-params"
    if run.params is not None:
        return float(run.params), ne, "the model config"
    found = config_number(run.config, PARAMS_KEYS)
    if found is not None:
        return found[0], ne, f"config '{found[1]}'"
    raise InputError(
        f"run '{run.run_id}': cannot tell its parameter count (no model config, no "
        f"{'/'.join(PARAMS_KEYS[:3])} in its config); give --run-params {run.run_id}=N",
        source=run.source,
    )


def _family(config: Mapping[str, Any]) -> str | None:
    value = flatten_config(config).get("family")
    return str(value) if isinstance(value, str) and value else None
