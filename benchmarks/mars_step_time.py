"""Step time of the MARS optimizers against torch.optim.AdamW and pytorch-optimizer's MARS.

Model: the project's GPT (``scalinglab.training.model``) at about 10.8M parameters, on CPU.
Two timings per optimizer: the optimizer step alone (on fixed gradients) and the whole
training step (zero_grad, forward, backward, step). Optimizers are timed round-robin in one
process, so that load from other processes on a shared machine falls on all of them alike;
the medians over rounds are compared as ratios to ``torch.optim.AdamW(foreach=True)``.

The peer, ``pytorch_optimizer.MARS``, is not a dependency of scalinglab: when it is missing
this script builds ``.venv-bench`` (torch and pytorch-optimizer from the package index) and
runs itself there with ``src/`` on the path.

Run: ``python benchmarks/mars_step_time.py [--threads N] [--rounds R] [--no-record]``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH_VENV = ROOT / ".venv-bench"
BENCH_PACKAGES = ["torch==2.13.0", "pytorch-optimizer"]


def run_in_bench_venv() -> int:
    """Create or complete .venv-bench, then run this script with its Python."""
    python = BENCH_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
    probe = [str(python), "-c", "import torch, pytorch_optimizer"]
    if subprocess.run(probe, capture_output=True, check=False).returncode != 0:
        subprocess.run([str(python), "-m", "pip", "install", "-q", *BENCH_PACKAGES], check=True)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "benchmarks")]),
    }
    return subprocess.call([str(python), __file__, *sys.argv[1:]], env=env)


def median_ms(samples: list[float]) -> float:
    return 1e3 * statistics.median(samples)


def main() -> int:
    if importlib.util.find_spec("pytorch_optimizer") is None:
        return run_in_bench_venv()

    import pytorch_optimizer
    import torch

    from _common import record
    from scalinglab.optim import make_optimizer
    from scalinglab.training.model import GPT, GPTConfig

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds per optimizer")
    parser.add_argument("--batch", type=int, default=4, help="sequences per training step")
    parser.add_argument("--no-record", action="store_true", help="print, do not record")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    config = GPTConfig(vocab_size=256, context=128, d_model=384, layers=6, heads=6)
    model = GPT(config)
    n_params = sum(p.numel() for p in model.parameters())
    tokens = torch.randint(0, config.vocab_size, (args.batch, config.context + 1))
    inputs, targets = tokens[:, :-1], tokens[:, 1:]

    # Same settings everywhere: lr, betas, γ and weight decay of the MARS paper's defaults.
    common = {"lr": 3e-3, "weight_decay": 0.1}
    mars = {**common, "betas": (0.95, 0.99), "gamma": 0.025}
    peer = {**mars, "lr_1d": 3e-3, "betas_1d": (0.9, 0.95), "weight_decay_1d": 0.1}
    params = list(model.parameters())
    builders: dict[str, Callable[[], torch.optim.Optimizer]] = {
        "adamw": lambda: torch.optim.AdamW(params, betas=(0.9, 0.95), foreach=True, **common),
        "mars-adamw": lambda: make_optimizer("mars-adamw", params, **mars),
        "mars-lion": lambda: make_optimizer("mars-lion", params, **mars),
        "mars-shampoo": lambda: make_optimizer("mars-shampoo", params, **mars),
        "mars-adamw-exact": lambda: make_optimizer("mars-adamw", params, mode="exact", **mars),
        "peer-mars-adamw": lambda: pytorch_optimizer.MARS(params, mars_type="adamw", **peer),
        "peer-mars-lion": lambda: pytorch_optimizer.MARS(params, mars_type="lion", **peer),
        "peer-mars-shampoo": lambda: pytorch_optimizer.MARS(params, mars_type="shampoo", **peer),
    }
    optimizers = {name: build() for name, build in builders.items()}

    def closure(opt: torch.optim.Optimizer) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            opt.zero_grad()
            loss = model(inputs, targets)
            loss.backward()
            return loss

        return run

    def train_step(opt: torch.optim.Optimizer) -> None:
        if getattr(opt, "mode", "approx") == "exact":
            opt.step(closure(opt))
        else:
            closure(opt)()
            opt.step()

    # CPU time of this (single-threaded) process is what the optimizers cost; wall time on a
    # shared machine adds waiting for a core, so both are kept and CPU time is summarised.
    clocks = {"cpu": time.process_time, "wall": time.perf_counter}
    alone: dict[str, dict[str, list[float]]] = {c: {} for c in clocks}
    whole: dict[str, dict[str, list[float]]] = {c: {} for c in clocks}

    def timed(
        samples: dict[str, dict[str, list[float]]], name: str, run: Callable[[], Any]
    ) -> None:
        start = {c: clock() for c, clock in clocks.items()}
        run()
        for c, clock in clocks.items():
            samples[c].setdefault(name, []).append(clock() - start[c])

    # Round 0 creates every optimizer's state and is dropped.
    for _ in range(args.rounds + 1):
        closure(optimizers["adamw"])()  # fixed gradients for the step-alone timings
        for name, opt in optimizers.items():
            if not name.endswith("-exact"):
                timed(alone, name, opt.step)
        for name, opt in optimizers.items():
            timed(whole, name, lambda opt=opt: train_step(opt))

    def medians(samples: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, float]]:
        return {c: {n: median_ms(v[1:]) for n, v in per.items()} for c, per in samples.items()}

    def to_adamw(ms: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        return {c: {n: v / per["adamw"] for n, v in per.items()} for c, per in ms.items()}

    alone_ms, whole_ms = medians(alone), medians(whole)
    ours = [f"mars-{v}" for v in ("adamw", "lion", "shampoo")]
    result: dict[str, Any] = {
        "model": {"params": n_params, **config.to_dict()},
        "batch_sequences": args.batch,
        "torch_threads": args.threads,
        "rounds": args.rounds,
        "device": "cpu (no GPU in this session)",
        "torch": torch.__version__,
        "pytorch_optimizer": importlib.metadata.version("pytorch_optimizer"),
        "optimizer_step_ms": alone_ms,
        "training_step_ms": whole_ms,
        "optimizer_step_ratio_to_adamw": to_adamw(alone_ms),
        "training_step_ratio_to_adamw": to_adamw(whole_ms),
        "ratio_to_peer": {
            "optimizer_step": {
                c: {n: alone_ms[c][n] / alone_ms[c][f"peer-{n}"] for n in ours} for c in clocks
            },
            "training_step": {
                c: {n: whole_ms[c][n] / whole_ms[c][f"peer-{n}"] for n in ours} for c in clocks
            },
        },
        "target": "MARS-AdamW step <= 1.3x AdamW (optimizer step alone and whole training step)",
    }
    r_alone = result["optimizer_step_ratio_to_adamw"]["cpu"]
    r_whole = result["training_step_ratio_to_adamw"]["cpu"]
    peer_ratio = result["ratio_to_peer"]["optimizer_step"]["cpu"]
    summary = (
        f"{n_params / 1e6:.1f}M-param GPT, CPU, {args.threads} thread(s), "
        f"batch {args.batch}x{config.context}, CPU time per step: optimizer step AdamW "
        f"{alone_ms['cpu']['adamw']:.0f} ms; MARS-AdamW {r_alone['mars-adamw']:.2f}x AdamW "
        f"({peer_ratio['mars-adamw']:.2f}x pytorch-optimizer MARS), "
        f"MARS-Lion {r_alone['mars-lion']:.2f}x ({peer_ratio['mars-lion']:.2f}x peer), "
        f"MARS-Shampoo {r_alone['mars-shampoo']:.1f}x ({peer_ratio['mars-shampoo']:.2f}x peer); "
        f"training step AdamW {whole_ms['cpu']['adamw']:.0f} ms; "
        f"MARS-AdamW {r_whole['mars-adamw']:.2f}x (exact mode {r_whole['mars-adamw-exact']:.2f}x), "
        f"MARS-Lion {r_whole['mars-lion']:.2f}x, MARS-Shampoo {r_whole['mars-shampoo']:.2f}x; "
        f"target <= 1.3x"
    )
    if args.no_record:
        print(summary)
    else:
        record("mars_step_time", result, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
