"""Executors against the local pool, and run-store write throughput on SQLite and PostgreSQL.

``--part executors``: the same 8 tiny runs (2 sizes × 2 token budgets × 2 seeds, 1 torch
thread each, 64–128 steps) trained by the local process pool (2 workers, the default), by
submitit's local executor (the real submitit path: one job per run, each a process of its
own) and by Ray on this machine (``ray.init(num_cpus=2)``, started and stopped inside the
timing, as ``scalinglab sweep --executor ray`` does). Each executor starts from an empty
store and checkpoint folder; the corpora's token cache is warm for all. The headline is the
ratio of each executor's sweep wall time to the local pool's, measured in the same process
and alternating the order between repetitions (median of the repetitions), and the overhead
per run, (wall − local wall) / 8. On a real cluster the scheduler's queueing adds to Slurm's
overhead; no Slurm runs here.

``--part store``: checkpoint rows written per second: each writer is a process writing 500
checkpoints (one transaction of 2 rows each, through ``RunStore.add_observations``, as the
trainer does), 1 writer and 8 writers at once, on a SQLite file (WAL) and on a PostgreSQL 15
server started for the benchmark (``initdb``/``pg_ctl`` on a temporary folder, fsync on),
over TCP on 127.0.0.1. Rows/s = all rows / wall time from the common start to the last
writer's end; rows per writer CPU-second = all rows / the CPU time of the writer processes,
a figure a loaded machine disturbs much less (the server's own CPU is not in it). Each write
validates its rows as every store write does (``load_observations``), which is most of a
writer's CPU.

Nothing here is tuned: the settings are the library's defaults, chosen before measuring.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))
from tests.test_executors import SPEC as EXECUTOR_TEST_SPEC  # noqa: E402

from _common import record  # noqa: E402

#: the executor tests' 4-run sweep (2 sizes x 2 budgets), with 2 seeds: 8 runs
SPEC = {**tomllib.loads(EXECUTOR_TEST_SPEC), "name": "bench", "seeds": [0, 1]}
SPEC["slurm"] = {**SPEC["slurm"], "time": 30}
CHECKPOINTS = 500


def _sweep(executor: str, base: Path) -> tuple[float, dict[str, dict[str, float]]]:
    """Wall seconds of the 8-run sweep on ``executor``, and its final losses."""
    from scalinglab.training.sweep import SweepSpec, run_sweep

    spec = SweepSpec.from_dict(SPEC, source="bench.toml")
    folder = base / executor
    shutil.rmtree(folder, ignore_errors=True)
    tick = time.perf_counter()
    if executor == "ray":
        import ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        result = run_sweep(spec, store=folder / "runs.sqlite", out_dir=folder, executor=executor)
    finally:
        if executor == "ray":
            ray.shutdown()
    wall = time.perf_counter() - tick
    statuses = {o.status for o in result.runs}
    if statuses != {"finished"}:
        raise RuntimeError(f"{executor}: runs ended {statuses}")
    return wall, {o.run_id: o.final_loss for o in result.runs}


def bench_executors(repeats: int) -> dict[str, Any]:
    executors = ("local", "slurm", "ray")
    walls: dict[str, list[float]] = {e: [] for e in executors}
    finals: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-exec-") as tmp:
        base = Path(tmp)
        os.environ.setdefault("SCALINGLAB_CACHE", str(base / "cache"))
        _sweep("local", base)  # warm the token cache and the imports
        for rep in range(repeats):
            for executor in executors if rep % 2 == 0 else executors[::-1]:
                wall, finals[executor] = _sweep(executor, base)
                walls[executor].append(wall)
                print(f"  {executor}: {wall:.1f} s", flush=True)
    local = statistics.median(walls["local"])
    out: dict[str, Any] = {"runs": 8, "repeats": repeats, "walls_s": walls}
    for executor in executors:
        median = statistics.median(walls[executor])
        out[executor] = {
            "wall_s": median,
            "ratio_to_local": median / local,
            "overhead_per_run_s": (median - local) / 8,
        }
    out["same_results_as_local"] = all(finals[e] == finals["local"] for e in executors)
    return out


def _writer(location: str, index: int, start: Any, checkpoints: int) -> None:
    from scalinglab.data import RunStore

    store = RunStore(location)
    run_id = f"w{index}"
    store.add_run(run_id, {})
    start.wait()
    for step in range(1, checkpoints + 1):
        rows = [
            {"run_id": run_id, "step": step, "tokens": step * 4096.0, "params": 1e6,
             "dataset": dataset, "loss": 5.0 - step * 1e-3}
            for dataset in ("train", "val")
        ]  # fmt: skip
        store.add_observations(rows)


def _throughput(location: str, writers: int, checkpoints: int) -> dict[str, float]:
    from scalinglab.data import RunStore

    RunStore(location)  # create the schema before the clock starts
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    procs = [
        ctx.Process(target=_writer, args=(location, i, start, checkpoints)) for i in range(writers)
    ]
    for p in procs:
        p.start()
    time.sleep(3.0)  # every writer has imported and opened the store
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    tick = time.perf_counter()
    start.set()
    for p in procs:
        p.join()
    wall = time.perf_counter() - tick
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # the writers' CPU (imports and all; the PostgreSQL server's own is not counted)
    cpu = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    if any(p.exitcode for p in procs):
        raise RuntimeError(f"a writer failed on {location}")
    rows = len(RunStore(location).observations())
    if rows != writers * checkpoints * 2:
        raise RuntimeError(f"{rows} rows in {location}, expected {writers * checkpoints * 2}")
    return {"rows_per_s": rows / wall, "rows_per_writer_cpu_s": rows / cpu, "wall_s": wall}


def bench_store() -> dict[str, Any]:
    from tests.pgserver import PostgresServer, find_binaries

    binaries, reason = find_binaries()
    out: dict[str, Any] = {"checkpoints_per_writer": CHECKPOINTS, "rows_per_checkpoint": 2}
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        for writers in (1, 8):
            measured = _throughput(str(Path(tmp) / f"w{writers}.sqlite"), writers, CHECKPOINTS)
            out[f"sqlite_{writers}_writers"] = measured
            print(f"  sqlite x{writers}: {measured}", flush=True)
    if binaries is None:
        out["postgresql"] = f"not measured: {reason}"
        return out
    server = PostgresServer(binaries)
    try:
        for writers in (1, 8):
            measured = _throughput(server.new_store_url(), writers, CHECKPOINTS)
            out[f"postgresql_{writers}_writers"] = measured
            print(f"  postgresql x{writers}: {measured}", flush=True)
    finally:
        server.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("executors", "store", "all"), default="all")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    result: dict[str, Any] = {"load_average_before": os.getloadavg()}
    parts = []
    if args.part in ("executors", "all"):
        ex = bench_executors(args.repeats)
        result["executors"] = ex
        parts.append(
            f"8 tiny runs: local pool {ex['local']['wall_s']:.1f} s; submitit-local "
            f"{ex['slurm']['ratio_to_local']:.2f}x (+{ex['slurm']['overhead_per_run_s']:.2f} "
            f"s/run), ray {ex['ray']['ratio_to_local']:.2f}x "
            f"(+{ex['ray']['overhead_per_run_s']:.2f} s/run); same results as local: "
            f"{ex['same_results_as_local']}"
        )
    if args.part in ("store", "all"):
        st = bench_store()
        result["store"] = st

        def rates(backend: str) -> str:
            if f"{backend}_1_writers" not in st:
                return f"{backend} {st.get(backend)}"
            one, eight = st[f"{backend}_1_writers"], st[f"{backend}_8_writers"]
            return (
                f"{backend} {one['rows_per_s']:.0f} / {eight['rows_per_s']:.0f} "
                f"({one['rows_per_writer_cpu_s']:.0f} / {eight['rows_per_writer_cpu_s']:.0f} "
                "per writer CPU-second)"
            )

        parts.append(
            f"checkpoint rows/s (2-row transactions), 1 / 8 writers: {rates('sqlite')}; "
            f"{rates('postgresql')}"
        )
    result["load_average_after"] = os.getloadavg()
    load = f"load {result['load_average_before'][0]:.1f}"
    name = "cluster_overhead" if args.part == "all" else f"cluster_overhead-{args.part}"
    record(name, result, "; ".join(parts) + f" ({load})")


if __name__ == "__main__":
    main()
