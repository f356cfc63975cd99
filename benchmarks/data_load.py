"""Loading and storing observations: scalinglab.data against plain pandas on the same data.

1. ``load_observations`` on the ColPret checkpoints (67,891 rows, .csv.gz; validation,
   unit check, duplicate collapse, 117 invalid rows dropped) against ``pandas.read_csv``.
2. ``RunStore.add_observations`` + ``observations()`` of the loaded table against
   ``DataFrame.to_sql`` + ``pandas.read_sql_query`` into/from a bare SQLite file.

Ratios > 1 mean scalinglab is slower than the bare pandas step (it validates, the peer
does not). Run: ``.venv/bin/python benchmarks/data_load.py``.
"""

from __future__ import annotations

import sqlite3
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, record
from scalinglab.data import RunStore, load_observations

COLPRET = ROOT.parent / "shared" / "data" / "colpret" / "colpret_checkpoints.csv.gz"
REPEATS = 5


def best_of(func: Callable[[], Any], repeats: int = REPEATS) -> tuple[float, float]:
    """Median and minimum wall time of ``func`` in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def load() -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the 117 dropped rows are expected
        return load_observations(COLPRET, columns={"model_name": "run_id"}, on_invalid="drop")


def main() -> int:
    if not COLPRET.is_file():
        print(f"reference data not found at {COLPRET}; nothing measured")
        return 0
    ours_load, ours_load_min = best_of(load)
    peer_load, peer_load_min = best_of(lambda: pd.read_csv(COLPRET, low_memory=False))
    table = load()

    with tempfile.TemporaryDirectory() as tmp:
        counter = iter(range(1_000))

        def store_round_trip() -> None:
            store = RunStore(Path(tmp) / f"store{next(counter)}.sqlite")
            store.add_observations(table)
            assert len(store.observations()) == len(table)

        def pandas_round_trip() -> None:
            with sqlite3.connect(Path(tmp) / f"plain{next(counter)}.sqlite") as con:
                table.to_sql("observations", con, index=False)
                assert len(pd.read_sql_query("SELECT * FROM observations", con)) == len(table)

        ours_store, _ = best_of(store_round_trip, 3)
        peer_store, _ = best_of(pandas_round_trip, 3)

    result = {
        "rows_in_file": 67_891,
        "rows_loaded": len(table),
        "load_observations_s": ours_load,
        "load_observations_min_s": ours_load_min,
        "pandas_read_csv_s": peer_load,
        "pandas_read_csv_min_s": peer_load_min,
        "load_ratio_vs_read_csv": ours_load / peer_load,
        "store_round_trip_s": ours_store,
        "pandas_to_sql_read_sql_s": peer_store,
        "store_ratio_vs_pandas_sql": ours_store / peer_store,
        "repeats": REPEATS,
    }
    record(
        "data_load",
        result,
        f"ColPret 67,891 rows: load_observations {ours_load:.3f} s vs pandas.read_csv "
        f"{peer_load:.3f} s (×{ours_load / peer_load:.2f}); RunStore write+read of "
        f"{len(table)} rows {ours_store:.2f} s vs to_sql+read_sql {peer_store:.2f} s "
        f"(×{ours_store / peer_store:.2f})",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
