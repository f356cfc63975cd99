"""Train small GPTs that produce the observations scaling laws need (the ``train`` extra).

>>> from scalinglab.training import TrainConfig, train           # doctest: +SKIP
>>> result = train(TrainConfig(d_model=64, layers=2, heads=2, tokens=2**20,
...                            store="runs.sqlite"))              # doctest: +SKIP
>>> result.final_loss                                            # doctest: +SKIP
{'python-stdlib': 2.31, 'python-docs': 2.72}

Modules: :mod:`~scalinglab.training.model` (the GPT), :mod:`~scalinglab.training.corpora`
(built-in and user corpora, deterministic split), :mod:`~scalinglab.training.tokenizer`
(bytes, or a locally trained BPE), :mod:`~scalinglab.training.config` (``TrainConfig``),
:mod:`~scalinglab.training.trainer` (the loop), :mod:`~scalinglab.training.checkpoint`
(atomic checkpoints), :mod:`~scalinglab.training.distributed` (DDP under torchrun),
:mod:`~scalinglab.training.sweep` and :mod:`~scalinglab.training.presets` (grids of runs),
:mod:`~scalinglab.training.executors` (where a sweep's runs train: local processes, Slurm, Ray).
"""

from scalinglab.training.config import TrainConfig
from scalinglab.training.corpora import BUILTIN_CORPORA, Corpus, load_corpus
from scalinglab.training.model import GPT, GPTConfig, count_parameters
from scalinglab.training.presets import PRESETS
from scalinglab.training.sweep import RunOutcome, SweepResult, SweepSpec, load_sweep, run_sweep
from scalinglab.training.tokenizer import ByteTokenizer, get_tokenizer
from scalinglab.training.trainer import TrainResult, param_count, train

__all__ = [
    "BUILTIN_CORPORA",
    "GPT",
    "PRESETS",
    "ByteTokenizer",
    "Corpus",
    "GPTConfig",
    "RunOutcome",
    "SweepResult",
    "SweepSpec",
    "TrainConfig",
    "TrainResult",
    "count_parameters",
    "get_tokenizer",
    "load_corpus",
    "load_sweep",
    "param_count",
    "run_sweep",
    "train",
]
