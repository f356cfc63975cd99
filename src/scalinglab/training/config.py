"""One training run's configuration, validated before anything is trained."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from scalinglab.errors import SpecError
from scalinglab.schedules import check_schedule_steps, resolve_schedule
from scalinglab.training.loggers import check_loggers
from scalinglab.training.model import GPTConfig
from scalinglab.user_input import check_name, check_seed
from scalinglab.user_input import read_toml as _read_toml

#: devices a run can name (torch reads more, but these are the ones the trainer supports)
_DEVICE = re.compile(r"(auto|cpu|cuda(:\d+)?)\Z")
#: the most torch threads a run may ask for (far more than cores only slows it, then fails)
MAX_THREADS = 1024
#: suffixes of a run-store file (a store named .csv would be a SQLite file in disguise)
_STORE_SUFFIXES = (".sqlite", ".sqlite3", ".db")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run.

    Model shape (see :class:`~scalinglab.training.model.GPTConfig`; the vocabulary comes from
    the tokenizer): ``d_model``, ``layers``, ``heads``, ``context`` (tokens per sequence),
    ``d_ff``, ``mlp``, ``positions``, ``tied_embeddings``, ``bias``, ``norm``.

    Parameters
    ----------
    batch_size
        Sequences per optimizer step, summed over all processes (the global batch).
    steps, tokens
        The budget: optimizer steps, or training tokens (rounded down to whole steps of
        ``batch_size * context`` tokens). Give exactly one.
    schedule
        Learning-rate schedule spec for :func:`scalinglab.schedules.parse_schedule`
        (``cosine:peak=1e-3,warmup=100,final=1e-4``). ``total=`` is filled in with the run's
        steps when absent; the step counts ``warmup``, ``decay_start``, ``period`` and
        ``milestones`` may be given as fractions of the run (``warmup=0.05``).
    optimizer
        ``adamw``, ``mars-adamw``, ``mars-lion`` or ``mars-shampoo``
        (:func:`scalinglab.optim.make_optimizer`); its learning rate is the schedule's.
    optimizer_kwargs
        Extra keyword arguments for the optimizer (``betas``, ``gamma``...).
    weight_decay
        Decoupled weight decay of the matrices (biases and norm gains get none).
    grad_clip
        Clip the global gradient norm to this value; 0 disables clipping.
    train_data
        Corpus spec the model trains on (see :mod:`scalinglab.training.corpora`).
    eval_data
        Corpus specs whose validation splits are evaluated at every checkpoint.
    tokenizer
        ``byte`` or ``bpe:VOCAB``.
    val_fraction
        Share of each corpus held out for validation.
    eval_tokens
        Validation tokens per dataset per evaluation (fewer if the split is smaller).
    eval_every
        Evaluate every this many steps (``None``: 10 evaluations per run) ...
    eval_log_points
        ... plus this many log-spaced early steps (the early curve that curve laws need).
    train_loss_window
        Also write the training loss of every update as dataset ``train``, smoothed by a
        centred moving average of this many steps (odd; 1: raw; 0, the default: not written).
    checkpoint_every
        Write a checkpoint every this many steps (``None``: at every regular evaluation);
        the last step always gets one.
    seed
        Seeds the initialisation and the batch order (0 … 2**32 − 1); runs are reproducible
        on one device.
    device
        ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
    dtype
        ``auto`` (bf16 autocast on CUDA, fp32 on CPU), ``bf16`` or ``fp32``.
    compile
        Wrap the model in ``torch.compile``.
    threads
        Torch intra-op threads (``None``: torch's default).
    run_id
        Name of the run in the store (``None``: derived from a hash of the config); it names
        the checkpoint folder, so it must be a safe name (letters, digits, ``_ . - + = @ ,``;
        no ``/`` or ``..``).
    family
        Family recorded with the run in the store.
    store
        Run-store SQLite file (``.sqlite``, ``.sqlite3`` or ``.db``) that receives the
        observations (``None``: none).
    out_dir
        Folder of the run's checkpoints (``None``: ``runs/<run_id>``).
    log_to
        Also log every evaluation to ``tensorboard``, ``mlflow`` and/or ``wandb`` (offline),
        beside the store (see :mod:`scalinglab.training.loggers`).
    """

    d_model: int = 64
    layers: int = 2
    heads: int = 2
    context: int = 128
    d_ff: int | None = None
    mlp: Literal["gelu", "swiglu"] = "gelu"
    positions: Literal["learned", "rotary"] = "learned"
    tied_embeddings: bool = True
    bias: bool = True
    norm: Literal["layernorm", "rmsnorm"] = "layernorm"
    batch_size: int = 16
    steps: int | None = None
    tokens: int | None = None
    schedule: str = "cosine:peak=1e-3,warmup=0.05,final=1e-4"
    optimizer: str = "adamw"
    optimizer_kwargs: Mapping[str, Any] = field(default_factory=dict)
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    train_data: str = "python-stdlib"
    eval_data: tuple[str, ...] = ("python-stdlib", "python-docs")
    tokenizer: str = "byte"
    val_fraction: float = 0.1
    eval_tokens: int = 32_768
    eval_every: int | None = None
    eval_log_points: int = 6
    train_loss_window: int = 0
    checkpoint_every: int | None = None
    seed: int = 0
    device: str = "auto"
    dtype: Literal["auto", "bf16", "fp32"] = "auto"
    compile: bool = False
    threads: int | None = None
    run_id: str | None = None
    family: str | None = None
    store: str | None = None
    out_dir: str | None = None
    log_to: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("eval_data", "log_to"):  # one value, e.g. --set eval_data=python-docs
            if isinstance(getattr(self, name), str):
                object.__setattr__(self, name, (getattr(self, name),))
        _check_types(self)
        # TOML and JSON give lists; the config is frozen and hashable in spirit
        object.__setattr__(self, "eval_data", tuple(self.eval_data))
        object.__setattr__(self, "log_to", tuple(self.log_to))
        object.__setattr__(self, "optimizer_kwargs", dict(self.optimizer_kwargs))
        self.validate()

    # -- validation --------------------------------------------------------------------

    def validate(self) -> None:
        """Check everything that can be checked without data; raise :class:`SpecError`."""
        _check_types(self)
        self.model_config(vocab_size=256)  # shape checks live in GPTConfig
        _positive_int("batch_size", self.batch_size)
        if (self.steps is None) == (self.tokens is None):
            raise SpecError("give exactly one budget: steps or tokens")
        if self.steps is not None:
            _positive_int("steps", self.steps)
        if self.tokens is not None:
            _positive_int("tokens", self.tokens)
            if self.tokens < self.tokens_per_step:
                raise SpecError(
                    f"token budget {self.tokens} is smaller than one batch "
                    f"(batch_size {self.batch_size} x context {self.context} = "
                    f"{self.tokens_per_step} tokens)"
                )
        check_schedule_steps(self.total_steps, "steps", purpose="a training run")
        check_seed(self.seed, "seed")
        if self.run_id is not None:
            check_name(self.run_id, "run_id")
        if self.store is not None and "://" not in self.store:
            if not self.store.lower().endswith(_STORE_SUFFIXES):
                raise SpecError(
                    f"store '{self.store}' must be a run-store file ending in "
                    f"{', '.join(_STORE_SUFFIXES)}"
                )
        for name in ("eval_every", "checkpoint_every", "threads"):
            if getattr(self, name) is not None:
                _positive_int(name, getattr(self, name))
        if self.threads is not None and self.threads > MAX_THREADS:
            raise SpecError(f"threads must be at most {MAX_THREADS}, got {self.threads}")
        _positive_int("eval_tokens", self.eval_tokens)
        if not isinstance(self.eval_log_points, int) or self.eval_log_points < 0:
            raise SpecError(f"eval_log_points must be >= 0, got {self.eval_log_points!r}")
        window = self.train_loss_window
        if (
            not isinstance(window, int)
            or isinstance(window, bool)
            or window < 0
            or (window > 0 and window % 2 == 0)
        ):
            raise SpecError(f"train_loss_window must be 0 or an odd number, got {window!r}")
        if not 0.0 < self.val_fraction < 1.0:
            raise SpecError(f"val_fraction must be in (0, 1), got {self.val_fraction!r}")
        if self.weight_decay < 0 or not math.isfinite(self.weight_decay):
            raise SpecError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.grad_clip < 0 or not math.isfinite(self.grad_clip):
            raise SpecError(f"grad_clip must be >= 0 (0 disables), got {self.grad_clip!r}")
        if not self.eval_data:
            raise SpecError("eval_data must name at least one corpus")
        if self.dtype not in ("auto", "bf16", "fp32"):
            raise SpecError(f"dtype must be auto, bf16 or fp32, got {self.dtype!r}")
        if not _DEVICE.match(self.device):
            raise SpecError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        _check_optimizer(self.optimizer, self.optimizer_kwargs)
        check_loggers(self.log_to)
        self.schedule_spec()

    # -- derived quantities ------------------------------------------------------------

    @property
    def tokens_per_step(self) -> int:
        """Training tokens per optimizer step (global batch × context)."""
        return self.batch_size * self.context

    @property
    def total_steps(self) -> int:
        """Optimizer steps of the run."""
        if self.steps is not None:
            return self.steps
        assert self.tokens is not None
        return self.tokens // self.tokens_per_step

    @property
    def name(self) -> str:
        """``run_id``, or a name derived from the config's content."""
        if self.run_id:
            return self.run_id
        digest = hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()
        return f"d{self.d_model}-l{self.layers}-{digest[:10]}"

    @property
    def checkpoint_dir(self) -> Path:
        """Folder of the run's checkpoints."""
        return Path(self.out_dir) if self.out_dir else Path("runs") / self.name

    def model_config(self, vocab_size: int) -> GPTConfig:
        """The model shape for a tokenizer of ``vocab_size`` ids."""
        return GPTConfig(
            vocab_size=vocab_size,
            context=self.context,
            d_model=self.d_model,
            layers=self.layers,
            heads=self.heads,
            d_ff=self.d_ff,
            mlp=self.mlp,
            positions=self.positions,
            tied_embeddings=self.tied_embeddings,
            bias=self.bias,
            norm=self.norm,
        )

    def schedule_spec(self) -> str:
        """The schedule spec with ``total`` and fractional step counts resolved to steps."""
        return resolve_schedule(self.schedule, self.total_steps)

    def eval_steps(self) -> list[int]:
        """Steps (1-based, after that many updates) at which the model is evaluated."""
        total = self.total_steps
        every = self.eval_every or max(1, total // 10)
        regular = set(range(every, total + 1, every))
        early = np.unique(np.round(np.geomspace(1, total, self.eval_log_points + 2)).astype(int))
        return sorted(regular | {int(s) for s in early[early < every]} | {total})

    def checkpoint_steps(self) -> list[int]:
        """Steps after which a checkpoint is written."""
        total = self.total_steps
        every = self.checkpoint_every or self.eval_every or max(1, total // 10)
        return sorted(set(range(every, total + 1, every)) | {total})

    def identity(self) -> dict[str, Any]:
        """The settings that decide the trained weights (not where they go or how fast).

        A checkpoint resumes only into a config with the same identity.
        """
        return {k: v for k, v in self.to_dict().items() if k not in _NOT_IDENTITY}

    # -- conversion --------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON/TOML friendly) of every field."""
        out = dataclasses.asdict(self)
        out["eval_data"] = list(self.eval_data)
        out["log_to"] = list(self.log_to)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "config") -> TrainConfig:
        """Build from a mapping, naming unknown keys and wrong types clearly."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SpecError(
                f"{source}: unknown setting(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        try:
            return cls(**data)
        except TypeError as err:
            raise SpecError(f"{source}: {err}") from None

    @classmethod
    def from_toml(cls, path: str | Path, **overrides: Any) -> TrainConfig:
        """Read a TOML file of settings (top-level keys), then apply ``overrides``."""
        return cls.from_dict({**read_toml(path), **overrides}, source=str(path))

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


#: fields that do not change what is trained (where it is written, how fast)
_NOT_IDENTITY = frozenset(
    {"run_id", "family", "store", "out_dir", "device", "compile", "threads", "eval_every",
     "eval_log_points", "checkpoint_every", "eval_tokens", "eval_data", "log_to",
     "train_loss_window"}
)  # fmt: skip


def _type_ok(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits the annotation ``hint`` of a TrainConfig field."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if origin is Literal:
        return value in typing.get_args(hint)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (tuple, list):
        return isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
    if origin is Mapping or hint is Mapping:
        return isinstance(value, Mapping)
    return True


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(h) for h in typing.get_args(hint))
    if origin is Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(hint))
    names = {bool: "true or false", int: "a whole number", float: "a number", str: "text",
             type(None): "absent"}  # fmt: skip
    if hint in names:
        return names[hint]
    if origin in (tuple, list):
        return "a list of texts"
    return "a table of settings"


def _check_types(config: TrainConfig) -> None:
    """Every field has the type its annotation gives (a TOML or --set value may not)."""
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if not _type_ok(value, hints[f.name]):
            raise SpecError(f"{f.name} must be {_describe(hints[f.name])}, got {value!r}")


def _positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise SpecError(f"{name} must be a positive integer, got {value!r}")


def _check_optimizer(name: str, kwargs: Mapping[str, Any]) -> None:
    """Build the optimizer over a dummy parameter: unknown names and options fail here."""
    import torch

    from scalinglab.optim import make_optimizer

    if "lr" in kwargs:
        raise SpecError("optimizer_kwargs must not set lr: the schedule's peak is the lr")
    make_optimizer(name, [torch.zeros(2, 2, requires_grad=True)], lr=1e-3, **kwargs)


def read_toml(path: str | Path, what: str = "config") -> dict[str, Any]:
    """Parse a TOML file of settings: a missing, binary, invalid or huge file is a
    :class:`SpecError` or :class:`~scalinglab.errors.InputError` naming it."""
    return _read_toml(path, what)
