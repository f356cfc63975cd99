"""Executors: the [slurm] and [ray] settings, packing and array splitting, the sbatch scripts
submitit writes, and (marked ``cluster``, run by ``make test-cluster``) tiny sweeps run by
submitit's local executor and by a local Ray cluster: they complete, a preempted or killed
run resumes from its checkpoint, and the results equal the local executor's bit for bit."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from scalinglab.cli.main import app
from scalinglab.data import RunStore
from scalinglab.errors import SpecError
from scalinglab.training.executors import make_executor
from scalinglab.training.executors.ray import RaySettings
from scalinglab.training.executors.slurm import SlurmExecutor, pack, slurm_minutes
from scalinglab.training.sweep import SweepResult, SweepSpec, run_sweep
from tests.test_training_sweep import SPEC as SWEEP_SPEC

#: 4 runs of 64 and 128 steps: long enough to be stopped mid-run, a few seconds each
SPEC = (
    SWEEP_SPEC.replace('name = "t"', 'name = "x"').replace(
        "tokens = [1024, 2048]", "tokens = [4096, 8192]"
    )
    + """
[slurm]
cluster = "local"
poll_s = 0.2
time = 10

[ray]
max_retries = 2
"""
)


def spec(**changes: Any) -> SweepSpec:
    data = tomllib.loads(SPEC)
    data.update(changes)
    return SweepSpec.from_dict(data, source="x.toml")


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCALINGLAB_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


# -- settings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "minutes"),
    [(90, 90), (1.5, 2), ("30", 30), ("30:30", 31), ("02:00:00", 120), ("1-12", 2160),
     ("1-00:30", 1470), ("0-00:00:59", 1)],
)  # fmt: skip
def test_slurm_time_limits_in_minutes(value: Any, minutes: int) -> None:
    assert slurm_minutes(value) == minutes


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"partiton": "gpu"}, r"unknown key\(s\) partiton"),
        ({"time": "two hours"}, "slurm.time must be minutes or a Slurm time"),
        ({"time": 0}, "longer than zero"),
        ({"gpus_per_task": -1}, "gpus_per_task must be an integer >= 0"),
        ({"runs_per_job": 0}, "runs_per_job must be an integer >= 1"),
        ({"max_array_size": True}, "max_array_size must be an integer"),
        ({"setup": "module load cuda"}, "setup must be a list of shell lines"),
        ({"cluster": "pbs"}, "cluster must be 'slurm' or 'local'"),
    ],
)
def test_bad_slurm_tables_name_the_key(table: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        spec(slurm=table)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"adress": "auto"}, r"unknown key\(s\) adress"),
        ({"gpus_per_run": -0.5}, "gpus_per_run must be a non-negative number"),
        ({"cpus_per_run": 0}, "cpus_per_run must be a positive number"),
        ({"max_retries": 1.5}, "max_retries must be an integer"),
    ],
)
def test_bad_ray_tables_name_the_key(table: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        spec(ray=table)


def test_executor_is_chosen_by_the_spec_or_the_command_line(tmp_path: Path) -> None:
    assert make_executor(spec(), out_dir=tmp_path).name == "local"
    assert make_executor(spec(executor="ray"), out_dir=tmp_path).name == "ray"
    slurm = make_executor(spec(), out_dir=tmp_path, name="slurm")
    assert isinstance(slurm, SlurmExecutor) and slurm.folder == tmp_path / "slurm"
    assert not slurm.remote  # cluster = "local": submitit's local processes
    ray = make_executor(spec(), out_dir=tmp_path, ray_address="auto")
    assert ray.name == "ray" and ray.remote
    assert ray.settings == RaySettings(address="auto", max_retries=2)  # type: ignore[attr-defined]
    with pytest.raises(SpecError, match="executor must be one of local, slurm, ray"):
        spec(executor="k8s")
    with pytest.raises(SpecError, match="unknown executor 'k8s'"):
        make_executor(spec(), out_dir=tmp_path, name="k8s")
    with pytest.raises(SpecError, match="--ray-address is for the ray executor, not slurm"):
        make_executor(spec(), out_dir=tmp_path, name="slurm", ray_address="auto")


def test_sweep_command_rejects_a_bad_executor_with_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "x.toml"
    path.write_text(SPEC)
    result = CliRunner().invoke(app, ["sweep", str(path), "--executor", "pbs"])
    assert result.exit_code == 2
    assert "unknown executor 'pbs'" in result.stderr


def test_study_takes_an_executor_and_checks_it_before_training(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["study", f"--out-dir={tmp_path}", "--executor", "pbs"])
    assert result.exit_code == 2
    assert "unknown executor 'pbs'" in result.stderr
    assert not list((tmp_path / "checkpoints").glob("*/checkpoint.pt"))


def test_packing_balances_costs_across_jobs(tmp_path: Path) -> None:
    configs = spec(tokens=[4096, 8192, 16384, 32768], seeds=[0, 1]).configs(
        out_dir=tmp_path, store=tmp_path / "s.sqlite"
    )
    ordered = sorted(configs, key=lambda c: c.total_steps, reverse=True)  # most expensive first
    groups = pack(ordered, 3)
    assert len(groups) == 6 and sorted(len(g) for g in groups) == [2, 2, 3, 3, 3, 3]
    assert sorted(c.name for g in groups for c in g) == sorted(c.name for c in configs)
    steps = [sum(c.total_steps for c in g) for g in groups]
    assert max(steps) <= 1.5 * min(steps)  # consecutive chunks would give 3.2x
    assert pack(ordered, 1) == [[c] for c in ordered]


@pytest.fixture()
def fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Slurm does not run here: stand-in ``sbatch``/``srun`` that keep every script submitit
    writes (sbatch answers as Slurm does), so that the scripts can be read."""
    bin_dir, record = tmp_path / "bin", tmp_path / "submitted"
    bin_dir.mkdir()
    record.mkdir()
    (bin_dir / "sbatch").write_text(
        f'#!/bin/sh\nn=$(ls {record} | wc -l)\ncp "$1" {record}/script$n.sh\n'
        'echo "Submitted batch job $((4200 + n))"\n'
    )
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    for tool in ("sbatch", "srun"):
        (bin_dir / tool).chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return record


