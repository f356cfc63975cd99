"""The run store: where training runs write their observations and fits read them.

Two backends with one schema and the same guarantees:

* **SQLite** (a file path, the default): WAL mode lets readers proceed while a writer
  commits; each write is one ``BEGIN IMMEDIATE`` transaction (the write lock is taken up
  front, so two writers never deadlock upgrading a read lock), waits up to ``timeout_s`` for
  the lock and is retried with backoff if it still finds the database busy. Safe for many
  processes on one machine; not on a network filesystem shared by several hosts.
* **PostgreSQL** (a ``postgresql://user@host/db`` URL, with the ``postgres`` extra): for
  runs on many hosts (Slurm, Ray). Each write is one transaction; serialisation failures,
  deadlocks and lost connections are retried with backoff. Every write is an idempotent
  upsert, so retrying one whose commit may or may not have landed is safe.

Every write is one transaction: a checkpoint's observations (and the run's status, when it
changes with them) are stored all together or not at all. The schema is versioned
(:data:`SCHEMA_VERSION`, in the ``scalinglab_schema`` table); opening an older store upgrades
it in one transaction, and a store written by a newer scalinglab is refused.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import random
import sqlite3
import threading
import time
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from scalinglab.data.loaders import (
    file_format,
    file_format_or_none,
    load_observations,
    masked_url,
    store_url,
)
from scalinglab.data.schema import CANONICAL_COLUMNS, SOURCE_ROW
from scalinglab.data.validate import validate_observations
from scalinglab.errors import InputError

T = TypeVar("T")

#: what a run can be doing; "imported" marks runs created by add_observations
STATUSES: tuple[str, ...] = ("running", "finished", "failed", "interrupted", "imported")
#: columns of the observations table (family lives on the run)
STORED_COLUMNS: tuple[str, ...] = tuple(c for c in CANONICAL_COLUMNS if c != "family")
#: columns of the runs table, in the order :meth:`RunStore.copy_to` moves them
RUN_COLUMNS: tuple[str, ...] = (
    "run_id", "family", "config", "status", "job", "created_at", "updated_at",
)  # fmt: skip
#: the schema version this code writes; older stores are upgraded when opened
SCHEMA_VERSION = 2
#: the environment variable naming the store when a command is given none
STORE_ENV = "SCALINGLAB_STORE"

#: statements that take a store from version ``v - 1`` to ``v``. Version 1 is the schema of
#: the first releases (they kept no version table); 2 records where each run last ran.
#: DOUBLE PRECISION and BIGINT keep float64 and int64 on PostgreSQL; SQLite reads them as
#: its REAL and INTEGER.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
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
            params DOUBLE PRECISION,
            params_nonembedding DOUBLE PRECISION,
            tokens DOUBLE PRECISION,
            step BIGINT,
            flops DOUBLE PRECISION,
            lr DOUBLE PRECISION,
            dataset TEXT NOT NULL,
            loss DOUBLE PRECISION NOT NULL,
            seed BIGINT
        )""",
        # one measurement per (run, step, dataset); rows without a step are keyed by tokens
        """CREATE UNIQUE INDEX IF NOT EXISTS observations_by_step
            ON observations(run_id, step, dataset) WHERE step IS NOT NULL""",
        """CREATE UNIQUE INDEX IF NOT EXISTS observations_by_tokens
            ON observations(run_id, tokens, dataset) WHERE step IS NULL""",
    ),
    2: ("ALTER TABLE runs ADD COLUMN job TEXT",),
}
_VERSION_TABLE = "scalinglab_schema"

