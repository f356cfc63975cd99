"""The run store: one SQLite file that training runs write to and fits read from.

SQLite in WAL mode lets readers proceed while a writer commits; each write is one
``BEGIN IMMEDIATE`` transaction (the write lock is taken up front, so two writers never
deadlock upgrading a read lock), waits up to ``timeout_s`` for the lock and is retried with
backoff if it still finds the database busy. Every call opens its own connection, so a store
object can be used from forked worker processes.
"""

from __future__ import annotations

import datetime as _dt
import json
import random
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from scalinglab.data.loaders import file_format, file_format_or_none, load_observations
from scalinglab.data.schema import CANONICAL_COLUMNS, SOURCE_ROW
from scalinglab.data.validate import validate_observations
from scalinglab.errors import InputError

T = TypeVar("T")

#: what a run can be doing; "imported" marks runs created by add_observations
STATUSES: tuple[str, ...] = ("running", "finished", "failed", "interrupted", "imported")
#: columns of the observations table (family lives on the run)
STORED_COLUMNS: tuple[str, ...] = tuple(c for c in CANONICAL_COLUMNS if c != "family")
#: layout version written to SQLite's user_version (0: stores made before it was recorded)
STORE_VERSION = 1

_SCHEMA: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS runs (
        run_id TEXT PRIMARY KEY,
        family TEXT,
        config TEXT NOT NULL DEFAULT '{}',
        status TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS observations (
        run_id TEXT NOT NULL REFERENCES runs(run_id),
        params REAL,
        params_nonembedding REAL,
        tokens REAL,
        step INTEGER,
        flops REAL,
        lr REAL,
        dataset TEXT NOT NULL,
        loss REAL NOT NULL,
        seed INTEGER
    )""",
    # one measurement per (run, step, dataset); rows without a step are keyed by tokens
    """CREATE UNIQUE INDEX IF NOT EXISTS observations_by_step
        ON observations(run_id, step, dataset) WHERE step IS NOT NULL""",
    """CREATE UNIQUE INDEX IF NOT EXISTS observations_by_tokens
        ON observations(run_id, tokens, dataset) WHERE step IS NULL""",
)


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds")


def _create_schema(con: sqlite3.Connection) -> None:
    # executescript() would commit first; one statement at a time keeps it in the transaction
    for statement in _SCHEMA:
        con.execute(statement)
    con.execute(f"PRAGMA user_version = {STORE_VERSION}")


def _run_config(run_id: str, text: Any, source: str) -> dict[str, Any]:
    """A stored run config, or a clear error for one that is not a JSON object."""
    try:
        config = json.loads(text) if text is not None else {}
    except (TypeError, ValueError, RecursionError):
        config = None
    if not isinstance(config, dict):
        raise InputError(
            f"run '{run_id}': its stored config is not a JSON object ({str(text)[:60]!r}); "
            "the store was changed outside scalinglab",
            source=source,
            column="config",
        )
    return config


def _json_default(obj: Any) -> Any:
    """JSON for the numpy scalars/arrays and paths that configs tend to contain."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


def _is_busy(err: sqlite3.OperationalError) -> bool:
    text = str(err).lower()
    return "locked" in text or "busy" in text


def _names(values: str | Sequence[str] | None) -> list[str] | None:
    if values is None:
        return None
    return [values] if isinstance(values, str) else [str(v) for v in values]


class RunStore:
    """Runs and their observations in one SQLite file.

    Parameters
    ----------
    path
        The database file (created with its tables unless ``create`` is false).
    create
        Create the file if missing; with ``False`` a missing file or one that is not a run
        store is an :class:`InputError`.
    timeout_s
        How long one attempt waits for another process's write lock.
    retries
        Further attempts, with jittered exponential backoff, when the lock wait times out.

    Examples
    --------
    >>> store = RunStore("runs.sqlite")                      # doctest: +SKIP
    >>> store.add_run("gpt-20m", {"d_model": 256}, family="gpt")  # doctest: +SKIP
    >>> store.add_observations([{"run_id": "gpt-20m", "step": 100, "tokens": 1e8,
    ...                          "params": 2e7, "loss": 4.1}])  # doctest: +SKIP
    1
    """

    def __init__(
        self,
        path: str | Path,
        *,
        create: bool = True,
        timeout_s: float = 30.0,
        retries: int = 5,
    ) -> None:
        self.path = Path(path)
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        if self.path.is_dir():
            raise InputError(f"run store '{self.path}' is a folder; give a .sqlite file")
        if not create and not self.path.is_file():
            raise InputError(f"no run store at {self.path}")
        if create:
            if not self.path.exists() and file_format_or_none(self.path) != "sqlite":
                raise InputError(
                    f"a new run store must end in .sqlite, .sqlite3 or .db: {self.path}"
                )
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            tables, version = self._retry(
                lambda con: (
                    {r[0] for r in con.execute("SELECT name FROM sqlite_master")},
                    int(con.execute("PRAGMA user_version").fetchone()[0]),
                )
            )
        except sqlite3.DatabaseError as err:
            raise InputError(f"not a SQLite run store: {err}", source=self.path.name) from None
        if version > STORE_VERSION:
            raise InputError(
                f"run store version {version} was written by a newer scalinglab (this one "
                f"reads up to version {STORE_VERSION}); upgrade scalinglab",
                source=self.path.name,
            )
        if {"runs", "observations"} <= tables:
            return  # opening an existing store takes no write lock
        if tables or not create:
            raise InputError(
                "not a scalinglab run store (no runs/observations tables)", source=self.path.name
            )
        self._retry(lambda con: con.execute("PRAGMA journal_mode=WAL"))
        self._write(_create_schema)

    def __repr__(self) -> str:
        return f"RunStore({str(self.path)!r})"

    # -- connections and transactions ----------------------------------------------------

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None)
        try:
            con.execute(f"PRAGMA busy_timeout = {int(self.timeout_s * 1000)}")
            con.execute("PRAGMA foreign_keys = ON")
            yield con
        finally:
            con.close()

    def _retry(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` on a fresh connection, retrying while the database is busy."""
        for attempt in range(self.retries + 1):
            try:
                with self._connect() as con:
                    return work(con)
            except sqlite3.OperationalError as err:
                if not _is_busy(err) or attempt == self.retries:
                    raise
                time.sleep(min(0.05 * 2**attempt, 2.0) * (0.5 + random.random()))
        raise AssertionError("unreachable")  # the loop returns or raises

    def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` in one write transaction (all or nothing), with retries."""

        def transaction(con: sqlite3.Connection) -> T:
            con.execute("BEGIN IMMEDIATE")
            try:
                result = work(con)
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
            return result

        return self._retry(transaction)

    # -- runs ------------------------------------------------------------------------------

    def add_run(
        self,
        run_id: str,
        config: Mapping[str, Any],
        family: str | None = None,
        status: str = "running",
    ) -> None:
        """Register a run, or update its config, family and status if it exists.

        Parameters
        ----------
        run_id
            Unique name of the run.
        config
            Its configuration (JSON-serialisable; numpy values and paths are converted).
        family
            Runs that share a recipe and differ in scale.
        status
            One of :data:`STATUSES`.
        """
        if not isinstance(run_id, str) or not run_id:
            raise InputError(f"run_id must be a non-empty string, got {run_id!r}")
        self._check_status(status)
        try:
            config_json = json.dumps(dict(config), default=_json_default, sort_keys=True)
        except (TypeError, ValueError) as err:
            raise InputError(f"config of run '{run_id}' cannot be stored as JSON: {err}") from None
        now = _now()
        self._write(
            lambda con: con.execute(
                "INSERT INTO runs (run_id, family, config, status, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(run_id) DO UPDATE SET "
                "family = COALESCE(excluded.family, runs.family), config = excluded.config, "
                "status = excluded.status, updated_at = excluded.updated_at",
                (run_id, family, config_json, status, now, now),
            )
        )

    def set_status(self, run_id: str, status: str) -> None:
        """Set a run's status (one of :data:`STATUSES`)."""
        self._check_status(status)
        changed = self._write(
            lambda con: (
                con.execute(
                    "UPDATE runs SET status = ?, updated_at = ? WHERE run_id = ?",
                    (status, _now(), run_id),
                ).rowcount
            )
        )
        if not changed:
            raise self._unknown_run(run_id)

    def runs(self) -> pd.DataFrame:
        """All runs with their number of observations and last step/tokens.

        Returns
        -------
        pandas.DataFrame
            ``run_id, family, status, n_observations, last_step, last_tokens, created_at,
            updated_at, config`` (config as a dict), ordered by run_id.
        """
        frame = self._retry(
            lambda con: pd.read_sql_query(
                "SELECT r.run_id, r.family, r.status, COUNT(o.run_id) AS n_observations, "
                "MAX(o.step) AS last_step, MAX(o.tokens) AS last_tokens, r.created_at, "
                "r.updated_at, r.config FROM runs r LEFT JOIN observations o USING (run_id) "
                "GROUP BY r.run_id ORDER BY r.run_id",
                con,
            )
        )
        configs: list[Any] = [
            _run_config(str(r), c, self.path.name)
            for r, c in zip(frame["run_id"], frame["config"], strict=True)
        ]
        frame["config"] = configs
        return frame

    def get_run(self, run_id: str) -> dict[str, Any]:
        """One run: its fields, config, and per dataset the count and last measurement.

        Raises
        ------
        InputError
            If the store has no such run.
        """
        table = self.runs()
        match = table[table["run_id"] == run_id]
        if match.empty:
            raise self._unknown_run(run_id)
        row = match.iloc[0]
        run: dict[str, Any] = {
            "run_id": run_id,
            "family": None if pd.isna(row["family"]) else str(row["family"]),
            "status": str(row["status"]),
            "n_observations": int(row["n_observations"]),
            "created_at": str(row["created_at"]),
            "updated_at": str(row["updated_at"]),
            "config": row["config"],
        }
        obs = self.observations(run_ids=[run_id])
        # rows come ordered by step/tokens within a dataset: the last one is the latest
        last = obs.groupby("dataset", sort=True).tail(1).sort_values("dataset")
        counts = obs.groupby("dataset").size().to_dict()
        run["datasets"] = [
            {
                "dataset": str(r["dataset"]),
                "n_observations": int(counts[r["dataset"]]),
                "last_step": None if pd.isna(r["step"]) else int(r["step"]),
                "last_tokens": None if pd.isna(r["tokens"]) else float(r["tokens"]),
                "last_loss": float(r["loss"]),
            }
            for r in last[["dataset", "step", "tokens", "loss"]].to_dict("records")
        ]
        return run

    # -- observations --------------------------------------------------------------------

    def add_observations(self, data: pd.DataFrame | Iterable[Mapping[str, Any]]) -> int:
        """Validate and store observations in one transaction.

        Rows are keyed by (run_id, step, dataset), or (run_id, tokens, dataset) when they
        have no step: storing a key again replaces its row, so re-adding is idempotent and
        a resumed run may rewrite its last evaluations. Unknown runs are registered with
        status ``"imported"``. Only canonical columns are stored.

        Parameters
        ----------
        data
            A DataFrame or records with at least ``run_id``, ``loss`` and ``step`` or
            ``tokens`` (losses in nats; validated like :func:`load_observations`).

        Returns
        -------
        int
            Number of rows written.
        """
        frame = data if isinstance(data, pd.DataFrame) else pd.DataFrame(list(data))
        if frame.empty:
            return 0
        obs = load_observations(frame, required=("run_id", "loss"))
        unkeyed = (obs["step"].isna() & obs["tokens"].isna()).to_numpy()
        if unkeyed.any():
            pos = int(np.argmax(unkeyed))
            raise InputError(
                "a stored observation needs a step or a token count",
                source=obs.attrs.get("source"),
                row=int(obs[SOURCE_ROW].iloc[pos]),
                column="step",
            )
        values = [
            obs[c].astype(object).where(obs[c].notna(), None).tolist() for c in STORED_COLUMNS
        ]
        rows = list(zip(*values, strict=True))
        families = obs.groupby("run_id", sort=False)["family"].first()
        now = _now()
        run_rows = [(r, None if pd.isna(f) else f, now, now) for r, f in families.items()]
        placeholders = ", ".join("?" for _ in STORED_COLUMNS)

        def work(con: sqlite3.Connection) -> int:
            con.executemany(
                "INSERT INTO runs (run_id, family, status, created_at, updated_at) "
                "VALUES (?, ?, 'imported', ?, ?) ON CONFLICT(run_id) DO UPDATE SET "
                "family = COALESCE(runs.family, excluded.family), "
                "updated_at = excluded.updated_at",
                run_rows,
            )
            con.executemany(
                f"INSERT OR REPLACE INTO observations ({', '.join(STORED_COLUMNS)}) "
                f"VALUES ({placeholders})",
                rows,
            )
            return len(rows)

        return self._write(work)

    def observations(
        self,
        run_ids: str | Sequence[str] | None = None,
        dataset: str | Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Stored observations as a canonical Observations table.

        Parameters
        ----------
        run_ids
            Only these runs (all when ``None``); unknown ones are an :class:`InputError`.
        dataset
            Only this dataset (or these).

        Returns
        -------
        pandas.DataFrame
            As :func:`load_observations` returns, ordered by run, dataset, step, tokens;
            ``source_row`` numbers the rows in that order.
        """
        runs, datasets = _names(run_ids), _names(dataset)
        where, params = [], []
        if runs is not None:
            known = set(self.runs()["run_id"])
            unknown = [r for r in runs if r not in known]
            if unknown:
                raise self._unknown_run(unknown[0])
            where.append(f"o.run_id IN ({', '.join('?' for _ in runs)})")
            params += runs
        if datasets is not None:
            where.append(f"o.dataset IN ({', '.join('?' for _ in datasets)})")
            params += datasets
        columns = ", ".join("r.family" if c == "family" else f"o.{c}" for c in CANONICAL_COLUMNS)
        sql = (
            f"SELECT {columns} FROM observations o JOIN runs r USING (run_id)"
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + " ORDER BY o.run_id, o.dataset, o.step, o.tokens"
        )
        frame = self._retry(lambda con: pd.read_sql_query(sql, con, params=params))
        frame[SOURCE_ROW] = np.arange(1, len(frame) + 1)
        return validate_observations(frame, source=self.path.name, required=("run_id", "loss"))

    def export(self, path: str | Path) -> int:
        """Write all observations to ``.csv`` (``.csv.gz``…), ``.tsv`` or ``.parquet``.

        Returns
        -------
        int
            Number of rows written.
        """
        out = Path(path)
        fmt = file_format(out)
        if fmt not in ("csv", "tsv", "parquet"):
            raise InputError(
                f"cannot export to '{out.name}': use a .csv, .csv.gz, .tsv or .parquet file"
            )
        frame = self.observations().drop(columns=[SOURCE_ROW])
        out.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "parquet":
            frame.to_parquet(out, index=False)
        else:
            frame.to_csv(out, index=False, sep="\t" if fmt == "tsv" else ",")
        return len(frame)

    # -- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _check_status(status: str) -> None:
        if status not in STATUSES:
            raise InputError(f"status must be one of {', '.join(STATUSES)}; got {status!r}")

    def _unknown_run(self, run_id: str) -> InputError:
        """The error for a run the store lacks, naming (up to 20 of) the runs it has."""
        known = self._retry(
            lambda con: [r[0] for r in con.execute("SELECT run_id FROM runs ORDER BY run_id")]
        )
        listed = f"; it has {', '.join(known[:20])}" + (", ..." if len(known) > 20 else "")
        return InputError(
            f"no run '{run_id}' in the store{listed if known else ' (it has none)'}",
            source=self.path.name,
        )