def test_slurm_sweep_is_one_array_split_at_the_site_limit(tmp_path: Path, fake_slurm: Path) -> None:
    table = {
        "partition": "gpu", "account": "lm-scaling", "time": "01:30:00", "gpus_per_task": 1,
        "cpus_per_task": 8, "array_parallelism": 2, "max_array_size": 3, "runs_per_job": 1,
        "setup": ["module load cuda"], "additional": {"constraint": "a100"},
    }  # fmt: skip
    sweep = spec(seeds=[0, 1, 2], slurm=table)  # 12 runs: arrays of 3, 3, 3, 3
    executor = make_executor(sweep, out_dir=tmp_path, name="slurm")
    assert executor.remote
    configs = sweep.configs(out_dir=tmp_path, store="postgresql://me@db/scaling")
    submitted = executor.submit(configs)  # type: ignore[attr-defined]
    scripts = sorted(fake_slurm.iterdir(), key=lambda p: int(p.stem[6:]))
    assert len(scripts) == 4 and len(submitted) == 12
    assert [job.job_id for job, _ in submitted[:4]] == ["4200_0", "4200_1", "4200_2", "4201_0"]
    text = scripts[0].read_text()
    for line in (
        "#SBATCH --array=0-2%2", "#SBATCH --partition=gpu", "#SBATCH --account=lm-scaling",
        "#SBATCH --time=90", "#SBATCH --gpus-per-node=1", "#SBATCH --cpus-per-task=8",
        "#SBATCH --constraint=a100", "#SBATCH --job-name=x", "#SBATCH --signal=USR2@90",
        "module load cuda",
    ):  # fmt: skip
        assert line in text, text
    packed_spec = spec(slurm={"runs_per_job": 2, "workers_per_job": 2, "array_parallelism": 8})
    packed = make_executor(packed_spec, out_dir=tmp_path, name="slurm")
    jobs = packed.submit(configs[:4])  # type: ignore[attr-defined]
    assert [len(group) for _, group in jobs] == [2, 2]
    text = max(fake_slurm.iterdir(), key=lambda p: int(p.stem[6:])).read_text()
    assert "#SBATCH --array=0-1%2" in text and "#SBATCH --cpus-per-task=2" in text


# -- real sweeps on submitit's local executor and on Ray (make test-cluster) ---------------


