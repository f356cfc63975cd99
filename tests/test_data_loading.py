"""Loading observations: every format, column mapping, wide tables, derived columns."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scalinglab.data import CANONICAL_COLUMNS, RunStore, derive_run_ids, load_observations


def sweep() -> pd.DataFrame:
    """A small two-model sweep with an extra column, in the canonical names."""
    return pd.DataFrame(
        {
            "run_id": ["m1", "m1", "m2", "m2"],
            "family": ["gpt", "gpt", "gpt", "gpt"],
            "params": [1e8, 1e8, 4e8, 4e8],
            "tokens": [1e9, 2e9, 1e9, 2e9],
            "step": [100, 200, 100, 200],
            "loss": [3.5, 3.3, 3.2, 3.0],
            "note": ["x", "y", "z", "w"],
        }
    )


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".tsv", ".parquet", ".jsonl", ".json"])
def test_file_formats_round_trip(tmp_path: Path, suffix: str) -> None:
    frame = sweep()
    path = tmp_path / f"sweep{suffix}"
    if suffix == ".parquet":
        frame.to_parquet(path, index=False)
    elif suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    elif suffix == ".json":
        frame.to_json(path, orient="records")
    else:
        frame.to_csv(path, index=False, sep="\t" if suffix == ".tsv" else ",")
    df = load_observations(path)
    assert list(df.columns) == [*CANONICAL_COLUMNS, "source_row", "note"]
    assert df.attrs["source"] == path.name
    assert df["source_row"].tolist() == [1, 2, 3, 4]
    assert df["run_id"].tolist() == ["m1", "m1", "m2", "m2"]
    assert df["step"].dtype == np.int64
    np.testing.assert_array_equal(df["loss"], frame["loss"])
    np.testing.assert_array_equal(df["flops"], 6 * frame["params"] * frame["tokens"])
    assert (df["dataset"] == "train").all()
    assert df["note"].tolist() == ["x", "y", "z", "w"]
    assert df["lr"].isna().all() and df["seed"].isna().all()


def test_dataframe_source_and_kept_source_row() -> None:
    df = load_observations(sweep(), dataset="val")
    assert df.attrs["source"] == "<DataFrame>"
    assert (df["dataset"] == "val").all()
    subset = df.iloc[[1, 3]]
    again = load_observations(subset)
    assert again["source_row"].tolist() == [2, 4]


def test_column_mapping(tmp_path: Path) -> None:
    path = tmp_path / "theirs.csv"
    path.write_text("Model,N,D,Val loss\nm1,1e8,1e9,3.5\nm2,2e8,1e9,3.3\n")
    mapping = {"Model": "run_id", "N": "params", "D": "tokens", "Val loss": "loss"}
    df = load_observations(path, columns=mapping)
    assert df["run_id"].tolist() == ["m1", "m2"]
    np.testing.assert_array_equal(df["params"], [1e8, 2e8])
    assert df.attrs["derived"] == ["flops"]


def test_wide_table_melts_into_dataset_rows(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    path.write_text("run_id,params,tokens,c4,pile\nm1,1e8,1e9,3.1,3.4\nm2,2e8,1e9,2.9,\n")
    df = load_observations(path, wide=["c4", "pile"])
    assert df["source_row"].tolist() == [1, 1, 2]
    assert df["dataset"].tolist() == ["c4", "pile", "c4"]
    assert df["loss"].tolist() == [3.1, 3.4, 2.9]
    assert df.attrs["wide_missing"] == 1


def test_run_ids_derived_from_family_size_and_seed() -> None:
    frame = pd.DataFrame(
        {
            "family": ["a", "a", "a", "a", np.nan],
            "params": [1e8, 1e8, 1e8, 2.5e8, 1e8],
            "seed": [0, 0, 1, 0, 0],
            "tokens": [1e9, 2e9, 1e9, 1e9, 1e9],
            "loss": [3.0, 2.9, 3.01, 2.8, 3.1],
        }
    )
    df = load_observations(frame)
    assert df["run_id"].tolist() == [
        "a/N=100000000/seed=0",
        "a/N=100000000/seed=0",
        "a/N=100000000/seed=1",
        "a/N=250000000/seed=0",
        "N=100000000/seed=0",
    ]
    assert "run_id" in df.attrs["derived"]
    assert derive_run_ids(pd.DataFrame({"loss": [1.0, 2.0]})).tolist() == ["run", "run"]


def test_tokens_derived_from_flops() -> None:
    frame = pd.DataFrame({"params": [1e8, 2e8], "flops": [6e17, 2.4e18], "loss": [3.0, 2.8]})
    df = load_observations(frame)
    np.testing.assert_allclose(df["tokens"], [1e9, 2e9])
    assert df.attrs["derived"][0] == "tokens"


def test_store_file_is_a_source(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    store.add_observations(sweep())
    df = load_observations(tmp_path / "runs.sqlite")
    assert df.attrs["source"] == "runs.sqlite"
    assert df["run_id"].tolist() == ["m1", "m1", "m2", "m2"]
    assert df["family"].tolist() == ["gpt"] * 4


def test_chinchilla_reference_data(shared_data: Path) -> None:
    path = shared_data / "chinchilla" / "svg_extracted_data.csv"
    df = load_observations(path, columns={"Model Size": "params", "Training FLOP": "flops"})
    raw = pd.read_csv(path)
    assert len(df) == len(raw) == 245
    np.testing.assert_allclose(df["tokens"], raw["Training FLOP"] / (6 * raw["Model Size"]))
    np.testing.assert_array_equal(df["flops"], raw["Training FLOP"])
    assert df["run_id"].nunique() == raw["Model Size"].nunique()
    assert df.attrs["derived"] == ["tokens", "run_id"]


def test_colpret_reference_data_loads_fast(shared_data: Path) -> None:
    path = shared_data / "colpret" / "colpret_checkpoints.csv.gz"
    start = time.perf_counter()
    with pytest.warns(UserWarning, match="dropped 117 invalid row"):
        df = load_observations(path, columns={"model_name": "run_id"}, on_invalid="drop")
    seconds = time.perf_counter() - start
    assert len(df) == 67_891 - 117 - 687
    assert df.attrs["duplicates_collapsed"] == 687
    # 53 rows with params 0, 64 perplexities of OPT (9-68) and Mamba above 20
    assert sorted(df.attrs["dropped"]["reasons"].values()) == [53, 64]
    assert seconds < 5  # about 0.4 s alone; generous for a busy shared machine
