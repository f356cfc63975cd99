"""Validation of observations: every rejection names the file, row, column and value."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scalinglab.data import check_enough_points, load_observations
from scalinglab.errors import FitError, InputError, SpecError

HEADER = "run_id,params,tokens,loss"
GOOD_ROWS = ["a,1e8,1e9,3.5", "a,1e8,2e9,3.3", "b,2e8,1e9,3.2"]


def write_csv(tmp_path: Path, lines: list[str], header: str = HEADER) -> Path:
    path = tmp_path / "runs.csv"
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


def load_error(path: Path | pd.DataFrame, **kwargs: object) -> InputError:
    with pytest.raises(InputError) as info:
        load_observations(path, **kwargs)  # type: ignore[arg-type]
    return info.value


def test_nan_loss_names_row_and_column(tmp_path: Path) -> None:
    err = load_error(write_csv(tmp_path, [GOOD_ROWS[0], "a,1e8,2e9,", GOOD_ROWS[2]]))
    assert (err.source, err.row, err.column) == ("runs.csv", 2, "loss")
    assert "missing value" in str(err) and "runs.csv, row 2, column 'loss'" in str(err)


@pytest.mark.parametrize(
    ("bad_row", "column", "value"),
    [("a,0,2e9,3.3", "params", 0.0), ("a,-1e8,2e9,3.3", "params", -1e8)],
)
def test_non_positive_params_rejected(
    tmp_path: Path, bad_row: str, column: str, value: float
) -> None:
    err = load_error(write_csv(tmp_path, [GOOD_ROWS[0], GOOD_ROWS[2], bad_row]))
    assert (err.row, err.column, err.value) == (3, column, value)
    assert "must be positive" in str(err)


def test_negative_tokens_and_infinite_loss_rejected(tmp_path: Path) -> None:
    err = load_error(write_csv(tmp_path, ["a,1e8,-5,3.5"]))
    assert (err.row, err.column, err.value) == (1, "tokens", -5.0)
    err = load_error(write_csv(tmp_path, [GOOD_ROWS[0], "a,1e8,3e9,inf"]))
    assert (err.row, err.column) == (2, "loss")
    assert "not a finite number" in str(err)


def test_missing_required_column_lists_what_the_file_has(tmp_path: Path) -> None:
    err = load_error(write_csv(tmp_path, ["a,1e8,3.5"], header="run_id,Model Size,loss"))
    text = str(err)
    assert "missing required column(s) params, tokens" in text
    assert "run_id, Model Size, loss" in text
    assert err.row is None and err.source == "runs.csv"


def test_text_in_number_column(tmp_path: Path) -> None:
    err = load_error(write_csv(tmp_path, [GOOD_ROWS[0], "a,1e8,two billion,3.3"]))
    assert (err.row, err.column, err.value) == (2, "tokens", "two billion")
    assert "not a number" in str(err)


def test_error_names_the_users_column(tmp_path: Path) -> None:
    path = write_csv(tmp_path, ["a,1e8,1e9,3.5", "a,0,2e9,3.3"], header="run,N,D,L")
    err = load_error(path, columns={"run": "run_id", "N": "params", "D": "tokens", "L": "loss"})
    assert (err.row, err.column) == (2, "N")


def test_conflicting_duplicates_name_both_rows(tmp_path: Path) -> None:
    err = load_error(write_csv(tmp_path, [GOOD_ROWS[0], GOOD_ROWS[2], "a,1e8,1e9,3.6"]))
    assert (err.row, err.column) == (3, "loss")
    assert "rows 1 and 3" in str(err) and "3.5 vs 3.6" in str(err)


def test_identical_duplicates_are_collapsed_and_counted(tmp_path: Path) -> None:
    df = load_observations(write_csv(tmp_path, [*GOOD_ROWS, GOOD_ROWS[0], GOOD_ROWS[0]]))
    assert len(df) == 3
    assert df.attrs["duplicates_collapsed"] == 2
    assert df["source_row"].tolist() == [1, 2, 3]


def test_perplexity_column_is_caught_and_convertible(tmp_path: Path) -> None:
    path = write_csv(tmp_path, ["a,1e8,1e9,33.1", "a,1e8,2e9,27.2"])
    err = load_error(path)
    assert (err.row, err.column, err.value) == (1, "loss", 33.1)
    assert "loss_unit='perplexity'" in str(err)
    df = load_observations(path, loss_unit="perplexity")
    np.testing.assert_allclose(df["loss"], np.log([33.1, 27.2]))
    assert df.attrs["loss_unit"] == "perplexity"


def test_perplexity_below_one_rejected(tmp_path: Path) -> None:
    err = load_error(write_csv(tmp_path, ["a,1e8,1e9,0.9"]), loss_unit="perplexity")
    assert (err.row, err.column) == (1, "loss")
    assert "perplexity must be > 1" in str(err)


def test_bits_are_converted_to_nats(tmp_path: Path) -> None:
    df = load_observations(write_csv(tmp_path, GOOD_ROWS), loss_unit="bits")
    np.testing.assert_allclose(df["loss"], np.array([3.5, 3.3, 3.2]) * math.log(2))


def test_fractional_step_and_negative_lr_rejected() -> None:
    frame = pd.DataFrame({"run_id": ["a", "a"], "step": [10, 20.5], "loss": [3.0, 2.9]})
    err = load_error(frame, required=("step", "loss"))
    assert (err.source, err.row, err.column, err.value) == ("<DataFrame>", 2, "step", 20.5)
    frame = pd.DataFrame({"step": [10, 20], "lr": [1e-3, -1e-4], "loss": [3.0, 2.9]})
    err = load_error(frame, required=("step", "loss"))
    assert (err.row, err.column) == (2, "lr")


def test_drop_mode_removes_and_reports_invalid_rows(tmp_path: Path) -> None:
    path = write_csv(tmp_path, [GOOD_ROWS[0], "a,0,2e9,3.3", "b,2e8,1e9,", GOOD_ROWS[2]])
    with pytest.warns(UserWarning, match=r"dropped 2 invalid row\(s\)"):
        df = load_observations(path, on_invalid="drop")
    assert df["source_row"].tolist() == [1, 4]
    assert df.attrs["dropped"]["count"] == 2
    assert df.attrs["dropped"]["first_rows"] == [2, 3]
    assert df.attrs["dropped"]["reasons"] == {
        "column 'params': must be positive": 1,
        "column 'loss': missing value": 1,
    }


def test_bad_options_are_spec_errors(tmp_path: Path) -> None:
    path = write_csv(tmp_path, GOOD_ROWS)
    with pytest.raises(SpecError, match="loss_unit"):
        load_observations(path, loss_unit="ppl")  # type: ignore[arg-type]
    with pytest.raises(SpecError, match="on_invalid"):
        load_observations(path, on_invalid="skip")  # type: ignore[arg-type]


def test_unreadable_sources(tmp_path: Path) -> None:
    assert "supported suffixes" in str(load_error(tmp_path / "runs.xlsx"))
    assert "no such file" in str(load_error(tmp_path / "absent.csv"))
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert "empty" in str(load_error(empty))
    header_only = write_csv(tmp_path, [])
    assert "no data rows" in str(load_error(header_only))
    broken = tmp_path / "broken.parquet"
    broken.write_text("not parquet")
    assert "cannot read the file as parquet" in str(load_error(broken))


def test_bad_mapping_and_wide_names(tmp_path: Path) -> None:
    path = write_csv(tmp_path, GOOD_ROWS)
    err = load_error(path, columns={"Model Size": "params"})
    assert "'Model Size'" in str(err) and "run_id, params, tokens, loss" in str(err)
    err = load_error(path, columns={"tokens": "params"})
    assert "several columns are named params" in str(err)
    err = load_error(path, wide=["val"])
    assert "wide= names 'val'" in str(err)
    err = load_error(path, wide=["tokens"])
    assert "already have a 'loss' column" in str(err)


def test_wide_loss_errors_name_the_wide_column(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path, ["a,1e8,1e9,3.1,3.4", "a,1e8,2e9,3.0,-1"], "run_id,params,tokens,c4,pile"
    )
    err = load_error(path, wide=["c4", "pile"])
    assert (err.row, err.column, err.value) == (2, "pile", -1.0)


def test_check_enough_points() -> None:
    df = pd.DataFrame({"params": [1e8, 1e8, 2e8, 2e8], "tokens": [1e9, 1e9, 1e9, 2e9]})
    df.attrs["source"] = "sweep.csv"
    assert check_enough_points(df, 2, "chinchilla", inputs=["params", "tokens"]) == 3
    with pytest.raises(FitError) as info:
        check_enough_points(df, 3, "chinchilla", inputs=["params", "tokens"])
    assert str(info.value) == (
        "law 'chinchilla' has 3 free parameter(s) but sweep.csv has only 3 distinct "
        "(params, tokens) points; a fit needs at least 4"
    )
    assert check_enough_points(df, 3, "chinchilla") == 4
    with pytest.raises(FitError, match="the data have only 5 distinct points"):
        check_enough_points(5, 5, "chinchilla")
    with pytest.raises(InputError, match="needs column"):
        check_enough_points(df, 1, "compute", inputs=["flops_budget"])
