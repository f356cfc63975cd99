"""Step time of the MARS optimizers against torch.optim.AdamW and pytorch-optimizer's MARS.

Model: the project's GPT (``scalinglab.training.model``). On CPU (the default) it has about
10.8M parameters in float32, and the summary compares CPU time of this single-threaded
process. With ``--device cuda`` it is GPT-2 small (124M parameters with the 50,304-token
vocabulary, context 1024) in float32 master weights with the forward under bfloat16 autocast,
as GPT-2 runs train, and the summary compares wall time between synchronisations.

Two timings per optimizer: the optimizer step alone (on fixed gradients) and the whole
training step (zero_grad, forward, backward, step). Optimizers are timed round-robin in one
process, so that load from other processes on a shared machine falls on all of them alike;
the medians over rounds are compared as ratios to ``torch.optim.AdamW(foreach=True)``.

The peer, ``pytorch_optimizer.MARS``, is not a dependency of scalinglab: when it is missing
this script builds ``.venv-bench`` (torch and pytorch-optimizer from the package index) and
runs itself there with ``src/`` on the path. ``--no-peer`` times without it, for machines that
cannot reach the index.

Run: ``python benchmarks/mars_step_time.py [--device cpu|cuda] [--threads N] [--rounds R]
[--batch B] [--no-peer] [--no-record]``.
"""

from __future__ import annotations

import argparse
import functools
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


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to run")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds per optimizer")
    parser.add_argument(
        "--batch", type=int, help="sequences per training step (default 4 on CPU, 16 on CUDA)"
    )
    parser.add_argument("--no-peer", action="store_true", help="leave out pytorch-optimizer")
    parser.add_argument("--no-record", action="store_true", help="print, do not record")
    args = parser.parse_args()
    if min(args.threads, args.rounds, args.batch or 1) < 1:
        parser.error("--threads, --rounds and --batch must be >= 1")
    return args


def main() -> int:
    args = parse_args()
    if not args.no_peer and importlib.util.find_spec("pytorch_optimizer") is None:
        return run_in_bench_venv()

    import contextlib

    import torch

    from _common import record
    from scalinglab.optim import make_optimizer
    from scalinglab.training.model import GPT, GPTConfig

    if args.device == "cuda" and not torch.cuda.is_available():
        print("mars_step_time: --device cuda, but torch sees no CUDA device", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    if on_gpu:
        config = GPTConfig(vocab_size=50_304, context=1024, d_model=768, layers=12, heads=12)
        batch = args.batch or 16
    else:
        config = GPTConfig(vocab_size=256, context=128, d_model=384, layers=6, heads=6)
        batch = args.batch or 4
    model = GPT(config).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    tokens = torch.randint(0, config.vocab_size, (batch, config.context + 1), device=device)
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    forward_precision = (
        torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        if on_gpu
        else contextlib.nullcontext()
    )

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
    }
    ours = [f"mars-{v}" for v in ("adamw", "lion", "shampoo")]
    if not args.no_peer:
        import pytorch_optimizer

        for variant in ("adamw", "lion", "shampoo"):
            builders[f"peer-mars-{variant}"] = functools.partial(
                pytorch_optimizer.MARS, params, mars_type=variant, **peer
            )
    optimizers = {name: build() for name, build in builders.items()}

    def closure(opt: torch.optim.Optimizer) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            opt.zero_grad()
            with forward_precision:
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

    # On CPU, CPU time of this (single-threaded) process is what the optimizers cost; wall
    # time on a shared machine adds waiting for a core, so both are kept and CPU time is
    # summarised. On a GPU the kernels run asynchronously: wall time between synchronisations.
    def synchronized_wall() -> float:
        torch.cuda.synchronize(device)
        return time.perf_counter()

    clocks: dict[str, Callable[[], float]] = (
        {"wall": synchronized_wall}
        if on_gpu
        else {"cpu": time.process_time, "wall": time.perf_counter}
    )
    summarised = "wall" if on_gpu else "cpu"
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
    result: dict[str, Any] = {
        "model": {"params": n_params, **config.to_dict()},
        "batch_sequences": batch,
        "torch_threads": args.threads,
        "rounds": args.rounds,
        "device": torch.cuda.get_device_name(device) if on_gpu else "cpu",
        "forward": "bf16 autocast, fp32 weights" if on_gpu else "fp32",
        "clock_summarised": summarised,
        "torch": torch.__version__,
        "optimizer_step_ms": alone_ms,
        "training_step_ms": whole_ms,
        "optimizer_step_ratio_to_adamw": to_adamw(alone_ms),
        "training_step_ratio_to_adamw": to_adamw(whole_ms),
        "target": "MARS-AdamW step <= 1.3x AdamW (optimizer step alone and whole training step)",
    }
    if not args.no_peer:
        result["pytorch_optimizer"] = importlib.metadata.version("pytorch_optimizer")
        result["ratio_to_peer"] = {
            "optimizer_step": {
                c: {n: alone_ms[c][n] / alone_ms[c][f"peer-{n}"] for n in ours} for c in clocks
            },
            "training_step": {
                c: {n: whole_ms[c][n] / whole_ms[c][f"peer-{n}"] for n in ours} for c in clocks
            },
        }
    r_alone = result["optimizer_step_ratio_to_adamw"][summarised]
    r_whole = result["training_step_ratio_to_adamw"][summarised]

    def to_peer(name: str) -> str:
        if args.no_peer:
            return ""
        ratio = result["ratio_to_peer"]["optimizer_step"][summarised][name]
        return f" ({ratio:.2f}x pytorch-optimizer MARS)"

    where = f"{result['device']}, bf16 autocast" if on_gpu else f"CPU, {args.threads} thread(s)"
    summary = (
        f"{n_params / 1e6:.1f}M-param GPT, {where}, batch {batch}x{config.context}, "
        f"{summarised} time per step: optimizer step AdamW "
        f"{alone_ms[summarised]['adamw']:.1f} ms; MARS-AdamW {r_alone['mars-adamw']:.2f}x AdamW"
        f"{to_peer('mars-adamw')}, MARS-Lion {r_alone['mars-lion']:.2f}x{to_peer('mars-lion')}, "
        f"MARS-Shampoo {r_alone['mars-shampoo']:.1f}x{to_peer('mars-shampoo')}; "
        f"training step AdamW {whole_ms[summarised]['adamw']:.1f} ms; "
        f"MARS-AdamW {r_whole['mars-adamw']:.2f}x (exact mode {r_whole['mars-adamw-exact']:.2f}x), "
        f"MARS-Lion {r_whole['mars-lion']:.2f}x, MARS-Shampoo {r_whole['mars-shampoo']:.2f}x; "
        f"target <= 1.3x"
    )
    if args.no_record:
        print(summary)
    else:
        record("mars_step_time-cuda" if on_gpu else "mars_step_time", result, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
