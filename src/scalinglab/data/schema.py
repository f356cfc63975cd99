"""Column names and kinds of the Observations table (one row = one loss measurement)."""

from __future__ import annotations

from typing import Literal

#: the canonical columns, in the order a validated table lists them
CANONICAL_COLUMNS: tuple[str, ...] = (
    "run_id",
    "family",
    "params",
    "params_nonembedding",
    "tokens",
    "step",
    "flops",
    "lr",
    "dataset",
    "loss",
    "seed",
)
#: columns holding numbers (text in them is an error)
NUMERIC_COLUMNS: tuple[str, ...] = (
    "params",
    "params_nonembedding",
    "tokens",
    "step",
    "flops",
    "lr",
    "loss",
    "seed",
)
#: numeric columns whose values must be whole numbers
INTEGER_COLUMNS: tuple[str, ...] = ("step", "seed")
#: numeric columns whose present values must be > 0
POSITIVE_COLUMNS: tuple[str, ...] = ("params", "params_nonembedding", "tokens", "flops")
#: numeric columns whose present values must be >= 0 (a learning rate is 0 at warmup start)
NONNEGATIVE_COLUMNS: tuple[str, ...] = ("step", "lr")
#: text columns
TEXT_COLUMNS: tuple[str, ...] = ("run_id", "family", "dataset")

#: 1-based data-row number in the user's source (first row after a CSV header is 1)
SOURCE_ROW = "source_row"
#: dataset name used when the source names none
DEFAULT_DATASET = "train"
#: columns every source must provide unless told otherwise (the compute laws need them)
DEFAULT_REQUIRED: tuple[str, ...] = ("params", "tokens", "loss")
#: losses above this many nats per token are not plausible for a language model: the
#: uniform distribution over a 2**28-token vocabulary is only 19.4 nats
MAX_PLAUSIBLE_LOSS_NATS = 20.0

LossUnit = Literal["nats", "bits", "perplexity"]
LOSS_UNITS: tuple[str, ...] = ("nats", "bits", "perplexity")
OnInvalid = Literal["raise", "drop"]