def _finals(result: SweepResult) -> dict[str, dict[str, float]]:
    return {o.run_id: o.final_loss for o in result.runs}


def _curves(store: str | Path) -> dict[str, list[tuple[int, str, float]]]:
    obs = RunStore(store).observations()
    return {
        str(run): list(
            zip(g["step"].tolist(), g["dataset"].tolist(), g["loss"].tolist(), strict=True)
        )
        for run, g in obs.groupby("run_id")
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any]]:
    """The 4-run sweep on the local executor: final losses and every curve."""
    base = tmp_path_factory.mktemp("reference")
    os.environ["SCALINGLAB_CACHE"] = str(tmp_path_factory.getbasetemp() / "cache")
    result = run_sweep(spec(), store=base / "runs.sqlite", out_dir=base / "out")
    assert [o.status for o in result.runs] == ["finished"] * 4
    return _finals(result), _curves(base / "runs.sqlite")


class _Stopper:
    """A thread that signals one run's process once that run has written a checkpoint."""

    def __init__(self, store: Path, out: Path, run_id: str, sig: int) -> None:
        self.store, self.out, self.run_id, self.sig = store, out, run_id, sig
        self.seen: list[str] = []  # the run's statuses after the signal
        self.pid: int | None = None
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and self.pid is None:
            time.sleep(0.05)
            if not (self.out / self.run_id / "checkpoint.pt").exists():
                continue
            run = RunStore(self.store).get_run(self.run_id)
            match = re.search(r"pid=(\d+)", run["job"] or "")
            if run["status"] == "running" and match:
                self.pid = int(match.group(1))
                os.kill(self.pid, self.sig)
        while time.monotonic() < deadline and self.pid is not None:
            status = RunStore(self.store).get_run(self.run_id)["status"]
            if not self.seen or self.seen[-1] != status:
                self.seen.append(status)
            if status == "finished" or len(self.seen) > 5:
                return
            time.sleep(0.02)

    def join(self) -> None:
        self._thread.join(timeout=60)


VICTIM = "x-b-D8K-wsd-adamw-s0"  # the longest run: it starts first


