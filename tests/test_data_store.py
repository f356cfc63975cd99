"""The run store on SQLite and PostgreSQL: runs, idempotent observations, export, copies
between backends, schema upgrades, concurrent writers, writers killed mid-run."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from scalinglab.cli.main import app
from scalinglab.data import RunStore, load_observations
from scalinglab.data.loaders import store_url
from scalinglab.data.store import SCHEMA_VERSION
from scalinglab.errors import InputError
from tests.pgserver import PostgresServer

#: the schema of the first releases, which kept no version
LEGACY_SCHEMA = """
CREATE TABLE runs (run_id TEXT PRIMARY KEY, family TEXT, config TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE observations (run_id TEXT NOT NULL REFERENCES runs(run_id), params REAL,
    params_nonembedding REAL, tokens REAL, step INTEGER, flops REAL, lr REAL,
    dataset TEXT NOT NULL, loss REAL NOT NULL, seed INTEGER);
CREATE UNIQUE INDEX observations_by_step ON observations(run_id, step, dataset)
    WHERE step IS NOT NULL;
CREATE UNIQUE INDEX observations_by_tokens ON observations(run_id, tokens, dataset)
    WHERE step IS NULL;
"""

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


def test_last_rows_and_status_land_together(store_location: str) -> None:
    store = RunStore(store_location)
    store.add_run("r1", {})
    with pytest.raises(InputError, match="status must be one of"):
        store.add_observations(curve("r1", range(1, 3)), status="done")
    assert store.observations().empty  # nothing of a rejected write lands
    store.add_observations(curve("r1", range(1, 3)), status="finished")
    assert store.get_run("r1")["status"] == "finished"
    store.add_run("r2", {})
    assert store.replace_status(["r1", "r2", "r9"], "running", "interrupted") == ["r2"]
    assert store.runs()["status"].tolist() == ["finished", "interrupted"]


def test_copy_moves_a_store_between_backends_bit_for_bit(tmp_path: Path, postgres_url: str) -> None:
    sqlite = RunStore(tmp_path / "a.sqlite")
    sqlite.add_run("r1", {"d_model": 64, "lr": 1e-3}, family="gpt", job="slurm 12_3 host=n1")
    rows = [dict(r, loss=np.nextafter(r["loss"], 9.0)) for r in curve("r1", range(1, 4))]
    sqlite.add_observations(rows, status="finished")
    sqlite.add_observations([{"run_id": "c", "params": 1e8, "tokens": 1e9, "loss": 3.25}])

    runner = CliRunner()
    moved = runner.invoke(app, ["runs", "copy", str(tmp_path / "a.sqlite"), postgres_url, "--json"])
    assert moved.exit_code == 0, moved.output
    assert json.loads(moved.stdout)["runs"] == 2 and json.loads(moved.stdout)["rows"] == 4
    back = runner.invoke(app, ["runs", "copy", postgres_url, str(tmp_path / "b.sqlite")])
    assert back.exit_code == 0, back.output
    again = runner.invoke(app, ["runs", "copy", postgres_url, str(tmp_path / "b.sqlite")])
    assert again.exit_code == 0  # idempotent
    postgres, copy = RunStore(postgres_url), RunStore(tmp_path / "b.sqlite")
    for other in (postgres, copy):
        pd.testing.assert_frame_equal(other.observations(), sqlite.observations())
        pd.testing.assert_frame_equal(other.runs(), sqlite.runs())  # timestamps, job, status
    assert postgres.get_run("r1")["job"] == "slurm 12_3 host=n1"
    same = runner.invoke(app, ["runs", "copy", postgres_url, postgres_url])
    assert same.exit_code == 2 and "onto itself" in same.stderr


def test_every_reader_takes_a_postgresql_url(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes, budgets = (1e7, 3e7, 1e8), (1e9, 3e9, 1e10)
    rows = [
        {
            "run_id": f"n{n:.0e}-d{d:.0e}",
            "params": n,
            "tokens": d,
            "loss": 1.7 + 400 / n**0.34 + 410 / d**0.28,
        }
        for n in sizes
        for d in budgets
    ]
    RunStore(postgres_url).add_observations(rows)
    # a URL read through a path-typed argument (collapsed "//") still reaches the server
    assert len(load_observations(Path(postgres_url))) == 9
    fitted = CliRunner().invoke(app, ["fit", postgres_url, "--law", "chinchilla", "--json"])
    assert fitted.exit_code == 0, fitted.output
    report = CliRunner().invoke(
        app, ["report", postgres_url, f"--out-dir={tmp_path / 'report'}", "--bootstrap=0", "--json"]
    )
    assert report.exit_code == 0, report.output
    assert "postgresql://" in (tmp_path / "report" / "report.md").read_text()
    monkeypatch.setenv("SCALINGLAB_STORE", postgres_url)
    listed = CliRunner().invoke(app, ["runs", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    assert {r["run_id"] for r in json.loads(listed.stdout)} == {r["run_id"] for r in rows}


@pytest.mark.parametrize(
    ("text", "url"),
    [
        ("postgresql://me@db.cluster:5433/scaling", "postgresql://me@db.cluster:5433/scaling"),
        (Path("postgresql://me@db.cluster/scaling"), "postgresql://me@db.cluster/scaling"),
        (Path("postgresql:///scaling"), "postgresql:///scaling"),
        (Path("postgres://me@h/db?options=-csearch_path%3Dx"),
         "postgresql://me@h/db?options=-csearch_path%3Dx"),
        ("runs.sqlite", None),
        (Path("runs/postgresql.sqlite"), None),
    ],
)  # fmt: skip
def test_store_urls_survive_path_arguments(text: str | Path, url: str | None) -> None:
    assert store_url(text) == url


def test_bad_postgresql_urls_are_one_clear_error(postgres_server: PostgresServer) -> None:
    missing = postgres_server.url("no_such_database")
    with pytest.raises(InputError, match=r"cannot connect to the run store .*no_such_database"):
        RunStore(missing)
    result = CliRunner().invoke(app, ["runs", "list", missing])
    assert result.exit_code == 2 and "Traceback" not in result.output
    with pytest.raises(InputError, match="cannot reach the run store"):
        RunStore("postgresql://me:secret@127.0.0.1:1/db", timeout_s=1, retries=1)
    with pytest.raises(InputError, match=r"me:\*\*\*@127.0.0.1:1/db"):  # no password shown
        RunStore("postgresql://me:secret@127.0.0.1:1/db", timeout_s=1, retries=0)
    empty = postgres_server.new_store_url()
    with pytest.raises(InputError, match=r"no run store at .* no runs table"):
        RunStore(empty, create=False)


def test_a_store_of_the_first_releases_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as con:  # the schema as the first releases wrote it
        con.executescript(LEGACY_SCHEMA)
        con.execute("INSERT INTO runs VALUES ('r1', 'gpt', '{}', 'finished', 't0', 't1')")
        con.execute(
            "INSERT INTO observations VALUES ('r1', 2e7, NULL, 1e6, 1, NULL, 1e-3, 'train', 4.5, 0)"
        )
    store = RunStore(path, create=False)
    assert store.schema_version() == SCHEMA_VERSION
    run = store.get_run("r1")
    assert (run["status"], run["job"], run["datasets"][0]["last_loss"]) == ("finished", None, 4.5)
    store.add_run("r1", {}, status="running", job="local host=a pid=1")
    assert store.get_run("r1")["job"] == "local host=a pid=1"
    with sqlite3.connect(path) as con:
        con.execute("UPDATE scalinglab_schema SET version = 99")
    with pytest.raises(InputError, match="schema version 99, newer than this scalinglab"):
        RunStore(path)


def _open_new_store(location: str) -> None:
    RunStore(location).add_run(f"p{os.getpid()}", {})


def test_many_processes_creating_one_store_at_once(store_location: str) -> None:
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_open_new_store, args=(store_location,)) for _ in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * 6
    store = RunStore(store_location)
    assert len(store.runs()) == 6 and store.schema_version() == SCHEMA_VERSION


CONCURRENT_WRITERS = 8
CHECKPOINTS = 500


def _checkpoint_writer(location: str, index: int) -> None:
    """One training run's writes: a checkpoint = one transaction of 2 rows; then finished."""
    store = RunStore(location)
    run_id = f"w{index}"
    store.add_run(run_id, {"writer": index})
    for step in range(1, CHECKPOINTS + 1):
        rows = [
            {"run_id": run_id, "step": step, "tokens": step * 4096.0, "params": 1e6,
             "dataset": dataset, "loss": 5.0 - step * 1e-3 - index * 1e-6}
            for dataset in ("train", "val")
        ]  # fmt: skip
        store.add_observations(rows, status="finished" if step == CHECKPOINTS else None)


@pytest.mark.cluster
def test_eight_writers_of_500_checkpoints_lose_and_duplicate_nothing(store_location: str) -> None:
    RunStore(store_location)
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_checkpoint_writer, args=(store_location, i))
        for i in range(CONCURRENT_WRITERS)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=600)
    # a writer that met "database is locked" (or any error) would exit non-zero
    assert [p.exitcode for p in procs] == [0] * CONCURRENT_WRITERS
    store = RunStore(store_location)
    obs = store.observations()
    assert len(obs) == CONCURRENT_WRITERS * CHECKPOINTS * 2
    assert not obs.duplicated(["run_id", "step", "dataset"]).any()
    for index in range(CONCURRENT_WRITERS):
        mine = obs[obs["run_id"] == f"w{index}"]
        assert sorted(set(mine["step"])) == list(range(1, CHECKPOINTS + 1))
        expected = 5.0 - mine["step"] * 1e-3 - index * 1e-6
        assert (mine["loss"] == expected).all()
    assert set(store.runs()["status"]) == {"finished"}


