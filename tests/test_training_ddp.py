"""DDP: two gloo processes under torchrun follow the loss curve of one process with the same
global batch (up to floating-point summation order)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scalinglab.data import RunStore
from scalinglab.training.config import TrainConfig
from scalinglab.training.trainer import train

#: largest difference allowed between the two curves, nats/token. All-reducing gradients
#: sums them in another order than one process does, which moves the last bits (measured:
#: 1.2e-7 nats after 30 steps)
TOLERANCE_NATS = 1e-5

SETTINGS = {
    "d_model": 16,
    "layers": 1,
    "heads": 2,
    "context": 16,
    "batch_size": 8,
    "steps": 20,
    "schedule": "cosine:peak=1e-2,warmup=0.1,final=1e-3",
    "train_data": "python-docs",
    "eval_data": ["python-docs"],
    "eval_tokens": 1024,
    "eval_every": 10,
    "eval_log_points": 2,
    "threads": 1,
    "device": "cpu",
}


def test_two_gloo_processes_match_one_process(tmp_path: Path) -> None:
    env = {**os.environ, "SCALINGLAB_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    store = tmp_path / "runs.sqlite"
    script = Path(sys.executable).with_name("scalinglab")
    sets = [
        f"--set={k}={v!r}" if isinstance(v, str) else f"--set={k}={v}" for k, v in SETTINGS.items()
    ]
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        str(script), "train", *sets, "--run-id=ddp", f"--store={store}",
        f"--out-dir={tmp_path / 'ddp'}", "--json",
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)  # rank 0 alone prints the run's summary

    os.environ["SCALINGLAB_CACHE"] = env["SCALINGLAB_CACHE"]
    try:
        single = train(
            TrainConfig.from_dict(
                {
                    **SETTINGS,
                    "run_id": "single",
                    "store": str(store),
                    "out_dir": str(tmp_path / "s"),
                }
            )
        )
    finally:
        del os.environ["SCALINGLAB_CACHE"]
    obs = RunStore(store).observations()
    ddp = obs[obs["run_id"] == "ddp"].sort_values("step")
    one = obs[obs["run_id"] == "single"].sort_values("step")
    assert list(ddp["step"]) == list(one["step"]) == [1, 3, 7, 10, 20]
    gap = np.abs(ddp["loss"].to_numpy() - one["loss"].to_numpy())
    print(f"largest DDP/single-process gap: {gap.max():.3g} nats")
    assert gap.max() < TOLERANCE_NATS
    assert one["loss"].iloc[-1] < one["loss"].iloc[0] - 0.5  # the curve is a real curve
    assert summary["final_loss"]["python-docs"] == ddp["loss"].iloc[-1]
    assert single.final_loss["python-docs"] == pytest.approx(
        ddp["loss"].iloc[-1], abs=TOLERANCE_NATS
    )
