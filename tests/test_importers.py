"""Importers: TensorBoard files written by torch's SummaryWriter, Trainer states in the real
schema, text logs; mapping, stitching of restarts, the report, and what is asked for."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from scalinglab.cli.main import app
from scalinglab.data import RunStore, import_runs, load_observations
from scalinglab.data.importers import detect_kind
from scalinglab.data.importers.base import SUPERSEDED, default_dataset
from scalinglab.errors import InputError, MissingDependencyError, SpecError

SummaryWriter = pytest.importorskip("torch.utils.tensorboard").SummaryWriter


def write_tensorboard(folder: Path, steps: range, offset: float = 0.0) -> None:
    """Scalars as most training scripts write them: add_scalar, float32 simple_value."""
    with SummaryWriter(str(folder)) as writer:
        for step in steps:
            writer.add_scalar("train/loss", 4.0 / (1 + step) ** 0.3 + offset, step)
            writer.add_scalar("learning_rate", 1e-3 * (1 - step / 200), step)
            writer.add_scalar("grad_norm", 1.0, step)
            if step % 10 == 0:
                writer.add_scalar("eval/loss", 4.2 / (1 + step) ** 0.3 + offset, step)


@pytest.fixture(scope="module")
def tb_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tb")
    write_tensorboard(root / "small", range(0, 50))
    # a run that crashed after step 39, restarted from its checkpoint at step 30
    write_tensorboard(root / "resumed", range(0, 40), offset=1.0)
    write_tensorboard(root / "resumed", range(30, 60))
    with SummaryWriter(str(root / "tf2")) as writer:  # TF2-style scalar tensors
        for step in range(1, 4):
            writer.add_scalar("val_loss", 3.0 - step / 10, step, new_style=True)
            writer.add_histogram("weights", np.arange(10.0), step)
    return root


def test_every_tensorboard_point_is_read_and_accounted_for(tb_logs: Path) -> None:
    table = import_runs(tb_logs / "small", params=1e6, tokens_per_step=2048)
    report = table.attrs["import_report"]
    (run,) = report.runs
    assert run.run_id == "small" and run.datasets == {"train/loss": "train", "eval/loss": "eval"}
    train = table[table["dataset"] == "train"]
    assert train["step"].tolist() == list(range(1, 50))  # step 0: no tokens seen yet
    expected = (4.0 / (1 + np.arange(1, 50)) ** 0.3).astype(np.float32)
    assert np.array_equal(train["loss"].to_numpy(np.float32), expected)
    assert np.allclose(train["lr"], (1e-3 * (1 - np.arange(1, 50) / 200)).astype(np.float32))
    assert np.array_equal(train["tokens"], np.arange(1, 50) * 2048.0)
    assert np.allclose(table["flops"], 6 * 1e6 * table["tokens"])
    assert run.read == 50 * 3 + 5 and run.kept == 49 + 4 and run.used == 50
    assert run.dropped == {
        "other metrics (not a loss, learning rate, step or token count)": 50,
        "measured before any training token (step 0): the laws need D > 0": 2,
    }
    assert run.ignored_metrics == ["grad_norm"]


def test_restarted_tensorboard_run_keeps_the_later_points(tb_logs: Path) -> None:
    table = import_runs(tb_logs / "resumed", params=1e6, tokens_per_step=1)
    train = table[table["dataset"] == "train"].set_index("step")["loss"]
    assert train.index.tolist() == list(range(1, 60))
    # steps 30-39 were logged twice: the restart (no offset) replaced the crashed run's
    assert train[35] == pytest.approx(4.0 / 36**0.3, rel=1e-6)
    assert train[29] == pytest.approx(4.0 / 30**0.3 + 1.0, rel=1e-6)
    (run,) = table.attrs["import_report"].runs
    assert run.dropped[SUPERSEDED] == 10 * 3 + 1  # three metrics, eval/loss once (step 30)


def test_tensor_scalars_are_read_and_histograms_are_counted_as_dropped(tb_logs: Path) -> None:
    table = import_runs(tb_logs / "tf2", params=1e6, tokens_per_step=10)
    assert table["loss"].round(5).tolist() == [2.9, 2.8, 2.7]
    assert set(table["dataset"]) == {"val"}
    (run,) = table.attrs["import_report"].runs
    assert run.dropped == {"not a scalar (histogram summary)": 3}


def test_a_log_folder_is_one_run_per_subfolder_and_detected(tb_logs: Path) -> None:
    assert detect_kind(tb_logs) == "tensorboard"
    table = import_runs(tb_logs, params=1e6, tokens_per_step=1)
    assert sorted(table["run_id"].unique()) == ["resumed", "small", "tf2"]


def test_truncated_and_corrupt_event_files_lose_only_the_damaged_records(
    tb_logs: Path, tmp_path: Path
) -> None:
    (source,) = (tb_logs / "small").glob("events*")
    data = bytearray(source.read_bytes())
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / source.name).write_bytes(bytes(data[:-5]))
    data[200] ^= 0xFF  # flip a byte inside an early record
    (tmp_path / "flip").mkdir()
    (tmp_path / "flip" / source.name).write_bytes(bytes(data))
    for name, reason in (("cut", "truncated record"), ("flip", "corrupt record")):
        table = import_runs(tmp_path / name, params=1e6, tokens_per_step=1)
        (run,) = table.attrs["import_report"].runs
        assert any(reason in r and n == 1 for r, n in run.dropped.items()), run.dropped
        assert len(table) >= 50


def test_hparams_become_the_config_and_give_params_and_tokens(tmp_path: Path) -> None:
    from torch.utils.tensorboard.summary import hparams

    with SummaryWriter(str(tmp_path / "run")) as writer:
        for summary in hparams({"params": 123456.0, "tokens_per_step": 512, "seed": 0}, {}):
            writer.file_writer.add_summary(summary)
        for step in (10, 20):
            writer.add_scalar("loss", 3.0, step)
    table = import_runs(tmp_path / "run")
    assert table["params"].unique().tolist() == [123456.0]
    assert table["tokens"].tolist() == [5120.0, 10240.0] and table["seed"].tolist() == [0, 0]
    assert table.attrs["run_configs"]["run"]["tokens_per_step"] == 512


def test_what_cannot_be_inferred_is_asked_for_with_its_option(tb_logs: Path) -> None:
    with pytest.raises(InputError, match=r"--run-params small=N"):
        import_runs(tb_logs / "small", tokens_per_step=1)
    with pytest.raises(InputError, match=r"--tokens-per-step small=BATCHxCONTEXT"):
        import_runs(tb_logs / "small", params=1e6)
    with pytest.raises(InputError, match=r"--metric NAME=DATASET"):
        import_runs(tb_logs / "small", params=1, tokens_per_step=1, metrics={"x": "train"})
    with pytest.raises(SpecError, match="matches no imported run"):
        import_runs(tb_logs / "small", params={"typo": 1.0}, tokens_per_step=1)


def test_metric_mapping_chooses_the_datasets(tb_logs: Path) -> None:
    table = import_runs(
        tb_logs / "small", params=1e6, tokens_per_step=1, metrics={"eval/loss": "val"}
    )
    assert set(table["dataset"]) == {"val"} and len(table) == 4
    (run,) = table.attrs["import_report"].runs
    assert "loss metric 'train/loss' not mapped to a dataset (--metric train/loss=DATASET)" in (
        run.dropped
    )


@pytest.mark.parametrize(
    ("name", "dataset"),
    [
        ("loss", "train"),
        ("train/loss", "train"),
        ("eval_loss", "eval"),
        ("val loss", "val"),
        ("loss/python-docs", "python-docs"),
        ("eval_wiki_loss", "eval_wiki"),
        ("train/lm_loss", "train"),
        ("aux_loss", None),
        ("router/z_loss", None),
        ("loss_scale", None),
        ("grad_norm", None),
    ],
)
def test_loss_names_map_to_datasets(name: str, dataset: str | None) -> None:
    assert default_dataset(name) == dataset


# -- Hugging Face Trainer ------------------------------------------------------------------

GPT2_CONFIG = {
    "architectures": ["GPT2LMHeadModel"],
    "model_type": "gpt2",
    "n_embd": 768,
    "n_head": 12,
    "n_inner": None,
    "n_layer": 12,
    "n_positions": 1024,
    "vocab_size": 50257,
    "tie_word_embeddings": True,
    "torch_dtype": "float32",
    "transformers_version": "4.46.0",
}


def trainer_state(log_history: list[dict[str, object]], global_step: int) -> dict[str, object]:
    """A ``trainer_state.json`` as transformers 4.4x writes it (TrainerState.save_to_json)."""
    return {
        "best_metric": None,
        "best_model_checkpoint": None,
        "epoch": 0.5,
        "eval_steps": 20,
        "global_step": global_step,
        "is_hyper_param_search": False,
        "is_local_process_zero": True,
        "is_world_process_zero": True,
        "log_history": log_history,
        "logging_steps": 10,
        "max_steps": 40,
        "num_input_tokens_seen": 40 * 8192,
        "num_train_epochs": 1,
        "save_steps": 20,
        "stateful_callbacks": {
            "TrainerControl": {
                "args": {
                    "should_epoch_stop": False,
                    "should_evaluate": False,
                    "should_log": False,
                    "should_save": True,
                    "should_training_stop": True,
                },
                "attributes": {},
            }
        },
        "total_flos": 6.0 * 85_056_000 * 40 * 8192,
        "train_batch_size": 8,
        "trial_name": None,
        "trial_params": None,
    }


def hf_history() -> list[dict[str, object]]:
    history: list[dict[str, object]] = []
    for step in (10, 20, 30, 40):
        history.append(
            {"epoch": step / 80, "grad_norm": 1.5, "learning_rate": 5e-5 * (1 - step / 40),
             "loss": 4.0 - step / 100, "num_input_tokens_seen": step * 8192, "step": step}
        )  # fmt: skip
        if step % 20 == 0:
            history.append(
                {"epoch": step / 80, "eval_loss": 4.1 - step / 100, "eval_runtime": 1.2,
                 "eval_samples_per_second": 50.0, "eval_steps_per_second": 6.3,
                 "num_input_tokens_seen": step * 8192, "step": step}
            )  # fmt: skip
    history.append(
        {"epoch": 0.5, "num_input_tokens_seen": 40 * 8192, "step": 40,
         "total_flos": 6.0 * 85_056_000 * 40 * 8192, "train_loss": 3.75,
         "train_runtime": 60.0, "train_samples_per_second": 5.3, "train_steps_per_second": 0.67}
    )  # fmt: skip
    return history


@pytest.fixture(scope="module")
def hf_output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hf") / "gpt2-run"
    (out / "checkpoint-20").mkdir(parents=True)
    (out / "checkpoint-40").mkdir()
    history = hf_history()
    (out / "checkpoint-20" / "trainer_state.json").write_text(
        json.dumps(trainer_state(history[:3], 20), indent=2)
    )
    (out / "checkpoint-40" / "trainer_state.json").write_text(
        json.dumps(trainer_state(history, 40), indent=2)
    )
    (out / "trainer_state.json").write_text(json.dumps(trainer_state(history, 40), indent=2))
    (out / "config.json").write_text(json.dumps(GPT2_CONFIG, indent=2))
    return out


def test_trainer_state_gives_losses_tokens_params_and_flops(hf_output: Path) -> None:
    assert detect_kind(hf_output) == "hf"
    table = import_runs(hf_output)
    assert set(table["run_id"]) == {"gpt2-run"}
    train = table[table["dataset"] == "train"]
    assert train["step"].tolist() == [10, 20, 30, 40]
    assert train["tokens"].tolist() == [s * 8192.0 for s in (10, 20, 30, 40)]
    assert table[table["dataset"] == "eval"]["loss"].tolist() == pytest.approx([3.9, 3.7])
    assert table["params"].unique().tolist() == [124_439_808]  # GPT-2 small
    assert train["lr"].tolist() == pytest.approx([3.75e-5, 2.5e-5, 1.25e-5, 0.0])
    # total_flos shared out in proportion to tokens
    assert table["flops"].tolist() == pytest.approx((table["tokens"] * 6.0 * 85_056_000).tolist())
    (run,) = table.attrs["import_report"].runs
    assert any(r.startswith("train_loss: the run's mean") for r in run.dropped)


def test_empty_log_history_is_reported_not_invented(tmp_path: Path) -> None:
    state = tmp_path / "trainer_state.json"
    state.write_text(json.dumps(trainer_state([], 0)))
    with pytest.raises(InputError, match="no loss found"):
        import_runs(state)


def test_trainer_state_of_an_unknown_architecture_asks_for_params(
    hf_output: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "trainer_state.json").write_text((hf_output / "trainer_state.json").read_text())
    (out / "config.json").write_text(json.dumps({"model_type": "mamba", "hidden_size": 768}))
    with pytest.raises(InputError, match=r"--run-params run=N"):
        import_runs(out)
    assert import_runs(out, params=1.3e8)["params"].unique().tolist() == [1.3e8]


# -- text logs ---------------------------------------------------------------------------

NANOGPT_LOG = """\
step 0: train loss 10.9876, val loss 10.9912
iter 0: loss 10.9855, time 2034.12ms, mfu -100.00%
iter 10: loss 8.1234, time 120.50ms, mfu 12.31%
iter 20: loss 6.5432, time 121.00ms, mfu 12.30%
saving checkpoint to out
step 20: train loss 6.4000, val loss 6.5000
iter 30: loss 5.9000, time 119.80ms, mfu 12.33%
"""


def test_text_log_with_patterns(tmp_path: Path) -> None:
    log = tmp_path / "shakespeare.log"
    log.write_text(NANOGPT_LOG)
    table = import_runs(
        log,
        patterns=["step {step}: train loss {eval_train}, val loss {val_loss}",
                  "iter {step}: loss {loss}"],
        params=1.06e7,
        tokens_per_step=12 * 1024,
        metrics={"loss": "train", "val_loss": "val"},
    )  # fmt: skip
    assert table[table["dataset"] == "train"]["loss"].tolist() == [8.1234, 6.5432, 5.9]
    assert table[table["dataset"] == "val"][["step", "loss"]].values.tolist() == [[20, 6.5]]
    with pytest.raises(SpecError, match="--pattern"):
        import_runs(log, params=1, tokens_per_step=1)
    folder = import_runs(tmp_path, kind="text", patterns=["iter {step}: loss {loss}"],
                         params=1, tokens_per_step=1)  # fmt: skip
    assert set(folder["run_id"]) == {"shakespeare"}
    with pytest.raises(InputError, match="no line matches"):
        import_runs(log, patterns=["epoch {step} loss {loss}"], params=1, tokens_per_step=1)


# -- the command and the store ------------------------------------------------------------


def test_import_command_is_idempotent(tb_logs: Path, tmp_path: Path) -> None:
    store = tmp_path / "runs.sqlite"
    args = ["import", str(tb_logs / "small"), str(tb_logs / "resumed"), "--store", str(store),
            "--run-params", "1e6", "--tokens-per-step", "8x256", "--json"]  # fmt: skip
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)
    assert report["stored"] == {"new": report["kept"], "unchanged": 0, "changed": 0}
    rows = len(RunStore(store).observations())
    again = json.loads(CliRunner().invoke(app, args).stdout)
    assert again["stored"] == {"new": 0, "unchanged": report["kept"], "changed": 0}
    assert len(RunStore(store).observations()) == rows == report["kept"]
    assert set(RunStore(store).runs()["status"]) == {"imported"}
    fitted = load_observations(store)
    assert fitted["tokens"].max() == 59 * 2048


def test_import_command_errors_are_one_line_with_status_2(tb_logs: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["import", str(tb_logs / "small"), "--store", "x.sqlite"])
    assert result.exit_code == 2 and "--tokens-per-step small=" in result.output
    result = CliRunner().invoke(app, ["import", str(tb_logs), "--from", "comet", "--out", "a.csv"])
    assert result.exit_code == 2 and "--from must be one of" in result.output


def test_a_missing_library_names_the_extra(tb_logs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorboard.compat.proto.event_pb2", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'scalinglab\[tensorboard\]'"):
        import_runs(tb_logs / "small", params=1, tokens_per_step=1)


def test_a_logger_without_its_library_fails_before_training(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from scalinglab.training.config import TrainConfig

    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'scalinglab\[mlflow\]'"):
        TrainConfig(steps=10, log_to=("mlflow",))
    with pytest.raises(SpecError, match="unknown logger comet"):
        TrainConfig(steps=10, log_to=("comet",))
