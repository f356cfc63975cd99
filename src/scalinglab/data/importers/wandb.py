"""Weights & Biases runs: offline run folders, history exports, and the W&B API.

* **Offline runs** (``wandb/offline-run-…/run-ID.wandb``, written with ``WANDB_MODE=offline``):
  the ``.wandb`` file is W&B's transaction log, the LevelDB log format (32 KiB blocks of
  CRC-32-checked chunks) behind a ``:W&B`` header, whose records are W&B's own ``Record``
  protocol buffers (``wandb.proto.wandb_internal_pb2``); wandb ≥ 0.19 reads it only in its
  Go core, so the framing is read here and the records with wandb's protobuf classes.
* **Exports**: a run's history as CSV or Parquet (``run.history()``/``scan_history()``
  tables, with a ``_step`` column), or a chart's CSV export (``Step`` and
  ``RUN - METRIC`` columns; its ``__MIN``/``__MAX`` columns are bucket ranges, not points).
* **Online** (``wandb://ENTITY/PROJECT[/RUN_ID]``): ``wandb.Api`` and ``scan_history``,
  which returns every logged row (``history()`` returns a sample).

``_step`` counts ``wandb.log`` calls; when the history has a ``global_step`` metric
(``train/global_step`` from the Hugging Face integration, ``trainer/global_step`` from
Lightning) its values are the steps (``--step-metric`` chooses another). W&B's own
columns (``_step``, ``_runtime``, ``_timestamp``, ``_wandb``) are bookkeeping, not points.
"""

from __future__ import annotations

import json
import re
import struct
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scalinglab.data.importers.base import RawRun, points_frame, require
from scalinglab.errors import InputError

EXTRA = "wandb"
_BLOCK = 32768
_HEADER = struct.Struct("<4sHB")
_CHUNK = struct.Struct("<IHB")
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4
_STEP_CANDIDATES = ("global_step",)
_CHART_COLUMN = re.compile(r"^(?P<run>.+) - (?P<metric>.+?)(?P<bucket>__MIN|__MAX)?$")
NOT_A_NUMBER = "not a number (W&B media, text or a table)"


