"""The run store on SQLite and PostgreSQL: runs, idempotent observations, export, copies
between backends, schema upgrades, concurrent writers, writers killed mid-run."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scalinglab.data import RunStore, load_observations
from scalinglab.errors import InputError

WRITERS = 4
ROWS_PER_WRITER = 200
BATCH = 10


def curve(run_id: str, steps: range, dataset: str = "train") -> list[dict[str, object]]:
    """Observations of one run: loss falling with steps."""
    return [
        {
            "run_id": run_id,
            "step": s,
            "tokens": s * 1e6,
            "params": 2e7,
            "lr": 1e-3,
            "dataset": dataset,
            "loss": 5.0 - 0.001 * s,
        }
        for s in steps
    ]


def test_runs_config_and_status(store_location: str) -> None:
    store = RunStore(store_location)
    store.add_run("r1", {"d_model": np.int64(256), "lr": 1e-3}, family="gpt")
    store.add_run("r0", {}, status="finished")
    runs = store.runs()
    assert runs["run_id"].tolist() == ["r0", "r1"]
    assert runs["status"].tolist() == ["finished", "running"]
    assert runs["config"].iloc[1] == {"d_model": 256, "lr": 1e-3}
    assert runs["n_observations"].tolist() == [0, 0]
    store.set_status("r1", "finished")
    # adding again (a resumed run) updates instead of failing and keeps the family
    store.add_run("r1", {"d_model": 256}, status="running")
    run = store.get_run("r1")
    assert (run["family"], run["status"], run["config"]) == ("gpt", "running", {"d_model": 256})


def test_bad_run_requests(store_location: str) -> None:
    store = RunStore(store_location)
    store.add_run("r1", {})
    with pytest.raises(InputError, match="status must be one of"):
        store.set_status("r1", "done")
    with pytest.raises(InputError, match="no run 'r2' in the store; it has r1"):
        store.set_status("r2", "finished")
    with pytest.raises(InputError, match="no run 'r2'"):
        store.get_run("r2")
    with pytest.raises(InputError, match="no run 'r2'"):
        store.observations(run_ids="r2")
    with pytest.raises(InputError, match="cannot be stored as JSON"):
        store.add_run("r3", {"model": object()})
    with pytest.raises(InputError, match="non-empty string"):
        store.add_run("", {})


def test_observations_are_idempotent_and_replace_by_key(store_location: str) -> None:
    store = RunStore(store_location)
    store.add_run("r1", {}, family="gpt")
    assert store.add_observations(curve("r1", range(1, 6))) == 5
    assert store.add_observations(curve("r1", range(4, 8))) == 4
    assert store.add_observations(pd.DataFrame(curve("r1", range(1, 3), dataset="val"))) == 2
    obs = store.observations()
    assert len(obs) == 7 + 2
    rewritten = [dict(r, loss=1.5) for r in curve("r1", range(7, 8))]
    store.add_observations(rewritten)
    train = store.observations(dataset="train")
    assert len(train) == 7
    assert train["loss"].iloc[-1] == 1.5
    assert train["step"].tolist() == list(range(1, 8))
    assert (train["family"] == "gpt").all()
    assert train["step"].dtype == np.int64
    run = store.get_run("r1")
    assert run["n_observations"] == 9
    assert run["datasets"][0] == {
        "dataset": "train",
        "n_observations": 7,
        "last_step": 7,
        "last_tokens": 7e6,
        "last_loss": 1.5,
    }


def test_rows_without_step_are_keyed_by_tokens(store_location: str) -> None:
    store = RunStore(store_location)
    rows = [{"run_id": "c", "params": 1e8, "tokens": t, "loss": 3.0} for t in (1e9, 2e9)]
    store.add_observations(rows)
    store.add_observations(rows)
    assert len(store.observations()) == 2
    runs = store.runs()
    assert runs["status"].tolist() == ["imported"]
    with pytest.raises(InputError, match="needs a step or a token count") as info:
        store.add_observations([{"run_id": "c", "loss": 3.0}])
    assert (info.value.row, info.value.column) == (1, "step")


def test_invalid_observations_are_rejected_whole(store_location: str) -> None:
    store = RunStore(store_location)
    rows = curve("r1", range(1, 4))
    rows[2]["loss"] = float("nan")
    with pytest.raises(InputError, match="row 3, column 'loss': missing value"):
        store.add_observations(rows)
    assert store.observations().empty
    assert store.add_observations([]) == 0


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_export_round_trips(tmp_path: Path, store_location: str, suffix: str) -> None:
    store = RunStore(store_location)
    store.add_run("r1", {}, family="gpt")
    store.add_observations(curve("r1", range(1, 4)) + curve("r2", range(1, 3), dataset="val"))
    out = tmp_path / f"obs{suffix}"
    assert store.export(out) == 5
    back = load_observations(out, required=("loss",))
    expected = store.observations()
    cols = ["run_id", "tokens", "step", "flops", "lr", "dataset", "loss"]
    pd.testing.assert_frame_equal(back[cols], expected[cols])
    with pytest.raises(InputError, match="cannot export"):
        store.export(tmp_path / "obs.jsonl")


def test_opening_without_create(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no run store"):
        RunStore(tmp_path / "absent.sqlite", create=False)
    assert not (tmp_path / "absent.sqlite").exists()
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as con:
        con.execute("CREATE TABLE t (x)")
    with pytest.raises(InputError, match="not a scalinglab run store"):
        RunStore(other, create=False)
    text = tmp_path / "text.sqlite"
    text.write_text("hello, this is not a database file at all" * 10)
    with pytest.raises(InputError, match="not a SQLite run store"):
        RunStore(text, create=False)


def _writer(path: str, index: int) -> None:
    store = RunStore(path)
    run_id = f"w{index}"
    store.add_run(run_id, {"writer": index})
    rows = curve(run_id, range(1, ROWS_PER_WRITER + 1))
    for start in range(0, ROWS_PER_WRITER, BATCH):
        store.add_observations(rows[start : start + BATCH])
    store.set_status(run_id, "finished")


def test_concurrent_writers_lose_no_rows(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.sqlite")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(path, i)) for i in range(WRITERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * WRITERS
    store = RunStore(path, create=False)
    obs = store.observations()
    assert len(obs) == WRITERS * ROWS_PER_WRITER
    counts = obs.groupby("run_id").size().to_dict()
    assert counts == {f"w{i}": ROWS_PER_WRITER for i in range(WRITERS)}
    assert (store.runs()["status"] == "finished").all()
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_busy_database_is_retried(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    RunStore(path)
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")  # another process's write lock
    impatient = RunStore(path, timeout_s=0.05, retries=0)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        impatient.add_run("r1", {})
    release = threading.Timer(0.3, lambda: holder.execute("COMMIT"))
    release.start()
    RunStore(path, timeout_s=0.05, retries=8).add_run("r1", {})
    release.join()
    holder.close()
    assert RunStore(path).runs()["run_id"].tolist() == ["r1"]


def test_foreign_database_is_not_taken_over(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as con:
        con.execute("CREATE TABLE t (x)")
    with pytest.raises(InputError, match="not a scalinglab run store"):
        RunStore(other)
