"""The training loop: one readable function from a :class:`TrainConfig` to observations.

Per step: sample the global batch of step ``s`` from ``(seed, s)`` alone (so a resumed run
and every DDP rank see the same batches), forward under bf16 autocast on CUDA, backward,
clip the global gradient norm, optimizer and LR-scheduler step. At the evaluation steps
(log-spaced early, then regular) the validation split of every ``eval_data`` corpus is
scored and each loss becomes one observation row (``run_id, step, tokens, params,
params_nonembedding, flops, lr, dataset, loss, seed``) in the run store; with
``train_loss_window`` the training loss of every update, smoothed over that many steps, is
written too, as dataset ``train``.
``params`` is the total parameter count N (embeddings included) and
``flops = 6 · params · tokens``;
``params_nonembedding`` is recorded alongside for Kaplan-style fits. ``lr`` is the learning
rate of the update that produced the measured weights. Checkpoints are written atomically; a
run whose ``out_dir`` holds one resumes from it. While it trains, a run holds the lock of its
``out_dir`` (:mod:`scalinglab.training.lock`): a second process that starts it is refused.
A validation loss that is not finite stops the run as diverged (:class:`TrainingDiverged`).
``log_to`` also sends every evaluation to TensorBoard, MLflow or W&B
(:mod:`scalinglab.training.loggers`).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, cast

import numpy as np
import pandas as pd
import torch
from torch import nn

from scalinglab.errors import ScalingLabError, SpecError
from scalinglab.planning.counting import ParamCount, count_params
from scalinglab.training import distributed
from scalinglab.training.checkpoint import (
    checkpoint_path,
    load_checkpoint,
    remove_stale_temp_files,
    save_checkpoint,
)
from scalinglab.training.config import TrainConfig
from scalinglab.training.corpora import Corpus, load_corpus
from scalinglab.training.lock import run_lock
from scalinglab.training.loggers import open_run_loggers
from scalinglab.training.model import GPT
from scalinglab.training.tokenizer import TokenIds, Tokenizer, TokenSplits, get_tokenizer, tokenize

#: callback after every update: ``(step, metrics)``; metrics hold eval losses at eval steps
StepCallback = Callable[[int, Mapping[str, float]], None]


class TrainingDiverged(ScalingLabError):
    """A validation loss that is not finite: the run diverged (the store marks it failed)."""


@dataclass
class TrainResult:
    """What a call of :func:`train` did.

    Attributes
    ----------
    run_id
        Name of the run.
    steps, tokens
        Optimizer steps and training tokens of the whole run.
    params, params_nonembedding
        Parameter counts (total with embeddings; Kaplan's non-embedding).
    final_loss
        Validation loss (nats/token) per dataset at the last step.
    observations
        The observation rows this call measured (those before a resume are in the store).
    resumed_from
        Step of the checkpoint the run resumed from, or ``None``.
    seconds, tokens_per_second
        Wall time of this call's training steps (evaluation excluded from the throughput).
    config
        The run's settings, as :meth:`TrainConfig.to_dict` gives them.
    """

    run_id: str
    steps: int
    tokens: int
    params: int
    params_nonembedding: int
    final_loss: dict[str, float]
    observations: pd.DataFrame
    resumed_from: int | None
    seconds: float
    tokens_per_second: float
    config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PreparedData:
    """Tokenizer, training tokens and validation tokens per evaluated corpus."""

    tokenizer: Tokenizer
    train: TokenIds
    evals: dict[str, TokenIds]


@lru_cache(maxsize=8)
def _corpus(spec: str, val_fraction: float) -> Corpus:
    # sweep workers run many configs on the same corpora: read and hash them once
    return load_corpus(spec, val_fraction=val_fraction)


@lru_cache(maxsize=8)
def _tokenizer(spec: str, train_spec: str, val_fraction: float) -> Tokenizer:
    return get_tokenizer(spec, lambda: _corpus(train_spec, val_fraction))


@lru_cache(maxsize=16)
def _splits(spec: str, val_fraction: float, tokenizer_spec: str, train_spec: str) -> TokenSplits:
    tokenizer = _tokenizer(tokenizer_spec, train_spec, val_fraction)
    return tokenize(_corpus(spec, val_fraction), tokenizer)


def tokenizer_for(config: TrainConfig) -> Tokenizer:
    """The tokenizer of ``config`` (a BPE is trained on its training corpus, or read from cache)."""
    return _tokenizer(config.tokenizer, config.train_data, config.val_fraction)


def prepare_data(config: TrainConfig) -> PreparedData:
    """Load, split and tokenize the corpora of ``config``; check they are large enough.

    Raises
    ------
    SpecError
        An unknown or empty corpus, or a split shorter than one sequence.
    """
    tokenizer = tokenizer_for(config)
    need = config.context + 1
    train = _splits(config.train_data, config.val_fraction, config.tokenizer, config.train_data)
    if train.train.size < need:
        raise SpecError(
            f"corpus '{config.train_data}' has {train.train.size} training tokens; "
            f"one sequence needs {need} (context + 1)"
        )
    evals: dict[str, TokenIds] = {}
    for spec in config.eval_data:
        split = _splits(spec, config.val_fraction, config.tokenizer, config.train_data)
        if split.val.size < need:
            raise SpecError(
                f"validation split of corpus '{spec}' has {split.val.size} tokens; "
                f"one sequence needs {need} (context + 1)"
            )
        if split.name in evals:
            raise SpecError(f"eval_data names corpus '{split.name}' twice")
        evals[split.name] = split.val
    return PreparedData(tokenizer, train.train, evals)


def param_count(config: TrainConfig, vocab_size: int) -> ParamCount:
    """Parameter counts of the model ``config`` builds (planning's convention)."""
    model = config.model_config(vocab_size)
    return count_params(
        model.d_model,
        model.layers,
        model.vocab_size,
        model.context,
        heads=model.heads,
        d_ff=model.hidden,
        tied_embeddings=model.tied_embeddings,
        positions=model.positions,
        mlp=model.mlp,
        bias=model.bias,
        norm=model.norm,
    )


def batch_for_step(
    tokens: TokenIds, step: int, seed: int, batch_size: int, context: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets ``(batch_size, context)`` of 0-based update ``step``.

    Random windows of the training tokens, drawn from a generator seeded by ``(seed, step)``
    only: the batch does not depend on what ran before, which makes resuming and sharding
    over processes exact.
    """
    rng = np.random.default_rng([seed, step])
    starts = rng.integers(0, tokens.size - context, size=batch_size)
    windows = torch.from_numpy(tokens[starts[:, None] + np.arange(context + 1)].astype(np.int64))
    return windows[:, :-1], windows[:, 1:]


def eval_windows(tokens: TokenIds, context: int, max_tokens: int) -> torch.Tensor:
    """Fixed evaluation sequences ``(n, context + 1)``: non-overlapping, spread evenly."""
    available = (tokens.size - 1) // context
    count = max(1, min(available, max_tokens // context))
    starts = np.linspace(0, tokens.size - context - 1, count).astype(np.int64)
    return torch.from_numpy(tokens[starts[:, None] + np.arange(context + 1)].astype(np.int64))


def _memory_bytes(device: torch.device) -> int | None:
    """Memory of ``device`` in bytes (physical memory for the CPU), or None if unknown."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits_memory(
    config: TrainConfig, counts: ParamCount, vocab_size: int, device: torch.device
) -> None:
    """Refuse a run that cannot fit in the device's memory, before allocating it.

    A lower bound: weights, gradients and two optimizer moments (16 bytes per parameter),
    plus the float32 activations of one batch (residual stream, attention and MLP of every
    layer, and the logits).

    Raises
    ------
    SpecError
        Naming the estimate and the memory there is.
    """
    available = _memory_bytes(device)
    if available is None:
        return
    model = config.model_config(vocab_size)
    per_token = model.layers * (8 * model.d_model + 2 * model.hidden) + 2 * vocab_size
    attention = model.layers * model.heads * model.context
    activations = 4 * config.batch_size * model.context * (per_token + attention)
    need = 16 * counts.total + activations
    if need > available:
        raise SpecError(
            f"run '{config.name}' needs at least {need / 2**30:,.1f} GiB ({counts.total:,} "
            f"parameters, batch {config.batch_size} x context {config.context}) but "
            f"{device.type} has {available / 2**30:,.1f} GiB; choose a smaller model or batch"
        )


def _device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SpecError(f"device '{spec}' requested but CUDA is not available")
    return device


def _autocast(device: torch.device, dtype: str) -> contextlib.AbstractContextManager[Any]:
    use_bf16 = dtype == "bf16" or (dtype == "auto" and device.type == "cuda")
    if use_bf16:
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _make_optimizer(config: TrainConfig, model: GPT, peak_lr: float) -> torch.optim.Optimizer:
    """The optimizer over the model: weight decay on matrices only, whatever the optimizer."""
    from scalinglab.optim import MARS, OPTIMIZERS, make_optimizer

    kwargs = dict(config.optimizer_kwargs)
    if issubclass(OPTIMIZERS[config.optimizer.strip().lower()], MARS):
        kwargs.setdefault("weight_decay_1d", 0.0)  # MARS decays vectors on its own by default
    groups = model.param_groups(config.weight_decay)
    return make_optimizer(config.optimizer, groups, lr=peak_lr, **kwargs)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    windows: torch.Tensor,
    batch_size: int,
    device: torch.device,
    dtype: str = "auto",
    dist_info: distributed.DistInfo | None = None,
) -> float:
    """Mean cross-entropy (nats/token) of ``model`` on evaluation ``windows``.

    With several processes each scores a share of the windows and the sums are reduced.
    """
    info = dist_info or distributed.DistInfo()
    was_training = model.training
    model.eval()
    mine = windows[info.rank :: info.world_size]
    totals = torch.zeros(2, dtype=torch.float64, device=device)
    for chunk in mine.split(batch_size):
        chunk = chunk.to(device, non_blocking=True)
        with _autocast(device, dtype):
            loss = model(chunk[:, :-1], chunk[:, 1:])
        totals[0] += loss.double() * chunk.shape[0]
        totals[1] += chunk.shape[0]
    distributed.all_reduce_sum(totals, info)
    model.train(was_training)
    return float(totals[0] / totals[1])


#: dataset name of the smoothed training loss the trainer writes
TRAIN_LOSS_DATASET = "train"


def centred_mean(values: np.ndarray, half: int, first: int, last: int) -> np.ndarray:
    """Centred moving average of ``values[first:last]`` over ``2·half + 1`` entries.

    Near either end of ``values`` the window shrinks symmetrically, so that a linear trend
    stays unbiased.
    """
    prefix = np.concatenate([[0.0], np.cumsum(values)])
    at = np.arange(first, last)
    width = np.minimum(np.minimum(at, values.size - 1 - at), half)
    return (prefix[at + width + 1] - prefix[at - width]) / (2 * width + 1)


class _TrainLossLog:
    """The training loss of every update, smoothed, for the store (dataset ``train``).

    The loss computed at update ``k`` (0-based) is that of the weights after ``k`` updates:
    it becomes the row of step ``k`` (step 0, the untrained model, is not written). Losses
    stay on the device until a flush, so logging them adds no synchronisation per step; a
    row is written once the window centred on it is complete (or at the end of the run), and
    the losses still needed travel in the checkpoint.
    """

    def __init__(self, window: int, state: Mapping[str, Any] | None) -> None:
        self.half = max(window - 1, 0) // 2
        self.enabled = window > 0
        saved = state or {}
        self.first = int(saved.get("first", 0))  # step of values[0]
        self.next = int(saved.get("next", 1))  # first step not yet written
        self.values: list[float] = list(saved.get("values", []))
        self.pending: list[torch.Tensor] = []

    def add(self, loss: torch.Tensor) -> None:
        if self.enabled:
            self.pending.append(loss.detach().float())

    def flush(self, info: distributed.DistInfo, final: bool) -> list[tuple[int, float]]:
        """``(step, smoothed loss)`` rows ready to be written (every rank must call this)."""
        if not self.enabled:
            return []
        if self.pending:
            new = torch.stack(self.pending).double()
            distributed.all_reduce_sum(new, info)  # the mean over ranks: the global batch
            self.values.extend((new / info.world_size).tolist())
            self.pending = []
        end = self.first + len(self.values) if final else self.first + len(self.values) - self.half
        start = max(self.next, self.first)
        if end <= start:
            return []
        smooth = centred_mean(
            np.asarray(self.values), self.half, start - self.first, end - self.first
        )
        self.next = end
        keep = max(0, self.next - self.half - self.first)  # the left halves still needed
        self.values, self.first = self.values[keep:], self.first + keep
        return list(zip(range(start, end), smooth.tolist(), strict=True))

    def state(self) -> dict[str, Any]:
        return {"first": self.first, "next": self.next, "values": list(self.values)}


class _Progress:
    """A rich progress bar with loss, tokens/s and ETA (or nothing when disabled)."""

    def __init__(self, enabled: bool, run_id: str, total: int, start: int) -> None:
        self.bar: Any = None
        if not enabled:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[tps]} tok/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
        )
        self.task = self.bar.add_task(run_id, total=total, completed=start, loss="-", tps="-")
        self.bar.start()

    def update(self, step: int, loss: float, tokens_per_second: float) -> None:
        if self.bar is not None:
            self.bar.update(
                self.task, completed=step, loss=f"{loss:.4f}", tps=f"{tokens_per_second:,.0f}"
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _store_for(config: TrainConfig) -> Any:
    if config.store is None:
        return None
    from scalinglab.data import RunStore

    return RunStore(config.store)


def train(
    config: TrainConfig, *, progress: bool = False, on_step: StepCallback | None = None
) -> TrainResult:
    """Train (or resume) the run ``config`` describes.

    Parameters
    ----------
    config
        The run; validated again here, and against the data before the first step.
    progress
        Show a rich progress bar (loss, tokens/s, ETA) on rank 0.
    on_step
        Called after every update with the step and, at evaluation steps, the losses.

    Returns
    -------
    TrainResult
        Final losses, parameter counts, the observations measured, throughput.

    Raises
    ------
    SpecError
        For any bad setting (unknown optimizer, heads not dividing d_model, an empty corpus,
        a budget smaller than one batch...), before training starts.
    """
    config.validate()
    torch.set_flush_denormal(True)  # denormals made the CPU loop 6x slower here
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    device = _device(config.device)
    info = distributed.setup(device.type)
    try:
        with contextlib.ExitStack() as held:
            return _train(config, device, info, progress, on_step, held)
    finally:
        distributed.teardown(info)


def _train(
    config: TrainConfig,
    device: torch.device,
    info: distributed.DistInfo,
    progress: bool,
    on_step: StepCallback | None,
    held: contextlib.ExitStack,
) -> TrainResult:
    from scalinglab.schedules import parse_schedule, torch_scheduler

    if config.batch_size % info.world_size:
        raise SpecError(
            f"batch_size {config.batch_size} must be a multiple of the {info.world_size} processes"
        )
    if device.type == "cuda" and info.enabled:
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    data = prepare_data(config)
    counts = param_count(config, data.tokenizer.vocab_size)
    check_fits_memory(config, counts, data.tokenizer.vocab_size, device)
    if info.is_main:
        # one process trains a run at a time (rank 0 holds the lock for all under torchrun);
        # taken once the settings and data are checked, released when train() returns
        held.enter_context(run_lock(config.checkpoint_dir, config.name))
    schedule = parse_schedule(config.schedule_spec())

    torch.manual_seed(config.seed)
    raw_model = GPT(config.model_config(data.tokenizer.vocab_size)).to(device)
    optimizer = _make_optimizer(config, raw_model, schedule.peak)
    scheduler = torch_scheduler(optimizer, schedule)
    ckpt_file = checkpoint_path(config.checkpoint_dir)
    if info.is_main:  # under the run's lock: no other process is writing a checkpoint here
        remove_stale_temp_files(ckpt_file)
    state = load_checkpoint(ckpt_file)
    if state is not None:
        if state.get("config") != config.identity():
            raise SpecError(
                f"{ckpt_file} belongs to a different configuration; "
                "use another out_dir or run_id, or delete the checkpoint"
            )
        raw_model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
    start_step = int(state["step"]) if state is not None else 0
    train_log = _TrainLossLog(
        config.train_loss_window,
        state.get("train_loss") if state is not None else {"first": start_step},
    )
    model: nn.Module = raw_model
    if config.compile:
        model = cast(nn.Module, torch.compile(model))
    # evaluation shards windows itself and needs no gradient sync: it uses `model`, not DDP
    ddp_model = model
    if info.enabled:
        ddp_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    run_id = config.name
    store = _store_for(config) if info.is_main else None
    loggers = open_run_loggers(config, counts.total, counts.nonembedding) if info.is_main else None
    if store is not None:
        store.add_run(run_id, config.to_dict(), family=config.family, status="running")
    eval_steps, ckpt_steps = set(config.eval_steps()), set(config.checkpoint_steps())
    windows = {
        name: eval_windows(tokens, config.context, config.eval_tokens)
        for name, tokens in data.evals.items()
    }
    local = slice(
        info.rank * config.batch_size // info.world_size,
        (info.rank + 1) * config.batch_size // info.world_size,
    )
    rows: list[dict[str, Any]] = []
    final_loss: dict[str, float] = {}
    bar = _Progress(progress and info.is_main, run_id, config.total_steps, start_step)
    train_seconds, trained_tokens = 0.0, 0
    ddp_model.train()
    try:
        for step in range(start_step, config.total_steps):
            tick = time.perf_counter()
            inputs, targets = batch_for_step(
                data.train, step, config.seed, config.batch_size, config.context
            )
            inputs = inputs[local].to(device, non_blocking=True)
            targets = targets[local].to(device, non_blocking=True)

            def closure(inputs: torch.Tensor = inputs, targets: torch.Tensor = targets) -> Any:
                # MARS in exact mode calls this twice (at the previous and current weights)
                optimizer.zero_grad(set_to_none=True)
                with _autocast(device, config.dtype):
                    loss = ddp_model(inputs, targets)
                loss.backward()
                if config.grad_clip > 0:
                    nn.utils.clip_grad_norm_(raw_model.parameters(), config.grad_clip)
                return loss

            loss = cast(torch.Tensor, optimizer.step(closure))
            scheduler.step()
            train_log.add(loss)
            done = step + 1
            train_seconds += time.perf_counter() - tick
            trained_tokens += config.tokens_per_step
            metrics: dict[str, float] = {}
            if done in eval_steps:
                for name, win in windows.items():
                    metrics[name] = evaluate(
                        model, win, config.batch_size, device, config.dtype, info
                    )
                _check_finite_losses(run_id, done, metrics, schedule.peak)
                lr_now = float(schedule.lr(step))
                step_rows = [
                    _observation(config, run_id, counts, done, lr_now, name, value)
                    for name, value in metrics.items()
                ]
                rows.extend(step_rows)
                final_loss = dict(metrics)
                if store is not None:
                    # the last rows and "finished" land in one transaction, or neither does
                    last = done == config.total_steps
                    store.add_observations(
                        pd.DataFrame(step_rows), status="finished" if last else None
                    )
                if loggers is not None:
                    loggers.log_eval(done, done * config.tokens_per_step, lr_now, metrics)
            if done in eval_steps or done in ckpt_steps or done == config.total_steps:
                train_rows = [
                    _observation(
                        config,
                        run_id,
                        counts,
                        at,
                        float(schedule.lr(at - 1)),
                        TRAIN_LOSS_DATASET,
                        value,
                    )
                    for at, value in train_log.flush(info, final=done == config.total_steps)
                ]
                rows.extend(train_rows)
                if store is not None and train_rows:
                    store.add_observations(pd.DataFrame(train_rows))
            if done in ckpt_steps and info.is_main:
                save_checkpoint(
                    ckpt_file,
                    {
                        "step": done,
                        "model": raw_model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "config": config.identity(),
                        "train_loss": train_log.state(),
                    },
                )
            if bar.bar is not None:  # reading the loss syncs the device: only when shown
                bar.update(done, float(loss.detach()), trained_tokens / max(train_seconds, 1e-9))
            if on_step is not None:
                on_step(done, metrics)
    except BaseException as err:
        # a process asked to exit (Ctrl-C, SIGTERM, a Slurm preemption through submitit's
        # sys.exit) was interrupted and resumes from its checkpoint; anything else failed
        stopped = isinstance(err, KeyboardInterrupt | SystemExit)
        status = "interrupted" if stopped else "failed"
        if store is not None:
            store.set_status(run_id, status)
        if loggers is not None:
            loggers.close(status)
        raise
    finally:
        bar.close()
    if not final_loss:
        # resumed from the final checkpoint: score the finished model once more
        final_loss = {
            name: evaluate(model, win, config.batch_size, device, config.dtype, info)
            for name, win in windows.items()
        }
    if store is not None:
        store.set_status(run_id, "finished")
    if loggers is not None:
        loggers.close("finished")
    return TrainResult(
        run_id=run_id,
        steps=config.total_steps,
        tokens=config.total_steps * config.tokens_per_step,
        params=counts.total,
        params_nonembedding=counts.nonembedding,
        final_loss=final_loss,
        observations=pd.DataFrame(rows, columns=list(OBSERVATION_COLUMNS)),
        resumed_from=start_step if state is not None else None,
        seconds=train_seconds,
        tokens_per_second=trained_tokens / train_seconds if train_seconds > 0 else math.nan,
        config=config.to_dict(),
    )


def _check_finite_losses(
    run_id: str, step: int, losses: Mapping[str, float], peak_lr: float
) -> None:
    for dataset, value in losses.items():
        if not math.isfinite(value):
            raise TrainingDiverged(
                f"run '{run_id}' diverged: validation loss on {dataset} is {value} at step "
                f"{step}; lower the learning rate (peak {peak_lr:g}) or clip gradients "
                "(grad_clip)"
            )


#: columns of the observation rows the trainer writes
OBSERVATION_COLUMNS = (
    "run_id", "family", "step", "tokens", "params", "params_nonembedding", "flops", "lr",
    "dataset", "loss", "seed",
)  # fmt: skip


def _observation(
    config: TrainConfig,
    run_id: str,
    counts: ParamCount,
    step: int,
    lr: float,
    dataset: str,
    loss: float,
) -> dict[str, Any]:
    tokens = step * config.tokens_per_step
    return {
        "run_id": run_id,
        "family": config.family,
        "step": step,
        "tokens": float(tokens),
        "params": float(counts.total),
        "params_nonembedding": float(counts.nonembedding),
        "flops": 6.0 * counts.total * tokens,
        "lr": lr,
        "dataset": dataset,
        "loss": loss,
        "seed": config.seed,
    }
