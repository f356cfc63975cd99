"""Hugging Face Trainer runs: ``trainer_state.json`` and the model's ``config.json``.

``log_history`` holds one entry per ``Trainer.log`` call, in order: training entries
(``loss``, ``learning_rate``, ``grad_norm``, ``epoch``, ``step``; ``num_input_tokens_seen``
with ``include_num_input_tokens_seen``), evaluation entries (``eval_loss``, or
``eval_NAME_loss`` for several evaluation sets) and a last summary entry whose ``train_loss``
is the mean over the whole run (dropped: it is no measurement at a step) and whose
``total_flos`` is the run's FLOP count. The parameter count comes from ``config.json`` beside
the state (GPT-2, Llama and Mistral shapes are counted exactly; other architectures are asked
for with ``--run-params``).

An output folder with ``checkpoint-N`` subfolders is one run: the state with the most steps
holds the history of all of them.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from scalinglab.data.importers.base import RawRun, points_frame
from scalinglab.errors import InputError

STATE_FILE = "trainer_state.json"
_CHECKPOINT = re.compile(r"^checkpoint-\d+$")
RUN_MEAN = "train_loss: the run's mean training loss (summary entry), not a measurement at a step"
_NOT_POINTS = {"step", "train_loss"}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(f"cannot read the JSON: {err}", source=str(path)) from None
    if not isinstance(data, dict):
        raise InputError("expected a JSON object", source=str(path))
    return data


def model_params(config: dict[str, Any]) -> tuple[int, int, str] | None:
    """Total and non-embedding parameters of a ``config.json`` model, or ``None`` if unknown.

    Only shapes that :func:`~scalinglab.planning.count_params` counts exactly: GPT-2, and
    Llama/Mistral without attention or MLP biases.
    """
    from scalinglab.planning.counting import count_params  # arithmetic only; no cycle

    kind = config.get("model_type")
    try:
        if kind == "gpt2":
            counts = count_params(
                int(config["n_embd"]),
                int(config["n_layer"]),
                int(config["vocab_size"]),
                int(config["n_positions"]),
                heads=int(config["n_head"]),
                d_ff=int(config["n_inner"]) if config.get("n_inner") else None,
                tied_embeddings=bool(config.get("tie_word_embeddings", True)),
            )
        elif kind in ("llama", "mistral"):
            if config.get("attention_bias") or config.get("mlp_bias"):
                return None
            counts = count_params(
                int(config["hidden_size"]),
                int(config["num_hidden_layers"]),
                int(config["vocab_size"]),
                int(config.get("max_position_embeddings", 2048)),
                heads=int(config["num_attention_heads"]),
                kv_heads=int(config.get("num_key_value_heads") or config["num_attention_heads"]),
                d_ff=int(config["intermediate_size"]),
                tied_embeddings=bool(config.get("tie_word_embeddings", False)),
                positions="rotary",
                mlp="swiglu",
                bias=False,
                norm="rmsnorm",
            )
        else:
            return None
    except (KeyError, TypeError, ValueError):
        return None
    return counts.total, counts.nonembedding, f"config.json ({kind})"


def read_state(state_path: Path, run_id: str) -> RawRun:
    """One run from a ``trainer_state.json`` (and the ``config.json`` beside it or its run's)."""
    state = _read_json(state_path)
    history = state.get("log_history")
    if not isinstance(history, list):
        raise InputError("no 'log_history' list: not a Trainer state", source=str(state_path))
    metric: list[str] = []
    step: list[int] = []
    value: list[float] = []
    dropped: Counter[str] = Counter()
    total_flops = state.get("total_flos")
    for number, entry in enumerate(history, start=1):
        if not isinstance(entry, dict) or not isinstance(entry.get("step"), int):
            raise InputError(
                f"log_history entry {number} has no integer 'step'", source=str(state_path)
            )
        for key, item in entry.items():
            if key == "train_loss":
                dropped[RUN_MEAN] += 1
            if key in _NOT_POINTS or key == "total_flos":
                continue
            if isinstance(item, bool) or not isinstance(item, int | float):
                dropped["not a number"] += 1
                continue
            metric.append(key)
            step.append(entry["step"])
            value.append(float(item))
    trainer = {k: v for k, v in state.items() if k != "log_history" and not isinstance(v, dict)}
    config: dict[str, Any] = {"trainer_state": trainer}
    notes = []
    if not history:
        notes.append("log_history is empty: the run logged nothing (logging_steps > steps?)")
    run = RawRun(
        run_id=run_id,
        source=str(state_path),
        points=points_frame(metric, step, value),
        config=config,
        dropped=dropped,
        notes=notes,
    )
    if isinstance(total_flops, int | float) and total_flops > 0:
        run.total_flops = float(total_flops)
        run.total_flops_step = int(state.get("global_step") or 0) or None
    if isinstance(state.get("train_batch_size"), int):
        run.notes.append(
            f"train_batch_size {state['train_batch_size']} is per device: tokens per step = "
            "it × devices × gradient accumulation × sequence length"
        )
    for folder in (state_path.parent, state_path.parent.parent):
        model_config = folder / "config.json"
        if model_config.is_file():
            model = _read_json(model_config)
            config["model_config"] = model
            counted = model_params(model)
            if counted is not None:
                run.params, run.params_nonembedding, how = counted
                run.notes.append(f"params from {how}")
            break
    return run


def _run_folder(state_path: Path) -> Path:
    parent = state_path.parent
    return parent.parent if _CHECKPOINT.match(parent.name) else parent


def _steps(path: Path) -> int:
    step = _read_json(path).get("global_step")
    return step if isinstance(step, int) else -1


def read_hf(path: Path) -> list[RawRun]:
    """Runs from a ``trainer_state.json`` or a folder of Trainer outputs.

    Raises
    ------
    InputError
        When no ``trainer_state.json`` is found.
    """
    states = [path] if path.is_file() else sorted(path.rglob(STATE_FILE))
    if not states:
        raise InputError(f"no {STATE_FILE} under {path}")
    by_run: dict[Path, list[Path]] = {}
    for state in states:
        by_run.setdefault(_run_folder(state), []).append(state)
    runs = []
    for folder, found in sorted(by_run.items()):
        # the latest state holds the whole history; at a tie, the run folder's own
        latest = max(found, key=lambda p: (_steps(p), p.parent == folder))
        runs.append(read_state(latest, folder.resolve().name))
    return runs