# Upserts of observation rows, one per unique index (a conflict target names one index).
_UPDATE_ALL = ", ".join(f"{c} = excluded.{c}" for c in STORED_COLUMNS if c != "run_id")
_INSERT_OBSERVATION = (
    f"INSERT INTO observations ({', '.join(STORED_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in STORED_COLUMNS)}) "
)
_UPSERT_BY_STEP = (
    _INSERT_OBSERVATION + "ON CONFLICT (run_id, step, dataset) WHERE step IS NOT NULL "
    f"DO UPDATE SET {_UPDATE_ALL}"
)
_UPSERT_BY_TOKENS = (
    _INSERT_OBSERVATION + "ON CONFLICT (run_id, tokens, dataset) WHERE step IS NULL "
    f"DO UPDATE SET {_UPDATE_ALL}"
)


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds")


def _damaged(err: Exception) -> bool:
    """Whether ``err`` says a SQLite store lost part of its schema or was damaged (a file
    that is no database at all is refused when it is opened)."""
    text = str(err).lower()
    return isinstance(err, sqlite3.DatabaseError) and any(
        what in text for what in ("no such table", "no such column", "malformed")
    )


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


def _names(values: str | Sequence[str] | None) -> list[str] | None:
    if values is None:
        return None
    return [values] if isinstance(values, str) else [str(v) for v in values]


def default_store() -> str | None:
    """The store a command uses when given none: ``$SCALINGLAB_STORE`` (``None`` if unset)."""
    return os.environ.get(STORE_ENV, "").strip() or None


def is_store(source: str | Path) -> bool:
    """Whether ``source`` names a run store (a PostgreSQL URL or a SQLite file name)."""
    if store_url(source) is not None:
        return True
    try:
        return file_format(source) == "sqlite"
    except InputError:
        return False


# -- backends ----------------------------------------------------------------------------


