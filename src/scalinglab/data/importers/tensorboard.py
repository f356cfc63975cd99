"""TensorBoard event files: every scalar point, no reservoir sampling.

Event files are TFRecord files (``uint64 length, uint32 masked CRC-32C of the length, data,
uint32 masked CRC-32C of the data``) of ``Event`` protocol buffers, decoded with TensorBoard's
own ``event_pb2``. The framing is read here and both checksums are verified for all records
at once with numpy (TensorBoard's pure-Python reader checks them byte by byte, and its
``EventAccumulator`` keeps only 10,000 points per tag by default). A scalar is a
``simple_value`` (``SummaryWriter.add_scalar``) or a scalar tensor (TensorFlow 2,
``new_style=True``); hyper-parameters written by the hparams plugin become the run's config.

A log directory holds one run per folder that has event files (the run is named by the
folder's path below the directory); its files are read in name order, which is time order.
"""

from __future__ import annotations

import struct
from array import array
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scalinglab.data.importers.base import RawRun, require
from scalinglab.errors import InputError

EXTRA = "tensorboard"
_CASTAGNOLI = 0x82F63B78
_MASK_DELTA = 0xA282EAD8
#: records whose checksums are verified together
_CHUNK = 65536
_KINDS = {"histo": "histogram", "image": "image", "audio": "audio", "tensor": "tensor"}


def _crc_table() -> np.ndarray:
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(_CASTAGNOLI), table >> 1)
    return table.astype(np.uint32)


_TABLE = _crc_table()


