"""Token efficiency of MARS-AdamW against AdamW on the project's small GPT (CPU).

Each optimizer gets a small learning-rate sweep (a factor-1.6 grid, widened while the best
rate sits on its edge); with its best rate, the step at which MARS-AdamW's validation loss
first reaches AdamW's final validation loss is read off the evaluation curve (linear
interpolation between evaluations). The issue's target is at most 0.8 of AdamW's steps.
Same model, data, batches, schedule shape and steps for both; one seed.

Run: ``python benchmarks/mars_tokens.py [--steps N] [--no-record]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import record
from scalinglab.training.config import TrainConfig
from scalinglab.training.trainer import TrainResult, train

DATASET = "python-stdlib"
GRID_FACTOR = 1.6
GRID = tuple(4e-3 * GRID_FACTOR**k for k in (-2, -1, 0, 1))  # 1.56e-3 ... 6.4e-3
MAX_WIDENINGS = 2


def run(optimizer: str, peak_lr: float, steps: int, out_dir: Path) -> TrainResult:
    config = TrainConfig(
        d_model=96,
        layers=3,
        heads=3,
        context=64,
        batch_size=16,
        steps=steps,
        schedule=f"cosine:peak={peak_lr:g},warmup=0.05,final={peak_lr / 10:g}",
        optimizer=optimizer,
        eval_data=(DATASET,),
        eval_every=max(1, steps // 20),
        eval_log_points=0,
        eval_tokens=8_192,
        threads=1,
        device="cpu",
        run_id=f"{optimizer}-{peak_lr:g}",
        out_dir=str(out_dir / f"{optimizer}-{peak_lr:g}"),
    )
    return train(config)


def sweep(optimizer: str, steps: int, out_dir: Path) -> dict[float, TrainResult]:
    """Runs at the grid's rates, widened while the best final loss is at an edge."""
    results = {lr: run(optimizer, lr, steps, out_dir) for lr in GRID}
    for _ in range(MAX_WIDENINGS):
        rates = sorted(results)
        best = min(rates, key=lambda lr: results[lr].final_loss[DATASET])
        if best == rates[0]:
            extra = rates[0] / GRID_FACTOR
        elif best == rates[-1]:
            extra = rates[-1] * GRID_FACTOR
        else:
            break
        results[extra] = run(optimizer, extra, steps, out_dir)
    return results


def curve(result: TrainResult) -> list[tuple[int, float]]:
    rows = result.observations
    rows = rows[rows["dataset"] == DATASET].sort_values("step")
    return list(zip(rows["step"].astype(int), rows["loss"].astype(float), strict=True))


def step_reaching(points: list[tuple[int, float]], target: float) -> float | None:
    """First step at which the curve reaches ``target``, interpolated; None if never."""
    previous: tuple[int, float] | None = None
    for step, loss in points:
        if loss <= target:
            if previous is None:
                return step
            s0, l0 = previous
            return s0 + (step - s0) * (l0 - target) / (l0 - loss)
        previous = (step, loss)
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500, help="optimizer steps per run")
    parser.add_argument("--no-record", action="store_true", help="print, do not record")
    args = parser.parse_args()

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        sweeps = {name: sweep(name, args.steps, Path(tmp)) for name in ("adamw", "mars-adamw")}
    best = {
        name: min(results, key=lambda lr: results[lr].final_loss[DATASET])
        for name, results in sweeps.items()
    }
    adamw, mars = sweeps["adamw"][best["adamw"]], sweeps["mars-adamw"][best["mars-adamw"]]
    target = adamw.final_loss[DATASET]
    reached = step_reaching(curve(mars), target)
    fraction = None if reached is None else reached / args.steps
    result: dict[str, Any] = {
        "model_params": adamw.params,
        "steps": args.steps,
        "tokens_per_step": adamw.tokens // args.steps,
        "dataset": DATASET,
        "sweep_final_loss": {
            name: {f"{lr:g}": r.final_loss[DATASET] for lr, r in sorted(results.items())}
            for name, results in sweeps.items()
        },
        "best_lr": best,
        "final_loss": {"adamw": target, "mars-adamw": mars.final_loss[DATASET]},
        "curves": {"adamw": curve(adamw), "mars-adamw": curve(mars)},
        "mars_step_reaching_adamw_final": reached,
        "mars_steps_fraction": fraction,
        "target_fraction": 0.8,
        "seconds": time.perf_counter() - start,
    }
    reach = (
        "never reaches AdamW's final loss"
        if fraction is None
        else f"reaches AdamW's final loss at step {reached:.0f} = {fraction:.2f} of AdamW's steps"
    )
    summary = (
        f"GPT {adamw.params / 1e6:.2f}M params, {args.steps} steps x "
        f"{result['tokens_per_step']} tokens, CPU, tuned lr AdamW {best['adamw']:g} / "
        f"MARS-AdamW {best['mars-adamw']:g}: final val loss AdamW {target:.4f}, "
        f"MARS-AdamW {mars.final_loss[DATASET]:.4f}; MARS-AdamW {reach} (target <= 0.8)"
    )
    if args.no_record:
        print(summary)
    else:
        record("mars_tokens", result, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