_TRAIN_CHILD = """
import json, sys
from scalinglab.training.config import TrainConfig
from scalinglab.training.trainer import train
train(TrainConfig.from_dict(json.loads(sys.argv[1])))
"""


@pytest.mark.cluster
def test_writer_killed_mid_run_keeps_its_commits_and_resumes_bit_exact(
    tmp_path: Path, store_location: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCALINGLAB_CACHE", str(tmp_path / "cache"))
    from scalinglab.training.config import TrainConfig
    from scalinglab.training.trainer import train

    settings = {
        "d_model": 16, "layers": 1, "heads": 2, "context": 16, "batch_size": 4, "steps": 400,
        "schedule": "cosine:peak=1e-2,warmup=0.1,final=1e-3", "train_data": "python-docs",
        "eval_data": ["python-docs", "python-stdlib"], "eval_tokens": 256, "eval_every": 5,
        "checkpoint_every": 20, "threads": 1, "device": "cpu", "store": store_location,
    }  # fmt: skip
    config = TrainConfig.from_dict({**settings, "run_id": "killed", "out_dir": str(tmp_path / "k")})
    train(config.replace(steps=1, run_id="warm", out_dir=str(tmp_path / "w")))  # token cache
    child = subprocess.Popen([sys.executable, "-c", _TRAIN_CHILD, json.dumps(config.to_dict())])
    store = RunStore(store_location)
    try:
        deadline = time.monotonic() + 300
        seen = pd.DataFrame()
        while time.monotonic() < deadline and child.poll() is None:
            runs = store.runs().set_index("run_id")
            if "killed" in runs.index and runs.loc["killed", "last_step"] >= 100:
                seen = store.observations(run_ids="killed")  # committed: must survive the kill
                break
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)  # while it keeps writing every 5 steps
        child.wait(timeout=60)
    finally:
        child.kill()
    assert child.returncode == -signal.SIGKILL and len(seen) > 0
    after = store.observations(run_ids="killed")
    key = ["step", "dataset", "loss"]
    kept = seen[key].merge(after[key], how="left", indicator=True)
    assert (kept["_merge"] == "both").all()  # nothing committed was lost
    per_step = after.groupby("step")["dataset"].nunique()
    assert (per_step == 2).all()  # every checkpoint's rows landed together
    assert store.get_run("killed")["status"] == "running"

    resumed = train(config)
    straight = train(config.replace(run_id="straight", out_dir=str(tmp_path / "s")))
    # its last checkpoint: the kill may land between step 100's rows and its checkpoint
    assert resumed.resumed_from is not None and resumed.resumed_from >= 80
    assert resumed.final_loss == straight.final_loss  # bit for bit on CPU
    curves = {
        run: store.observations(run_ids=run)[key].reset_index(drop=True)
        for run in ("killed", "straight")
    }
    pd.testing.assert_frame_equal(curves["killed"], curves["straight"])
    assert store.get_run("killed")["status"] == "finished"
