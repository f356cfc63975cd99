"""Reading observations from files and DataFrames into the validated long table."""

from __future__ import annotations

import re
import sqlite3
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from scalinglab.data.schema import DEFAULT_REQUIRED, SOURCE_ROW, LossUnit, OnInvalid
from scalinglab.data.validate import validate_observations
from scalinglab.errors import InputError
from scalinglab.user_input import check_input_file

#: compression suffixes pandas understands; the format is named by the suffix before them
_COMPRESSION = (".gz", ".bz2", ".xz", ".zst", ".zip")
_FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".sqlite": "sqlite",
    ".sqlite3": "sqlite",
    ".db": "sqlite",
}


#: a PostgreSQL URL; a Path collapses its "//" into "/", which store_url undoes
_STORE_URL = re.compile(r"^(postgres(?:ql)?):/+(.*)$", re.IGNORECASE)


def store_url(source: str | Path | pd.DataFrame) -> str | None:
    """The PostgreSQL URL ``source`` names (``postgresql://user@host/db``), else ``None``.

    A command-line argument typed as a path arrives with its ``//`` collapsed
    (``postgresql:/user@host/db``); the URL is rebuilt from it: with a host when the text
    after the scheme holds a ``/`` before any ``?``, else as ``postgresql:///db`` (the local
    socket). A store URL therefore always names its database.
    """
    if isinstance(source, pd.DataFrame):
        return None
    text = str(source)
    match = _STORE_URL.match(text)
    if match is None:
        return None
    if isinstance(source, str) and "://" in text:
        return text
    rest = match.group(2)
    has_host = "/" in rest.split("?", 1)[0]
    return f"postgresql://{rest}" if has_host else f"postgresql:///{rest}"


def masked_url(url: str) -> str:
    """``url`` without its password, for messages."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def file_format(path: str | Path) -> str:
    """Format of a data file from its suffix (compression suffixes skipped).

    Returns one of ``csv``, ``tsv``, ``parquet``, ``jsonl``, ``json``, ``sqlite``.

    Raises
    ------
    InputError
        For a suffix no reader handles (the message lists the supported ones).
    """
    suffixes = [s.lower() for s in Path(path).suffixes]
    while suffixes and suffixes[-1] in _COMPRESSION:
        suffixes.pop()
    fmt = _FORMATS.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        raise InputError(
            f"cannot tell the format of '{Path(path).name}'; supported suffixes: "
            f"{', '.join(_FORMATS)} (optionally compressed: {', '.join(_COMPRESSION)})"
        )
    return fmt


def file_format_or_none(path: str | Path) -> str | None:
    """:func:`file_format`, or ``None`` for a suffix no reader handles."""
    try:
        return file_format(path)
    except InputError:
        return None


def read_table(path: Path) -> pd.DataFrame:
    """Read a data file as the user wrote it (no renaming, no validation).

    For callers that must select rows before validation (e.g. per-family unit conversion).
    """
    url = store_url(path)
    if url is not None:
        from scalinglab.data.store import RunStore

        return RunStore(url, create=False).observations()
    if path.is_dir():
        check_input_file(path, "data")  # says it is a directory, whatever its suffix
    fmt = file_format(path)
    check_input_file(path, "data")
    if fmt == "sqlite":
        from scalinglab.data.store import RunStore

        return RunStore(path, create=False).observations()
    try:
        if fmt in ("csv", "tsv"):
            return pd.read_csv(path, sep="\t" if fmt == "tsv" else ",", low_memory=False)
        if fmt == "parquet":
            return pd.read_parquet(path)
        # dtype=False keeps ids such as "007" as text; numbers are checked column by column
        raw = pd.read_json(path, lines=fmt == "jsonl", dtype=False)
        return raw.infer_objects()
    except pd.errors.EmptyDataError:
        raise InputError("the file is empty", source=path.name) from None
    except (ValueError, OSError, pd.errors.ParserError, sqlite3.DatabaseError) as err:
        raise InputError(f"cannot read the file as {fmt}: {err}", source=path.name) from None


def _rename(
    raw: pd.DataFrame, columns: Mapping[str, str] | None, source: str
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Apply the user's column mapping; return the frame and canonical → user's names."""
    if not columns:
        return raw, {}
    unknown = [c for c in columns if c not in raw.columns]
    if unknown:
        raise InputError(
            f"columns= names {', '.join(map(repr, unknown))}, which the data lack; the data "
            f"have columns {', '.join(map(str, raw.columns))}",
            source=source,
        )
    renamed = [str(c) if c not in columns else columns[c] for c in raw.columns]
    clashes = sorted({c for c in renamed if renamed.count(c) > 1})
    if clashes:
        raise InputError(
            f"after columns= renaming, several columns are named {', '.join(clashes)}; "
            "map only one column to each name",
            source=source,
        )
    frame = raw.copy()
    frame.columns = pd.Index(renamed)
    return frame, {ours: str(theirs) for theirs, ours in columns.items()}


