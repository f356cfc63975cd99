"""Tokens/s of the scalinglab training loop against a bare minimal loop, on CPU.

Both loops train the same GPT (d_model 128, 4 layers, context 128, batch 16, byte tokens of
python-stdlib) with AdamW from the same initial weights, on one torch thread. The bare loop
is the least one can write (random windows by ``torch.randint``, forward, backward, step,
zero_grad); the scalinglab loop adds what a real run needs (batches reproducible from
``(seed, step)``, gradient clipping, the LR schedule, the step callback). Its speed is timed
from outside, between the step callbacks of the first and last measured steps, so evaluation
and the final checkpoint are not counted. Each loop is timed by the wall clock and by the
process's CPU time: on a shared machine the wall clock measures the neighbours as much as the
loop, the CPU time much less, so the CPU-time ratio is the headline. Repetitions alternate
the two loops (and which goes first); medians are reported.

``--part sweep`` (or ``all``) runs the ``cpu-tiny`` sweep preset end to end: its wall time with
its 2 workers, the CPU time its processes used, and the forecast it enables: Chinchilla fitted
on the final validation losses (python-stdlib) of every size but the largest, and the ARE of
its forecast of the largest size's runs.

MFU of a 124M GPT-2 in bf16 with torch.compile needs a GPU: none in the session that ran
this, so the JSON says so instead of giving a number.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import record
from scalinglab.training.config import TrainConfig
from scalinglab.training.model import GPT
from scalinglab.training.trainer import prepare_data, train

WARMUP_STEPS = 5
TIMED_STEPS = 30
REPEATS = 5


def config(out_dir: str) -> TrainConfig:
    """The benchmarked run: eval and checkpoint only at the last step (outside the timing)."""
    steps = WARMUP_STEPS + TIMED_STEPS + 1
    return TrainConfig(
        d_model=128,
        layers=4,
        heads=4,
        context=128,
        batch_size=16,
        steps=steps,
        schedule="cosine:peak=1e-3,warmup=0.05,final=1e-4",
        eval_data=("python-stdlib",),
        eval_every=steps,
        eval_log_points=0,
        eval_tokens=2048,
        device="cpu",
        threads=1,
        out_dir=out_dir,
    )


def _clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _rates(
    tokens: int, start: tuple[float, float], end: tuple[float, float]
) -> tuple[float, float]:
    """Tokens per second of wall time and of CPU time."""
    return tokens / (end[0] - start[0]), tokens / (end[1] - start[1])


def scalinglab_loop(cfg: TrainConfig) -> tuple[float, float]:
    """Tokens/s of :func:`train` between the callbacks of the first and last timed steps."""
    stamps: dict[int, tuple[float, float]] = {}

    def on_step(step: int, metrics: object) -> None:
        stamps[step] = _clocks()

    train(cfg, on_step=on_step)
    first, last = WARMUP_STEPS, WARMUP_STEPS + TIMED_STEPS
    return _rates(TIMED_STEPS * cfg.tokens_per_step, stamps[first], stamps[last])


def bare_loop(cfg: TrainConfig, tokens: torch.Tensor) -> tuple[float, float]:
    """Tokens/s of the minimal nanoGPT-style loop over the same model and data."""
    torch.manual_seed(cfg.seed)
    model = GPT(cfg.model_config(256))
    optimizer = torch.optim.AdamW(model.param_groups(cfg.weight_decay), lr=1e-3)
    start = _clocks()
    for step in range(WARMUP_STEPS + TIMED_STEPS):
        if step == WARMUP_STEPS:
            start = _clocks()
        ix = torch.randint(tokens.numel() - cfg.context - 1, (cfg.batch_size,))
        windows = torch.stack([tokens[i : i + cfg.context + 1] for i in ix.tolist()]).long()
        loss = model(windows[:, :-1], windows[:, 1:])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return _rates(TIMED_STEPS * cfg.tokens_per_step, start, _clocks())


def loop_comparison() -> None:
    """Time both loops, alternating, and record the ratios."""
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    ours: list[tuple[float, float]] = []
    bare: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        base = config(str(Path(tmp) / "warm"))
        tokens = torch.from_numpy(prepare_data(base).train.astype(np.int64))
        for rep in range(REPEATS):
            order = ("bare", "ours") if rep % 2 == 0 else ("ours", "bare")
            for which in order:
                if which == "bare":
                    bare.append(bare_loop(base, tokens))
                else:
                    ours.append(scalinglab_loop(config(str(Path(tmp) / f"run{rep}"))))
    wall = statistics.median(o[0] for o in ours) / statistics.median(b[0] for b in bare)
    cpu_ours = statistics.median(o[1] for o in ours)
    cpu_bare = statistics.median(b[1] for b in bare)
    ratio = cpu_ours / cpu_bare
    result = {
        "model": {"d_model": 128, "layers": 4, "heads": 4, "context": 128, "batch_size": 16},
        "params": sum(p.numel() for p in GPT(base.model_config(256)).parameters()),
        "torch_threads": 1,
        "timed_steps": TIMED_STEPS,
        "repeats": REPEATS,
        "scalinglab_tokens_per_s_wall_cpu": ours,
        "bare_tokens_per_s_wall_cpu": bare,
        "ratio_cpu_time": ratio,
        "ratio_wall": wall,
        "target_ratio": 0.95,
        "load_average_1min": os.getloadavg()[0],
        "gpu_mfu": None,
        "gpu_note": "no GPU in the session that ran this: MFU of GPT-2 124M not measured",
    }
    record(
        "train_throughput",
        result,
        f"CPU, 1 thread, d128 L4 ctx128 b16: scalinglab loop {cpu_ours:,.0f} vs bare loop "
        f"{cpu_bare:,.0f} tokens per CPU-second, ratio {ratio:.3f} (target >= 0.95); wall-clock "
        f"ratio {wall:.3f} at load average {os.getloadavg()[0]:.1f}; median of {REPEATS}; "
        "GPU MFU not measured (no GPU in this session)",
    )


def cpu_tiny_sweep(tmp: str) -> dict[str, Any]:
    """Run the cpu-tiny preset; time it; forecast its largest size from the others."""
    from scalinglab.training.sweep import load_sweep, run_sweep

    spec = load_sweep("cpu-tiny")
    store = Path(tmp) / "cpu-tiny.sqlite"
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    tick = time.perf_counter()
    result = run_sweep(spec, store=store, out_dir=Path(tmp) / "cpu-tiny")
    wall = time.perf_counter() - tick
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return {
        "runs": len(result.runs),
        "failed": len(result.failed),
        "wall_seconds": wall,
        "cpu_seconds_workers": cpu,
        **forecast_largest(store),
    }


def forecast_largest(store: Path) -> dict[str, Any]:
    """Chinchilla on the final losses of all sizes but the largest; its ARE on the largest."""
    from scalinglab.data import RunStore
    from scalinglab.evaluation.metrics import are
    from scalinglab.fitting import fit

    obs = RunStore(store).observations(dataset="python-stdlib")
    final = obs.loc[obs.groupby("run_id")["step"].idxmax()]
    largest = final["params"] == final["params"].max()
    law = fit(final[~largest], "chinchilla", dataset="python-stdlib")
    held_out = final[largest]
    x = {"params": held_out["params"].to_numpy(), "tokens": held_out["tokens"].to_numpy()}
    predicted = law.predict(x)
    by_size = final.groupby("params")["loss"].mean()
    return {
        "fit_params": law.params,
        "largest_params": float(held_out["params"].iloc[0]),
        "largest_runs": held_out["run_id"].tolist(),
        "largest_observed": held_out["loss"].tolist(),
        "largest_predicted": predicted.tolist(),
        "are_largest": are(predicted, held_out["loss"].to_numpy()),
        "mean_final_loss_by_params": {str(int(k)): float(v) for k, v in by_size.items()},
    }


def sweep_benchmark() -> None:
    """Run the cpu-tiny preset in a temporary folder and record time and forecast error."""
    with tempfile.TemporaryDirectory() as tmp:
        sweep = cpu_tiny_sweep(tmp)
    sweep["load_average_1min"] = os.getloadavg()[0]
    record(
        "cpu_tiny_sweep",
        sweep,
        f"cpu-tiny preset ({sweep['runs']} runs, 2 workers x 1 thread): "
        f"{sweep['wall_seconds']:.0f} s wall at load average {sweep['load_average_1min']:.1f}, "
        f"{sweep['cpu_seconds_workers']:.0f} s CPU in its workers; Chinchilla fitted on the 3 "
        f"smaller sizes forecasts the largest ({sweep['largest_params']:.0f} params, 6 runs) "
        f"with ARE {100 * sweep['are_largest']:.2f}%",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--part", choices=("loop", "sweep", "all"), default="all")
    args = parser.parse_args()
    if args.part in ("loop", "all"):
        loop_comparison()
    if args.part in ("sweep", "all"):
        sweep_benchmark()


if __name__ == "__main__":
    main()