def masked_crc32c(buffer: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """TFRecord's masked CRC-32C of ``buffer[starts[i] : starts[i] + lengths[i]]`` for all i.

    One pass per byte position over every record still that long (records sorted by
    length), so a million short records cost a few dozen numpy operations.
    """
    order = np.argsort(-lengths, kind="stable")
    sorted_starts, sorted_lengths = starts[order], lengths[order]
    crc = np.full(len(starts), 0xFFFFFFFF, dtype=np.uint32)
    # number of records longer than j, for every byte position j
    active = np.searchsorted(-sorted_lengths, -np.arange(int(lengths.max(initial=0))), "left")
    for j, count in enumerate(active):
        byte = buffer[sorted_starts[:count] + j]
        crc[:count] = _TABLE[(crc[:count] ^ byte) & 0xFF] ^ (crc[:count] >> 8)
    crc ^= np.uint32(0xFFFFFFFF)
    masked = ((crc >> 15) | (crc << 17)) + np.uint32(_MASK_DELTA)
    out = np.empty_like(masked)
    out[order] = masked
    return out


def _frames(data: bytes, name: str, dropped: Counter[str]) -> Iterator[tuple[int, int]]:
    """Start and length of every intact record, checked ``_CHUNK`` records at a time (so
    memory stays bounded); damaged records are counted in ``dropped``."""
    buffer = np.frombuffer(data, dtype=np.uint8)
    unpack = struct.Struct("<Q").unpack_from
    size, pos = len(data), 0
    while True:
        offsets: list[int] = []
        lengths: list[int] = []
        while pos + 12 <= size and len(offsets) < _CHUNK:
            (length,) = unpack(data, pos)
            if pos + 16 + length > size:
                break
            offsets.append(pos)
            lengths.append(length)
            pos += 16 + length
        if not offsets:
            break
        start = np.asarray(offsets, dtype=np.int64)
        length = np.asarray(lengths, dtype=np.int64)
        stored = buffer[(start + 8)[:, None] + np.arange(4)].copy().view("<u4")[:, 0]
        header_ok = masked_crc32c(buffer, start, np.full_like(length, 8)) == stored
        stored = buffer[(start + 12 + length)[:, None] + np.arange(4)].copy().view("<u4")[:, 0]
        data_ok = masked_crc32c(buffer, start + 12, length) == stored
        bad = ~(header_ok & data_ok)
        if bad.any():
            dropped[f"corrupt record in {name} (checksum mismatch)"] += int(bad.sum())
        yield from zip((start[~bad] + 12).tolist(), length[~bad].tolist(), strict=True)
    if pos < size:
        dropped[f"truncated record at the end of {name} (the writer stopped mid-write)"] += 1


def _hparams(content: bytes, plugin_data_pb2: Any) -> dict[str, Any]:
    data = plugin_data_pb2.HParamsPluginData.FromString(content)
    if data.WhichOneof("data") != "session_start_info":
        return {}
    out: dict[str, Any] = {}
    for key, value in data.session_start_info.hparams.items():
        kind = value.WhichOneof("kind")
        if kind is not None and kind != "null_value":
            out[key] = getattr(value, kind)
    return out


def _tensor_scalar(tensor: Any) -> float | None:
    """The value of a scalar tensor summary (TF2 / ``new_style``), or ``None``."""
    if tensor.tensor_shape.dim:
        return None
    for values in (tensor.float_val, tensor.double_val, tensor.int64_val, tensor.int_val):
        if len(values) == 1:
            return float(values[0])
    dtypes = {1: "<f4", 2: "<f8", 3: "<i4", 9: "<i8"}  # DT_FLOAT, DT_DOUBLE, DT_INT32, DT_INT64
    if tensor.tensor_content and tensor.dtype in dtypes:
        values = np.frombuffer(tensor.tensor_content, dtype=dtypes[tensor.dtype])
        return float(values[0]) if values.size == 1 else None
    return None


def read_event_files(files: list[Path], run_id: str, source: str) -> RawRun:
    """One run from its event files (read in the order given)."""
    event_pb2 = require("tensorboard.compat.proto.event_pb2", EXTRA, "reading TensorBoard logs")
    plugin_data_pb2 = require(
        "tensorboard.plugins.hparams.plugin_data_pb2", EXTRA, "reading TensorBoard logs"
    )
    start_status = event_pb2.SessionLog.START
    parse = event_pb2.Event.FromString
    # points as compact arrays (tag codes, steps, values): a million points take 20 MB
    codes: dict[str, int] = {}
    tags = array("i")
    steps = array("q")
    values = array("d")
    restarts: list[tuple[int, int]] = []
    dropped: Counter[str] = Counter()
    config: dict[str, Any] = {}
    for path in files:
        data = path.read_bytes()
        for start, length in _frames(data, path.name, dropped):
            try:
                event = parse(data[start : start + length])
            except Exception:  # protobuf's DecodeError: the checksum passed but not the schema
                dropped[f"record of {path.name} is not a TensorBoard event"] += 1
                continue
            what = event.WhichOneof("what")
            if what == "session_log":
                if event.session_log.status == start_status:
                    restarts.append((len(tags), event.step))
                continue
            if what != "summary":
                continue
            for value in event.summary.value:
                kind = value.WhichOneof("value")
                if kind == "simple_value":
                    tags.append(codes.setdefault(value.tag, len(codes)))
                    steps.append(event.step)
                    values.append(value.simple_value)
                    continue
                plugin = value.metadata.plugin_data.plugin_name
                if plugin == "hparams":
                    config.update(_hparams(value.metadata.plugin_data.content, plugin_data_pb2))
                    continue
                scalar = _tensor_scalar(value.tensor) if kind == "tensor" else None
                if scalar is None or plugin not in ("", "scalars"):
                    label = plugin or _KINDS.get(kind or "", kind or "empty")
                    dropped[f"not a scalar ({label} summary)"] += 1
                    continue
                tags.append(codes.setdefault(value.tag, len(codes)))
                steps.append(event.step)
                values.append(scalar)
    return RawRun(
        run_id=run_id,
        source=source,
        points=pd.DataFrame(
            {
                "metric": pd.Categorical.from_codes(
                    np.frombuffer(tags, np.int32), categories=pd.Index(list(codes))
                ),
                "step": np.frombuffer(steps, np.int64),
                "value": np.frombuffer(values, np.float64),
            }
        ),
        config=config,
        restarts=restarts,
        dropped=dropped,
    )


def is_event_file(path: Path) -> bool:
    """Whether a file is named as TensorBoard names event files."""
    return ".tfevents." in path.name or path.name.startswith("events.out.tfevents")


def read_tensorboard(path: Path) -> list[RawRun]:
    """Runs from an event file or a log directory (one run per folder with event files).

    Raises
    ------
    InputError
        When the path holds no event files.
    """
    if path.is_file():
        return [read_event_files([path], path.parent.name or path.stem, str(path))]
    by_folder: dict[Path, list[Path]] = {}
    for file in sorted(path.rglob("*")):
        if file.is_file() and is_event_file(file):
            by_folder.setdefault(file.parent, []).append(file)
    if not by_folder:
        raise InputError(f"no TensorBoard event files (*.tfevents.*) under {path}")
    runs = []
    for folder, files in sorted(by_folder.items()):
        relative = folder.relative_to(path).as_posix()
        run_id = path.resolve().name if relative == "." else relative
        runs.append(read_event_files(sorted(files), run_id, str(folder)))
    return runs