def _records(path: Path, dropped: Counter[str]) -> Iterator[bytes]:
    """The records of a ``.wandb`` file (LevelDB log format behind W&B's header)."""
    data = path.read_bytes()
    if len(data) < _HEADER.size or _HEADER.unpack_from(data)[0] != b":W&B":
        raise InputError("not a W&B transaction log (no ':W&B' header)", source=str(path))
    pos, pending = _HEADER.size, b""
    while pos + _CHUNK.size <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _CHUNK.size:  # a block's tail too short for a chunk header is padding
            pos += left
            continue
        checksum, length, kind = _CHUNK.unpack_from(data, pos)
        if length == 0 and kind == 0:  # zero padding at the end of a block
            pos += left
            continue
        chunk = data[pos + _CHUNK.size : pos + _CHUNK.size + length]
        pos += _CHUNK.size + length
        if len(chunk) < length:
            dropped[f"truncated record at the end of {path.name} (wandb stopped mid-write)"] += 1
            return
        if zlib.crc32(chunk, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF != checksum:
            dropped[f"corrupt record in {path.name} (checksum mismatch)"] += 1
            pending = b""
            continue
        if kind == _FULL:
            yield chunk
        elif kind == _FIRST:
            pending = chunk
        elif kind == _MIDDLE:
            pending += chunk
        elif kind == _LAST:
            yield pending + chunk
            pending = b""


def _items(items: Iterable[Any]) -> dict[str, Any]:
    """W&B ``key``/``nested_key`` items with JSON values as a flat dict (nested keys: ``.``).

    A logged object (histogram, image, table) arrives as several nested items, one of them
    ``_type``: it is gathered back into one dict value.
    """
    out: dict[str, Any] = {}
    media: dict[str, dict[str, Any]] = {}
    for item in items:
        parts = [item.key] if item.key else list(item.nested_key)
        value = json.loads(item.value_json)
        out[".".join(parts)] = value
        if len(parts) > 1:
            media.setdefault(".".join(parts[:-1]), {})[parts[-1]] = value
    for prefix, fields in media.items():
        if "_type" in fields:
            for name in fields:
                out.pop(f"{prefix}.{name}")
            out[prefix] = fields
    return out


def read_offline_run(path: Path) -> RawRun:
    """One offline run from its ``run-ID.wandb`` file."""
    pb = require("wandb.proto.wandb_internal_pb2", EXTRA, "reading W&B runs")
    dropped: Counter[str] = Counter()
    rows: list[dict[str, Any]] = []
    config: dict[str, Any] = {}
    name, wandb_id = None, path.stem.removeprefix("run-")
    for data in _records(path, dropped):
        record = pb.Record.FromString(data)
        kind = record.WhichOneof("record_type")
        if kind == "history":
            row = _items(record.history.item)
            row.setdefault("_step", record.history.step.num)
            rows.append(row)
        elif kind == "run":
            name = record.run.display_name or None
            wandb_id = record.run.run_id or wandb_id
            config.update(_items(record.run.config.update))
        elif kind == "config":
            config.update(_items(record.config.update))
    config.pop("_wandb", None)
    run = history_run(rows, name or wandb_id, str(path), config)
    run.dropped.update(dropped)
    run.config["wandb"] = {"run_id": wandb_id}
    run.uid = wandb_id
    return run


def read_offline_runs(files: list[Path]) -> list[RawRun]:
    """Offline runs from their ``.wandb`` files; a resumed run's segments become one run.

    ``wandb.init(id=…, resume=…)`` offline writes each segment to its own
    ``offline-run-TIME-ID`` folder: the segments are joined in time order (the folder names),
    and the restart rule keeps each segment's points over the previous one's.
    """
    by_id: dict[str | None, list[RawRun]] = {}
    for path in sorted(files, key=lambda p: p.parent.name):
        run = read_offline_run(path)
        by_id.setdefault(run.uid, []).append(run)
    out = []
    for segments in by_id.values():
        first = segments[0]
        for later in segments[1:]:
            first.points = pd.concat([first.points, later.points], ignore_index=True)
            first.config.update(later.config)
            first.dropped.update(later.dropped)
            first.run_id = later.run_id
            first.source += f", {later.source}"
        if len(segments) > 1:
            first.notes.append(f"joined {len(segments)} resumed segments of W&B run {first.uid}")
        out.append(first)
    return out


def history_run(
    rows: Iterable[Mapping[str, Any]], run_id: str, source: str, config: dict[str, Any]
) -> RawRun:
    """A run from W&B history rows (dicts with ``_step``), as offline files and the API give."""
    metric: list[str] = []
    step: list[int] = []
    value: list[float] = []
    dropped: Counter[str] = Counter()
    for row in rows:
        at = int(row["_step"])
        for key, item in row.items():
            if key.startswith("_") or item is None:
                continue
            if isinstance(item, bool) or not isinstance(item, int | float):
                dropped[NOT_A_NUMBER] += 1
                continue
            metric.append(key)
            step.append(at)
            value.append(float(item))
    return RawRun(
        run_id=run_id,
        source=source,
        points=points_frame(metric, step, value),
        config=config,
        dropped=dropped,
        step_candidates=_STEP_CANDIDATES,
    )


def offline_run_files(path: Path) -> list[Path]:
    """``run-*.wandb`` files at or below ``path`` (a file, a run folder or a ``wandb`` folder)."""
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*.wandb") if p.is_file())


def read_export(path: Path) -> list[RawRun]:
    """Runs from a CSV or Parquet export of W&B history (see the module docstring)."""
    from scalinglab.data.loaders import read_table

    table = read_table(path)
    if "_step" in table.columns:
        rows = (
            {str(k): (None if _missing(v) else v) for k, v in r.items()}
            for r in table.to_dict("records")
        )
        return [history_run(rows, path.name.split(".")[0], str(path), {})]
    step_column = next((c for c in table.columns if str(c).lower() == "step"), None)
    charted = {c: _CHART_COLUMN.match(str(c)) for c in table.columns if c != step_column}
    if step_column is None or not charted or not all(charted.values()):
        raise InputError(
            "not a W&B history export: expected a '_step' column (run.history(), "
            "scan_history()) or a chart export's 'Step' and 'RUN - METRIC' columns",
            source=path.name,
        )
    steps = table[step_column].to_numpy()
    runs: dict[str, tuple[list[str], list[int], list[float], Counter[str]]] = {}
    for column, match in charted.items():
        assert match is not None
        metric, step, value, dropped = runs.setdefault(match["run"], ([], [], [], Counter()))
        cells = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=float)
        given = table[column].notna().to_numpy()
        if match["bucket"]:
            dropped["W&B chart export's bucket minimum/maximum, not a measurement"] += int(
                given.sum()
            )
            continue
        present = ~np.isnan(cells)
        dropped[NOT_A_NUMBER] += int((given & ~present).sum())
        metric += [match["metric"]] * int(present.sum())
        step += steps[present].astype(np.int64).tolist()
        value += cells[present].tolist()
    return [
        RawRun(
            run_id=run,
            source=str(path),
            points=points_frame(m, s, v),
            dropped=d,
            step_candidates=_STEP_CANDIDATES,
            notes=[
                "a chart export holds the points the chart drew; W&B samples long "
                "histories there: export with scan_history() for every point"
            ],
        )
        for run, (m, s, v, d) in runs.items()
    ]


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def read_online(path: str) -> list[RawRun]:
    """Runs of ``ENTITY/PROJECT`` (every run) or ``ENTITY/PROJECT/RUN_ID`` through the API."""
    wandb = require("wandb", EXTRA, "reading W&B runs")
    parts = path.strip("/").split("/")
    if len(parts) not in (2, 3):
        raise InputError(f"a W&B path is wandb://ENTITY/PROJECT[/RUN_ID], got wandb://{path}")
    try:
        api = wandb.Api()
        runs = [api.run(path)] if len(parts) == 3 else list(api.runs("/".join(parts)))
    except Exception as err:  # the API raises its own CommError, ValueError...
        raise InputError(f"cannot read W&B runs at {path}: {err}") from None
    out = []
    for run in runs:
        config = {k: v for k, v in dict(run.config).items() if not k.startswith("_")}
        config["wandb"] = {"run_id": run.id, "path": "/".join(run.path)}
        raw = history_run(run.scan_history(), run.name or run.id, f"wandb://{path}", config)
        raw.uid = run.id
        out.append(raw)
    return out