class _Backend(ABC):
    """What differs between SQLite and PostgreSQL: connections, locks, retryable errors.

    Each process and thread keeps one connection per store object, made on first use and
    remade when lost (a connection per write would cost a PostgreSQL session, or a SQLite
    WAL checkpoint at every close).
    """

    #: shown in messages: a file name or a URL without its password
    label: str

    def __init__(self) -> None:
        self._local = threading.local()

    @abstractmethod
    def _open_connection(self) -> Any:
        """A new connection in autocommit mode."""

    @abstractmethod
    def _broken(self, con: Any) -> bool:
        """Whether ``con`` can no longer be used (after an error on it)."""

    def close(self) -> None:
        """Close this process and thread's connection, if open."""
        local = self._local
        if getattr(local, "pid", None) == os.getpid() and local.con is not None:
            con, local.con = local.con, None
            con.close()

    @contextmanager
    def connection(self) -> Iterator[Any]:
        """This process and thread's connection."""
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            # a connection inherited through fork belongs to the parent: never use or close it
            # here (closing would end the parent's PostgreSQL session, or checkpoint its WAL)
            if getattr(local, "con", None) is not None:
                _INHERITED.append(local.con)
            local.con, local.pid = None, os.getpid()
        if local.con is None:
            local.con = self._open_connection()
        try:
            yield local.con
        except Exception:
            if self._broken(local.con):
                local.con = None  # the retry opens a new one
            raise

    @abstractmethod
    def begin_write(self, con: Any) -> None:
        """Open a write transaction."""

    @abstractmethod
    def lock_schema(self, con: Any) -> None:
        """Inside a write transaction: serialise schema upgrades between processes."""

    @abstractmethod
    def rollback(self, con: Any) -> None:
        """Roll back the open transaction, if any (never raises)."""

    @abstractmethod
    def retryable(self, err: BaseException) -> bool:
        """Whether ``err`` is transient (a lock wait, a lost connection): worth a retry."""

    @abstractmethod
    def table_names(self, con: Any) -> set[str]:
        """Tables of the store's schema."""

    @abstractmethod
    def sql(self, statement: str) -> str:
        """``statement`` (written with ``?`` placeholders) in this driver's style."""

    def query(self, con: Any, statement: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        """Rows of a SELECT as a DataFrame (numbers as floats where a column has gaps)."""
        cursor = con.execute(self.sql(statement), tuple(params))
        columns = [d[0] for d in cursor.description]
        return pd.DataFrame.from_records(cursor.fetchall(), columns=columns, coerce_float=True)

    def execute(self, con: Any, statement: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; the number of rows it changed."""
        return int(con.execute(self.sql(statement), tuple(params)).rowcount)

    def executemany(self, con: Any, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement for every row."""
        if rows:
            con.cursor().executemany(self.sql(statement), rows)


class _SQLite(_Backend):
    def __init__(self, path: Path, timeout_s: float) -> None:
        super().__init__()
        self.path = path
        self.timeout_s = timeout_s
        self.label = path.name

    def _open_connection(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None)
        con.execute(f"PRAGMA busy_timeout = {int(self.timeout_s * 1000)}")
        con.execute("PRAGMA foreign_keys = ON")
        return con

    def _broken(self, con: sqlite3.Connection) -> bool:
        return False  # an error leaves a SQLite connection usable (after the rollback)

    def begin_write(self, con: sqlite3.Connection) -> None:
        con.execute("BEGIN IMMEDIATE")  # the write lock now: one writer at a time

    def lock_schema(self, con: sqlite3.Connection) -> None:
        pass  # BEGIN IMMEDIATE already excludes every other writer

    def rollback(self, con: sqlite3.Connection) -> None:
        if con.in_transaction:
            con.execute("ROLLBACK")

    def retryable(self, err: BaseException) -> bool:
        text = str(err).lower()
        return isinstance(err, sqlite3.OperationalError) and ("locked" in text or "busy" in text)

    def table_names(self, con: sqlite3.Connection) -> set[str]:
        return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def sql(self, statement: str) -> str:
        return statement


class _Postgres(_Backend):
    def __init__(self, url: str, timeout_s: float) -> None:
        super().__init__()
        try:
            import psycopg
        except ImportError:
            raise InputError(
                "a PostgreSQL run store needs psycopg: pip install 'scalinglab[postgres]'"
            ) from None
        self._psycopg = psycopg
        self.url = url
        self.timeout_s = timeout_s
        self.label = masked_url(url)

    def _open_connection(self) -> Any:
        psycopg = self._psycopg
        try:
            return psycopg.connect(
                self.url, autocommit=True, connect_timeout=max(1, int(self.timeout_s))
            )
        except psycopg.ProgrammingError as err:  # a malformed URL
            raise InputError(f"bad run store URL {self.label}: {err}") from None
        except psycopg.OperationalError as err:
            text = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
            if any(s in str(err).lower() for s in _PERMANENT_CONNECT_ERRORS):
                raise InputError(f"cannot connect to the run store {self.label}: {text}") from None
            raise StoreUnavailableError(
                f"cannot reach the run store {self.label}: {text}"
            ) from None

    def _broken(self, con: Any) -> bool:
        return bool(con.broken or con.closed)

    def begin_write(self, con: Any) -> None:
        con.execute("BEGIN")

    def lock_schema(self, con: Any) -> None:
        # concurrent CREATE TABLE IF NOT EXISTS can fail in PostgreSQL: one upgrader at a time
        con.execute("SELECT pg_advisory_xact_lock(%s)", (zlib.crc32(b"scalinglab-schema"),))

    def rollback(self, con: Any) -> None:
        try:
            if con.info.transaction_status != self._psycopg.pq.TransactionStatus.IDLE:
                con.execute("ROLLBACK")
        except self._psycopg.Error:
            pass

    def retryable(self, err: BaseException) -> bool:
        errors = self._psycopg.errors
        return isinstance(
            err,
            errors.SerializationFailure
            | errors.DeadlockDetected
            | errors.LockNotAvailable
            | errors.TooManyConnections
            | errors.AdminShutdown
            | StoreUnavailableError
            | self._psycopg.OperationalError,
        )

    def table_names(self, con: Any) -> set[str]:
        rows = con.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        ).fetchall()
        return {r[0] for r in rows}

    def sql(self, statement: str) -> str:
        return statement.replace("?", "%s")


#: connection failures that retrying will not cure: a mistake in the URL or the credentials
_PERMANENT_CONNECT_ERRORS = (
    "does not exist",
    "password authentication failed",
    "no password supplied",
    "role",
    "could not translate host name",
)


class StoreUnavailableError(InputError):
    """The store's server could not be reached (after the retries, the user's problem)."""


#: connections a forked child inherited: kept alive, never closed, never used
_INHERITED: list[Any] = []


# -- the store ---------------------------------------------------------------------------


class RunStore:
    """Runs and their observations, in a SQLite file or a PostgreSQL database.

    Parameters
    ----------
    location
        A SQLite file (created with its tables unless ``create`` is false), or a
        ``postgresql://user@host[:port]/database`` URL (the database must exist; the tables
        are created in its current schema).
    create
        Create the store if missing; with ``False`` a missing store, or one that is not a run
        store, is an :class:`InputError`.
    timeout_s
        How long one attempt waits for another process's lock (or for a connection).
    retries
        Further attempts, with jittered exponential backoff, after a transient failure (a
        lock wait timing out, a deadlock or serialisation failure, a lost connection).

    Examples
    --------
    >>> store = RunStore("runs.sqlite")                      # doctest: +SKIP
    >>> store = RunStore("postgresql://me@db.cluster/scaling")  # doctest: +SKIP
    >>> store.add_run("gpt-20m", {"d_model": 256}, family="gpt")  # doctest: +SKIP
    >>> store.add_observations([{"run_id": "gpt-20m", "step": 100, "tokens": 1e8,
    ...                          "params": 2e7, "loss": 4.1}])  # doctest: +SKIP
    1
    """

    def __init__(
        self,
        location: str | Path,
        *,
        create: bool = True,
        timeout_s: float = 30.0,
        retries: int = 5,
    ) -> None:
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        url = store_url(location)
        self.path: Path | None = None
        self._backend: _Backend
        if url is not None:
            self.location = url
            self._backend = _Postgres(url, self.timeout_s)
        else:
            self.path = Path(location)
            self.location = str(self.path)
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
            self._backend = _SQLite(self.path, self.timeout_s)
        self._open(create)

    def __repr__(self) -> str:
        return f"RunStore({self._backend.label!r})"

    def close(self) -> None:
        """Close this thread's connection (a later call opens a new one)."""
        self._backend.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def backend(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return "sqlite" if isinstance(self._backend, _SQLite) else "postgresql"

    @property
    def label(self) -> str:
        """The store as messages name it: its file name, or its URL without a password."""
        return self._backend.label

    # -- opening and upgrading ------------------------------------------------------------

    def _open(self, create: bool) -> None:
        try:
            version = self._retry(self._read_version)
        except sqlite3.DatabaseError as err:
            raise InputError(f"not a SQLite run store: {err}", source=self.label) from None
        if version == SCHEMA_VERSION:
            return  # opening a current store takes no write lock
        if version > SCHEMA_VERSION:
            raise InputError(
                f"this run store has schema version {version}, newer than this scalinglab "
                f"reads ({SCHEMA_VERSION}): upgrade scalinglab",
                source=self.label,
            )
        if version == 0 and not create:
            raise InputError(f"no run store at {self.label} (it has no runs table)")
        if self.backend == "sqlite" and version == 0:
            self._retry(lambda con: con.execute("PRAGMA journal_mode=WAL"))
        self._write(self._upgrade, schema=True)

    def _read_version(self, con: Any) -> int:
        """0: empty; 1: a store of the first releases (no version table); else its version.

        Raises
        ------
        InputError
            For a database with other tables and no run store in it.
        """
        tables = self._backend.table_names(con)
        if _VERSION_TABLE in tables:
            rows = self._backend.query(con, f"SELECT MAX(version) AS v FROM {_VERSION_TABLE}")
            return int(rows["v"].iloc[0]) if rows["v"].notna().all() else 0
        if {"runs", "observations"} <= tables:
            return 1
        if tables:
            raise InputError(
                "not a scalinglab run store (no runs/observations tables)", source=self.label
            )
        return 0

    def _upgrade(self, con: Any) -> None:
        """Apply every migration past the store's version, in this one transaction."""
        version = self._read_version(con)  # again: another process may have upgraded it
        if version >= SCHEMA_VERSION:
            return
        self._backend.execute(
            con, f"CREATE TABLE IF NOT EXISTS {_VERSION_TABLE} (version INTEGER NOT NULL)"
        )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS[target]:
                self._backend.execute(con, statement)
        self._backend.execute(con, f"DELETE FROM {_VERSION_TABLE}")
        self._backend.execute(
            con, f"INSERT INTO {_VERSION_TABLE} (version) VALUES (?)", (SCHEMA_VERSION,)
        )

    def schema_version(self) -> int:
        """The schema version of the store (:data:`SCHEMA_VERSION` once opened)."""
        return self._retry(self._read_version)

    # -- connections and transactions ----------------------------------------------------

    def _retry(self, work: Callable[[Any], T]) -> T:
        """Run ``work`` on a connection, retrying while the store is busy or unreachable."""
        for attempt in range(self.retries + 1):
            try:
                with self._backend.connection() as con:
                    return work(con)
            except Exception as err:
                if not self._backend.retryable(err) or attempt == self.retries:
                    if _damaged(err):  # a table or column gone, a file overwritten
                        raise InputError(
                            f"the run store is damaged ({err}); restore it or start a new one",
                            source=self.label,
                        ) from None
                    raise
                time.sleep(min(0.05 * 2**attempt, 2.0) * (0.5 + random.random()))
        raise AssertionError("unreachable")  # the loop returns or raises

    def _write(self, work: Callable[[Any], T], *, schema: bool = False) -> T:
        """Run ``work`` in one write transaction (all or nothing), with retries."""
        backend = self._backend

        def transaction(con: Any) -> T:
            backend.begin_write(con)
            try:
                if schema:
                    backend.lock_schema(con)
                result = work(con)
                backend.execute(con, "COMMIT")
            except BaseException:
                backend.rollback(con)
                raise
            return result

        return self._retry(transaction)

    # -- runs ------------------------------------------------------------------------------

    def add_run(
        self,
        run_id: str,
        config: Mapping[str, Any],
        family: str | None = None,
        status: str = "running",
        job: str | None = None,
    ) -> None:
        """Register a run, or update its config, family, status and job if it exists.

        Parameters
        ----------
        run_id
            Unique name of the run.
        config
            Its configuration (JSON-serialisable; numpy values and paths are converted).
        family
            Runs that share a recipe and differ in scale (kept when ``None``).
        status
            One of :data:`STATUSES`.
        job
            Where the run is running (``"slurm 1234_5 host=n12 pid=77"``); kept when ``None``.
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
            lambda con: self._backend.execute(
                con,
                "INSERT INTO runs (run_id, family, config, status, job, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id) DO UPDATE SET "
                "family = COALESCE(excluded.family, runs.family), config = excluded.config, "
                "status = excluded.status, job = COALESCE(excluded.job, runs.job), "
                "updated_at = excluded.updated_at",
                (run_id, family, config_json, status, job, now, now),
            )
        )

    def set_status(self, run_id: str, status: str) -> None:
        """Set a run's status (one of :data:`STATUSES`).

        Raises
        ------
        InputError
            If the store has no such run.
        """
        self._check_status(status)
        changed = self._write(
            lambda con: self._backend.execute(
                con,
                "UPDATE runs SET status = ?, updated_at = ? WHERE run_id = ?",
                (status, _now(), run_id),
            )
        )
        if not changed:
            raise self._unknown_run(run_id)

    def replace_status(self, run_ids: Sequence[str], old: str, new: str) -> list[str]:
        """Set ``new`` on those of ``run_ids`` whose status is ``old``, in one transaction.

        For a sweep whose runs died without a word: ``replace_status(ids, "running",
        "interrupted")``. Runs the store lacks, or in another status, are left alone.

        Returns
        -------
        list of str
            The runs changed.
        """
        self._check_status(old)
        self._check_status(new)
        ids = [str(r) for r in run_ids]
        if not ids:
            return []
        marks = ", ".join("?" for _ in ids)

        def work(con: Any) -> list[str]:
            found = self._backend.query(
                con,
                f"SELECT run_id FROM runs WHERE status = ? AND run_id IN ({marks})",
                [old, *ids],
            )["run_id"].tolist()
            self._backend.execute(
                con,
                f"UPDATE runs SET status = ?, updated_at = ? WHERE status = ? "
                f"AND run_id IN ({marks})",
                [new, _now(), old, *ids],
            )
            return [str(r) for r in found]

        return self._write(work)

    def runs(self) -> pd.DataFrame:
        """All runs with their number of observations and last step/tokens.

        Returns
        -------
        pandas.DataFrame
            ``run_id, family, status, n_observations, last_step, last_tokens, created_at,
            updated_at, job, config`` (config as a dict), ordered by run_id.
        """
        frame = self._retry(
            lambda con: self._backend.query(
                con,
                "SELECT r.run_id, r.family, r.status, COUNT(o.run_id) AS n_observations, "
                "MAX(o.step) AS last_step, MAX(o.tokens) AS last_tokens, r.created_at, "
                "r.updated_at, r.job, r.config FROM runs r LEFT JOIN observations o "
                "ON o.run_id = r.run_id GROUP BY r.run_id ORDER BY r.run_id",
            )
        )
        frame["n_observations"] = frame["n_observations"].astype(np.int64)
        configs: list[Any] = [
            _run_config(str(r), c, self.label)
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
            "job": None if pd.isna(row["job"]) else str(row["job"]),
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

    def add_observations(
        self,
        data: pd.DataFrame | Iterable[Mapping[str, Any]],
        *,
        status: str | None = None,
    ) -> int:
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
        status
            Also set the status of the runs these rows belong to, in the same transaction
            (a run's last measurements and ``"finished"`` land together or not at all).

        Returns
        -------
        int
            Number of rows written.
        """
        if status is not None:
            self._check_status(status)
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
        rows = _plain_rows(obs[list(STORED_COLUMNS)])
        by_step = [r for r, has in zip(rows, obs["step"].notna(), strict=True) if has]
        by_tokens = [r for r, has in zip(rows, obs["step"].notna(), strict=True) if not has]
        families = obs.groupby("run_id", sort=False)["family"].first()
        now = _now()
        run_rows = [(r, None if pd.isna(f) else f, now, now) for r, f in families.items()]
        backend = self._backend

        def work(con: Any) -> int:
            backend.executemany(
                con,
                "INSERT INTO runs (run_id, family, status, created_at, updated_at) "
                "VALUES (?, ?, 'imported', ?, ?) ON CONFLICT (run_id) DO UPDATE SET "
                "family = COALESCE(runs.family, excluded.family), "
                "updated_at = excluded.updated_at",
                run_rows,
            )
            backend.executemany(con, _UPSERT_BY_STEP, by_step)
            backend.executemany(con, _UPSERT_BY_TOKENS, by_tokens)
            if status is not None:
                backend.executemany(
                    con,
                    "UPDATE runs SET status = ? WHERE run_id = ?",
                    [(status, r) for r in families.index],
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
        where: list[str] = []
        params: list[Any] = []
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
            f"SELECT {columns} FROM observations o JOIN runs r ON r.run_id = o.run_id"
            + (f" WHERE {' AND '.join(where)}" if where else "")
            # NULLS FIRST is SQLite's order for NULL; PostgreSQL needs to be told
            + " ORDER BY o.run_id, o.dataset, o.step NULLS FIRST, o.tokens NULLS FIRST"
        )
        frame = self._retry(lambda con: self._backend.query(con, sql, params))
        frame = frame.reindex(columns=list(CANONICAL_COLUMNS))
        for column in STORED_COLUMNS:
            if column not in ("run_id", "dataset"):
                frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
        frame[SOURCE_ROW] = np.arange(1, len(frame) + 1)
        return validate_observations(frame, source=self.label, required=("run_id", "loss"))

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

    def copy_to(self, other: RunStore) -> tuple[int, int]:
        """Copy every run and observation into ``other`` (another store, any backend).

        Runs keep their config, status, job and timestamps; rows already in ``other`` under
        the same key are replaced, so copying again is idempotent. The whole copy is one
        transaction in ``other``: it lands complete or not at all.

        Returns
        -------
        tuple of int
            Runs and observation rows copied.
        """
        if other.location == self.location:
            raise InputError(f"cannot copy the run store {self.label} onto itself")
        runs = self._retry(
            lambda con: self._backend.query(con, f"SELECT {', '.join(RUN_COLUMNS)} FROM runs")
        )
        rows = self._retry(
            lambda con: self._backend.query(
                con, f"SELECT {', '.join(STORED_COLUMNS)} FROM observations"
            )
        )
        run_rows = _plain_rows(runs)
        obs_rows = _plain_rows(rows)
        by_step = [r for r in obs_rows if r[STORED_COLUMNS.index("step")] is not None]
        by_tokens = [r for r in obs_rows if r[STORED_COLUMNS.index("step")] is None]
        target = other._backend
        update = ", ".join(f"{c} = excluded.{c}" for c in RUN_COLUMNS if c != "run_id")

        def work(con: Any) -> None:
            target.executemany(
                con,
                f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}) "
                f"VALUES ({', '.join('?' for _ in RUN_COLUMNS)}) "
                f"ON CONFLICT (run_id) DO UPDATE SET {update}",
                run_rows,
            )
            target.executemany(con, _UPSERT_BY_STEP, by_step)
            target.executemany(con, _UPSERT_BY_TOKENS, by_tokens)

        other._write(work)
        return len(run_rows), len(obs_rows)

    # -- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _check_status(status: str) -> None:
        if status not in STATUSES:
            raise InputError(f"status must be one of {', '.join(STATUSES)}; got {status!r}")

    def _unknown_run(self, run_id: str) -> InputError:
        """The error for a run the store lacks, naming (up to 20 of) the runs it has."""
        known = self._retry(
            lambda con: self._backend.query(con, "SELECT run_id FROM runs ORDER BY run_id")
        )["run_id"].tolist()
        listed = f"; it has {', '.join(known[:20])}" + (", ..." if len(known) > 20 else "")
        return InputError(
            f"no run '{run_id}' in the store{listed if known else ' (it has none)'}",
            source=self.label,
        )


#: columns stored as integers (a column with gaps reaches pandas as floats)
_INTEGER_COLUMNS = frozenset({"step", "seed"})


def _plain_rows(frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    """Rows of ``frame`` as tuples of Python values for the drivers; gaps become ``None``."""
    integer = [c in _INTEGER_COLUMNS for c in frame.columns]
    rows = []
    for row in frame.itertuples(index=False, name=None):
        values: list[Any] = []
        for value, whole in zip(row, integer, strict=True):
            if value is None or (isinstance(value, float) and math.isnan(value)):
                values.append(None)
            elif isinstance(value, np.generic):
                values.append(int(value) if whole else value.item())
            else:
                values.append(int(value) if whole else value)
        rows.append(tuple(values))
    return rows