def _melt_wide(
    frame: pd.DataFrame, wide: Sequence[str], source: str
) -> tuple[pd.DataFrame, list[str], int]:
    """Melt one-loss-column-per-dataset into (dataset, loss) rows, row-major.

    Empty cells are measurements that were not made: they give no row and are counted.
    """
    wide = list(wide)
    absent = [c for c in wide if c not in frame.columns]
    if absent:
        raise InputError(
            f"wide= names {', '.join(map(repr, absent))}, which the data lack; the data have "
            f"columns {', '.join(map(str, frame.columns))}",
            source=source,
        )
    for col in ("loss", "dataset"):
        if col in frame.columns and col not in wide:
            raise InputError(
                f"the data already have a '{col}' column and wide= would create another; "
                f"list '{col}' in wide= or rename it with columns=",
                source=source,
            )
    ids = [c for c in frame.columns if c not in wide]
    long = frame.melt(id_vars=ids, value_vars=wide, var_name="dataset", value_name="loss")
    long = long.sort_values(SOURCE_ROW, kind="stable")
    empty = long["loss"].isna().to_numpy()
    long = long[~empty].reset_index(drop=True)
    return long, long["dataset"].astype(str).tolist(), int(empty.sum())


def load_observations(
    source: str | Path | pd.DataFrame,
    *,
    columns: Mapping[str, str] | None = None,
    wide: Sequence[str] | None = None,
    loss_unit: LossUnit = "nats",
    dataset: str | None = None,
    required: Sequence[str] = DEFAULT_REQUIRED,
    on_invalid: OnInvalid = "raise",
) -> pd.DataFrame:
    """Load and validate observations into the canonical long table.

    Parameters
    ----------
    source
        A file (CSV, TSV, Parquet, JSON Lines, a JSON array of records, each optionally
        compressed, e.g. ``.csv.gz``; or a run store ``.sqlite``/``.sqlite3``/``.db``) or a
        pandas DataFrame.
    columns
        The user's column names → ours, e.g. ``{"Model Size": "params"}``.
    wide
        Loss columns to melt into rows: each becomes ``dataset`` = the column name and
        ``loss`` = its value. Empty cells give no row (counted in ``attrs["wide_missing"]``).
    loss_unit
        Unit of the loss values: ``"nats"`` per token, ``"bits"`` per token, or
        ``"perplexity"``; the result is always nats per token.
    dataset
        Dataset name for rows that have none (default ``"train"``).
    required
        Columns that must be present and filled in every row.
    on_invalid
        ``"raise"`` (default): an :class:`~scalinglab.errors.InputError` on the first
        invalid value. ``"drop"``: remove rows with invalid values, warn, and summarise them
        in ``attrs["dropped"]`` (structural problems such as a missing column still raise).

    Returns
    -------
    pandas.DataFrame
        Columns ``run_id, family, params, params_nonembedding, tokens, step, flops, lr,
        dataset, loss, seed`` (absent optional ones all NaN; ``step``/``seed`` are int64
        when complete), ``source_row`` (the 1-based data row in the source: the first line
        after a CSV header is row 1; for a DataFrame, its position, unless it already has a
        ``source_row`` column, which is kept), then the source's other columns.
        ``attrs``: ``source`` (file name), ``loss_unit``, ``derived`` (columns filled in),
        ``duplicates_collapsed``, and ``wide_missing``/``dropped`` when they apply.

    Notes
    -----
    Filled-in columns: without ``run_id``, each distinct (family, params,
    params_nonembedding, seed) combination is one run (see
    :func:`~scalinglab.data.validate.derive_run_ids`); without ``tokens`` but with ``flops``
    and ``params``, ``tokens = flops / (6 params)``; ``flops`` defaults to
    ``6 params tokens`` (also for its empty cells). Repeated (run_id, tokens, dataset)
    rows with equal losses are collapsed into one; with different losses they are an error.
    Losses above 20 nats per token are rejected as probable perplexities.

    Raises
    ------
    InputError
        Unreadable or unknown file, missing column, invalid value (with file, row, column
        and value), conflicting duplicates.
    """
    if isinstance(source, pd.DataFrame):
        name = str(source.attrs.get("source", "<DataFrame>"))
        raw = source.copy()
        if SOURCE_ROW not in raw.columns:
            raw[SOURCE_ROW] = np.arange(1, len(raw) + 1)
    else:
        url = store_url(source)
        path = Path(source)
        name = path.name if url is None else masked_url(url)
        raw = read_table(path)
        raw[SOURCE_ROW] = np.arange(1, len(raw) + 1)
    if raw.empty:
        raise InputError("no data rows", source=name)
    frame, labels = _rename(raw, columns, name)
    loss_labels = None
    wide_missing = 0
    if wide:
        frame, loss_labels, wide_missing = _melt_wide(frame, wide, name)
    out = validate_observations(
        frame,
        source=name,
        required=required,
        loss_unit=loss_unit,
        dataset=dataset,
        on_invalid=on_invalid,
        labels=labels,
        loss_labels=loss_labels,
    )
    if wide:
        out.attrs["wide_missing"] = wide_missing
    return out
