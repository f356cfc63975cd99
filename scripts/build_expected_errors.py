"""Derive the ColPret tables scalinglab ships (``src/scalinglab/evaluation/data/``).

Runs the standard backtest grid on ColPret (every family with 3+ model sizes; each family's
largest model forecast from its smaller ones, none of it seen; k smallest sizes, fractions p of
their runs, every fitting choice; borrowing choices learn from the *other* families) and
writes:

- ``colpret_backtests.csv``: one row per forecast: family, method (the choice), k, fraction,
  target_fraction, compute extrapolation ratio, realized ARE, plausibility of the forecast;
- ``colpret_collection.csv``: the Chinchilla law fitted to each family.

Run: ``.venv/bin/python scripts/build_expected_errors.py`` (about 30 s on 2 quiet cores), with
``../shared/data/colpret`` present. Rerun it when the backtest grid or a choice changes.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from scalinglab.evaluation.backtest import backtest_all  # noqa: E402
from scalinglab.evaluation.colpret import BACKTESTS_FILE, COLLECTION_FILE  # noqa: E402
from scalinglab.evaluation.expected_error import cases_from_report  # noqa: E402
from scalinglab.evaluation.families import load_families  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "colpret" / "colpret_checkpoints.csv.gz"
OUT = ROOT / "src" / "scalinglab" / "evaluation" / "data"


def main() -> int:
    if not DATA.is_file():
        print(f"ColPret not found at {DATA}; nothing written", file=sys.stderr)
        return 1
    obs = load_families(DATA, columns={"model_name": "run_id"}, perplexity="auto")
    # forecasts of a model not trained yet: none of the target seen (q = 0)
    report = backtest_all(obs, workers=2, target_fractions=(0.0,))
    cases = cases_from_report(report)
    OUT.mkdir(parents=True, exist_ok=True)
    cases.to_csv(OUT / BACKTESTS_FILE, index=False, float_format="%.6g")
    assert report.collection is not None
    collection = report.collection.reset_index(names="family")
    collection.to_csv(OUT / COLLECTION_FILE, index=False, float_format="%.8g")
    print(
        f"{len(cases)} forecasts of {cases['family'].nunique()} families by "
        f"{cases['method'].nunique()} methods; {len(collection)} family fits -> {OUT}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
