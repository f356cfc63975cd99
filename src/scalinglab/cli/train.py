"""``scalinglab train`` (one run) and ``scalinglab sweep`` (many): small GPTs on CPU or GPU.

torch is imported only when a command runs, so the rest of the CLI works without the
``train`` extra.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.text import Text

from scalinglab.cli._common import (
    check_outputs,
    console,
    err_console,
    print_json,
    print_table,
    user_errors,
)
from scalinglab.cli.compute import parse_assignments
from scalinglab.cli.data_options import StoreOpt
from scalinglab.cli.main import app
from scalinglab.data.loaders import store_url
from scalinglab.data.store import default_store
from scalinglab.errors import SpecError

if TYPE_CHECKING:
    from scalinglab.training.sweep import RunOutcome

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (no progress bar).")]
LogToOpt = Annotated[
    list[str] | None,
    typer.Option(help="Also log to tensorboard, mlflow or wandb (offline), beside the store."),
]


def _require_torch() -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        raise SpecError("training needs PyTorch: pip install 'scalinglab[train]'") from None


def _toml_value(text: str) -> Any:
    """A ``--set`` value as TOML reads it (numbers, booleans, lists), else the plain string."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


@app.command("train")
@user_errors
def train_command(
    config: Annotated[
        Path | None, typer.Option(help="TOML file of TrainConfig settings (top-level keys).")
    ] = None,
    d_model: Annotated[int | None, typer.Option(help="Residual width.")] = None,
    layers: Annotated[int | None, typer.Option(help="Transformer blocks.")] = None,
    heads: Annotated[int | None, typer.Option(help="Attention heads (divide d_model).")] = None,
    context: Annotated[int | None, typer.Option(help="Sequence length, tokens.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Sequences per step (global).")] = None,
    steps: Annotated[int | None, typer.Option(help="Budget in optimizer steps.")] = None,
    tokens: Annotated[int | None, typer.Option(help="Budget in training tokens.")] = None,
    schedule: Annotated[
        str | None, typer.Option(help="LR schedule spec, e.g. 'cosine:peak=1e-3,warmup=0.05'.")
    ] = None,
    optimizer: Annotated[
        str | None, typer.Option(help="adamw, mars-adamw, mars-lion or mars-shampoo.")
    ] = None,
    train_data: Annotated[
        str | None, typer.Option(help="Corpus: python-stdlib, python-docs, or a path.")
    ] = None,
    eval_data: Annotated[
        list[str] | None, typer.Option(help="Corpus to evaluate (repeat for several).")
    ] = None,
    tokenizer: Annotated[str | None, typer.Option(help="byte or bpe:VOCAB.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed (init and batch order).")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or cuda:N.")] = None,
    compile_model: Annotated[
        bool | None, typer.Option("--compile/--no-compile", help="Use torch.compile.")
    ] = None,
    threads: Annotated[int | None, typer.Option(help="Torch CPU threads.")] = None,
    store: Annotated[
        str | None,
        typer.Option(
            help="Run store to write to: .sqlite file or postgresql:// URL "
            "(default: $SCALINGLAB_STORE)."
        ),
    ] = None,
    run_id: Annotated[str | None, typer.Option(help="Name of the run in the store.")] = None,
    log_to: LogToOpt = None,
    out_dir: Annotated[
        Path | None, typer.Option(help="Checkpoint folder (default runs/<run_id>).")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Any other setting: KEY=VALUE (TOML value), repeatable."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Train one small GPT (or resume it from its checkpoint), writing observations to a store.

    Under torchrun it trains one run on several processes (DDP):
    torchrun --nproc_per_node=N $(which scalinglab) train ...
    """
    check_outputs(stores={"--store": store}, folders={"--out-dir": out_dir})
    _require_torch()
    from scalinglab.training.config import TrainConfig, read_toml
    from scalinglab.training.trainer import train

    settings: dict[str, Any] = read_toml(config) if config is not None else {}
    settings.update({k: _toml_value(v) for k, v in parse_assignments(set_, "--set").items()})
    given = {
        "d_model": d_model,
        "layers": layers,
        "heads": heads,
        "context": context,
        "batch_size": batch_size,
        "steps": steps,
        "tokens": tokens,
        "schedule": schedule,
        "optimizer": optimizer,
        "train_data": train_data,
        "eval_data": eval_data,
        "tokenizer": tokenizer,
        "seed": seed,
        "device": device,
        "compile": compile_model,
        "threads": threads,
        "store": store or default_store(),
        "run_id": run_id,
        "out_dir": str(out_dir) if out_dir is not None else None,
        "log_to": log_to,
    }
    settings.update({k: v for k, v in given.items() if v is not None})
    if steps is not None:
        settings.pop("tokens", None)
    if tokens is not None:
        settings.pop("steps", None)
    cfg = TrainConfig.from_dict(settings, source=str(config) if config else "train")
    result = train(cfg, progress=not as_json)
    if int(os.environ.get("RANK", "0")) != 0:
        return  # under torchrun, rank 0 speaks for the run
    summary = {
        "run_id": result.run_id,
        "params": result.params,
        "params_nonembedding": result.params_nonembedding,
        "steps": result.steps,
        "tokens": result.tokens,
        "final_loss": result.final_loss,
        "resumed_from": result.resumed_from,
        "seconds": result.seconds,
        "tokens_per_second": result.tokens_per_second,
        "store": cfg.store,
        "checkpoint_dir": str(cfg.checkpoint_dir),
    }
    if as_json:
        print_json(summary)
        return
    resumed = f", resumed from step {result.resumed_from}" if result.resumed_from else ""
    console.print(
        Text(result.run_id, style="bold") + f": {result.params:,} parameters "
        f"({result.params_nonembedding:,} non-embedding), {result.steps} steps, "
        f"{result.tokens:,} tokens, {result.tokens_per_second:,.0f} tokens/s{resumed}",
        highlight=False,
    )
    print_table(
        [{"dataset": k, "loss_nats": v} for k, v in result.final_loss.items()],
        title="final validation loss",
    )


@app.command("sweep")
@user_errors
def sweep_command(
    spec: Annotated[Path | None, typer.Argument(help="Sweep spec (TOML); or use --preset.")] = None,
    preset: Annotated[str | None, typer.Option(help="Built-in sweep, e.g. cpu-tiny.")] = None,
    store: StoreOpt = None,
    out_dir: Annotated[
        Path | None, typer.Option(help="Checkpoint folders (default runs/<sweep name>).")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes of the local executor (default: spec's).")
    ] = None,
    executor: Annotated[
        str | None,
        typer.Option(help="Where the runs train: local, slurm or ray (default: the spec's)."),
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(help="A running Ray cluster ('auto', 'ray://head:10001'); implies ray."),
    ] = None,
    log_to: LogToOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List the runs without training.")
    ] = False,
    show_spec: Annotated[
        bool, typer.Option("--show-spec", help="Print the preset's TOML and exit.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Train a grid of runs (sizes x budgets x schedules x optimizers x seeds) in parallel.

    On local worker processes (the default), a Slurm job array (--executor slurm) or Ray
    tasks (--executor ray). Resumable: runs the store marks finished are skipped,
    interrupted ones resume from their checkpoints.
    """
    if (spec is None) == (preset is None):
        raise SpecError("give a sweep spec file or --preset NAME (not both)")
    if workers is not None and workers < 1:
        raise SpecError(f"--workers must be at least 1, got {workers}")
    check_outputs(stores={"--store": store}, folders={"--out-dir": out_dir})
    _require_torch()
    from scalinglab.training.executors import make_executor
    from scalinglab.training.presets import PRESETS
    from scalinglab.training.sweep import load_sweep, run_sweep, summarize

    if show_spec:
        if preset is None or preset not in PRESETS:
            raise SpecError(f"--show-spec needs --preset, one of {', '.join(sorted(PRESETS))}")
        typer.echo(PRESETS[preset], nl=False)
        return
    sweep = load_sweep(preset if preset is not None else str(spec))
    if log_to:
        sweep = dataclasses.replace(sweep, base={**sweep.base, "log_to": log_to})
    out = out_dir if out_dir is not None else Path("runs") / sweep.name
    store_path = store or default_store() or str(out / "runs.sqlite")
    if dry_run:
        from scalinglab.training.trainer import param_count, tokenizer_for

        rows = []
        for cfg in sweep.configs(out_dir=out, store=store_path):
            counts = param_count(cfg, tokenizer_for(cfg).vocab_size)
            rows.append(
                {
                    "run_id": cfg.name,
                    "params": counts.total,
                    "params_nonembedding": counts.nonembedding,
                    "steps": cfg.total_steps,
                    "tokens": cfg.total_steps * cfg.tokens_per_step,
                    "schedule": cfg.schedule_spec(),
                    "optimizer": cfg.optimizer,
                }
            )
        if as_json:
            print_json(rows)
        else:
            print_table(rows, title=f"sweep {sweep.name}: {len(rows)} runs")
        return

    def report(outcome: RunOutcome, done: int, total: int) -> None:
        if as_json:
            return
        losses = ", ".join(f"{k} {v:.4f}" for k, v in outcome.final_loss.items())
        detail = outcome.error or losses
        console.print(
            f"[{done}/{total}] {outcome.run_id}: {outcome.status} "
            f"({outcome.seconds:.0f} s) {detail}",
            highlight=False,
            markup=False,
        )

    runner = make_executor(
        sweep, out_dir=out, name=executor, workers=workers, ray_address=ray_address
    )
    if runner.remote and store_url(store_path) is None:
        err_console.print(
            f"warning: runs on several hosts writing to the SQLite file {store_path} can "
            "corrupt it on a network filesystem; use --store postgresql://user@host/db",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    result = run_sweep(sweep, store=store_path, out_dir=out, executor=runner, on_run=report)
    rows = summarize(result.runs)
    if as_json:
        print_json(
            {"name": result.name, "store": result.store, "seconds": result.seconds, "runs": rows}
        )
    else:
        console.print(
            f"sweep {result.name}: {len(rows)} runs in {result.seconds:.0f} s; "
            f"observations in {result.store}",
            highlight=False,
        )
    if result.unfinished:
        if not as_json:
            err_console.print(
                f"{len(result.unfinished)} runs did not finish; run the same command again to "
                "resume them",
                highlight=False,
            )
        raise typer.Exit(1)
