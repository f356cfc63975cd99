"""Tokens/s of the scalinglab training loop against a bare minimal loop, on CPU.

Both loops train the same GPT (d_model 128, 4 layers, context 128, batch 16, byte tokens of
python-stdlib) with AdamW from the same initial weights, with torch's default threads. The
bare loop is the least one can write (random windows by ``torch.randint``, forward, backward,
step, zero_grad); the scalinglab loop adds what a real run needs (batches reproducible from
``(seed, step)``, gradient clipping, the LR schedule, the step callback). Its speed is timed
from outside, between the step callbacks of the first and last measured steps, so evaluation
and the final checkpoint are not counted. Repetitions alternate the two loops so that the
load of a shared machine hits both alike; medians are reported.

Then the ``cpu-tiny`` sweep preset end to end (``--no-sweep`` skips it): its wall time with
its 2 workers, the CPU time its processes used, and the forecast it enables: Chinchilla fitted
on the final validation losses (python-stdlib) of every size but the largest, and the ARE of
its forecast of the largest size's runs.

MFU of a 124M GPT-2 in bf16 with torch.compile needs a GPU: none in the session that ran
this, so the JSON says so instead of giving a number.
"""

from __future__ import annotations

import argparse
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
TIMED_STEPS = 40
REPEATS = 3


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
        out_dir=out_dir,
    )


def scalinglab_loop(cfg: TrainConfig) -> float:
    """Tokens/s of :func:`train` between the callbacks of the first and last timed steps."""
    stamps: dict[int, float] = {}

    def on_step(step: int, metrics: object) -> None:
        stamps[step] = time.perf_counter()

    train(cfg, on_step=on_step)
    first, last = WARMUP_STEPS, WARMUP_STEPS + TIMED_STEPS
    return TIMED_STEPS * cfg.tokens_per_step / (stamps[last] - stamps[first])


def bare_loop(cfg: TrainConfig, tokens: torch.Tensor) -> float:
    """Tokens/s of the minimal nanoGPT-style loop over the same model and data."""
    torch.manual_seed(cfg.seed)
    model = GPT(cfg.model_config(256))
    optimizer = torch.optim.AdamW(model.param_groups(cfg.weight_decay), lr=1e-3)
    start = 0.0
    for step in range(WARMUP_STEPS + TIMED_STEPS):
        if step == WARMUP_STEPS:
            start = time.perf_counter()
        ix = torch.randint(tokens.numel() - cfg.context - 1, (cfg.batch_size,))
        windows = torch.stack([tokens[i : i + cfg.context + 1] for i in ix.tolist()]).long()
        loss = model(windows[:, :-1], windows[:, 1:])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return TIMED_STEPS * cfg.tokens_per_step / (time.perf_counter() - start)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--no-sweep", action="store_true", help="skip the cpu-tiny sweep")
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    with tempfile.TemporaryDirectory() as tmp:
        base = config(str(Path(tmp) / "warm"))
        data = prepare_data(base)
        tokens = torch.from_numpy(data.train.astype(np.int64))
        ours, bare = [], []
        for rep in range(REPEATS):
            bare.append(bare_loop(base, tokens))
            ours.append(scalinglab_loop(config(str(Path(tmp) / f"run{rep}"))))
    ours_median, bare_median = statistics.median(ours), statistics.median(bare)
    ratio = ours_median / bare_median
    result = {
        "model": {"d_model": 128, "layers": 4, "heads": 4, "context": 128, "batch_size": 16},
        "params": sum(p.numel() for p in GPT(base.model_config(256)).parameters()),
        "torch_threads": torch.get_num_threads(),
        "timed_steps": TIMED_STEPS,
        "scalinglab_tokens_per_s": ours,
        "bare_tokens_per_s": bare,
        "scalinglab_median_tokens_per_s": ours_median,
        "bare_median_tokens_per_s": bare_median,
        "ratio": ratio,
        "target_ratio": 0.95,
        "gpu_mfu": None,
        "gpu_note": "no GPU in the session that ran this: MFU of GPT-2 124M not measured",
    }
    summary = (
        f"CPU loop {ours_median:,.0f} tok/s vs bare loop {bare_median:,.0f} tok/s: "
        f"ratio {ratio:.3f} (target >= 0.95; d128 L4 ctx128 b16, "
        f"{torch.get_num_threads()} threads, median of {REPEATS}); GPU MFU not measured (no GPU)"
    )
    if not args.no_sweep:
        with tempfile.TemporaryDirectory() as tmp:
            sweep = cpu_tiny_sweep(tmp)
        result["cpu_tiny"] = sweep
        summary += (
            f"; cpu-tiny sweep ({sweep['runs']} runs, 2 workers): {sweep['wall_seconds']:.0f} s "
            f"wall, {sweep['cpu_seconds_workers']:.0f} s CPU; Chinchilla fit on the 3 smaller "
            f"sizes forecasts the largest with ARE {100 * sweep['are_largest']:.2f}%"
        )
    record("train_throughput", result, summary)


if __name__ == "__main__":
    main()
