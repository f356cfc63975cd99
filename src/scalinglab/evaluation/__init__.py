"""Forecast evaluation: ARE, checkpoint-aware and reduced-parameter fits, backtests.

The loss-to-loss modules (``transfer``, ``transfer_backtest``) are imported by their own path.
"""

from scalinglab.evaluation.backtest import (
    CHOICES,
    FACTORS,
    BacktestReport,
    BacktestResult,
    FitChoice,
    backtest_all,
    backtest_family,
    collection_for,
)
from scalinglab.evaluation.checkpoints import (
    fit_checkpoints,
    run_lengths,
    run_weights,
    select_checkpoints,
)
from scalinglab.evaluation.families import convert_perplexity, load_families
from scalinglab.evaluation.metrics import are
from scalinglab.evaluation.recommend import Recommendation, recommend
from scalinglab.evaluation.subspace import SubspaceLaw, centred_law, pca_law, relation_law

__all__ = [
    "CHOICES",
    "FACTORS",
    "BacktestReport",
    "BacktestResult",
    "FitChoice",
    "Recommendation",
    "SubspaceLaw",
    "are",
    "backtest_all",
    "backtest_family",
    "centred_law",
    "collection_for",
    "convert_perplexity",
    "fit_checkpoints",
    "load_families",
    "pca_law",
    "recommend",
    "relation_law",
    "run_lengths",
    "run_weights",
    "select_checkpoints",
]
