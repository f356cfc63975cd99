"""Token efficiency of MARS-AdamW against AdamW on the project's small GPT (CPU).

AdamW runs with the trainer's defaults (torch's betas 0.9, 0.999); MARS-AdamW runs twice,
with the paper's betas (0.95, 0.99, tuned for GPT-2 over 100k steps) and with AdamW's betas,
which isolates the variance-reduction term. Each setting gets a small learning-rate sweep (a
factor-1.6 grid, widened while the best rate sits on its edge); with its best rate, the step
at which MARS-AdamW's validation loss first reaches AdamW's final validation loss is read off
the evaluation curve (linear interpolation between evaluations). The issue's target is at
most 0.8 of AdamW's steps. Same model, data, batches, schedule shape and steps; one seed.

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
#: label -> (optimizer, options); the first is the baseline
SETTINGS: dict[str, tuple[str, dict[str, Any]]] = {
    "adamw": ("adamw", {}),
    "mars-adamw": ("mars-adamw", {}),
    "mars-adamw-betas-0.9-0.999": ("mars-adamw", {"betas": (0.9, 0.999)}),
}


def run(label: str, peak_lr: float, steps: int, out_dir: Path) -> TrainResult:
    optimizer, options = SETTINGS[label]
    config = TrainConfig(
        d_model=96,
        layers=3,
        heads=3,
        context=64,
        batch_size=16,
        steps=steps,
        schedule=f"cosine:peak={peak_lr:g},warmup=0.05,final={peak_lr / 10:g}",
        optimizer=optimizer,
        optimizer_kwargs=options,
        eval_data=(DATASET,),
        eval_every=max(1, steps // 20),
        eval_log_points=0,
        eval_tokens=8_192,
        threads=1,
        device="cpu",
        run_id=f"{label}-{peak_lr:g}",
        out_dir=str(out_dir / f"{label}-{peak_lr:g}"),
    )
    return train(config)


def sweep(label: str, steps: int, out_dir: Path) -> dict[float, TrainResult]:
    """Runs at the grid's rates, widened while the best final loss is at an edge."""
    results = {lr: run(label, lr, steps, out_dir) for lr in GRID}
    for _ in range(MAX_WIDENINGS):
        rates = sorted(results)
        best = min(rates, key=lambda lr: results[lr].final_loss[DATASET])
        if best == rates[0]:
            extra = rates[0] / GRID_FACTOR
        elif best == rates[-1]:
            extra = rates[-1] * GRID_FACTOR
        else:
            break
        results[extra] = run(label, extra, steps, out_dir)
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
        sweeps = {label: sweep(label, args.steps, Path(tmp)) for label in SETTINGS}
    best = {
        label: min(results, key=lambda lr: results[lr].final_loss[DATASET])
        for label, results in sweeps.items()
    }
    runs = {label: sweeps[label][best[label]] for label in SETTINGS}
    final = {label: r.final_loss[DATASET] for label, r in runs.items()}
    target = final["adamw"]
    reached = {
        label: step_reaching(curve(r), target) for label, r in runs.items() if label != "adamw"
    }
    adamw = runs["adamw"]
    result: dict[str, Any] = {
        "model_params": adamw.params,
        "steps": args.steps,
        "tokens_per_step": adamw.tokens // args.steps,
        "dataset": DATASET,
        "settings": {label: {"optimizer": o, **kw} for label, (o, kw) in SETTINGS.items()},
        "sweep_final_loss": {
            label: {f"{lr:g}": r.final_loss[DATASET] for lr, r in sorted(results.items())}
            for label, results in sweeps.items()
        },
        "best_lr": best,
        "final_loss": final,
        "curves": {label: curve(r) for label, r in runs.items()},
        "step_reaching_adamw_final": reached,
        "steps_fraction": {
            label: None if step is None else step / args.steps for label, step in reached.items()
        },
        "target_fraction": 0.8,
        "seconds": time.perf_counter() - start,
    }

    def describe(label: str) -> str:
        step = reached[label]
        where = "never" if step is None else f"at {step / args.steps:.2f} of its steps"
        return (
            f"{label} (lr {best[label]:g}) {final[label]:.4f}, reaches AdamW's final loss {where}"
        )

    summary = (
        f"GPT {adamw.params / 1e6:.2f}M params, {args.steps} steps x "
        f"{result['tokens_per_step']} tokens, CPU, tuned lr; final val loss: AdamW "
        f"(lr {best['adamw']:g}) {target:.4f}; "
        + "; ".join(describe(label) for label in reached)
        + " (target <= 0.8)"
    )
    if args.no_record:
        print(summary)
    else:
        record("mars_tokens", result, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