@pytest.mark.cluster
def test_submitit_sweep_resumes_a_preempted_job_and_matches_local(
    tmp_path: Path, reference: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    store, out = tmp_path / "runs.sqlite", tmp_path / "out"
    # USR2 is what Slurm sends before preempting a job: submitit checkpoints and requeues it
    stopper = _Stopper(store, out, VICTIM, signal.SIGUSR2)
    result = run_sweep(spec(), store=store, out_dir=out, executor="slurm")
    stopper.join()
    assert stopper.pid is not None, "the run was never seen running"
    assert [o.status for o in result.runs] == ["finished"] * 4, result.runs
    resumed = {o.run_id: o.resumed_from for o in result.runs if o.resumed_from is not None}
    assert list(resumed) == [VICTIM] and resumed[VICTIM] > 0
    # marked interrupted from the preemption until the requeued job resumes it
    assert "interrupted" in stopper.seen, stopper.seen
    finals, curves = reference
    assert _finals(result) == finals  # bit for bit on CPU
    assert _curves(store) == curves
    jobs = RunStore(store).runs().set_index("run_id")["job"]
    assert all(str(j).startswith("submitit-local ") for j in jobs)


@pytest.mark.cluster
def test_submitit_job_killed_outright_is_resumed_by_the_next_sweep(
    tmp_path: Path, reference: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    store, out = tmp_path / "runs.sqlite", tmp_path / "out"
    stopper = _Stopper(store, out, VICTIM, signal.SIGKILL)  # no warning: a node lost, OOM
    first = run_sweep(spec(), store=store, out_dir=out, executor="slurm")
    stopper.join()
    outcome = {o.run_id: o for o in first.runs}[VICTIM]
    assert outcome.status == "interrupted" and "ended without finishing" in str(outcome.error)
    assert RunStore(store).get_run(VICTIM)["status"] == "interrupted"
    again = run_sweep(spec(), store=store, out_dir=out, executor="slurm")
    statuses = {o.run_id: (o.status, o.resumed_from) for o in again.runs}
    assert statuses.pop(VICTIM)[0] == "finished"
    assert set(statuses.values()) == {("skipped", None)}
    assert {o.run_id: o.resumed_from for o in again.runs}[VICTIM] > 0  # type: ignore[operator]
    finals, curves = reference
    assert _finals(again) == finals
    assert _curves(store) == curves


@pytest.mark.cluster
def test_packed_slurm_jobs_train_several_runs_each(tmp_path: Path) -> None:
    sweep = spec(slurm={"cluster": "local", "poll_s": 0.2, "runs_per_job": 2, "workers_per_job": 2})
    store = tmp_path / "runs.sqlite"
    result = run_sweep(sweep, store=store, out_dir=tmp_path / "out", executor="slurm")
    assert [o.status for o in result.runs] == ["finished"] * 4
    jobs = RunStore(store).runs()["job"].str.extract(r"^submitit-local (\d+) ")[0]
    assert jobs.nunique() == 2  # two jobs of two runs


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A local Ray cluster of 2 CPUs, as a user would start one: ``ray.init(num_cpus=2)``."""
    ray = pytest.importorskip("ray")
    os.environ["SCALINGLAB_CACHE"] = str(tmp_path_factory.getbasetemp() / "cache")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.cluster
def test_ray_sweep_retries_a_killed_task_from_its_checkpoint_and_matches_local(
    tmp_path: Path, local_ray: None, reference: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    store, out = tmp_path / "runs.sqlite", tmp_path / "out"
    stopper = _Stopper(store, out, VICTIM, signal.SIGKILL)  # the task's worker process
    result = run_sweep(spec(), store=store, out_dir=out, executor="ray")
    stopper.join()
    assert stopper.pid is not None, "the run was never seen running"
    assert [o.status for o in result.runs] == ["finished"] * 4, result.runs
    resumed = {o.run_id: o.resumed_from for o in result.runs if o.resumed_from is not None}
    assert list(resumed) == [VICTIM] and resumed[VICTIM] > 0  # retried by Ray, resumed
    finals, curves = reference
    assert _finals(result) == finals
    assert _curves(store) == curves
    assert RunStore(store).get_run(VICTIM)["job"].startswith("ray node=")


LONG = SPEC.replace("tokens = [4096, 8192]", "tokens = [4_000_000]").replace(
    "b = { d_model = 16, layers = 1, heads = 2 }", ""
)


def _interrupt_cli_sweep(
    tmp_path: Path, extra: list[str], until: Callable[[subprocess.Popen[str]], bool]
) -> str:
    """Start ``scalinglab sweep`` on LONG, press Ctrl-C once ``until()``, return its stderr."""
    path = tmp_path / "long.toml"
    path.write_text(LONG)
    command = [
        sys.executable, "-c", "from scalinglab.cli.main import main; main()", "sweep",
        str(path), f"--store={tmp_path / 'runs.sqlite'}", f"--out-dir={tmp_path / 'out'}",
        "--json", *extra,
    ]  # fmt: skip
    sweep = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and sweep.poll() is None and not until(sweep):
            time.sleep(0.5)
        assert sweep.poll() is None, sweep.communicate()
        sweep.send_signal(signal.SIGINT)
        tick = time.monotonic()
        _, stderr = sweep.communicate(timeout=90)
        assert time.monotonic() - tick < 60, stderr
    finally:
        sweep.kill()
    assert sweep.returncode != 0
    return stderr


def _descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (read from /proc)."""
    parents: dict[int, int] = {}
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat_file.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found |= frontier
    return found


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.add(pid)
    return alive


@pytest.mark.cluster
def test_ctrl_c_cancels_a_ray_sweep_cleanly(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    store = tmp_path / "runs.sqlite"
    spawned: set[int] = set()

    def started(sweep: subprocess.Popen[str]) -> bool:
        if not (store.exists() and len(RunStore(store).observations()) > 0):
            return False
        spawned.update(_descendants(sweep.pid))  # the Ray it started: GCS, raylet, workers
        return True

    _interrupt_cli_sweep(tmp_path, ["--executor=ray"], started)
    statuses = set(RunStore(store).runs()["status"])
    assert statuses == {"interrupted"}, statuses
    assert spawned, "no Ray process was seen"
    deadline = time.monotonic() + 30
    while _alive(spawned) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _alive(spawned), "Ray processes outlived the sweep"
